"""Latency of a batch of one model on one partition: a per-layer roofline.

For every layer ``l`` of a :class:`~hwmodels.workloads.WorkloadProfile` and batch size ``b`` on
a partition with ``S`` SMs and a fraction ``f`` of the device's memory bandwidth::

    w      = flops_l * b / S                         # work per SM (FLOP)
    eff    = e_max * w / (w + w_half)                # small kernels under-fill the SMs
    t_c    = flops_l * b / (peak_per_SM * S_eff * eff),  S_eff = S / (1 + sigma (S - 1))
    t_m    = bytes_l(b) / (mem_bw * f * eff_memory)  # weights once per batch + activations
    t_l    = max(t_c, t_m) + kernels_l * launch
    T(b)   = sum_l t_l + batch_overhead

``sigma`` is the device's ``sm_contention`` (0 for GPUs: SMs scale linearly; a CPU's cores
share caches, memory and, in a virtual machine, physical cores).
``peak_per_SM`` is the device's dense peak for the precision (tensor cores for matmul layers,
FP32 CUDA cores for the rest) divided by its SM count, so one MIG slice, several slices and the
whole GPU all come out of the same formula. ``e_max`` is ``eff_compute_max`` times the fitted
per-precision multiplier ``eff_precision[precision]`` for matmul layers (INT8 engines reach a
smaller fraction of their peak than FP16 ones) and ``eff_compute_max`` for the rest. The
efficiency and overhead parameters live in the device spec and are fitted by
``python -m experiments.calibrate mode=fit``.

:meth:`LatencyModel.breakdown` splits the same time into compute-bound, memory-bound and
overhead parts and reports the FLOPs and bytes moved: the interference and power models use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwmodels.partitions import Partition
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import BYTES_PER_ELEMENT, WorkloadProfile, build_profile


@dataclass(frozen=True)
class LatencyBreakdown:
    """Where the time of a batch goes (arrays with the shape of the batch argument).

    Attributes:
        total_s: Batch latency (``compute_s + memory_s + overhead_s``).
        compute_s: Time in layers whose compute time exceeds their memory time.
        memory_s: Time in memory-bound layers.
        overhead_s: Kernel launches and the per-batch overhead.
        flops: FLOPs executed.
        bytes: Bytes moved to and from device memory.
    """

    total_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray


class LatencyModel:
    """Roofline latency of batches on partitions of one device.

    Args:
        device: The device and its calibrated efficiencies.
        precision: Numeric precision of the served engines (``"fp16"``, ``"int8"``, ...).
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16") -> None:
        if precision not in BYTES_PER_ELEMENT:
            raise ValueError(
                f"precision '{precision}' unknown; known: {', '.join(BYTES_PER_ELEMENT)}"
            )
        self.device = device
        self.precision = precision
        self._bpe = float(BYTES_PER_ELEMENT[precision])
        self._peak_mm_per_sm = device.peak(precision) / device.sm_count
        self._peak_vec_per_sm = device.peak("fp32") / device.sm_count

    def latency_s(
        self,
        profile: WorkloadProfile | str,
        batch: int | Sequence[int] | np.ndarray,
        partition: Partition,
    ) -> np.ndarray:
        """Seconds to run ``batch`` samples of ``profile`` on ``partition`` (vectorised in batch).

        Returns:
            An array with the shape of ``batch`` (a 0-d array for an int).
        """
        return self.breakdown(profile, batch, partition).total_s

    def breakdown(
        self,
        profile: WorkloadProfile | str,
        batch: int | Sequence[int] | np.ndarray,
        partition: Partition,
    ) -> LatencyBreakdown:
        """The latency of :meth:`latency_s` split into compute, memory and overhead time."""
        prof = build_profile(profile) if isinstance(profile, str) else profile
        arr = prof.arrays()
        d = self.device
        b = np.asarray(batch, dtype=np.float64)
        bb = b.reshape(-1, 1)  # (B, 1) against layers (L,)
        sms = float(partition.sms)
        work = arr.flops * bb  # (B, L) FLOPs
        w_half = d.eff_compute_half_mflop * 1e6
        per_sm = work / sms
        e_max = np.where(arr.is_matmul, d.eff_compute(self.precision), d.eff_compute_max)
        eff = e_max * per_sm / (per_sm + w_half)
        scaled = sms / (1.0 + d.sm_contention * (sms - 1.0))
        peak = np.where(arr.is_matmul, self._peak_mm_per_sm, self._peak_vec_per_sm) * scaled
        with np.errstate(divide="ignore", invalid="ignore"):
            t_c = np.where(work > 0, work / (peak * eff), 0.0)
        bytes_ = (arr.streamed_params + arr.act * bb) * self._bpe
        t_m = bytes_ / (d.mem_bw_gbs * 1e9 * partition.bw_fraction * d.eff_memory)
        compute_bound = t_c >= t_m
        t_over = arr.kernels.sum() * (d.launch_us * 1e-6) + d.batch_overhead_us * 1e-6
        compute = np.where(compute_bound, t_c, 0.0).sum(axis=1)
        memory = np.where(compute_bound, 0.0, t_m).sum(axis=1)
        overhead = np.full_like(compute, t_over)
        shape = b.shape
        return LatencyBreakdown(
            total_s=(compute + memory + overhead).reshape(shape),
            compute_s=compute.reshape(shape),
            memory_s=memory.reshape(shape),
            overhead_s=overhead.reshape(shape),
            flops=work.sum(axis=1).reshape(shape),
            bytes=bytes_.sum(axis=1).reshape(shape),
        )

    def table_s(self, profile: WorkloadProfile | str, partition: Partition,
                max_batch: int) -> np.ndarray:
        """Latency for batch sizes ``1..max_batch`` (index ``b - 1``)."""
        return self.latency_s(profile, np.arange(1, max_batch + 1), partition)

    def throughput(self, profile: WorkloadProfile | str, batch: int,
                   partition: Partition) -> float:
        """Samples per second with back-to-back batches of ``batch``."""
        return float(batch / self.latency_s(profile, batch, partition))

    def best_throughput(self, profile: WorkloadProfile | str, partition: Partition,
                        max_batch: int = 256) -> tuple[float, int]:
        """Highest samples/s over batch sizes ``1..max_batch`` and the batch that reaches it."""
        lat = self.table_s(profile, partition, max_batch)
        tput = np.arange(1, max_batch + 1) / lat
        i = int(np.argmax(tput))
        return float(tput[i]), i + 1
