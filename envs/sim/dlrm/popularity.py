"""Shard popularity that drifts during an episode: a hot set of shards that moves.

Every request of a DLRM looks up every table, but how much it looks up in each shard's tables
need not stay fixed: the multi-hot features of a shard's tables grow longer when users engage
with what those features describe (a sport during its season, a product line during a sale).
Here a shard's *popularity weight* ``w >= 1`` scales the SSD traffic of its sub-requests: a
sub-request of a shard at weight ``w`` carries ``round((w - 1) * r_s)`` more lookups of
long-tail (never-cached) rows, ``r_s`` being the shard's expected SSD reads per sub-request,
so its nominal service time is about ``w`` times the stationary one (reads dominate it) and
its request message grows by the extra ids. The simulator takes the result as
``ShardSim(extra_reads=...)``.

The episode's arrivals are cut into ``phases`` equal runs (by arrival index); in each phase
``hot`` shards have weight ``factor`` and the others 1. Which shards are hot:

* rotating (default): phase ``p`` heats shards ``first + p * shift + j`` (mod S), ``j <
  hot``, the same in every episode;
* ``random: true``: each phase's hot set is drawn anew (``hot`` distinct shards, uniformly),
  from the episode's generator, so an agent can only follow it by watching the load;
* ``weights``: an explicit list of per-phase weight vectors (``phases`` x S, each ``>= 1``).

    ShardPopularity.parse({"hot": 1, "factor": 3.0, "phases": 6, "random": True}, 8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_KEYS = {"hot", "factor", "phases", "shift", "first", "random", "weights"}


@dataclass(frozen=True)
class ShardPopularity:
    """A schedule of per-shard popularity weights over an episode (see the module docstring).

    Attributes:
        n_shards: Shards.
        hot: Hot shards per phase.
        factor: Weight of a hot shard (the others have 1).
        phases: Equal runs of arrivals, each with its hot set.
        shift: Rotation per phase (rotating schedules).
        first: First hot shard of phase 0 (rotating schedules).
        random: Draw each phase's hot set from the episode's generator.
        weights: Explicit per-phase weights ``(phases, S)``, or None.
    """

    n_shards: int
    hot: int = 1
    factor: float = 3.0
    phases: int = 4
    shift: int = 1
    first: int = 0
    random: bool = False
    weights: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, n_shards: int) -> ShardPopularity | None:
        """The schedule of a ``popularity`` env argument (None: stationary).

        Raises:
            ValueError: an unknown key or a value out of range (one line naming it).
        """
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise ValueError(f"popularity: expected a mapping ({', '.join(sorted(_KEYS))}) or "
                             f"null, got {spec!r}")
        unknown = set(spec) - _KEYS
        if unknown:
            raise ValueError(f"popularity: unknown key(s) {sorted(unknown)}; known: "
                             f"{sorted(_KEYS)}")
        if spec.get("weights") is not None:
            rows = [tuple(float(x) for x in row) for row in spec["weights"]]
            if not rows or any(len(r) != n_shards for r in rows):
                raise ValueError(f"popularity.weights: expected a non-empty list of "
                                 f"{n_shards}-long weight lists")
            if any(x < 1.0 or not np.isfinite(x) for r in rows for x in r):
                raise ValueError("popularity.weights: every weight must be finite and >= 1")
            return cls(n_shards, phases=len(rows), weights=tuple(rows))
        out = cls(n_shards, hot=int(spec.get("hot", 1)), factor=float(spec.get("factor", 3.0)),
                  phases=int(spec.get("phases", 4)), shift=int(spec.get("shift", 1)),
                  first=int(spec.get("first", 0)), random=bool(spec.get("random", False)))
        if not 1 <= out.hot <= n_shards:
            raise ValueError(f"popularity.hot: expected 1..{n_shards}, got {out.hot}")
        if not (out.factor >= 1.0 and np.isfinite(out.factor)):
            raise ValueError(f"popularity.factor: expected a finite value >= 1, got {out.factor}")
        if out.phases < 1:
            raise ValueError(f"popularity.phases: expected >= 1, got {out.phases}")
        return out

    def phase_weights(self, rng: np.random.Generator) -> np.ndarray:
        """Weights per phase ``(phases, S)`` (``rng`` draws the hot sets of ``random``)."""
        if self.weights is not None:
            return np.array(self.weights, dtype=np.float64)
        S = self.n_shards
        w = np.ones((self.phases, S))
        for p in range(self.phases):
            if self.random:
                hot = rng.choice(S, size=self.hot, replace=False)
            else:
                hot = (self.first + p * self.shift + np.arange(self.hot)) % S
            w[p, hot] = self.factor
        return w

    def arrival_weights(self, n_arrivals: int, rng: np.random.Generator) -> np.ndarray:
        """Weights per arrival ``(n_arrivals, S)``: arrival ``i`` is in phase
        ``i * phases // n_arrivals``."""
        phase = np.arange(n_arrivals) * self.phases // max(n_arrivals, 1)
        return self.phase_weights(rng)[phase]

    def extra_reads(self, n_arrivals: int, reads: Sequence[float] | np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
        """``ShardSim(extra_reads=...)``: ``round((w - 1) * reads[s])`` per arrival and shard
        (``reads``: each shard's expected SSD reads per sub-request), int64."""
        w = self.arrival_weights(n_arrivals, rng)
        return np.rint((w - 1.0) * np.asarray(reads, dtype=np.float64)[None, :]).astype(
            np.int64)


def expected_reads(service_s: np.ndarray, overhead_s: float,
                   c_slow: float | np.ndarray) -> np.ndarray:
    """Each shard's expected SSD reads per sub-request from the capacity estimate's expected
    service times ``(S, N)`` (inf where not held): the mean over its replicas of ``(service -
    overhead) / c_slow`` (``c_slow``: seconds per slow-tier read, one for every node or one
    per node; equal ones take the mean service first, as a homogeneous cluster always did)."""
    held = np.isfinite(service_s)
    c = np.asarray(c_slow, dtype=np.float64)
    if c.ndim:
        if not (c == c[0]).all():
            reads = np.where(held, np.maximum(service_s - overhead_s, 0.0) / c[None, :], 0.0)
            return reads.sum(axis=1) / np.maximum(held.sum(axis=1), 1)
        c_slow = float(c[0])
    svc = np.where(held, service_s, 0.0).sum(axis=1) / np.maximum(held.sum(axis=1), 1)
    return np.maximum(svc - overhead_s, 0.0) / c_slow
