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

Energy: the devices' dynamic energy plus every device's idle power over the elapsed time.
Cost: ``price_per_hour x elapsed`` summed over devices (the provisioned cost; per query in
:meth:`ClusterSim.summary`), and the *used* cost, each slot's busy seconds priced at its share
of its device's price (what a router can lower by its choices; the reward's cost term).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Sequence

import numpy as np

from envs.sim.cluster.spec import ClusterTables
from envs.sim.device.serving import BatcherConfig
from envs.sim.device.shared import SharedGpuSim, run_passive
from envs.sim.metrics import Counters, LatencyHistogram
from traces.arrivals import Arrivals

_INF = float("inf")


def _empty_trace(models: tuple[str, ...]) -> Arrivals:
    return Arrivals(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
                    np.zeros(0, np.int8), models)


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

    def __init__(self, tables: ClusterTables, arrivals: Arrivals, batcher: BatcherConfig,
                 resident: Sequence[Sequence[int]],
                 slowdown_caches: Sequence[dict | None] | None = None) -> None:
        self.tables = tables
        models = tuple(arrivals.models)
        self.n_models = M = len(tables.footprint_bytes)
        self.n_devices = D = len(tables.device_names)
        self.slots = list(tables.slots)
        self.n_slots = S = len(self.slots)
        self.batcher = batcher
        #: One histogram for every device: the cluster's latency distribution.
        self.latency = LatencyHistogram()
        self.devices: list[SharedGpuSim] = []
        for d in range(D):
            cache = slowdown_caches[d] if slowdown_caches is not None else None
            dev = SharedGpuSim(tables.latency[d], tables.fits[d], _empty_trace(models), batcher,
                               tables.power_w[d], slowdown=tables.slowdowns[d],
                               slowdown_cache=cache)
            dev.counters.latency = self.latency
            self.devices.append(dev)
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
        #: Per slot, the resident models in LRU order (least recently used first).
        self.resident: list[dict[int, None]] = []
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
        self.ready_at: list[dict[int, float]] = [dict.fromkeys(r, 0.0) for r in self.resident]
        #: Per device, when its host link is free of weight copies.
        self.link_free_at = [0.0] * D
        #: Per slot and model, queries routed there and not yet delivered.
        self.in_transit = [[0] * M for _ in range(S)]
        self.transit_total = 0
        #: Per slot, queries in transit to it (the sum of its row of ``in_transit``).
        self.transit_n = [0] * S
        self._heap: list[tuple[float, int, int, int, tuple[float, float, float, int, int]]] = []
        self._seq = 0
        self._per_item = tables.per_item_s.tolist()
        # Per model, the slots whose partition it fits (the only ones a query of it may take),
        # each as (slot, device, partition, hop of the model to that device).
        self._fit_slots: list[list[tuple[int, int, int, float]]] = [
            [(s, d, p, tables.hop_s[d][m]) for s, (d, p) in enumerate(self.slots)
             if tables.fits[d][p][m]] for m in range(M)]
        self._counters = Counters(S)
        self._counters.latency = self.latency
        self._slot_dev = [self.devices[d] for d, _ in self.slots]
        self._slot_part = [p for _, p in self.slots]

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
        trace again and :meth:`attach_trace` s it)."""
        clone = copy.copy(self)
        for key in self._TRACE_KEYS:
            delattr(clone, key)
        return clone

    # ------------------------------------------------------------------ decisions
    def pending_query(self) -> tuple[int, float, float]:
        """Model, absolute deadline and SLA (seconds) of the pending query."""
        j = self.pending
        assert j is not None
        return self._models[j], self._dead[j], 1.0 / self._inv[j]

    def _evictable(self, s: int, m: int) -> list[int]:
        """Models on slot ``s`` (LRU first) that may be evicted to make room for ``m``."""
        d, p = self.slots[s]
        dev = self.devices[d]
        queued = dev.queued_by_model[p]
        running = dev.running_model[p]
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
            fp = self.tables.footprint_bytes
            cap = self.tables.slot_mem_bytes[s]
            for k in self._evictable(s, m):
                if self.mem_used[s] + fp[m] <= cap:
                    break
                del res[k]
                del ready[k]
                self.mem_used[s] -= fp[k]
                self.evictions += 1
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
        if self._next < self._n:
            t = self._times[self._next]
            self._deliver(t)
            run_passive(self.devices, t)
            self.now = t
            self.pending = self._next
            self._next += 1
            self.arrived += 1
            return
        self._deliver(_INF)
        end = self.now
        for dev in self.devices:
            dev.advance()
            if dev.now > end:
                end = dev.now
        self.now = end

    def _deliver(self, t: float) -> None:
        """Hand every delivery due by ``t`` to its device, in time order."""
        heap = self._heap
        devices, slots, transit = self.devices, self.slots, self.in_transit
        while heap and heap[0][0] <= t:
            when, _, s, m, req = heapq.heappop(heap)
            d, p = slots[s]
            dev = devices[d]
            dev.run_passive(when)
            transit[s][m] -= 1
            self.transit_n[s] -= 1
            self.transit_total -= 1
            dev.arrive(p, m, req)
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
        devices, ready_at, link_free = self.devices, self.ready_at, self.link_free_at
        transit_n, in_transit = self.transit_n, self.in_transit
        for s, d, p, hop in self._fit_slots[m]:
            dev = devices[d]
            # dev.finish_times_s(m, now)[p], inlined
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
        return [dev.queued_items[p] + n
                for dev, p, n in zip(self._slot_dev, self._slot_part, self.transit_n,
                                     strict=True)]

    def busy_left_s(self) -> list[float]:
        """Per slot, seconds left in its running batch (0 when idle)."""
        now = self.now
        return [dev.busy_until[p] - now if dev.busy[p] else 0.0
                for dev, p in zip(self._slot_dev, self._slot_part, strict=True)]

    def energy_j(self) -> float:
        """Energy so far: the devices' dynamic energy plus idle power over the elapsed time."""
        return (sum(dev.counters.energy_j for dev in self.devices)
                + sum(self.tables.idle_w) * self.now)

    def used_cost_usd(self) -> float:
        """Busy seconds of each slot priced at its share of its device's price."""
        tab = self.tables
        total = 0.0
        for s, (d, p) in enumerate(self.slots):
            total += self.devices[d].counters.busy_s[p] * tab.price_per_s[d] * tab.slot_share[s]
        return total

    def provisioned_cost_usd(self) -> float:
        """Every device's price over the elapsed time."""
        return sum(self.tables.price_per_s) * self.now

    def counters(self) -> Counters:
        """The cluster's counters: sums over the devices, the router's arrivals and
        rejections, the shared latency histogram. One object, refreshed by every call (read it
        before the simulation moves on)."""
        c = self._counters
        c.completed = c.good = c.dropped_overflow = c.dropped_expired = 0
        c.arrived = self.arrived
        c.dropped_rejected = self.rejected
        busy: list[float] = []
        for dev in self.devices:
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

    def backlog(self) -> float:
        """Sum over the devices of their backlog (time in the system in units of the SLA,
        counted from delivery)."""
        return sum(dev.backlog for dev in self.devices)

    def summary(self, counters: Counters | None = None) -> dict[str, float]:
        """The info metrics (:meth:`envs.sim.metrics.Counters.summary`) plus the cluster's:
        ``in_transit``, ``loads``, ``evictions``, ``load_s``, ``cost_per_query_usd``
        (provisioned), ``used_cost_per_query_usd``. ``counters``: :meth:`counters` of this
        moment when the caller has them already."""
        c = self.counters() if counters is None else counters
        now = self.now
        out = c.summary(now, sum(dev.busy_ahead_s(now) for dev in self.devices))
        done = c.completed
        out["in_transit"] = self.transit_total
        out["loads"] = self.loads
        out["evictions"] = self.evictions
        out["load_s"] = self.load_s
        out["cost_per_query_usd"] = self.provisioned_cost_usd() / done if done else 0.0
        out["used_cost_per_query_usd"] = self.used_cost_usd() / done if done else 0.0
        return out
