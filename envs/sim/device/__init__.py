"""One device (a GPU or a CPU) serving several models on partitions: the MISD simulator.

- :mod:`~envs.sim.device.serving`: the v0 simulator (isolated partitions, dynamic batching,
  admission, energy): :class:`GpuServingSim` and its :class:`BatcherConfig`.
- :mod:`~envs.sim.device.shared`: :class:`SharedGpuSim`, the same device with interference
  among co-runners (MPS, time slicing), priority classes, preemption and re-partitioning.
- :mod:`~envs.sim.device.compiled`: a whole v0 episode as one compiled (numba) loop.
- :mod:`~envs.sim.device.compiled_shared`: one interval of :class:`SharedGpuSim` without
  priorities (Repartition's: MIG, MPS with interference) as one compiled loop.
- :mod:`~envs.sim.device.tables`: what the simulators are built from: layouts, latency tables,
  the co-runner slowdown callable.
"""
