"""Vectorised embedding-row caches (LRU, LFU) that take a whole batch of lookups at once.

:class:`hwmodels.storage.EmbeddingCache` is the reference: a Python loop over single lookups.
A sub-request brings hundreds to thousands of lookups, so the simulator uses these numpy
versions, which process a batch (a *tick*) in a few array operations:

* :class:`LruRowCache`: a row is cached iff its last access is among the most recent
  ``capacity`` distinct rows. Every row keeps the tick of its last access; ``alive[t]`` counts
  the rows whose last access is tick ``t``; the cache holds the ticks from ``oldest`` on, and
  ``oldest`` advances (whole ticks are evicted) while they hold more than ``capacity`` rows.
  With one lookup per tick this *is* LRU (``tests/test_shard_sim.py`` checks it lookup for
  lookup against ``EmbeddingCache``); with bigger ticks the order inside a tick is lost and up
  to one tick's rows are evicted early.
* :class:`LfuRowCache`: perfect LFU, the rows with the most lookups so far (counted also while
  not cached). A row is cached iff its count is at least a threshold ``theta`` chosen so that
  at most ``capacity`` rows reach it; ``theta`` only grows, so each update is amortised O(1)
  per distinct row.

In both, the lookups of a row after its first miss within the same batch are hits (the row was
just fetched). Keys are ``0..n_keys-1`` (the simulator maps each cached row segment of a node
into this range); memory is one int per key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.sim.dlrm import kernels
from envs.sim.packing import Sparse, set_slots_state, slots_state

#: Ticks at which :meth:`LruRowCache.clear` restarts them from 1 (``last1`` is int32).
_TICK_LIMIT = 2**30


def _disjoint(starts: list[int], lengths: list[int]) -> bool:
    """Whether the ranges ``[start, start + length)`` (non-empty ones) do not overlap."""
    spans = sorted((a, a + n) for a, n in zip(starts, lengths, strict=True) if n > 0)
    return all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


def _ranges(starts: list[int], lengths: list[int]) -> np.ndarray:
    """The keys of the ranges, concatenated (what :meth:`warm` takes)."""
    parts = [np.arange(a, a + n, dtype=np.int64) for a, n in zip(starts, lengths, strict=True)
             if n > 0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class LruRowCache:
    """LRU over ``n_keys`` rows holding at most ``capacity`` of them (tick granularity).

    Args:
        n_keys: Size of the key space.
        capacity: Rows the cache holds (>= 0).
    """

    __slots__ = ("_alive", "_base", "_stale", "capacity", "last1", "oldest", "size", "tick")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with ``last1`` kept only for the resident rows (:class:`Sparse`).

        A row whose last access is before ``oldest`` behaves as one never looked up (every
        read compares ``last1`` with ``oldest``, which never decreases), so it comes back as
        0: the copy goes on exactly as the original, in tens of kB instead of 4 B per key.
        """
        state = slots_state(self, self.__slots__, ("_alive",))
        state["last1"] = Sparse(self.last1, np.flatnonzero(self.last1 >= self.oldest))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots_state(self, state)

    def __init__(self, n_keys: int, capacity: int) -> None:
        if capacity < 0 or n_keys < 0:
            raise ValueError(f"n_keys and capacity must be >= 0, got {n_keys}, {capacity}")
        self.capacity = int(capacity)
        #: 1 + tick of each key's last access (0: never). Zeros, so the operating system only
        #: backs the pages of keys that were ever looked up.
        self.last1 = np.zeros(int(n_keys), dtype=np.int32)
        self._alive = np.zeros(64, dtype=np.int64)  # alive[t - base] for ticks base..tick-1
        self._base = 1
        self.oldest = 1  # first tick still (partly) in the cache (ticks count from 1)
        self.tick = 1
        #: Rows in the cache.
        self.size = 0
        self._stale = True  # no key accessed since the last clear (all last1 < oldest)

    def clear(self) -> None:
        """Forget everything (a restarted node).

        Every key's last tick is before the current one, so moving ``oldest`` to it empties
        the cache without touching ``last1`` (zeroed only when the ticks grow large).
        """
        if self.tick >= _TICK_LIMIT:
            self.last1.fill(0)
            self.tick = 1
        self._alive.fill(0)
        self._base = self.oldest = self.tick
        self.size = 0
        self._stale = True

    def warm(self, keys: np.ndarray) -> None:
        """Add ``keys`` (distinct) as one most-recent tick; keys already cached are skipped,
        and at most ``capacity`` are used (older rows are evicted to make room)."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[self.last1[keys] < self.oldest][: self.capacity]
        if not len(keys):
            return
        self._stale = False
        t = self.tick
        if t - self._base >= len(self._alive):
            self._compact()
        self.last1[keys] = t
        self._alive[t - self._base] = len(keys)
        self.size += len(keys)
        self.tick = t + 1
        while self.size > self.capacity:
            self.size -= int(self._alive[self.oldest - self._base])
            self._alive[self.oldest - self._base] = 0
            self.oldest += 1

    def warm_ranges(self, starts: list[int], lengths: list[int]) -> None:
        """:meth:`warm` of the keys of the ranges ``[start, start + length)`` in order, on
        slices of the key space rather than an array of keys (same result)."""
        if not _disjoint(starts, lengths):
            self.warm(_ranges(starts, lengths))
            return
        cap = self.capacity
        oldest = self.oldest
        t = self.tick
        last1 = self.last1
        stale = self._stale  # every key is out of the cache: no need to look
        taken = 0
        for a, n in zip(starts, lengths, strict=True):
            if taken >= cap:
                break
            if n <= 0:
                continue
            view = last1[a: a + n]
            room = cap - taken
            fresh = None if stale else view < oldest
            if fresh is None or fresh.all():
                k = min(n, room)
                view[:k] = t
            else:
                idx = np.flatnonzero(fresh)[:room]
                k = len(idx)
                view[idx] = t
            taken += k
        if not taken:
            return
        self._stale = False
        if t - self._base >= len(self._alive):
            self._compact()
        self._alive[t - self._base] = taken
        self.size += taken
        self.tick = t + 1
        while self.size > self.capacity:
            self.size -= int(self._alive[self.oldest - self._base])
            self._alive[self.oldest - self._base] = 0
            self.oldest += 1

    def access(self, keys: np.ndarray, counts: np.ndarray, offset: int = 0,
               total: int | None = None) -> tuple[int, int]:
        """One batch: distinct ``keys`` looked up ``counts`` times each.

        Args:
            keys: Distinct keys (``offset`` is added to each).
            counts: Lookups of each key.
            offset: Added to every key (saves the caller an array).
            total: ``counts.sum()`` if the caller knows it.

        Returns:
            ``(hits, misses)``: lookups served from the cache, and distinct rows fetched (the
            first lookup of each row that was not cached).
        """
        n = len(keys)
        if n == 0:
            return 0, 0
        if total is None:
            total = int(counts.sum())
        if self.capacity == 0:
            return total - n, n
        self._stale = False
        if kernels.AVAILABLE:  # the same, one pass over the keys
            t = self.tick
            if t - self._base >= len(self._alive):
                self._compact()  # (before the decrements: they only touch kept ticks)
            misses, self.oldest, self.size = kernels.lru_access(
                self.last1, self._alive, keys, offset, self.oldest, self._base, t,
                self.capacity, self.size)
            self.tick = t + 1
            return total - misses, misses
        last1 = self.last1[offset:] if offset else self.last1
        prev = last1[keys]
        oldest = self.oldest
        t = self.tick
        # Ticks of the cached keys relative to oldest - 1 (bin 0: not cached).
        rel = np.subtract(prev, oldest - 1, out=prev)
        np.maximum(rel, 0, out=rel)
        per_tick = np.bincount(rel, minlength=t - oldest + 1)
        misses = int(per_tick[0])
        alive = self._alive
        base = self._base
        if misses < n:
            alive[oldest - base: t - base] -= per_tick[1:]
        if t - base >= len(alive):
            self._compact()
            alive, base = self._alive, self._base
        alive[t - base] = n
        last1[keys] = t
        self.tick = t + 1
        size = self.size + misses
        cap = self.capacity
        o = self.oldest
        while size > cap:
            size -= int(alive[o - base])
            alive[o - base] = 0
            o += 1
        self.oldest = o
        self.size = size
        return total - misses, misses

    def _compact(self) -> None:
        """Drop the evicted ticks from the front of ``alive`` (and grow it if still full)."""
        keep = self._alive[self.oldest - self._base: self.tick - self._base]
        size = max(64, 2 * len(keep) + 1)
        alive = np.zeros(size, dtype=np.int64)
        alive[: len(keep)] = keep
        self._alive = alive
        self._base = self.oldest


class LfuRowCache:
    """Perfect LFU over ``n_keys`` rows holding at most ``capacity`` of them.

    Args:
        n_keys: Size of the key space.
        capacity: Rows the cache holds (>= 0).
    """

    __slots__ = ("_hist", "capacity", "count", "size", "theta")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with ``count`` kept only for the rows looked up so far (:class:`Sparse`):
        every count matters (a row is counted also while not cached), zeros are left out."""
        state = slots_state(self, self.__slots__, ("_hist",))
        state["count"] = Sparse(self.count, np.flatnonzero(self.count))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots_state(self, state)

    def __init__(self, n_keys: int, capacity: int) -> None:
        if capacity < 0 or n_keys < 0:
            raise ValueError(f"n_keys and capacity must be >= 0, got {n_keys}, {capacity}")
        self.capacity = int(capacity)
        #: Lookups of each key so far.
        self.count = np.zeros(int(n_keys), dtype=np.int32)
        self._hist = np.zeros(64, dtype=np.int64)  # keys per count value (count >= 1)
        self.theta = 1  # a key is cached iff count >= theta
        #: Rows in the cache (keys with count >= theta).
        self.size = 0

    def clear(self) -> None:
        """Forget everything (a restarted node)."""
        self.count.fill(0)
        self._hist.fill(0)
        self.theta = 1
        self.size = 0

    def warm(self, keys: np.ndarray) -> None:
        """Add ``keys`` (distinct, never looked up so far) to a cache with room: they get a
        count of 2, so rows seen once do not evict them (at most the free room is used)."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[self.count[keys] == 0][: max(self.capacity - self.size, 0)]
        if not len(keys):
            return
        self.count[keys] = 2
        self._hist[2] += len(keys)
        if self.theta <= 2:
            self.size += len(keys)

    def warm_ranges(self, starts: list[int], lengths: list[int]) -> None:
        """:meth:`warm` of the keys of the ranges ``[start, start + length)`` in order, on
        slices of the key space rather than an array of keys (same result)."""
        if not _disjoint(starts, lengths):
            self.warm(_ranges(starts, lengths))
            return
        room = max(self.capacity - self.size, 0)
        count = self.count
        taken = 0
        for a, n in zip(starts, lengths, strict=True):
            if taken >= room:
                break
            if n <= 0:
                continue
            view = count[a: a + n]
            fresh = view == 0
            left = room - taken
            if fresh.all():
                k = min(n, left)
                view[:k] = 2
            else:
                idx = np.flatnonzero(fresh)[:left]
                k = len(idx)
                view[idx] = 2
            taken += k
        if not taken:
            return
        self._hist[2] += taken
        if self.theta <= 2:
            self.size += taken

    def access(self, keys: np.ndarray, counts: np.ndarray, offset: int = 0,
               total: int | None = None) -> tuple[int, int]:
        """One batch; see :meth:`LruRowCache.access`."""
        n = len(keys)
        if n == 0:
            return 0, 0
        if total is None:
            total = int(counts.sum())
        if self.capacity == 0:
            return total - n, n
        if kernels.AVAILABLE:  # the same, one pass over the keys
            top = kernels.lfu_top(self.count, keys, counts, offset)
            if top >= len(self._hist):
                grown = np.zeros(max(2 * len(self._hist), top + 1), dtype=np.int64)
                grown[: len(self._hist)] = self._hist
                self._hist = grown
            misses, self.theta, self.size = kernels.lfu_access(
                self.count, self._hist, keys, counts, offset, self.theta, self.capacity,
                self.size)
            return total - misses, misses
        count = self.count[offset:] if offset else self.count
        old = count[keys]
        new = old + counts.astype(np.int32)
        theta = self.theta
        misses = int(np.count_nonzero(old < theta))
        count[keys] = new
        top = int(new.max())
        if top >= len(self._hist):
            grown = np.zeros(max(2 * len(self._hist), top + 1), dtype=np.int64)
            grown[: len(self._hist)] = self._hist
            self._hist = grown
        hist = self._hist
        hist -= np.bincount(old[old > 0], minlength=len(hist))[: len(hist)]
        hist += np.bincount(new, minlength=len(hist))[: len(hist)]
        size = self.size + int(np.count_nonzero((old < theta) & (new >= theta)))
        while size > self.capacity:
            size -= int(hist[theta])
            theta += 1
        self.theta = theta
        self.size = size
        return total - misses, misses
