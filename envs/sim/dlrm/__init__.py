"""The sharded recommendation (DLRM) cluster: one model over many nodes, by job.

* :mod:`~envs.sim.dlrm.skew`: row popularity (a bounded Zipf law fitted to Meta's traces);
* :mod:`~envs.sim.dlrm.rowcache`: batched LRU and LFU row caches;
* :mod:`~envs.sim.dlrm.pslink`: a fair-shared link direction;
* :mod:`~envs.sim.dlrm.kernels`: the compiled (numba) kernels of the hot spots.
"""
