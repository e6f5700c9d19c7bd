"""Popularity that shifts during an episode: the models (or tenants' models) that are asked
for most change over time, so a router that keeps the popular models resident must load new
ones and evict old ones mid-episode (issue 15, ``ldsgym/ClusterRouting-v0``).

:class:`PopularityShift` takes the arrivals of a base source (a trace preset: the times,
tenants and sizes are the base's) and relabels their models by *rank rotation*: the episode
is cut into phases of ``period`` each, and in phase ``k`` a request the base gave the model of
popularity rank ``r`` (rank 0: the mix's most popular) goes to the model of rank
``(r + k * shift) mod M``. Within a phase the popularity is the mix's Zipf law, rotated: the
``shift`` most popular models of the previous phase drop to the tail and the next ones in rank
take their place. Over a replay of per-tenant windows (ServeGen, Azure code + conv) a tenant
keeps its burst pattern while the model it asks for moves with the rotation. SLA labels are
drawn for the new models (the mix's SLAs); sizes, output sizes and tenants are the base's.

    PopularityShift(base="poisson", period=0.25, shift=5)                     # 4 phases
    PopularityShift(base="servegen-m-large", period=10.0, time_unit="s", shift=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from traces.arrivals import Arrivals, TraceSource, WorkloadMix


@dataclass(frozen=True)
class PopularityShift:
    """A base trace whose model popularity rotates by ``shift`` ranks every ``period``.

    Args:
        base: Trace preset name of the arrivals (:data:`traces.TRACE_PRESETS`; not a mixture
            or another shift).
        period: Length of a phase, in ``time_unit``.
        shift: Ranks the popularity rotates by per phase (``0``: the base unchanged).
        time_unit: ``s``, or ``episode`` (fractions of the episode's span: the base's last
            arrival time; ``period=0.25`` gives four phases per episode at any load).

    Raises:
        ValueError: an unknown, mixture or shift base; ``period <= 0``; ``shift < 0``; an
            unknown time unit.
    """

    base: str = "poisson"
    period: float = 0.25
    shift: int = 5
    time_unit: Literal["s", "episode"] = "episode"

    def __post_init__(self) -> None:
        from traces.presets import TRACE_PRESETS  # (presets lists this class)

        if self.base not in TRACE_PRESETS:
            raise ValueError(f"trace.base: unknown preset '{self.base}'; known: "
                             f"{', '.join(sorted(TRACE_PRESETS))}")
        if self.base.startswith(("mixture", "zipf-shift")) or self.base.endswith("-shift"):
            raise ValueError(f"trace.base: '{self.base}' is a mixture or a shift itself")
        if not (self.period > 0 and math.isfinite(self.period)):
            raise ValueError(f"trace.period must be > 0, got {self.period}")
        if int(self.shift) != self.shift or self.shift < 0:
            raise ValueError(f"trace.shift must be an integer >= 0, got {self.shift}")
        if self.time_unit not in ("s", "episode"):
            raise ValueError(f"trace.time_unit must be 's' or 'episode', got "
                             f"'{self.time_unit}'")

    def source(self) -> TraceSource:
        """The base trace source."""
        from traces.presets import get_trace

        return get_trace(self.base)

    def phases(self, times: np.ndarray) -> np.ndarray:
        """Phase index (int64) of each arrival time."""
        times = np.asarray(times, dtype=np.float64)
        span = float(times[-1]) if len(times) and self.time_unit == "episode" else 1.0
        period_s = self.period * (span if span > 0 else 1.0)
        return np.floor(times / period_s).astype(np.int64)

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals of the base at ``rate_qps``, models rotated by phase."""
        arr = self.source().sample(rng, mix, n, rate_qps)
        m = len(mix.models)
        if not self.shift or m < 2 or not len(arr):
            return arr
        # rank_of[model] and model_at[rank], by the mix's popularity (ties: index).
        model_at = np.argsort(-mix.probabilities, kind="stable")
        rank_of = np.empty(m, dtype=np.int64)
        rank_of[model_at] = np.arange(m)
        rank = (rank_of[arr.model] + self.phases(arr.time_s) * int(self.shift)) % m
        model = model_at[rank].astype(np.int32)
        return Arrivals.from_mix(arr.time_s, mix, rng, model=model, size=arr.size,
                                 output_size=arr.output_size, tenant=arr.tenant,
                                 tenants=arr.tenants, start_s=arr.start_s)
