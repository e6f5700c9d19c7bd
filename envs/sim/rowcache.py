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

import numpy as np


class LruRowCache:
    """LRU over ``n_keys`` rows holding at most ``capacity`` of them (tick granularity).

    Args:
        n_keys: Size of the key space.
        capacity: Rows the cache holds (>= 0).
    """

    __slots__ = ("_alive", "_base", "capacity", "last1", "oldest", "size", "tick")

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

    def clear(self) -> None:
        """Forget everything (a restarted node)."""
        self.last1.fill(0)
        self._alive.fill(0)
        self._base = self.oldest = self.tick
        self.size = 0

    def warm(self, keys: np.ndarray) -> None:
        """Add ``keys`` (distinct) as one most-recent tick; keys already cached are skipped,
        and at most ``capacity`` are used (older rows are evicted to make room)."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[self.last1[keys] < self.oldest][: self.capacity]
        if not len(keys):
            return
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

    def access(self, keys: np.ndarray, counts: np.ndarray) -> tuple[int, int]:
        """One batch: distinct ``keys`` looked up ``counts`` times each.

        Returns:
            ``(hits, misses)``: lookups served from the cache, and distinct rows fetched (the
            first lookup of each row that was not cached).
        """
        n = len(keys)
        if n == 0:
            return 0, 0
        total = int(counts.sum())
        if self.capacity == 0:
            return total - n, n
        prev = self.last1[keys]
        cached = prev >= self.oldest
        n_cached = int(np.count_nonzero(cached))
        misses = n - n_cached
        alive = self._alive
        base = self._base
        if n_cached:
            alive -= np.bincount(prev[cached] - base, minlength=len(alive))[: len(alive)]
        t = self.tick
        if t - base >= len(alive):
            self._compact()
            alive, base = self._alive, self._base
        alive[t - base] = n
        self.last1[keys] = t
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

    def access(self, keys: np.ndarray, counts: np.ndarray) -> tuple[int, int]:
        """One batch; see :meth:`LruRowCache.access`."""
        n = len(keys)
        if n == 0:
            return 0, 0
        total = int(counts.sum())
        if self.capacity == 0:
            return total - n, n
        old = self.count[keys]
        new = old + counts.astype(np.int32)
        theta = self.theta
        misses = int(np.count_nonzero(old < theta))
        self.count[keys] = new
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
