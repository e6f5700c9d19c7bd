"""Arrival processes and trace replay (pure numpy): who asks for what, when."""

from traces.arrivals import Arrivals, ModelClass, Poisson, TraceSource, WorkloadMix, mix_from_spec
from traces.presets import TRACE_PRESETS, get_trace

__all__ = [
    "TRACE_PRESETS",
    "Arrivals",
    "ModelClass",
    "Poisson",
    "TraceSource",
    "WorkloadMix",
    "get_trace",
    "mix_from_spec",
]
