"""The cluster's devices as one compiled bank: every device's passive event loop in numba.

:class:`DeviceBank` keeps the state of every :class:`~envs.sim.device.shared.SharedGpuSim` of a
:class:`~envs.sim.cluster.sim.ClusterSim` in arrays (per slot, per device, per (slot, model)
ring-buffer queues) and :func:`advance` hands the deliveries due to their devices and runs every
device with an event due to the decision time in **one** kernel call per decision: the
operations of ``SharedGpuSim.deliver`` and ``SharedGpuSim.run_passive`` (BATCH_DONE,
BATCH_TIMEOUT and SLOT_UP events, the batcher, the backlog integral, busy time and energy, the
shared latency histogram, the interference reshape of shared devices), in the same order and
with the same floats as the Python loop (the code is that of
:func:`envs.sim.device.compiled_shared.run_interval`, per device). The cluster's mirrors
(``sf``/``df`` of :mod:`envs.sim.cluster.kernels`) are written by the same call, so nothing is
copied from the device objects per decision.

A device's events order by ``(time, seq)`` as its heap pops them (at most one batch completion,
one timeout and one ``SLOT_UP`` per slot; ``seq`` numbered per device as its
``EventQueue``). The ``SharedGpuSim`` objects are not moved while the bank runs; :meth:`
DeviceBank.sync` writes the bank's state into them (``ClusterSim.devices`` does, for readers
off the hot path).

Only for devices with one priority class, no preemption and no interference or interference
the kernel computes (:attr:`SharedGpuSim.compiled_ok`), and requests of 1 to ``max_batch``
items (:func:`usable`); ``ClusterSim`` keeps its other paths otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.sim.cluster import kernels as kn
from envs.sim.core import Event
from envs.sim.device import compiled_shared as cs
from envs.sim.device.serving import BATCH_DONE, BATCH_TIMEOUT
from envs.sim.device.shared import SLOT_UP, SharedGpuSim
from envs.sim.jit import NO_NRT, njit
from envs.sim.metrics import _INV_LOG_G, _LO_S, _NBINS, LatencyHistogram
from envs.sim.packing import pack, unpack

# Rows of the per-slot floats ``F``: running batch's end, up at, queued work (and of level 0),
# remaining solo work and its time, slowdown factor, busy seconds, the pending events' times
# (done, timeout, slot up), busy watts above idle.
F_BU, F_UP, F_WORK, F_WLEV, F_REM, F_RT, F_FAC, F_BUSYS, F_DONE, F_TO, F_UPT, F_EW = range(12)
N_F = 12
# Rows of the per-slot ints ``SI``: queued items, busy, running model, requests and items of the
# running batch, its job code, the job code _reshape saw last, the pending events' seqs,
# interference domain, the models held on the slot (bit k: model k is in transit to it, queued
# or running there; what makes a resident model not evictable, ``ClusterSim._rooms``).
I_QD, I_BUSY, I_RM, I_RN, I_RIT, I_JOB, I_LAST, I_DSEQ, I_TSEQ, I_USEQ, I_DOM, I_HELD = range(12)
N_I = 12
# Rows of the per-device ints ``E``: event seq, last key valid, shaped, has power, arrived,
# completed, good, overflow, expired.
# completed, good, overflow, expired; whether listed in ``RAN`` this call.
E_SEQ, E_LASTOK, E_SHAPED, E_POWER, E_ARRIVED, E_COMP, E_GOOD, E_OVER, E_EXP, E_MARK = range(10)
N_E = 10
# Rows of the per-device floats ``G``: now, time of the next event (inf: none).
G_NOW, G_NEV = range(2)
N_G = 2
# Totals ``T`` over the devices: completed, good, rejected, overflow, expired.
T_COMPLETED, T_GOOD, T_REJECTED, T_OVERFLOW, T_EXPIRED = range(5)
# Config ints ``C``: max_batch, drop_expired, jk, queue_capacity, whether ``I_HELD`` is kept
# (at most 62 models: one bit each); floats ``H``: queue delay, the latency histogram's total.
C_B, C_DROP, C_JK, C_CAP, C_HELD = range(5)
#: The most models ``I_HELD``'s bits can hold.
HELD_MAX = 62
H_DELAY, H_TOTAL = range(2)

_INF = math.inf


def sizes_fit(sizes: np.ndarray, max_batch: int) -> bool:
    """Whether every request size is 1 to ``max_batch`` (what a bank's queues hold)."""
    return not len(sizes) or (int(np.min(sizes)) >= 1 and int(np.max(sizes)) <= max_batch)


def usable(devices: Sequence[SharedGpuSim], sizes: np.ndarray) -> bool:
    """Whether a bank can run these devices on a trace of request ``sizes``."""
    if not kn.AVAILABLE or not devices:
        return False
    B = devices[0]._max_batch
    if not sizes_fit(sizes, B):
        return False
    return all(dev.compiled_ok and dev._max_batch == B and not dev.reconfigurations
               and dev.pending is None for dev in devices)


@njit(cache=True, inline="always")
def _dispatch(d: int, s: int, force: bool, now: float, F: np.ndarray, SI: np.ndarray,
              BM: np.ndarray, QF: np.ndarray, QS: np.ndarray, QH: np.ndarray, RF: np.ndarray,
              RS: np.ndarray, LAT: np.ndarray, LL: np.ndarray, SC: np.ndarray, df: np.ndarray,
              E: np.ndarray, T: np.ndarray, C: np.ndarray, H: np.ndarray) -> None:
    """``SharedGpuSim._try_dispatch(p, force)`` on slot ``s`` of device ``d`` (one level, no
    reconfiguration), its recursion over all-expired batches as a loop."""
    M = BM.shape[1]
    cap = QF.shape[3]
    B = C[C_B]
    drop = C[C_DROP] != 0
    while True:
        if SI[I_BUSY, s] != 0 or SI[I_QD, s] == 0:
            return
        if F[F_UP, s] > now:
            return
        m = -1
        oldest = _INF
        for k in range(M):
            if QH[1, s, k] > 0:
                t0 = QF[0, s, k, QH[0, s, k]]
                if t0 < oldest:
                    oldest = t0
                    m = k
        # GpuServingSim._due
        if not force and BM[s, m] < B:
            due = oldest + H[H_DELAY]
            if now < due:
                if F[F_TO, s] == _INF:
                    E[E_SEQ, d] += 1
                    F[F_TO, s] = due
                    SI[I_TSEQ, s] = E[E_SEQ, d]
                return
        F[F_TO, s] = _INF
        # take()
        items = 0
        removed = 0
        expired = 0
        nb = 0
        solo_finish = now + SC[0, s, m]
        hd = QH[0, s, m]
        ln = QH[1, s, m]
        rate = df[kn.R, d]
        while ln > 0:
            sz = QS[s, m, hd]
            if nb > 0 and items + sz > B:
                break
            removed += sz
            dl = QF[1, s, m, hd]
            if drop and dl < solo_finish:
                expired += 1
                rate -= QF[2, s, m, hd]
            else:
                RF[0, s, nb] = QF[0, s, m, hd]
                RF[1, s, nb] = dl
                RF[2, s, nb] = QF[2, s, m, hd]
                RS[s, nb] = sz
                nb += 1
                items += sz
            hd += 1
            if hd == cap:
                hd = 0
            ln -= 1
        df[kn.R, d] = rate
        QH[0, s, m] = hd
        QH[1, s, m] = ln
        cost = SC[1, s, m]
        if removed:
            F[F_WLEV, s] -= removed * cost
        # GpuServingSim._dequeued
        left = SI[I_QD, s] - removed
        SI[I_QD, s] = left
        BM[s, m] -= removed
        F[F_WORK, s] = F[F_WORK, s] - removed * cost if left else 0.0
        T[T_EXPIRED] += expired
        E[E_EXP, d] += expired
        if not left:
            F[F_WLEV, s] = 0.0
        if nb == 0:  # everything expired: the other models
            continue
        # GpuServingSim._start_batch
        L = LL[s, m]
        dur = LAT[s, m, (items if items < L else L) - 1]
        end = now + dur
        SI[I_BUSY, s] = 1
        F[F_BU, s] = end
        SI[I_RM, s] = m
        SI[I_RN, s] = nb
        F[F_BUSYS, s] += dur
        if E[E_POWER, d]:
            df[kn.E, d] += F[F_EW, s] * dur
        E[E_SEQ, d] += 1
        F[F_DONE, s] = end
        SI[I_DSEQ, s] = E[E_SEQ, d]
        F[F_REM, s] = dur
        F[F_RT, s] = now
        SI[I_RIT, s] = items
        F[F_FAC, s] = 1.0
        SI[I_JOB, s] = m * C[C_JK] + items
        E[E_LASTOK, d] = 0
        return


@njit(cache=True, inline="always")
def _reshape(d: int, s0: int, s1: int, now: float, F: np.ndarray, SI: np.ndarray,
             COMPAT: np.ndarray, ROWS: np.ndarray, CONSTS: np.ndarray, E: np.ndarray,
             fnew: np.ndarray) -> None:
    """``SharedGpuSim._reshape`` of device ``d`` (slots ``s0:s1``), as run_interval's."""
    if not E[E_SHAPED, d]:
        return
    if E[E_LASTOK, d] == 1:
        same = True
        for q in range(s0, s1):
            if SI[I_JOB, q] != SI[I_LAST, q]:
                same = False
                break
        if same:
            return
    E[E_LASTOK, d] = 1
    count = 0
    for q in range(s0, s1):
        SI[I_LAST, q] = SI[I_JOB, q]
        fnew[q - s0] = 1.0
        if SI[I_BUSY, q] and SI[I_DOM, q] != cs.DOM_NONE:
            count += 1
    if count >= 2:
        busy = SI[I_BUSY, s0:s1]
        rm = SI[I_RM, s0:s1]
        rit = SI[I_RIT, s0:s1]
        rows = ROWS[s0:s1]
        compat = COMPAT[s0:s1]
        consts = CONSTS[d]
        for q in range(s1 - s0):
            dom = SI[I_DOM, s0 + q]
            if busy[q] and dom != cs.DOM_NONE:
                anyco, a, b = cs.co_sums(q, dom, compat, busy, rm, rit, rows)
                if anyco:
                    fnew[q] = cs.co_factor(rows, q, rm[q], rit[q], dom, a, b, consts)
    for q in range(s0, s1):
        if not SI[I_BUSY, q]:
            continue
        new = fnew[q - s0]
        old = F[F_FAC, q]
        if new == old:
            continue
        left = F[F_REM, q] - (now - F[F_RT, q]) / old
        if left < 0.0:
            left = 0.0
        F[F_REM, q] = left
        F[F_RT, q] = now
        F[F_FAC, q] = new
        end = now + left * new
        E[E_SEQ, d] += 1
        F[F_DONE, q] = end
        SI[I_DSEQ, q] = E[E_SEQ, d]
        F[F_BUSYS, q] += end - F[F_BU, q]
        F[F_BU, q] = end


@njit(cache=True)
def _run(d: int, until: float, final: bool, F: np.ndarray, SI: np.ndarray, BM: np.ndarray,
         QF: np.ndarray, QS: np.ndarray, QH: np.ndarray, RF: np.ndarray, RS: np.ndarray,
         LAT: np.ndarray, LL: np.ndarray, SC: np.ndarray, COMPAT: np.ndarray, ROWS: np.ndarray,
         CONSTS: np.ndarray, bounds: np.ndarray, df: np.ndarray, E: np.ndarray, G: np.ndarray,
         T: np.ndarray, C: np.ndarray, H: np.ndarray, hist: np.ndarray,
         fnew: np.ndarray, HL: np.ndarray) -> None:
    """Device ``d``'s events up to ``until`` (``SharedGpuSim._loop(None, until)`` of a passive
    device); ``final``: then its clock and backlog to ``until`` (not in a drain)."""
    s0 = bounds[d]
    s1 = bounds[d + 1]
    last = _NBINS - 1
    while True:
        p = -1
        et = _INF
        es = 0
        kind = 0
        for r in range(s0, s1):
            t = F[F_DONE, r]
            if t < et or (t == et and t != _INF and SI[I_DSEQ, r] < es):
                p, et, es, kind = r, t, SI[I_DSEQ, r], 0
            t = F[F_TO, r]
            if t < et or (t == et and t != _INF and SI[I_TSEQ, r] < es):
                p, et, es, kind = r, t, SI[I_TSEQ, r], 1
            t = F[F_UPT, r]
            if t < et or (t == et and t != _INF and SI[I_USEQ, r] < es):
                p, et, es, kind = r, t, SI[I_USEQ, r], 2
        if p < 0 or et > until:
            G[G_NEV, d] = et
            break
        now = et
        df[kn.B, d] += df[kn.R, d] * (now - df[kn.T, d])
        df[kn.T, d] = now
        G[G_NOW, d] = now
        if kind == 0:  # BATCH_DONE: GpuServingSim._complete
            F[F_DONE, p] = _INF
            nb = SI[I_RN, p]
            rate = df[kn.R, d]
            good = 0
            for r in range(nb):
                rate -= RF[2, p, r]
                if now <= RF[1, p, r] + 1e-12:
                    good += 1
            df[kn.R, d] = rate
            htot = H[H_TOTAL]
            for r in range(nb):
                lt = now - RF[0, p, r]
                htot += lt
                k = (int(math.log(lt / _LO_S) * _INV_LOG_G) + 1) if lt > _LO_S else 0
                if k > last:
                    k = last
                hist[k] += 1
                if HL[0] >= 0:
                    if HL[0] + 1 < HL.shape[0]:
                        HL[0] += 1
                        HL[HL[0]] = k
                    else:
                        HL[0] = -1  # too many: the reader copies the whole histogram
            H[H_TOTAL] = htot
            T[T_COMPLETED] += nb
            T[T_GOOD] += good
            E[E_COMP, d] += nb
            E[E_GOOD, d] += good
            SI[I_RN, p] = 0
            SI[I_BUSY, p] = 0
            SI[I_RM, p] = -1
            SI[I_JOB, p] = -1
            if SI[I_QD, p]:
                _dispatch(d, p, False, now, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, df, E,
                          T, C, H)
            _reshape(d, s0, s1, now, F, SI, COMPAT, ROWS, CONSTS, E, fnew)
        elif kind == 1:  # BATCH_TIMEOUT
            F[F_TO, p] = _INF
            _dispatch(d, p, True, now, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, df, E, T,
                      C, H)
            _reshape(d, s0, s1, now, F, SI, COMPAT, ROWS, CONSTS, E, fnew)
        else:  # SLOT_UP
            F[F_UPT, p] = _INF
            if SI[I_QD, p] and not SI[I_BUSY, p]:
                _dispatch(d, p, False, now, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, df, E,
                          T, C, H)
                _reshape(d, s0, s1, now, F, SI, COMPAT, ROWS, CONSTS, E, fnew)
    if final:
        df[kn.B, d] += df[kn.R, d] * (until - df[kn.T, d])
        df[kn.T, d] = until
        G[G_NOW, d] = until


@njit(cache=True, inline="always")
def _mirror(d: int, bounds: np.ndarray, F: np.ndarray, SI: np.ndarray, BM: np.ndarray,
            sf: np.ndarray, sm: np.ndarray, E: np.ndarray, RAN: np.ndarray,
            C: np.ndarray) -> None:
    """ClusterSim._pull's slot rows of device ``d``; ``d`` listed in ``RAN`` (once). A slot's
    room (``ROOM_OK``) is marked stale only where the models held on it (``I_HELD``: in
    transit, queued or running) changed: the room depends on the device only through them
    (where a query is routed, :func:`advance` marks it stale and adds its model)."""
    if not E[E_MARK, d]:
        E[E_MARK, d] = 1
        RAN[0] += 1
        RAN[RAN[0]] = d
    M = BM.shape[1]
    keep = C[C_HELD] != 0
    for s in range(bounds[d], bounds[d + 1]):
        sf[kn.BU, s] = F[F_BU, s]
        sf[kn.UP, s] = F[F_UP, s]
        sf[kn.QW, s] = F[F_WORK, s]
        sf[kn.BS, s] = F[F_BUSYS, s]
        sf[kn.BUSY, s] = 1.0 if SI[I_BUSY, s] else 0.0
        sf[kn.QI, s] = SI[I_QD, s]
        if keep:
            held = 0
            for k in range(M):
                if BM[s, k] != 0 or sm[kn.TRANSIT, k, s] != 0.0:
                    held |= 1 << k
            rm = SI[I_RM, s]
            if rm >= 0:
                held |= 1 << rm
            if held != SI[I_HELD, s]:
                SI[I_HELD, s] = held
                sf[kn.ROOM_OK, s] = 0.0
        else:
            sf[kn.ROOM_OK, s] = 0.0


@njit(cache=True, error_model="numpy", **NO_NRT)
def rooms(n: int, now: float, need: float, sf: np.ndarray, sm: np.ndarray, fp: np.ndarray,
          LRU: np.ndarray, SI: np.ndarray, until_of: np.ndarray, mask: np.ndarray,
          out: np.ndarray) -> int:
    """``ClusterSim._rooms`` for the ``n`` slots listed in ``sf``'s row ``STALE`` (where
    ``I_HELD`` and :attr:`DeviceBank.LRU` are kept): each slot's memory after evicting its
    evictable models (resident, not held, loaded by ``now``; their footprints ``fp`` added in
    LRU order, as there) into the row ``ROOM`` (``ROOM_OK`` set), its ``mask`` entry, and
    when its room changes by itself into ``until_of``; the slots whose ``until_of`` changed to
    a finite time listed in ``out`` (in order: the caller pushes them on its heap). Returns
    their number."""
    k_out = 0
    for i in range(n):
        s = int(sf[kn.STALE, i])
        free = sf[kn.CAP, s] - sf[kn.MEM, s]
        held = SI[I_HELD, s]
        until = _INF
        for j in range(LRU.shape[1]):
            k = LRU[s, j]
            if k < 0:
                break
            if not (held >> k) & 1:
                r = sm[kn.READY, k, s]
                if r <= now:
                    free += fp[k]
                elif r < until:
                    until = r
        sf[kn.ROOM, s] = free
        sf[kn.ROOM_OK, s] = 1.0
        mask[s] = need <= free
        if until != until_of[s]:
            until_of[s] = until
            if until < _INF:
                out[k_out] = s
                k_out += 1
    return k_out


@njit(cache=True, **NO_NRT)
def advance(t: float, n: int, drain: bool, rs: int, rm: int, when1: float, arr1: float,
            dead1: float, inv1: float, d1: int, s1_: int, m1: int, sz1: int, DLF: np.ndarray,
            DLI: np.ndarray,
            F: np.ndarray,
            SI: np.ndarray, BM: np.ndarray, QF: np.ndarray, QS: np.ndarray, QH: np.ndarray,
            RF: np.ndarray, RS: np.ndarray, LAT: np.ndarray, LL: np.ndarray, SC: np.ndarray,
            COMPAT: np.ndarray, ROWS: np.ndarray, CONSTS: np.ndarray, bounds: np.ndarray,
            df: np.ndarray, sf: np.ndarray, sm: np.ndarray, sb: np.ndarray, E: np.ndarray,
            G: np.ndarray, T: np.ndarray, C: np.ndarray, H: np.ndarray, hist: np.ndarray,
            fnew: np.ndarray, RAN: np.ndarray, HL: np.ndarray, LRU: np.ndarray) -> None:
    """First the mirrors of a query of model ``rm`` routed to slot ``rs`` (``rs < 0``: none)
    as ``ClusterSim.route`` writes them (``sm``'s ``TRANSIT``, ``sf``'s ``TN``, ``EXTRA_OK``
    and ``ROOM_OK``, the models held there). Then the ``n`` deliveries (``DLF[:, i]``: time,
    arrival, deadline, ``1/SLA``; ``DLI[:, i]``:
    device, slot, model, size; ``n == -1``: the one in ``when1 .. sz1``), each as
    ``SharedGpuSim.deliver``, in order (first the mirrors of what is in transit: ``sm``'s
    ``TRANSIT`` and ``sf``'s ``TN``, ``EXTRA_OK`` and ``ROOM_OK`` as ``ClusterSim._deliver``
    writes them); then every device
    with an event due by ``t`` runs to ``t`` (``drain``: every device runs all its events, as
    ``advance`` of a drained device). The other devices' clocks and backlogs are left where
    they are: the caller moves them to ``t`` (``df``'s ``B`` and ``T``: :func:`kernels.accrue`,
    the same operations on every device, which leave one already at ``t`` as it is; ``G``'s
    ``G_NOW``: a device's clock is the larger of it and the last ``t``, :meth:`DeviceBank.sync`).
    The mirrors ``df`` (backlog, its clock, rate, energy) are the devices' own; ``sf``'s slot
    rows are written for every device that ran, and those devices listed in ``RAN`` (``RAN[0]``
    of them from ``RAN[1]``), and the histogram bins it added to in ``HL`` (``HL[0]`` of them
    from ``HL[1]``; -1: more than ``HL`` holds)."""
    if rs >= 0:
        sm[kn.TRANSIT, rm, rs] += 1.0
        sf[kn.TN, rs] += 1.0
        kn.extra_stale(sf, rs)
        sf[kn.ROOM_OK, rs] = 0.0
        if C[C_HELD]:
            SI[I_HELD, rs] |= 1 << rm
            # the slot's resident models in LRU order: the evicted ones (RES 0) out, ``rm``
            # the most recent (ClusterSim.route's dict order)
            j = 0
            for i in range(LRU.shape[1]):
                k = LRU[rs, i]
                if k < 0:
                    break
                if k != rm and sb[kn.RES, k, rs] != 0:
                    LRU[rs, j] = k
                    j += 1
            LRU[rs, j] = rm
            for i in range(j + 1, LRU.shape[1]):
                if LRU[rs, i] < 0:
                    break
                LRU[rs, i] = -1
    HL[0] = 0
    D = bounds.shape[0] - 1
    for i in range(RAN[0]):
        E[E_MARK, RAN[1 + i]] = 0
    RAN[0] = 0
    capq = QF.shape[3]
    B = C[C_B]
    for i in range(1 if n < 0 else n):
        if n < 0:
            d, s, m, sz = d1, s1_, m1, sz1
            when, arr, dead, inv = when1, arr1, dead1, inv1
        else:
            d = DLI[0, i]
            s = DLI[1, i]
            m = DLI[2, i]
            sz = DLI[3, i]
            when = DLF[0, i]
            arr = DLF[1, i]
            dead = DLF[2, i]
            inv = DLF[3, i]
        sm[kn.TRANSIT, m, s] -= 1.0
        sf[kn.TN, s] -= 1.0
        kn.extra_stale(sf, s)  # (ROOM_OK: by _mirror, where the models held changed)
        s0 = bounds[d]
        s1 = bounds[d + 1]
        # run_passive(when)
        if G[G_NEV, d] <= when:
            _run(d, when, True, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, COMPAT, ROWS,
                 CONSTS, bounds, df, E, G, T, C, H, hist, fnew, HL)
        else:
            df[kn.B, d] += df[kn.R, d] * (when - df[kn.T, d])
            df[kn.T, d] = when
            G[G_NOW, d] = when
        # arrive(p, m, req) without its checks
        now = G[G_NOW, d]
        df[kn.B, d] += df[kn.R, d] * (now - df[kn.T, d])
        df[kn.T, d] = now
        E[E_ARRIVED, d] += 1
        df[kn.R, d] += inv
        # SharedGpuSim._admit with one level, no preemption
        q = SI[I_QD, s] + sz
        if q > C[C_CAP]:
            T[T_OVERFLOW] += 1
            E[E_OVER, d] += 1
            df[kn.R, d] -= inv
        else:
            pos = QH[0, s, m] + QH[1, s, m]
            if pos >= capq:
                pos -= capq
            QF[0, s, m, pos] = arr
            QF[1, s, m, pos] = dead
            QF[2, s, m, pos] = inv
            QS[s, m, pos] = sz
            QH[1, s, m] += 1
            SI[I_QD, s] = q
            BM[s, m] += sz
            w = sz * SC[1, s, m]
            F[F_WORK, s] += w
            F[F_WLEV, s] += w
            if not SI[I_BUSY, s] and (F[F_TO, s] == _INF or BM[s, m] >= B):
                _dispatch(d, s, False, now, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, df, E,
                          T, C, H)
                if E[E_SHAPED, d] and SI[I_BUSY, s]:
                    _reshape(d, s0, s1, now, F, SI, COMPAT, ROWS, CONSTS, E, fnew)
        nev = _INF
        for r in range(s0, s1):
            if F[F_DONE, r] < nev:
                nev = F[F_DONE, r]
            if F[F_TO, r] < nev:
                nev = F[F_TO, r]
            if F[F_UPT, r] < nev:
                nev = F[F_UPT, r]
        G[G_NEV, d] = nev
        _mirror(d, bounds, F, SI, BM, sf, sm, E, RAN, C)
    for d in range(D):
        if drain:
            _run(d, _INF, False, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, COMPAT, ROWS,
                 CONSTS, bounds, df, E, G, T, C, H, hist, fnew, HL)
            _mirror(d, bounds, F, SI, BM, sf, sm, E, RAN, C)
        elif G[G_NEV, d] <= t:
            _run(d, t, True, F, SI, BM, QF, QS, QH, RF, RS, LAT, LL, SC, COMPAT, ROWS,
                 CONSTS, bounds, df, E, G, T, C, H, hist, fnew, HL)
            _mirror(d, bounds, F, SI, BM, sf, sm, E, RAN, C)


class DeviceBank:
    """The state of a cluster's devices in arrays (see the module docstring).

    Built from the devices' state (any moment; a cluster builds it at time 0)."""

    _ARRAYS = ("F", "SI", "BM", "QF", "QS", "QH", "RF", "RS", "E", "G", "T", "H", "hist", "RAN",
               "HL", "LRU")

    def __init__(self, devices: Sequence[SharedGpuSim], bounds: np.ndarray,
                 latency: LatencyHistogram) -> None:
        D = len(devices)
        S = int(bounds[-1])
        M = devices[0].n_models
        B = devices[0]._max_batch
        cap = devices[0]._capacity
        self.bounds = bounds
        #: The devices' largest batch (the largest request the queues hold).
        self.max_batch = B
        P_max = max(dev.n_partitions for dev in devices)
        L = max(len(r) for dev in devices for row in dev.latency for r in row)
        self.LAT = np.zeros((S, M, L))
        self.LL = np.ones((S, M), np.int64)
        self.SC = np.zeros((2, S, M))
        self.COMPAT = np.zeros((S, P_max), np.bool_)
        rows = []
        for dev in devices:
            tabs = dev._kernel_tables() if dev._slowdown is not None else None
            rows.append(None if tabs is None else tabs[2])
        NI = max([r.shape[2] for r in rows if r is not None], default=1)
        self.ROWS = np.zeros((S, M, NI, cs.N_ROW))
        self.CONSTS = np.zeros((D, cs.N_CONSTS))
        #: Whether ``I_HELD`` is kept (else every slot of a device that ran is marked stale).
        self.keeps_held = M <= HELD_MAX
        self.C = np.array([B, int(devices[0]._drop_expired), devices[0]._jk, cap,
                           int(self.keeps_held)], np.int64)
        self.F = np.zeros((N_F, S))
        self.SI = np.zeros((N_I, S), np.int64)
        #: Where ``I_HELD`` is kept: per slot, its resident models in LRU order (least
        #: recently used first; -1 after the last), as ``ClusterSim.resident`` (set by
        #: :meth:`set_resident`; the advance kernel moves it for each routed query).
        self.LRU = np.full((S, M) if self.keeps_held else (1, 1), -1, np.int8)
        self.BM = np.zeros((S, M), np.int64)
        self.QF = np.zeros((3, S, M, cap))
        # request sizes (1 to B): int16 where they fit (a quarter of the bytes to zero per
        # episode; 18.7 MB as int64 at 1,024 devices)
        self.QS = np.zeros((S, M, cap), np.int16 if B <= 32767 else np.int64)
        self.QH = np.zeros((2, S, M), np.int64)
        self.RF = np.zeros((3, S, B))
        self.RS = np.zeros((S, B), np.int64)
        self.E = np.zeros((N_E, D), np.int64)
        self.G = np.zeros((N_G, D))
        self.T = np.zeros(5, np.int64)
        self.H = np.array([devices[0]._delay_s, latency.total_s])
        self.hist = np.array(latency.counts, np.int64)
        self.fnew = np.ones(max(P_max, 1))
        self.DLF = np.zeros((4, 8))
        self.DLI = np.zeros((4, 8), np.int64)
        self.RAN = np.zeros(D + 1, np.int64)
        self.HL = np.zeros(1025, np.int64)
        #: advance's compiled entry point (found at the first call; not pickled), and its
        #: array arguments (built at the first call and when one is replaced; not pickled).
        self._ep: Any = None
        self._tail: tuple[np.ndarray, ...] | None = None
        for d, dev in enumerate(devices):
            s0 = int(bounds[d])
            for p in range(dev.n_partitions):
                s = s0 + p
                for m in range(M):
                    lt = dev.latency[p][m]
                    self.LL[s, m] = len(lt)
                    self.LAT[s, m, :len(lt)] = lt
                    self.SC[0, s, m] = dev.solo_s[p][m]
                    self.SC[1, s, m] = dev._item_cost[p][m]
            tabs = dev._kernel_tables() if dev._slowdown is not None else None
            if tabs is not None:
                dom, compat, jr, consts = tabs
                P = dev.n_partitions
                self.SI[I_DOM, s0:s0 + P] = dom
                self.COMPAT[s0:s0 + P, :P] = compat
                self.ROWS[s0:s0 + P, :, :jr.shape[2]] = np.nan_to_num(jr, nan=0.0)
                self.CONSTS[d] = consts
            self.load(d, dev)

    def load(self, d: int, dev: SharedGpuSim) -> None:
        """Device ``d``'s state from ``dev`` (as run_until_compiled converts it)."""
        s0 = int(self.bounds[d])
        F, SI = self.F, self.SI
        for p in range(dev.n_partitions):
            s = s0 + p
            for m in range(dev.n_models):
                dq = dev.lqueues[p][m][0]
                self.QH[0, s, m] = 0
                self.QH[1, s, m] = len(dq)
                for k, r in enumerate(dq):
                    self.QF[:, s, m, k] = r[:3]
                    self.QS[s, m, k] = r[3]
                self.QF[:, s, m, len(dq):] = 0.0
                self.QS[s, m, len(dq):] = 0
                self.BM[s, m] = dev.queued_by_model[p][m]
            batch = dev._running[p]
            self.RF[:, s] = 0.0
            self.RS[s] = 0
            for k, r in enumerate(batch):
                self.RF[:, s, k] = r[:3]
                self.RS[s, k] = r[3]
            F[F_BU, s] = dev.busy_until[p]
            F[F_UP, s] = dev.up_at[p]
            F[F_WORK, s] = dev.queued_work_s[p]
            F[F_WLEV, s] = dev.queued_work_level[p][0]
            F[F_REM, s] = dev._rem[p]
            F[F_RT, s] = dev._rt[p]
            F[F_FAC, s] = dev._factor[p]
            F[F_BUSYS, s] = dev.counters.busy_s[p]
            F[F_DONE, s] = F[F_TO, s] = F[F_UPT, s] = _INF
            F[F_EW, s] = dev._energy_w[p] if dev._energy_w is not None else 0.0
            SI[I_QD, s] = dev.queued_items[p]
            SI[I_BUSY, s] = dev.busy[p]
            SI[I_RM, s] = dev.running_model[p]
            SI[I_RN, s] = len(batch)
            job = dev._job[p]
            SI[I_RIT, s] = job[1] if job is not None else 0
            SI[I_JOB, s] = dev._jobcode[p]
            last = dev._last_key
            SI[I_LAST, s] = last[p] if last is not None else -1
            # the models held (no query is in transit where a bank is built: at time 0)
            held = 0
            if self.keeps_held:
                for m in range(dev.n_models):
                    if dev.queued_by_model[p][m]:
                        held |= 1 << m
                if dev.running_model[p] >= 0:
                    held |= 1 << dev.running_model[p]
            SI[I_HELD, s] = held
        nev = _INF
        for when, prio, seq, ev in dev.events.heap:
            if ev.cancelled:
                continue
            s = s0 + ev.target
            if prio != 0 or ev.kind not in (BATCH_DONE, BATCH_TIMEOUT, SLOT_UP):
                raise RuntimeError("DeviceBank: an event the bank does not hold")
            row, srow = {BATCH_DONE: (F_DONE, I_DSEQ), BATCH_TIMEOUT: (F_TO, I_TSEQ),
                         SLOT_UP: (F_UPT, I_USEQ)}[ev.kind]
            if F[row, s] != _INF:
                raise RuntimeError("DeviceBank: two events of a kind on one slot")
            F[row, s] = when
            SI[srow, s] = seq
            nev = min(nev, when)
        E = self.E
        E[E_SEQ, d] = dev.events._seq
        E[E_LASTOK, d] = dev._last_key is not None
        E[E_SHAPED, d] = dev._slowdown is not None
        E[E_POWER, d] = dev._energy_w is not None
        c = dev.counters
        E[E_ARRIVED, d] = c.arrived
        E[E_COMP, d] = c.completed
        E[E_GOOD, d] = c.good
        E[E_OVER, d] = c.dropped_overflow
        E[E_EXP, d] = c.dropped_expired
        if c.dropped_rejected:
            raise RuntimeError("DeviceBank: a device that rejected requests")
        T = self.T
        T[T_COMPLETED] += c.completed
        T[T_GOOD] += c.good
        T[T_OVERFLOW] += c.dropped_overflow
        T[T_EXPIRED] += c.dropped_expired
        self.G[G_NOW, d] = dev.events.now
        self.G[G_NEV, d] = nev

    def set_resident(self, resident: Sequence[Sequence[int]]) -> None:
        """:attr:`LRU` from the slots' resident models (each in LRU order)."""
        if self.keeps_held:
            self.LRU[:] = -1
            for s, r in enumerate(resident):
                self.LRU[s, :len(r)] = list(r)

    def copy(self) -> DeviceBank:
        """A copy whose state arrays are its own (the constant tables shared)."""
        new = object.__new__(DeviceBank)
        new.__dict__.update(self.__dict__)
        for key in self._ARRAYS:
            setattr(new, key, getattr(self, key).copy())
        new.DLF = self.DLF.copy()
        new.DLI = self.DLI.copy()
        new.fnew = self.fnew.copy()
        new._tail = None
        return new

    #: The request buffers: the queued (``QH``) and running (``SI``'s ``I_RN``) entries;
    #: what lies outside them is never read (a bank that :meth:`fresh` hands on keeps what
    #: its last episode left there; :meth:`__getstate__` pickles zeros instead).
    _BUFFERS = ("QF", "QS", "RF", "RS")

    def fresh(self, reuse: DeviceBank | None = None) -> DeviceBank:
        """A copy of this bank, which holds no request (a cluster's start): as :meth:`copy`,
        but the request buffers are new zeros, written here (tens of MB at 1,024 devices: their
        pages are mapped now, not by the episode's first writes to them, which at 1,024
        devices cost more than its queries). ``reuse``: a bank that an earlier :meth:`fresh`
        of this one returned, no longer used: its arrays are set to this one's in place and
        it is returned, its request buffers as they are (no new memory)."""
        if self.QH[1].any() or self.SI[I_RN].any():
            raise RuntimeError("DeviceBank.fresh: requests are queued or running")
        if reuse is not None and reuse is not self and reuse.LAT is self.LAT:
            for key in (*self._ARRAYS, "fnew"):
                if key not in self._BUFFERS:
                    np.copyto(getattr(reuse, key), getattr(self, key))
            if reuse.DLF.shape != self.DLF.shape:  # grown by push
                reuse.DLF, reuse.DLI, reuse._tail = self.DLF.copy(), self.DLI.copy(), None
            else:
                np.copyto(reuse.DLF, self.DLF)
                np.copyto(reuse.DLI, self.DLI)
            return reuse
        new = object.__new__(DeviceBank)
        new.__dict__.update(self.__dict__)
        for key in self._ARRAYS:
            a = getattr(self, key)
            if key in self._BUFFERS:  # written here, so that its pages are mapped now
                b = np.empty(a.shape, a.dtype)  # rather than at the episode's first writes
                b.fill(0)
                setattr(new, key, b)
            else:
                setattr(new, key, a.copy())
        new.DLF = self.DLF.copy()
        new.DLI = self.DLI.copy()
        new.fnew = self.fnew.copy()
        new._tail = None
        return new

    def _live_buffers(self) -> dict[str, np.ndarray]:
        """The request buffers with zeros outside the queued and running entries."""
        cap = self.QF.shape[3]
        pos = np.arange(cap)
        live = (pos - self.QH[0][:, :, None]) % cap < self.QH[1][:, :, None]
        run = np.arange(self.RS.shape[1]) < self.SI[I_RN][:, None]
        return {"QF": np.where(live, self.QF, 0.0), "QS": np.where(live, self.QS, 0),
                "RF": np.where(run, self.RF, 0.0), "RS": np.where(run, self.RS, 0)}

    def __getstate__(self) -> dict[str, Any]:
        # Large arrays (the per-(slot, model) queues, the latency rows) are mostly zeros:
        # compressed, so a worker gets a 16-device env in under 2 MB (tests/test_envs.py).
        state = {**self.__dict__, **self._live_buffers()}
        state = {k: v if k == "hist" else pack(v) for k, v in state.items()}
        state["_ep"] = None
        state["_tail"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: unpack(v) for k, v in state.items()})

    def run(self, t: float, n: int, drain: bool, df: np.ndarray, sf: np.ndarray,
            sm: np.ndarray, sb: np.ndarray,
            one: tuple[float, int, int, int, tuple[float, float, float, int, int]] | None = None,
            routed: tuple[int, int] | None = None) -> None:
        """:func:`advance` with this bank's arrays: ``n`` deliveries in the buffers, or
        (``n == -1``) the one ``one`` (time, device, slot, model, request); first the
        mirrors of the query ``routed`` (slot, model) since the last call, if any."""
        rs, rm = (-1, -1) if routed is None else routed
        if one is None:
            when, d, s, m, arr, dead, inv, sz = 0.0, 0, 0, 0, 0.0, 0.0, 0.0, 0
        else:
            when, d, s, m, req = one
            arr, dead, inv, sz = req[0], req[1], req[2], req[3]
        tail = self._tail
        if (tail is None or tail[17] is not df or tail[18] is not sf or tail[19] is not sm
                or tail[20] is not sb):
            tail = self._tail = (
                self.DLF, self.DLI, self.F, self.SI, self.BM, self.QF, self.QS, self.QH,
                self.RF, self.RS, self.LAT, self.LL, self.SC, self.COMPAT, self.ROWS,
                self.CONSTS, self.bounds, df, sf, sm, sb, self.E, self.G, self.T, self.C,
                self.H, self.hist, self.fnew, self.RAN, self.HL, self.LRU)
        ep = self._ep
        if ep is None:
            ep = self._ep = kn.entry_point(
                advance, (t, n, drain, rs, rm, when, arr, dead, inv, d, s, m, sz, *tail))
        ep(t, n, drain, rs, rm, when, arr, dead, inv, d, s, m, sz, *tail)

    def push(self, n: int, when: float, d: int, s: int, m: int,
             req: tuple[float, float, float, int, int]) -> None:
        """Put delivery ``n`` in the buffers (grown as needed)."""
        if n >= self.DLF.shape[1]:
            k = 2 * self.DLF.shape[1]
            self.DLF = np.concatenate([self.DLF, np.zeros((4, k))], axis=1)
            self.DLI = np.concatenate([self.DLI, np.zeros((4, k), np.int64)], axis=1)
            self._tail = None
        f, i = self.DLF, self.DLI
        f[0, n] = when
        f[1, n] = req[0]
        f[2, n] = req[1]
        f[3, n] = req[2]
        i[0, n] = d
        i[1, n] = s
        i[2, n] = m
        i[3, n] = req[3]

    def push_all(self, items: Sequence[tuple[float, int, int, int,
                                             tuple[float, float, float, int, int]]],
                 slots: Sequence[tuple[int, int]]) -> None:
        """Put the deliveries ``items`` (as ``ClusterSim``'s heap holds them: when, seq, slot,
        model, request), in that order, in the buffers at once: :meth:`push` of each."""
        n = len(items)
        while n > self.DLF.shape[1]:
            k = 2 * self.DLF.shape[1]
            self.DLF = np.concatenate([self.DLF, np.zeros((4, k))], axis=1)
            self.DLI = np.concatenate([self.DLI, np.zeros((4, k), np.int64)], axis=1)
            self._tail = None
        self.DLF[:, :n] = [[x[0] for x in items], [x[4][0] for x in items],
                           [x[4][1] for x in items], [x[4][2] for x in items]]
        self.DLI[:, :n] = [[slots[x[2]][0] for x in items], [x[2] for x in items],
                           [x[3] for x in items], [x[4][3] for x in items]]

    def add_latencies(self, h: LatencyHistogram) -> None:
        """Add to ``h`` what the last :meth:`run` added to the bank's histogram (as
        ``LatencyHistogram.add_finished`` does)."""
        n = int(self.HL[0])
        if n < 0:
            self.sync_latency(h)
            return
        if not n:
            return
        counts = h.counts
        b0, b1 = h.bins
        n0 = n1 = 0
        for k in self.HL[1:n + 1].tolist():
            counts[k] += 1
            if k < b0:
                n0 += 1
            if k < b1:
                n1 += 1
        h.total_s = self.H.item(H_TOTAL)
        h.n += n
        below = h.below
        below[0] += n0
        below[1] += n1

    def sync_latency(self, h: LatencyHistogram) -> None:
        """The shared histogram ``h`` as the bank's (its counts, total and quantile marks)."""
        hist = self.hist
        h.counts[:] = hist.tolist()
        h.n = int(hist.sum())
        h.total_s = float(self.H[H_TOTAL])
        cum = np.concatenate(([0], np.cumsum(hist)))
        h.below = [int(cum[b]) for b in h.bins]

    def sync(self, devices: Sequence[SharedGpuSim], df: np.ndarray, now: float = 0.0) -> None:
        """Write the bank's state into the device objects (as run_until_compiled does), and
        their backlog, its clock, rate and energy from ``df`` (moved to the decision time by
        the caller); ``now``: the last decision time :func:`advance` ran to (not a drain's),
        where the devices that did not run since are."""
        cap = self.QF.shape[3]
        F, SI = self.F, self.SI
        jk = int(self.C[C_JK])
        for d, dev in enumerate(devices):
            s0 = int(self.bounds[d])
            heap: list[tuple[float, int, int, Event]] = []
            for p in range(dev.n_partitions):
                s = s0 + p
                for m in range(dev.n_models):
                    dq = dev.lqueues[p][m][0]
                    dq.clear()
                    k = int(self.QH[1, s, m])
                    if k:
                        idx = (self.QH[0, s, m] + np.arange(k)) % cap
                        dq.extend(zip(self.QF[0, s, m, idx].tolist(),
                                      self.QF[1, s, m, idx].tolist(),
                                      self.QF[2, s, m, idx].tolist(),
                                      self.QS[s, m, idx].tolist(), [0] * k, strict=True))
                    dev.queued_by_model[p][m] = int(self.BM[s, m])
                busy = bool(SI[I_BUSY, s])
                if busy:
                    k = int(SI[I_RN, s])
                    dev._running[p] = list(zip(self.RF[0, s, :k].tolist(),
                                               self.RF[1, s, :k].tolist(),
                                               self.RF[2, s, :k].tolist(),
                                               self.RS[s, :k].tolist(), [0] * k, strict=True))
                    m = int(SI[I_RM, s])
                    items = int(SI[I_RIT, s])
                    dev._job[p] = (m, items)
                    dev._jobcode[p] = m * jk + items
                    dev._run_level[p] = 0
                else:
                    dev._running[p] = []
                    dev._job[p] = None
                    dev._jobcode[p] = -1
                    dev._run_level[p] = dev.n_levels
                for kind, row, srow in ((BATCH_DONE, F_DONE, I_DSEQ),
                                        (BATCH_TIMEOUT, F_TO, I_TSEQ), (SLOT_UP, F_UPT, I_USEQ)):
                    when = float(F[row, s])
                    made: Event | None = None
                    if when != _INF:
                        made = Event(when, kind, p)
                        heap.append((when, 0, int(SI[srow, s]), made))
                    if kind == BATCH_DONE:
                        dev._done[p] = made
                    elif kind == BATCH_TIMEOUT:
                        dev._timeout[p] = made
                dev.busy[p] = busy
                dev.busy_until[p] = float(F[F_BU, s])
                dev.running_model[p] = int(SI[I_RM, s])
                dev.up_at[p] = float(F[F_UP, s])
                dev.queued_items[p] = int(SI[I_QD, s])
                dev.queued_work_s[p] = float(F[F_WORK, s])
                dev.queued_work_level[p][0] = float(F[F_WLEV, s])
                dev._rem[p] = float(F[F_REM, s])
                dev._rt[p] = float(F[F_RT, s])
                dev._factor[p] = float(F[F_FAC, s])
                dev.counters.busy_s[p] = float(F[F_BUSYS, s])
            heap.sort()
            dev.events.heap[:] = heap
            dev.events._seq = int(self.E[E_SEQ, d])
            dev.events.now = max(float(self.G[G_NOW, d]), now)
            dev.backlog = float(df[kn.B, d])
            dev._backlog_t = float(df[kn.T, d])
            dev._backlog_rate = float(df[kn.R, d])
            c = dev.counters
            c.energy_j = float(df[kn.E, d])
            c.arrived = int(self.E[E_ARRIVED, d])
            c.completed = int(self.E[E_COMP, d])
            c.good = int(self.E[E_GOOD, d])
            c.dropped_overflow = int(self.E[E_OVER, d])
            c.dropped_expired = int(self.E[E_EXP, d])
            if self.E[E_LASTOK, d]:
                key = tuple(int(x) for x in SI[I_LAST, s0:s0 + dev.n_partitions])
                if key != dev._last_key:
                    dev._last_key = key
                    dev._pred_now = {}
            elif dev._last_key is not None:
                dev._last_key = None
                dev._pred_now = {}


__all__ = ["DeviceBank", "advance", "rooms", "sizes_fit", "usable"]
