"""Arrival processes and trace replay (pure numpy): who asks for what, when.

Synthetic processes (:mod:`traces.synthetic`), replays of recorded traces
(:mod:`traces.replay`, :mod:`traces.servegen`), the workload mix (:mod:`traces.arrivals`,
:mod:`traces.sizes`), named presets (:mod:`traces.presets`) and trace statistics
(``python -m traces.stats``). Nothing here imports gymnasium or torch.
"""

from traces.arrivals import (
    Arrivals,
    ModelClass,
    Poisson,
    RequestClass,
    TraceSource,
    WorkloadMix,
    mix_from_spec,
    zipf_mix,
    zipf_weights,
)
from traces.bench import bench_generation, bench_generation_by_preset, bench_replay
from traces.formats import read_azure_llm, read_generic_csv, read_jsonl
from traces.mixture import Mixture
from traces.paths import shared_dir
from traces.presets import SYNTHETIC_PRESETS, TRACE_PRESETS, get_trace
from traces.replay import (
    AzureLLMReplay,
    CsvReplay,
    JsonlReplay,
    RowOptions,
    TraceTable,
    WindowOptions,
    with_split,
)
from traces.report import TraceFormatError, TraceReport
from traces.servegen import ServeGenReplay
from traces.shift import PopularityShift
from traces.sizes import SizeDist
from traces.synthetic import (
    MMPP2,
    Diurnal,
    FlashCrowd,
    MixSchedule,
    MixShift,
    PiecewiseRate,
    Renewal,
)

__all__ = [
    "MMPP2",
    "SYNTHETIC_PRESETS",
    "TRACE_PRESETS",
    "Arrivals",
    "AzureLLMReplay",
    "CsvReplay",
    "Diurnal",
    "FlashCrowd",
    "JsonlReplay",
    "MixSchedule",
    "MixShift",
    "Mixture",
    "ModelClass",
    "PiecewiseRate",
    "Poisson",
    "PopularityShift",
    "Renewal",
    "RequestClass",
    "RowOptions",
    "ServeGenReplay",
    "SizeDist",
    "TraceFormatError",
    "TraceReport",
    "TraceSource",
    "TraceTable",
    "WindowOptions",
    "WorkloadMix",
    "bench_generation",
    "bench_generation_by_preset",
    "bench_replay",
    "get_trace",
    "mix_from_spec",
    "read_azure_llm",
    "read_generic_csv",
    "read_jsonl",
    "shared_dir",
    "with_split",
    "zipf_mix",
    "zipf_weights",
]
