"""Latency of a batch of one model on one partition: a per-layer roofline.

For every layer ``l`` of a :class:`~hwmodels.workloads.WorkloadProfile` and batch size ``b`` on
a partition with ``S`` SMs and a fraction ``f`` of the device's memory bandwidth::

    w      = flops_l * b / S                         # work per SM (FLOP)
    eff    = e_max * w / (w + w_half)                # small kernels under-fill the SMs
    t_c    = flops_l * b / (peak_per_SM * S_eff * eff),  S_eff = S / (1 + sigma (S - 1))
    t_m    = bytes_l(b) / (mem_bw * f * eff_memory)  # weights once per batch + activations
    t_l    = max(t_c, t_m) + kernels_l * launch
    T(b)   = sum_l t_l + batch_overhead

Activations stay in the L2 where they fit (GPUs with ``l2_act_fraction > 0``; compiled engines,
not PyTorch eager, see :func:`hwmodels.calibration.stack_latency`). With ``C`` the usable L2
(``l2_act_fraction`` of it; under MIG the slice's share, ``f`` times it) and
``h_l = min(1, C / (b (act_in + act_out) bytes))`` the part of layer ``l``'s input and output
that fit together, ``h_l * act_out`` of its output stays in the L2 and the next layer reads
``min(h_l * act_out_l, h_{l+1} * act_in_{l+1})`` of its input from there; the rest moves to and
from DRAM. Inputs no previous layer just wrote (embedding rows gathered from their tables, a
decode step's KV cache) always come from DRAM. Large-L2 GPUs (L4: 48 MB, H100: 50 MB) run
small-batch CNN layers from the L2; larger batches spill gradually (no cliff in batch).

An MPS share with a fraction ``s`` of the SMs streams at most ``s / bw_sm_fraction`` of the
device's bandwidth (``bw_sm_fraction``: the fraction of SMs that saturates DRAM, fitted on MPS
shares; 0: no such limit), so memory-bound layers (depthwise convolutions, pooling, an eager
framework's unfused batch norms) slow down on small MPS shares, as measured. MIG slices keep
the bandwidth of their memory slices (fitted on published MIG rows; no MIG measurement
constrains a per-SM limit).

**Eager frameworks** (``eager=True``, PyTorch eager): every layer dispatches its
``eager_ops`` operators (conv, batch norm, activation, add, ``torch.cat``, one kernel each;
:class:`~hwmodels.workloads.Layer`) and moves their unfused traffic ``eager_act``. The host
spends ``host_us`` per operator and the GPU runs kernel ``k`` once it was issued, so with
``H_k`` the host time up to kernel ``k`` and ``G_{>=k}`` the GPU time from ``k`` on::

    T(b) = max_k (H_k + G_{>=k}) + batch_overhead

which is ``sum_l t_l`` when the GPU is the bottleneck (large batches) and the host's
dispatch time when it is not (small batches: PyTorch eager latency at batch 1 hardly depends
on the SM share).

**Under-filled kernels.** A layer whose output has fewer 128 x 128 tiles than the partition has
SMs (``b * act_out < FILL_ELEMS_PER_SM * S``) runs a single partial wave: a fraction
``1 - b * act_out / (FILL_ELEMS_PER_SM * S)`` of the partition's SMs gets no block, and the
layer's time is the latency of one block rather than a throughput. :meth:`LatencyModel.breakdown`
reports that time (``underfill_s``: each layer's time weighted by the SMs it leaves idle); the
interference model stretches it like host dispatch, as latency-bound work
(:mod:`hwmodels.interference`).

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

FILL_ELEMS_PER_SM = 128 * 128
"""Output elements one SM's block computes in one wave: a 128 x 128 threadblock tile, CUTLASS's
default tile for Ampere tensor-core GEMMs (cuDNN's implicit-GEMM convolutions use the same
tiling). A layer with fewer output elements than this times the SMs leaves SMs idle (see the
module docstring, "Under-filled kernels"). Cited, not fitted; on the gpulet co-location rows
(``calibration/FIDELITY.md``) 4,096 and 32,768 give held-out slowdown rank correlations of
0.81 and 0.80 against 0.815 for this value."""


@dataclass(frozen=True)
class LatencyBreakdown:
    """Where the time of a batch goes (arrays with the shape of the batch argument).

    Attributes:
        total_s: Batch latency (``compute_s + memory_s + overhead_s``).
        compute_s: Time in layers whose compute time exceeds their memory time.
        memory_s: Time in memory-bound layers.
        overhead_s: Kernel launches, the per-batch overhead and (eager) the host dispatch
            time the GPU waits for.
        flops: FLOPs executed.
        bytes: Bytes moved to and from device memory.
        host_s: Host dispatch time of an eager framework (0 otherwise), hidden or not.
        underfill_s: Layer time weighted by the fraction of the partition's SMs the layer's
            output tiles leave idle (``max(t_c, t_m) * max(0, 1 - b act_out /
            (FILL_ELEMS_PER_SM * S))`` summed over layers): latency-bound GPU time.
    """

    total_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    host_s: np.ndarray | float = 0.0
    underfill_s: np.ndarray | float = 0.0


class LatencyModel:
    """Roofline latency of batches on partitions of one device.

    Args:
        device: The device and its calibrated efficiencies.
        precision: Numeric precision of the served engines (``"fp16"``, ``"int8"``, ...).
        eager: Run as an eager framework (see the module docstring).
        host_us: Host dispatch time per eager operator in microseconds.
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16", *, eager: bool = False,
                 host_us: float = 0.0) -> None:
        if host_us < 0:
            raise ValueError(f"host_us must be >= 0, got {host_us}")
        self.eager = bool(eager)
        self.host_us = float(host_us)
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
        w_half: np.ndarray | float = d.eff_compute_half_mflop * 1e6
        if d.eff_vector_half_mflop > 0:
            w_half = np.where(arr.is_matmul, w_half, d.eff_vector_half_mflop * 1e6)
        per_sm = work / sms
        e_max = np.where(arr.is_matmul, d.eff_compute(self.precision), d.eff_compute_max)
        eff = e_max * per_sm / (per_sm + w_half)
        scaled = sms / (1.0 + d.sm_contention * (sms - 1.0))
        peak = np.where(arr.is_matmul, self._peak_mm_per_sm, self._peak_vec_per_sm) * scaled
        with np.errstate(divide="ignore", invalid="ignore"):
            t_c = np.where(work > 0, work / (peak * eff), 0.0)
        act = arr.act + arr.eager_act if self.eager else arr.act
        kernels = arr.eager_ops if self.eager else arr.kernels
        act_bytes = act * bb * self._bpe
        if d.kind == "gpu" and d.l2_act_fraction > 0 and d.l2_mb > 0:
            act_bytes = act_bytes - self._l2_resident(arr.act_in, arr.act_out, bb, self._bpe,
                                                      d, partition) * self._bpe
        bytes_ = arr.streamed_params * self._bpe + act_bytes
        bw_fraction = partition.bw_fraction
        if d.bw_sm_fraction > 0 and partition.mode == "mps":
            reach = sms / d.sm_count / d.bw_sm_fraction
            if reach < bw_fraction:
                bw_fraction = reach
        t_m = bytes_ / (d.mem_bw_gbs * 1e9 * bw_fraction * d.eff_memory)
        compute_bound = t_c >= t_m
        idle = np.clip(1.0 - arr.act_out * bb / (FILL_ELEMS_PER_SM * sms), 0.0, 1.0)
        underfill = (np.maximum(t_c, t_m) * idle).sum(axis=1)
        t_over = kernels.sum() * (d.launch_us * 1e-6) + d.batch_overhead_us * 1e-6
        compute = np.where(compute_bound, t_c, 0.0).sum(axis=1)
        memory = np.where(compute_bound, 0.0, t_m).sum(axis=1)
        overhead = np.full_like(compute, t_over)
        total = compute + memory + overhead
        host: np.ndarray | float = 0.0
        if self.eager and self.host_us > 0:
            # GPU time per layer (roofline + launch gaps), host time per layer; the batch
            # ends when the last kernel does: max over k of (issue time of k + GPU time
            # from k on).
            gpu = np.maximum(t_c, t_m) + kernels * (d.launch_us * 1e-6)
            issue = np.cumsum(kernels * (self.host_us * 1e-6))
            tail = np.cumsum(gpu[:, ::-1], axis=1)[:, ::-1]
            pipe = (issue + tail).max(axis=1)
            total = np.maximum(pipe, gpu.sum(axis=1)) + d.batch_overhead_us * 1e-6
            overhead = total - compute - memory
            host = np.full_like(compute, issue[-1])
        shape = b.shape
        return LatencyBreakdown(
            total_s=total.reshape(shape),
            compute_s=compute.reshape(shape),
            memory_s=memory.reshape(shape),
            overhead_s=overhead.reshape(shape),
            flops=work.sum(axis=1).reshape(shape),
            bytes=bytes_.sum(axis=1).reshape(shape),
            host_s=host if isinstance(host, float) else host.reshape(shape),
            underfill_s=underfill.reshape(shape),
        )

    @staticmethod
    def _l2_resident(act_in: np.ndarray, act_out: np.ndarray, bb: np.ndarray, bpe: float,
                     d: DeviceSpec, partition: Partition) -> np.ndarray:
        """Activation elements per batch (B, L) that stay in the L2 instead of DRAM.

        A layer's output stays in the usable L2 (``l2_act_fraction`` of it; a MIG slice owns
        its memory slices' share) in the proportion ``h = min(1, L2 / (b (act_in + act_out)
        bytes))`` in which its input and output fit together, and the next layer reads that
        part of its input from there. Inputs that no previous layer just wrote (embedding
        rows gathered from their tables, a decode step's KV cache) come from DRAM.
        """
        cap = d.l2_act_fraction * d.l2_mb * 2**20 * partition.bw_fraction
        work = (act_in + act_out) * bb * bpe
        h = np.minimum(1.0, cap / np.maximum(work, 1e-30))
        out_kept = h * act_out
        prev_out = np.concatenate([np.zeros((bb.shape[0], 1)), out_kept[:, :-1]], axis=1)
        in_kept = np.minimum(prev_out, act_in * h)
        return (out_kept + in_kept) * bb

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
