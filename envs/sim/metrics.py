"""Episode metrics with flat memory: counters and a log-binned latency histogram.

Percentiles come from a histogram with bins 1% wide (relative) from 10 us to 1000 s, so a
percentile is exact to within 1% and memory does not grow with the episode. The p50/p99 bins are
tracked incrementally (amortised O(1) per sample), so ``p99`` can be read every step.
"""

from __future__ import annotations

import math

import numpy as np

_LO_S = 1e-5
_HI_S = 1e3
_GROWTH = 1.01
_NBINS = math.ceil(math.log(_HI_S / _LO_S) / math.log(_GROWTH)) + 2
_INV_LOG_G = 1.0 / math.log(_GROWTH)
#: Upper edge of every histogram bin, in seconds (bin 0 holds everything below _LO_S).
BIN_EDGES_S = _LO_S * _GROWTH ** np.arange(_NBINS)


class StreamingQuantile:
    """One quantile of a log-binned histogram, maintained as samples arrive."""

    __slots__ = ("_below", "_bin", "_counts", "n", "q")

    def __init__(self, counts: list[int], q: float) -> None:
        self._counts = counts  # shared with the owning histogram
        self.q = q
        self.n = 0
        self._bin = 0  # invariant: below < rank <= below + counts[bin]  (when n > 0)
        self._below = 0

    def add(self, k: int) -> None:
        """Account for one sample that the histogram just put into bin ``k``."""
        self.n += 1
        if k < self._bin:
            self._below += 1
        rank = math.ceil(self.q * self.n)
        counts = self._counts
        while rank > self._below + counts[self._bin]:
            self._below += counts[self._bin]
            self._bin += 1
        while rank <= self._below:
            self._bin -= 1
            self._below -= counts[self._bin]

    @property
    def value_s(self) -> float:
        """Upper edge of the quantile's bin in seconds (0 before any sample)."""
        return float(BIN_EDGES_S[self._bin]) if self.n else 0.0


class LatencyHistogram:
    """Latency distribution of completed requests with running p50 and p99."""

    __slots__ = ("counts", "n", "p50", "p99", "total_s")

    def __init__(self) -> None:
        self.counts = [0] * _NBINS
        self.n = 0
        self.total_s = 0.0
        self.p50 = StreamingQuantile(self.counts, 0.50)
        self.p99 = StreamingQuantile(self.counts, 0.99)

    def add(self, latency_s: float) -> None:
        """Record one latency."""
        k = (int(math.log(latency_s / _LO_S) * _INV_LOG_G) + 1) if latency_s > _LO_S else 0
        if k >= _NBINS:
            k = _NBINS - 1
        self.counts[k] += 1
        self.n += 1
        self.total_s += latency_s
        self.p50.add(k)
        self.p99.add(k)

    def quantile_s(self, q: float) -> float:
        """Any quantile (computed from the histogram; O(bins))."""
        if self.n == 0:
            return 0.0
        cum = np.cumsum(self.counts)
        return float(BIN_EDGES_S[int(np.searchsorted(cum, math.ceil(q * self.n)))])

    def cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(latency_ms, fraction <= latency)`` over the non-empty range, for plots."""
        c = np.asarray(self.counts, dtype=np.float64)
        nz = np.nonzero(c)[0]
        if len(nz) == 0:
            return np.zeros(0), np.zeros(0)
        lo, hi = nz[0], nz[-1] + 1
        return BIN_EDGES_S[lo:hi] * 1e3, np.cumsum(c[lo:hi]) / c.sum()


class Counters:
    """Request accounting of one episode. ``arrived == completed + dropped + in_system``.

    Attributes:
        arrived: Requests that have arrived so far.
        completed: Requests served (within SLA or late).
        good: Completed within their SLA.
        dropped_rejected: Rejected by the scheduler's decision.
        dropped_overflow: Dropped because the chosen queue was full.
        dropped_expired: Dropped because their deadline could no longer be met.
        busy_s: Per-partition time spent executing batches.
        energy_j: Energy spent by the device (if the simulator models power).
    """

    __slots__ = ("arrived", "busy_s", "completed", "dropped_expired", "dropped_overflow",
                 "dropped_rejected", "energy_j", "good", "latency")

    def __init__(self, n_partitions: int) -> None:
        self.arrived = 0
        self.completed = 0
        self.good = 0
        self.dropped_rejected = 0
        self.dropped_overflow = 0
        self.dropped_expired = 0
        self.busy_s = [0.0] * n_partitions
        self.energy_j = 0.0
        self.latency = LatencyHistogram()

    @property
    def dropped(self) -> int:
        """All drops."""
        return self.dropped_rejected + self.dropped_overflow + self.dropped_expired

    @property
    def late(self) -> int:
        """Completed after their deadline."""
        return self.completed - self.good

    @property
    def in_system(self) -> int:
        """Arrived and neither completed nor dropped."""
        return self.arrived - self.completed - self.dropped

    def summary(self, elapsed_s: float) -> dict[str, float]:
        """The episode metrics every environment puts in ``info`` (names from DESIGN.md).

        ``sla_attainment`` is the fraction of *finished* requests (completed or dropped) that
        completed within their SLA; ``goodput`` is such requests per simulated second.
        """
        finished = self.completed + self.dropped
        busy = sum(self.busy_s) / (len(self.busy_s) * elapsed_s) if elapsed_s > 0 else 0.0
        return {
            "sla_attainment": self.good / finished if finished else 1.0,
            "goodput": self.good / elapsed_s if elapsed_s > 0 else 0.0,
            "p50_latency_ms": self.latency.p50.value_s * 1e3,
            "p99_latency_ms": self.latency.p99.value_s * 1e3,
            "mean_latency_ms": self.latency.total_s / self.latency.n * 1e3
            if self.latency.n else 0.0,
            "arrived": self.arrived,
            "completed": self.completed,
            "good": self.good,
            "late": self.late,
            "dropped": self.dropped,
            "dropped_rejected": self.dropped_rejected,
            "dropped_overflow": self.dropped_overflow,
            "dropped_expired": self.dropped_expired,
            "in_system": self.in_system,
            "utilization": busy,
            "energy_per_query_j": self.energy_j / self.completed if self.completed else 0.0,
            "sim_time_s": elapsed_s,
        }
