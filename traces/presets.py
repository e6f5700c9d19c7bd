"""Named trace sources, so environment specs stay JSON-able (``trace="poisson"``).

Each preset has a Hydra twin ``conf/trace/<name>.yaml`` with the same ``_target_`` and
parameters (a test keeps them in sync). Replay presets of real traces train on the ``train``
split; their ``-test`` twins evaluate on the held-out ``test`` split (the last 20 % of the
trace's time), so evaluation never sees training time ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from traces.arrivals import Poisson, TraceSource
from traces.mixture import Mixture
from traces.replay import AzureLLMReplay, Split
from traces.servegen import ServeGenReplay
from traces.shift import PopularityShift
from traces.synthetic import (
    MMPP2,
    Diurnal,
    FlashCrowd,
    MixSchedule,
    MixShift,
    PiecewiseRate,
    Renewal,
)

#: Name -> factory of a trace source. Environments accept these names for ``trace=``.
TRACE_PRESETS: dict[str, Callable[[], TraceSource]] = {
    "poisson": Poisson,
    "gamma-smooth": partial(Renewal, cv=0.5, dist="gamma"),
    "gamma-bursty": partial(Renewal, cv=3.0, dist="gamma"),
    "weibull-bursty": partial(Renewal, cv=3.0, dist="weibull"),
    "mmpp": partial(MMPP2, rate_ratio=10.0, high_fraction=0.1, mean_high=0.02,
                    time_unit="episode"),
    "diurnal": partial(Diurnal, amplitude=0.6, period=1.0, time_unit="episode"),
    "flash-crowd": partial(FlashCrowd, magnitude=8.0, start=None, ramp=0.01, hold=0.05,
                           decay=0.05, time_unit="episode"),
    "step-schedule": partial(PiecewiseRate, levels=(0.5, 1.0, 2.0, 1.0),
                             durations=(0.25, 0.25, 0.25, 0.25), time_unit="episode"),
    # The model mix rotates twice per episode (each model most requested in turn), the rate
    # stays: the drifting workload of the online-learning study (issue [N]).
    "mix-shift": partial(MixShift, durations=(1 / 3, 1 / 3, 1 / 3), time_unit="episode"),
    # the model mix drifts over a day (real clock); -hour: the same drift over one hour
    "mix-diurnal": MixSchedule,
    "mix-hourly": partial(MixSchedule, period=3600.0, grid=360),
    # for 3-model mixes such as vision-nlp: every 150 s the mix swings between the workload's
    # mean and one where the third (heaviest) model is 70% of the queries, so different MIG
    # layouts are best in turn long enough to pay for a switch (issue 16)
    "mix-swing": partial(MixShift, durations=(150.0, 150.0),
                         weights=((0.4, 0.4, 0.2), (0.15, 0.15, 0.7)), repeat=True,
                         time_unit="s"),
}

#: Synthetic presets (no data files needed).
SYNTHETIC_PRESETS: tuple[str, ...] = tuple(TRACE_PRESETS)

_SPLITS: tuple[tuple[Split, str], ...] = (("train", ""), ("test", "-test"))
for _split, _suffix in _SPLITS:
    for _svc in ("code", "conv", "both"):
        TRACE_PRESETS[f"azure-{_svc}{_suffix}"] = partial(AzureLLMReplay, service=_svc,
                                                          split=_split)
    # code and conv as two tenants, each its own model: the mix drifts as the services do
    TRACE_PRESETS[f"azure-tenants{_suffix}"] = partial(
        AzureLLMReplay, service="both", split=_split, rate_mode="scale",
        tenant_models={"code": "bert-base", "conv": "resnet50"})
    for _ds in ("m-large", "mm-image", "deepseek-r1"):
        TRACE_PRESETS[f"servegen-{_ds}{_suffix}"] = partial(ServeGenReplay, dataset=_ds,
                                                            split=_split)


def get_trace(spec: str | TraceSource) -> TraceSource:
    """Resolve a preset name or pass a trace source through.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(spec, str):
        try:
            return TRACE_PRESETS[spec]()
        except KeyError:
            raise ValueError(
                f"trace '{spec}': unknown preset; known: {', '.join(sorted(TRACE_PRESETS))}"
            ) from None
    if not isinstance(spec, TraceSource):
        raise ValueError(
            f"trace: expected a preset name or a TraceSource, got {type(spec).__name__}")
    return spec

#: Mixtures (issue [N]): per episode one source drawn from several, to train policies that
#: hold up on arrival processes they were not trained on. ``mixture`` needs no data files;
#: ``mixture-real`` adds the training windows of the shared real traces (their ``-test``
#: twins stay held out for evaluation).
_SYNTHETIC_MIX = ("poisson", "gamma-bursty", "weibull-bursty", "mmpp", "diurnal")
TRACE_PRESETS["mixture"] = partial(Mixture, traces=_SYNTHETIC_MIX)
TRACE_PRESETS["mixture-real"] = partial(
    Mixture, traces=(*_SYNTHETIC_MIX, "azure-code", "azure-conv", "servegen-m-large"),
    weights=(1, 1, 1, 1, 1, 2.5, 2.5, 2.5))

#: Popularity that shifts during the episode (issue 15): the base's arrivals, models rotated
#: by ``shift`` popularity ranks every quarter of the episode; ``servegen-m-large-shift`` keeps
#: the ServeGen tenants' burst patterns (training windows; ``-test``: the held-out ones).
TRACE_PRESETS["zipf-shift"] = partial(PopularityShift, base="poisson", period=0.25, shift=5)
for _split, _suffix in _SPLITS:
    TRACE_PRESETS[f"servegen-m-large-shift{_suffix}"] = partial(
        PopularityShift, base=f"servegen-m-large{_suffix}", period=0.25, shift=5)
