"""Slowdown of co-running jobs that share a device: MIG slices, MPS shares, time slices.

An environment calls :meth:`InterferenceModel.slowdowns` whenever a job starts or stops on one
of the partitions and divides each running job's progress rate by its factor::

    model = InterferenceModel(device, precision="fp16")
    f = model.slowdowns(partitions, [("resnet50", 8), None, ("bert-base", 4)])
    # f[i] >= 1; f[i] == 1 for an idle partition and for a job that runs alone

A running job ``i`` (profile, batch) on partition ``P_i`` is described by its solo run on that
partition (:meth:`hwmodels.latency.LatencyModel.breakdown`): the fractions of its time that
are compute-bound ``c_i``, memory-bound ``m_i`` and overhead ``o_i`` (kernel launches and
host work; ``c + m + o = 1``), its bandwidth demand ``d_i`` (bytes per second over the
device's sustained bandwidth) and its SM share ``s_i = sms(P_i) / sm_count``.
:meth:`InterferenceModel.demand` returns these.

With ``A`` the *other* busy partitions of the same sharing domain:

* **MIG** (own SMs, L2 and DRAM channels): only the board's power/clock budget and the host
  are shared, so ``f_i = 1 + mig * sum_{j in A} s_j u_j / (S_mig - s_i)`` where ``u_j =
  c_j + m_j`` is the fraction of time ``j`` keeps its SMs busy and ``S_mig`` the SM share of
  the largest MIG instance. ``mig`` is the slowdown with all other slices busy: fitted to
  published_targets T115-T117 (A100, -0.9 to -2.4%) and T118-T119 (A30, 165 W, -8.3/-8.8%).
* **MPS** (shared L2 and DRAM, SM shares are caps): ``D = sum_{j in A} d_j``; the load of the
  co-runners on the SMs ``L = sum_{j in A} s_j u_j``; the busy SMs number ``n = S * (s_i +
  L)`` of the device's ``S``; job ``i`` alone used ``n_i = S * s_i``. Compute stretches by
  oversubscription and by the device's contention ``sigma`` (``sm_contention``, the
  universal-scalability coefficient of the latency model)::

      stretch = max(1, n / S) * (1 + sigma * (min(n, S) - 1)) / (1 + sigma * (n_i - 1))
      g_i = 1 + (o_i + q_i) * mps_host                        # latency-bound work
              + c_i * mps_sm * (stretch - 1)                  # shares past 100%
              + (m_i * mps_bw + c_i * mps_cache) * D          # bandwidth and L2
              + m_i * max(0, d_i + D - 1)                     # bandwidth saturated
              + c_i * mps_overlap * L                         # SMs shared within 100%
      f_i = max(g_i, h_i * (1 + mps_host))

  ``h_i`` is the host dispatch time of an eager framework over the solo latency
  (:attr:`Demand.host`; 0 for engines): a host-bound job is as slow as its host work, which a
  co-runner stretches by ``mps_host``. ``q_i`` (:attr:`Demand.underfill`) is the time in
  kernels too small to fill the partition's SMs (one partial wave; see
  :mod:`hwmodels.latency`): latency-bound GPU work, whose blocks share their SMs with the
  co-runner's, stretched like host work. The measured slowdown of latency-bound work
  (host-bound ResNet-50 and DenseNet-121 at small batches, 1.4-1.7x) hardly depends on the
  co-runner's model or batch, and the fitted rows (ResNet-50: host-bound wherever its kernels
  under-fill the SMs) cannot tell a separate factor for under-filled kernels from
  ``mps_host`` (a factor of its own, fitted on them, came out at 0.004), so the two share
  ``mps_host``. MPS does
  not give a client SMs of its own (its share caps how many it may use), so co-runners whose
  shares sum to 100% still meet on the SMs
  (``mps_overlap``). On GPUs ``sigma = 0`` and only oversubscription stretches compute the
  ``mps_sm`` way. On a CPU the overhead is host (CPU) work too, so ``c_i`` and ``u_j`` include
  ``o`` there.
* **Time slicing** (one context at a time): ``f_i = (1 + sum_{j in A} u_j) *
  (1 + ts_switch)`` when ``A`` is not empty (the GPU is round-robined among busy contexts,
  each switch costing a fraction ``ts_switch``).
* **Exclusive** partitions (the whole device) never slow down.

Every factor is 1 for a job alone and non-decreasing in every co-runner's demand. Parameters
(the spec's ``interference`` table, overridable as ``hw.interference.mps_bw=0.6``) default to
:data:`DEFAULTS`; the CPU ones are fitted from co-located runs of ``experiments.calibrate
mode=profile``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwmodels.latency import LatencyModel
from hwmodels.partitions import MIG_TABLES, Partition
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import WorkloadProfile, build_profile

DEFAULTS: dict[str, float] = {
    "mig": 0.016,
    "mps_sm": 1.0,
    "mps_bw": 0.001,
    "mps_cache": 0.00309127,
    "mps_host": 0.482309,
    "mps_overlap": 0.15981,
    "ts_switch": 0.03,
}
"""Default parameters (a spec's ``interference`` table overrides them; the CPU's are fitted to
its own co-located measurements). ``mig``: mean of T115-T117 (A100). ``mps_bw``,
``mps_cache``, ``mps_host``, ``mps_overlap``: fitted by ``python -m experiments.calibrate
mode=fit profile=gpulet:PATH hw=a100-40gb`` to the 1,225 co-located rows of the gpulet
measurements (PyTorch eager, TF32, A100) whose measured model is ResNet-50, on the log error
of the slowdown; held out: the 2,450 rows measuring DenseNet-121 and VGG-19
(``calibration/FIDELITY.md``, "Interference"); ``mps_host`` stretches host dispatch and
under-filled kernels alike (see above). Bandwidth and L2 contention come out near zero there
(CNNs on a 40 MB L2). Used for every GPU without its own fit. ``mps_sm``:
assumption (oversubscribed shares; MPS measurements give the co-runner the rest of the SMs, so
none constrains it). ``ts_switch``: assumption, a few percent per round of context
switches."""

CPU_DEFAULTS: dict[str, float] = {"mps_bw": 1.0, "mps_cache": 0.2, "mps_host": 0.0,
                                  "mps_overlap": 0.0}
"""What a CPU without its own ``interference`` table uses instead of the GPU fits above: the
earlier assumptions for bandwidth and cache (``mps_bw`` 1, ``mps_cache`` 0.2), and no separate
host or SM-overlap terms (a CPU's overhead is already counted as compute there)."""

Job = tuple[WorkloadProfile | str, int]


@dataclass(frozen=True)
class Demand:
    """What a job running alone on its partition asks of the shared device.

    Attributes:
        compute: Fraction of its time that is compute-bound (``c``).
        memory: Fraction that is memory-bound (``m``).
        overhead: Fraction spent in launches and host work (``o``).
        bandwidth: Average bytes/s over the device's sustained bandwidth (``d``).
        sm_share: Partition SMs over the device's SMs (``s``).
        latency_s: Its solo batch latency.
        host: Host dispatch time of an eager framework over the latency (``h``; 0 for
            engines, whose launches are in ``overhead``).
        underfill: Time in kernels that leave SMs of the partition idle, over the latency
            (``u``; :attr:`hwmodels.latency.LatencyBreakdown.underfill_s`; 0 on CPUs).
    """

    compute: float
    memory: float
    overhead: float
    bandwidth: float
    sm_share: float
    latency_s: float
    host: float = 0.0
    underfill: float = 0.0

    @property
    def busy(self) -> float:
        """Fraction of time its kernels occupy the SMs (``u = c + m``)."""
        return self.compute + self.memory


class InterferenceModel:
    """Calibrated slowdown factors of co-runners (see the module docstring).

    Args:
        device: The shared device; its ``interference`` table overrides :data:`DEFAULTS`.
        precision: Precision of the engines (as for :class:`~hwmodels.latency.LatencyModel`).
        params: Further overrides of the parameters.

    Raises:
        ValueError: an unknown or negative parameter.
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16",
                 params: Mapping[str, float] | None = None, *,
                 latency: LatencyModel | None = None) -> None:
        base = {**DEFAULTS, **CPU_DEFAULTS} if device.kind == "cpu" else DEFAULTS
        merged = {**base, **device.interference, **(params or {})}
        unknown = sorted(set(merged) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"hw '{device.name}': unknown interference parameter(s) {unknown}; "
                             f"known: {sorted(DEFAULTS)}")
        bad = {k: v for k, v in merged.items() if not v >= 0}
        if bad:
            raise ValueError(f"hw '{device.name}': interference parameters must be >= 0: {bad}")
        self.device = device
        self.params = merged
        self.latency = LatencyModel(device, precision) if latency is None else latency
        self._mig_total = self._mig_share()
        # (id(profile), batch, partition) -> (profile, demand); the profile is kept alive so
        # that its id cannot be reused.
        self._cache: dict[tuple[int, int, Partition], tuple[WorkloadProfile, Demand]] = {}

    def _mig_share(self) -> float:
        if self.device.mig is None or self.device.mig not in MIG_TABLES:
            return 1.0
        biggest = max(p.sms for p in MIG_TABLES[self.device.mig].profiles)
        return biggest / self.device.sm_count

    def demand(self, profile: WorkloadProfile | str, batch: int, partition: Partition) -> Demand:
        """The solo-run demand of ``batch`` samples of ``profile`` on ``partition``."""
        prof = build_profile(profile) if isinstance(profile, str) else profile
        key = (id(prof), int(batch), partition)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 65536:
                self._cache.clear()
            hit = self._cache[key] = (prof, _demand(self.latency, prof, int(batch), partition))
        return hit[1]

    def slowdowns(self, partitions: Sequence[Partition],
                  running: Sequence[Job | None]) -> np.ndarray:
        """Slowdown factor (>= 1) of the job on each partition; 1 where nothing runs.

        Args:
            partitions: The layout (all on this model's device).
            running: Per partition, ``(profile, batch)`` of the batch running there, or None.

        Raises:
            ValueError: the two sequences differ in length.
        """
        if len(partitions) != len(running):
            raise ValueError(f"{len(partitions)} partitions but {len(running)} running entries")
        demands = [None if job is None else self.demand(job[0], job[1], part)
                   for part, job in zip(partitions, running, strict=True)]
        return self.slowdowns_from_demands(partitions, demands)

    def slowdowns_from_demands(self, partitions: Sequence[Partition],
                               demands: Sequence[Demand | None]) -> np.ndarray:
        """:meth:`slowdowns` from precomputed :class:`Demand` records (cache them per job)."""
        p = self.params
        out = np.ones(len(partitions))
        cpu = self.device.kind == "cpu"
        for i, (part, di) in enumerate(zip(partitions, demands, strict=True)):
            if di is None:
                continue
            mode = part.mode
            others = [dj for j, (pj, dj) in enumerate(zip(partitions, demands, strict=True))
                      if j != i and dj is not None and _same_domain(mode, pj.mode)]
            if not others or mode == "exclusive":
                continue
            if mode == "mig":
                rest = max(self._mig_total - di.sm_share, 1e-9)
                busy = sum(dj.sm_share * dj.busy for dj in others) / rest
                out[i] = 1.0 + p["mig"] * min(busy, 1.0)
            elif mode == "time":
                out[i] = (1.0 + sum(dj.busy for dj in others)) * (1.0 + p["ts_switch"])
            else:  # mps
                c = di.compute + (di.overhead if cpu else 0.0)
                bw = sum(dj.bandwidth for dj in others)
                total = float(self.device.sm_count)
                sigma = self.device.sm_contention
                n = total * (di.sm_share + sum(
                    dj.sm_share * (dj.busy + (dj.overhead if cpu else 0.0)) for dj in others))
                n_i = total * di.sm_share
                stretch = (max(1.0, n / total) * (1.0 + sigma * (min(n, total) - 1.0))
                           / (1.0 + sigma * max(n_i - 1.0, 0.0)))
                load = sum(dj.sm_share * (dj.busy + (dj.overhead if cpu else 0.0))
                           for dj in others)
                gpu = (1.0 + (di.overhead + di.underfill) * p["mps_host"]
                       + c * p["mps_sm"] * max(0.0, stretch - 1.0)
                       + (di.memory * p["mps_bw"] + c * p["mps_cache"]) * bw
                       + di.memory * max(0.0, di.bandwidth + bw - 1.0)
                       + c * p["mps_overlap"] * load)
                out[i] = max(gpu, di.host * (1.0 + p["mps_host"]))
        return out


def _same_domain(a: str, b: str) -> bool:
    """MPS shares and time slices interfere among themselves; MIG slices among MIG slices."""
    return a == b or {a, b} == {"mps", "time"}


def _demand(model: LatencyModel, profile: WorkloadProfile, batch: int,
            partition: Partition) -> Demand:
    br = model.breakdown(profile, batch, partition)
    total = float(br.total_s)
    d = model.device
    sustained = d.mem_bw_gbs * 1e9 * d.eff_memory
    return Demand(
        compute=float(br.compute_s) / total,
        memory=float(br.memory_s) / total,
        overhead=float(br.overhead_s) / total,
        bandwidth=float(br.bytes) / total / sustained,
        sm_share=partition.sms / d.sm_count,
        latency_s=total,
        host=float(br.host_s) / total,
        underfill=float(br.underfill_s) / total if d.kind == "gpu" else 0.0,
    )
