"""A compiled (numba) run of :meth:`SharedGpuSim.run_until <envs.sim.device.shared.SharedGpuSim.
run_until>`: one control interval of ``Repartition``, its routing rule deciding.

The fast path of ``ldsgym/Repartition-v0`` (issue 16): a whole interval, the routing of every
arriving query *and* the simulator, runs as one compiled loop instead of a Python call per
query. It is the same model as :meth:`SharedGpuSim._loop` operation for operation, without
priority classes and without preemption: dynamic batching with a queue delay, overflow and
expired drops, the backlog integral, busy time and energy, the log-binned latency histogram,
a re-partitioning under way (changed slots drain their running batch, then stay down for the
sampled downtime; a slot comes back with its ``SLOT_UP`` event), and interference among
co-runners (MPS shares; time slices and MIG slices that interfere too): where the Python loop
calls :meth:`SharedGpuSim._reshape` the kernel does the same, at the same moments and with its
early return when the running set is the one it saw last (forgotten whenever a batch
starts), computing the factors of :class:`~envs.sim.device.tables.CoRunnerSlowdowns` with
the same statements on the rows its
:meth:`~envs.sim.device.tables.CoRunnerSlowdowns.kernel_tables` gives (:func:`co_sums`,
:func:`co_factor`), and rescheduling every running batch whose factor changed (advanced to
``now`` at its old rate, its completion at ``now + remaining x new``, a fresh ``seq``). Starting a
re-partitioning
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
``interference_aware``, with ``predict``: each slot's work slowed down by the factor a batch of
one would see there, :meth:`SharedGpuSim.predicted`): the finish time of
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
    I_EXPIRED, I_ERROR, I_LAST_KEY = range(11)
N_INTS = 11
# Float slots of the ``fl`` array.
F_NOW, F_BACKLOG, F_RATE, F_BACKLOG_T, F_ENERGY, F_HIST_TOTAL, F_PENDING_DOWNTIME, \
    F_RECONFIG_START, F_RECONFIG_UNTIL, F_DOWNTIME = range(10)
N_FLOATS = 10
#: ``ints[I_ERROR]``: a slot would need a second pending ``SLOT_UP`` (the heap allows it, the
#: kernel's per-slot events do not; the Python path never schedules one).
ERR_SLOT_UP = 1

# Interference domains of the slots (``dom``), as CoRunnerSlowdowns tells them apart: none
# (empty, exclusive, or an isolated slice), MPS share, time slice, MIG slice.
DOM_NONE, DOM_MPS, DOM_TIME, DOM_MIG = range(4)
#: Columns of a job's row (``rows[slot, model, items]``): CoRunnerSlowdowns._row's 13 terms.
N_ROW = 13
# Constants of the formula (``consts``): sm_count, sm_contention, the MIG and time-slice terms.
C_TOTAL, C_SIGMA, C_MIG, C_TS = range(4)
N_CONSTS = 4


@njit(cache=True, nogil=True)
def co_sums(i: int, mode: int, compat: np.ndarray, busy: np.ndarray, run_model: np.ndarray,
            ritems: np.ndarray, rows: np.ndarray) -> tuple[bool, float, float]:
    """What slot ``i`` (of domain ``mode``) reads of the jobs running on its co-runner slots:
    ``(any, bandwidth sum, sm_share * busy sum)`` for MPS, ``(any, busy sum, 0)`` for time
    slices, ``(any, sm_share * busy sum, 0)`` for MIG; added in slot order from 0, as
    CoRunnerSlowdowns does (the same floats)."""
    s0 = 0.0
    s1 = 0.0
    k = False
    for j in range(busy.shape[0]):
        if not compat[i, j] or not busy[j]:
            continue
        m = run_model[j]
        it = ritems[j]
        if mode == DOM_MPS:
            s0 += rows[j, m, it, 0]
            s1 += rows[j, m, it, 3]
        elif mode == DOM_TIME:
            s0 += rows[j, m, it, 2]
        else:
            s0 += rows[j, m, it, 1]
        k = True
    return k, s0, s1


@njit(cache=True, nogil=True)
def co_factor(rows: np.ndarray, i: int, m: int, it: int, mode: int, s0: float, s1: float,
              consts: np.ndarray) -> float:
    """The slowdown of ``it`` items of model ``m`` on slot ``i`` next to co-runners summed up in
    ``(s0, s1)`` (:func:`co_sums`): CoRunnerSlowdowns._factors / _mps_factors, statement for
    statement (the same floats)."""
    if mode == DOM_TIME:
        return (1.0 + s0) * (1.0 + consts[C_TS])
    if mode == DOM_MIG:
        busy = s0 / rows[i, m, it, 9]
        return 1.0 + consts[C_MIG] * (1.0 if 1.0 < busy else busy)
    total = consts[C_TOTAL]
    sigma = consts[C_SIGMA]
    bw = s0
    nn = total * (rows[i, m, it, 4] + s1)
    x = nn / total
    if sigma == 0.0:
        stretch = x if x > 1.0 else 1.0
    else:
        stretch = ((x if x > 1.0 else 1.0)
                   * (1.0 + sigma * ((total if total < nn else nn) - 1.0)) / rows[i, m, it, 8])
    x = stretch - 1.0
    y = rows[i, m, it, 0] + bw - 1.0
    f = (1.0 + rows[i, m, it, 10] + rows[i, m, it, 5] * (x if x > 0.0 else 0.0)
         + rows[i, m, it, 6] * bw + rows[i, m, it, 7] * (y if y > 0.0 else 0.0)
         + rows[i, m, it, 12] * s1)
    r11 = rows[i, m, it, 11]
    return r11 if r11 > f else f


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
                 counts: np.ndarray, shaped: bool, predict: bool, dom: np.ndarray,
                 compat: np.ndarray, rows: np.ndarray, consts: np.ndarray, factor: np.ndarray,
                 jobcode: np.ndarray, lastkey: np.ndarray, jk: int) -> None:
    """Route and simulate the requests ``t_arr`` .. (arrival, model, size, deadline, ``1/SLA``;
    every one arrives by ``until``), then run the events up to ``until``: what
    ``SharedGpuSim.run_until(router, until)`` does. Every state array is read and written in
    place (slots ``I_*`` of ``ints``, ``F_*`` of ``fl``); ``counts`` (per model) receives the
    requests routed.

    One copy of the batcher (``SharedGpuSim._try_dispatch`` with one priority level) serves
    both places that start batches, an admission and an event: each sets ``dp`` (the slot to
    try) and the event loop runs it first, before looking for the next event, then
    ``_reshape`` where the Python loop calls it (``dshape``).

    With ``shaped`` (interference), ``dom``, ``compat``, ``rows`` and ``consts`` are
    ``CoRunnerSlowdowns.kernel_tables`` of the current layout, ``factor`` the running batches'
    slowdowns, ``jobcode`` the running set (``model * jk + items``, -1 idle) and ``lastkey``
    the one ``_reshape`` saw last (valid where ``ints[I_LAST_KEY]``); ``predict`` slows the
    finish times of :data:`ROUTE_EARLIEST` down by the predicted factors."""
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
    # After that: SharedGpuSim._reshape (0: no, 1: yes, 2: if the batcher started a batch).
    dshape = 0
    dsl = -1  # the slot of dshape == 2
    fnew = np.ones(P)
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
                    factor[p] = 1.0
                    jobcode[p] = m * jk + items
                    ints[I_LAST_KEY] = 0  # as SharedGpuSim: _reshape must give it its factor
                    break
            if dshape:
                # ---- SharedGpuSim._reshape: once the running set changed, each running batch
                # whose slowdown changed is advanced to now at its old rate and rescheduled
                if dshape == 1 or busy[dsl]:
                    same = ints[I_LAST_KEY] == 1
                    if same:
                        for q in range(P):
                            if jobcode[q] != lastkey[q]:
                                same = False
                                break
                    if not same:
                        ints[I_LAST_KEY] = 1
                        count = 0
                        for q in range(P):
                            lastkey[q] = jobcode[q]
                            fnew[q] = 1.0
                            if busy[q] and dom[q] != DOM_NONE:
                                count += 1
                        if count >= 2:
                            for q in range(P):
                                if busy[q] and dom[q] != DOM_NONE:
                                    anyco, s0, s1 = co_sums(q, dom[q], compat, busy, run_model,
                                                            ritems, rows)
                                    if anyco:
                                        fnew[q] = co_factor(rows, q, run_model[q], ritems[q],
                                                            dom[q], s0, s1, consts)
                        for q in range(P):
                            if not busy[q]:
                                continue
                            new = fnew[q]
                            old = factor[q]
                            if new == old:
                                continue
                            left = rem[q] - (now - rt[q]) / old
                            if left < 0.0:
                                left = 0.0
                            rem[q] = left
                            rt[q] = now
                            factor[q] = new
                            end = now + left * new
                            seq += 1
                            done_t[q] = end
                            done_seq[q] = seq
                            if end < next_t:
                                next_t = end
                            busy_s[q] += end - busy_until[q]
                            busy_until[q] = end
                dshape = 0
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
                jobcode[p] = -1
                if shaped:
                    dshape = 1
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
                if shaped:
                    dshape = 1
            else:  # SLOT_UP
                up_t[p] = inf
                if queued[p] and not busy[p]:
                    dp = p
                    dforce = False
                    if shaped:
                        dshape = 1
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
                    if predict:
                        # SharedGpuSim.predicted: the slowdown of a batch of one of m on r
                        # next to what runs on the other slots (1 without a co-runner)
                        fr = 1.0
                        if dom[r] != DOM_NONE and active[r]:
                            anyco, s0, s1 = co_sums(r, dom[r], compat, busy, run_model,
                                                    ritems, rows)
                            if anyco:
                                fr = co_factor(rows, r, m, 1, dom[r], s0, s1, consts)
                        fx[r] = wait + (work[r] + solo[r, m]) * fr
                    else:
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
                    if shaped:
                        dshape = 2
                        dsl = a
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
