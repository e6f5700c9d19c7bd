"""A compiled (numba) run of :meth:`SharedGpuSim.run_until <envs.sim.device.shared.SharedGpuSim.
run_until>`: one control interval of ``Repartition``, its routing rule deciding.

The fast path of ``ldsgym/Repartition-v0`` (issue 16): a whole interval, the routing of every
arriving query *and* the simulator, runs as one compiled loop instead of a Python call per
query. It is the same model as :meth:`SharedGpuSim._loop` operation for operation for the
device without interference among partitions (MIG slices, or MPS with ``interference=False``),
without priority classes and without preemption: dynamic batching with a queue delay, overflow
and expired drops, the backlog integral, busy time and energy, the log-binned latency histogram,
and a re-partitioning under way (changed slots drain their running batch, then stay down for the
sampled downtime; a slot comes back with its ``SLOT_UP`` event). Starting a re-partitioning
(:meth:`SharedGpuSim.reconfigure`) and routing the queries it hands back stay in Python, between
two intervals. So the simulator's state after an interval is *equal* to the one the Python loop
leaves, not close to it; ``tests/test_repartition_compiled.py`` checks the env's observations,
rewards and ``info`` over whole episodes against the Python path.

The event heap becomes per-slot ``(time, seq)`` pairs: a slot has at most one pending batch
completion, one batching timeout and one ``SLOT_UP``, and the next event is the smallest
``(time, seq)`` among them, the order the heap of ``(time, 0, seq)`` pops. The numbering ``seq``
continues the heap's, so events the Python path schedules afterwards order as they would have.
Queues are ring buffers per (slot, model) of ``queue_capacity`` requests.

Routing rules (``rule``): :data:`ROUTE_EARLIEST` is ``Repartition``'s ``shortest_finish`` (and
``interference_aware``, which is the same without interference): the finish time of
:meth:`SharedGpuSim.finish_times_s` per slot that holds the model, decided by
:func:`envs.sim.device.rules.earliest` (reject when hopeless); :data:`ROUTE_LEAST_LOADED` and
:data:`ROUTE_ROUND_ROBIN` are :func:`~envs.sim.device.rules.least_loaded` (on the queued items,
ties to the larger partition) and :func:`~envs.sim.device.rules.round_robin` over the slots that
are up (else every slot that holds the model), as ``Repartition._route``.

numba is optional: :data:`AVAILABLE` is False without it (or with ``LDSGYM_NO_JIT=1``) and
callers use the Python loop. Without numba the kernel still runs, as plain (slow) Python.
"""

from __future__ import annotations

import math

import numpy as np

from envs.sim.device.rules import earliest_jit as earliest
from envs.sim.device.rules import least_loaded_jit as least_loaded
from envs.sim.device.rules import round_robin_jit as round_robin
from envs.sim.jit import AVAILABLE as AVAILABLE
from envs.sim.jit import njit
from envs.sim.metrics import _INV_LOG_G, _LO_S, _NBINS

ROUTE_EARLIEST = 0
ROUTE_LEAST_LOADED = 1
ROUTE_ROUND_ROBIN = 2

# Integer slots of the ``ints`` array.
I_SEQ, I_DRAIN_LEFT, I_CURSOR, I_ARRIVED, I_COMPLETED, I_GOOD, I_REJECTED, I_OVERFLOW, \
    I_EXPIRED, I_ERROR = range(10)
N_INTS = 10
# Float slots of the ``fl`` array.
F_NOW, F_BACKLOG, F_RATE, F_BACKLOG_T, F_ENERGY, F_HIST_TOTAL, F_PENDING_DOWNTIME, \
    F_RECONFIG_START, F_RECONFIG_UNTIL, F_DOWNTIME = range(10)
N_FLOATS = 10
#: ``ints[I_ERROR]``: a slot would need a second pending ``SLOT_UP`` (the heap allows it, the
#: kernel's per-slot events do not; the Python path never schedules one).
ERR_SLOT_UP = 1


@njit(cache=True, nogil=True)
def run_interval(t_arr: np.ndarray, m_arr: np.ndarray, s_arr: np.ndarray, dead_arr: np.ndarray,
                 inv_arr: np.ndarray, until: float, rule: int,
                 lat: np.ndarray, item_cost: np.ndarray, solo: np.ndarray, fits: np.ndarray,
                 energy_w: np.ndarray, has_power: bool, sms: np.ndarray,
                 max_batch: int, delay_s: float, capacity: int, drop: bool,
                 qa: np.ndarray, qd: np.ndarray, qi: np.ndarray, qs: np.ndarray,
                 qhead: np.ndarray, qlen: np.ndarray, queued: np.ndarray,
                 by_model: np.ndarray, work: np.ndarray, work_lev: np.ndarray,
                 busy: np.ndarray, busy_until: np.ndarray, run_model: np.ndarray,
                 up_at: np.ndarray, retiring: np.ndarray, active: np.ndarray,
                 changed: np.ndarray,
                 ra: np.ndarray, rd: np.ndarray, ri: np.ndarray, rs: np.ndarray,
                 rn: np.ndarray, rem: np.ndarray, rt: np.ndarray, ritems: np.ndarray,
                 done_t: np.ndarray, done_seq: np.ndarray, to_t: np.ndarray,
                 to_seq: np.ndarray, up_t: np.ndarray, up_seq: np.ndarray,
                 ints: np.ndarray, fl: np.ndarray, busy_s: np.ndarray, hist: np.ndarray,
                 counts: np.ndarray) -> None:
    """Route and simulate the requests ``t_arr`` .. (arrival, model, size, deadline, ``1/SLA``;
    every one arrives by ``until``), then run the events up to ``until``: what
    ``SharedGpuSim.run_until(router, until)`` does. Every state array is read and written in
    place (slots ``I_*`` of ``ints``, ``F_*`` of ``fl``); ``counts`` (per model) receives the
    requests routed.

    One copy of the batcher (``SharedGpuSim._try_dispatch`` with one priority level) serves
    both places that start batches, an admission and an event: each sets ``dp`` (the slot to
    try) and the event loop runs it first, before looking for the next event."""
    n = t_arr.shape[0]
    P, M = qlen.shape[0], qlen.shape[1]
    cap = qa.shape[2]
    L = lat.shape[2]
    fx = np.empty(P)
    ok = np.zeros(P, np.bool_)
    last = _NBINS - 1
    inf = math.inf
    backlog = fl[F_BACKLOG]
    bt = fl[F_BACKLOG_T]
    now = fl[F_NOW]
    rate = fl[F_RATE]
    energy = fl[F_ENERGY]
    htot = fl[F_HIST_TOTAL]
    seq = ints[I_SEQ]
    n_completed = ints[I_COMPLETED]
    n_good = ints[I_GOOD]
    n_expired = ints[I_EXPIRED]
    n_rejected = ints[I_REJECTED]
    n_overflow = ints[I_OVERFLOW]
    # A lower bound on the next event's time (exact after a scan; an event scheduled lowers
    # it): most arrivals find no event due and skip the scan.
    next_t = -inf
    dp = -1  # the slot whose batcher runs next (-1: none), and whether its timeout fired
    dforce = False
    i = 0
    while True:
        horizon = t_arr[i] if i < n else inf
        stop = horizon > until
        h = until if stop else horizon
        # ---- the events up to h (SharedGpuSim._loop without slowdowns, priorities, preemption)
        while True:
            if dp >= 0:
                # ---- SharedGpuSim._try_dispatch(dp, dforce) (its recursion over batches whose
                # requests all expired as a loop)
                p = dp
                force = dforce
                dp = -1
                while True:
                    if busy[p] or queued[p] == 0:
                        break
                    if up_at[p] > now or retiring[p]:
                        break
                    m = -1
                    oldest = inf
                    for k in range(M):
                        if qlen[p, k] > 0:
                            t0 = qa[p, k, qhead[p, k]]
                            if t0 < oldest:
                                oldest = t0
                                m = k
                    # GpuServingSim._due
                    if not force and by_model[p, m] < max_batch:
                        due = oldest + delay_s
                        if now < due:
                            if to_t[p] == inf:
                                seq += 1
                                to_t[p] = due
                                to_seq[p] = seq
                                if due < next_t:
                                    next_t = due
                            break
                    to_t[p] = inf  # a batch starts: cancel a pending timeout
                    # take() from the one level
                    items = 0
                    removed = 0
                    expired = 0
                    nb = 0
                    solo_finish = now + solo[p, m]
                    hd = qhead[p, m]
                    ln = qlen[p, m]
                    while ln > 0:
                        sz = qs[p, m, hd]
                        if nb > 0 and items + sz > max_batch:
                            break
                        removed += sz
                        d = qd[p, m, hd]
                        if drop and d < solo_finish:
                            expired += 1
                            rate -= qi[p, m, hd]
                        else:
                            ra[p, nb] = qa[p, m, hd]
                            rd[p, nb] = d
                            ri[p, nb] = qi[p, m, hd]
                            rs[p, nb] = sz
                            nb += 1
                            items += sz
                        hd += 1
                        if hd == cap:
                            hd = 0
                        ln -= 1
                    qhead[p, m] = hd
                    qlen[p, m] = ln
                    cost = item_cost[p, m]
                    if removed:
                        work_lev[p] -= removed * cost
                    # GpuServingSim._dequeued
                    left = queued[p] - removed
                    queued[p] = left
                    by_model[p, m] -= removed
                    work[p] = work[p] - removed * cost if left else 0.0
                    n_expired += expired
                    if not left:
                        work_lev[p] = 0.0
                    if nb == 0:  # everything was expired: look at the other models
                        continue
                    # GpuServingSim._start_batch
                    dur = lat[p, m, min(items, L) - 1]
                    end = now + dur
                    busy[p] = True
                    busy_until[p] = end
                    run_model[p] = m
                    rn[p] = nb
                    busy_s[p] += dur
                    if has_power:
                        energy += energy_w[p] * dur
                    seq += 1
                    done_t[p] = end
                    done_seq[p] = seq
                    if end < next_t:
                        next_t = end
                    rem[p] = dur
                    rt[p] = now
                    ritems[p] = items
                    break
            if next_t > h:
                break
            # the next event: the smallest (time, seq), as the heap pops
            p = -1
            et = inf
            es = 0
            kind = 0
            for r in range(P):
                t = done_t[r]
                if t < et or (t == et and t != inf and done_seq[r] < es):
                    p, et, es, kind = r, t, done_seq[r], 0
                t = to_t[r]
                if t < et or (t == et and t != inf and to_seq[r] < es):
                    p, et, es, kind = r, t, to_seq[r], 1
                t = up_t[r]
                if t < et or (t == et and t != inf and up_seq[r] < es):
                    p, et, es, kind = r, t, up_seq[r], 2
            next_t = et
            if p < 0 or et > h:
                break
            now = et
            backlog += rate * (now - bt)
            bt = now
            if kind == 0:  # BATCH_DONE: GpuServingSim._complete
                done_t[p] = inf
                nb = rn[p]
                good = 0
                for r in range(nb):
                    rate -= ri[p, r]
                    if now <= rd[p, r] + 1e-12:
                        good += 1
                for r in range(nb):
                    lt = now - ra[p, r]
                    htot += lt
                    k = (int(math.log(lt / _LO_S) * _INV_LOG_G) + 1) if lt > _LO_S else 0
                    if k > last:
                        k = last
                    hist[k] += 1
                n_completed += nb
                n_good += good
                rn[p] = 0
                busy[p] = False
                run_model[p] = -1
                if retiring[p]:
                    retiring[p] = False
                    ints[I_DRAIN_LEFT] -= 1
                    if ints[I_DRAIN_LEFT] == 0:  # SharedGpuSim._bring_up
                        t_up = now + fl[F_PENDING_DOWNTIME]
                        for q in range(P):
                            if changed[q]:
                                retiring[q] = False
                                if active[q]:
                                    if up_t[q] != inf:
                                        ints[I_ERROR] = ERR_SLOT_UP
                                        return
                                    up_at[q] = t_up
                                    seq += 1
                                    up_t[q] = t_up
                                    up_seq[q] = seq
                                    if t_up < next_t:
                                        next_t = t_up
                                changed[q] = False
                        fl[F_RECONFIG_UNTIL] = t_up
                        fl[F_DOWNTIME] += t_up - fl[F_RECONFIG_START]
                elif queued[p]:
                    dp = p
                    dforce = False
            elif kind == 1:  # BATCH_TIMEOUT
                to_t[p] = inf
                dp = p
                dforce = True
            else:  # SLOT_UP
                up_t[p] = inf
                if queued[p] and not busy[p]:
                    dp = p
                    dforce = False
        if stop:
            now = until
            backlog += rate * (until - bt)
            bt = until
            break
        if i >= n:  # until = inf: drained
            break
        # ---- the arrival of request i, then its routing (the router of Repartition)
        now = horizon
        backlog += rate * (now - bt)
        bt = now
        inv = inv_arr[i]
        rate += inv
        m = m_arr[i]
        counts[m] += 1
        if rule == ROUTE_EARLIEST:
            # SharedGpuSim.finish_times_s over the slots that hold the model
            for r in range(P):
                ok[r] = fits[r, m]
                if ok[r]:
                    wait = busy_until[r] - now if busy[r] else 0.0
                    d = up_at[r] - now
                    if d > wait:
                        wait = d
                    fx[r] = wait + (work[r] + solo[r, m])
            a = earliest(fx, ok, True, True, now, dead_arr[i])
        else:
            anyok = False
            for r in range(P):
                ok[r] = fits[r, m] and up_at[r] <= now
                anyok = anyok or ok[r]
            if not anyok:
                for r in range(P):
                    ok[r] = fits[r, m]
            if rule == ROUTE_LEAST_LOADED:
                a = least_loaded(queued, sms, ok)
            else:
                a, cursor = round_robin(ints[I_CURSOR], ok, P)
                ints[I_CURSOR] = cursor
        # ---- SharedGpuSim._admit with one level, no preemption (or the rejection)
        if a == P:
            n_rejected += 1
            rate -= inv
        else:
            sz = s_arr[i]
            q = queued[a] + sz
            if q > capacity:
                n_overflow += 1
                rate -= inv
            else:
                pos = qhead[a, m] + qlen[a, m]
                if pos >= cap:
                    pos -= cap
                qa[a, m, pos] = horizon
                qd[a, m, pos] = dead_arr[i]
                qi[a, m, pos] = inv
                qs[a, m, pos] = sz
                qlen[a, m] += 1
                queued[a] = q
                by_model[a, m] += sz
                w = sz * item_cost[a, m]
                work[a] += w
                work_lev[a] += w
                if not busy[a] and (to_t[a] == inf or by_model[a, m] >= max_batch):
                    dp = a
                    dforce = False
        i += 1
    ints[I_ARRIVED] += n
    ints[I_SEQ] = seq
    ints[I_COMPLETED] = n_completed
    ints[I_GOOD] = n_good
    ints[I_EXPIRED] = n_expired
    ints[I_REJECTED] = n_rejected
    ints[I_OVERFLOW] = n_overflow
    fl[F_NOW] = now
    fl[F_BACKLOG] = backlog
    fl[F_BACKLOG_T] = bt
    fl[F_RATE] = rate
    fl[F_ENERGY] = energy
    fl[F_HIST_TOTAL] = htot


__all__ = ["AVAILABLE", "ROUTE_EARLIEST", "ROUTE_LEAST_LOADED", "ROUTE_ROUND_ROBIN",
           "run_interval"]
