"""Preset tables: hardware, model mixes and traces that environments are registered from.

Environment kwargs hold preset *names* so that specs stay JSON-able; the tables below say what
the names mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from traces.arrivals import ModelClass, RequestClass, WorkloadMix, mix_from_spec, zipf_weights

#: Model mixes. SLAs: ResNet-50 15 ms is MLPerf's server bound (published_targets T003);
#: MobileNetV2 at 10 ms and BERT-base at 50 ms (seq 384) are set the same way, a few times the
#: model's batch-1 latency on a 1g MIG slice.
WORKLOADS: dict[str, tuple[ModelClass, ...]] = {
    "vision-nlp": (
        ModelClass("resnet50", weight=0.4, sla_ms=15.0),
        ModelClass("mobilenet_v2", weight=0.4, sla_ms=10.0),
        ModelClass("bert-base", weight=0.2, sla_ms=50.0),
    ),
    "vision": (
        ModelClass("resnet50", weight=0.4, sla_ms=15.0),
        ModelClass("mobilenet_v2", weight=0.3, sla_ms=10.0),
        ModelClass("googlenet", weight=0.3, sla_ms=10.0),
    ),
    # vision-nlp with two request classes per model (PREMA-style priorities): 30% interactive
    # (priority 1, the SLAs above) and 70% batch (priority 0, four times the SLA).
    "vision-nlp-prio": tuple(
        ModelClass(name, weight=w, sla_ms=sla, classes=(
            RequestClass("interactive", weight=0.3, sla_ms=sla, priority=1),
            RequestClass("batch", weight=0.7, sla_ms=4 * sla, priority=0)))
        for name, w, sla in (("resnet50", 0.4, 15.0), ("mobilenet_v2", 0.4, 10.0),
                             ("bert-base", 0.2, 50.0))
    ),
}

#: The cluster's mix (``ldsgym/ClusterRouting-v0``): 22 models, Zipf popularity (s = 1) in
#: this order, fine-tuned copies of one architecture as ``<arch>@<variant>`` (same profile,
#: own weights: each needs its own load). SLAs a few times the batch-1 latency on a T4 (the
#: slowest GPU of the presets), ResNet-50's 15 ms as above.
_CLUSTER_MODELS = (
    ("resnet50", 15.0), ("bert-base", 50.0), ("gpt2-large-decode", 50.0),
    ("mobilenet_v2", 10.0), ("gpt2-xl-decode", 80.0), ("bert-base@ft1", 50.0),
    ("googlenet", 10.0), ("gpt2-decode", 20.0), ("bert-large", 150.0),
    ("gpt2-large-decode@ft1", 50.0), ("resnet50@ft1", 15.0), ("inception_v3", 20.0),
    ("bert-base@ft2", 50.0), ("gpt2-medium-decode", 30.0), ("gpt2-xl-decode@ft1", 80.0),
    ("vgg16", 40.0), ("bert-base@ft3", 50.0), ("gpt2-large-decode@ft2", 50.0),
    ("resnet50@ft2", 15.0), ("bert-base@ft4", 50.0), ("gpt2-xl-decode@ft2", 80.0),
    ("gpt2-large-decode@ft3", 50.0),
)
WORKLOADS["cluster-zipf"] = tuple(
    ModelClass(name, weight=float(w), sla_ms=sla)
    for (name, sla), w in zip(_CLUSTER_MODELS, zipf_weights(len(_CLUSTER_MODELS), 1.0),
                              strict=True))


def get_workload(spec: str | WorkloadMix | Sequence[Mapping[str, Any]]) -> WorkloadMix:
    """A workload mix from a preset name, a mix, or a list of model dicts
    (``{name, weight, sla_ms, priority, ...}``, :func:`traces.arrivals.mix_from_spec`).

    Raises:
        ValueError: unknown name, listing the known ones; a bad model dict.
    """
    if isinstance(spec, WorkloadMix):
        return spec
    if not isinstance(spec, str):
        return mix_from_spec([dict(m) for m in spec])
    try:
        return WorkloadMix(WORKLOADS[spec])
    except KeyError:
        raise ValueError(
            f"workload '{spec}': unknown preset; known: {', '.join(sorted(WORKLOADS))}"
        ) from None


def load_range(load: float | Sequence[float]) -> tuple[float, float]:
    """``load`` as ``(lo, hi)``: one offered load (``lo == hi``) or a range each episode draws
    from uniformly.

    Raises:
        ValueError: not ``0 < lo <= hi``.
    """
    if isinstance(load, int | float):
        lo = hi = float(load)
    else:
        lo, hi = (float(x) for x in load)
    if not 0 < lo <= hi:
        raise ValueError(f"load must be > 0 (or a range [lo, hi], 0 < lo <= hi), got {load}")
    return lo, hi


@dataclass(frozen=True)
class HwPreset:
    """A device and its default partition layout."""

    hw: str
    layout: tuple[str, ...]


#: Hardware presets; the layout is a mixed MIG layout so that placement matters.
HW_PRESETS: dict[str, HwPreset] = {
    "A100": HwPreset("a100-80gb", ("3g", "2g", "1g", "1g")),
    "H100": HwPreset("h100-sxm", ("3g", "2g", "1g", "1g")),
}


@dataclass(frozen=True)
class MisdPreset:
    """A registered variant of a MISD environment (kwargs that differ from the base id).

    Attributes:
        hw: Device name (``conf/hw``).
        layout: Starting layout (MIG profiles, ``mps:<percent>`` or ``ts:<n>``).
        workload: Model mix preset (:data:`WORKLOADS`).
        trace: Trace preset (:data:`traces.presets.TRACE_PRESETS`).
        shared_data: The trace replays real data from the shared directory: registered only
            where that data is present.
        extra: Other constructor kwargs.
    """

    hw: str = "a100-80gb"
    layout: tuple[str, ...] = ("3g", "2g", "1g", "1g")
    workload: str = "vision-nlp"
    trace: str = "poisson"
    shared_data: bool = False
    extra: tuple[tuple[str, object], ...] = ()

    def kwargs(self) -> dict[str, object]:
        """The kwargs to register (JSON-able)."""
        return {"hw": self.hw, "layout": list(self.layout), "workload": self.workload,
                "trace": self.trace, **dict(self.extra)}


_MPS = ("mps:40", "mps:30", "mps:15", "mps:15")

#: ``ldsgym/PartitionPlacement-<name>-v0`` variants (besides :data:`HW_PRESETS`): hardware,
#: sharing mode, priorities, bursty and real traces (``-AzureConv`` trains on the trace's
#: training split; its ``-AzureConv-test`` twin replays the held-out split, for evaluation).
PLACEMENT_PRESETS: dict[str, MisdPreset] = {
    "A30": MisdPreset(hw="a30", layout=("2g", "1g", "1g")),
    "MPS": MisdPreset(layout=_MPS),
    "TS": MisdPreset(layout=("ts:3",)),
    "Prio": MisdPreset(layout=_MPS, workload="vision-nlp-prio",
                       extra=(("priorities", True), ("preempt", True))),
    "MMPP": MisdPreset(trace="mmpp"),
    "MPS-AzureConv": MisdPreset(layout=_MPS, trace="azure-conv", shared_data=True),
    "MPS-AzureConv-test": MisdPreset(layout=_MPS, trace="azure-conv-test", shared_data=True),
}

#: ``ldsgym/Repartition-<name>-v0`` variants.
REPARTITION_PRESETS: dict[str, MisdPreset] = {
    "H100": MisdPreset(hw="h100-sxm"),
    "A30": MisdPreset(hw="a30", layout=("2g", "1g", "1g")),
    "MPS": MisdPreset(layout=_MPS),
    "MMPP": MisdPreset(trace="mmpp"),
    "AzureConv": MisdPreset(trace="azure-conv", shared_data=True),
    "AzureConv-test": MisdPreset(trace="azure-conv-test", shared_data=True),
}
