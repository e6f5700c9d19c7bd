"""Episode metrics with flat memory: counters and a log-binned latency histogram.

Percentiles come from a histogram with bins 1% wide (relative) from 10 us to 1000 s, so a
percentile is exact to within 1% and memory does not grow with the episode. The p50/p99 bins are
tracked lazily: recording a latency costs two integer comparisons per tracked quantile, and
reading a quantile walks from its last bin to the new one (amortised O(1) when it is read every
step, O(bins) at worst when it is read once at the end). Either way the value is the upper edge
of the bin holding the ``ceil(q * n)``-th smallest sample, the same as :meth:`quantile_s`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from math import ceil

import numpy as np

_LO_S = 1e-5
_HI_S = 1e3
_GROWTH = 1.01
_NBINS = math.ceil(math.log(_HI_S / _LO_S) / math.log(_GROWTH)) + 2
_INV_LOG_G = 1.0 / math.log(_GROWTH)
#: Upper edge of every histogram bin, in seconds (bin 0 holds everything below _LO_S).
BIN_EDGES_S = _LO_S * _GROWTH ** np.arange(_NBINS)
_EDGES = BIN_EDGES_S.tolist()


def _walk(counts: list[int], b: int, below: int, rank: int) -> tuple[int, int]:
    """Move a tracked bin ``b`` (with ``below`` samples under it) to the bin holding the
    ``rank``-th smallest sample: ``below < rank <= below + counts[b]`` afterwards."""
    while rank > below + counts[b]:
        below += counts[b]
        b += 1
    while rank <= below:
        b -= 1
        below -= counts[b]
    return b, below


class StreamingQuantile:
    """One quantile of a :class:`LatencyHistogram`, caught up when it is read.

    The histogram keeps, per tracked quantile, a bin and the number of samples below it
    (``below``); recording a sample only bumps ``below`` when the sample lands below that bin.
    Reading walks the bin until ``below < ceil(q * n) <= below + counts[bin]``.
    """

    __slots__ = ("_hist", "_slot", "q")

    def __init__(self, hist: LatencyHistogram, slot: int, q: float) -> None:
        self._hist = hist
        self._slot = slot
        self.q = q

    @property
    def n(self) -> int:
        """Samples seen."""
        return self._hist.n

    @property
    def bin(self) -> int:
        """Index of the bin that holds the quantile (after catching up)."""
        h = self._hist
        s = self._slot
        if h.n == 0:
            return 0
        b, below = _walk(h.counts, h.bins[s], h.below[s], math.ceil(self.q * h.n))
        h.bins[s] = b
        h.below[s] = below
        return b

    @property
    def value_s(self) -> float:
        """Upper edge of the quantile's bin in seconds (0 before any sample)."""
        return _EDGES[self.bin] if self._hist.n else 0.0


class LatencyHistogram:
    """Latency distribution of completed requests with running p50 and p99.

    Memory is fixed (``len(counts)`` bins, independent of the number of samples).
    """

    __slots__ = ("_read", "below", "bins", "counts", "n", "p50", "p99", "total_s")

    def __init__(self) -> None:
        self.counts = [0] * _NBINS
        self.n = 0
        self.total_s = 0.0
        #: Per tracked quantile (p50, p99): its last bin, and the samples below that bin.
        self.bins = [0, 0]
        self.below = [0, 0]
        self.p50 = StreamingQuantile(self, 0, 0.50)
        self.p99 = StreamingQuantile(self, 1, 0.99)
        #: ``(n, p50_ms, p99_ms, mean_ms)`` as :meth:`read_ms` last read them. The
        #: counts change only with ``n`` (every sample adds to both), so these are the values
        #: for as long as ``n`` is.
        self._read: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)

    def read_ms(self) -> tuple[int, float, float, float]:
        """``(n, p50_ms, p99_ms, mean_ms)`` now (all zeros before any sample).

        The p50/p99 catch-up of :attr:`StreamingQuantile.bin` inlined (the same walk, the same
        bins); the last values are kept and returned as they are while no sample has come in
        (the counts change only with ``n``).
        """
        read = self._read
        n = self.n
        if read[0] == n:  # no sample since the last read (with n == 0: all zeros)
            return read
        counts, bins, below = self.counts, self.bins, self.below
        # As StreamingQuantile.bin; (n + 1) >> 1 is ceil(0.50 * n) exactly.
        b0, l0 = _walk(counts, bins[0], below[0], (n + 1) >> 1)
        b1, l1 = _walk(counts, bins[1], below[1], ceil(0.99 * n))
        bins[0], below[0], bins[1], below[1] = b0, l0, b1, l1
        read = self._read = (n, _EDGES[b0] * 1e3, _EDGES[b1] * 1e3, self.total_s / n * 1e3)
        return read

    def add(self, latency_s: float) -> None:
        """Record one latency."""
        k = (int(math.log(latency_s / _LO_S) * _INV_LOG_G) + 1) if latency_s > _LO_S else 0
        if k >= _NBINS:
            k = _NBINS - 1
        self.counts[k] += 1
        self.n += 1
        self.total_s += latency_s
        bins = self.bins
        if k < bins[0]:
            self.below[0] += 1
        if k < bins[1]:
            self.below[1] += 1

    def add_finished(self, now: float, requests: Sequence[Sequence[float]]) -> None:
        """Record ``now - r[0]`` for every ``r`` in ``requests`` (``r[0]``: arrival time).

        A batch that finished at ``now``; the same result as calling :meth:`add` for each
        latency, in order.
        """
        counts = self.counts
        log = math.log
        b0, b1 = self.bins
        n0 = n1 = 0
        total = self.total_s
        last = _NBINS - 1
        for r in requests:
            lat = now - r[0]
            total += lat
            k = (int(log(lat / _LO_S) * _INV_LOG_G) + 1) if lat > _LO_S else 0
            if k > last:
                k = last
            counts[k] += 1
            if k < b0:
                n0 += 1
            if k < b1:
                n1 += 1
        self.total_s = total
        self.n += len(requests)
        below = self.below
        below[0] += n0
        below[1] += n1

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

    def clear(self, latency: LatencyHistogram | None = None) -> None:
        """Back to new counters' state, recording into ``latency`` (default: a new
        histogram)."""
        self.arrived = self.completed = self.good = 0
        self.dropped_rejected = self.dropped_overflow = self.dropped_expired = 0
        self.busy_s[:] = [0.0] * len(self.busy_s)
        self.energy_j = 0.0
        self.latency = LatencyHistogram() if latency is None else latency

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

    def summary(self, elapsed_s: float, busy_ahead_s: float = 0.0,
                busy_total_s: float | None = None) -> dict[str, float]:
        """The episode metrics every environment puts in ``info`` (names from DESIGN.md).

        ``sla_attainment`` is the fraction of *finished* requests (completed or dropped) that
        completed within their SLA; ``goodput`` is such requests per simulated second.
        Built from plain attributes in one dict display (it runs every env step); the
        latencies are :meth:`LatencyHistogram.read_ms`'s.
        ``busy_ahead_s``: busy time counted in ``busy_s`` that lies after ``elapsed_s`` (the
        rest of running batches), left out of ``utilization``. ``busy_total_s``: ``sum(busy_s)``
        where the caller has it already.
        """
        completed, good = self.completed, self.good
        rejected, overflow, expired = (self.dropped_rejected, self.dropped_overflow,
                                       self.dropped_expired)
        dropped = rejected + overflow + expired
        finished = completed + dropped
        _, p50, p99, mean = self.latency.read_ms()
        if elapsed_s > 0:
            busy = self.busy_s
            goodput = good / elapsed_s
            total = sum(busy) if busy_total_s is None else busy_total_s
            util = (total - busy_ahead_s) / (len(busy) * elapsed_s)
        else:
            goodput = util = 0.0
        return {
            "sla_attainment": good / finished if finished else 1.0,
            "goodput": goodput,
            "p50_latency_ms": p50,
            "p99_latency_ms": p99,
            "mean_latency_ms": mean,
            "arrived": self.arrived,
            "completed": completed,
            "good": good,
            "late": completed - good,
            "dropped": dropped,
            "dropped_rejected": rejected,
            "dropped_overflow": overflow,
            "dropped_expired": expired,
            "in_system": self.arrived - completed - dropped,
            "utilization": util,
            "energy_per_query_j": self.energy_j / completed if completed else 0.0,
            "sim_time_s": elapsed_s,
        }
