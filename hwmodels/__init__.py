"""Calibrated hardware models (pure numpy; no torch, gymnasium or Hydra).

* :mod:`hwmodels.specs`: device specs (``conf/hw/*.yaml``) with a source for every number.
* :mod:`hwmodels.workloads`: layer profiles of DNN workloads.
* :mod:`hwmodels.latency`: per-layer roofline latency of a batch on a partition.
* :mod:`hwmodels.partitions`: MIG placement rules and layouts, MPS shares, time slicing.
* :mod:`hwmodels.interference`: slowdown of co-runners sharing a device.
* :mod:`hwmodels.reconfig`: random cost of changing a layout.
* :mod:`hwmodels.power`: idle and dynamic power, energy per query.
* :mod:`hwmodels.links`: interconnects with fair-share contention.
* :mod:`hwmodels.storage`: memory/storage tiers and an embedding-row cache.
* :mod:`hwmodels.calibration`: predicting published targets and measurements, and fitting.
"""
