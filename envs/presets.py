"""Preset tables: hardware, model mixes and traces that environments are registered from.

Environment kwargs hold preset *names* so that specs stay JSON-able; the tables below say what
the names mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from traces.arrivals import ModelClass, WorkloadMix

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
}


def get_workload(spec: str | WorkloadMix) -> WorkloadMix:
    """A workload mix from a preset name or a mix.

    Raises:
        ValueError: unknown name, listing the known ones.
    """
    if isinstance(spec, WorkloadMix):
        return spec
    try:
        return WorkloadMix(WORKLOADS[spec])
    except KeyError:
        raise ValueError(
            f"workload '{spec}': unknown preset; known: {', '.join(sorted(WORKLOADS))}"
        ) from None


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
