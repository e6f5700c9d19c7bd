""":class:`CompiledShardSim`: :class:`~envs.sim.dlrm.cluster.ShardSim` with its event loop in
one compiled kernel (:mod:`envs.sim.dlrm.segment`).

Between two decisions the reference simulator handles some 24 link, service and request
completions in Python. Here the links, nodes, row caches (LRU), sub-requests, requests and the
event heap are arrays, and :func:`segment.run_segment` handles those completions in one call;
the events that draw from the random generator or need Python's objects (arrivals, stragglers)
stay in the reference's Python handlers, called in the same order, so the random stream and
every result are the same to the bit (``tests/test_shard_segment.py`` checks whole episodes
against the reference, which ``LDSGYM_NO_JIT=1`` runs).

It covers the configurations with an LRU row cache (the kernel's cache): stragglers, scheduled
slowdowns and failures of nodes and links, random failures and retries are handled in Python
on the arrays (the reference's handlers, or their ports where they touch a link or a node's
queue), and so is a link completion that finishes a migration (replicas that move), with the
reference's ``_finish_migration``. :func:`make_shard_sim` picks it
for those when numba is there, else the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from envs.sim.dlrm import kernels
from envs.sim.dlrm import segment as sg
from envs.sim.dlrm.cluster import ARRIVAL, FAULT, RANDOM_FAULT, RETRY, STRAGGLER, ShardSim
from envs.sim.dlrm.layout import ShardLayout
from envs.sim.dlrm.pslink import PsLink
from envs.sim.dlrm.records import Migration, RangeSubRequest, Request, SubRequest
from envs.sim.dlrm.rowcache import LruRowCache
from envs.sim.dlrm.spec import FaultEvent, RandomDisruption
from envs.sim.jit import NO_NRT, njit
from envs.sim.packing import Ints, Packed, unpack


def eligible(layout: ShardLayout, faults: Sequence[FaultEvent],
             random_faults: RandomDisruption | None, dynamic: bool) -> bool:
    """Whether :class:`CompiledShardSim` implements this configuration (and numba is on)."""
    del faults, random_faults, dynamic  # (handled in Python around the kernel)
    return kernels.AVAILABLE and layout.spec.cache_policy == "lru"


def make_shard_sim(layout: ShardLayout, arrival_s: np.ndarray, sla_s: np.ndarray, budget: int,
                   rng: np.random.Generator, faults: Sequence[FaultEvent] = (),
                   random_faults: RandomDisruption | None = None, dynamic: bool = False,
                   recycle: ShardSim | None = None, **kwargs: Any) -> ShardSim:
    """``ShardSim(...)`` (same arguments): a :class:`CompiledShardSim` where :func:`eligible`."""
    if isinstance(recycle, CompiledShardSim):
        recycle.sync_objects()  # its caches are reused as objects
    cls = CompiledShardSim if eligible(layout, faults, random_faults, dynamic) else ShardSim
    return cls(layout, arrival_s, sla_s, budget, rng, faults=faults,
               random_faults=random_faults, dynamic=dynamic, recycle=recycle, **kwargs)


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def _nodes_ahead(nd_i: np.ndarray, nd_f: np.ndarray, end: np.ndarray, now: float) -> float:
    """:meth:`ShardSim.busy_ahead_s`'s node term: over the nodes in order, those serving,
    ``min(max(end - now, 0.0), service_s)`` added from 0.0 (Python's ``min``/``max``: the
    first argument unless the second is strictly less/greater; the same sums)."""
    nodes = 0.0
    for n in range(end.shape[0]):
        if nd_i[n, sg.E_SERV] >= 0:
            d = end[n] - now
            if 0.0 > d:
                d = 0.0
            x = nd_f[n, sg.D_SVC]
            nodes += x if x < d else d
    return nodes


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def _sum(a: np.ndarray) -> float:
    """``sum(a.tolist())`` of a float64 array: added in order from 0 (0 + -0.0 is 0.0)."""
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s


class _Count:
    """``len()`` and truth of a count (what the reference's ``_subs``/``_reqs`` dicts give)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0


class CompiledShardSim(ShardSim):
    """:class:`ShardSim` (same arguments, same results) with the completions compiled.

    The reference's per-object state that the kernel owns (node queues and services, links,
    sub-requests in the system, requests, cache scalars) lives in arrays; the Python objects
    the reference keeps for them (``nodes[n].queue``, ``serving``, ``members``, the
    :class:`PsLink` objects) are not kept. :attr:`links_down`/:attr:`links_up` are snapshots,
    and the row caches' objects are brought up to date by :meth:`sync_objects` (done when an
    episode is drained, when pickling and before recycling).
    """

    #: Initial sizes of the event heap, the per-link message heaps, the sub-request and
    #: request tables, the buffers of latencies and dense jobs, the key store (0: from the
    #: layout) and the rows of the LRU alive arrays (all grow).
    _links_init: tuple[list[PsLink], list[PsLink]]
    _keys: np.ndarray
    _l1: np.ndarray
    _l1_views: list[np.ndarray]
    _fan_look: np.ndarray
    _fan_reqb: np.ndarray
    _fan_resp: np.ndarray
    _alive2: np.ndarray
    _mv_lbs: Any
    _mvF: Any
    _mvI: Any
    #: Attributes that are views of the packed state or tables, or the caches' views of
    #: ``_l1`` (:meth:`_bind_caches`): not pickled, rebuilt on unpickling.
    _STATE_VIEWS = ("_I", "_F", "_lkf", "_lki", "_nd_f", "_nd_i", "_NA", "_NI", "_cache_i",
                    "_link_busy_a", "_dense_free_a", "_req_busy_a", "_node_state_v",
                    "_row_hit_v", "_outstanding_v", "_key_off_v", "_hp_t", "_hp_s", "_mh_f",
                    "_mh_i", "_sub_f", "_sub_i", "_req_f", "_req_i", "_na_rows",
                    "_l1_views")
    _HEAP0, _MSG0, _SUB0, _REQ0, _BUF0, _KEYS0, _ALIVE0 = 256, 64, 64, 16, 64, 0, 128
    #: Tables pickled xz-compressed: the sub-request table keeps the rows of finished
    #: sub-requests until their slot is reused (590 kB raw on ShardRouting-64N after 5,000
    #: steps, 96 kB packed), the message heap is mostly zeros (197 kB, 3 kB).
    _PACKED = ("_sub", "_mh")

    def __init__(self, layout: ShardLayout, arrival_s: np.ndarray, sla_s: np.ndarray,
                 budget: int, rng: np.random.Generator, **kwargs: Any) -> None:
        # The state first (the event heap is in it): ShardSim.__init__ schedules the first
        # events.
        spec = layout.spec
        N, S, D = spec.n_nodes, spec.n_shards, spec.dense_servers
        self._st = np.zeros(sg.state_size(N, S, D), dtype=np.int64)
        self._st[sg.I_N], self._st[sg.I_S], self._st[sg.I_D] = N, S, D
        self._hp = np.zeros((self._HEAP0, 4), dtype=np.int64)
        m, ns, nr, nb = self._MSG0, self._SUB0, self._REQ0, self._BUF0
        self._mh = np.zeros((2 * N, m, 3), dtype=np.int64)
        self._sub = np.zeros((ns, sg.N_SF + sg.N_SI), dtype=np.int64)
        self._req = np.zeros((nr, sg.N_RF + sg.N_RI), dtype=np.int64)
        self._buf = np.zeros((nb, 4))
        self._bind_state(before=True)
        super().__init__(layout, arrival_s, sla_s, budget, rng, **kwargs)
        F, G = self._F, self._I
        # what ShardSim.__init__ made as arrays of their own: into the state
        views = {"node_state": self._node_state_v, "row_hit": self._row_hit_v,
                 "outstanding": self._outstanding_v, "_cache_size": self._NA[sg.A_CSIZE]}
        for name, view in views.items():
            view[...] = getattr(self, name)
        self._bind_state()
        F[sg.F_OVERHEAD] = spec.node_overhead_s
        F[sg.F_ROWB] = spec.row_bytes
        F[sg.F_TOP] = spec.top_s
        F[sg.F_EWMA] = self.ewma
        G[sg.I_QCAP] = spec.queue_capacity
        down, up = self._links_init
        self._links_init = ([], [])
        lkf = self._lkf
        # row 2 * node + up (the same values as one element at a time)
        for rows, lks in ((lkf[0::2], down), (lkf[1::2], up)):
            rows[:, sg.L_BPS] = [lk.payload_bps for lk in lks]
            rows[:, sg.L_FIXED] = [lk.fixed_s for lk in lks]
            rows[:, sg.L_FACTOR] = [lk.factor for lk in lks]
        self._nd_f[:, sg.D_SLOW] = [nd.slow for nd in self.nodes]
        self._nd_i[:, sg.E_SERV] = -1
        self._sub_i[:, sg.U_ID] = -1
        self._sub_i[:, sg.U_STATE] = 4
        G[sg.I_SMASK] = ns - 1
        self._req_i[:, sg.Q_ID] = -1
        G[sg.I_RMASK] = nr - 1
        NA = self._NA
        NA[sg.A_OCCP] = self._occ_pinned
        NA[sg.A_OCCF] = self._occ_full
        NA[sg.A_CFAST] = layout.c_fast_list
        NA[sg.A_CSLOW] = layout.c_slow_list
        self._key_off_v[...] = self.key_off
        # The keys of the sub-requests in the system, from their arrival on (the previous
        # episode's memory when recycling: it has grown to what the episodes need).
        old = kwargs.get("recycle")
        if isinstance(old, CompiledShardSim) and old.lay is layout:
            self._keys = old._keys
        else:
            n = self._KEYS0 or max(2**16, 4 * layout.c_n_total)
            self._keys = np.zeros(n, dtype=np.int64)
        self._kw = 0
        self._rel: tuple[np.ndarray, list[int], int] | None = None
        #: kind, target and time of the event that _run last returned
        self._event: tuple[int, int, float] = (0, 0, 0.0)
        cache_i = self._cache_i
        for n, nd in enumerate(self.nodes):
            c = nd.cache
            assert type(c) is LruRowCache
            cache_i[n, :6] = (c.oldest, c._base, c.tick, c.size, c.capacity, c._stale)
        self._bind_caches(*((old._l1, old._l1_views) if isinstance(old, CompiledShardSim)
                            else (None, None)))
        self._migs: list[Migration] = []  # by id: -1 - index
        # The rows of the current request's sub-requests (segment.fan_rows), for
        # route_observe: table-wise, without extra reads (whose counts Python adds); the
        # request they are of (-1: none).
        self._fan = np.zeros((S, sg.N_W), dtype=np.int64)
        self._fan_rid = -1
        self._fan_ok = not spec.row_wise and self._extra is None
        if self._fan_ok:
            if isinstance(old, CompiledShardSim) and old.lay is layout and old._fan_ok:
                # (per layout, read-only: the previous episode's)
                self._fan_look, self._fan_reqb = old._fan_look, old._fan_reqb
                self._fan_resp = old._fan_resp
            else:
                self._fan_look = np.array(layout.lookups_tw, dtype=np.int64)
                self._fan_reqb = np.array(layout.req_bytes_tw, dtype=np.float64)
                self._fan_resp = np.array(layout.resp_bytes_list, dtype=np.float64)
        self._fan_nodes = np.zeros(S, dtype=np.int64)  # (send_rows_earliest's choices)

    # ------------------------------------------------------------------ plumbing
    @property
    def links_down(self) -> list[PsLink]:
        """Snapshots of the links towards the nodes (the state is in arrays)."""
        return self._link_objects(0)

    @links_down.setter
    def links_down(self, links: list[PsLink]) -> None:
        self._links_init = (links, getattr(self, "_links_init", ([], []))[1])

    @property
    def links_up(self) -> list[PsLink]:
        """Snapshots of the links towards the central node."""
        return self._link_objects(1)

    @links_up.setter
    def links_up(self, links: list[PsLink]) -> None:
        self._links_init = (getattr(self, "_links_init", ([], []))[0], links)

    def _link_objects(self, up: int) -> list[PsLink]:
        out = []
        for node in range(self.n_nodes):
            lid = 2 * node + up
            f = self._lkf[lid].tolist()
            lk = PsLink(f[sg.L_BPS], f[sg.L_FIXED])
            lk.factor, lk.v, lk.t = f[sg.L_FACTOR], f[sg.L_V], f[sg.L_T]
            lk.busy_s, lk.bytes_done, lk._sum_finish = f[sg.L_BUSY], f[sg.L_BYTES], f[sg.L_SUMF]
            lk.n, lk._seq = int(self._lki[lid, sg.K_N]), int(self._lki[lid, sg.K_SEQ])
            out.append(lk)
        return out

    @property
    def _link_busy(self) -> list[float]:  # busy_s of every link direction (downlinks first)
        return self._link_busy_a.tolist()

    @_link_busy.setter
    def _link_busy(self, value: object) -> None:
        pass

    @property  # type: ignore[override]
    def _subs(self) -> _Count:  # sub-requests in the system
        return _Count(int(self._I[sg.I_NSUBS]))

    @_subs.setter
    def _subs(self, value: object) -> None:
        pass

    @property  # type: ignore[override]
    def _reqs(self) -> _Count:  # requests in the system
        return _Count(int(self._I[sg.I_NREQS]))

    @_reqs.setter
    def _reqs(self, value: object) -> None:
        pass

    def _bind_memoryviews(self) -> None:
        super()._bind_memoryviews()
        if hasattr(self, "_NA"):
            self._mv_lbs = memoryview(cast(Any, self._NA[sg.A_LBS]))
            self._mvF = memoryview(cast(Any, self._F))
            self._mvI = memoryview(cast(Any, self._I))

    def _bind_state(self, before: bool = False) -> None:
        """The attributes that are views of the packed state and tables (again after a
        table grows or after unpickling); ``before``: ShardSim.__init__ has not run yet."""
        (self._I, self._F, self._lkf, self._lki, self._nd_f, self._nd_i, self._NA, self._NI,
         self._cache_i, self._link_busy_a, self._dense_free_a, self._req_busy_a,
         self._node_state_v, self._row_hit_v, self._outstanding_v,
         self._key_off_v) = sg.unpack.py_func(self._st)
        # the rows of _NA that _run copies back (a row's tolist: without the other rows')
        NA = self._NA
        self._na_rows = (NA[sg.A_SUBBUSY], NA[sg.A_FAST], NA[sg.A_SLOW], NA[sg.A_LBS])
        self._bind_tables()
        if before:
            return
        self.node_state = self._node_state_v
        self.row_hit = self._row_hit_v
        self.outstanding = self._outstanding_v
        self._cache_size = self._NA[sg.A_CSIZE]
        self._bind_views()
        self._bind_memoryviews()

    def _bind_tables(self) -> None:
        (self._hp_t, self._hp_s, self._mh_f, self._mh_i, self._sub_f, self._sub_i, self._req_f,
         self._req_i) = sg.tables.py_func(self._hp, self._mh, self._sub, self._req)

    def _bind_caches(self, l1: np.ndarray | None = None,
                     views: list[np.ndarray] | None = None) -> None:
        """The nodes' LRU ``last1`` arrays as views of one array (the previous episode's
        when its caches were recycled: ``l1`` and the views of it that :meth:`_bind_caches`
        made, ``views``), and their ``alive`` arrays as rows of another."""
        caches = [cast(LruRowCache, nd.cache) for nd in self.nodes]
        sizes = [len(c.last1) for c in caches]
        offs = np.cumsum([0, *sizes]).tolist()
        # (the views made here, still the caches' own, are l1's at these offsets: a view
        # keeps its memory, and its length is the size)
        if l1 is None or len(l1) != offs[-1] or views is None or len(views) != len(caches) \
                or not all(c.last1 is v for c, v in zip(caches, views, strict=True)):
            l1 = np.empty(offs[-1], dtype=np.int32)
            for c, o, k in zip(caches, offs, sizes, strict=False):
                l1[o:o + k] = c.last1
                c.last1 = l1[o:o + k]
        self._l1 = l1
        self._l1_views = [c.last1 for c in caches]
        cache_i = self._cache_i
        cache_i[:, sg.C_L1OFF] = offs[:-1]
        cache_i[:, sg.C_NKEYS] = sizes
        width = max(self._ALIVE0, *(len(c._alive) for c in caches))
        self._alive2 = np.zeros((len(caches), width), dtype=np.int64)
        for n, c in enumerate(caches):
            self._alive2[n, :len(c._alive)] = c._alive
            cache_i[n, sg.C_ALEN] = len(c._alive)

    def sync_objects(self) -> None:
        """Bring the row caches' objects up to date with the arrays."""
        for n in range(len(self.nodes)):
            self._sync_object(n)

    def _sync_object(self, n: int) -> None:
        """Node ``n``'s row cache object up to date with the arrays (an object's state is
        a function of the arrays alone, whatever it was before)."""
        c = self.nodes[n].cache
        o, b, t, s, _, stale = self._cache_i[n, :6].tolist()
        c.oldest, c._base, c.tick, c.size, c._stale = o, b, t, s, bool(stale)  # type: ignore[union-attr]
        c._alive = self._alive2[n, :self._cache_i[n, sg.C_ALEN]].copy()  # type: ignore[union-attr]

    def _compact_keys(self) -> None:
        """Keep only the keys of the sub-requests in the system (those sent, in the table,
        and those not yet sent), contiguous from the start of the store."""
        sub_i = self._sub_i
        live = np.flatnonzero(sub_i[:, sg.U_STATE] < 4)
        unsent = [*([self.pending] if self.pending is not None else []), *self._fanout]
        starts = [*sub_i[live, sg.U_KS].tolist(), *(sub.flow_seq for sub in unsent)]
        lens = [*sub_i[live, sg.U_NK].tolist(), *(sub.d_tracked for sub in unsent)]
        keys = self._keys
        parts = [keys[a:a + n] for a, n in zip(starts, lens, strict=True)]
        new = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        pos = np.cumsum([0, *lens]).tolist()
        sub_i[live, sg.U_KS] = pos[:len(live)]
        for sub, p in zip(unsent, pos[len(live):], strict=False):
            sub.flow_seq = p
        keys[:len(new)] = new
        self._kw = len(new)
        self._fan_rid = -1  # (its key starts moved)

    def __getstate__(self) -> dict[str, object]:
        self.sync_objects()
        self._compact_keys()
        state = super().__getstate__()
        for name in (*self._STATE_VIEWS, "_mv_lbs", "_mvF", "_mvI", "_l1", "_alive2",
                     "node_state", "row_hit", "outstanding", "_cache_size"):
            state.pop(name, None)  # views of the packed state, or rebuilt from the caches
        # the live keys (increasing within a sub-request) as their differences, packed
        live = self._keys[:self._kw].copy()
        live[1:] -= self._keys[:self._kw - 1]
        state["_keys"] = (len(self._keys), Ints(live))
        for name in self._PACKED:
            state[name] = Packed(getattr(self, name), "xz")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        n, packed = state["_keys"]
        keys = np.zeros(n, dtype=np.int64)
        live = np.cumsum(packed.array())
        keys[:len(live)] = live
        state["_keys"] = keys
        for name in self._PACKED:
            state[name] = unpack(state[name])
        self.__dict__.update(state)
        self._bind_state()  # (ShardSim.__setstate__'s work: the views, the memoryviews)
        for name in ("_u_buf", "_key_buf"):
            dtype, n = state[name]
            setattr(self, name, np.empty(n, dtype=np.dtype(dtype)))
        self._warm_rows = unpack(state["_warm_rows"])
        self._bind_caches()

    # ------------------------------------------------------------------ growth
    def _heap_room(self, k: int) -> None:
        if self._I[sg.I_HSIZE] + k > len(self._hp):
            self._grow_heap(k)

    def _grow_heap(self, k: int) -> None:
        """Drop the cancelled events (sorted by (time, seq): a heap) and grow if needed."""
        G = self._I
        size = int(G[sg.I_HSIZE])
        t, s = self._hp_t[:size], self._hp_s[:size]
        live = np.ones(size, dtype=bool)
        in_flight = 0
        if hasattr(self, "nodes"):  # (else: ShardSim.__init__ is scheduling the first events)
            lk = s[:, 1] == sg.LINK_DONE
            live[lk] = s[lk, 0] == self._lki[s[lk, 2], sg.K_EV]
            sv = s[:, 1] == sg.SERVICE_DONE
            live[sv] = s[sv, 0] == self._nd_i[s[sv, 2], sg.E_EV]
            in_flight = int(self._lki[:, sg.K_N].max())
        order = np.lexsort((s[live, 0], t[live]))
        rows = self._hp[:size][live][order]
        kept = len(rows)
        need = kept + k + in_flight + 8
        cap = len(self._hp)
        if 2 * need > cap:
            cap = max(2 * cap, 2 * need)
        self._hp = np.zeros((cap, 4), dtype=np.int64)
        self._hp[:kept] = rows
        G[sg.I_HSIZE] = kept
        self._bind_tables()

    def _grow_msg(self) -> None:
        m = self._mh.shape[1]
        mh = np.zeros((self._mh.shape[0], 2 * m, 3), dtype=np.int64)
        mh[:, :m] = self._mh
        self._mh = mh
        self._bind_tables()

    def _alive_room(self, node: int) -> None:
        """Room in ``node``'s alive row for the compaction of its next access."""
        c = self._cache_i[node]
        t = int(c[sg.C_TICK])
        if (c[sg.C_CAP] and t - c[sg.C_BASE] >= c[sg.C_ALEN]
                and max(64, 2 * (t - int(c[sg.C_OLD])) + 1) > self._alive2.shape[1]):
            self._grow_alive()

    def _grow_alive(self) -> None:
        c = self._cache_i
        need = max(int(np.maximum(64, 2 * (c[:, sg.C_TICK] - c[:, sg.C_OLD]) + 1).max()),
                   int(c[:, sg.C_ALEN].max()))
        width = max(2 * self._alive2.shape[1], 2 * int(need))
        alive2 = np.zeros((len(c), width), dtype=np.int64)
        alive2[:, :self._alive2.shape[1]] = self._alive2
        self._alive2 = alive2

    def _flush(self) -> None:
        """Latencies and dense jobs the kernel recorded, in order."""
        G = self._I
        n = int(G[sg.I_LATN])
        if n:
            add = self.req.latency.add
            for lat in self._buf[:n, 0].tolist():
                add(lat)
            G[sg.I_LATN] = 0
        n = int(G[sg.I_DENN])
        if n:
            jobs = self._dense_jobs
            for k, start, end in self._buf[:n, 1:4].tolist():
                jobs[int(k)].append((start, end))
            G[sg.I_DENN] = 0

    def _grow_subs(self, sid: int) -> None:
        """Room in the sub-request table for ``sid`` beside the live ones."""
        sub_i = self._sub_i
        live = np.flatnonzero(sub_i[:, sg.U_STATE] < 4)
        sids = sub_i[live, sg.U_ID]
        span = sid - int(sids.min()) + 1
        cap = len(sub_i)
        while cap < 2 * span:
            cap *= 2
        new = np.zeros((cap, self._sub.shape[1]), dtype=np.int64)
        new[:, sg.N_SF + sg.U_ID] = -1
        new[:, sg.N_SF + sg.U_STATE] = 4
        new[sids & (cap - 1)] = self._sub[live]
        self._sub = new
        self._I[sg.I_SMASK] = cap - 1
        self._bind_tables()

    def _grow_reqs(self, rid: int) -> None:
        req_i = self._req_i
        rmask = int(self._I[sg.I_RMASK])
        if not req_i[rid & rmask, sg.Q_LIVE]:
            return
        live = np.flatnonzero(req_i[:, sg.Q_LIVE] != 0)
        rids = req_i[live, sg.Q_ID]
        span = rid - int(rids.min()) + 1
        cap = len(req_i)
        while cap < 2 * span:
            cap *= 2
        new = np.zeros((cap, self._req.shape[1]), dtype=np.int64)
        new[:, sg.N_RF + sg.Q_ID] = -1
        new[rids & (cap - 1)] = self._req[live]
        self._req = new
        self._I[sg.I_RMASK] = cap - 1
        self._bind_tables()

    def _key_room(self, n: int) -> int:
        """Where ``n`` more keys go (compacting the live ones to the front when full)."""
        kw = self._kw
        if kw + n <= len(self._keys):
            return kw
        sub_i = self._sub_i
        live = sub_i[:, sg.U_STATE] < 4
        lo = min(int(sub_i[live, sg.U_KS].min()), kw) if live.any() else kw
        keep = kw - lo
        keys = self._keys
        if 2 * (keep + n) > len(keys):
            keys = np.zeros(2 * max(len(keys), keep + n), dtype=np.int64)
        keys[:keep] = self._keys[lo:kw].copy()
        self._keys = keys
        sub_i[live, sg.U_KS] -= lo
        self._kw = keep
        return keep

    # ------------------------------------------------------------------ events
    def _schedule(self, time: float, kind: int, target: int) -> Any:
        if time < self.events.now:
            raise ValueError(f"cannot schedule at {time} before now={self.events.now}")
        self._heap_room(1)
        sg.push_event(self._st, self._hp, time, kind, target)
        return None

    def _run(self, drain: bool) -> int:
        """:func:`segment.run_segment` until it returns an event or stops; the Python-side
        state it shares goes in before and comes back after."""
        F, G = self._F, self._I
        mvF, mvI = self._mvF, self._mvI  # (an item of a memoryview: no numpy scalar)
        mvF[sg.F_BACKLOG] = self.backlog
        mvF[sg.F_RATE] = self._backlog_rate
        mvF[sg.F_BT] = self._backlog_t
        mvI[sg.I_REQDF] = self.req.dropped_failed
        while True:
            sg.run_segment(self._st, self._hp, self._mh, self._sub, self._req, self._buf,
                           self._keys, self._l1, self._alive2, drain)
            ret = mvI[sg.I_RET]
            if ret == sg.RET_EVENT and mvI[sg.I_KIND] == STRAGGLER and (
                    not drain or mvI[sg.I_NSUBS] or mvI[sg.I_NREQS]):
                # A straggler starts or ends. advance would dispatch it and call _run again
                # at once with the same drain (no sub-request waits while _run runs, the
                # handler changes no arrivals, and draining goes on while sub-requests or
                # requests are in the system): handled here, and the segment goes on without
                # the copy-back in between (the handler reads the clock, the nodes and the
                # generator).
                now = mvF[sg.F_NOW]
                self.events.now = now
                self._on_straggler(mvI[sg.I_TGT], now)
                continue
            if ret == sg.RET_GROW_HEAP:
                self._grow_heap(2)
            elif ret == sg.RET_GROW_MSG:
                self._grow_msg()
            elif ret == sg.RET_GROW_ALIVE:
                self._grow_alive()
            elif ret == sg.RET_MIGRATION:
                self._migration_link_done(int(G[sg.I_TGT]))
            elif ret == sg.RET_FLUSH:
                self._flush()
                need = int(self._lki[:, sg.K_N].max()) + 1
                if need > len(self._buf):
                    self._buf = np.zeros((2 * need, 4))
            else:
                break
        i = G.tolist()
        if i[sg.I_LATN] or i[sg.I_DENN]:
            self._flush()  # (it zeroes those two counts, which i does not use after)
        f = F.tolist()
        self.events.now = f[sg.F_NOW]
        self._event = (i[sg.I_KIND], i[sg.I_TGT], f[sg.F_NOW])  # (when ret is RET_EVENT)
        self.backlog, self._backlog_rate, self._backlog_t = (
            f[sg.F_BACKLOG], f[sg.F_RATE], f[sg.F_BT])
        self._link_busy_max = f[sg.F_LBMAX]
        self.events_handled = i[sg.I_EVH]
        sub_busy, fast, slow, lbs = self._na_rows  # (fresh lists, of these rows only)
        c = self.sub
        c.completed, c.good, c.dropped_overflow = i[sg.I_SUBC], i[sg.I_SUBG], i[sg.I_OVF]
        c.busy_s = sub_busy.tolist()
        c = self.req
        c.completed, c.good, c.dropped_failed = i[sg.I_REQC], i[sg.I_REQG], i[sg.I_REQDF]
        c.busy_s = self._req_busy_a.tolist()
        self.dense_free = self._dense_free_a.tolist()
        self.cache_lookups_total, self.cache_hits_total = i[sg.I_CLT], i[sg.I_CHT]
        self.fast_reads = fast.tolist()
        self.slow_reads = slow.tolist()
        self.link_bytes_sent = lbs.tolist()
        self.cache_lookups, self.cache_hits = self._NI.tolist()
        return ret

    def advance(self) -> None:
        """Run to the next sub-request that needs a decision (drains after the last one)."""
        fanout = self._fanout
        while True:
            while fanout:
                sub = fanout.popleft()
                self.sub.arrived += 1
                if self._live(sub.shard):
                    self.pending = sub
                    return
                self._fail_sub(sub)
            if not self._arrivals_left:
                break
            if self._run(False) != sg.RET_EVENT:
                break
            self._dispatch(*self._event)
        # Budget exhausted: drain what is in the system.
        while self._I[sg.I_NSUBS] or self._I[sg.I_NREQS]:
            if self._run(True) != sg.RET_EVENT:
                break
            self._dispatch(*self._event)
        self._sync_backlog(self.events.now)
        self.sync_objects()

    def _dispatch(self, kind: int, target: int, now: float) -> None:
        if kind == ARRIVAL:
            self._on_arrival(target, now)
        elif kind == STRAGGLER:
            self._on_straggler(target, now)
        elif kind == FAULT:
            self._on_fault(target, now)
        elif kind == RETRY:
            self._on_retry(target, now)
        elif kind == RANDOM_FAULT:
            self._on_random_fault(target, now)
        else:
            raise AssertionError(f"event kind {kind} in a CompiledShardSim")

    def _on_fault(self, code: int, now: float) -> None:
        """A scheduled slowdown starts or ends (:meth:`ShardSim._on_fault` of ``mode="slow"``)."""
        f = self._faults[code // 2]
        n = f.target
        if f.mode != "slow" or f.kind == "node":
            super()._on_fault(code, now)
            self._nd_f[n, sg.D_SLOW] = self.nodes[n].slow
            return
        start = code % 2 == 0
        for lid in (2 * n, 2 * n + 1):
            factor = float(self._lkf[lid, sg.L_FACTOR])
            self._heap_room(1)
            sg.set_factor(self._st, self._hp, self._mh, self._sub, lid,
                          factor / f.factor if start else factor * f.factor)
        self.link_factor[n] = self._lkf[2 * n, sg.L_FACTOR]
        self.link_version += 1

    def _on_straggler(self, node: int, now: float) -> None:
        super()._on_straggler(node, now)
        self._nd_f[node, sg.D_SLOW] = self.nodes[node].slow

    def _subrequests(self, req: Request, fanout: int, rel: np.ndarray, counts: np.ndarray,
                     bl: list[int], tracked: list[int], untracked_l: list[int],
                     lookups: list[int], req_bytes: Sequence[float] | None
                     ) -> list[SubRequest]:
        """:meth:`ShardSim._subrequests` as :class:`RangeSubRequest` objects (their keys and
        counts views made only if read), each one's ``flow_seq`` (unused until it is sent)
        where its keys will start in the key store (:meth:`_key_room` for them, taken now:
        nothing else writes keys before :meth:`_on_arrival` stores them)."""
        kw = self._key_room(bl[fanout])
        self._rel = (rel, bl, kw)
        sid, req_bytes, resp = self._take_subs(fanout, lookups, req_bytes)
        return [RangeSubRequest(sid + s, req, s, rel, counts, bl[s], bl[s + 1], untracked_l[s],
                                lookups[s], req_bytes[s], resp[s], tracked[s + 1] - tracked[s],
                                kw + bl[s]) for s in range(fanout)]

    def _on_arrival(self, i: int, now: float) -> None:
        spec = self.spec
        fanout = min(self.n_shards, self.budget - self._created)
        # Bottom MLP on the first free dense device (the first of equals, as min's key).
        df = self.dense_free
        k = df.index(min(df))
        bottom = spec.bottom_s
        start = max(now, df[k])
        end = start + bottom
        df[k] = end
        busy = self.req.busy_s
        busy[k] += bottom
        self._dense_free_a[k] = end  # (the kernel's copies)
        self._req_busy_a[k] = busy[k]
        self._dense_jobs[k].append((start, end))
        rid = self._next_req
        req = Request(rid, now, now + self._sla[i], end, fanout)
        self._next_req = rid + 1
        self.req.arrived += 1
        self.backlog += self._backlog_rate * (now - self._backlog_t)  # (_sync_backlog)
        self._backlog_t = now
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
        # The request's row, its keys (where _subrequests put their starts; the
        # sub-requests' rows are written when each is sent), the next arrival (ShardSim
        # schedules it last, after the draws: the same seq) and, table-wise, the rows of its
        # sub-requests for route_observe (segment.fan_rows).
        assert self._rel is not None
        rel, bl, kw = self._rel
        self._rel = None
        n = bl[fanout]
        created = self._created + fanout
        nxt = i + 1 if created < self.budget and i + 1 < len(self._arrival) else -1
        next_t = max(self._arrival[nxt], now) if nxt >= 0 else 0.0
        while ret := sg.arrive(self._st, self._hp, self._req, self._keys, rel, kw, n, rid, now,
                               req.deadline, req.inv_sla, end, fanout, next_t, nxt):
            if ret == 1:
                self._grow_reqs(rid)
            else:
                self._grow_heap(1)
        # (one call with arrive measured no cheaper: arrive needs the NRT, which then wraps
        # fan_rows' arrays too)
        fan = self._fan_ok and fanout > 0 and kernels.AVAILABLE  # (else no _split)
        if fan:
            sg.fan_rows(self._fan, self._split, self._fan_look, self._fan_reqb,
                        self._fan_resp, subs[0].id, rid, fanout, kw)
        self._kw = kw + n
        self._fan_rid = rid if fan else -1
        self._fanout.extend(subs)
        self._created = created
        if nxt < 0:
            self._arrivals_left = False

    def _send(self, sub: SubRequest, node: int) -> None:
        sid = sub.id
        key_start = sub.flow_seq  # (see _on_arrival)
        sub.node = node
        sub.state = 1
        while ret := sg.send(self._st, self._hp, self._mh, self._sub, node, sid, sub.req.id,
                             sub.shard, sub.d_tracked, sub.d_untracked, sub.lookups,
                             sub.tracked_lookups, key_start, sub.req_bytes, sub.resp_bytes,
                             True):
            if ret == 1:
                self._grow_subs(sid)
            elif ret == 2:
                self._grow_heap(2)
            else:
                self._grow_msg()
        self.link_bytes_sent[node] = self._mv_lbs[node]
        self._link_busy_max = self._mvF[sg.F_LBMAX]

    def route_observe(self, node: int, consts: np.ndarray, req_pred: float, req_rate: float,
                      size: int) -> np.ndarray | None:
        """``route(node)``, then ``advance()`` when the next sub-request is the same
        request's and has a live replica (no event runs in between), and
        :func:`envs.sim.dlrm.kernels.routing_obs` of that next one into a new float32 array
        of ``size``, in one compiled call (:func:`segment.send_observe`, reading the
        sub-requests from their rows; ``consts`` as there: ``routing_obs``'s ``consts``,
        ``fin`` and ``req_node``, the env's prediction bookkeeping and the sums it adds);
        returns that array. None, nothing
        done, when there is no such next sub-request or no rows of this request (row-wise,
        extra reads, numba off): the caller routes and advances. ``node`` must be a live
        replica of the pending sub-request's shard (the caller checked it: ``route`` would
        raise)."""
        fanout = self._fanout
        sub = self.pending
        if not fanout or sub is None or sub.req.id != self._fan_rid or not kernels.AVAILABLE:
            return None
        nxt = fanout[0]  # (row sub.shard + 1: the rows are the request's shards in order)
        # _live's cached tuple when it holds, else _live
        if (self._live_version != self.topology_version
                or (live := self._live_cache.get(nxt.shard)) is None):
            live = self._live(nxt.shard)
        if not live:
            return None
        out = np.empty(size, np.float32)
        while ret := sg.send_observe(self._st, self._hp, self._mh, self._sub, self._fan,
                                     sub.shard, node, sub.req.inv_sla, len(fanout), req_pred,
                                     req_rate, consts, out):
            if ret == 1:
                self._grow_subs(sub.id)
            elif ret == 2:
                self._grow_heap(2)
            else:
                self._grow_msg()
        # route's and _send's Python side (see there), then advance's
        sub.node = node
        sub.state = 1
        self.link_bytes_sent[node] = self._mv_lbs[node]
        self._link_busy_max = self._mvF[sg.F_LBMAX]
        fanout.popleft()
        self.sub.arrived += 1
        self.pending = nxt
        return out

    def route_earliest(self, fixed_s: Sequence[float] | np.ndarray,
                       bps: Sequence[float] | np.ndarray) -> int:
        """:meth:`ShardSim.route_earliest` with the choice and the send in one compiled call
        (:func:`segment.send_earliest`: the kernels of ``earliest_replica`` and ``route``,
        in that order) when ``fixed_s`` and ``bps`` are arrays and numba is on."""
        sub = self.pending
        if (sub is None or not kernels.AVAILABLE or type(fixed_s) is not np.ndarray
                or type(bps) is not np.ndarray):
            return super().route_earliest(fixed_s, bps)
        node = self._send_earliest(sub, fixed_s, bps)
        self.pending = None
        return node

    def _send_earliest(self, sub: SubRequest, fixed_s: np.ndarray, bps: np.ndarray) -> int:
        """``sub`` to its earliest live replica in one compiled call
        (:func:`segment.send_earliest`, growing the arrays it reports full), then route's and
        _send's Python side; the node it went to."""
        sid = sub.id
        lay = self.lay
        while (node := sg.send_earliest(
                self._st, self._hp, self._mh, self._sub, sid, sub.req.id, sub.shard,
                sub.d_tracked, sub.d_untracked, sub.lookups, sub.tracked_lookups, sub.flow_seq,
                sub.req_bytes, sub.resp_bytes, self.events.now, self.holds, self.row_hit,
                self.node_state, fixed_s, bps, lay.c_fast, lay.c_slow,
                self.spec.node_overhead_s)) < 0:
            if node == -1:
                raise ValueError("min() arg is an empty sequence")
            if node == -2:
                self._grow_subs(sid)
            elif node == -3:
                self._grow_heap(2)
            else:
                self._grow_msg()
        sub.node = node
        sub.state = 1
        self.link_bytes_sent[node] = self._mv_lbs[node]
        self._link_busy_max = self._mvF[sg.F_LBMAX]
        return node

    def route_request_earliest(self, fixed_s: Sequence[float] | np.ndarray,
                               bps: Sequence[float] | np.ndarray) -> None:
        """:meth:`ShardSim.route_request_earliest` with :meth:`route_earliest`'s compiled call
        per sub-request and, while the next one has a live replica, ``advance``'s step to it
        inline (no event runs in between), when ``fixed_s`` and ``bps`` are arrays and numba
        is on."""
        sub = self.pending
        if (sub is None or not kernels.AVAILABLE or type(fixed_s) is not np.ndarray
                or type(bps) is not np.ndarray):
            super().route_request_earliest(fixed_s, bps)
            return
        req = sub.req
        if req.id == self._fan_rid:
            self._route_rows_earliest(fixed_s, bps)
            return
        fanout = self._fanout  # (only this request's sub-requests: see advance)
        counters = self.sub
        while True:
            self._send_earliest(sub, fixed_s, bps)
            if fanout and self._live(fanout[0].shard):  # advance's first step
                sub = self.pending = fanout.popleft()
                counters.arrived += 1
                continue
            self.pending = None
            self.advance()
            nxt = self.pending
            if nxt is None or nxt.req is not req:
                return
            sub = nxt

    def _route_rows_earliest(self, fixed_s: np.ndarray, bps: np.ndarray) -> None:
        """:meth:`route_request_earliest` of a request with rows (:func:`segment.fan_rows`):
        the pending sub-request and the next ones, while they have a live replica, in one
        compiled call (:func:`segment.send_rows_earliest`), then advance; again while the
        pending sub-request is the request's."""
        sub = self.pending
        assert sub is not None
        req = sub.req
        fanout = self._fanout  # (only this request's sub-requests, in shard order)
        lay = self.lay
        nodes = self._fan_nodes
        lbs, mv_lbs = self.link_bytes_sent, self._mv_lbs
        counters = self.sub
        while True:
            k0 = sub.shard
            k1 = k0 + 1 + len(fanout)
            while True:
                n = sg.send_rows_earliest(self._st, self._hp, self._mh, self._sub, self._fan,
                                          k0, k1, self.holds, fixed_s, bps, lay.c_fast,
                                          lay.c_slow, self.spec.node_overhead_s, nodes)
                ret = int(self._I[sg.I_RET])
                # the ones sent: route's, _send's and advance's Python side, in order
                for k in range(k0, k0 + n):
                    node = int(nodes[k])
                    if k > sub.shard:
                        sub = fanout.popleft()
                        counters.arrived += 1
                    sub.node = node
                    sub.state = 1
                    lbs[node] = mv_lbs[node]
                k0 += n
                if ret <= 0:
                    break
                if ret == 1:
                    self._grow_subs(int(self._fan[k0, sg.W_SID]))
                elif ret == 2:
                    self._grow_heap(2)
                else:
                    self._grow_msg()
            self._link_busy_max = self._mvF[sg.F_LBMAX]
            if ret < 0 and k0 == sub.shard:  # (the pending one: checked live by advance)
                raise ValueError("min() arg is an empty sequence")
            self.pending = None
            self.advance()
            nxt = self.pending
            if nxt is None or nxt.req is not req:
                return
            sub = nxt

    def _fail_sub(self, sub: SubRequest, count: bool = True) -> None:
        """A sub-request not yet sent fails (see :meth:`ShardSim._fail_sub`)."""
        if count:
            self.sub_failed += 1
            self.sub.dropped_failed += 1
        sub.state = 5  # (not in the sub-request table: never sent)
        self._fail_request(sub.req.id)

    # ------------------------------------------------------------------ failures
    def _set_down(self, node: int, now: float, kind: str, delta: int) -> None:
        self.sync_objects()  # (a node that fails restarts with its cache cleared)
        super()._set_down(node, now, kind, delta)
        self._reload_cache(node)

    def _evacuate(self, node: int, now: float, node_failed: bool) -> None:
        """:meth:`ShardSim._evacuate` on the arrays: the node's members in the order they
        were sent to it (the reference's dict of members)."""
        nd_i, nd_f = self._nd_i, self._nd_f
        nd_i[node, sg.E_EV] = 0  # its service event is cancelled
        if nd_i[node, sg.E_SERV] >= 0:  # its whole service was counted busy when it started
            busy = self.sub.busy_s
            busy[node] -= min(max(0.0, float(self.service_end[node]) - now),
                              float(nd_f[node, sg.D_SVC]))
            self._NA[sg.A_SUBBUSY, node] = busy[node]
        nd_i[node, sg.E_SERV] = -1
        nd_i[node, sg.E_QH] = nd_i[node, sg.E_QT] = nd_i[node, sg.E_QL] = 0
        self.work_s[node] = 0.0
        self.service_end[node] = now
        sub_i, sub_f = self._sub_i, self._sub_f
        rows = np.flatnonzero((sub_i[:, sg.U_NODE] == node) & (sub_i[:, sg.U_STATE] >= 1)
                              & (sub_i[:, sg.U_STATE] <= 3))
        rows = rows[np.argsort(sub_i[rows, sg.U_SENDSEQ], kind="stable")]
        max_retries = self.spec.max_retries
        for slot in rows.tolist():
            state = int(sub_i[slot, sg.U_STATE])
            if state == 3 and node_failed:
                continue  # the response is on the wire already: it arrives
            sid = int(sub_i[slot, sg.U_ID])
            if state in (1, 3):
                sg.abort(self._st, self._mh, self._sub, 2 * node + (state == 3), sid,
                         int(sub_i[slot, sg.U_FSEQ]), float(sub_f[slot, sg.S_FF]))
            self.outstanding[node] -= 1
            sub_i[slot, sg.U_NODE] = -1
            sub_i[slot, sg.U_STATE] = 0
            if sub_i[slot, sg.U_RETRIES] < max_retries:
                sub_i[slot, sg.U_RETRIES] += 1
                self.sub_retried += 1
                self._schedule(now + self.spec.retry_delay_s, RETRY, sid)
            else:
                self._fail_sent(sid)
        for mig in self._migrating.pop(node, []):
            mid = -1 - self._migs.index(mig)
            sg.abort(self._st, self._mh, self._sub, 2 * node, mid, mig.flow_seq,
                     mig.flow_finish)
            mig.flow_seq = -1
            self.loading[node, mig.shard] = False
            self.topology_version += 1
            self.migrations_failed += 1
        for lid in (2 * node, 2 * node + 1):
            self._heap_room(1)
            sg.relink(self._st, self._hp, self._mh, self._sub, lid)

    def _fail_sent(self, sid: int) -> None:
        """:meth:`ShardSim._fail_sub` (counted) of a sub-request in the system."""
        self.sub_failed += 1
        self.sub.dropped_failed += 1
        slot = sid & int(self._I[sg.I_SMASK])
        self._sub_i[slot, sg.U_STATE] = 5
        self._I[sg.I_NSUBS] -= 1
        self._fail_request(int(self._sub_i[slot, sg.U_RID]))

    def _fail_request(self, rid: int) -> None:
        """A sub-request of request ``rid`` failed (:meth:`ShardSim._fail_sub`'s request part)."""
        r = rid & int(self._I[sg.I_RMASK])
        row = self._req_i[r]
        row[sg.Q_RES] += 1
        row[sg.Q_LEFT] -= 1
        if not row[sg.Q_FAILED]:
            row[sg.Q_FAILED] = 1
            self.req.dropped_failed += 1
            self._sync_backlog(self.events.now)
            self._backlog_rate -= float(self._req_f[r, sg.R_INV])
        if row[sg.Q_RES] == row[sg.Q_FAN] and row[sg.Q_LIVE]:
            row[sg.Q_LIVE] = 0
            self._I[sg.I_NREQS] -= 1

    def _on_retry(self, sid: int, now: float) -> None:
        slot = sid & int(self._I[sg.I_SMASK])
        if self._sub_i[slot, sg.U_ID] != sid or self._sub_i[slot, sg.U_STATE] != 0:
            return  # (not in the system)
        valid = self.valid_nodes(int(self._sub_i[slot, sg.U_SHARD]))
        if not valid:
            self._fail_sent(sid)
            return
        best = min(valid, key=lambda n: (int(self.outstanding[n]), n))
        while ret := sg.send(self._st, self._hp, self._mh, self._sub, best, sid, 0, 0, 0, 0,
                             0, 0, 0, 0.0, 0.0, False):
            if ret == 2:
                self._grow_heap(2)
            else:
                self._grow_msg()
        self.link_bytes_sent[best] = self._mv_lbs[best]
        self._link_busy_max = self._mvF[sg.F_LBMAX]

    # ------------------------------------------------------------------ placement
    def add_replica(self, shard: int, node: int, warm: np.ndarray | None = None) -> None:
        """:meth:`ShardSim.add_replica`, the migration's message on the arrays' link."""
        mig, nbytes = self._start_migration(shard, node, warm)
        mid = -1 - len(self._migs)
        self._migs.append(mig)
        while ret := sg.link_send(self._st, self._hp, self._mh, self._sub, node, mid, nbytes):
            if ret == 2:
                self._grow_heap(1)
            else:
                self._grow_msg()
        mig.flow_seq = int(self._lki[2 * node, sg.K_SEQ])  # (what an abort needs)
        mig.flow_finish = float(self._lkf[2 * node, sg.L_V]) + nbytes
        self.link_bytes_sent[node] = self._mv_lbs[node]
        self._link_busy_max = self._mvF[sg.F_LBMAX]

    def _migration_link_done(self, lid: int) -> None:
        """A down link's completion (popped by the kernel, its room checked) that finishes a
        migration: ShardSim._on_link_done in the same order, the migrations by
        ShardSim._finish_migration on the caches' objects."""
        node = lid >> 1
        arrive = self._mvF[sg.F_NOW] + float(self._lkf[lid, sg.L_FIXED])
        out = np.empty(self._mh.shape[1], dtype=np.int64)
        n = sg.link_done_pop(self._st, self._mh, self._sub, lid, out)
        for mid in out[:n].tolist():
            if mid < 0:
                # (only this node's cache is warmed, and the objects are read nowhere else
                # before the next sync_objects)
                mig = self._migs[-1 - mid]
                self._sync_object(mig.node)
                self._finish_migration(mig)
                self._reload_cache(node)
            else:
                self._alive_room(node)
                sg.at_node(self._st, self._hp, self._sub, self._req, self._keys, self._l1,
                           self._alive2, node, mid, arrive)
        sg.relink(self._st, self._hp, self._mh, self._sub, lid)

    def _reload_cache(self, n: int) -> None:
        """Node ``n``'s cache object (warmed in Python) back into the arrays."""
        c = cast(LruRowCache, self.nodes[n].cache)
        self._cache_i[n, :6] = (c.oldest, c._base, c.tick, c.size, c.capacity, c._stale)
        k = len(c._alive)
        if k > self._alive2.shape[1]:
            alive2 = np.zeros((len(self._alive2), 2 * k), dtype=np.int64)
            alive2[:, :self._alive2.shape[1]] = self._alive2
            self._alive2 = alive2
        self._alive2[n, :k] = c._alive
        self._cache_i[n, sg.C_ALEN] = k

    # ------------------------------------------------------------------ reading
    def busy_ahead_s(self, now: float) -> tuple[float, float]:
        nodes = _nodes_ahead(self._nd_i, self._nd_f, self.service_end, now)
        dense = 0.0
        for jobs in self._dense_jobs:
            while jobs and jobs[0][1] <= now:
                jobs.popleft()
            for start, end in jobs:
                dense += end - (start if start > now else now)
        return nodes, dense

    def link_utilization(self, elapsed_s: float) -> tuple[float, float]:
        if elapsed_s <= 0:
            return 0.0, 0.0
        busy = self._link_busy_a
        return _sum(busy) / (len(busy) * elapsed_s), self._mvF[sg.F_LBMAX] / elapsed_s
