"""Device power and energy per query: idle power plus utilisation-dependent dynamic power.

A partition owning a share ``s = sms / sm_count`` of the device draws ``s * idle_w`` when idle.
While it runs a batch whose solo run (:meth:`hwmodels.latency.LatencyModel.breakdown`) is a
fraction ``c`` compute-bound and ``m`` memory-bound, it draws::

    P = s * idle_w + s * (tdp_w - idle_w) * (c + memory_weight * m) ** exponent

(launch and host overheads leave the SMs idle), and the whole device never draws more than
``tdp_w``: the board's power limit throttles clocks instead. Energy per query is ``P * T / b``
for a batch of ``b`` taking ``T`` seconds. Systems add ``host_w`` (CPUs, fans, NICs) per
device when comparing with wall-power measurements.

Parameters (the spec's ``power`` table overrides :data:`DEFAULTS`): ``memory_weight`` and
``exponent`` are assumptions (DRAM-bound kernels draw about half the power of tensor-core
bound ones; linear in activity), checked against MLPerf Power results (published_targets
T138-T140: 8-GPU systems' samples per joule at the wall) by ``experiments.calibrate``.
``idle_w`` and ``tdp_w`` are published spec fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwmodels.latency import LatencyModel
from hwmodels.partitions import Partition
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import WorkloadProfile

DEFAULTS: dict[str, float] = {
    "memory_weight": 0.5,
    "exponent": 1.0,
    "host_w": 0.0,
}
"""``memory_weight``: dynamic power of a memory-bound kernel relative to a compute-bound one;
``exponent``: curvature of power in activity; ``host_w``: host power per device (W)."""


class PowerModel:
    """Power draw and energy per query of one device (see the module docstring).

    Args:
        device: The device (``idle_w``, ``tdp_w`` and its ``power`` table).
        precision: Engine precision (as for :class:`~hwmodels.latency.LatencyModel`).
        params: Further overrides of :data:`DEFAULTS`.

    Raises:
        ValueError: unknown or negative parameters, or ``tdp_w < idle_w``.
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16",
                 params: Mapping[str, float] | None = None) -> None:
        merged = {**DEFAULTS, **device.power, **(params or {})}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"hw '{device.name}': unknown power parameter(s) {unknown}; "
                             f"known: {sorted(DEFAULTS)}")
        bad = {k: v for k, v in merged.items() if not v >= 0}
        if bad:
            raise ValueError(f"hw '{device.name}': power parameters must be >= 0: {bad}")
        if device.tdp_w < device.idle_w:
            raise ValueError(f"hw '{device.name}': tdp_w {device.tdp_w} < idle_w {device.idle_w}")
        self.device = device
        self.params = merged
        self.latency = LatencyModel(device, precision)

    def idle_w(self, partition: Partition) -> float:
        """Power of ``partition`` when it runs nothing."""
        return self.device.idle_w * partition.sms / self.device.sm_count

    def busy_w(self, profile: WorkloadProfile | str, batch: int, partition: Partition) -> float:
        """Power of ``partition`` while it runs batches of ``batch`` samples of ``profile``."""
        d, p = self.device, self.params
        br = self.latency.breakdown(profile, batch, partition)
        total = float(br.total_s)
        activity = (float(br.compute_s) + p["memory_weight"] * float(br.memory_s)) / total
        share = partition.sms / d.sm_count
        return share * (d.idle_w + (d.tdp_w - d.idle_w) * min(1.0, activity) ** p["exponent"])

    def partition_range_w(self, partition: Partition) -> tuple[float, float]:
        """``(idle, largest busy)`` power of a partition, as the simulators account energy."""
        share = partition.sms / self.device.sm_count
        return share * self.device.idle_w, share * self.device.tdp_w

    def device_w(self, partitions: Sequence[Partition],
                 running: Sequence[tuple[WorkloadProfile | str, int] | None]) -> float:
        """Power of the whole device given what runs on each partition (capped at TDP).

        Idle power counts for the whole board, including SMs no partition owns.
        """
        if len(partitions) != len(running):
            raise ValueError(f"{len(partitions)} partitions but {len(running)} running entries")
        d = self.device
        owned = sum(p.sms for p in partitions if p.mode != "time")
        total = d.idle_w * max(0.0, 1.0 - owned / d.sm_count)
        sliced = []  # time slices run one at a time: their dynamic power is time-averaged
        for part, job in zip(partitions, running, strict=True):
            if part.mode == "time":
                if job is not None:
                    sliced.append(self.busy_w(job[0], job[1], part) - self.idle_w(part))
            elif job is None:
                total += self.idle_w(part)
            else:
                total += self.busy_w(job[0], job[1], part)
        if sliced:
            total += sum(sliced) / len(sliced)
        return min(total, d.tdp_w)

    def energy_per_query_j(self, profile: WorkloadProfile | str, batch: int,
                           partition: Partition) -> float:
        """Joules per sample while serving back-to-back batches of ``batch`` on ``partition``."""
        t = float(self.latency.latency_s(profile, batch, partition))
        return self.busy_w(profile, batch, partition) * t / batch

    def samples_per_joule(self, throughput: float, partition: Partition,
                          profile: WorkloadProfile | str, batch: int) -> float:
        """Samples/J at the wall: ``throughput / (busy power + host_w)`` of one device."""
        return throughput / (self.busy_w(profile, batch, partition) + self.params["host_w"])
