"""Memory and storage tiers and an embedding-row cache (for sharded recommendation models).

A tier serves ``n`` reads of ``size`` bytes with ``q`` requests in flight in::

    t = max(n * latency / q,                      # latency-bound (queue depth q)
            n / iops,                             # IOPS-bound (random access)
            n * ceil(size / access) * access / bandwidth)   # bandwidth-bound

Presets (:data:`TIERS`):

==========  =======  =====  ======  =====  ======  ======================================
name        lat. us  IOPS   GB/s    GB     access  source
==========  =======  =====  ======  =====  ======  ======================================
hbm         0.5      4e9    2039    80     64      A100-80GB (T144); latency assumed
dram        0.09     3.2e9  204.8   512    64      T134 (< 100 ns); 8 x DDR4-3200
cxl         0.25     1e9    64      256    64      T135 (2-5 x DRAM latency); x16 Gen5
optane-ssd  13.4     1.5e6  7.2     1600   4096    T132 (QD1 74,875 IOPS); P5800X spec
nvme-ssd    49.6     1e6    7.0     4000   4096    T133 (QD1 20,176 IOPS); PCIe4 NAND
sata-ssd    100      9.8e4  0.56    4000   4096    assumption: SATA III 6 Gb/s drive
==========  =======  =====  ======  =====  ======  ======================================

QD1 latency is ``1 / IOPS at QD1`` (T132, T133); peak IOPS and bandwidth are vendor
specifications (Intel P5800X: 1.5 M IOPS, 7.2 GB/s; Phison E18 NAND drives: about 1 M IOPS,
7 GB/s; SATA drives: about 98 k IOPS, 560 MB/s). Memory tiers' IOPS are their bandwidth over
the 64-byte access size.

:class:`EmbeddingCache` simulates an LRU or LFU row cache over a stream of embedding ids, and
:class:`TieredEmbeddingStore` prices a batch of lookups with a cache tier in front of a
backing tier.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StorageTier:
    """One memory or storage tier.

    Attributes:
        name: Preset name.
        latency_us: Latency of one access at queue depth 1.
        iops: Largest random reads per second at any queue depth.
        bandwidth_gbs: Largest sequential bandwidth (GB/s).
        capacity_gb: Capacity (GB).
        access_bytes: Smallest unit read (cache line or flash page).
        source: Where the numbers come from.
    """

    name: str
    latency_us: float
    iops: float
    bandwidth_gbs: float
    capacity_gb: float
    access_bytes: int
    source: str = ""

    def __post_init__(self) -> None:
        if min(self.latency_us, self.iops, self.bandwidth_gbs, self.capacity_gb,
               self.access_bytes) <= 0:
            raise ValueError(f"tier {self.name!r}: every number must be > 0")

    def read_s(self, n_reads: float | np.ndarray, size_bytes: float = 64.0,
               queue_depth: float = 1.0) -> np.ndarray:
        """Seconds to serve ``n_reads`` random reads of ``size_bytes`` at ``queue_depth``."""
        n = np.asarray(n_reads, dtype=np.float64)
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, got {queue_depth}")
        moved = np.ceil(size_bytes / self.access_bytes) * self.access_bytes
        return np.maximum.reduce([
            n * self.latency_us * 1e-6 / queue_depth,
            n / self.iops,
            n * moved / (self.bandwidth_gbs * 1e9),
        ])


TIERS: dict[str, StorageTier] = {
    "hbm": StorageTier("hbm", 0.5, 2039e9 / 512, 2039.0, 80.0, 64,
                       "A100-80GB HBM2e 2039 GB/s (published_targets T144); latency assumption"),
    "dram": StorageTier("dram", 0.09, 204.8e9 / 64, 204.8, 512.0, 64,
                        "DDR round trip < 100 ns (published_targets T134); 8 channels DDR4-3200"),
    "cxl": StorageTier("cxl", 0.25, 64e9 / 64, 64.0, 256.0, 64,
                       "CXL expander 2-5x DRAM latency (published_targets T135); x16 Gen5 link"),
    "optane-ssd": StorageTier("optane-ssd", 13.4, 1.5e6, 7.2, 1600.0, 4096,
                              "P5800X QD1 4K 74,875 IOPS (published_targets T132); Intel spec "
                              "1.5 M IOPS, 7.2 GB/s"),
    "nvme-ssd": StorageTier("nvme-ssd", 49.6, 1.0e6, 7.0, 4000.0, 4096,
                            "PCIe4 NAND QD1 4K 20,176 IOPS (published_targets T133); vendor "
                            "spec about 1 M IOPS, 7 GB/s"),
    "sata-ssd": StorageTier("sata-ssd", 100.0, 9.8e4, 0.56, 4000.0, 4096,
                            "assumption: SATA III (6 Gb/s) drive, vendor spec 98 k IOPS, "
                            "560 MB/s, about 100 us QD1 read"),
}
"""Tier presets (see the module docstring)."""


def get_tier(name: str) -> StorageTier:
    """A preset tier by name.

    Raises:
        ValueError: unknown name.
    """
    try:
        return TIERS[name]
    except KeyError:
        raise ValueError(f"unknown storage tier {name!r}; known: {', '.join(TIERS)}") from None


class EmbeddingCache:
    """A row cache of ``capacity`` embedding rows with LRU or LFU eviction.

    LFU counts every access of an id (also while it is not cached) and evicts the cached id
    with the fewest accesses (ties: the least recently used).

    Args:
        capacity: Rows the cache holds (>= 0).
        policy: ``"lru"`` or ``"lfu"``.
    """

    POLICIES = ("lru", "lfu")

    def __init__(self, capacity: int, policy: str = "lru") -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if policy not in self.POLICIES:
            raise ValueError(f"policy must be one of {self.POLICIES}, got {policy!r}")
        self.capacity = int(capacity)
        self.policy = policy
        self._lru: OrderedDict[int, None] = OrderedDict()
        self._counts: dict[int, int] = {}
        self._cached: dict[int, int] = {}  # id -> count when last pushed (LFU)
        self._heap: list[tuple[int, int, int]] = []
        self._tick = 0

    def access(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Look ``ids`` up in order, caching misses; returns a bool array of hits."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        hits = np.zeros(arr.shape, dtype=bool)
        if self.capacity == 0:
            return hits
        step = self._lru_one if self.policy == "lru" else self._lfu_one
        for k, i in enumerate(arr.tolist()):
            hits[k] = step(i)
        return hits

    def _lru_one(self, i: int) -> bool:
        cache = self._lru
        if i in cache:
            cache.move_to_end(i)
            return True
        if len(cache) >= self.capacity:
            cache.popitem(last=False)
        cache[i] = None
        return False

    def _lfu_one(self, i: int) -> bool:
        self._tick += 1
        count = self._counts.get(i, 0) + 1
        self._counts[i] = count
        hit = i in self._cached
        if not hit and len(self._cached) >= self.capacity:
            while True:  # lazy deletion: skip stale heap entries
                c, _, victim = heapq.heappop(self._heap)
                if self._cached.get(victim) == c:
                    del self._cached[victim]
                    break
        self._cached[i] = count
        heapq.heappush(self._heap, (count, self._tick, i))
        if len(self._heap) > 4 * self.capacity + 64:
            self._heap = [(c, t, j) for c, t, j in self._heap if self._cached.get(j) == c]
            heapq.heapify(self._heap)
        return hit


def hit_rate(ids: np.ndarray | list[int], capacity: int, policy: str = "lru",
             warmup: float = 0.0) -> float:
    """Hit rate of a fresh :class:`EmbeddingCache` over ``ids`` (skipping a warm-up fraction)."""
    hits = EmbeddingCache(capacity, policy).access(ids)
    start = int(len(hits) * warmup)
    return float(hits[start:].mean()) if len(hits) > start else 0.0


def zipf_ids(rng: np.random.Generator, n_items: int, alpha: float, n: int) -> np.ndarray:
    """``n`` ids in ``[0, n_items)`` with ``P(rank k) ~ k ** -alpha`` (ids are shuffled ranks)."""
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    p = ranks ** -float(alpha)
    p /= p.sum()
    perm = rng.permutation(n_items)
    return perm[rng.choice(n_items, size=n, p=p)]


def static_hit_rate(n_items: int, alpha: float, capacity: int) -> float:
    """Hit rate of caching the ``capacity`` most popular of Zipf(``alpha``) items (ideal LFU)."""
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    p = ranks ** -float(alpha)
    return float(p[: max(0, capacity)].sum() / p.sum())


@dataclass
class TieredEmbeddingStore:
    """Embedding rows in ``backing`` with a row cache of ``cache_rows`` in ``cache``.

    Attributes:
        cache: The fast tier (e.g. HBM).
        backing: Where all rows live (e.g. DRAM, SSD).
        cache_rows: Rows the cache holds.
        row_bytes: Bytes per row (``dim * bytes per element``).
        policy: Cache policy (``"lru"`` or ``"lfu"``).
        queue_depth: Reads in flight against each tier.
    """

    cache: StorageTier
    backing: StorageTier
    cache_rows: int
    row_bytes: int
    policy: str = "lru"
    queue_depth: float = 32.0

    def __post_init__(self) -> None:
        self._cache = EmbeddingCache(self.cache_rows, self.policy)

    def lookup_s(self, ids: np.ndarray | list[int]) -> tuple[float, float]:
        """Seconds to gather ``ids`` (hits and misses overlap) and the batch's hit rate."""
        hits = self._cache.access(ids)
        n_hit = int(hits.sum())
        n_miss = hits.size - n_hit
        t_hit = float(self.cache.read_s(n_hit, self.row_bytes, self.queue_depth))
        t_miss = float(self.backing.read_s(n_miss, self.row_bytes, self.queue_depth))
        return max(t_hit, t_miss), (n_hit / hits.size if hits.size else 0.0)
