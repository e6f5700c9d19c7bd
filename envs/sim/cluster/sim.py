"""The cluster simulator: a router, a network hop, weight loads and eviction, many devices.

Queries arrive at the router from one trace. At each arrival the simulator stops and asks
which *slot* (a partition of a device) serves it, or whether to reject it. Routing model ``m``
to slot ``s``:

1. **Residency.** If ``m`` is resident on ``s`` it becomes the most recently used there. If not,
   least recently used models are evicted from ``s`` until ``m``'s footprint fits its memory;
   a model is evictable only when nothing of it is queued, running, in transit to or loading
   on ``s``. A slot where even evicting every evictable model leaves too little memory cannot
   take the query (:meth:`ClusterSim.can_route` is False: the env masks it).
2. **Load.** A model that was not resident is loaded: its weights cross the device's host link
   (loads of one device queue on it) in ``weight_bytes / copy_bps``, then ``load_fixed_s``
   (engine deserialisation). Queries of ``m`` reach ``s`` no earlier than the load is done;
   batches of the other models on the device keep running meanwhile (the copy uses the DMA
   engines).
3. **Delivery.** The query reaches the device at ``max(arrival + hop, load done)`` (the hop
   from :mod:`hwmodels.links`) and is handed to it with
   :meth:`~envs.sim.device.shared.SharedGpuSim.arrive` (its arrival time stays the one at the
   router, so its latency and deadline count the way there).

Deliveries wait in one heap in time order. Before each decision, every delivery due is handed
to its device (the device advanced to the delivery time first, with
:meth:`~envs.sim.device.shared.SharedGpuSim.run_passive`), then every device is advanced to the
decision time (:func:`~envs.sim.device.shared.run_passive`: only devices with an event due run
their event loop; the others move their clock and backlog). Each device is a full
:class:`~envs.sim.device.shared.SharedGpuSim` (its batcher, its interference on MPS shares,
its counters); all devices record latencies into one histogram, so the cluster's
percentiles are exact.

Conservation: ``arrived = completed + dropped + in_system``, where the cluster's dropped are
its rejections plus the devices' drops, and ``in_system`` holds the queries in transit,
waiting for a load, queued and running.

Two paths. The Python path (``compiled=False``, and wherever numba is missing or
``LDSGYM_NO_JIT=1``) moves every device to every decision and computes every feature slot by
slot from the device simulators: the reference. The compiled path (the default with numba)
keeps numpy mirrors of what a decision reads (per slot: the running batch, queued work and
items, residency, load and transit; per device: backlog clock, energy, counters) and refreshes
them only for the devices the router drove since the last decision (deliveries, or an event
due: a heap of the devices' next event times); the other devices' backlog clocks move in one
kernel pass, and one kernel (:mod:`envs.sim.cluster.kernels`) computes the finish estimates,
the observation's per-slot rows, the mask and the cluster's sums with the same floating-point
operations in the same order, so both paths give equal episodes bit for bit
(``tests/test_cluster_compiled.py``). The devices' own simulators (:class:`SharedGpuSim`) are
the same objects on both paths; on the compiled path an idle device's ``backlog`` and ``now``
lag behind until the router drives it again (read the cluster's :meth:`ClusterSim.backlog`).

Energy: the devices' dynamic energy plus every device's idle power over the elapsed time.
Cost: ``price_per_hour x elapsed`` summed over devices (the provisioned cost; per query in
:meth:`ClusterSim.summary`), and the *used* cost, each slot's busy seconds priced at its share
of its device's price (what a router can lower by its choices; the reward's cost term).
"""

from __future__ import annotations

import copy
import gc
import heapq
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from envs.sim.cluster import bank as bnk
from envs.sim.cluster import kernels as kn
from envs.sim.cluster.bank import DeviceBank, sizes_fit, usable
from envs.sim.cluster.spec import ClusterTables
from envs.sim.device.serving import BatcherConfig
from envs.sim.device.shared import SharedGpuSim, run_passive
from envs.sim.metrics import Counters, LatencyHistogram
from traces.arrivals import Arrivals

_INF = float("inf")


def _empty_trace(models: tuple[str, ...]) -> Arrivals:
    return Arrivals(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
                    np.zeros(0, np.int8), models)


class _Start(NamedTuple):
    """What every episode of one cluster starts from (see ``ClusterSim(reuse=...)``): the
    initial residents and the constant tables and mirrors as the first episode built them.
    Nothing here is written to (the mutable ones are copied)."""

    resident: tuple[tuple[int, ...], ...]
    mem_used: list[float]
    per_item: list[list[float]]
    fit_slots: list[list[tuple[int, int, int, float]]]
    first: list[int]
    bounds: np.ndarray
    idle_w: float
    sm: np.ndarray
    sb: np.ndarray
    sf: np.ndarray
    df: np.ndarray
    nev: list[float]
    due: list[tuple[float, int]]
    dcount: list[tuple[int, int, int, int, int]]
    counts: list[int]
    busy_list: list[float]
    #: The device bank at the start (None: the devices run in Python).
    bank: DeviceBank | None = None
    #: ``resident`` as the per-slot dicts of ``ClusterSim.resident`` and ``ready_at`` (each
    #: episode copies them: a copy of a dict costs a fraction of building it).
    dicts: tuple[tuple[dict[int, None], ...], tuple[dict[int, float], ...]] | None = None


class ClusterSim:
    """A heterogeneous cluster behind one router (see the module docstring).

    Args:
        tables: The cluster's static tables (:func:`envs.sim.cluster.spec.build_tables`).
        arrivals: The episode's queries (SLAs resolved, sizes set).
        batcher: Batching and admission knobs of every device.
        resident: Per slot, the models loaded at the start (in LRU order, least recent
            first); their footprints must fit the slot.
        slowdown_caches: Per device, a dict its interference results are cached in (shared
            across episodes; None: a fresh one each).
        reuse: The previous episode's simulator of the same tables, batcher and models: its
            device simulators are taken over and restarted
            (:meth:`~envs.sim.device.shared.SharedGpuSim.restart`: the same state as new ones,
            for less than building them), and it keeps none (no longer usable). Ignored when
            it does not match.

    The decision loop::

        sim.advance()                      # run to the first arrival
        while sim.pending is not None:
            sim.route(s)  or  sim.reject()
            sim.advance()                  # the next arrival (drains after the last)

    Attributes:
        devices: The devices' simulators.
        loads: Weight loads started.
        evictions: Models evicted.
        load_s: Seconds of loading (copy + fixed cost) over all loads.
        rejected: Queries rejected by the router.
    """

    _slot_dev: list[SharedGpuSim]
    _slot_part: list[int]
    in_transit: list[list[int]]
    transit_total: int
    transit_n: list[int]
    _df: np.ndarray
    _nev: list[float]
    _dcount: list[tuple[int, int, int, int, int]]
    _count: list[int]
    _busy_list: list[float]

    def __init__(self, tables: ClusterTables, arrivals: Arrivals, batcher: BatcherConfig,
                 resident: Sequence[Sequence[int]],
                 slowdown_caches: Sequence[dict | None] | None = None,
                 compiled: bool | None = None, reuse: ClusterSim | None = None) -> None:
        # Thousands of devices allocate hundreds of thousands of small containers (a queue
        # per slot and model, ...): without the cyclic collector's passes over them meanwhile
        # (nothing here makes a cycle to collect), a 1,024-device cluster builds ~5x faster.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._build(tables, arrivals, batcher, resident, slowdown_caches, compiled, reuse)
        finally:
            if collecting:
                gc.enable()

    def _build(self, tables: ClusterTables, arrivals: Arrivals, batcher: BatcherConfig,
               resident: Sequence[Sequence[int]], slowdown_caches: Sequence[dict | None] | None,
               compiled: bool | None, reuse: ClusterSim | None) -> None:
        self.tables = tables
        #: Whether the compiled path runs (see the module docstring, "Two paths").
        self.compiled = kn.AVAILABLE if compiled is None else bool(compiled)
        self.models = models = tuple(arrivals.models)
        self.n_models = M = len(tables.footprint_bytes)
        self.n_devices = D = len(tables.device_names)
        self.slots = list(tables.slots)
        self.n_slots = S = len(self.slots)
        self.batcher = batcher
        #: One histogram for every device: the cluster's latency distribution.
        self.latency = LatencyHistogram()
        self._devices: list[SharedGpuSim] = []
        #: The devices' state in arrays (the compiled path where :func:`bank.usable`), or None.
        self._bank: DeviceBank | None = None
        #: Whether the device objects lag the bank (:attr:`devices` syncs them), and whether
        #: they were written since they were built or restarted (else, with a bank, they are
        #: still in their state at time 0).
        self._stale = False
        self._synced = False
        #: The resident argument (what :attr:`_start` was built from).
        self._resident_arg = resident
        same = (reuse is not None and reuse.tables is tables and reuse.batcher == batcher
                and reuse.models == models and reuse._resident_arg is resident
                and len(reuse._devices) == D)
        #: The start state of this cluster that every episode begins from (built by the first
        #: episode, handed on by ``reuse``): constant tables and the initial mirrors.
        self._start: _Start | None = reuse._start if same and reuse is not None else None
        #: The previous episode's bank (its arrays are set to the start's in place).
        old_bank = reuse._bank if same and reuse is not None else None
        # and its per-slot lists that do not depend on the episode, or are zeroed here
        old_lists: tuple[list[list[int]], list[SharedGpuSim], list[int]] | None = None
        if (same and reuse is not None
                and not any(dev.reconfigurations for dev in reuse._devices)
                and (slowdown_caches is None or all(
                    c is None or dev._fcache is c
                    for dev, c in zip(reuse._devices, slowdown_caches, strict=True)))):
            self._devices = reuse._devices
            # A bank ran them: unless they were synced, the objects are as restart leaves them.
            clean = reuse._bank is not None and not reuse._synced
            rows = reuse.in_transit
            if reuse.transit_total:  # queries left in transit: their rows zeroed
                for s, n in enumerate(reuse.transit_n):
                    if n:
                        rows[s] = [0] * M
            old_lists = (rows, reuse._slot_dev, reuse._slot_part)
            reuse.in_transit = []
            reuse._devices = []
            reuse._slot_dev = []
            reuse._bank = None
            for dev in self._devices:
                if clean:
                    dev.counters.latency = self.latency
                else:
                    dev.restart(self.latency)
        empty = _empty_trace(models)  # one for all: nothing writes to a trace's columns
        for d in range(len(self._devices), D):
            cache = slowdown_caches[d] if slowdown_caches is not None else None
            dev = SharedGpuSim(tables.latency[d], tables.fits[d], empty, batcher,
                               tables.power_w[d], slowdown=tables.slowdowns[d],
                               slowdown_cache=cache)
            dev.counters.latency = self.latency
            self._devices.append(dev)
        self.attach_trace(arrivals)
        self._next = 0
        #: Index of the query awaiting a decision, or None once the trace is exhausted.
        self.pending: int | None = None
        self.now = 0.0
        self.arrived = 0
        self.rejected = 0
        self.loads = 0
        self.evictions = 0
        self.load_s = 0.0
        start = self._start
        #: Per slot, the resident models in LRU order (least recently used first).
        self.resident: list[dict[int, None]] = []
        if start is not None:
            if start.dicts is not None and same and reuse is not None:
                # the previous episode's dicts, set to the start's in place: no new dicts
                # and none freed (thousands at 1,024 devices, scattered in memory)
                self.resident, reuse.resident = reuse.resident, []
                for r, r0 in zip(self.resident, start.dicts[0], strict=True):
                    r.clear()
                    r.update(r0)
            elif start.dicts is not None:
                self.resident = [r.copy() for r in start.dicts[0]]
            else:
                self.resident = [dict.fromkeys(r) for r in start.resident]
            self.mem_used = start.mem_used.copy()
        else:
            self.mem_used = [0.0] * S
            for s in range(S):
                res = dict.fromkeys(int(m) for m in resident[s])
                used = sum(tables.footprint_bytes[m] for m in res)
                if used > tables.slot_mem_bytes[s] * (1 + 1e-12):
                    raise ValueError(f"slot {s}: the initial models need {used:.3g} B, "
                                     f"it has {tables.slot_mem_bytes[s]:.3g}")
                self.resident.append(res)
                self.mem_used[s] = used
        #: Per slot and model, when its weights are ready there (0: loaded at the start).
        #: A slot's dict may be the start's (shared until a load writes it: :meth:`route`
        #: copies it first, see ``_ready_start``).
        self.ready_at: list[dict[int, float]] = (
            list(start.dicts[1]) if start is not None and start.dicts is not None
            else [dict.fromkeys(r, 0.0) for r in self.resident])
        #: Per device, when its host link is free of weight copies.
        self.link_free_at = [0.0] * D
        #: Per slot and model, queries routed there and not yet delivered.
        self.in_transit = ([[0] * M for _ in range(S)] if old_lists is None
                           else old_lists[0])
        self.transit_total = 0
        #: Per slot, queries in transit to it (the sum of its row of ``in_transit``).
        self.transit_n = [0] * S
        self._heap: list[tuple[float, int, int, int, tuple[float, float, float, int, int]]] = []
        #: (slot, model) of the query routed since the last advance, whose mirrors (transit,
        #: room and extra marks) the bank's next call writes; None: none.
        self._routed: tuple[int, int] | None = None
        self._seq = 0
        if start is not None:
            self._per_item = start.per_item
            self._fit_slots = start.fit_slots
        else:
            self._per_item = tables.per_item_s.tolist()
            # Per model, the slots whose partition it fits (the only ones a query of it may
            # take), each as (slot, device, partition, hop of the model to that device).
            self._fit_slots = [
                [(s, d, p, tables.hop_s[d][m]) for s, (d, p) in enumerate(self.slots)
                 if tables.fits[d][p][m]] for m in range(M)]
        self._counters = Counters(S)
        self._counters.latency = self.latency
        #: ``sum(tables.price_per_s)`` (the cluster's US$ per second), summed once.
        self._price_per_s = sum(tables.price_per_s)
        if old_lists is None:
            self._slot_dev = [self._devices[d] for d, _ in self.slots]
            self._slot_part = [p for _, p in self.slots]
        else:  # the same devices on the same slots
            self._slot_dev, self._slot_part = old_lists[1], old_lists[2]
        if self.compiled and start is not None and start.bank is not None:
            # The devices are those the start's bank was built from, or built as those (same
            # tables and batcher, not reconfigured): only the trace's sizes are left to check.
            bankable = sizes_fit(arrivals.size, start.bank.max_batch)
        else:
            bankable = self.compiled and usable(self._devices, arrivals.size)
        if start is None:
            self._init_mirrors()
            bank = DeviceBank(self._devices, self._bounds, self.latency) if bankable else None
            self._start = _Start(
                tuple(tuple(r) for r in self.resident), self.mem_used.copy(), self._per_item,
                self._fit_slots, self._first, self._bounds, self._idle_w, self._sm.copy(),
                self._sb.copy(), self._sf.copy(), self._df.copy(), self._nev.copy(),
                self._due.copy(), self._dcount.copy(), self._count.copy(),
                self._busy_list.copy(), bank,
                (tuple(r.copy() for r in self.resident), tuple(r.copy() for r in self.ready_at)))
        else:
            self._restart_mirrors(start)
            bank = start.bank if bankable else None
            if bankable and bank is None:
                bank = DeviceBank(self._devices, self._bounds, self.latency)
        #: The start's ``ready_at`` dicts (never written: a slot's is copied before a load).
        assert self._start is not None
        self._ready_start = self._start.dicts[1] if self._start.dicts is not None else None
        if bank is not None:
            if start is None or bank is not start.bank:  # built here: its LRU order
                bank.set_resident([list(r) for r in self.resident])
            self._bank = bank.fresh(old_bank)
            #: The footprints as an array and the slots whose room's change time moved
            #: (bank.rooms's arguments).
            self._fp = np.asarray(self.tables.footprint_bytes, dtype=np.float64)
            self._rooms_out = np.zeros(S, np.int64)

    @property
    def devices(self) -> list[SharedGpuSim]:
        """The device simulators (brought up to date from the bank first, where it runs
        them: a cost per call, for readers off the hot path)."""
        if self._stale and self._bank is not None:
            if self._acc_t >= 0.0:
                self._flush_accrue()
            self._bank.sync(self._devices, self._df, self._bank_t)
            self._stale = False
            self._synced = True
        return self._devices

    #: The per-query columns of the trace (what :meth:`without_trace` drops).
    _TRACE_KEYS = ("_times", "_models", "_sizes", "_dead", "_inv")

    def attach_trace(self, arrivals: Arrivals) -> None:
        """Take the episode's queries (at construction, or again after :meth:`without_trace`:
        the same arrivals, e.g. drawn again from the same seed)."""
        self._times = arrivals.time_s.tolist()
        self._models = arrivals.model.tolist()
        self._sizes = arrivals.size.tolist()
        sla_ms = arrivals.sla_ms
        self._dead = (arrivals.time_s + sla_ms * 1e-3).tolist()
        self._inv = (1e3 / sla_ms).tolist()
        self._n = len(self._times)

    def without_trace(self) -> ClusterSim:
        """A shallow copy without the trace's columns (to pickle small: the owner draws the
        trace again and :meth:`attach_trace` s it) and without the start template (the next
        episode builds it again)."""
        clone = copy.copy(self)
        for key in self._TRACE_KEYS:
            delattr(clone, key)
        clone._start = None
        return clone

    # ------------------------------------------------------------------ compiled path
    def _init_mirrors(self) -> None:
        """The numpy mirrors of the compiled path (see the module docstring)."""
        tab = self.tables
        D, S, M = self.n_devices, self.n_slots, self.n_models
        slots = self.slots
        order = [(d, p) for d, dev in enumerate(self._devices) for p in range(dev.n_partitions)]
        if slots != order:  # pragma: no cover - build_tables lists them so
            raise ValueError("the slots must be every partition of every device, in order")
        #: Per device, its first slot.
        self._first = first = [0] * D
        for s, (d, p) in enumerate(slots):
            if p == 0:
                first[d] = s
        #: Per device its first slot, then S (the kernel's ``bounds``).
        self._bounds = np.array([*first, S], dtype=np.int64)
        sm = self._sm = np.zeros((kn.N_SM, M, S))
        sb = self._sb = np.zeros((kn.N_SB, M, S), dtype=np.uint8)
        dev_of = np.array([d for d, _ in slots], dtype=np.int64)
        sb[kn.FIT] = np.array([tab.fits[d][p] for d, p in slots], dtype=bool).T
        sm[kn.SOLO] = np.array([self._devices[d].solo_s[p] for d, p in slots]).T
        sm[kn.HOP] = np.array(tab.hop_s, dtype=np.float64)[dev_of].T
        # tables.load_time_s(d, m), elementwise: weight / copy rate + fixed cost
        sm[kn.LT] = (np.array(tab.weight_bytes)[:, None] / np.array(tab.copy_bps)[dev_of]
                     + np.array(tab.load_fixed_s)[dev_of])
        sm[kn.PER_ITEM] = tab.per_item_s.T
        for s, ready in enumerate(self.ready_at):
            for m, t in ready.items():
                sm[kn.READY, m, s] = t
                sb[kn.RES, m, s] = 1
        #: ``sum(tables.idle_w)``, as :meth:`energy_j` adds it up.
        self._idle_w = sum(tab.idle_w)
        sf = self._sf = np.zeros((kn.N_SF, S))
        sf[kn.MEM] = self.mem_used
        sf[kn.CAP] = tab.slot_mem_bytes
        sf[kn.FREE] = sf[kn.CAP] - sf[kn.MEM]
        sf[kn.FREE_FRAC] = 1.0 - sf[kn.MEM] / sf[kn.CAP]
        sf[kn.PRICE] = [tab.price_per_s[d] for d, _ in slots]
        sf[kn.SHARE] = tab.slot_share
        sf[kn.LINK] = [self.link_free_at[d] for d, _ in slots]
        sf[kn.EXTRA_N, 0] = -1.0  # every slot's EXTRA to compute (EXTRA_OK 0)
        self._df = np.zeros((kn.N_DF, D))
        #: Per device, the time of the head of its event heap as last seen (inf: empty).
        self._nev = [_INF] * D
        #: (time, device) per head seen: the devices with an event due come off it.
        self._due: list[tuple[float, int]] = []
        #: Per device, its counters as last seen (completed, good, rejected, overflow,
        #: expired); and their sums over the devices.
        self._dcount = [(0, 0, 0, 0, 0)] * D
        self._count = [0, 0, 0, 0, 0]
        #: Devices moved to the current decision by the router this time (their backlog
        #: clock and ``now`` are their own; the others' are in the mirrors).
        self._touched: dict[int, None] = {}
        #: The decision time every device not in ``_touched`` was last moved to.
        self._dev_now = 0.0
        #: The last decision time the bank ran to (where the devices that did not run since
        #: are: DeviceBank.sync).
        self._bank_t = 0.0
        #: The time the mirrors' backlog clocks are still to be moved to
        #: (:func:`kernels.accrue`, deferred to the next kernel call); -1: none.
        self._acc_t = -1.0
        # (time a loading model becomes evictable, slot): the rooms that change by themselves
        self._room_at: list[tuple[float, int]] = []
        self._room_until = np.full(S, _INF)
        self._o32 = np.zeros((6, S), np.float32)
        self._valid = np.zeros(S, bool)
        self._sums = np.zeros(5)
        self._sums_list: list[float] | None = None  # _sums as floats, once read
        self._sums_ok = False  # whether _sums are those of now
        self._busy_list = [0.0] * S
        self._bind_rows()
        for d in range(D):
            self._pull(d)

    def _restart_mirrors(self, start: _Start) -> None:
        """The mirrors as :meth:`_init_mirrors` leaves them, copied from ``start`` (the
        devices restarted: the same state as the devices it was taken from)."""
        S = self.n_slots
        self._first = start.first
        self._bounds = start.bounds
        self._sm = start.sm.copy()
        self._sb = start.sb.copy()
        self._idle_w = start.idle_w
        self._sf = start.sf.copy()
        self._df = start.df.copy()
        self._nev = start.nev.copy()
        self._due = start.due.copy()
        self._dcount = start.dcount.copy()
        self._count = start.counts.copy()
        self._touched = {}
        self._dev_now = 0.0
        self._bank_t = 0.0
        self._acc_t = -1.0
        self._room_at = []
        self._room_until = np.full(S, _INF)
        self._o32 = np.zeros((6, S), np.float32)
        self._valid = np.zeros(S, bool)
        self._sums = np.zeros(5)
        self._sums_list = None
        self._sums_ok = False
        self._busy_list = start.busy_list.copy()
        self._bind_rows()

    #: The row views :meth:`_bind_rows` makes (not pickled: views would come back as copies).
    _ROW_KEYS = ("_df_rows", "_pull_rows", "_tn_row", "_extra_ok_row", "_room_ok_row",
                 "_room_row", "_bs_row", "_bounds_list", "_transit_rows", "_finish_row",
                 "_observe_kernel", "_rooms_kernel")

    def _bind_rows(self) -> None:
        """Views of the mirrors' rows that the per-decision bookkeeping writes (an element
        of a row costs less to write than one of the matrix)."""
        sf, df = self._sf, self._df
        self._df_rows = (df[kn.B], df[kn.T], df[kn.R], df[kn.E])
        self._pull_rows = (sf[kn.BU], sf[kn.UP], sf[kn.QW], sf[kn.BS], sf[kn.BUSY], sf[kn.QI],
                           sf[kn.ROOM_OK])
        self._tn_row = sf[kn.TN]
        self._extra_ok_row = sf[kn.EXTRA_OK]
        self._room_ok_row = sf[kn.ROOM_OK]
        self._room_row = sf[kn.ROOM]
        self._bs_row = sf[kn.BS]
        #: ``_bounds`` as a list (read per device that ran, per decision).
        self._bounds_list: list[int] = self._bounds.tolist()
        self._transit_rows = self._sm[kn.TRANSIT]
        self._finish_row = sf[kn.FINISH]
        #: kernels.observe_flat's compiled entry point (found at the first call; not pickled).
        self._observe_kernel: Any = None
        #: bank.rooms's compiled entry point (likewise).
        self._rooms_kernel: Any = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        for key in self._ROW_KEYS:
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if "_sf" in state:
            self._bind_rows()

    def _touch(self, d: int) -> SharedGpuSim:
        """Device ``d``, its backlog clock and ``now`` brought from the mirrors (once per
        decision, before the router drives it)."""
        dev = self._devices[d]
        if d not in self._touched:
            if self._acc_t >= 0.0:
                self._flush_accrue()
            self._touched[d] = None
            rows = self._df_rows
            dev.backlog = rows[0].item(d)
            dev._backlog_t = rows[1].item(d)
            dev.events.now = self._dev_now
        return dev

    def _extra_stale(self, s: int) -> None:
        """:func:`kernels.extra_stale` (slot ``s``'s transit changed), in Python."""
        ok = self._extra_ok_row
        if ok[s] != 0.0:
            ok[s] = 0.0
            sf = self._sf
            n = sf.item(kn.EXTRA_N, 0)
            if n >= 0.0:
                sf[kn.EXTRA_LIST, int(n)] = s
                sf[kn.EXTRA_N, 0] = n + 1.0

    def _flush_accrue(self) -> None:
        """Move the mirrors' backlog clocks now, where :meth:`_run_devices` deferred it."""
        kn.accrue(self._df, self._acc_t)
        self._acc_t = -1.0

    def _pull(self, d: int) -> None:
        """Copy device ``d``'s state into the mirrors (after it ran)."""
        dev = self._devices[d]
        b_row, t_row, r_row, e_row = self._df_rows
        b_row[d] = dev.backlog
        t_row[d] = dev._backlog_t
        r_row[d] = dev._backlog_rate
        c = dev.counters
        e_row[d] = c.energy_j
        now_c = (c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
                 c.dropped_expired)
        old = self._dcount[d]
        if now_c != old:
            count = self._count
            for i in range(5):
                count[i] += now_c[i] - old[i]
            self._dcount[d] = now_c
        heap = dev.events.heap
        head = heap[0][0] if heap else _INF
        if head != self._nev[d]:
            self._nev[d] = head
            if head < _INF:
                heapq.heappush(self._due, (head, d))
        s = self._first[d]
        busy_list = self._busy_list
        bu, up, qw, bs, busy, qi, room_ok = self._pull_rows
        d_until, d_up, d_work, d_busy_s, d_busy, d_items = (
            dev.busy_until, dev.up_at, dev.queued_work_s, c.busy_s, dev.busy, dev.queued_items)
        for p in range(dev.n_partitions):
            bu[s] = d_until[p]
            up[s] = d_up[p]
            qw[s] = d_work[p]
            bs[s] = busy_list[s] = d_busy_s[p]
            busy[s] = 1.0 if d_busy[p] else 0.0
            qi[s] = d_items[p]
            room_ok[s] = 0.0
            s += 1
        self._sums_ok = False

    def _rooms(self, slots: Sequence[int], need: float, mask: np.ndarray) -> None:
        """For each slot of ``slots``: its memory after evicting its evictable models
        (:meth:`valid_slots`'s sum, in its order) into the row ``ROOM`` (``ROOM_OK`` set),
        its ``mask`` entry (whether that room holds ``need`` bytes), and when the room changes
        by itself (a loading model becomes evictable when loaded)."""
        now = self.now
        fp = self.tables.footprint_bytes
        cap, used = self.tables.slot_mem_bytes, self.mem_used
        room_row, ok_row, until_of = self._room_row, self._room_ok_row, self._room_until
        bank = self._bank
        for s in slots:
            free = cap[s] - used[s]
            if bank is not None:
                queued: Sequence[int] = bank.BM[s].tolist()
                running: int = bank.SI.item(bnk.I_RM, s)
            else:
                queued, running = self._queue_of(s)
            transit = self.in_transit[s]
            ready = self.ready_at[s]
            until = _INF
            for k in self.resident[s]:
                if not transit[k] and not queued[k] and k != running:
                    r = ready[k]
                    if r <= now:
                        free += fp[k]
                    elif r < until:
                        until = r
            room_row[s] = free
            ok_row[s] = 1.0
            mask[s] = need <= free
            if until != until_of[s]:
                until_of[s] = until
                if until < _INF:
                    heapq.heappush(self._room_at, (until, s))

    def _queue_of(self, s: int) -> tuple[Sequence[int], int]:
        """Slot ``s``'s items queued per model and its running model (-1: idle)."""
        bank = self._bank
        if bank is not None:
            return bank.BM[s].tolist(), int(bank.SI[bnk.I_RM, s])
        d, p = self.slots[s]
        dev = self._devices[d]
        return dev.queued_by_model[p], dev.running_model[p]

    def _prepare(self) -> None:
        """Mark stale the rooms a finished load changed."""
        room_at, now = self._room_at, self.now
        while room_at and room_at[0][0] <= now:
            until, s = heapq.heappop(room_at)
            if self._room_until[s] == until:
                self._room_ok_row[s] = 0.0

    def _fresh_sums(self) -> list[float]:
        """The sums of :func:`kernels.refresh` now (computed unless fresh), as floats (one
        conversion per computation: every reader of a decision reads this list)."""
        if not self._sums_ok:
            self._prepare()
            kn.accrue_refresh(self._acc_t, -1, self.now, 0.0, 1.0, 1.0, _INF, True, self._sf,
                              self._sm, self._sb, self._df, self._bounds, self._o32,
                              self._valid, self._sums)
            self._acc_t = -1.0
            self._sums_ok = True
            self._sums_list = None
        out = self._sums_list
        if out is None:
            out = self._sums_list = self._sums.tolist()
        return out

    def observe(self, m: int, inv_b: float, inv_sla: float, clip: float,
                out: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a query of model ``m`` now (compiled path): the finish estimates (seconds,
        per slot), the per-slot rows ``queue`` (x ``inv_b``), ``busy``, ``finish``,
        ``resident``, ``loading`` (x ``inv_sla``), ``free_mem``, each clipped to ``[0,
        clip]`` as float32 (into ``out``, shape ``(6, S)``, when given), and the valid
        slots (:meth:`valid_slots`; into ``mask``, bool, when given). Views into buffers
        the next call overwrites."""
        self._prepare()
        sf = self._sf
        o32 = self._o32 if out is None else out
        valid = self._valid if mask is None else mask
        need = self.tables.footprint_bytes[m]
        if not self._sums_ok:  # the kernel computes them now
            self._sums_list = None
        stale = kn.accrue_refresh(self._acc_t, m, self.now, need, inv_b, inv_sla, clip,
                                  not self._sums_ok, sf, self._sm, self._sb, self._df,
                                  self._bounds, o32, valid, self._sums)
        self._after_observe(stale, need, valid)
        return sf[kn.FINISH], o32, valid

    def _after_observe(self, stale: int, need: float, mask: np.ndarray) -> None:
        """After an observation kernel: the backlog accrued and the sums fresh; the ``stale``
        slots the kernel listed get their room recomputed here (eviction order) and ``mask``
        entry."""
        self._acc_t = -1.0
        self._sums_ok = True
        if stale:
            bank = self._bank
            if bank is not None and bank.keeps_held:  # the same in one kernel call
                args = (stale, self.now, need, self._sf, self._sm, self._fp, bank.LRU, bank.SI,
                        self._room_until, mask, self._rooms_out)
                kernel = self._rooms_kernel
                if kernel is None:
                    kernel = self._rooms_kernel = kn.entry_point(bnk.rooms, args)
                k = kernel(*args)
                if k:
                    until_of, room_at = self._room_until, self._room_at
                    for s in self._rooms_out[:k].tolist():
                        heapq.heappush(room_at, (until_of.item(s), s))
                return
            self._rooms([int(s) for s in self._sf[kn.STALE, :stale].tolist()], need, mask)

    def observe_flat(self, m: int, inv_b: float, inv_sla: float, clip: float, buf: np.ndarray,
                     off: int, mask: np.ndarray, rates: np.ndarray, decay: float, inc: float,
                     scale: float, roff: int, sla_x: float, soff: int,
                     tmpl: np.ndarray) -> np.ndarray:
        """:meth:`observe` into a flat float32 buffer (the per-slot rows at ``buf[off:off +
        6 S]``, the mask into ``mask``) together with the rest of a decision's observation
        (:func:`kernels.observe_flat`: the template ``tmpl`` elsewhere, then the rates' EWMA
        ``rates`` to ``decay x rates``, ``+ inc`` for ``m``, written x ``scale`` at
        ``buf[roff:]``; ``clip(sla_x)`` at ``buf[soff]``): one kernel call (``buf`` may come
        uninitialised). Returns the finish estimates (seconds, per slot; a view the next call
        overwrites)."""
        room_at = self._room_at
        if room_at and room_at[0][0] <= self.now:
            self._prepare()
        sf = self._sf
        need = self.tables.footprint_bytes[m]
        if not self._sums_ok:  # the kernel computes them now
            self._sums_list = None
        args = (self._acc_t, m, self.now, need, inv_b, inv_sla, clip, not self._sums_ok, sf,
                self._sm, self._sb, self._df, self._bounds, buf, off, mask, self._sums, rates,
                decay, inc, scale, roff, sla_x, soff, tmpl)
        kernel = self._observe_kernel
        if kernel is None:  # the types are the same at every call: float, int, bool, arrays
            kernel = self._observe_kernel = kn.entry_point(kn.observe_flat, args)
        self._after_observe(kernel(*args), need, mask)
        return self._finish_row

    # ------------------------------------------------------------------ decisions
    def pending_query(self) -> tuple[int, float, float]:
        """Model, absolute deadline and SLA (seconds) of the pending query."""
        j = self.pending
        assert j is not None
        return self._models[j], self._dead[j], 1.0 / self._inv[j]

    def _evictable(self, s: int, m: int) -> list[int]:
        """Models on slot ``s`` (LRU first) that may be evicted to make room for ``m``."""
        queued, running = self._queue_of(s)
        transit = self.in_transit[s]
        ready = self.ready_at[s]
        now = self.now
        return [k for k in self.resident[s]
                if k != m and not transit[k] and not queued[k] and k != running
                and ready[k] <= now]

    def can_route(self, s: int, m: int) -> bool:
        """Whether slot ``s`` can take a query of model ``m`` now (it fits the partition, and
        is resident or can be made resident by evicting idle models)."""
        d, p = self.slots[s]
        if not self.tables.fits[d][p][m]:
            return False
        if m in self.resident[s]:
            return True
        fp = self.tables.footprint_bytes
        free = self.tables.slot_mem_bytes[s] - self.mem_used[s]
        need = fp[m]
        if need <= free:
            return True
        for k in self._evictable(s, m):
            free += fp[k]
            if need <= free:
                return True
        return False

    def valid_slots(self, m: int) -> list[bool]:
        """:meth:`can_route` for every slot (the same tests, over the slots ``m`` fits)."""
        out = [False] * self.n_slots
        resident, used, cap = self.resident, self.mem_used, self.tables.slot_mem_bytes
        fp = self.tables.footprint_bytes
        need = fp[m]
        for s, _, _, _ in self._fit_slots[m]:
            if m in resident[s]:
                out[s] = True
                continue
            free = cap[s] - used[s]
            if need <= free:
                out[s] = True
                continue
            for k in self._evictable(s, m):
                free += fp[k]
                if need <= free:
                    out[s] = True
                    break
        return out

    def load_wait_s(self, s: int, m: int) -> float:
        """Seconds from now until model ``m``'s weights would be ready on slot ``s`` if a
        query were routed there now (0 when resident and loaded)."""
        r = self.ready_at[s].get(m)
        if r is not None:
            return r - self.now if r > self.now else 0.0
        d = self.slots[s][0]
        start = self.link_free_at[d]
        if start < self.now:
            start = self.now
        return start - self.now + self.tables.load_time_s(d, m)

    def route(self, s: int) -> None:
        """Send the pending query to slot ``s`` (loading its model there if needed).

        Raises:
            ValueError: ``s`` is out of range or cannot take the query (:meth:`can_route`).
        """
        j = self.pending
        if j is None:
            raise RuntimeError("no pending query; call advance() first")
        m = self._models[j]
        if not 0 <= s < self.n_slots or not self.can_route(s, m):
            raise ValueError(f"slot {s} cannot take a query of model {m}")
        now = self.now
        d, _ = self.slots[s]
        res = self.resident[s]
        ready = self.ready_at[s]
        if m in res:
            del res[m]
            res[m] = None  # most recently used
            t_ready = ready[m]
        else:
            shared = self._ready_start
            if shared is not None and ready is shared[s]:  # the start's: copied, then written
                ready = self.ready_at[s] = ready.copy()
            fp = self.tables.footprint_bytes
            cap = self.tables.slot_mem_bytes[s]
            for k in self._evictable(s, m):
                if self.mem_used[s] + fp[m] <= cap:
                    break
                del res[k]
                del ready[k]
                self.mem_used[s] -= fp[k]
                self.evictions += 1
                if self.compiled:
                    self._sb[kn.RES, k, s] = 0
            start = self.link_free_at[d]
            if start < now:
                start = now
            copy = self.tables.weight_bytes[m] / self.tables.copy_bps[d]
            self.link_free_at[d] = start + copy
            t_ready = ready[m] = start + copy + self.tables.load_fixed_s[d]
            self.load_s += t_ready - start
            res[m] = None
            self.mem_used[s] += fp[m]
            self.loads += 1
            if self.compiled:
                sm, sf = self._sm, self._sf
                self._sb[kn.RES, m, s] = 1
                sm[kn.READY, m, s] = t_ready
                mem = sf[kn.MEM, s] = self.mem_used[s]
                cap_s = sf.item(kn.CAP, s)  # (FREE and FREE_FRAC with it)
                sf[kn.FREE, s] = cap_s - mem
                sf[kn.FREE_FRAC, s] = 1.0 - mem / cap_s
                a = self._first[d]
                sf[kn.LINK, a:a + self._devices[d].n_partitions] = self.link_free_at[d]
        t = now + self.tables.hop_s[d][m]
        if t_ready > t:
            t = t_ready
        self.in_transit[s][m] += 1
        self.transit_n[s] += 1
        self.transit_total += 1
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, s, m, (
            self._times[j], self._dead[j], self._inv[j], self._sizes[j], 0)))
        self.pending = None
        if self.compiled:
            if self._bank is not None:  # the bank's next call moves the mirrors below
                self._routed = (s, m)
            else:
                self._transit_rows[m, s] += 1.0
                self._tn_row[s] += 1.0
                self._extra_stale(s)
                self._room_ok_row[s] = 0.0  # its transit, its LRU order (the room's sum order)
            self._sums_ok = False

    def reject(self) -> None:
        """Drop the pending query by decision."""
        if self.pending is None:
            raise RuntimeError("no pending query; call advance() first")
        self.pending = None
        self.rejected += 1

    def advance(self) -> None:
        """Run to the next arrival and make it :attr:`pending`; after the last one, deliver
        everything in transit and drain every device (``pending`` stays None)."""
        if self.pending is not None:
            raise RuntimeError("the pending query has not been decided")
        if self._bank is not None:
            self._advance_bank()
            return
        if self._next < self._n:
            t = self._times[self._next]
            self._deliver(t)
            if self.compiled:
                self._run_devices(t)
            else:
                run_passive(self._devices, t)
            self.now = t
            self.pending = self._next
            self._next += 1
            self.arrived += 1
            return
        self._deliver(_INF)
        end = self.now
        if self.compiled:
            for d in range(self.n_devices):
                self._touch(d)
        for dev in self._devices:
            dev.advance()
            if dev.now > end:
                end = dev.now
        self.now = end
        if self.compiled:
            for d in range(self.n_devices):
                self._pull(d)
            self._touched.clear()
            self._dev_now = end

    def _advance_bank(self) -> None:
        """:meth:`advance` with the devices in the bank: one kernel call hands over the
        deliveries due and runs the devices (see :mod:`envs.sim.cluster.bank`)."""
        bank = self._bank
        assert bank is not None
        drain = self._next >= self._n
        t = _INF if drain else self._times[self._next]
        heap = self._heap
        n = 0
        one: tuple[float, int, int, int, tuple[float, float, float, int, int]] | None = None
        if drain and len(heap) > 1:  # every delivery, in the order heappop gives them
            items = sorted(heap)  # ((when, seq) are distinct)
            heap.clear()
            transit, transit_n = self.in_transit, self.transit_n
            for _, _, s, m, _ in items:
                transit[s][m] -= 1
                transit_n[s] -= 1
            bank.push_all(items, self.slots)
            n = len(items)
            if items[-1][0] > self.now:
                self.now = items[-1][0]
            self.transit_total -= n
        elif heap and heap[0][0] <= t:
            slots, transit, transit_n = self.slots, self.in_transit, self.transit_n
            now = self.now
            while heap and heap[0][0] <= t:
                when, _, s, m, req = heapq.heappop(heap)
                # (the mirrors of what is in transit: moved by the kernel)
                transit[s][m] -= 1
                transit_n[s] -= 1
                if n == 0:  # the common case: one delivery, passed as scalars
                    one = (when, slots[s][0], s, m, req)
                else:
                    if n == 1:
                        assert one is not None
                        bank.push(0, one[0], one[1], one[2], one[3], one[4])
                    bank.push(n, when, slots[s][0], s, m, req)
                n += 1
                if when > now:
                    now = when
            self.now = now
            self.transit_total -= n
        if self._acc_t >= 0.0:
            self._flush_accrue()
        bank.run(t, -1 if n == 1 else n, drain, self._df, self._sf, self._sm, self._sb,
                 one,
                 self._routed)
        self._routed = None
        self._stale = True
        self._sums_ok = False
        count = bank.T.tolist()
        if count[bnk.T_COMPLETED] != self._count[bnk.T_COMPLETED]:
            bank.add_latencies(self.latency)
        self._count = count
        ran = bank.RAN
        k = ran.item(0)
        if k == self.n_devices:  # all of them (the drain): every slot
            self._busy_list[:] = self._bs_row.tolist()
        elif k:
            bs, busy_list, bounds = self._bs_row, self._busy_list, self._bounds_list
            for d in ran[1:k + 1].tolist():
                for s in range(bounds[d], bounds[d + 1]):
                    busy_list[s] = bs.item(s)
        if drain:
            end = max(self.now, float(bank.G[bnk.G_NOW].max()))
            self.now = self._dev_now = end
            return
        self._dev_now = self._bank_t = t
        self._acc_t = t  # kernels.accrue(self._df, t), deferred to the next kernel call
        self.now = t
        self.pending = self._next
        self._next += 1
        self.arrived += 1

    def _run_devices(self, t: float) -> None:
        """The compiled path's :func:`run_passive` to ``t``: the devices the deliveries
        touched or with an event due by ``t`` run (in device order, as there), the others'
        backlog clocks move in the mirrors (:func:`kernels.accrue`)."""
        due, nev, touched = self._due, self._nev, self._touched
        run = set(touched)
        while due and due[0][0] <= t:
            when, d = heapq.heappop(due)
            if nev[d] == when:
                run.add(d)
        if self._acc_t >= 0.0:  # two accruals are not one (the floats)
            self._flush_accrue()
        for d in sorted(run):
            self._touch(d).run_passive(t)
            self._pull(d)
        touched.clear()
        self._acc_t = t  # kernels.accrue(self._df, t), deferred to the next kernel call
        self._dev_now = t
        self._sums_ok = False

    def _deliver(self, t: float) -> None:
        """Hand every delivery due by ``t`` to its device, in time order."""
        heap = self._heap
        devices, slots, transit = self._devices, self.slots, self.in_transit
        compiled = self.compiled
        while heap and heap[0][0] <= t:
            when, _, s, m, req = heapq.heappop(heap)
            d, p = slots[s]
            dev = self._touch(d) if compiled else devices[d]
            if compiled:
                self._transit_rows[m, s] -= 1.0
                self._tn_row[s] -= 1.0
                self._extra_stale(s)
                self._room_ok_row[s] = 0.0
            transit[s][m] -= 1
            self.transit_n[s] -= 1
            self.transit_total -= 1
            dev.deliver(when, p, m, req)  # run_passive(when), then arrive(p, m, req)
            if when > self.now:
                self.now = when

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        """Every query has been decided and the cluster has drained."""
        return self.pending is None and self._next >= self._n and not self._heap

    def finish_estimates_s(self, m: int) -> list[float]:
        """Per slot, the rough time from now until a query of model ``m`` routed there now
        would finish: ``max(hop, load wait)`` + the device's wait, queued work and batch of
        one (:meth:`~envs.sim.device.shared.SharedGpuSim.finish_times_s`), plus the work of
        the queries in transit to that slot (``inf`` where the model does not fit)."""
        out = [_INF] * self.n_slots
        now = self.now
        tab = self.tables
        per_item = self._per_item
        devices, ready_at, link_free = self._devices, self.ready_at, self.link_free_at
        transit_n, in_transit = self.transit_n, self.in_transit
        bank = self._bank is not None
        if bank:
            sf = self._sf
            b_until, b_busy, b_up, b_work = (sf[kn.BU].tolist(), sf[kn.BUSY].tolist(),
                                             sf[kn.UP].tolist(), sf[kn.QW].tolist())
        for s, d, p, hop in self._fit_slots[m]:
            dev = devices[d]
            # dev.finish_times_s(m, now)[p], inlined
            if bank:
                wait = b_until[s] - now if b_busy[s] else 0.0
                down = b_up[s] - now
                if down > wait:
                    wait = down
                f = wait + (b_work[s] + dev.solo_s[p][m])
            else:
                wait = dev.busy_until[p] - now if dev.busy[p] else 0.0
                down = dev.up_at[p] - now
                if down > wait:
                    wait = down
                f = wait + (dev.queued_work_s[p] + dev.solo_s[p][m])
            # self.load_wait_s(s, m), inlined
            r = ready_at[s].get(m)
            if r is not None:
                load = r - now if r > now else 0.0
            else:
                start = link_free[d]
                if start < now:
                    start = now
                load = start - now + tab.load_time_s(d, m)
            extra = 0.0
            if transit_n[s]:
                for k, n in enumerate(in_transit[s]):
                    if n:
                        extra += n * per_item[s][k]
            out[s] = (load if load > hop else hop) + f + extra
        return out

    def queued_items(self) -> list[int]:
        """Per slot, items queued there plus queries in transit to it."""
        if self._bank is not None:
            return [q + n for q, n in zip(self._bank.SI[bnk.I_QD].tolist(), self.transit_n,
                                          strict=True)]
        return [dev.queued_items[p] + n
                for dev, p, n in zip(self._slot_dev, self._slot_part, self.transit_n,
                                     strict=True)]

    def busy_left_s(self) -> list[float]:
        """Per slot, seconds left in its running batch (0 when idle)."""
        now = self.now
        if self._bank is not None:
            return [u - now if b else 0.0 for u, b in zip(self._sf[kn.BU].tolist(),
                                                          self._sf[kn.BUSY].tolist(),
                                                          strict=True)]
        return [dev.busy_until[p] - now if dev.busy[p] else 0.0
                for dev, p in zip(self._slot_dev, self._slot_part, strict=True)]

    def energy_j(self) -> float:
        """Energy so far: the devices' dynamic energy plus idle power over the elapsed time."""
        if self.compiled:
            return self._fresh_sums()[kn.S_ENERGY] + self._idle_w * self.now
        return (sum(dev.counters.energy_j for dev in self._devices)
                + sum(self.tables.idle_w) * self.now)

    def used_cost_usd(self) -> float:
        """Busy seconds of each slot priced at its share of its device's price."""
        if self.compiled:
            return self._fresh_sums()[kn.S_COST]
        tab = self.tables
        total = 0.0
        for s, (d, p) in enumerate(self.slots):
            total += self._devices[d].counters.busy_s[p] * tab.price_per_s[d] * tab.slot_share[s]
        return total

    def provisioned_cost_usd(self) -> float:
        """Every device's price over the elapsed time."""
        return self._price_per_s * self.now

    def counters(self) -> Counters:
        """The cluster's counters: sums over the devices, the router's arrivals and
        rejections, the shared latency histogram. One object, refreshed by every call (read it
        before the simulation moves on)."""
        c = self._counters
        if self.compiled:
            c.completed, c.good, rejected, c.dropped_overflow, c.dropped_expired = self._count
            c.arrived = self.arrived
            c.dropped_rejected = self.rejected + rejected
            c.busy_s = self._busy_list
            c.energy_j = self.energy_j()
            c.latency = self.latency
            return c
        c.completed = c.good = c.dropped_overflow = c.dropped_expired = 0
        c.arrived = self.arrived
        c.dropped_rejected = self.rejected
        busy: list[float] = []
        for dev in self._devices:
            dc = dev.counters
            c.completed += dc.completed
            c.good += dc.good
            c.dropped_rejected += dc.dropped_rejected
            c.dropped_overflow += dc.dropped_overflow
            c.dropped_expired += dc.dropped_expired
            busy.extend(dc.busy_s)
        c.busy_s = busy
        c.energy_j = self.energy_j()
        c.latency = self.latency
        return c

    def backlog_and_cost(self) -> tuple[float, float]:
        """:meth:`backlog` and :meth:`used_cost_usd` (what a reward reads each decision)."""
        if self.compiled:
            sums = self._fresh_sums()
            return sums[kn.S_BACKLOG], sums[kn.S_COST]
        return self.backlog(), self.used_cost_usd()

    def backlog(self) -> float:
        """Sum over the devices of their backlog (time in the system in units of the SLA,
        counted from delivery)."""
        if self.compiled:
            return self._fresh_sums()[kn.S_BACKLOG]
        return sum(dev.backlog for dev in self._devices)

    def summary(self, counters: Counters | None = None) -> dict[str, float]:
        """The info metrics (:meth:`envs.sim.metrics.Counters.summary`) plus the cluster's:
        ``in_transit``, ``loads``, ``evictions``, ``load_s``, ``cost_per_query_usd``
        (provisioned), ``used_cost_per_query_usd``. ``counters``: :meth:`counters` of this
        moment when the caller has them already."""
        c = self.counters() if counters is None else counters
        now = self.now
        if self.compiled:
            sums = self._fresh_sums()
            out = c.summary(now, sums[kn.S_AHEAD], sums[kn.S_BUSY])
        else:
            out = c.summary(now, sum(dev.busy_ahead_s(now) for dev in self._devices))
        done = c.completed
        out["in_transit"] = self.transit_total
        out["loads"] = self.loads
        out["evictions"] = self.evictions
        out["load_s"] = self.load_s
        if not done:
            out["cost_per_query_usd"] = out["used_cost_per_query_usd"] = 0.0
        elif self.compiled:  # provisioned_cost_usd() and used_cost_usd(), inlined
            out["cost_per_query_usd"] = self._price_per_s * now / done
            out["used_cost_per_query_usd"] = sums[kn.S_COST] / done
        else:
            out["cost_per_query_usd"] = self.provisioned_cost_usd() / done
            out["used_cost_per_query_usd"] = self.used_cost_usd() / done
        return out
