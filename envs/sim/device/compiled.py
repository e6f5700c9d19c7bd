"""A compiled (numba) run of :class:`~envs.sim.device.serving.GpuServingSim`, a heuristic deciding.

The fast path for evaluating baselines over long traces (issue [H]): the whole episode, the
simulator *and* the decision rule, runs as one compiled loop instead of a Python call per
request. It is the same model as :meth:`GpuServingSim.run` operation for operation (dynamic
batching with a queue delay, overflow and expired drops, the backlog integral, energy, the
log-binned latency histogram, the env's GoodputReward summed step by step), so the episode's
metrics and return are *equal* to stepping the env, not close to it;
``tests/test_fast_eval.py`` checks equality against the step loop.

What makes the compiled loop simple: a partition has at most one pending batch completion and
at most one pending batching timeout, so the event heap becomes two arrays of ``(time, seq)``
per partition and the next event is the smallest ``(time, seq)`` among them (the order a heap
of ``(time, priority, seq)`` pops, every priority being 0). Queues are ring buffers per
(partition, model); a queue never holds more than ``queue_capacity`` requests.

Decision rules (``rule``): the heuristics of :mod:`agents.baselines` and
:mod:`agents.misd_baselines` that read only what the v0 simulator has (``finish``, ``slack``,
``queue``, ``busy``, ``size``), computed as the env computes its observation (float64, clipped
at ``clip``, rounded to float32) and compared as the policies compare them. ``RULE_REPLAY``
takes the actions from an array (the simulator's own share of the cost, and a way to replay a
recorded episode).

numba is optional: :data:`AVAILABLE` is False without it (or with ``LDSGYM_NO_JIT=1`` in the
environment) and callers use the Python path.
"""

from __future__ import annotations

import math

import numpy as np

from envs.sim.device.rules import best_fit_jit as best_fit
from envs.sim.device.rules import earliest_jit as earliest
from envs.sim.device.rules import f32_jit as _f32
from envs.sim.device.rules import least_loaded_jit as least_loaded
from envs.sim.device.rules import least_loaded_key_jit as least_loaded_key
from envs.sim.device.rules import most_slack_jit as most_slack
from envs.sim.device.rules import nth_valid_jit as nth_valid
from envs.sim.device.rules import round_robin_jit as round_robin
from envs.sim.jit import AVAILABLE as AVAILABLE
from envs.sim.jit import njit
from envs.sim.metrics import _INV_LOG_G, _LO_S, _NBINS

RULE_REPLAY = 0
RULE_RANDOM = 1
RULE_ROUND_ROBIN = 2
RULE_LEAST_LOADED = 3
RULE_EARLIEST = 4  # shortest_finish and prema (first argmin of finish; reject if hopeless)
RULE_GPULET = 5
RULE_MAX_SLACK = 6  # interference_aware on the v0 simulator

# Counter slots of the ``counters`` array.
C_ARRIVED, C_COMPLETED, C_GOOD, C_REJECTED, C_OVERFLOW, C_EXPIRED, C_STEPS = range(7)
# Float slots of the ``state`` array.
S_NOW, S_BACKLOG, S_RATE, S_BACKLOG_T, S_ENERGY, S_RETURN, S_HIST_TOTAL = range(7)


@njit(cache=True, nogil=True)
def _dispatch(p: int, force: bool, now: float, lat: np.ndarray, item_cost: np.ndarray,
              solo: np.ndarray, energy_w: np.ndarray, has_power: bool, max_batch: int,
              delay_s: float, drop: bool,
              qa: np.ndarray, qd: np.ndarray, qi: np.ndarray, qs: np.ndarray,
              qhead: np.ndarray, qlen: np.ndarray, queued: np.ndarray, by_model: np.ndarray,
              work: np.ndarray, busy: np.ndarray, busy_until: np.ndarray,
              ra: np.ndarray, rd: np.ndarray, ri: np.ndarray, rn: np.ndarray,
              done_t: np.ndarray, done_seq: np.ndarray, to_t: np.ndarray, to_seq: np.ndarray,
              seq: np.ndarray, counters: np.ndarray, state: np.ndarray,
              busy_s: np.ndarray) -> None:
    """``GpuServingSim._try_dispatch`` (its recursion over expired-only batches as a loop)."""
    M = qlen.shape[1]
    cap = qa.shape[2]
    while True:
        if busy[p] or queued[p] == 0:
            return
        m = -1
        oldest = math.inf
        for k in range(M):
            if qlen[p, k] > 0:
                t0 = qa[p, k, qhead[p, k]]
                if t0 < oldest:
                    oldest = t0
                    m = k
        if not force and by_model[p, m] < max_batch:
            due = oldest + delay_s
            if now < due:
                if to_t[p] == math.inf:
                    to_t[p] = due
                    to_seq[p] = seq[0]
                    seq[0] += 1
                return
        to_t[p] = math.inf  # cancel a pending timeout
        items = 0
        removed = 0
        expired = 0
        nb = 0
        solo_finish = now + solo[p, m]
        rate = state[S_RATE]
        h = qhead[p, m]
        ln = qlen[p, m]
        while ln > 0:
            s = qs[p, m, h]
            if nb > 0 and items + s > max_batch:
                break
            removed += s
            d = qd[p, m, h]
            if drop and d < solo_finish:
                expired += 1
                rate -= qi[p, m, h]
            else:
                ra[p, nb] = qa[p, m, h]
                rd[p, nb] = d
                ri[p, nb] = qi[p, m, h]
                nb += 1
                items += s
            h += 1
            if h == cap:
                h = 0
            ln -= 1
        qhead[p, m] = h
        qlen[p, m] = ln
        state[S_RATE] = rate
        left = queued[p] - removed
        queued[p] = left
        by_model[p, m] -= removed
        work[p] = work[p] - removed * item_cost[p, m] if left else 0.0
        if expired:
            counters[C_EXPIRED] += expired
        if nb == 0:  # everything was expired: look at the other models
            continue
        L = lat.shape[2]
        dur = lat[p, m, min(items, L) - 1]
        end = now + dur
        busy[p] = True
        busy_until[p] = end
        rn[p] = nb
        busy_s[p] += dur
        if has_power:
            state[S_ENERGY] += energy_w[p] * dur
        done_t[p] = end
        done_seq[p] = seq[0]
        seq[0] += 1
        return


@njit(cache=True, nogil=True)
def run_episode(time_s: np.ndarray, model: np.ndarray, size: np.ndarray, sla_ms: np.ndarray,
                lat: np.ndarray, item_cost: np.ndarray, solo: np.ndarray,
                energy_w: np.ndarray, has_power: bool, idle_w_sum: float,
                max_batch: int, delay_s: float, capacity: int, drop: bool,
                valid: np.ndarray, can_reject: np.ndarray, sms_f32: np.ndarray,
                clip: float, weights: np.ndarray,
                rule: int, reject_hopeless: bool, margin_f32: float, choices: np.ndarray,
                rr_next: int,
                counters: np.ndarray, state: np.ndarray, busy_s: np.ndarray,
                busy_until: np.ndarray, hist: np.ndarray, actions_out: np.ndarray) -> int:
    """Decide and simulate every request of the trace, then drain; returns the cursor of the
    round-robin rule (unchanged for the others).

    ``counters``/``state``/``busy_s``/``busy_until``/``hist`` are written in place (slots
    ``C_*``/``S_*``); they must start zeroed. ``actions_out`` (length 0 or ``len(time_s)``)
    records the actions taken. ``choices``: the action per request for ``RULE_REPLAY``, the
    index into the valid partitions per request for ``RULE_RANDOM`` (pre-drawn).
    """
    n = time_s.shape[0]
    P, M = item_cost.shape[0], item_cost.shape[1]
    cap = capacity
    qa = np.empty((P, M, cap))
    qd = np.empty((P, M, cap))
    qi = np.empty((P, M, cap))
    qs = np.empty((P, M, cap), np.int64)
    qhead = np.zeros((P, M), np.int64)
    qlen = np.zeros((P, M), np.int64)
    queued = np.zeros(P, np.int64)
    by_model = np.zeros((P, M), np.int64)
    work = np.zeros(P)
    busy = np.zeros(P, np.bool_)
    ra = np.empty((P, max_batch))
    rd = np.empty((P, max_batch))
    ri = np.empty((P, max_batch))
    rn = np.zeros(P, np.int64)
    done_t = np.full(P, math.inf)
    done_seq = np.zeros(P, np.int64)
    to_t = np.full(P, math.inf)
    to_seq = np.zeros(P, np.int64)
    seq = np.zeros(1, np.int64)
    fx = np.empty(P)  # features of the pending request (float32 values)
    fy = np.empty(P)
    last = _NBINS - 1
    record = actions_out.shape[0] > 0
    w0, w1, w2, w3, w4 = weights[0], weights[1], weights[2], weights[3], weights[4]
    g0 = 0
    l0 = 0
    d0 = 0
    e0 = 0.0
    b0 = 0.0
    total = 0.0
    inv_b = 1.0 / max_batch
    now = 0.0
    backlog = 0.0
    i = 0
    while i < n:
        t = time_s[i]
        m = model[i]
        dead = t + sla_ms[i] * 1e-3
        inv = 1e3 / sla_ms[i]
        # Arrival of request i at t (events up to t are done).
        now = t
        backlog += state[S_RATE] * (t - state[S_BACKLOG_T])
        state[S_BACKLOG_T] = t
        state[S_RATE] += inv
        counters[C_ARRIVED] += 1
        if i > 0:  # the reward of the previous step
            good = counters[C_GOOD]
            completed = counters[C_COMPLETED]
            dropped = counters[C_REJECTED] + counters[C_OVERFLOW] + counters[C_EXPIRED]
            energy = state[S_ENERGY]
            dg, dl, dd = good - g0, completed - good - l0, dropped - d0
            de, db = energy - e0, backlog - b0
            g0, l0, d0, e0, b0 = good, completed - good, dropped, energy, backlog
            total += dg - w0 * dl - w1 * dd - w2 * de - w3 * 0 - w4 * db
        # ---- the decision
        sla = dead - now
        inv_sla = 1.0 / sla if sla > 0 else 1e3
        a = P
        if rule == RULE_REPLAY:
            a = choices[i]
        elif rule == RULE_RANDOM:
            if choices[i] >= 0:
                a = nth_valid(choices[i], valid[m], P)
        elif rule == RULE_ROUND_ROBIN:
            a, rr_next = round_robin(rr_next, valid[m], P)
        elif rule == RULE_LEAST_LOADED:
            # queue and busy per partition, as the env's observation (clipped, float32).
            for p in range(P):
                q = queued[p] * inv_b
                q = _f32(clip if q > clip else q)
                b = (busy_until[p] - now) * inv_sla if busy[p] else 0.0
                b = _f32(clip if b > clip else b)
                fx[p] = least_loaded_key(q, b)
            a = least_loaded(fx, sms_f32, valid[m])
        else:
            # finish (and slack = 1 - finish) per partition, as the env's observation.
            for p in range(P):
                v = ((busy_until[p] - now if busy[p] else 0.0) + work[p] + solo[p, m]) * inv_sla
                fx[p] = _f32(clip if v > clip else v)
                s = 1.0 - v
                s = -clip if s < -clip else s
                fy[p] = _f32(clip if s > clip else s)
            if rule == RULE_EARLIEST:
                a = earliest(fx, valid[m], reject_hopeless, can_reject[m], 0.0, 1.0)
            elif rule == RULE_GPULET:
                a = best_fit(fy, sms_f32, valid[m], margin_f32, reject_hopeless, can_reject[m])
            else:  # RULE_MAX_SLACK
                a = most_slack(fy, valid[m], reject_hopeless, can_reject[m])
        if record:
            actions_out[i] = a
        # ---- apply it (GpuServingSim._loop with decide)
        if a == P:
            counters[C_REJECTED] += 1
            state[S_RATE] -= inv
        elif 0 <= a < P and valid[m, a]:
            s = size[i]
            q = queued[a] + s
            if q > cap:
                counters[C_OVERFLOW] += 1
                state[S_RATE] -= inv
            else:
                pos = qhead[a, m] + qlen[a, m]
                if pos >= cap:
                    pos -= cap
                qa[a, m, pos] = t
                qd[a, m, pos] = dead
                qi[a, m, pos] = inv
                qs[a, m, pos] = s
                qlen[a, m] += 1
                queued[a] = q
                by_model[a, m] += s
                work[a] += s * item_cost[a, m]
                if not busy[a] and (to_t[a] == math.inf or by_model[a, m] >= max_batch):
                    _dispatch(a, False, now, lat, item_cost, solo, energy_w, has_power,
                              max_batch, delay_s, drop, qa, qd, qi, qs, qhead, qlen, queued,
                              by_model, work, busy, busy_until, ra, rd, ri, rn, done_t,
                              done_seq, to_t, to_seq, seq, counters, state, busy_s)
        else:  # a masked or out-of-range action: stop with the request's index
            counters[C_STEPS] = i
            state[S_NOW] = now
            return -1
        counters[C_STEPS] += 1
        # ---- events up to the next arrival (all of them after the last: the drain)
        horizon = time_s[i + 1] if i + 1 < n else math.inf
        while True:
            p = -1
            et = math.inf
            es = 0
            is_done = False
            for r in range(P):
                dt = done_t[r]
                if dt < et or (dt == et and dt != math.inf and done_seq[r] < es):
                    p, et, es, is_done = r, dt, done_seq[r], True
                tt = to_t[r]
                if tt < et or (tt == et and tt != math.inf and to_seq[r] < es):
                    p, et, es, is_done = r, tt, to_seq[r], False
            if p < 0 or et > horizon:
                break
            now = et
            backlog += state[S_RATE] * (now - state[S_BACKLOG_T])
            state[S_BACKLOG_T] = now
            if is_done:
                done_t[p] = math.inf
                nb = rn[p]
                rate = state[S_RATE]
                good = 0
                htot = state[S_HIST_TOTAL]
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
                state[S_HIST_TOTAL] = htot
                state[S_RATE] = rate
                counters[C_COMPLETED] += nb
                counters[C_GOOD] += good
                rn[p] = 0
                busy[p] = False
                if queued[p]:
                    _dispatch(p, False, now, lat, item_cost, solo, energy_w, has_power,
                              max_batch, delay_s, drop, qa, qd, qi, qs, qhead, qlen, queued,
                              by_model, work, busy, busy_until, ra, rd, ri, rn, done_t,
                              done_seq, to_t, to_seq, seq, counters, state, busy_s)
            else:
                to_t[p] = math.inf
                _dispatch(p, True, now, lat, item_cost, solo, energy_w, has_power,
                          max_batch, delay_s, drop, qa, qd, qi, qs, qhead, qlen, queued,
                          by_model, work, busy, busy_until, ra, rd, ri, rn, done_t,
                          done_seq, to_t, to_seq, seq, counters, state, busy_s)
        i += 1
    # finalize_energy, then the last step's reward
    if has_power:
        state[S_ENERGY] += idle_w_sum * now
    good = counters[C_GOOD]
    completed = counters[C_COMPLETED]
    dropped = counters[C_REJECTED] + counters[C_OVERFLOW] + counters[C_EXPIRED]
    energy = state[S_ENERGY]
    if n:
        total += (good - g0) - w0 * (completed - good - l0) - w1 * (dropped - d0) \
            - w2 * (energy - e0) - w3 * 0 - w4 * (backlog - b0)
    state[S_NOW] = now
    state[S_BACKLOG] = backlog
    state[S_RETURN] = total
    return rr_next
