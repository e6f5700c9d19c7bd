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

    The decision loop::

        sim.advance()                 # run to the first arrival; sim.pending is its index
        while sim.pending is not None:
            sim.place(p)  or  sim.reject()
            sim.advance()             # run to the next arrival (drains after the last one)
    """

    def __init__(
        self,
        latency: list[list[list[float]]],
        fits: list[list[bool]],
        arrivals: Arrivals,
        batcher: BatcherConfig,
        power_w: list[tuple[float, float]] | None = None,
    ) -> None:
        self.latency = latency
        self.fits = fits
        self.n_partitions = len(latency)
        self.n_models = len(latency[0])
        self.batcher = batcher
        self.power_w = power_w
        # Arrivals as plain Python lists: indexing them is faster than numpy scalars.
        self._t = arrivals.time_s.tolist()
        self._m = arrivals.model.tolist()
        self._size = arrivals.size.tolist()
        self._deadline = (arrivals.time_s + arrivals.sla_ms * 1e-3).tolist()
        self._inv_sla = (1e3 / arrivals.sla_ms).tolist()
        #: Integral over time of sum(1 / SLA) over the requests in the system: the total time
        #: spent in the system so far, each request's time counted in units of its own SLA.
        self.backlog = 0.0
        self._backlog_rate = 0.0
        self._backlog_t = 0.0
        self._n = len(self._t)
        self._next = 0
        #: Index of the request awaiting a decision, or None when the trace is exhausted.
        self.pending: int | None = None
        self.events = EventQueue()
        self.counters = Counters(self.n_partitions)
        P, M = self.n_partitions, self.n_models
        # Per (partition, model): deque of request indices; per partition: queued items.
        self.queues: list[list[deque[int]]] = [[deque() for _ in range(M)] for _ in range(P)]
        self.queued_items = [0] * P
        #: Items queued per (partition, model).
        self.queued_by_model = [[0] * M for _ in range(P)]
        #: Estimated seconds of work queued (items x per-item cost at max batch).
        self.queued_work_s = [0.0] * P
        self.busy_until = [0.0] * P  # end of the running batch (<= now when idle)
        self.busy = [False] * P
        self.running_model = [-1] * P
        self._running: list[list[int]] = [[] for _ in range(P)]
        self._timeout: list[Event | None] = [None] * P
        B = batcher.max_batch
        self._item_cost = [[latency[p][m][B - 1] / B for m in range(M)] for p in range(P)]
        self._solo = [[latency[p][m][0] for m in range(M)] for p in range(P)]

    # ------------------------------------------------------------------ decisions
    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self.events.now

    def pending_model(self) -> int:
        """Model index of the pending request."""
        assert self.pending is not None
        return self._m[self.pending]

    def pending_deadline(self) -> float:
        """Absolute deadline of the pending request."""
        assert self.pending is not None
        return self._deadline[self.pending]

    def request_model(self, i: int) -> int:
        """Model index of request ``i``."""
        return self._m[i]

    def expected_finish_s(self, p: int, m: int) -> float:
        """Rough time from now until a new request of model ``m`` would finish on ``p``."""
        wait = self.busy_until[p] - self.events.now if self.busy[p] else 0.0
        return wait + self.queued_work_s[p] + self._solo[p][m]

    def place(self, p: int) -> None:
        """Queue the pending request on partition ``p``.

        Raises:
            ValueError: ``p`` is out of range or the model does not fit on it.
        """
        i = self.pending
        if i is None:
            raise RuntimeError("no pending request; call advance() first")
        m = self._m[i]
        if not 0 <= p < self.n_partitions or not self.fits[p][m]:
            raise ValueError(f"partition {p} cannot serve model {m}")
        self.pending = None
        size = self._size[i]
        if self.queued_items[p] + size > self.batcher.queue_capacity:
            self.counters.dropped_overflow += 1
            self._backlog_rate -= self._inv_sla[i]
            return
        self.queues[p][m].append(i)
        self.queued_items[p] += size
        self.queued_by_model[p][m] += size
        self.queued_work_s[p] += size * self._item_cost[p][m]
        if not self.busy[p]:
            self._try_dispatch(p)

    def reject(self) -> None:
        """Drop the pending request by decision."""
        i = self.pending
        if i is None:
            raise RuntimeError("no pending request; call advance() first")
        self.pending = None
        self.counters.dropped_rejected += 1
        self._backlog_rate -= self._inv_sla[i]

    def advance(self) -> None:
        """Run events up to the next arrival and make it :attr:`pending`.

        After the last arrival has been decided, runs every remaining event (a drain: no
        decisions are left to make) and leaves :attr:`pending` as ``None``.
        """
        if self.pending is not None:
            raise RuntimeError("the pending request has not been decided")
        events = self.events
        if self._next < self._n:
            t_arr = self._t[self._next]
            while events.peek() <= t_arr:
                self._handle(events.pop())
            events.now = t_arr
            self._accrue(t_arr)
            self._backlog_rate += self._inv_sla[self._next]
            self.pending = self._next
            self._next += 1
            self.counters.arrived += 1
        else:
            while events.peek() < float("inf"):
                self._handle(events.pop())

    @property
    def done(self) -> bool:
        """True once every request has been decided and the system has drained."""
        return self.pending is None and self._next >= self._n and len(self.events) == 0

    # ------------------------------------------------------------------ internals
    def _accrue(self, t: float) -> None:
        self.backlog += self._backlog_rate * (t - self._backlog_t)
        self._backlog_t = t

    def _handle(self, ev: Event) -> None:
        self._accrue(ev.time)
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
        t = self._t
        # The model of the oldest queued request goes next.
        m = -1
        oldest = float("inf")
        for k, q in enumerate(queues):
            if q and t[q[0]] < oldest:
                oldest = t[q[0]]
                m = k
        q = queues[m]
        now = self.events.now
        B = self.batcher.max_batch
        if not force:
            items = 0
            for i in q:
                items += self._size[i]
                if items >= B:
                    break
            due = oldest + self.batcher.max_queue_delay_s
            if items < B and now < due:
                if self._timeout[p] is None:
                    self._timeout[p] = self.events.schedule(due, BATCH_TIMEOUT, p)
                return
        if self._timeout[p] is not None:
            EventQueue.cancel(self._timeout[p])  # type: ignore[arg-type]
            self._timeout[p] = None
        batch: list[int] = []
        items = 0
        cost = self._item_cost[p][m]
        solo_finish = now + self._solo[p][m]
        size, deadline = self._size, self._deadline
        drop = self.batcher.drop_expired
        while q and (not batch or items + size[q[0]] <= B):
            i = q.popleft()
            s = size[i]
            self.queued_items[p] -= s
            self.queued_by_model[p][m] -= s
            self.queued_work_s[p] -= s * cost
            if drop and deadline[i] < solo_finish:
                self.counters.dropped_expired += 1
                self._backlog_rate -= self._inv_sla[i]
                continue
            batch.append(i)
            items += s
        if not batch:  # everything was expired; look at the other models
            self._try_dispatch(p, force)
            return
        lat_table = self.latency[p][m]
        dur = lat_table[min(items, len(lat_table)) - 1]
        self.busy[p] = True
        self.busy_until[p] = now + dur
        self.running_model[p] = m
        self._running[p] = batch
        self.counters.busy_s[p] += dur
        if self.power_w is not None:
            idle, busy = self.power_w[p]
            self.counters.energy_j += (busy - idle) * dur
        self.events.schedule(now + dur, BATCH_DONE, p)

    def _finish_batch(self, p: int) -> None:
        now = self.events.now
        c = self.counters
        t, deadline = self._t, self._deadline
        lat = c.latency
        inv_sla = self._inv_sla
        for i in self._running[p]:
            self._backlog_rate -= inv_sla[i]
            c.completed += 1
            if now <= deadline[i] + 1e-12:
                c.good += 1
            lat.add(now - t[i])
        self._running[p] = []
        self.busy[p] = False
        self.running_model[p] = -1
        if self.queued_items[p]:
            self._try_dispatch(p)

    def finalize_energy(self) -> None:
        """Add idle power over the elapsed time (call once at the end of an episode)."""
        if self.power_w is not None:
            self.counters.energy_j += sum(idle for idle, _ in self.power_w) * self.events.now
