"""A shared GPU at full fidelity: interference among co-runners, priorities, re-partitioning.

:class:`SharedGpuSim` extends :class:`~envs.sim.device.serving.GpuServingSim` (same trace handling,
same dynamic batcher, same counters) with three things the MISD literature schedules around:

* **Interference (MPS shares, time slicing).** A running batch carries its remaining work in
  *solo seconds* (its latency alone on its partition) and progresses at rate ``1 / f`` where
  ``f >= 1`` is its slowdown given what runs on the other partitions. Whenever a batch starts
  or stops anywhere on the device, every running batch is advanced to ``now`` at its old rate,
  the slowdowns are recomputed (a ``slowdown`` callable, backed by
  :class:`hwmodels.interference.InterferenceModel`) and each batch whose factor changed has its
  completion event cancelled and rescheduled at ``now + remaining * f_new``. Dynamic energy is
  charged per solo second of work (a stretched batch does the same work), busy time per wall
  second.
* **Priority classes (PREMA-style, preemption at batch boundaries).** Requests carry a
  priority; each (partition, model) queue keeps one FIFO per priority level. When a partition
  frees up, the model whose queue holds the most important request goes next (ties: the
  oldest), and its batch is filled from the most important level down. With ``preempt=True`` a
  request more important than the running batch kills it on arrival (the batch's requests go
  back to the front of their queues, also when that takes a queue past ``queue_capacity``:
  they were admitted; the work done is lost), PREMA's *kill* mechanism.
* **Re-partitioning.** :meth:`SharedGpuSim.reconfigure` swaps the partitions of some *slots*
  (a fixed number of slots holds the layout; a slot may be empty). Requests queued on changed
  slots are handed back to the caller to be placed again; running batches there either finish
  (``drain``) or are killed and handed back (``preempt``). Once drained, the changed slots stay
  down for the given downtime (a :class:`hwmodels.reconfig.ReconfigModel` sample: destroy and
  create instances, restart contexts, reload weights, warm up) and serve nothing; unchanged
  slots keep serving throughout.

With ``slowdown=None``, ``priorities=False`` and no reconfiguration the dynamics are exactly those
of :class:`~envs.sim.device.serving.GpuServingSim` (a test compares every counter and the latency
histogram bit for bit). This loop is simpler and slower than the parent's fused one; the
environments use the parent whenever none of the features above is on.

Nothing here imports gymnasium or torch.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from envs.sim.core import Event
from envs.sim.device import compiled_shared as cs
from envs.sim.device.serving import BATCH_DONE, BATCH_TIMEOUT, BatcherConfig, GpuServingSim, take
from envs.sim.metrics import LatencyHistogram
from traces.arrivals import Arrivals

SLOT_UP = 2
_INF = float("inf")
#: Entries a slowdown cache holds before its older half is forgotten.
_CACHE_MAX = 200_000


def run_passive(devices: Sequence[SharedGpuSim], t_end: float) -> None:
    """:meth:`SharedGpuSim.run_passive` for each of ``devices`` (passive devices: no trace of
    their own, nothing pending), the idle case inlined: a cluster moves every device to each
    decision time, and most have no event due."""
    for dev in devices:
        heap = dev.events.heap
        if heap and heap[0][0] <= t_end:
            dev._loop(None, t_end)
        else:
            dev.events.now = t_end
            dev.backlog += dev._backlog_rate * (t_end - dev._backlog_t)
            dev._backlog_t = t_end


def evict_oldest(cache: dict[Any, Any]) -> None:
    """Forget the older half of ``cache`` (by insertion): a bounded cache that keeps what was
    added recently, instead of starting cold again (the entries are pure functions of their
    keys, so what is forgotten is recomputed to the same values)."""
    for key in list(islice(cache, len(cache) // 2)):
        cache.pop(key, None)


#: A queued request: ``(arrival_s, deadline_s, 1/SLA_s, size, level)``; level 0 is the most
#: important priority class.
Request = tuple[float, float, float, int, int]

#: ``slowdown(layout_id, jobs) -> factors``: per slot, the slowdown (>= 1) of the batch running
#: there given all of ``jobs`` (per slot ``(model, items)`` or ``None`` when idle).
Slowdown = Callable[[Hashable, tuple[tuple[int, int] | None, ...]], Sequence[float]]


@dataclass(frozen=True)
class SlotSpec:
    """A partition installed in a slot.

    Attributes:
        latency: ``latency[m][b - 1]``: seconds for a batch of ``b`` items of model ``m``.
        fits: ``fits[m]``: whether model ``m`` fits in the partition's memory.
        power_w: ``(idle_w, busy_w)`` of the partition.
    """

    latency: Sequence[Sequence[float]]
    fits: Sequence[bool]
    power_w: tuple[float, float] = (0.0, 0.0)


class SharedGpuSim(GpuServingSim):
    """Serving on a shared, re-partitionable GPU (see the module docstring).

    Args:
        latency: ``latency[p][m]``: batch latencies of model ``m`` on slot ``p`` (as the
            parent's); rows of empty slots are never read.
        fits: ``fits[p][m]``; all False for an empty slot.
        arrivals: The episode's requests.
        batcher: Batching and admission knobs.
        power_w: ``(idle_w, busy_w)`` per slot (``(0, 0)`` for an empty slot), or ``None``.
        chunk: Requests converted from the trace's arrays to Python lists at a time.
        slowdown: Interference among co-runners (None: none, every factor is 1). Its results
            are cached per ``(layout_id, jobs)`` in ``slowdown_cache``.
        slowdown_cache: A dict to cache slowdowns in (pass the same one to every episode):
            per ``(layout_id, jobs)`` the factors, and per ``(layout_id, jobs, job)`` those
            :meth:`predicted_slowdowns` returns. Bounded: past ``_CACHE_MAX`` entries its
            older half is forgotten (:func:`evict_oldest`). Simulators with the same slowdown
            function may share one.
        layout_id: Names the current assignment of partitions to slots for ``slowdown``.
        priorities: Serve by the requests' priority classes: True (the values found in the
            trace), the priority values to tell apart (larger is more important; others fall
            in with the next smaller one), or False (one class, FIFO by age).
        preempt: Kill a running batch when a more important request is queued behind it.
        active: Which slots hold a partition (default: all).

    Attributes:
        up_at: Per slot, the time from which it may start batches (``inf`` while draining for
            a reconfiguration or when empty).
        reconfigurations: Reconfigurations started.
        downtime_s: Sum over reconfigurations of the time from their start to the changed
            slots coming back up.
        preemptions: Batches killed by more important requests.
    """

    def __init__(
        self,
        latency: list[list[list[float]]],
        fits: list[list[bool]],
        arrivals: Arrivals,
        batcher: BatcherConfig,
        power_w: list[tuple[float, float]] | None = None,
        chunk: int = 8192,
        *,
        slowdown: Slowdown | None = None,
        slowdown_cache: dict[Any, tuple[float, ...]] | None = None,
        layout_id: Hashable = 0,
        priorities: bool | Sequence[int] = False,
        preempt: bool = False,
        active: Sequence[bool] | None = None,
    ) -> None:
        super().__init__(latency, fits, arrivals, batcher, power_w, chunk)
        P = self.n_partitions
        self.latency = [list(row) for row in latency]
        self.power_w = None if power_w is None else list(power_w)
        self.fits = [list(row) for row in fits]
        if priorities is True:
            values = sorted({int(v) for v in np.unique(arrivals.priority)}, reverse=True) or [0]
        elif priorities is False:
            values = [0]
        else:
            values = sorted({int(v) for v in priorities}, reverse=True) or [0]
        #: Priority values of the levels, most important first.
        self.level_values: tuple[int, ...] = tuple(values)
        if len(values) > 1:
            prio = np.asarray(arrivals.priority, dtype=np.int64)
            # Level = how many known values are larger (clamped): unknown values fall in
            # with the next less important known one.
            known = np.array(values[::-1], dtype=np.int64)  # ascending
            above = len(known) - np.searchsorted(known, prio, side="right")
            self._level: np.ndarray | None = np.minimum(above, len(values) - 1).astype(np.int8)
        else:
            self._level = None
        L = self.n_levels = len(self.level_values)
        self.active = [True] * P if active is None else [bool(a) for a in active]
        self._slowdown = slowdown
        # A slowdown callable may predict a new job's factor on every slot in one call
        # (CoRunnerSlowdowns.predicted); otherwise it is asked once per slot.
        self._predict: Callable[..., list[float]] | None = getattr(slowdown, "predicted", None)
        self._fcache = {} if slowdown_cache is None else slowdown_cache
        self.layout_id: Hashable = layout_id
        self._priorities = L > 1
        self._preempt = bool(preempt)
        self._idle_total = sum(i for i, _ in power_w) if power_w is not None else 0.0
        self._jk = max(len(r) for row in self.latency for r in row) + 1
        self._lat_cache: tuple[list[Any], np.ndarray] | None = None
        # The batch sizes a job can have (see _kernel_tables; found once, when first needed).
        self._batch_sizes: tuple[int, ...] | None = None
        self._init_shared_state(False)

    def _init_shared_state(self, reuse: bool) -> None:
        """The state at time 0 of what this class adds (as ``_init_serving_state``)."""
        P, M, L = self.n_partitions, self.n_models, self.n_levels
        self._last_key: tuple[int, ...] | None = None
        self._drain_left = 0
        self._pending_downtime = 0.0
        self._reconfig_start = 0.0
        self.reconfig_until = 0.0
        self.reconfigurations = 0
        self.downtime_s = 0.0
        self.preemptions = 0
        self._idle_t = 0.0
        self._idle_energy = 0.0
        if not reuse:
            self._clev: list[int] = []
            #: Per (slot, model, level): the queued requests (:data:`Request`), oldest first.
            self.lqueues: list[list[list[deque[Request]]]] = [
                [[deque() for _ in range(L)] for _ in range(M)] for _ in range(P)]
            #: Estimated seconds of queued work per (slot, level), as ``queued_work_s``.
            self.queued_work_level = [[0.0] * L for _ in range(P)]
            self._run_level = [L] * P
            self.up_at = [0.0 if a else _INF for a in self.active]
            self._done: list[Event | None] = [None] * P
            self._factor = [1.0] * P
            self._rem = [0.0] * P  # solo seconds of work left in the running batch at _rt
            self._rt = [0.0] * P
            self._job: list[tuple[int, int] | None] = [None] * P
            self._jobcode = [-1] * P
            #: The predictions of predicted for the running set ``_last_key``, by job code (every
            #: change of the running set is followed by _reshape, which starts a new dict).
            self._pred_now: dict[int, Sequence[float]] = {}
            self._retiring = [False] * P
            self._changed: list[int] = []
            return
        self._clev = []
        if any(any(map(any, row)) for row in self.lqueues):
            for row in self.lqueues:
                for levels in row:
                    for q in levels:
                        q.clear()
        for w in self.queued_work_level:
            w[:] = [0.0] * L
        self._run_level[:] = [L] * P
        self.up_at[:] = [0.0 if a else _INF for a in self.active]
        self._done[:] = [None] * P
        self._factor[:] = [1.0] * P
        self._rem[:] = [0.0] * P
        self._rt[:] = [0.0] * P
        self._job[:] = [None] * P
        self._jobcode[:] = [-1] * P
        self._pred_now = {}
        self._retiring[:] = [False] * P
        self._changed = []

    def restart(self, latency: LatencyHistogram | None = None) -> None:
        """Back to time 0 on the same trace: the state of a new simulator built with the same
        arguments (its slowdown cache kept), for less than building one. The constant tables
        stay, and the state's containers are emptied and refilled rather than allocated
        again. ``latency``: the histogram the counters record into (default: a new one). Not
        after :meth:`reconfigure` (it changed the tables): ValueError."""
        if self.reconfigurations:
            raise ValueError("restart: this simulator was reconfigured; build a new one")
        self._init_serving_state(True, latency)
        self._init_shared_state(True)

    # ------------------------------------------------------------------ decisions
    @property
    def reconfiguring(self) -> bool:
        """A reconfiguration is draining or its slots are not up yet."""
        return bool(self._changed) or self.events.now < self.reconfig_until

    def pending_query(self) -> tuple[int, float, int]:
        """See :meth:`GpuServingSim.pending_query` (with the request's priority level)."""
        j = self._pj
        return self._cm[j], self._cdead[j], self._clev[j] if self._priorities else 0

    def pending_level(self) -> int:
        """Priority level of the pending request (0 = most important)."""
        assert self.pending is not None
        return self._clev[self._pj] if self._priorities else 0

    def predicted_slowdowns(self, m: int, items: int = 1) -> list[float]:
        """Per slot, the slowdown a batch of ``items`` of model ``m`` would see there if it
        started now, given what runs on the other slots (1 without interference)."""
        if self._slowdown is None:
            return [1.0] * self.n_partitions
        return list(self.predicted(m, items))

    @property
    def interferes(self) -> bool:
        """Whether co-runners slow each other down (a slowdown function is set)."""
        return self._slowdown is not None

    def predicted(self, m: int, items: int = 1) -> Sequence[float]:
        """:meth:`predicted_slowdowns`, not copied (cached: read only); needs
        :attr:`interferes`."""
        fn = self._slowdown
        assert fn is not None
        code = m * self._jk + items
        hit = self._pred_now.get(code)
        if hit is not None:
            return hit
        cache, lid = self._fcache, self.layout_id
        # The running set is fixed between two batch starts/stops: one lookup for all slots.
        key = tuple(self._jobcode)
        whole = (lid, key, code)
        hit = cache.get(whole)
        if hit is not None:
            self._pred_now[code] = hit
            return hit
        if len(cache) > _CACHE_MAX:
            evict_oldest(cache)
        predict = self._predict
        if predict is not None:
            out = predict(lid, tuple(self._job), (m, items), self.active)
        else:
            out = []
            for p in range(self.n_partitions):
                if not self.active[p]:
                    out.append(1.0)
                    continue
                kp = (*key[:p], code, *key[p + 1:])
                f = cache.get((lid, kp))
                if f is None:
                    jobs = list(self._job)
                    jobs[p] = (m, items)
                    f = cache[(lid, kp)] = tuple(float(x) for x in fn(lid, tuple(jobs)))
                out.append(f[p])
        hit = cache[whole] = self._pred_now[code] = tuple(out)
        return hit

    def expected_finish_s(self, p: int, m: int) -> float:
        """Rough time until a new request of model ``m`` would finish on ``p`` (its running
        batch, its queue, its downtime, and a batch of one, all without interference)."""
        now = self.events.now
        wait = self.busy_until[p] - now if self.busy[p] else 0.0
        down = self.up_at[p] - now
        if down > wait:
            wait = down
        return wait + self.queued_work_s[p] + self.solo_s[p][m]

    def finish_times_s(self, m: int, now: float, slowdowns: Sequence[float] | None = None,
                       slots: Sequence[int] | None = None) -> list[float]:
        """Per slot (or per slot of ``slots``, in that order), :meth:`expected_finish_s` for
        model ``m`` at ``now``, the batch of one and the queued work slowed down by
        ``slowdowns`` (per slot) when given: the finish time the placement rules of
        ``Repartition`` compare (``wait + (work + solo) x slowdown``)."""
        until, busy, up, work, solo = (self.busy_until, self.busy, self.up_at,
                                       self.queued_work_s, self.solo_s)
        out: list[float] = []
        append = out.append
        for p in range(self.n_partitions) if slots is None else slots:
            wait = until[p] - now if busy[p] else 0.0
            d = up[p] - now
            if d > wait:
                wait = d
            own = work[p] + solo[p][m]
            append(wait + (own * slowdowns[p] if slowdowns is not None else own))
        return out

    def _queue_pending(self, p: int, m: int, j: int) -> None:
        lev = self._clev[j] if self._priorities else 0
        self._admit(p, m, (self._ct[j], self._cdead[j], self._cinv[j], self._csize[j], lev))

    def requeue(self, p: int, m: int, req: Request) -> None:
        """Queue a request handed back by :meth:`reconfigure` on slot ``p``.

        Raises:
            ValueError: the model does not fit on ``p``.
        """
        if not 0 <= p < self.n_partitions or not self.fits[p][m]:
            raise ValueError(f"partition {p} cannot serve model {m}")
        self._admit(p, m, req)

    def arrive(self, p: int, m: int, req: Request) -> None:
        """A request that arrives from outside the trace (routed here by a cluster), queued on
        slot ``p`` as :meth:`place` queues a trace request: it counts as arrived, its
        ``1/SLA`` joins the backlog rate, and it is queued (or dropped: queue full) by the
        same bookkeeping. Call it at the request's delivery time (advance the device there
        first, e.g. with :meth:`run_until`); ``req[0]`` is its arrival at the cluster, so its
        latency counts the way there. A device built with an empty trace and driven only
        through this method and :meth:`run_until` is a passive device a router drives.

        Raises:
            ValueError: ``p`` is out of range or the model does not fit on it.
        """
        if not 0 <= p < self.n_partitions or not self.fits[p][m]:
            raise ValueError(f"partition {p} cannot serve model {m}")
        now = self.events.now
        self.backlog += self._backlog_rate * (now - self._backlog_t)
        self._backlog_t = now
        self.counters.arrived += 1
        self._backlog_rate += req[2]
        self._admit(p, m, req)

    def deliver(self, t: float, p: int, m: int, req: Request) -> None:
        """:meth:`run_passive` to ``t``, then :meth:`arrive` ``(p, m, req)``: how a cluster
        hands over each delivery."""
        self.run_passive(t)
        self.arrive(p, m, req)

    def drop(self, req: Request) -> None:
        """Reject a request handed back by :meth:`reconfigure`."""
        self.counters.dropped_rejected += 1
        self._backlog_rate -= req[2]

    def run_until(self, decide: Callable[[float, int, float], int], t_end: float) -> int:
        """Decide the requests arriving up to ``t_end`` with ``decide`` and run to ``t_end``.

        Afterwards :attr:`now` is ``t_end`` and no request is pending. Once the trace is
        exhausted, call :meth:`advance` to drain.

        Returns:
            The number of decisions made.
        """
        if self.pending is not None:
            raise RuntimeError("the pending request has not been decided")
        return self._loop(decide, t_end)

    def run_passive(self, t_end: float) -> None:
        """:meth:`run_until` ``t_end`` for a passive device (no trace of its own, nothing
        pending: a cluster's device): with no event due by ``t_end`` only its clock and backlog
        move to ``t_end``, with the same arithmetic as :meth:`run_until` (which this skips:
        its set-up costs more than that); else :meth:`run_until`."""
        heap = self.events.heap
        if heap and heap[0][0] <= t_end:
            self._loop(None, t_end)
            return
        self.events.now = t_end
        self.backlog += self._backlog_rate * (t_end - self._backlog_t)
        self._backlog_t = t_end

    @property
    def compiled_ok(self) -> bool:
        """Whether :meth:`run_until_compiled` can run this simulator: one priority class, no
        preemption, and no interference or a slowdown function that gives the kernel its
        tables (``kernel_tables``, as :class:`~envs.sim.device.tables.CoRunnerSlowdowns` does
        where the kernel computes the same floats); numba is not checked: see
        :data:`envs.sim.device.compiled_shared.AVAILABLE`."""
        return not self._priorities and not self._preempt and (
            self._slowdown is None or self._kernel_tables() is not None)

    def _kernel_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The slowdown function's tables for the kernel on the current layout (None: it has
        none; see :attr:`compiled_ok`)."""
        tables = getattr(self._slowdown, "kernel_tables", None)
        if tables is None:
            return None
        items = self._batch_sizes
        if items is None:
            # A batch holds up to max_batch items, or one request of more (its size).
            B = self._max_batch
            big = np.unique(self._size[self._size > B]).tolist()
            items = self._batch_sizes = (*range(1, B + 1), *(int(n) for n in big))
        out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = tables(
            self.layout_id, self.n_models, items)
        return out

    def run_until_compiled(self, t_end: float, rule: int, sms: Sequence[float] | None = None,
                           cursor: int = 0, predict: bool = False) -> tuple[list[int], int]:
        """:meth:`run_until` ``t_end`` with a routing rule of
        :mod:`envs.sim.device.compiled_shared` deciding, as one compiled loop: the simulator is
        left exactly as :meth:`run_until` leaves it with that rule's router (the Python path
        stays the reference; both can be mixed within an episode).

        Args:
            t_end: Run to this time (``inf``: to the end of the trace and the drain).
            rule: ``ROUTE_EARLIEST`` (``Repartition``'s ``shortest_finish``),
                ``ROUTE_LEAST_LOADED`` or ``ROUTE_ROUND_ROBIN``.
            sms: Per slot, the size least-loaded breaks ties with (its rule only).
            cursor: Round robin's cursor.
            predict: With ``ROUTE_EARLIEST`` and interference, slow each slot's finish time
                down by :meth:`predicted` (``Repartition``'s ``interference_aware``).

        Returns:
            ``(routed, cursor)``: requests routed per model, and round robin's cursor after.

        Raises:
            RuntimeError: a request is pending, or :attr:`compiled_ok` is False.
        """
        if self.pending is not None:
            raise RuntimeError("the pending request has not been decided")
        P, M = self.n_partitions, self.n_models
        shaped = self._slowdown is not None
        tabs = self._kernel_tables() if shaped else None
        if self._priorities or self._preempt or (shaped and tabs is None):
            raise RuntimeError("run_until_compiled needs one priority class, no preemption, "
                               "and no interference or a slowdown with kernel_tables")
        if tabs is None:
            dom = np.zeros(P, np.int64)
            compat = np.zeros((P, P), np.bool_)
            job_rows = np.zeros((1, 1, 1, cs.N_ROW))
            consts = np.zeros(cs.N_CONSTS)
        else:
            dom, compat, job_rows, consts = tabs
        cap, B = self._capacity, self._max_batch
        # The requests arriving by t_end, as _load_chunk converts them.
        nxt = self._next
        end = self._n if t_end == _INF else int(
            np.searchsorted(self._time_s, t_end, side="right"))
        end = max(end, nxt)
        t_arr = self._time_s[nxt:end]
        sla = self._sla_ms[nxt:end]
        dead = t_arr + sla * 1e-3
        inv = 1e3 / sla
        # The state, as arrays.
        lat = self._latency_array()
        fits = np.array(self.fits, dtype=np.bool_)
        item_cost = np.array(self._item_cost, dtype=np.float64)
        solo = np.array(self.solo_s, dtype=np.float64)
        has_power = self._energy_w is not None
        energy_w = np.array(self._energy_w if self._energy_w is not None else [0.0] * P,
                            dtype=np.float64)
        qa = np.zeros((P, M, cap))
        qd = np.zeros((P, M, cap))
        qi = np.zeros((P, M, cap))
        qs = np.zeros((P, M, cap), np.int64)
        qlen = np.zeros((P, M), np.int64)
        for p in range(P):
            for m in range(M):
                dq = self.lqueues[p][m][0]
                k = len(dq)
                if k:
                    if k > cap:
                        raise RuntimeError(f"queue ({p}, {m}) holds {k} requests, more than "
                                           f"queue_capacity {cap}")
                    rows = np.array([r[:4] for r in dq], dtype=np.float64)
                    qa[p, m, :k] = rows[:, 0]
                    qd[p, m, :k] = rows[:, 1]
                    qi[p, m, :k] = rows[:, 2]
                    qs[p, m, :k] = [r[3] for r in dq]
                    qlen[p, m] = k
        qhead = np.zeros((P, M), np.int64)
        width = max(B, max((len(b) for b in self._running), default=0))
        ra = np.zeros((P, width))
        rd = np.zeros((P, width))
        ri = np.zeros((P, width))
        rs = np.zeros((P, width), np.int64)
        rn = np.zeros(P, np.int64)
        ritems = np.zeros(P, np.int64)
        for p, batch in enumerate(self._running):
            k = len(batch)
            if k:
                rows = np.array([r[:3] for r in batch], dtype=np.float64)
                ra[p, :k] = rows[:, 0]
                rd[p, :k] = rows[:, 1]
                ri[p, :k] = rows[:, 2]
                rs[p, :k] = [r[3] for r in batch]
                rn[p] = k
            job = self._job[p]
            if job is not None:
                ritems[p] = job[1]
        ev_t = np.full((3, P), _INF)
        ev_seq = np.zeros((3, P), np.int64)
        for when, prio, seq, ev in self.events.heap:
            if ev.cancelled:
                continue
            k, p = ev.kind, ev.target
            if prio != 0 or k not in (BATCH_DONE, BATCH_TIMEOUT, SLOT_UP) or ev_t[k, p] != _INF:
                raise RuntimeError(f"run_until_compiled: event kind {k} on slot {p} is not "
                                   "one the compiled loop holds")
            ev_t[k, p] = when
            ev_seq[k, p] = seq
        c = self.counters
        ints = np.zeros(cs.N_INTS, np.int64)
        ints[cs.I_SEQ] = self.events._seq
        ints[cs.I_DRAIN_LEFT] = self._drain_left
        ints[cs.I_CURSOR] = cursor
        ints[cs.I_ARRIVED] = c.arrived
        ints[cs.I_COMPLETED] = c.completed
        ints[cs.I_GOOD] = c.good
        ints[cs.I_REJECTED] = c.dropped_rejected
        ints[cs.I_OVERFLOW] = c.dropped_overflow
        ints[cs.I_EXPIRED] = c.dropped_expired
        last = self._last_key
        ints[cs.I_LAST_KEY] = last is not None
        lastkey = np.array(last if last is not None else [-1] * P, np.int64)
        factor = np.array(self._factor, np.float64)
        jobcode = np.array(self._jobcode, np.int64)
        fl = np.zeros(cs.N_FLOATS)
        fl[cs.F_NOW] = self.events.now
        fl[cs.F_BACKLOG] = self.backlog
        fl[cs.F_RATE] = self._backlog_rate
        fl[cs.F_BACKLOG_T] = self._backlog_t
        fl[cs.F_ENERGY] = c.energy_j
        fl[cs.F_HIST_TOTAL] = c.latency.total_s
        fl[cs.F_PENDING_DOWNTIME] = self._pending_downtime
        fl[cs.F_RECONFIG_START] = self._reconfig_start
        fl[cs.F_RECONFIG_UNTIL] = self.reconfig_until
        fl[cs.F_DOWNTIME] = self.downtime_s
        queued = np.array(self.queued_items, np.int64)
        by_model = np.array(self.queued_by_model, np.int64)
        work = np.array(self.queued_work_s, np.float64)
        work_lev = np.array([w[0] for w in self.queued_work_level], np.float64)
        busy = np.array(self.busy, np.bool_)
        busy_until = np.array(self.busy_until, np.float64)
        run_model = np.array(self.running_model, np.int64)
        up_at = np.array(self.up_at, np.float64)
        retiring = np.array(self._retiring, np.bool_)
        active = np.array(self.active, np.bool_)
        changed = np.zeros(P, np.bool_)
        changed[self._changed] = True
        rem = np.array(self._rem, np.float64)
        rt = np.array(self._rt, np.float64)
        busy_s = np.array(c.busy_s, np.float64)
        hist = np.array(c.latency.counts, np.int64)
        counts = np.zeros(M, np.int64)
        cs.run_interval(
            t_arr, self._model[nxt:end], self._size[nxt:end], dead, inv, float(t_end), rule,
            lat, item_cost, solo, fits, energy_w, has_power,
            np.zeros(P) if sms is None else np.asarray(sms, dtype=np.float64),
            B, self._delay_s, cap, self._drop_expired,
            qa, qd, qi, qs, qhead, qlen, queued, by_model, work, work_lev,
            busy, busy_until, run_model, up_at, retiring, active, changed,
            ra, rd, ri, rs, rn, rem, rt, ritems,
            ev_t[BATCH_DONE], ev_seq[BATCH_DONE], ev_t[BATCH_TIMEOUT], ev_seq[BATCH_TIMEOUT],
            ev_t[SLOT_UP], ev_seq[SLOT_UP], ints, fl, busy_s, hist, counts,
            shaped, shaped and predict, dom, compat, job_rows, consts, factor, jobcode, lastkey,
            self._jk)
        if ints[cs.I_ERROR]:
            raise RuntimeError("run_until_compiled: a slot would have two pending SLOT_UP "
                               "events")
        # Back into the Python state, as run_until leaves it.
        for p in range(P):
            for m in range(M):
                dq = self.lqueues[p][m][0]
                dq.clear()
                k = int(qlen[p, m])
                if k:
                    idx = (qhead[p, m] + np.arange(k)) % cap
                    dq.extend(zip(qa[p, m, idx].tolist(), qd[p, m, idx].tolist(),
                                  qi[p, m, idx].tolist(), qs[p, m, idx].tolist(),
                                  [0] * k, strict=True))
        jk = self._jk
        heap: list[tuple[float, int, int, Event]] = []
        busy_l = busy.tolist()
        models = run_model.tolist()
        for p in range(P):
            if busy_l[p]:
                k = int(rn[p])
                self._running[p] = list(zip(ra[p, :k].tolist(), rd[p, :k].tolist(),
                                            ri[p, :k].tolist(), rs[p, :k].tolist(),
                                            [0] * k, strict=True))
                items = int(ritems[p])
                self._job[p] = (models[p], items)
                self._jobcode[p] = models[p] * jk + items
                self._run_level[p] = 0
            else:
                self._running[p] = []
                self._job[p] = None
                self._jobcode[p] = -1
                self._run_level[p] = self.n_levels
            for kind in (BATCH_DONE, BATCH_TIMEOUT, SLOT_UP):
                when = float(ev_t[kind, p])
                made: Event | None = None
                if when != _INF:
                    made = Event(when, kind, p)
                    heap.append((when, 0, int(ev_seq[kind, p]), made))
                if kind == BATCH_DONE:
                    self._done[p] = made
                elif kind == BATCH_TIMEOUT:
                    self._timeout[p] = made
        heap.sort()
        self.events.heap[:] = heap
        self.events._seq = int(ints[cs.I_SEQ])
        self.events.now = float(fl[cs.F_NOW])
        self.backlog = float(fl[cs.F_BACKLOG])
        self._backlog_rate = float(fl[cs.F_RATE])
        self._backlog_t = float(fl[cs.F_BACKLOG_T])
        self.reconfig_until = float(fl[cs.F_RECONFIG_UNTIL])
        self.downtime_s = float(fl[cs.F_DOWNTIME])
        self._drain_left = int(ints[cs.I_DRAIN_LEFT])
        self._changed = np.flatnonzero(changed).tolist()
        self.queued_items[:] = queued.tolist()
        for p, row in enumerate(by_model.tolist()):
            self.queued_by_model[p][:] = row
        self.queued_work_s[:] = work.tolist()
        for p, w in enumerate(work_lev.tolist()):
            self.queued_work_level[p][0] = w
        self.busy[:] = busy_l
        self.busy_until[:] = busy_until.tolist()
        self.running_model[:] = models
        self.up_at[:] = up_at.tolist()
        self._retiring[:] = retiring.tolist()
        self._rem[:] = rem.tolist()
        self._rt[:] = rt.tolist()
        self._factor[:] = factor.tolist()
        if ints[cs.I_LAST_KEY]:
            key = tuple(lastkey.tolist())
            if key != self._last_key:
                self._last_key = key
                self._pred_now = {}
        elif self._last_key is not None:
            self._last_key = None
            self._pred_now = {}
        c.arrived = int(ints[cs.I_ARRIVED])
        c.completed = int(ints[cs.I_COMPLETED])
        c.good = int(ints[cs.I_GOOD])
        c.dropped_rejected = int(ints[cs.I_REJECTED])
        c.dropped_overflow = int(ints[cs.I_OVERFLOW])
        c.dropped_expired = int(ints[cs.I_EXPIRED])
        c.energy_j = float(fl[cs.F_ENERGY])
        c.busy_s[:] = busy_s.tolist()
        h = c.latency
        h.counts[:] = hist.tolist()
        h.n = int(hist.sum())
        h.total_s = float(fl[cs.F_HIST_TOTAL])
        cum = np.concatenate(([0], np.cumsum(hist)))
        h.below = [int(cum[b]) for b in h.bins]
        self._next = end
        self._base = end
        self._clen = 0
        return counts.tolist(), int(ints[cs.I_CURSOR])

    def _latency_array(self) -> np.ndarray:
        """``latency`` as a ``(P, M, batch)`` array, rebuilt when a slot's rows change."""
        rows = self.latency
        cached = self._lat_cache
        if cached is not None and len(cached[0]) == len(rows) and all(
                a is b for a, b in zip(cached[0], rows, strict=True)):
            return cached[1]
        arr = np.array(rows, dtype=np.float64)
        if arr.ndim != 3:
            raise RuntimeError("run_until_compiled needs latency tables of one length")
        self._lat_cache = (list(rows), arr)
        return arr

    @property
    def trace_done(self) -> bool:
        """Every request of the trace has arrived."""
        return self.pending is None and self._next >= self._n

    # ------------------------------------------------------------------ re-partitioning
    def reconfigure(self, changes: Mapping[int, SlotSpec | None], downtime_s: float, *,
                    drain: bool = True,
                    layout_id: Hashable | None = None) -> list[tuple[int, Request]]:
        """Start changing the partitions of some slots.

        Args:
            changes: Per changed slot, its new partition (None: the slot becomes empty).
                Slots not listed keep their partition, queue and running batch.
            downtime_s: How long the changed slots stay down once drained.
            drain: Let the batches running on changed slots finish first; ``False`` kills
                them at once (their requests are handed back).
            layout_id: The new ``layout_id`` for the slowdown function.

        Returns:
            ``(model, request)`` for every request that was queued (or, without ``drain``,
            running) on a changed slot: the caller places each again with :meth:`requeue` or
            rejects it with :meth:`drop`. They stay in the system meanwhile.

        Raises:
            RuntimeError: a reconfiguration is still under way.
        """
        if self.reconfiguring:
            raise RuntimeError("a reconfiguration is still under way")
        now = self.events.now
        out: list[tuple[int, Request]] = []
        M, L = self.n_models, self.n_levels
        B = self._max_batch
        self._accrue_idle(now)
        for p, spec in sorted(changes.items()):
            for m in range(M):
                for dq in self.lqueues[p][m]:
                    out.extend((m, r) for r in dq)
                    dq.clear()
            self.queued_items[p] = 0
            self.queued_by_model[p] = [0] * M
            self.queued_work_s[p] = 0.0
            self.queued_work_level[p] = [0.0] * L
            t = self._timeout[p]
            if t is not None:
                t.cancelled = True
                self._timeout[p] = None
            self.up_at[p] = _INF
            if self.busy[p]:
                if drain:
                    self._retiring[p] = True
                    self._drain_left += 1
                else:
                    m = self.running_model[p]
                    out.extend((m, r) for r in self._kill(p, now))
            if spec is None:
                self.active[p] = False
                self.fits[p] = [False] * M
                self._item_cost[p] = [_INF] * M
                self.solo_s[p] = [_INF] * M
                if self.power_w is not None:
                    self.power_w[p] = (0.0, 0.0)
                if self._energy_w is not None:
                    self._energy_w[p] = 0.0
            else:
                self.active[p] = True
                lat = [list(r) for r in spec.latency]
                self.latency[p] = lat
                self.fits[p] = [bool(f) for f in spec.fits]
                self._item_cost[p] = [lat[m][B - 1] / B for m in range(M)]
                self.solo_s[p] = [lat[m][0] for m in range(M)]
                if self.power_w is not None:
                    self.power_w[p] = spec.power_w
                if self._energy_w is not None:
                    self._energy_w[p] = spec.power_w[1] - spec.power_w[0]
        if layout_id is not None:
            self.layout_id = layout_id
            self._last_key = None
        self._pred_now = {}  # the active slots may have changed
        self._idle_total = sum(i for i, _ in self.power_w) if self.power_w is not None else 0.0
        self.reconfigurations += 1
        self._reconfig_start = now
        self._changed = sorted(changes)
        self._pending_downtime = float(downtime_s)
        self._reshape(now)
        if self._drain_left == 0:
            self._bring_up(now)
        return out

    def _bring_up(self, now: float) -> None:
        """The changed slots are drained: they come back after the downtime."""
        t_up = now + self._pending_downtime
        for p in self._changed:
            self._retiring[p] = False
            if self.active[p]:
                self.up_at[p] = t_up
                self.events.schedule(t_up, SLOT_UP, p)
        self.reconfig_until = t_up
        self.downtime_s += t_up - self._reconfig_start
        self._changed = []

    def _accrue_idle(self, now: float) -> None:
        self._idle_energy += self._idle_total * (now - self._idle_t)
        self._idle_t = now

    def finalize_energy(self) -> None:
        """Add idle power over the elapsed time (call once at the end of an episode)."""
        if self.power_w is not None:
            now = self.events.now
            if self.reconfigurations == 0:  # the parent's arithmetic, for equal results
                self.counters.energy_j += self._idle_total * now
            else:
                self._accrue_idle(now)
                self.counters.energy_j += self._idle_energy

    # ------------------------------------------------------------------ internals
    def _load_chunk(self, start: int) -> None:
        super()._load_chunk(start)
        if self._level is not None:
            self._clev = self._level[start:start + self._clen].tolist()

    def _admit(self, p: int, m: int, req: Request) -> None:
        """Queue ``req`` on ``p`` (or drop it: queue full) and start a batch if one is due."""
        size = req[3]
        queued = self.queued_items[p] + size
        if queued > self._capacity:
            self.counters.dropped_overflow += 1
            self._backlog_rate -= req[2]
            return
        lev = req[4]
        self.lqueues[p][m][lev].append(req)
        self.queued_items[p] = queued
        by_model = self.queued_by_model[p]
        by_model[m] += size
        w = size * self._item_cost[p][m]
        self.queued_work_s[p] += w
        self.queued_work_level[p][lev] += w
        if self.busy[p]:
            if self._preempt and lev < self._run_level[p] and not self._retiring[p]:
                self.preemptions += 1
                self._requeue_front(p, self.running_model[p], self._kill(p, self.events.now))
                self._try_dispatch(p)
                self._reshape(self.events.now)
            return
        if self._priorities:
            t = self._timeout[p]
            if t is not None:
                t.cancelled = True
                self._timeout[p] = None
            self._try_dispatch(p)
        elif self._timeout[p] is None or by_model[m] >= self._max_batch:
            self._try_dispatch(p)
        else:
            return
        # Only a batch started on p changes the running set; else there is nothing to
        # reschedule (the running set is the one _reshape saw last, or none ever ran).
        if self._slowdown is not None and self.busy[p]:
            self._reshape(self.events.now)

    def _requeue_front(self, p: int, m: int, reqs: list[Request]) -> None:
        """Put a killed batch's requests back at the front of their queues (in order)."""
        qs = self.lqueues[p][m]
        cost = self._item_cost[p][m]
        for r in reversed(reqs):
            qs[r[4]].appendleft(r)
            self.queued_items[p] += r[3]
            self.queued_by_model[p][m] += r[3]
            self.queued_work_s[p] += r[3] * cost
            self.queued_work_level[p][r[4]] += r[3] * cost

    def _kill(self, p: int, now: float) -> list[Request]:
        """Stop the batch running on ``p``; returns its requests (still in the system)."""
        ev = self._done[p]
        if ev is not None:
            ev.cancelled = True
        self._done[p] = None
        f = self._factor[p]
        rem = self._rem[p] - (now - self._rt[p]) / f
        if rem < 0.0:
            rem = 0.0
        c = self.counters
        c.busy_s[p] -= self.busy_until[p] - now
        if self._energy_w is not None:
            c.energy_j -= self._energy_w[p] * rem
        reqs = self._running[p]
        self._running[p] = []
        self.busy[p] = False
        self.busy_until[p] = now
        self.running_model[p] = -1
        self._run_level[p] = self.n_levels
        self._job[p] = None
        self._jobcode[p] = -1
        return reqs

    def _reshape(self, now: float) -> None:
        """Recompute slowdowns after the set of running batches changed; reschedule ends."""
        fn = self._slowdown
        if fn is None:
            return
        key = tuple(self._jobcode)
        if key == self._last_key:
            return
        self._last_key = key
        self._pred_now = {}
        ck = (self.layout_id, key)
        f = self._fcache.get(ck)
        if f is None:
            if len(self._fcache) > _CACHE_MAX:
                evict_oldest(self._fcache)
            if self._predict is not None:  # a CoRunnerSlowdowns: a list of floats
                f = self._fcache[ck] = tuple(fn(self.layout_id, tuple(self._job)))
            else:
                f = self._fcache[ck] = tuple(float(x) for x in fn(self.layout_id,
                                                                  tuple(self._job)))
        busy, factor = self.busy, self._factor
        rems, rts, done, until = self._rem, self._rt, self._done, self.busy_until
        busy_s = self.counters.busy_s
        schedule = self.events.schedule
        for q, b in enumerate(busy):
            if not b:
                continue
            new = f[q]
            old = factor[q]
            if new == old:
                continue
            rem = rems[q] - (now - rts[q]) / old
            if rem < 0.0:
                rem = 0.0
            rems[q] = rem
            rts[q] = now
            factor[q] = new
            end = now + rem * new
            ev = done[q]
            if ev is not None:
                ev.cancelled = True
            done[q] = schedule(end, BATCH_DONE, q)
            busy_s[q] += end - until[q]
            until[q] = end

    def _loop(self, decide: Callable[[float, int, float], int] | None,
              until: float = _INF) -> int:
        """The event loop behind :meth:`advance` (``decide=None``: run to the next arrival and
        return), :meth:`run` and :meth:`run_until` (decide every request up to ``until``).

        Per-request and per-event work is inlined (this loop is where the simulator spends
        its time): placing without priorities or preemption (else :meth:`_admit`) and a
        batch's completion."""
        P, fits = self.n_partitions, self.fits
        events, c = self.events, self.counters
        heap = events.heap
        heappop = heapq.heappop
        dispatch, reshape, admit = self._try_dispatch, self._reshape, self._admit
        complete = self._complete
        timeouts = self._timeout
        prio = self._priorities
        shaped = self._slowdown is not None
        queued = self.queued_items
        busy, running_model, running = self.busy, self.running_model, self._running
        run_level, done, job, jobcode = self._run_level, self._done, self._job, self._jobcode
        retiring = self._retiring
        n = self._n
        nxt = self._next
        # The trace's current chunk (reloaded below when the next request is past it).
        ct, cm, cdead, cinv, csize, clev = (self._ct, self._cm, self._cdead, self._cinv,
                                            self._csize, self._clev)
        steps = 0
        while True:
            if decide is not None and self.pending is not None:
                j = self._pj
                m = cm[j]
                a = decide(ct[j], m, cdead[j])
                if a == P:
                    self.pending = None
                    c.dropped_rejected += 1
                    self._backlog_rate -= cinv[j]
                elif 0 <= a < P and fits[a][m]:  # as place(a)
                    self.pending = None
                    admit(a, m, (ct[j], cdead[j], cinv[j], csize[j], clev[j] if prio else 0))
                else:
                    raise ValueError(f"partition {a} cannot serve model {m}")
                steps += 1
            if nxt < n:
                j = nxt - self._base
                if j >= self._clen:
                    self._load_chunk(nxt)
                    j = 0
                    ct, cm, cdead, cinv, csize, clev = (self._ct, self._cm, self._cdead,
                                                        self._cinv, self._csize, self._clev)
                horizon = ct[j]
            else:
                horizon = _INF
            stop = horizon > until
            h = until if stop else horizon
            while heap and heap[0][0] <= h:
                now, _, _, ev = heappop(heap)
                if ev.cancelled:
                    continue
                events.now = now
                self.backlog += self._backlog_rate * (now - self._backlog_t)
                self._backlog_t = now
                p = ev.target
                kind = ev.kind
                if kind == BATCH_DONE:
                    complete(now, running[p])
                    running[p] = []
                    busy[p] = False
                    running_model[p] = -1
                    run_level[p] = self.n_levels
                    done[p] = None
                    job[p] = None
                    jobcode[p] = -1
                    if retiring[p]:
                        retiring[p] = False
                        self._drain_left -= 1
                        if self._drain_left == 0:
                            self._bring_up(now)
                    elif queued[p]:
                        dispatch(p)
                    if shaped:
                        reshape(now)
                elif kind == BATCH_TIMEOUT:
                    timeouts[p] = None
                    dispatch(p, True)
                    reshape(now)
                else:  # SLOT_UP
                    if self.queued_items[p] and not self.busy[p]:
                        dispatch(p)
                        reshape(now)
            if stop:
                events.now = until
                self.backlog += self._backlog_rate * (until - self._backlog_t)
                self._backlog_t = until
                return steps
            if nxt >= n:
                return steps
            events.now = horizon
            self.backlog += self._backlog_rate * (horizon - self._backlog_t)
            self._backlog_t = horizon
            self._backlog_rate += cinv[j]
            self.pending = nxt
            self._pj = j
            nxt += 1
            self._next = nxt
            c.arrived += 1
            if decide is None:
                return steps

    def _try_dispatch(self, p: int, force: bool = False) -> None:
        """Start a batch on idle slot ``p`` if one is due (or ``force``: the timeout)."""
        queued = self.queued_items
        if self.busy[p] or queued[p] == 0:
            return
        events = self.events
        now = events.now
        if self.up_at[p] > now or self._retiring[p]:
            return
        queues = self.lqueues[p]
        m = -1
        oldest = _INF
        if self._priorities:
            # Per model, its most important queued request (the head of its first non-empty
            # level); the model whose one is of a more important level wins, then the older.
            best = self.n_levels
            for k, qs in enumerate(queues):
                lev = 0
                for q in qs:
                    if q:
                        break
                    lev += 1
                else:  # nothing queued for this model
                    continue
                if lev < best:
                    best, oldest, m = lev, q[0][0], k
                elif lev == best:
                    t0 = q[0][0]
                    if t0 < oldest:
                        oldest, m = t0, k
        else:
            for k, qs in enumerate(queues):
                q = qs[0]
                if q:
                    t0 = q[0][0]
                    if t0 < oldest:
                        oldest = t0
                        m = k
        if not self._due(p, m, oldest, now, force):
            return
        batch: list[Request] = []
        items = 0
        solo_finish = now + self.solo_s[p][m]
        drop = self._drop_expired
        rate = self._backlog_rate
        cost = self._item_cost[p][m]
        level_work = self.queued_work_level[p]
        run_level = self.n_levels
        removed = expired = 0
        # From the most important level down, as far as the batch has room.
        for lev, q in enumerate(queues[m]):
            before = items
            items, took, dropped, rate = take(q, batch, items, self._max_batch, solo_finish,
                                              drop, rate)
            if took:
                removed += took
                expired += dropped
                level_work[lev] -= took * cost
            if items > before and lev < run_level:
                run_level = lev
            if q:  # full
                break
        self._backlog_rate = rate
        self._dequeued(p, m, removed, expired)
        if not self.queued_items[p]:
            for lev in range(self.n_levels):
                level_work[lev] = 0.0
        if not batch:  # everything was expired; look at the other models
            self._try_dispatch(p, force)
            return
        self._run_level[p] = run_level
        self._done[p], dur = self._start_batch(p, m, batch, items, now)
        self._factor[p] = 1.0
        # The new batch runs unslowed until _reshape gives it its factor: that must happen
        # even when the running set's key equals the last one (the same model and size
        # restarted on p), so the key _reshape compares with is forgotten here.
        self._last_key = None
        self._rem[p] = dur
        self._rt[p] = now
        self._job[p] = (m, items)
        self._jobcode[p] = m * self._jk + items
