"""Many models on one partitioned GPU (the survey's MISD paradigm): the serving simulator.

Requests arrive from a trace; at each arrival the simulator stops and asks where the request
goes (a partition, or reject). Every partition runs a Triton-style dynamic batcher: it serves the
model of its oldest queued request, taking up to ``max_batch`` items of that model, and an idle
partition waits at most ``max_queue_delay_s`` for a batch to fill. Batch latency comes from a
precomputed table (hardware model) per (partition, model, batch size).

Two ways to drive it, one event loop (:meth:`GpuServingSim._loop`) behind both: step by step
(``advance``/``place``/``reject``, what the Gymnasium env does) or a whole episode with a
decision function (:meth:`GpuServingSim.run`, the fast path for heuristics). Speed: per-request
state is a small tuple in a deque, events are ``(time, priority, seq, Event)`` tuples, metrics
are plain counters and a fixed-size histogram; nothing allocates a dict per event.

Nothing here imports gymnasium or torch; :mod:`envs.partition` adapts it to Gymnasium.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.sim.core import Event, EventQueue
from envs.sim.device import compiled
from envs.sim.metrics import Counters, LatencyHistogram
from envs.sim.packing import pack, unpack
from traces.arrivals import Arrivals

BATCH_DONE = 0
BATCH_TIMEOUT = 1
_INF = float("inf")


def take(q: deque[Any], batch: list[Any], items: int, limit: int, solo_finish: float,
         drop: bool, rate: float) -> tuple[int, int, int, float]:
    """Move requests from the head of ``q`` into ``batch`` (the batcher's one filling rule).

    Takes requests in order while the batch holds at most ``limit`` items (a first request
    always fits); with ``drop``, a request whose deadline ``req[1]`` is before
    ``solo_finish`` (even a batch of one would be late) leaves the queue but not into the
    batch (expired). Requests are tuples ``(arrival_s, deadline_s, 1/SLA_s, size, ...)``.

    Returns:
        ``(items, removed, expired, rate)``: items in the batch now, items taken off the
        queue, requests expired, and the backlog rate ``rate`` less each expired request's
        ``1/SLA`` (subtracted one by one). ``q`` is left non-empty only when the batch is
        full.
    """
    removed = 0
    expired = 0
    popleft, append = q.popleft, batch.append
    while q:
        req = q[0]
        s = req[3]
        if batch and items + s > limit:
            break
        popleft()
        removed += s
        if drop and req[1] < solo_finish:
            expired += 1
            rate -= req[2]
            continue
        append(req)
        items += s
    return items, removed, expired, rate


@dataclass(frozen=True)
class BatcherConfig:
    """Dynamic batching and admission knobs (one set for every partition).

    Attributes:
        max_batch: Most items in one batch.
        max_queue_delay_s: Longest an idle partition waits for its batch to fill.
        queue_capacity: Most items queued on one partition; more are dropped (overflow).
        drop_expired: Drop a request at batch formation if even a batch of one would finish
            after its deadline (otherwise it is served late).
    """

    max_batch: int = 8
    max_queue_delay_s: float = 0.002
    queue_capacity: int = 64
    drop_expired: bool = True

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_s}")
        if self.queue_capacity < 1:
            raise ValueError(f"queue_capacity must be >= 1, got {self.queue_capacity}")


class GpuServingSim:
    """Event-driven serving of a request trace on a fixed set of partitions.

    Args:
        latency: ``latency[p][m]`` is a sequence of batch latencies in seconds for batch sizes
            ``1..len`` of model ``m`` on partition ``p`` (at least ``max_batch`` long).
        fits: ``fits[p][m]`` says whether model ``m`` fits in partition ``p``'s memory.
        arrivals: The episode's requests.
        batcher: Batching and admission knobs.
        power_w: ``(idle_w, busy_w)`` per partition for energy accounting, or ``None``.
        chunk: Requests converted from the trace's arrays to Python lists at a time.

    The decision loop::

        sim.advance()                 # run to the first arrival; sim.pending is its index
        while sim.pending is not None:
            sim.place(p)  or  sim.reject()
            sim.advance()             # run to the next arrival (drains after the last one)

    Memory and speed: the trace stays in its compact numpy arrays; the simulator reads it
    ``chunk`` requests at a time as Python lists (indexing lists of floats is much faster than
    indexing numpy arrays). A request placed on a partition becomes one small tuple
    ``(arrival_s, deadline_s, 1/SLA_s, size)`` in that partition's queue, freed when it
    finishes or is dropped. So apart from the trace itself, memory is bounded by the requests
    in the system and does not grow with the episode.
    """

    def __init__(
        self,
        latency: list[list[list[float]]],
        fits: list[list[bool]],
        arrivals: Arrivals,
        batcher: BatcherConfig,
        power_w: list[tuple[float, float]] | None = None,
        chunk: int = 8192,
    ) -> None:
        self.latency = latency
        self.fits = fits
        self.n_partitions = len(latency)
        self.n_models = len(latency[0])
        self.batcher = batcher
        self.power_w = power_w
        # Only the columns the simulation reads (other columns of the trace can be freed).
        self._time_s, self._model = arrivals.time_s, arrivals.model
        self._size, self._sla_ms = arrivals.size, arrivals.sla_ms
        self._chunk = max(int(chunk), 1)
        self._n = len(arrivals)
        P, M = self.n_partitions, self.n_models
        B = batcher.max_batch
        self._max_batch = B
        self._delay_s = batcher.max_queue_delay_s
        self._capacity = batcher.queue_capacity
        self._drop_expired = batcher.drop_expired
        self._item_cost = [[latency[p][m][B - 1] / B for m in range(M)] for p in range(P)]
        #: Batch-1 latency per (partition, model) in seconds.
        self.solo_s = [[latency[p][m][0] for m in range(M)] for p in range(P)]
        self._energy_w = [busy - idle for idle, busy in power_w] if power_w is not None else None
        self._init_serving_state(False)

    def _init_serving_state(self, reuse: bool, latency: LatencyHistogram | None = None) -> None:
        """The simulation's state at time 0 (no request seen). ``reuse``: the containers of
        the previous state are emptied and refilled instead of allocated again (fewer new
        objects for the cyclic collector; :meth:`SharedGpuSim.restart`)."""
        self._base = 0
        self._clen = 0
        self.backlog = 0.0
        self._backlog_rate = 0.0
        self._backlog_t = 0.0
        self._next = 0
        #: Index of the request awaiting a decision, or None when the trace is exhausted.
        self.pending: int | None = None
        self._pj = 0  # position of the pending request in the current chunk
        P, M = self.n_partitions, self.n_models
        if not reuse:
            # The current chunk of the trace as Python lists, from request index _base on.
            self._ct: list[float] = []
            self._cm: list[int] = []
            self._csize: list[int] = []
            self._cdead: list[float] = []
            self._cinv: list[float] = []
            self.events = EventQueue()
            self.counters = Counters(self.n_partitions)
            #: Per (partition, model): the queued requests as ``(arrival, deadline, 1/SLA, size)``.
            self.queues: list[list[deque[tuple[float, float, float, int]]]] = [
                [deque() for _ in range(M)] for _ in range(P)]
            #: Items queued per partition.
            self.queued_items = [0] * P
            #: Items queued per (partition, model).
            self.queued_by_model = [[0] * M for _ in range(P)]
            #: Estimated seconds of work queued (items x per-item cost at max batch); exactly 0.0
            #: whenever the partition's queue is empty.
            self.queued_work_s = [0.0] * P
            self.busy_until = [0.0] * P  # end of the running batch (<= now when idle)
            self.busy = [False] * P
            self.running_model = [-1] * P
            #: Per partition, the requests of its running batch (tuples as queued).
            self._running: list[list[Any]] = [[] for _ in range(P)]
            self._timeout: list[Event | None] = [None] * P
            return
        for chunk in (self._ct, self._cm, self._csize, self._cdead, self._cinv):
            chunk.clear()
        self.events.clear()
        self.counters.clear(latency)
        if any(map(any, self.queues)):
            for row in self.queues:
                for q in row:
                    q.clear()
        self.queued_items[:] = [0] * P
        for counts in self.queued_by_model:
            counts[:] = [0] * M
        self.queued_work_s[:] = [0.0] * P
        self.busy_until[:] = [0.0] * P
        self.busy[:] = [False] * P
        self.running_model[:] = [-1] * P
        self._running[:] = [[] for _ in range(P)]
        self._timeout[:] = [None] * P

    #: The trace columns, pickled compressed (model ids, sizes and SLAs repeat a few values).
    _PACKED = ("_time_s", "_model", "_size", "_sla_ms")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._PACKED:
            state[key] = pack(state[key])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: unpack(v) if k in self._PACKED else v
                              for k, v in state.items()})

    # ------------------------------------------------------------------ decisions
    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self.events.now

    def busy_ahead_s(self, now: float | None = None) -> float:
        """Busy time in ``counters.busy_s`` that lies after ``now`` (default: the clock): a
        batch's whole duration is counted when it starts, so this is what the running
        batches have left (subtracted where a utilization over the elapsed time is
        reported)."""
        if now is None:
            now = self.events.now
        ahead = 0.0
        for u, b in zip(self.busy_until, self.busy, strict=True):  # a plain loop: every step
            if b and u > now:
                ahead += u - now
        return ahead

    def summary(self) -> dict[str, float]:
        """``counters.summary`` at the current time, busy time clipped at the clock."""
        now = self.events.now
        ahead = 0.0
        for u, b in zip(self.busy_until, self.busy, strict=True):  # busy_ahead_s, inlined
            if b and u > now:
                ahead += u - now
        return self.counters.summary(now, ahead)

    def pending_model(self) -> int:
        """Model index of the pending request."""
        assert self.pending is not None
        return self._cm[self._pj]

    def pending_query(self) -> tuple[int, float, int]:
        """Model index, absolute deadline and priority level (0: most important) of the
        pending request, in one call (the adapters' per-step read)."""
        j = self._pj
        return self._cm[j], self._cdead[j], 0

    @property
    def all_arrived(self) -> bool:
        """Every request of the trace has arrived (the last may still be pending)."""
        return self._next >= self._n

    def pending_deadline(self) -> float:
        """Absolute deadline of the pending request."""
        assert self.pending is not None
        return self._cdead[self._pj]

    def expected_finish_s(self, p: int, m: int) -> float:
        """Rough time from now until a new request of model ``m`` would finish on ``p``."""
        wait = self.busy_until[p] - self.events.now if self.busy[p] else 0.0
        return wait + self.queued_work_s[p] + self.solo_s[p][m]

    def place(self, p: int) -> None:
        """Queue the pending request on partition ``p``.

        Raises:
            ValueError: ``p`` is out of range or the model does not fit on it.
        """
        if self.pending is None:
            raise RuntimeError("no pending request; call advance() first")
        j = self._pj
        m = self._cm[j]
        if not 0 <= p < self.n_partitions or not self.fits[p][m]:
            raise ValueError(f"partition {p} cannot serve model {m}")
        self.pending = None
        self._queue_pending(p, m, j)

    def _queue_pending(self, p: int, m: int, j: int) -> None:
        """Queue request ``j`` of the current chunk (model ``m``) on ``p``, or drop it (the
        queue is full), and start a batch if one is due: :meth:`place`'s bookkeeping, also
        the loop's."""
        size = self._csize[j]
        queued = self.queued_items[p] + size
        if queued > self._capacity:
            self.counters.dropped_overflow += 1
            self._backlog_rate -= self._cinv[j]
            return
        self.queues[p][m].append((self._ct[j], self._cdead[j], self._cinv[j], size))
        self.queued_items[p] = queued
        by_model = self.queued_by_model[p]
        by_model[m] += size
        self.queued_work_s[p] += size * self._item_cost[p][m]
        # Idle and waiting for the batch to fill (a timeout is pending): the oldest request
        # and its due time are unchanged, so only a full batch can start it now.
        if not self.busy[p] and (self._timeout[p] is None or by_model[m] >= self._max_batch):
            self._try_dispatch(p)

    def reject(self) -> None:
        """Drop the pending request by decision."""
        if self.pending is None:
            raise RuntimeError("no pending request; call advance() first")
        self.pending = None
        self.counters.dropped_rejected += 1
        self._backlog_rate -= self._cinv[self._pj]

    def advance(self) -> None:
        """Run events up to the next arrival and make it :attr:`pending`.

        After the last arrival has been decided, runs every remaining event (a drain: no
        decisions are left to make) and leaves :attr:`pending` as ``None``.
        """
        if self.pending is not None:
            raise RuntimeError("the pending request has not been decided")
        self._loop(None)

    def run(self, decide: Callable[[float, int, float], int]) -> int:
        """Decide every remaining request with ``decide`` and drain: the fast path.

        Equivalent to (the same code and arithmetic as) the decision loop::

            while sim.pending is not None:
                a = decide(sim.now, sim.pending_model(), sim.pending_deadline())
                sim.reject() if a == sim.n_partitions else sim.place(a)
                sim.advance()

        without a method call per request. ``decide(now, model, deadline)`` sees the
        simulator between two requests as a step-by-step caller would (it may read any public
        state: ``busy``, ``queued_items``, :attr:`counters`, ...).

        Args:
            decide: Returns the partition for the pending request, or ``n_partitions`` to
                reject it.

        Returns:
            The number of decisions made.

        Raises:
            ValueError: ``decide`` returned an out-of-range partition or one the model does
                not fit on (the request stays pending).
        """
        if self.pending is None:
            self.advance()
        return self._loop(decide) if self.pending is not None else 0

    @property
    def trace_nbytes(self) -> int:
        """Bytes of the trace arrays the simulator holds (the part of memory that grows with
        the episode: everything else is bounded by the requests in the system)."""
        return sum(a.nbytes for a in (self._time_s, self._model, self._size, self._sla_ms))

    @property
    def trace_sizes(self) -> np.ndarray:
        """Items of every request of the episode's trace (read only)."""
        return self._size

    @property
    def trace_times_s(self) -> np.ndarray:
        """Arrival time of every request of the episode's trace (read only)."""
        return self._time_s

    @property
    def done(self) -> bool:
        """True once every request has been decided and the system has drained."""
        return self.pending is None and self._next >= self._n and len(self.events) == 0

    # ------------------------------------------------------------------ internals
    def _loop(self, decide: Callable[[float, int, float], int] | None) -> int:
        """The event loop behind :meth:`advance` (``decide=None``) and :meth:`run`.

        With ``decide``, first decides the pending request, then runs to the next arrival, and
        repeats until the trace is exhausted and drained. Without, runs to the next arrival
        and returns. Per-request and per-event work is inlined here (this loop is where the
        simulator spends its time); a request is queued by :meth:`_queue_pending`, a batch
        starts in :meth:`_try_dispatch` and ends in :meth:`_complete`.
        """
        P, fits = self.n_partitions, self.fits
        queued, busy, running, timeouts = self.queued_items, self.busy, self._running, self._timeout
        events, c = self.events, self.counters
        heap = events.heap
        heappop = heapq.heappop
        dispatch, complete = self._try_dispatch, self._complete
        queue_pending = self._queue_pending
        n = self._n
        j, nxt = self._pj, self._next
        ct, cm, cdead, cinv = self._ct, self._cm, self._cdead, self._cinv
        clen = self._clen
        steps = 0
        while True:
            if decide is not None:
                t = ct[j]
                m = cm[j]
                a = decide(t, m, cdead[j])
                if a == P:
                    self.pending = None
                    c.dropped_rejected += 1
                    self._backlog_rate -= cinv[j]
                elif 0 <= a < P and fits[a][m]:  # as place(a)
                    self.pending = None
                    queue_pending(a, m, j)
                else:
                    raise ValueError(f"partition {a} cannot serve model {m}")
                steps += 1
            # Run the events up to the next arrival (or all of them: the drain).
            if nxt < n:
                j = nxt - self._base
                if j >= clen:
                    self._load_chunk(nxt)
                    j = 0
                    ct, cm, cdead, cinv = self._ct, self._cm, self._cdead, self._cinv
                    clen = self._clen
                horizon = ct[j]
            else:
                horizon = _INF
            while heap and heap[0][0] <= horizon:
                now, _, _, ev = heappop(heap)
                if ev.cancelled:
                    continue
                events.now = now
                self.backlog += self._backlog_rate * (now - self._backlog_t)
                self._backlog_t = now
                p = ev.target
                if ev.kind == BATCH_DONE:
                    complete(now, running[p])
                    running[p] = []
                    busy[p] = False
                    self.running_model[p] = -1
                    if queued[p]:
                        dispatch(p)
                else:  # BATCH_TIMEOUT
                    timeouts[p] = None
                    dispatch(p, True)
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

    def _load_chunk(self, start: int) -> None:
        """Convert requests ``start..start+chunk`` of the trace to Python lists."""
        end = min(start + self._chunk, self._n)
        t = self._time_s[start:end]
        sla_ms = self._sla_ms[start:end]
        self._ct = t.tolist()
        self._cm = self._model[start:end].tolist()
        self._csize = self._size[start:end].tolist()
        self._cdead = (t + sla_ms * 1e-3).tolist()
        self._cinv = (1e3 / sla_ms).tolist()
        self._base = start
        self._clen = end - start

    def _try_dispatch(self, p: int, force: bool = False) -> None:
        """Start a batch on idle partition ``p`` if one is due (or ``force``: the timeout)."""
        if self.busy[p] or self.queued_items[p] == 0:
            return
        queues = self.queues[p]
        # The model of the oldest queued request goes next.
        m = -1
        oldest = _INF
        for k, q in enumerate(queues):
            if q:
                t0 = q[0][0]
                if t0 < oldest:
                    oldest = t0
                    m = k
        now = self.events.now
        if not self._due(p, m, oldest, now, force):
            return
        batch: list[tuple[float, float, float, int]] = []
        items, removed, expired, self._backlog_rate = take(
            queues[m], batch, 0, self._max_batch, now + self.solo_s[p][m], self._drop_expired,
            self._backlog_rate)
        self._dequeued(p, m, removed, expired)
        if not batch:  # everything was expired; look at the other models
            self._try_dispatch(p, force)
            return
        self._start_batch(p, m, batch, items, now)

    # The batcher's pieces, shared with SharedGpuSim (one copy of each rule).
    def _due(self, p: int, m: int, oldest: float, now: float, force: bool) -> bool:
        """Whether a batch of model ``m`` starts on ``p`` now: it is full, ``force`` (the
        timeout fired), or its oldest request has waited ``max_queue_delay_s``; else arm
        the timeout (once). A batch that starts cancels a pending timeout."""
        timeouts = self._timeout
        if not force and self.queued_by_model[p][m] < self._max_batch:
            due = oldest + self._delay_s
            if now < due:
                if timeouts[p] is None:
                    timeouts[p] = self.events.schedule(due, BATCH_TIMEOUT, p)
                return False
        pending_timeout = timeouts[p]
        if pending_timeout is not None:
            pending_timeout.cancelled = True
            timeouts[p] = None
        return True

    def _dequeued(self, p: int, m: int, removed: int, expired: int) -> None:
        """Book ``removed`` items of model ``m`` taken off ``p``'s queue, ``expired`` of
        them dropped (the queued work is exactly 0.0 once the queue is empty)."""
        queued = self.queued_items
        left = queued[p] - removed
        queued[p] = left
        self.queued_by_model[p][m] -= removed
        work = self.queued_work_s
        work[p] = work[p] - removed * self._item_cost[p][m] if left else 0.0
        if expired:
            self.counters.dropped_expired += expired

    def _start_batch(self, p: int, m: int, batch: list[Any], items: int,
                     now: float) -> tuple[Event, float]:
        """Run ``batch`` (``items`` of model ``m``) on ``p`` from ``now``: its latency from
        the table, busy time and dynamic energy booked; returns its completion event and
        its duration."""
        lat_table = self.latency[p][m]
        dur = lat_table[min(items, len(lat_table)) - 1]
        end = now + dur
        self.busy[p] = True
        self.busy_until[p] = end
        self.running_model[p] = m
        self._running[p] = batch
        c = self.counters
        c.busy_s[p] += dur
        energy_w = self._energy_w
        if energy_w is not None:
            c.energy_j += energy_w[p] * dur
        return self.events.schedule(end, BATCH_DONE, p), dur

    def _complete(self, now: float, batch: list[Any]) -> None:
        """Book a finished batch: completed, good (done by its deadline), the latency
        histogram, and the backlog rate its requests leave."""
        rate = self._backlog_rate
        good = 0
        for req in batch:
            rate -= req[2]
            if now <= req[1] + 1e-12:
                good += 1
        self._backlog_rate = rate
        c = self.counters
        c.completed += len(batch)
        c.good += good
        c.latency.add_finished(now, batch)

    @property
    def trace_models(self) -> np.ndarray:
        """Model index of every request of the episode's trace (read only)."""
        return self._model

    def run_compiled(self, rule: int, *, valid: np.ndarray, can_reject: np.ndarray,
                     size_f32: np.ndarray, clip: float, weights: Sequence[float],
                     reject_hopeless: bool = False, margin_f32: float = 0.0,
                     choices: np.ndarray | None = None, cursor: int = 0,
                     record: np.ndarray | None = None) -> tuple[int, int, float]:
        """The rest of the episode as one compiled loop (:mod:`envs.sim.device.compiled`):
        every request decided by ``rule`` (``RULE_*``), then the drain and
        :meth:`finalize_energy`; the simulator is left exactly as :meth:`run` leaves it.

        Needs an episode whose first request is pending and nothing decided yet. The
        decision reads the observation's features as the env computes them (clipped at
        ``clip``, float32) and the rewards are a linear goodput reward's ``weights``.

        Args:
            rule: The decision rule; ``RULE_REPLAY`` takes ``choices`` as the actions.
            valid: ``(M, P)``: which partitions may serve each model (the action masks).
            can_reject: ``(M,)``: whether rejecting is allowed.
            size_f32: The ``size`` feature per partition (float32 values).
            clip: Where the features are clipped.
            weights: ``(late, drop, energy, reconfig, backlog)`` of the reward.
            reject_hopeless, margin_f32: The rule's parameters.
            choices: Per request, the action (``RULE_REPLAY``) or the index among the valid
                partitions (``RULE_RANDOM``, pre-drawn; -1: none valid).
            cursor: Round robin's cursor.
            record: If given (one per request), receives the actions taken.

        Returns:
            ``(cursor, decisions, episode return)``: round robin's cursor afterwards.

        Raises:
            ValueError: an action is masked or out of range.
            RuntimeError: not at the start of an episode.
        """
        if self.pending != 0 or self._next != 1:
            raise RuntimeError("run_compiled needs an episode just started (first request "
                               "pending, nothing decided)")
        P, B = self.n_partitions, self._max_batch
        lat = np.asarray(self.latency, dtype=np.float64)
        power = self.power_w
        energy_w = np.array(self._energy_w if self._energy_w is not None else [0.0] * P)
        idle_sum = sum(idle for idle, _ in power) if power is not None else 0.0
        counters = np.zeros(7, np.int64)
        state = np.zeros(7)
        busy_s = np.zeros(P)
        busy_until = np.zeros(P)
        hist = np.zeros(len(self.counters.latency.counts), np.int64)
        cursor = compiled.run_episode(
            self._time_s, self._model, self._size, self._sla_ms, lat,
            lat[:, :, B - 1] / B, np.asarray(self.solo_s), energy_w, power is not None,
            float(idle_sum), B, self._delay_s, self._capacity, self._drop_expired,
            np.ascontiguousarray(valid), np.ascontiguousarray(can_reject),
            np.asarray(size_f32, dtype=np.float64), clip,
            np.asarray(weights, dtype=np.float64), rule, reject_hopeless, margin_f32,
            np.zeros(0, np.int64) if choices is None else np.asarray(choices, np.int64),
            cursor, counters, state, busy_s, busy_until, hist,
            record if record is not None else np.zeros(0, np.int64))
        steps = int(counters[compiled.C_STEPS])
        if cursor < 0:
            raise ValueError(f"action {int(choices[steps]) if choices is not None else -1} "
                             f"for query {steps} is masked or out of range")
        # The final state, as run() leaves it after the drain.
        c = self.counters
        (c.arrived, c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
         c.dropped_expired) = (int(v) for v in counters[:6])
        c.busy_s = busy_s.tolist()
        c.energy_j = float(state[compiled.S_ENERGY])
        h = c.latency
        h.counts = hist.tolist()
        h.n = int(hist.sum())
        h.total_s = float(state[compiled.S_HIST_TOTAL])
        h.bins = [0, 0]
        h.below = [0, 0]
        self.events.now = float(state[compiled.S_NOW])
        self.backlog = float(state[compiled.S_BACKLOG])
        self._backlog_rate = float(state[compiled.S_RATE])
        self._backlog_t = float(state[compiled.S_BACKLOG_T])
        self.busy_until = busy_until.tolist()
        self.pending = None
        self._next = self._n
        return cursor, steps, float(state[compiled.S_RETURN])

    def finalize_energy(self) -> None:
        """Add idle power over the elapsed time (call once at the end of an episode)."""
        if self.power_w is not None:
            self.counters.energy_j += sum(idle for idle, _ in self.power_w) * self.events.now
