"""A mixture of trace sources: every episode draws one source (and a rate factor) by weight.

Training on a distribution of arrival processes and loads, instead of one, is what makes a
policy hold up on traces it has not seen (issue [N]). Every environment takes a trace source
for ``trace=``, so every environment takes a mixture::

    Mixture(traces=("poisson", "gamma-bursty", "mmpp"), weights=(2, 1, 1),
            rate_scale=(0.8, 1.2))

An episode's source and factor are drawn from the episode's generator (the one the env hands
to ``sample``), so the same seed gives the same episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traces.arrivals import Arrivals, TraceSource, WorkloadMix


@dataclass(frozen=True)
class Mixture:
    """Per episode, one of ``traces`` (preset names) drawn by ``weights``, at the rate the
    environment asks for times a factor drawn uniformly from ``rate_scale``.

    Args:
        traces: Trace preset names (:data:`traces.TRACE_PRESETS`; not another mixture).
        weights: Relative weight of each (``None``: equal); normalised.
        rate_scale: ``(lo, hi)``: the episode's rate is multiplied by a factor drawn
            uniformly from it (``lo == hi``: that factor every episode).

    Raises:
        ValueError: an unknown or mixture preset, weights that do not match or are negative
            or all zero, a rate range that is not ``0 < lo <= hi``.
    """

    traces: Sequence[str] = ("poisson",)
    weights: Sequence[float] | None = None
    rate_scale: Sequence[float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        from traces.presets import TRACE_PRESETS  # (presets lists this class)

        names = tuple(str(t) for t in self.traces)
        if not names:
            raise ValueError("trace.traces: give at least one trace preset")
        for name in names:
            if name not in TRACE_PRESETS:
                raise ValueError(f"trace.traces: unknown preset '{name}'; known: "
                                 f"{', '.join(sorted(TRACE_PRESETS))}")
            if name.startswith("mixture"):
                raise ValueError(f"trace.traces: '{name}' is a mixture itself")
        object.__setattr__(self, "traces", names)
        if self.weights is not None:
            w = tuple(float(x) for x in self.weights)
            if len(w) != len(names):
                raise ValueError(f"trace.weights: {len(w)} weights for {len(names)} traces")
            if min(w) < 0 or sum(w) <= 0:
                raise ValueError(f"trace.weights must be >= 0 and not all 0, got {list(w)}")
            object.__setattr__(self, "weights", w)
        scale = tuple(float(x) for x in self.rate_scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"trace.rate_scale must be [lo, hi] with 0 < lo <= hi, got "
                             f"{list(self.rate_scale)}")
        object.__setattr__(self, "rate_scale", scale)

    @property
    def probabilities(self) -> np.ndarray:
        """Each trace's probability per episode."""
        w = np.ones(len(self.traces)) if self.weights is None else np.asarray(self.weights)
        return w / w.sum()

    def source(self, k: int) -> TraceSource:
        """The ``k``-th trace source."""
        from traces.presets import get_trace

        return get_trace(self.traces[k])

    def draw(self, rng: np.random.Generator) -> tuple[int, float]:
        """The episode's trace index and rate factor (what :meth:`sample` uses)."""
        k = int(rng.choice(len(self.traces), p=self.probabilities))
        lo, hi = self.rate_scale
        return k, (lo + (hi - lo) * float(rng.random()) if hi > lo else lo)

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` requests from the drawn source at ``rate_qps`` times the drawn factor."""
        k, factor = self.draw(rng)
        return self.source(k).sample(rng, mix, n, rate_qps * factor)
