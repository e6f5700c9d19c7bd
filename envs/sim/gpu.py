"""Many models on one partitioned GPU (the survey's MISD paradigm): the serving simulator.

Requests arrive from a trace; at each arrival the simulator stops and asks where the request
goes (a partition, or reject). Every partition runs a Triton-style dynamic batcher: it serves the
model of its oldest queued request, taking up to ``max_batch`` items of that model, and an idle
partition waits at most ``max_queue_delay_s`` for a batch to fill. Batch latency comes from a
precomputed table (hardware model) per (partition, model, batch size).

Nothing here imports gymnasium or torch; :mod:`envs.partition` adapts it to Gymnasium.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from envs.sim.core import Event, EventQueue
from envs.sim.metrics import Counters
from traces.arrivals import Arrivals

BATCH_DONE = 0
BATCH_TIMEOUT = 1
_INF = float("inf")


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
        self._arrivals = arrivals
        self._chunk = max(int(chunk), 1)
        self._n = len(arrivals)
        # The current chunk of the trace as Python lists, from request index _base on.
        self._base = 0
        self._clen = 0
        self._ct: list[float] = []
        self._cm: list[int] = []
        self._csize: list[int] = []
        self._cdead: list[float] = []
        self._cinv: list[float] = []
        #: Integral over time of sum(1 / SLA) over the requests in the system: the total time
        #: spent in the system so far, each request's time counted in units of its own SLA.
        self.backlog = 0.0
        self._backlog_rate = 0.0
        self._backlog_t = 0.0
        self._next = 0
        #: Index of the request awaiting a decision, or None when the trace is exhausted.
        self.pending: int | None = None
        self._pj = 0  # position of the pending request in the current chunk
        self.events = EventQueue()
        self.counters = Counters(self.n_partitions)
        P, M = self.n_partitions, self.n_models
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
        self._running: list[list[tuple[float, float, float, int]]] = [[] for _ in range(P)]
        self._timeout: list[Event | None] = [None] * P
        B = batcher.max_batch
        self._max_batch = B
        self._delay_s = batcher.max_queue_delay_s
        self._capacity = batcher.queue_capacity
        self._drop_expired = batcher.drop_expired
        self._item_cost = [[latency[p][m][B - 1] / B for m in range(M)] for p in range(P)]
        self._solo = [[latency[p][m][0] for m in range(M)] for p in range(P)]
        self._energy_w = [busy - idle for idle, busy in power_w] if power_w is not None else None

    # ------------------------------------------------------------------ decisions
    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self.events.now

    def pending_model(self) -> int:
        """Model index of the pending request."""
        assert self.pending is not None
        return self._cm[self._pj]

    def pending_deadline(self) -> float:
        """Absolute deadline of the pending request."""
        assert self.pending is not None
        return self._cdead[self._pj]

    def expected_finish_s(self, p: int, m: int) -> float:
        """Rough time from now until a new request of model ``m`` would finish on ``p``."""
        wait = self.busy_until[p] - self.events.now if self.busy[p] else 0.0
        return wait + self.queued_work_s[p] + self._solo[p][m]

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
        size = self._csize[j]
        queued = self.queued_items[p] + size
        if queued > self._capacity:
            self.counters.dropped_overflow += 1
            self._backlog_rate -= self._cinv[j]
            return
        self.queues[p][m].append((self._ct[j], self._cdead[j], self._cinv[j], size))
        self.queued_items[p] = queued
        self.queued_by_model[p][m] += size
        self.queued_work_s[p] += size * self._item_cost[p][m]
        if not self.busy[p]:
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
        events = self.events
        pop_until = events.pop_until
        nxt = self._next
        if nxt < self._n:
            j = nxt - self._base
            if j >= self._clen:
                self._load_chunk(nxt)
                j = 0
            t_arr = self._ct[j]
            ev = pop_until(t_arr)
            while ev is not None:
                self._handle(ev)
                ev = pop_until(t_arr)
            events.now = t_arr
            self.backlog += self._backlog_rate * (t_arr - self._backlog_t)
            self._backlog_t = t_arr
            self._backlog_rate += self._cinv[j]
            self.pending = nxt
            self._pj = j
            self._next = nxt + 1
            self.counters.arrived += 1
        else:
            ev = pop_until(_INF)
            while ev is not None:
                self._handle(ev)
                ev = pop_until(_INF)

    @property
    def done(self) -> bool:
        """True once every request has been decided and the system has drained."""
        return self.pending is None and self._next >= self._n and len(self.events) == 0

    # ------------------------------------------------------------------ internals
    def _load_chunk(self, start: int) -> None:
        """Convert requests ``start..start+chunk`` of the trace to Python lists."""
        a = self._arrivals
        end = min(start + self._chunk, self._n)
        t = a.time_s[start:end]
        sla_ms = a.sla_ms[start:end]
        self._ct = t.tolist()
        self._cm = a.model[start:end].tolist()
        self._csize = a.size[start:end].tolist()
        self._cdead = (t + sla_ms * 1e-3).tolist()
        self._cinv = (1e3 / sla_ms).tolist()
        self._base = start
        self._clen = end - start

    def _handle(self, ev: Event) -> None:
        t = ev.time
        self.backlog += self._backlog_rate * (t - self._backlog_t)
        self._backlog_t = t
        if ev.kind == BATCH_DONE:
            self._finish_batch(ev.target)
        else:  # BATCH_TIMEOUT
            self._timeout[ev.target] = None
            self._try_dispatch(ev.target, force=True)

    def _try_dispatch(self, p: int, force: bool = False) -> None:
        """Start a batch on idle partition ``p`` if one is due."""
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
        q = queues[m]
        now = self.events.now
        B = self._max_batch
        if not force and self.queued_by_model[p][m] < B:
            due = oldest + self._delay_s
            if now < due:
                if self._timeout[p] is None:
                    self._timeout[p] = self.events.schedule(due, BATCH_TIMEOUT, p)
                return
        pending_timeout = self._timeout[p]
        if pending_timeout is not None:
            pending_timeout.cancelled = True
            self._timeout[p] = None
        batch: list[tuple[float, float, float, int]] = []
        items = 0
        removed = 0
        expired = 0
        solo_finish = now + self._solo[p][m]
        drop = self._drop_expired
        rate = self._backlog_rate
        popleft, append = q.popleft, batch.append
        while q:
            req = q[0]
            s = req[3]
            if batch and items + s > B:
                break
            popleft()
            removed += s
            if drop and req[1] < solo_finish:
                expired += 1
                rate -= req[2]
                continue
            append(req)
            items += s
        self._backlog_rate = rate
        left = self.queued_items[p] - removed
        self.queued_items[p] = left
        self.queued_by_model[p][m] -= removed
        self.queued_work_s[p] = self.queued_work_s[p] - removed * self._item_cost[p][m] \
            if left else 0.0
        if expired:
            self.counters.dropped_expired += expired
        if not batch:  # everything was expired; look at the other models
            self._try_dispatch(p, force)
            return
        lat_table = self.latency[p][m]
        dur = lat_table[min(items, len(lat_table)) - 1]
        end = now + dur
        self.busy[p] = True
        self.busy_until[p] = end
        self.running_model[p] = m
        self._running[p] = batch
        c = self.counters
        c.busy_s[p] += dur
        if self._energy_w is not None:
            c.energy_j += self._energy_w[p] * dur
        self.events.schedule(end, BATCH_DONE, p)

    def _finish_batch(self, p: int) -> None:
        now = self.events.now
        c = self.counters
        batch = self._running[p]
        rate = self._backlog_rate
        good = 0
        for req in batch:
            rate -= req[2]
            if now <= req[1] + 1e-12:
                good += 1
        self._backlog_rate = rate
        c.completed += len(batch)
        c.good += good
        c.latency.add_since(now, [req[0] for req in batch])
        self._running[p] = []
        self.busy[p] = False
        self.running_model[p] = -1
        if self.queued_items[p]:
            self._try_dispatch(p)

    def finalize_energy(self) -> None:
        """Add idle power over the elapsed time (call once at the end of an episode)."""
        if self.power_w is not None:
            self.counters.energy_j += sum(idle for idle, _ in self.power_w) * self.events.now
