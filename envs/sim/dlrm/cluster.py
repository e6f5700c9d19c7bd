"""The sharded-cluster simulator (:class:`ShardSim`): its event loop, routing and faults.

One model over many devices (the survey's SIMD paradigm): sharded recommendation inference.

A DLRM-style model serves requests, each a batch of ``B`` samples. Its embedding tables are
partitioned into ``S`` shards (whole tables per shard, *table-wise*, or every table's rows
spread over the shards by row id, *row-wise*) and every shard is replicated on ``r`` of ``N``
nodes. A central node runs the dense MLPs. A request:

1. arrives at the central node, which starts its bottom MLP on a dense device and fans out one
   *sub-request* per shard: the lookups of the request's samples that fall in that shard;
2. each sub-request is routed to one replica of its shard (the decision), travels over that
   node's link (fair-shared with the other messages on it, plus latency and RPC overhead;
   :mod:`hwmodels.links`), waits in the node's FIFO queue, is served from the node's memory
   tiers, and its pooled embeddings travel back;
3. when the last sub-request is back and the bottom MLP is done, the top MLP runs; then the
   request is complete. Latency = completion - arrival; it is *good* if within its SLA.

Node service (:mod:`hwmodels.storage`). Each node has a fast and a slow tier and a row-cache
size of its own (by default the same on every node: DRAM, NVMe SSD). Small tables are pinned
in the fast tier; large ones live on the slow tier behind a row cache in the fast tier (LRU or LFU,
:mod:`envs.sim.dlrm.rowcache`) shared by every cached table segment on the node. Row popularity is
the calibrated Zipf-like law of :mod:`envs.sim.dlrm.skew`, so hit rates emerge from the skew and
from what the routing sends where. Only the ``track_rows`` most popular rows of a segment are
admitted to the cache (colder rows are always read from SSD): that bounds memory whatever the
table size. Service time = overhead + max(fast reads, slow reads) at the tiers' per-read cost
(reads overlap, as in :class:`hwmodels.storage.TieredEmbeddingStore`), times the node's current
slowdown.

Dynamics. Nodes become stragglers (slowed by a factor for a while) at random; nodes and links
fail for a while, at random or on a schedule, or slow down. Nothing is lost: sub-requests queued
or running on a failed node, or in flight to it, are retried by the client on the live replica
with the fewest outstanding sub-requests after a detection delay, up to ``max_retries`` times;
otherwise they fail. A sub-request whose shard has no live replica fails at once (it is never
presented for a decision). A failed sub-request fails its request (fail-fast; the request's other
sub-requests still run and are counted).

Accounting. The decision unit is the sub-request, so the sub-request counters
(:attr:`ShardSim.sub`) satisfy ``arrived == completed + dropped + in_system``; a sub-request is
*good* if it is back before its request's deadline. Request counters (:attr:`ShardSim.req`)
hold the end-to-end latency histogram and SLA attainment.

Nothing here imports gymnasium or torch; :mod:`envs.shard` adapts it to Gymnasium.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any, ClassVar, cast

import numpy as np

from envs.sim.core import EventQueue
from envs.sim.dlrm import kernels, pcg
from envs.sim.dlrm.layout import ShardLayout
from envs.sim.dlrm.pslink import _EPS_BYTES, PsLink
from envs.sim.dlrm.records import Arena, FanoutCounters, Migration, Request, SubRequest
from envs.sim.dlrm.rowcache import LfuRowCache, LruRowCache
from envs.sim.dlrm.spec import FaultEvent, RandomDisruption
from envs.sim.packing import pack, unpack

ARRIVAL = 0
LINK_DONE = 1
SERVICE_DONE = 2
REQUEST_DONE = 3
FAULT = 4
RETRY = 5
STRAGGLER = 6
RANDOM_FAULT = 7

_INF = float("inf")

#: An event on the simulator's heap: ``[cancelled, kind, target]``. The simulator pops its
#: own events (:meth:`ShardSim._step_event`; :meth:`EventQueue.pop` and ``peek`` are not used
#: on its queue), so a list does what :class:`envs.sim.core.Event` does at a quarter of the
#: cost of making one; heap entries are ``(time, 0, seq, event)`` as EventQueue's.
_Ev = list[Any]
#: ``np.intp`` is int64 (the counts of distinct keys can live in an :class:`Arena`).
_INTP64 = np.dtype(np.intp) == np.dtype(np.int64)


@dataclass
class _Node:
    """Mutable state of one embedding node."""

    cache: LruRowCache | LfuRowCache
    queue: deque[SubRequest] = field(default_factory=deque)
    serving: SubRequest | None = None
    service_event: _Ev | None = None
    down: int = 0  # active failures of the node
    link_down: int = 0  # active failures of its link
    slow: float = 1.0  # current service slowdown (product of active slowdowns)
    straggling: bool = False
    randomly_down: bool = False
    members: dict[int, SubRequest] = field(default_factory=dict)  # routed here, not back
    service_s: float = 0.0  # length of the running (or last) service, counted in busy_s


class ShardSim:
    """Event-driven serving of a request trace on a sharded, replicated embedding cluster.

    Args:
        layout: The deployment's static tables (:class:`ShardLayout`).
        arrival_s: Request arrival times (non-decreasing).
        sla_s: Per-request SLA (seconds).
        budget: Sub-requests in the episode (decisions plus any that fail without one); the
            last request is cut to the shards the budget still covers.
        rng: Generator for lookups and random disruptions.
        faults: Scheduled faults.
        stragglers: Random node slowdowns.
        random_faults: Random node failures (never the last live replica of a shard).
        ewma: Weight of the newest sample in the per-node running estimates.
        row_hit0: Prior of the per-(node, shard) distinct-row hit estimate ``(N, S)`` (0.5
            when not given), also restored when a node restarts.
        warm_rows: Rows of each segment to start cached on each node ``(N, segments)``: its
            hottest ones (:attr:`~envs.sim.dlrm.capacity.CapacityEstimate.warm_rows`, the
            LRU steady state). None starts every cache cold.
        dynamic: Replicas may be added and dropped during the episode
            (:meth:`add_replica`, :meth:`drop_replica`); every node's cache then has room in
            its key space for every shard.
        recycle: The previous episode's simulator of the same layout: its (LRU) caches are
            emptied and reused instead of allocated, and so is the memory of its lookup
            draws; it must not be used afterwards.
        extra_reads: Shard popularity that changes over the trace: ``extra_reads[i, s]``
            more lookups of never-cached (long-tail) rows in the sub-request of arrival ``i``
            for shard ``s`` ``(arrivals, S)``, non-negative integers; each is one more SSD
            read (and one more id on the link). None (default) adds none.

    The decision loop (as :class:`envs.sim.gpu.GpuServingSim`)::

        sim.advance()                 # run to the first sub-request; sim.pending is it
        while sim.pending is not None:
            sim.route(node)           # or sim.shed()
            sim.advance()             # next sub-request of this request, or of the next one
    """

    def __init__(
        self,
        layout: ShardLayout,
        arrival_s: np.ndarray,
        sla_s: np.ndarray,
        budget: int,
        rng: np.random.Generator,
        faults: Sequence[FaultEvent] = (),
        stragglers: RandomDisruption | None = None,
        random_faults: RandomDisruption | None = None,
        ewma: float = 0.2,
        row_hit0: np.ndarray | None = None,
        warm_rows: np.ndarray | None = None,
        dynamic: bool = False,
        recycle: ShardSim | None = None,
        extra_reads: np.ndarray | None = None,
    ) -> None:
        spec = self.spec = layout.spec
        self.rng = rng
        N, S = spec.n_nodes, spec.n_shards
        self.n_nodes, self.n_shards = N, S
        self._extra: list[list[int]] | None = None
        if extra_reads is not None:
            extra = np.asarray(extra_reads)
            if extra.shape != (len(arrival_s), S) or not np.issubdtype(extra.dtype, np.integer):
                raise ValueError(f"extra_reads: expected integers of shape ({len(arrival_s)}, "
                                 f"{S}), got {extra.dtype} {extra.shape}")
            if (extra < 0).any():
                raise ValueError("extra_reads: must be >= 0")
            self._extra = extra.tolist()
        self._arrival = np.asarray(arrival_s, dtype=np.float64).tolist()
        self._sla = np.asarray(sla_s, dtype=np.float64).tolist()
        self.budget = int(budget)
        self.ewma = float(ewma)
        self.events = EventQueue()
        #: ``events.heap``, holding :data:`_Ev` events.
        self._heap = cast("list[tuple[float, int, int, _Ev]]", self.events.heap)
        #: Sub-request accounting (the decision unit); ``busy_s`` is node service time.
        self.sub = FanoutCounters(N)
        #: Request accounting (end-to-end latency, SLA); ``busy_s`` is dense-device time.
        self.req = FanoutCounters(spec.dense_servers)
        self.sub_failed = 0
        self.sub_shed = 0
        self.sub_retried = 0
        self.lay = layout
        self._row_hit0 = np.full((N, S), 0.5)
        #: Which nodes hold (serve) each shard; mutable when ``dynamic``.
        self.replicas = [list(r) for r in layout.replicas]
        self.holds = layout.holds.copy()
        #: Replicas being loaded (migration in flight), ``(N, S)``.
        self.loading = np.zeros((N, S), dtype=bool)
        self.dynamic = bool(dynamic)
        if dynamic:
            self.key_off = np.tile(layout.shard_base[:-1], (N, 1))
            self._n_keys = np.full(N, int(layout.shard_base[-1]))
        else:
            self.key_off = layout.node_key_off
            self._n_keys = layout.node_keys
        self._key_off_list = self.key_off.tolist()
        self.migrations = 0
        self.migrations_failed = 0
        self.migration_bytes = 0.0
        self._migrating: dict[int, list[Migration]] = {}
        self.nodes = [_Node(cache) for cache in self._recycled_caches(recycle)]
        self._up = np.ones(N, dtype=bool)
        #: Per-node state that the env's observation kernels read together, one row each
        #: (the attributes named here are views of its rows, see :meth:`_bind_views`): per
        #: link direction the bytes in flight at time inflight_t, inflight_t and the drain
        #: rate (rows 0-1, 2-3 and 4-5: downlinks, then uplinks; :attr:`inflight_bytes`,
        #: :attr:`inflight_t` and :attr:`inflight_rate` are them flat, index
        #: ``up * N + node``, and ``_lb2_*`` as
        #: ``(2, N)``), :attr:`service_end`,
        #: :attr:`work_s`, the four rows of :attr:`node_features`, :attr:`link_factor` and
        #: the messages in flight per link direction (rows 13-14, downlinks then uplinks;
        #: :attr:`link_messages` is them flat, as :attr:`inflight_bytes`).
        self.node_state = np.zeros((15, N))
        self.node_state[10:13] = 1.0  # measured slowdown, up, link speed factor
        self._bind_views()
        self._warm_rows = warm_rows
        if warm_rows is not None:
            # The warm-up's ranges per node (_warm_ranges): the previous episode's when they
            # are of the same layout, key offsets and warm-up rows
            plan: list[tuple[list[int], list[int]]] | None = None
            if (recycle is not None and recycle.lay is layout and recycle.dynamic == dynamic
                    and (old_rows := recycle._warm_rows) is not None
                    and (old_rows is warm_rows or np.array_equal(old_rows, warm_rows))):
                plan = getattr(recycle, "_warm_plan", None)
            if plan is None:
                plan = [self._warm_ranges(n) for n in range(N)]
            self._warm_plan = plan
            for n, (starts, lengths) in enumerate(plan):
                if starts:
                    self.nodes[n].cache.warm_ranges(starts, lengths)
        self._cache_size = np.array([nd.cache.size for nd in self.nodes], dtype=np.float64)
        # Fast-tier occupancy per node, kept up to date with the cache sizes (see
        # :meth:`_set_cache_size`); ``cache_occupancy`` returns a copy.
        rb = spec.row_bytes
        self._occ_pinned = layout.pinned_bytes.tolist()
        self._occ_full = (layout.pinned_bytes + np.array(layout.cache_rows) * rb).tolist()
        for n in range(N):
            self._set_cache_size(n, self.nodes[n].cache.size)
        #: Bumped whenever a node goes up or down or a replica is added or dropped (what the
        #: action masks depend on besides the pending sub-request); caches key on it.
        self.topology_version = 0
        self._live_cache: dict[int, tuple[int, ...]] = {}
        self._live_version = -1
        #: Events handled so far. Between two decisions with no event in between only the
        #: routing itself changed the state (the routed node's queue, work and link).
        self.events_handled = 0
        #: Bumped whenever a link's speed factor (:attr:`link_factor`) changes.
        self.link_version = 0
        self.links_down = [PsLink(lk.payload_bps, (lk.latency_us + lk.rpc_us) * 1e-6)
                           for lk in spec.links]
        self.links_up = [PsLink(lk.payload_bps, (lk.latency_us + lk.rpc_us) * 1e-6)
                         for lk in spec.links]
        self.dense_free = [0.0] * spec.dense_servers
        #: Per dense device, ``(start, end)`` of its MLP jobs that may not have ended (each is
        #: counted whole in ``req.busy_s`` when scheduled; a top MLP can wait for its bottom
        #: MLP, so a device's jobs ahead may have gaps between them).
        self._dense_jobs: list[deque[tuple[float, float]]] = [
            deque() for _ in range(spec.dense_servers)]
        #: Per node: sub-requests routed there and not back (in flight, queued, serving).
        self.outstanding = np.zeros(N, dtype=np.int64)
        # busy_s of every link direction (downlinks, then uplinks), refreshed by _relink
        # (every change of a link is followed by one), and their max: busy times only grow,
        # so the max so far is the max of the list.
        self._link_busy = [0.0] * (2 * N)
        self._link_busy_max = 0.0
        #: Running estimates the router can observe (updated when responses come back):
        #: hit_rate and measured_slow (rows of node_features), and row_hit.
        if row_hit0 is not None:
            self._row_hit0 = np.broadcast_to(np.asarray(row_hit0, dtype=np.float64),
                                             (N, S)).copy()
        self.row_hit = self._row_hit0.copy()  # (N, S) distinct-row hit rate
        self._bind_memoryviews()
        self.cache_lookups = [0] * N
        self.cache_hits = [0] * N
        #: ``sum(cache_lookups)``, ``sum(cache_hits)``.
        self.cache_lookups_total = 0
        self.cache_hits_total = 0
        #: Activity that the energy model prices (:mod:`hwmodels.energy`), per node: rows
        #: read from its fast and its slow tier, and bytes sent over its link (both
        #: directions, aborted messages and migrations included).
        self.fast_reads = [0.0] * N
        self.slow_reads = [0.0] * N
        self.link_bytes_sent = [0.0] * N
        #: Everything in flight, by id (events refer to them by id).
        self._subs: dict[int, SubRequest] = {}
        self._reqs: dict[int, Request] = {}
        self._next_req = 0
        self._next_sub = 0
        self._created = 0
        self._fanout: deque[SubRequest] = deque()
        # Memory of the lookup draws (see _make_subrequests_jit): scratch for the most
        # lookups of one request, and the keys and counts that sub-requests keep; the
        # previous episode's when recycling (its live sub-requests keep their memory, and
        # the scratch is only used within a call).
        self._u_buf: np.ndarray
        self._key_buf: np.ndarray
        self._arena: Arena
        if recycle is not None and recycle.lay is layout:
            self._u_buf, self._key_buf = recycle._u_buf, recycle._key_buf
            self._arena = recycle._arena
        else:
            self._u_buf = np.empty(layout.c_n_total, dtype=layout.c_norm_d.dtype)
            # the keys, then the radix sort's scratch (kernels.radix_sort)
            self._key_buf = np.empty(2 * layout.c_n_total, dtype=layout.key_dtype)
            self._arena = Arena(max(2**16, 32 * layout.c_n_total))
        # What the compiled draws use (_compiled_draws; made on first use for the generator
        # they are of, never pickled). After a sim of this layout, at once with its scratch
        # (written before it is read).
        old_pcg = recycle._pcg if recycle is not None and recycle.lay is layout else None
        self._pcg: tuple[Any, ...] | None = (
            None if old_pcg is None else self._compiled_draws(rng.bit_generator, old_pcg))
        #: The sub-request awaiting a decision, or None when the episode's are all decided.
        self.pending: SubRequest | None = None
        self.backlog = 0.0  # integral of sum(1 / SLA) over requests in the system
        self._backlog_rate = 0.0
        self._backlog_t = 0.0
        self._faults = list(faults)
        self._stragglers = stragglers
        self._random_faults = random_faults
        for i, f in enumerate(self._faults):
            if not 0 <= f.target < N:
                raise ValueError(f"fault target {f.target} out of range [0, {N})")
            self._schedule(f.start_s, FAULT, 2 * i)
            self._schedule(f.start_s + f.duration_s, FAULT, 2 * i + 1)
        for n in range(N):
            if stragglers is not None and stragglers.rate_hz > 0:
                self._schedule(rng.exponential(1.0 / stragglers.rate_hz), STRAGGLER, n)
            if random_faults is not None and random_faults.rate_hz > 0:
                self._schedule(rng.exponential(1.0 / random_faults.rate_hz),
                                     RANDOM_FAULT, n)
        #: Whether more requests will arrive.
        self._arrivals_left = bool(self._arrival) and self.budget > 0
        if self._arrivals_left:
            self._schedule(self._arrival[0], ARRIVAL, 0)

    def busy_ahead_s(self, now: float) -> tuple[float, float]:
        """Busy time counted in ``sub.busy_s`` and ``req.busy_s`` that lies after ``now``
        (a service or an MLP is counted whole when it starts): the rest of the running
        services, and the dense work scheduled past ``now``."""
        nodes = 0.0
        ends = self._mv_end
        for n, nd in enumerate(self.nodes):
            if nd.serving is not None:
                # A service that starts later than now (its input arrives then) has all of
                # its length ahead, not more.
                nodes += min(max(ends[n] - now, 0.0), nd.service_s)
        dense = 0.0
        for jobs in self._dense_jobs:
            while jobs and jobs[0][1] <= now:
                jobs.popleft()
            for start, end in jobs:
                dense += end - (start if start > now else now)
        return nodes, dense

    def _warm_ranges(self, n: int) -> tuple[list[int], list[int]]:
        """The key ranges (starts, lengths) of node ``n``'s segments' hottest rows
        (``warm_rows[n]``), which the warm-up fills into its cache, in segment order (none
        when no segment has warm rows)."""
        assert self._warm_rows is not None
        lay = self.lay
        segs = np.flatnonzero(self._warm_rows[n] > 0)
        if not len(segs):
            return [], []
        starts = (self.key_off[n, lay.seg_shard[segs]] + lay.seg_key_off[segs]).tolist()
        return starts, self._warm_rows[n, segs].tolist()

    #: Attributes that are views of others (rebuilt by :meth:`_bind_views`, not pickled).
    _VIEWS = ("inflight_bytes", "inflight_t", "inflight_rate", "_lb2_bytes", "_lb2_t",
              "_lb2_rate",
              "service_end", "work_s", "node_features", "link_factor", "hit_rate", "_occ",
              "measured_slow", "link_messages")
    #: Memoryviews of arrays (rebuilt by :meth:`_bind_memoryviews`, not pickled), by the
    #: array attribute each one views.
    _MEMORYVIEWS: ClassVar[dict[str, str]] = {
        "_mv_ib": "inflight_bytes", "_mv_it": "inflight_t", "_mv_ir": "inflight_rate",
        "_mv_lm": "link_messages", "_mv_end": "service_end", "_mv_work": "work_s",
        "_mv_hit": "hit_rate", "_mv_occ": "_occ", "_mv_slow": "measured_slow",
        "_mv_out": "outstanding", "_mv_row_hit": "row_hit", "_mv_cache": "_cache_size",
        "_mv_up": "_up"}
    # (Any: typeshed types a memoryview's items as int; these hold float64 and int64.)
    _mv_ib: Any
    _mv_it: Any
    _mv_ir: Any
    _mv_lm: Any
    _mv_end: Any
    _mv_work: Any
    _mv_hit: Any
    _mv_occ: Any
    _mv_slow: Any
    _mv_out: Any
    _mv_row_hit: Any
    _mv_cache: Any
    _mv_up: Any

    def _bind_views(self) -> None:
        """Point the view attributes at the rows of :attr:`node_state`."""
        st = self.node_state
        self._lb2_bytes, self._lb2_t, self._lb2_rate = st[0:2], st[2:4], st[4:6]
        self.inflight_bytes = self._lb2_bytes.reshape(-1)  # contiguous rows: views
        self.inflight_t = self._lb2_t.reshape(-1)
        self.inflight_rate = self._lb2_rate.reshape(-1)
        #: Per node: end of the running service (in the past when idle).
        self.service_end = st[6]
        #: Per node: estimated service of the sub-requests routed there and not yet started.
        self.work_s = st[7]
        #: Per-node features the env's observation reads together, one row each: the row
        #: cache's running hit rate (:attr:`hit_rate` is a view of it), the fast-tier
        #: occupancy, the measured slowdown (:attr:`measured_slow`), and up (1.0) or down.
        feat = self.node_features = st[8:12]
        self.hit_rate = feat[0]
        self._occ = feat[1]
        self.measured_slow = feat[2]
        #: Per node: speed factor of its link (1 nominal).
        self.link_factor = st[12]
        #: Per link direction (index ``up * N + node``): messages in flight (``PsLink.n``,
        #: kept by :meth:`_relink`, which follows every change of a link).
        self.link_messages = st[13:15].reshape(-1)

    def _bind_memoryviews(self) -> None:
        """Memoryviews of the per-node arrays that the event loop reads and writes one
        element at a time (a memoryview's item is a Python float or int, read or written in
        a third of the time of a numpy scalar access; the same memory, so the arrays, which
        the observation reads whole, stay current, and the same values to the bit)."""
        for name, array in self._MEMORYVIEWS.items():
            setattr(self, name, memoryview(getattr(self, array)))

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        for name in (*self._VIEWS, *self._MEMORYVIEWS):  # pickle would copy them and lose
            state.pop(name, None)  # the sharing (and cannot pickle a memoryview)
        # Scratch buffers (written before every read) go as their size; the warm-up rows
        # (integers, mostly repeats) compressed.
        state["_u_buf"] = (self._u_buf.dtype.str, len(self._u_buf))
        state["_key_buf"] = (self._key_buf.dtype.str, len(self._key_buf))
        state["_warm_rows"] = pack(self._warm_rows)
        state["_pcg"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("_u_buf", "_key_buf"):
            dtype, n = state[name]
            state[name] = np.empty(n, dtype=np.dtype(dtype))
        state["_warm_rows"] = unpack(state["_warm_rows"])
        self.__dict__.update(state)
        self._bind_views()
        self._bind_memoryviews()

    def _set_cache_size(self, node: int, size: int) -> None:
        """Record node ``node``'s cache size (and its fast-tier occupancy)."""
        self._cache_size[node] = size
        full = self._occ_full[node]
        self._occ[node] = ((self._occ_pinned[node] + float(size) * self.spec.row_bytes) / full
                           if full > 0 else 0.0)

    def _recycled_caches(self, old: ShardSim | None) -> list[LruRowCache | LfuRowCache]:
        """One empty cache per node: ``old``'s LRU caches cleared (it must not be used
        afterwards) when it has the same layout, else new ones. Clearing an LRU cache costs
        O(1) where a new one costs its key space in zeroed memory."""
        N = self.n_nodes
        if (old is not None and old is not self and old.lay is self.lay
                and old.dynamic == self.dynamic and len(old.nodes) == N
                and all(type(nd.cache) is LruRowCache for nd in old.nodes)
                and self.spec.cache_policy == "lru"):
            caches = [nd.cache for nd in old.nodes if isinstance(nd.cache, LruRowCache)]
            if all(len(c.last1) == int(k) for c, k in zip(caches, self._n_keys, strict=True)):
                old.nodes = []
                for cache in caches:
                    cache.clear()
                return list(caches)
        return [self._make_cache(n) for n in range(N)]

    def _make_cache(self, n: int) -> LruRowCache | LfuRowCache:
        keys = int(self._n_keys[n])
        if self.spec.cache_policy == "lfu":
            return LfuRowCache(keys, self.lay.cache_rows[n])
        return LruRowCache(keys, self.lay.cache_rows[n])

    # ------------------------------------------------------------------ decisions
    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self.events.now

    def valid_nodes(self, shard: int) -> list[int]:
        """Replicas of ``shard`` that are up and reachable."""
        return list(self._live(shard))

    def _live(self, shard: int) -> tuple[int, ...]:
        """:meth:`valid_nodes` as a tuple, cached per :attr:`topology_version`."""
        if self._live_version != self.topology_version:
            self._live_cache.clear()
            self._live_version = self.topology_version
        live = self._live_cache.get(shard)
        if live is None:
            up = self._mv_up  # (items are Python bools)
            # (a list comprehension: about half the time of a generator into tuple())
            live = self._live_cache[shard] = tuple([n for n in self.replicas[shard] if up[n]])
        return live

    def fanout_left(self) -> tuple[SubRequest, ...]:
        """Sub-requests of the current request still to be presented after :attr:`pending`."""
        return tuple(self._fanout)

    def fanout_left_count(self) -> int:
        """``len(fanout_left())`` without building the tuple."""
        return len(self._fanout)

    def mask(self) -> np.ndarray:
        """Valid nodes for the pending sub-request, shape ``(N,)`` (all False when none)."""
        m = np.zeros(self.n_nodes, dtype=bool)
        if self.pending is not None:
            m[self.valid_nodes(self.pending.shard)] = True
        return m

    def route(self, node: int) -> None:
        """Send the pending sub-request to ``node``.

        Raises:
            RuntimeError: nothing is pending.
            ValueError: ``node`` does not hold the shard or is down.
        """
        sub = self.pending
        if sub is None:
            raise RuntimeError("no pending sub-request; call advance() first")
        if node not in self._live(sub.shard):
            raise ValueError(f"node {node} cannot serve shard {sub.shard} now")
        self.pending = None
        self._send(sub, node)

    def shed(self) -> None:
        """Drop the pending sub-request by decision (its request fails)."""
        sub = self.pending
        if sub is None:
            raise RuntimeError("no pending sub-request; call advance() first")
        self.pending = None
        self.sub_shed += 1
        self.sub.dropped_rejected += 1
        self._fail_sub(sub, count=False)

    def advance(self) -> None:
        """Run to the next sub-request that needs a decision (drains after the last one)."""
        fanout = self._fanout
        heap = self._heap
        q = self.events
        while True:
            while fanout:
                sub = fanout.popleft()
                self.sub.arrived += 1
                if self._live(sub.shard):
                    self.pending = sub
                    return
                self._fail_sub(sub)
            # self._step_event(False), inlined (the loop's hottest lines): pop the next live
            # event and dispatch it, the commonest kinds first.
            if not self._arrivals_left or not heap:
                break
            while True:
                t, _, _, ev = heappop(heap)
                if not ev[0]:
                    q.now = now = t
                    break
            self.events_handled += 1
            kind = ev[1]
            if kind == LINK_DONE:
                self._on_link_done(ev[2], now)
            elif kind == SERVICE_DONE:
                self._on_service_done(ev[2], now)
            else:
                self._dispatch(kind, ev[2], now)
        # Budget exhausted: drain what is in the system.
        while self._subs or self._reqs:
            if not self._step_event(True):
                break
        self._sync_backlog(self.events.now)

    # ------------------------------------------------------------------ the event loop
    def _step_event(self, draining: bool) -> bool:
        """Handle one event; False when there is nothing left to do."""
        q = self.events
        if draining and not (self._subs or self._reqs):
            return False
        heap = self._heap
        if not heap:
            return False
        while True:  # q.pop() of an _Ev, inlined
            t, _, _, ev = heappop(heap)
            if not ev[0]:
                q.now = now = t
                break
        self.events_handled += 1
        self._dispatch(ev[1], ev[2], now)
        return True

    def _dispatch(self, kind: int, target: int, now: float) -> None:
        """Handle an event of ``kind`` about ``target`` at ``now`` (its time)."""
        if kind == LINK_DONE:
            self._on_link_done(target, now)
        elif kind == SERVICE_DONE:
            self._on_service_done(target, now)
        elif kind == ARRIVAL:
            self._on_arrival(target, now)
        elif kind == REQUEST_DONE:
            self._on_request_done(target, now)
        elif kind == RETRY:
            self._on_retry(target, now)
        elif kind == STRAGGLER:
            self._on_straggler(target, now)
        elif kind == RANDOM_FAULT:
            self._on_random_fault(target, now)
        elif kind == FAULT:
            self._on_fault(target, now)

    def _schedule(self, time: float, kind: int, target: int) -> _Ev:
        """:meth:`EventQueue.schedule` of an :data:`_Ev`."""
        events = self.events
        if time < events.now:
            raise ValueError(f"cannot schedule at {time} before now={events.now}")
        ev = [False, kind, target]
        events.push(time, ev)
        return ev

    def _sync_backlog(self, now: float) -> None:
        self.backlog += self._backlog_rate * (now - self._backlog_t)
        self._backlog_t = now

    def _on_arrival(self, i: int, now: float) -> None:
        spec = self.spec
        left = self.budget - self._created
        fanout = min(self.n_shards, left)
        # Bottom MLP on the first free dense device.
        k = min(range(len(self.dense_free)), key=self.dense_free.__getitem__)
        start = max(now, self.dense_free[k])
        self.dense_free[k] = start + spec.bottom_s
        self.req.busy_s[k] += spec.bottom_s
        self._dense_jobs[k].append((start, start + spec.bottom_s))
        req = Request(self._next_req, now, now + self._sla[i], start + spec.bottom_s, fanout)
        self._next_req += 1
        self._reqs[req.id] = req
        self.req.arrived += 1
        self._sync_backlog(now)
        self._backlog_rate += req.inv_sla
        subs = self._make_subrequests(req, fanout)
        if self._extra is not None:
            extra, id_bytes = self._extra[i], spec.id_bytes
            for sub in subs:
                k = extra[sub.shard]
                if k:
                    sub.d_untracked += k
                    sub.lookups += k
                    sub.req_bytes += k * id_bytes
        self._fanout.extend(subs)
        self._created += fanout
        if self._created < self.budget and i + 1 < len(self._arrival):
            self._schedule(max(self._arrival[i + 1], now), ARRIVAL, i + 1)
        else:
            self._arrivals_left = False

    def _make_subrequests(self, req: Request, fanout: int) -> list[SubRequest]:
        """Draw the request's lookups and split them into per-shard sub-requests.

        Per cached table, the number of lookups in the tracked head is binomial; their ranks
        come from the law truncated to the head (the same law conditioned on it). Lookups of
        colder rows are counted, not drawn: each is one distinct SSD read (two of them on the
        same cold row of a multi-million-row table within one sub-request are rare). Pinned
        tables' lookups are only counted (always served from the fast tier).
        """
        if kernels.AVAILABLE:
            return self._make_subrequests_jit(req, fanout)
        spec = self.spec
        lay = self.lay
        S = self.n_shards
        rng = self.rng
        m = rng.binomial(lay.c_n, lay.c_ptracked)
        ranks = self._sample_ranks(m)
        untracked_total = lay.c_n - m
        if spec.row_wise:
            # shard = ranks % S; key = gseg_off[seg_of[shard, table]] + ranks // S
            if lay.shard_shift >= 0:
                shard = ranks & (S - 1)
                local = ranks >> lay.shard_shift
            else:
                shard = ranks % S
                local = ranks // S
            idx = lay.c_row_base.repeat(m)
            idx += shard
            key: np.ndarray = lay.c_gseg[idx]
            key += local.astype(lay.key_dtype)
            untracked = rng.multinomial(int(untracked_total.sum()), lay.row_pvals)
            lookups = (lay.pinned_lookups + np.bincount(shard, minlength=S) + untracked).tolist()
        else:
            key = lay.c_keyoff.repeat(m)
            np.add(key, ranks.astype(lay.key_dtype), out=key)
            untracked = np.bincount(lay.c_shard, weights=untracked_total,
                                    minlength=S).astype(np.int64)
            lookups = lay.lookups_tw
        # np.unique(key, return_counts=True), and where each shard's keys start.
        key.sort()
        n = len(key)
        base = lay.shard_base
        if n:
            first = np.empty(n, dtype=bool)
            first[0] = True
            np.not_equal(key[1:], key[:-1], out=first[1:])
            starts = first.nonzero()[0]
            uniq = key[starts]
            counts = np.empty(len(starts), dtype=np.intp)
            np.subtract(starts[1:], starts[:-1], out=counts[:-1])
            counts[-1] = n - starts[-1]
        else:
            uniq = key
            counts = np.zeros(0, dtype=np.intp)
        bounds = uniq.searchsorted(base)
        # Shard-space keys (the request-wide key minus the shard's base), for every shard.
        rel = uniq.astype(np.int64)
        rel -= base[:-1].repeat(bounds[1:] - bounds[:-1])
        tracked = key.searchsorted(base).tolist()  # lookup positions of each shard
        bl = bounds.tolist()
        untracked_l = untracked.tolist()
        return self._subrequests(req, fanout, rel, counts, bl, tracked, untracked_l, lookups,
                                 None)

    def _subrequests(self, req: Request, fanout: int, rel: np.ndarray, counts: np.ndarray,
                     bl: list[int], tracked: list[int], untracked_l: list[int],
                     lookups: list[int], req_bytes: Sequence[float] | None
                     ) -> list[SubRequest]:
        """The request's sub-requests from its distinct shard-space keys ``rel`` (with their
        ``counts``), shard ``s`` holding ``rel[bl[s]:bl[s + 1]]``; ``tracked`` the cumulative
        tracked lookups per shard, ``untracked_l``, ``lookups`` and (None: computed from
        ``lookups``) ``req_bytes`` per shard."""
        sid, req_bytes, resp = self._take_subs(fanout, lookups, req_bytes)
        return [SubRequest(sid + s, req, s, rel[bl[s]:bl[s + 1]], counts[bl[s]:bl[s + 1]],
                           untracked_l[s], lookups[s], req_bytes[s], resp[s],
                           tracked[s + 1] - tracked[s]) for s in range(fanout)]

    def _take_subs(self, fanout: int, lookups: list[int], req_bytes: Sequence[float] | None
                   ) -> tuple[int, Sequence[float], list[float]]:
        """The first of ``fanout`` new sub-request ids (taken), the request bytes per shard
        (``req_bytes``, or the header plus ``lookups`` ids when None) and the response
        bytes per shard: what :meth:`_subrequests` builds sub-requests from."""
        if req_bytes is None:
            header, id_bytes = self.spec.header_bytes, self.spec.id_bytes
            req_bytes = [header + n_look * id_bytes for n_look in lookups]
        sid = self._next_sub
        self._next_sub = sid + fanout
        return sid, req_bytes, self.lay.resp_bytes_list

    def _make_subrequests_jit(self, req: Request, fanout: int) -> list[SubRequest]:
        """:meth:`_make_subrequests` with the array work in compiled kernels
        (:mod:`envs.sim.dlrm.kernels`): the same draws, the same power, the same
        results (the keys sorted by a radix sort, :func:`kernels.radix_sort`, or, table-wise
        with the compiled uniforms of :mod:`envs.sim.dlrm.pcg`, drawn nearly sorted: see the
        code).

        With the compiled uniforms, the binomials are drawn in the same call
        (:func:`pcg.binomials`: numpy's ``random_binomial`` on the generator's state, where
        :func:`pcg.check_binomial` holds). Else, with few cached tables, they are drawn one
        table at a time: the array draw calls the same ``random_binomial`` on each (n, p)
        pair in order, so the stream and the numbers are the same, without the array call's
        argument checks (a few numpy reductions). The uniforms are drawn into a reused
        buffer (``out=`` fills it as the sized call fills a new array), and the keys and
        counts that the sub-requests keep come from an :class:`Arena`. Table-wise, a
        shard's untracked lookups are its cached lookups minus its tracked ones (every key
        of a table falls in its shard's key range), which the split kernel counts.
        """
        lay = self.lay
        rng = self.rng
        pv = self._pcg
        if pv is None or pv[0] is not rng.bit_generator:
            pv = self._pcg = self._compiled_draws(rng.bit_generator)
        norm: np.ndarray = lay.c_norm_d
        # (None: the exponential law, which never has compiled draws, see _compiled_draws)
        power: Any = lay.c_power
        m: np.ndarray
        drawn = pv[2] is not None
        if drawn:
            # The binomials and the uniforms in one compiled call: numpy's random_binomial
            # on the generator's state (pcg.binomials), then the uniforms as below.
            m, views = pv[2], pv[1]
            with pv[0].lock:  # (as numpy's own draws: the kernel releases the GIL)
                if len(pv) > 3:
                    n = pcg.binomial_bucketed(views[0], views[1], lay.c_n, lay.c_ptracked, m,
                                              norm, pv[3], pv[4], pv[5], pv[6], self._u_buf)
                else:
                    n = pcg.binomial_scaled(views[0], views[1], lay.c_n, lay.c_ptracked, m,
                                            norm, self._u_buf)
        elif lay.c_scalar:
            binomial = rng.binomial
            ml = [binomial(k, p) for k, p in lay.c_n_p]
            m = np.array(ml, dtype=np.int64)
            n = sum(ml)
        else:
            m = rng.binomial(lay.c_n, lay.c_ptracked)
            n = sum(m.tolist())
        u: np.ndarray = self._u_buf[:n]
        key = self._key_buf[:n]
        out = np.empty((3, self.n_shards + 1), dtype=np.int64)
        arena = self._arena
        rel = arena.take(n)
        counts = arena.take(n) if _INTP64 else np.empty(n, dtype=np.intp)
        if len(pv) > 3:
            # Table-wise with the compiled draws: the same uniforms, placed table by table
            # in key order and nearly sorted within a table (pcg.uniform_bucketed), so that
            # their keys need about one insertion pass to be sorted instead of a radix sort
            # (kernels.nearly_sorted_split). The power is numpy's as below (an elementwise
            # ufunc: a draw's value does not depend on its place), and sorted keys are one
            # array whatever order they were drawn in.
            order = pv[3]
            if not drawn:
                views = pv[1]
                with pv[0].lock:  # (as numpy's own draws: the kernel releases the GIL)
                    pcg.uniform_bucketed(views[0], views[1], m, norm, order, pv[4], pv[5],
                                         pv[6], u)
            x = np.power(u, power, out=u)
            kernels.nearly_sorted_split(x, m, lay.c_ub, lay.c_keyoff, order, lay.shard_base,
                                        key, self._key_buf[n:], rel, counts, out,
                                        lay.cached_lookups_tw)
        else:
            if drawn:
                x = np.power(u, power, out=u)
            elif pv[1] is not None:  # the same draws, scaled (see pcg)
                with pv[0].lock:  # (as numpy's own draws: the generator's state is shared)
                    pcg.uniform_scaled(pv[1][0], pv[1][1], m, norm, u)
                x = np.power(u, power, out=u)
            else:
                rng.random(dtype=norm.dtype, out=u)
                if power is None:
                    x = np.exp(u * norm.repeat(m))
                else:
                    kernels.scale_draws(u, m, norm)
                    x = np.power(u, power, out=u)
            if lay.spec.row_wise:
                kernels.row_keys(x, m, lay.c_ub, lay.c_gseg, self.n_shards, lay.shard_shift,
                                 key)
                untracked = rng.multinomial(lay.c_n_total - n, lay.row_pvals)
                if not kernels.radix_sort(key, self._key_buf[n:]):
                    key.sort()
                # out[2]: pinned + untracked + tracked lookups per shard
                kernels.split_sorted(key, lay.shard_base, rel, counts, out,
                                     lay.pinned_lookups + untracked, 1)
                bl, tracked, lookups = out.tolist()
                return self._subrequests(req, fanout, rel, counts, bl, tracked,
                                         untracked.tolist(), lookups, None)
            kernels.table_keys(x, m, lay.c_ub, lay.c_keyoff, key)
            if not kernels.radix_sort(key, self._key_buf[n:]):
                key.sort()
            # out[2]: cached - tracked lookups per shard, the untracked ones
            kernels.split_sorted(key, lay.shard_base, rel, counts, out,
                                 lay.cached_lookups_tw, -1)
        self._split = out  # (what CompiledShardSim makes the sub-requests' rows of)
        bl, tracked, untracked_l = out.tolist()
        return self._subrequests(req, fanout, rel, counts, bl, tracked, untracked_l,
                                 lay.lookups_tw, lay.req_bytes_tw)

    def _compiled_draws(self, bit_generator: Any,
                        old: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
        """What :meth:`_make_subrequests_jit` draws with, for ``bit_generator``: ``(it,
        views, m)``, where ``views`` is None (numpy's draws) or the generator's state
        (:func:`pcg.uniform_scaled`), ``m`` None (numpy's binomials) or the int64 scratch
        of :func:`pcg.binomials` (where :func:`pcg.check_binomial` holds), or, table-wise,
        ``(it, views, m, order, w, hist, start)`` (the cached tables in key order and the
        scratch of :func:`pcg.uniform_bucketed`). ``old``: such a tuple of this layout, whose
        arrays are reused (the choices are made again: views and checks)."""
        lay = self.lay
        views = (pcg.views(bit_generator) if lay.c_power is not None and len(lay.c_n)
                 and lay.c_norm_d.dtype == np.float32 else None)
        m = None
        if views is not None and pcg.check_binomial():
            m = (old[2] if old is not None and old[2] is not None
                 else np.empty(len(lay.c_n), dtype=np.int64))
        if views is None or lay.spec.row_wise:
            return (bit_generator, views, m)
        if old is not None and len(old) > 3:
            return (bit_generator, views, m, *old[3:])
        order = np.argsort(lay.c_keyoff, kind="stable").astype(np.int64)
        return (bit_generator, views, m, order, np.empty(lay.c_n_total, dtype=np.uint32),
                np.empty(2 * int(lay.c_n.max()) + 2, dtype=np.int64),
                np.empty(len(lay.c_n), dtype=np.int64))

    def _sample_ranks(self, m: np.ndarray) -> np.ndarray:
        """:func:`envs.sim.dlrm.skew.sample_ranks` of ``m[i]`` lookups of cached table ``i`` (ranks
        in its tracked head): the same draws and operations, on precomputed tables."""
        lay = self.lay
        c: np.ndarray = lay.c_norm_d.repeat(m)
        u: np.ndarray = self.rng.random(c.shape, dtype=c.dtype)
        if lay.c_power is None:
            x = np.exp(u * c)
        else:
            x = np.multiply(u, c, out=c)
            x += 1.0
            np.power(x, lay.c_power, out=x)
        k = x.astype(np.int64)
        k -= 1
        np.maximum(k, 0, out=k)
        return np.minimum(k, lay.c_ub.repeat(m), out=k)

    # ------------------------------------------------------------------ estimates
    def estimate_service_s(self, sub: SubRequest, node: int) -> float:
        """Nominal service time of ``sub`` on ``node`` with the node's running hit estimate."""
        miss = sub.d_tracked * (1.0 - float(self.row_hit[node, sub.shard])) + sub.d_untracked
        return self.spec.node_overhead_s + max(self.lay.c_fast_list[node] * (sub.lookups - miss),
                                               self.lay.c_slow_list[node] * miss)

    def remaining_work(self, now: float) -> np.ndarray:
        """Per node: estimated seconds of work (the running sub-request and those routed)."""
        return np.maximum(self.service_end - now, 0.0) + self.work_s

    def link_bytes(self, now: float, up: bool) -> np.ndarray:
        """Per node: payload bytes in flight on its link (``up``: towards the central node).

        A fair-shared link drains at its full rate while busy, so the bytes left at ``now``
        follow from those at its last change without touching every link.
        """
        k = 1 if up else 0
        left = self._lb2_bytes[k] - (now - self._lb2_t[k]) * self._lb2_rate[k]
        return np.maximum(left, 0.0)

    def link_bytes_both(self, now: float, out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`link_bytes` of both directions as one ``(2, N)`` array (row 0 towards the
        nodes, row 1 back), written into ``out`` when given."""
        if out is None:
            out = np.empty((2, self.n_nodes))
        np.subtract(now, self._lb2_t, out=out)
        out *= self._lb2_rate
        np.subtract(self._lb2_bytes, out, out=out)
        return np.maximum(out, 0.0, out=out)

    def sync_backlog(self) -> None:
        """Bring :attr:`backlog` up to the current time (:meth:`_sync_backlog` of now,
        inlined: the env's reward calls it every step)."""
        now = self.events.now
        self.backlog += self._backlog_rate * (now - self._backlog_t)
        self._backlog_t = now

    # ------------------------------------------------------------------ movement
    def _send(self, sub: SubRequest, node: int) -> None:
        now = self.events.now
        sub.node = node
        sub.state = 1
        sid = sub.id
        self.nodes[node].members[sid] = sub
        self._subs[sid] = sub
        # estimate_service_s(sub, node), inlined (max(a, b) is ``b if b > a else a``)
        lay = self.lay
        miss = sub.d_tracked * (1.0 - self._mv_row_hit[node, sub.shard]) + sub.d_untracked
        fast, slow = lay.c_fast_list[node] * (sub.lookups - miss), lay.c_slow_list[node] * miss
        est = self.spec.node_overhead_s + (slow if slow > fast else fast)
        sub.est_s = est
        work_s = self._mv_work
        work_s[node] = work_s[node] + est
        self._mv_out[node] += 1
        nbytes = sub.req_bytes
        self.link_bytes_sent[node] += nbytes
        link = self.links_down[node]
        # link.add(now, nbytes, sub), inlined
        n = link.n
        dt = now - link.t
        if dt > 0.0 and n:
            link.v += dt * link.payload_bps * link.factor / n
            link.busy_s += dt
        link.t = now
        finish = link.v + nbytes
        seq = link._seq + 1
        link._seq = seq
        sub.flow_seq = seq
        sub.flow_finish = finish
        heappush(link._heap, (finish, seq, sub))
        link.n = n + 1
        link.bytes_done += nbytes
        link._sum_finish += finish
        self._relink(2 * node, link)

    def _relink(self, lid: int, link: PsLink) -> None:
        ev = link.event
        if ev is not None:
            ev[0] = True  # cancelled
        events = self.events
        now = events.now
        # t, left, rate = link.state(now), inlined (the same operations)
        heap = link._heap
        while heap and heap[0][2].flow_seq != heap[0][1]:
            heappop(heap)
        n = link.n
        factor = link.factor
        if not n:
            t = (_INF if not heap or factor <= 0.0
                 else link.t + max(heap[0][0] - link.v, 0.0) / (link.payload_bps
                                                               * factor / n))
            left = rate = 0.0
        else:
            bps = link.payload_bps
            rate = bps * factor
            lt = link.t
            v = link.v
            if not heap or factor <= 0.0:
                t = _INF
            else:
                x = heap[0][0] - v
                t = lt + (0.0 if 0.0 > x else x) / (rate / n)  # max(x, 0.0)
            dt = now - lt
            v = v + (dt * bps * factor / n if dt > 0 else 0.0)
            x = link._sum_finish - n * v
            left = 0.0 if 0.0 > x else x
        if t < _INF:  # self._schedule(t, LINK_DONE, lid) without a call
            if t < now:
                raise ValueError(f"cannot schedule at {t} before now={now}")
            ev = link.event = [False, LINK_DONE, lid]
            seq = events._seq = events._seq + 1  # events.push(t, ev), inlined
            heappush(self._heap, (t, 0, seq, ev))
        else:
            link.event = None
        i = (lid & 1) * self.n_nodes + (lid >> 1)
        self._mv_ib[i] = left
        self._mv_it[i] = now
        self._mv_ir[i] = rate
        self._mv_lm[i] = n
        busy = link.busy_s
        self._link_busy[i] = busy
        if busy > self._link_busy_max:
            self._link_busy_max = busy

    def _on_link_done(self, lid: int, now: float) -> None:
        node, up = divmod(lid, 2)
        link = self.links_up[node] if up else self.links_down[node]
        link.event = None
        arrive = now + link.fixed_s
        # link.pop_done(now), inlined (the same operations)
        n = link.n
        dt = now - link.t
        if dt > 0.0 and n:
            link.v += dt * link.payload_bps * link.factor / n
            link.busy_s += dt
        link.t = now
        heap = link._heap
        done = []
        limit = link.v + _EPS_BYTES
        sum_finish = link._sum_finish
        while heap:
            top = heap[0]
            msg = top[2]
            if msg.flow_seq != top[1]:
                heappop(heap)
                continue
            if top[0] > limit:
                break
            heappop(heap)
            msg.flow_seq = 0
            n -= 1
            sum_finish -= top[0]
            done.append(msg)
        link.n = n
        link._sum_finish = 0.0 if n == 0 else sum_finish
        for sub in done:
            if type(sub) is Migration:
                self._finish_migration(sub)
            elif up:
                self._deliver(sub, arrive)
            else:
                nd = self.nodes[node]
                if nd.serving is None and not nd.queue and self.spec.queue_capacity > 0:
                    sub.state = 2  # self._enqueue(sub, node, arrive) of an idle node
                    self._start_service(node, sub, arrive)
                else:
                    self._enqueue(sub, node, arrive)
        self._relink(lid, link)

    def _enqueue(self, sub: SubRequest, node: int, ready: float) -> None:
        nd = self.nodes[node]
        load = len(nd.queue) + (nd.serving is not None)
        if load >= self.spec.queue_capacity:
            self.work_s[node] -= sub.est_s
            self._leave_node(sub)
            self.sub.dropped_overflow += 1
            self._fail_sub(sub, count=False)
            return
        sub.state = 2
        if nd.serving is None:
            self._start_service(node, sub, ready)
        else:
            sub.flow_finish = ready  # reused as the time it reached the node
            nd.queue.append(sub)

    def _start_service(self, node: int, sub: SubRequest, ready: float) -> None:
        nd = self.nodes[node]
        now = self.events.now
        if ready > now:
            now = ready
        work_s = self._mv_work
        w = work_s[node] - sub.est_s
        work_s[node] = w if w > 1e-15 else 0.0
        shard = sub.shard
        cache = nd.cache
        keys = sub.keys
        n_keys = len(keys)
        if n_keys and kernels.AVAILABLE and type(cache) is LruRowCache and cache.capacity:
            # cache.access(keys, sub.counts, offset, sub.tracked_lookups), inlined (its
            # compiled branch: a non-empty batch, a cache with room)
            cache._stale = False
            t = cache.tick
            if t - cache._base >= len(cache._alive):
                cache._compact()
            misses, cache.oldest, cache.size = kernels.lru_access(
                cache.last1, cache._alive, keys, self._key_off_list[node][shard],
                cache.oldest, cache._base, t, cache.capacity, cache.size)
            cache.tick = t + 1
            hits = sub.tracked_lookups - misses
        else:
            hits, misses = cache.access(keys, sub.counts, self._key_off_list[node][shard],
                                        sub.tracked_lookups)
        # self._set_cache_size(node, cache.size), inlined
        size = cache.size
        self._mv_cache[node] = size
        full = self._occ_full[node]
        self._mv_occ[node] = ((self._occ_pinned[node] + float(size) * self.spec.row_bytes)
                              / full if full > 0 else 0.0)
        slow_reads = misses + sub.d_untracked
        self.slow_reads[node] += slow_reads
        self.fast_reads[node] += sub.lookups - slow_reads
        lay = self.lay
        fast = lay.c_fast_list[node] * (sub.lookups - slow_reads)
        slow_ = lay.c_slow_list[node] * slow_reads
        nominal = self.spec.node_overhead_s + (slow_ if slow_ > fast else fast)  # max()
        slow = nd.slow
        service = nominal * slow
        nd.serving = sub
        nd.service_s = service
        end = now + service
        self._mv_end[node] = end
        events = self.events
        if end < events.now:  # self._schedule(end, SERVICE_DONE, node) without a call
            raise ValueError(f"cannot schedule at {end} before now={events.now}")
        ev = nd.service_event = [False, SERVICE_DONE, node]
        seq = events._seq = events._seq + 1  # events.push(end, ev), inlined
        heappush(self._heap, (end, 0, seq, ev))
        self.sub.busy_s[node] += service
        # What the node reports back with the response (seen by the router on delivery).
        a = self.ewma
        cacheable = sub.tracked_lookups + sub.d_untracked
        if cacheable:
            self.cache_lookups[node] += cacheable
            self.cache_hits[node] += hits
            self.cache_lookups_total += cacheable
            self.cache_hits_total += hits
            hit_rate = self._mv_hit
            hr = hit_rate[node]
            hit_rate[node] = hr + a * (hits / cacheable - hr)
        if sub.d_tracked:
            row_hit = self._mv_row_hit
            rh = row_hit[node, shard]
            row_hit[node, shard] = rh + a * (1.0 - misses / sub.d_tracked - rh)
        measured = self._mv_slow
        ms = measured[node]
        measured[node] = ms + a * (slow - ms)

    def _on_service_done(self, node: int, now: float) -> None:
        nd = self.nodes[node]
        sub = nd.serving
        assert sub is not None
        nd.serving = None
        nd.service_event = None
        sub.state = 3
        nbytes = sub.resp_bytes
        self.link_bytes_sent[node] += nbytes
        link = self.links_up[node]
        # link.add(now, nbytes, sub), inlined
        n = link.n
        dt = now - link.t
        if dt > 0.0 and n:
            link.v += dt * link.payload_bps * link.factor / n
            link.busy_s += dt
        link.t = now
        finish = link.v + nbytes
        seq = link._seq + 1
        link._seq = seq
        sub.flow_seq = seq
        sub.flow_finish = finish
        heappush(link._heap, (finish, seq, sub))
        link.n = n + 1
        link.bytes_done += nbytes
        link._sum_finish += finish
        self._relink(2 * node + 1, link)
        if nd.queue:
            nxt = nd.queue.popleft()
            self._start_service(node, nxt, nxt.flow_finish)

    def _leave_node(self, sub: SubRequest) -> None:
        node = sub.node
        if node >= 0:
            self.nodes[node].members.pop(sub.id, None)
            self._mv_out[node] -= 1

    def _deliver(self, sub: SubRequest, at: float) -> None:
        """``sub``'s response reaches the central node at ``at``."""
        node = sub.node  # self._leave_node(sub), inlined
        if node >= 0:
            self.nodes[node].members.pop(sub.id, None)
            self._mv_out[node] -= 1
        sub.state = 4
        del self._subs[sub.id]
        req = sub.req
        c = self.sub
        c.completed += 1
        if at <= req.deadline:
            c.good += 1
        req.left -= 1
        req.resolved += 1
        if at > req.gathered:
            req.gathered = at
        if not req.failed and req.left == 0:
            spec = self.spec
            ready = req.bottom_done if req.bottom_done > req.gathered else req.gathered  # max()
            k = min(range(len(self.dense_free)), key=self.dense_free.__getitem__)
            start = max(ready, self.dense_free[k])
            self.dense_free[k] = start + spec.top_s
            self.req.busy_s[k] += spec.top_s
            self._dense_jobs[k].append((start, start + spec.top_s))
            self._schedule(start + spec.top_s, REQUEST_DONE, req.id)
        elif req.failed and req.resolved == req.fanout:
            self._reqs.pop(req.id, None)

    def _on_request_done(self, rid: int, now: float) -> None:
        req = self._reqs.pop(rid)
        req.done = True
        c = self.req
        c.completed += 1
        lat = now - req.arrival
        c.latency.add(lat)
        if now <= req.deadline:
            c.good += 1
        self._sync_backlog(now)
        self._backlog_rate -= req.inv_sla

    def _fail_sub(self, sub: SubRequest, count: bool = True) -> None:
        """``sub`` fails; its request fails (once). ``count`` adds it to ``sub_failed``."""
        if count:
            self.sub_failed += 1
            self.sub.dropped_failed += 1
        sub.state = 5
        self._subs.pop(sub.id, None)
        req = sub.req
        req.resolved += 1
        req.left -= 1
        if not req.failed:
            req.failed = True
            self.req.dropped_failed += 1
            self._sync_backlog(self.events.now)
            self._backlog_rate -= req.inv_sla
        if req.resolved == req.fanout:
            self._reqs.pop(req.id, None)

    # ------------------------------------------------------------------ faults
    def _evacuate(self, node: int, now: float, node_failed: bool) -> None:
        """Pull every sub-request out of ``node`` (and its link) and retry or fail them."""
        nd = self.nodes[node]
        if nd.service_event is not None:
            nd.service_event[0] = True  # cancelled
            nd.service_event = None
        if nd.serving is not None:  # its whole service was counted busy when it started
            self.sub.busy_s[node] -= min(max(0.0, float(self.service_end[node]) - now),
                                         nd.service_s)
        nd.serving = None
        nd.queue.clear()
        self.work_s[node] = 0.0
        self.service_end[node] = now
        for sub in list(nd.members.values()):
            if sub.state == 3 and node_failed:
                continue  # the response is on the wire already: it arrives
            if sub.state == 1:
                self.links_down[node].abort(now, sub)
            elif sub.state == 3:
                self.links_up[node].abort(now, sub)
            self._leave_node(sub)
            sub.node = -1
            sub.state = 0
            if sub.retries < self.spec.max_retries:
                sub.retries += 1
                self.sub_retried += 1
                self._schedule(now + self.spec.retry_delay_s, RETRY, sub.id)
            else:
                self._fail_sub(sub)
        for mig in self._migrating.pop(node, []):
            self.links_down[node].abort(now, mig)
            self.loading[node, mig.shard] = False
            self.topology_version += 1
            self.migrations_failed += 1
        self._relink(2 * node, self.links_down[node])
        self._relink(2 * node + 1, self.links_up[node])

    # ------------------------------------------------------------------ placement
    def migration_bytes_of(self, shard: int, warm: np.ndarray | None) -> float:
        """Bytes to ship to start serving ``shard`` on a new node: its pinned tables and the
        hot rows to warm its cache (``warm[j]`` rows of segment ``j``). The full tables are on
        every node's SSD already (a replica is a DRAM working set, not a copy of the model)."""
        lay = self.lay
        segs = lay.seg_shard == shard
        rows = float(lay.seg_rows[segs & lay.seg_pinned].sum())
        if warm is not None:
            rows += float(warm[segs].sum())
        return self.spec.header_bytes + rows * self.spec.row_bytes

    def add_replica(self, shard: int, node: int, warm: np.ndarray | None = None) -> None:
        """Start loading ``shard`` on ``node`` over its link; it serves once the data is in.

        Args:
            shard: The shard.
            node: The node (must be up, not hold or be loading the shard).
            warm: Rows of each segment shipped to warm the new replica's cache ``(segments,)``.

        Raises:
            ValueError: not dynamic, or the node holds, loads or cannot take the shard now.
        """
        mig, nbytes = self._start_migration(shard, node, warm)
        self.link_bytes_sent[node] += nbytes
        link = self.links_down[node]
        link.add(self.events.now, nbytes, mig)
        self._relink(2 * node, link)

    def _start_migration(self, shard: int, node: int,
                         warm: np.ndarray | None) -> tuple[Migration, float]:
        """:meth:`add_replica`'s checks and bookkeeping before the migration's message goes on
        the link (the compiled simulator sends it on its arrays): the migration and its bytes."""
        if not self.dynamic:
            raise ValueError("replicas are static; build the simulator with dynamic=True")
        nd = self.nodes[node]
        if self.holds[node, shard] or self.loading[node, shard] or nd.down or nd.link_down:
            raise ValueError(f"node {node} cannot start loading shard {shard} now")
        mig = Migration(shard, node, warm)
        nbytes = self.migration_bytes_of(shard, warm)
        self.loading[node, shard] = True
        self.topology_version += 1
        self._migrating.setdefault(node, []).append(mig)
        self.migrations += 1
        self.migration_bytes += nbytes
        return mig, nbytes

    def _finish_migration(self, mig: Migration) -> None:
        n, s = mig.node, mig.shard
        self._migrating[n].remove(mig)
        self.loading[n, s] = False
        self.holds[n, s] = True
        self.replicas[s].append(n)
        self.topology_version += 1
        if mig.warm is not None:
            lay = self.lay
            segs = np.flatnonzero((lay.seg_shard == s) & (mig.warm > 0))
            if len(segs):
                off = int(self.key_off[n, s])
                self.nodes[n].cache.warm_ranges((off + lay.seg_key_off[segs]).tolist(),
                                                mig.warm[segs].tolist())
                self._set_cache_size(n, self.nodes[n].cache.size)

    def drop_replica(self, shard: int, node: int) -> None:
        """Stop routing ``shard`` to ``node`` (what is there already finishes).

        Raises:
            ValueError: not dynamic, or ``node`` does not hold ``shard``.
        """
        if not self.dynamic or not self.holds[node, shard]:
            raise ValueError(f"node {node} does not hold shard {shard}")
        self.holds[node, shard] = False
        self.replicas[shard].remove(node)
        self.topology_version += 1

    # ------------------------------------------------------------------ routing helpers
    def predict_finish(self, sub: SubRequest, fixed_s: np.ndarray, bps: np.ndarray
                       ) -> np.ndarray:
        """Seconds until ``sub``'s response would be back from each node (a prediction).

        Link backlog and transfer, then (queued work + this service at the node's running hit
        estimate) times its measured slowdown, then the response's transfer.

        Args:
            sub: The sub-request.
            fixed_s: Per-node link latency + RPC overhead.
            bps: Per-node link payload bandwidth (nominal).
        """
        now = self.events.now
        lay = self.lay
        miss = sub.d_tracked * (1.0 - self.row_hit[:, sub.shard]) + sub.d_untracked
        svc = self.spec.node_overhead_s + np.maximum(lay.c_fast * (sub.lookups - miss),
                                                     lay.c_slow * miss)
        rate = bps * self.link_factor
        t_down = fixed_s + (self.link_bytes(now, up=False) + sub.req_bytes) / rate
        t_up = fixed_s + sub.resp_bytes / rate
        return t_down + (self.remaining_work(now) + svc) * self.measured_slow + t_up

    def route_earliest(self, fixed_s: Sequence[float] | np.ndarray,
                       bps: Sequence[float] | np.ndarray) -> int:
        """``route(earliest_replica(pending, fixed_s, bps))``; returns the node.

        Raises:
            RuntimeError: nothing is pending.
            ValueError: no replica of its shard is live (from :meth:`earliest_replica`).
        """
        sub = self.pending
        if sub is None:
            raise RuntimeError("no pending sub-request; call advance() first")
        node = self.earliest_replica(sub, fixed_s, bps)
        self.route(node)
        return node

    def route_request_earliest(self, fixed_s: Sequence[float] | np.ndarray,
                               bps: Sequence[float] | np.ndarray) -> None:
        """:meth:`route_earliest` of the pending sub-request and of its request's others as
        they come (an :meth:`advance` after each), up to the first sub-request of another
        request (or the end: nothing pending).

        Raises:
            RuntimeError: nothing is pending.
        """
        sub = self.pending
        if sub is None:
            raise RuntimeError("no pending sub-request; call advance() first")
        req = sub.req
        while sub is not None and sub.req is req:
            self.route_earliest(fixed_s, bps)
            self.advance()
            sub = self.pending

    def earliest_replica(self, sub: SubRequest, fixed_s: Sequence[float] | np.ndarray,
                         bps: Sequence[float] | np.ndarray) -> int:
        """``min(valid_nodes(sub.shard), key=lambda k: (predict_finish(...)[k], k))``.

        The prediction of :meth:`predict_finish` for the live replicas only, in plain floats
        (the same operations in the same order, so the same bits); ``fixed_s`` and ``bps``
        are per-node lists (or float64 arrays: then compiled, when numba is there). Raises
        ``ValueError`` (from ``min``) when no replica is live.
        """
        now = self.events.now
        s = sub.shard
        lay = self.lay
        overhead = self.spec.node_overhead_s
        if kernels.AVAILABLE and type(fixed_s) is np.ndarray and type(bps) is np.ndarray:
            best = kernels.earliest_replica(
                now, s, sub.d_tracked, sub.d_untracked, sub.lookups, sub.req_bytes,
                sub.resp_bytes, self.holds, self.row_hit, self.node_state, fixed_s, bps,
                lay.c_fast, lay.c_slow, overhead)
            if best < 0:
                raise ValueError("min() arg is an empty sequence")
            return best
        d_tracked, d_untracked, lookups = sub.d_tracked, sub.d_untracked, sub.lookups
        req_bytes, resp_bytes = sub.req_bytes, sub.resp_bytes
        row_hit, link_factor = self.row_hit, self.link_factor
        lb_bytes, lb_t, lb_rate = self.inflight_bytes, self.inflight_t, self.inflight_rate
        service_end, work_s, slow = self.service_end, self.work_s, self.measured_slow
        c_fast, c_slow = lay.c_fast_list, lay.c_slow_list
        best = -1
        best_t = 0.0
        for k in self._live(s):
            # np.maximum(a, b) is ``a if a > b or a is NaN else b`` (b on ties, e.g. -0.0).
            miss = d_tracked * (1.0 - float(row_hit[k, s])) + d_untracked
            fast, slow_ = c_fast[k] * (lookups - miss), c_slow[k] * miss
            svc = overhead + (fast if fast > slow_ or fast != fast else slow_)
            rate = bps[k] * float(link_factor[k])
            left = float(lb_bytes[k]) - (now - float(lb_t[k])) * float(lb_rate[k])
            t_down = fixed_s[k] + ((left if left > 0.0 or left != left else 0.0)
                                   + req_bytes) / rate
            t_up = fixed_s[k] + resp_bytes / rate
            x = float(service_end[k]) - now
            rw = (x if x > 0.0 or x != x else 0.0) + float(work_s[k])
            t = t_down + (rw + svc) * float(slow[k]) + t_up
            if best < 0 or t < best_t or (t == best_t and k < best):
                best, best_t = k, t
        if best < 0:
            raise ValueError("min() arg is an empty sequence")
        return best

    def _on_retry(self, sid: int, now: float) -> None:
        sub = self._subs.get(sid)
        if sub is None:
            return
        valid = self.valid_nodes(sub.shard)
        if not valid:
            self._fail_sub(sub)
            return
        best = min(valid, key=lambda n: (int(self.outstanding[n]), n))
        self._send(sub, best)

    def _set_down(self, node: int, now: float, kind: str, delta: int) -> None:
        nd = self.nodes[node]
        was_up = not nd.down and not nd.link_down
        if kind == "node":
            nd.down += delta
        else:
            nd.link_down += delta
        up = not nd.down and not nd.link_down
        self._up[node] = up
        self.node_features[3, node] = 1.0 if up else 0.0
        self.topology_version += 1
        if was_up and (nd.down or nd.link_down):
            self._evacuate(node, now, node_failed=kind == "node")
        if kind == "node" and delta > 0 and nd.down == 1:
            nd.cache.clear()  # the node restarts cold
            self._set_cache_size(node, 0)
            self.row_hit[node] = self._row_hit0[node]

    def _on_fault(self, code: int, now: float) -> None:
        f = self._faults[code // 2]
        start = code % 2 == 0
        n = f.target
        if f.mode == "fail":
            self._set_down(n, now, f.kind, 1 if start else -1)
        elif f.kind == "node":
            nd = self.nodes[n]
            nd.slow = nd.slow * f.factor if start else nd.slow / f.factor
        else:
            for lid, link in ((2 * n, self.links_down[n]), (2 * n + 1, self.links_up[n])):
                link.set_factor(now, link.factor / f.factor if start else link.factor * f.factor)
                self._relink(lid, link)
            self.link_factor[n] = self.links_down[n].factor
            self.link_version += 1

    def _on_straggler(self, node: int, now: float) -> None:
        st = self._stragglers
        assert st is not None
        nd = self.nodes[node]
        if nd.straggling:
            nd.straggling = False
            nd.slow /= st.factor
            self._schedule(now + self.rng.exponential(1.0 / st.rate_hz), STRAGGLER, node)
        else:
            nd.straggling = True
            nd.slow *= st.factor
            self._schedule(now + self.rng.exponential(st.duration_s), STRAGGLER, node)

    def _on_random_fault(self, node: int, now: float) -> None:
        rf = self._random_faults
        assert rf is not None
        nd = self.nodes[node]
        if nd.randomly_down:
            nd.randomly_down = False
            self._set_down(node, now, "node", -1)
            self._schedule(now + self.rng.exponential(1.0 / rf.rate_hz), RANDOM_FAULT,
                                 node)
            return
        # Never take the last live replica of a shard down at random.
        last = any(self.holds[node, s] and self.valid_nodes(s) == [node]
                   for s in range(self.n_shards))
        if last or nd.down or nd.link_down:
            self._schedule(now + self.rng.exponential(1.0 / rf.rate_hz), RANDOM_FAULT,
                                 node)
            return
        nd.randomly_down = True
        self._set_down(node, now, "node", 1)
        self._schedule(now + self.rng.exponential(rf.duration_s), RANDOM_FAULT, node)

    # ------------------------------------------------------------------ reading
    def up(self) -> np.ndarray:
        """Per node: up and reachable (a bool array; do not modify)."""
        return self._up

    def cache_occupancy(self) -> np.ndarray:
        """Per node: used share of the fast tier (pinned rows + cached rows)."""
        return self._occ.copy()

    def link_utilization(self, elapsed_s: float) -> tuple[float, float]:
        """(mean, max) over link directions of the fraction of time carrying messages."""
        if elapsed_s <= 0:
            return 0.0, 0.0
        busy = self._link_busy  # [down links..., up links...], kept by _relink
        return sum(busy) / (len(busy) * elapsed_s), self._link_busy_max / elapsed_s

    def in_flight_requests(self) -> int:
        """Requests not yet resolved."""
        return len(self._reqs)
