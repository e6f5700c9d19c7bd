"""A heterogeneous serving cluster: a router in front of many devices (the MIMD paradigm).

:mod:`~envs.sim.cluster.spec` says what a cluster is made of (device kinds, counts, links,
prices) and builds its static tables from :mod:`hwmodels`; :mod:`~envs.sim.cluster.sim` runs
it: every device is :class:`envs.sim.device.shared.SharedGpuSim` (its batcher, interference
and counters), driven through :meth:`~envs.sim.device.shared.SharedGpuSim.arrive` and
:meth:`~envs.sim.device.shared.SharedGpuSim.run_until`. Nothing here imports gymnasium.
"""

from envs.sim.cluster.sim import ClusterSim
from envs.sim.cluster.spec import CLUSTER_PRESETS, ClusterTables, DeviceGroup, build_tables

__all__ = ["CLUSTER_PRESETS", "ClusterSim", "ClusterTables", "DeviceGroup", "build_tables"]
