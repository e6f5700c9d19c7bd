"""Sharded recommendation inference: one DLRM-style model over a cluster of embedding nodes.

The modules, by job:

* :mod:`~envs.sim.dlrm.spec`: the static description (:class:`ClusterSpec`, scheduled
  :class:`FaultEvent` faults, :class:`RandomDisruption` stragglers and failures);
* :mod:`~envs.sim.dlrm.layout`: where the rows live (:func:`balance_tables`,
  :func:`place_replicas`, :class:`ShardLayout`);
* :mod:`~envs.sim.dlrm.records`: requests, sub-requests, migrations and their counters;
* :mod:`~envs.sim.dlrm.cluster`: the event-driven simulator (:class:`ShardSim`), the reference;
* :mod:`~envs.sim.dlrm.compiled` and :mod:`~envs.sim.dlrm.segment`: the same simulator with its
  event loop compiled (``CompiledShardSim``; :func:`~envs.sim.dlrm.compiled.make_shard_sim`
  picks it where it applies, an LRU cache and numba);
* :mod:`~envs.sim.dlrm.capacity`: analytic hit rates (:func:`che_hit_rates`) and capacity
  (:func:`estimate_capacity`);
* :mod:`~envs.sim.dlrm.skew`: row popularity (a bounded Zipf law fitted to Meta's traces);
* :mod:`~envs.sim.dlrm.popularity`: shard popularity that drifts during an episode
  (:class:`~envs.sim.dlrm.popularity.ShardPopularity`, ``ShardSim(extra_reads=...)``);
* :mod:`~envs.sim.dlrm.rowcache`: batched LRU and LFU row caches;
* :mod:`~envs.sim.dlrm.pslink`: a fair-shared link direction;
* :mod:`~envs.sim.dlrm.kernels`: the compiled (numba) kernels of the hot spots.

Nothing here imports gymnasium or torch; :mod:`envs.shard` and :mod:`envs.shard_placement`
adapt it to Gymnasium.
"""

from envs.sim.dlrm.capacity import (
    CapacityEstimate,
    added_row_hit,
    che_hit_rates,
    estimate_capacity,
)
from envs.sim.dlrm.cluster import ShardSim
from envs.sim.dlrm.layout import ShardLayout, balance_tables, place_replicas
from envs.sim.dlrm.spec import ClusterSpec, FaultEvent, RandomDisruption

__all__ = [
    "CapacityEstimate",
    "ClusterSpec",
    "FaultEvent",
    "RandomDisruption",
    "ShardLayout",
    "ShardSim",
    "added_row_hit",
    "balance_tables",
    "che_hit_rates",
    "estimate_capacity",
    "place_replicas",
]
