"""Compiled per-decision kernels of the cluster simulator (numba, :mod:`envs.sim.jit`).

:class:`~envs.sim.cluster.sim.ClusterSim` keeps numpy mirrors of the state a router reads at
every decision (per slot: the running batch, queued work and items, residency, load times;
per device: backlog clock, dynamic energy) and refreshes them only for the devices that ran
since the last decision. :func:`refresh` then computes, in one call, what the Python path
computes slot by slot and device by device: the finish estimates, the observation's per-slot
rows (clipped, float32), the action mask, and the cluster's sums (backlog, energy, used cost,
busy time) -- with the same floating-point operations in the same order, element by element,
so that both paths give equal results bit for bit (``tests/test_cluster_compiled.py``).
The sums over devices and slots are sequential (left to right, from the first), as Python's
``sum`` of floats is up to Python 3.11.

Without numba (or with ``LDSGYM_NO_JIT=1``) these functions still run, as plain Python over
the arrays, but the simulator does not call them: it stays on its Python path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.sim.jit import AVAILABLE, NO_NRT, njit

__all__ = ["AVAILABLE", "accrue", "accrue_refresh", "entry_point", "ewma", "observe_flat",
           "refresh"]

# Rows of the per-slot float matrix ``sf``: the running batch's end, when the slot is up,
# queued work, busy seconds so far, memory held by models, work in transit, memory after
# evicting the idle models; constants: memory, price per second, share of the device; the
# running flag, queued items and items in transit (as floats: exact), when the device's host
# link is free; whether ``ROOM`` and ``EXTRA`` are up to date (0 / 1); outputs: the finish
# estimates (seconds) and the slots whose room the mask needed but was stale; the slots whose
# ``EXTRA`` went stale since the last refresh (``EXTRA_LIST``, ``EXTRA_N[0]`` of them; -1: any
# slot may be: the refresh looks at every one), marked by :func:`extra_stale`; written with
# ``MEM`` (:func:`set_mem`): the memory not held by models ``CAP - MEM`` and the fraction
# ``1 - MEM / CAP`` (what a decision reads of them, computed once per change).
(BU, UP, QW, BS, MEM, EXTRA, ROOM, CAP, PRICE, SHARE, BUSY, QI, TN, LINK, ROOM_OK, EXTRA_OK,
 FINISH, STALE, EXTRA_LIST, EXTRA_N, FREE, FREE_FRAC) = range(22)
N_SF = 22
# Rows of the per-(model, slot) float tensor ``sm`` (a decision reads one model's row over
# the slots): batch-1 latency, network hop, load time, when the weights are ready, queries in
# transit (a count), seconds per item at full batches (``tables.per_item_s``).
SOLO, HOP, LT, READY, TRANSIT, PER_ITEM = range(6)
N_SM = 6
# Rows of the per-(model, slot) uint8 tensor ``sb`` (0 / 1 flags, a byte each: the
# observation kernel reads one model's row of each at every decision, an eighth of the
# memory traffic of float rows): resident, fits the partition.
RES, FIT = range(2)
N_SB = 2
# Rows of the per-device float matrix ``df``: backlog, its clock and rate, dynamic energy.
B, T, R, E = range(4)
N_DF = 4
# Rows of the float32 output ``o32`` (the observation's per-slot keys computed here).
O_QUEUE, O_BUSY, O_FINISH, O_RESIDENT, O_LOADING, O_FREE = range(6)
# Entries of ``sums``.
S_BACKLOG, S_ENERGY, S_COST, S_BUSY, S_AHEAD = range(5)

_INF = float("inf")


def entry_point(kernel: Any, args: tuple[Any, ...]) -> Any:
    """``kernel``'s compiled version for the types of ``args`` (compiled now if needed), to
    call without numba's dispatch (which resolves the types of every argument at every call:
    ~20 ns an argument). The caller must pass arguments of these same types at every call
    (arrays of the same dtype, dimensions and layout): the compiled version does not check
    them. ``kernel`` itself where that is not available (numba missing, or a version without
    ``overloads[...].entry_point``)."""
    try:
        sig = tuple(kernel.typeof_pyval(a) for a in args)
        overloads = kernel.overloads
        if sig not in overloads:
            kernel.compile(sig)
        return overloads[sig].entry_point
    except Exception:  # any failure: the dispatcher, which always works
        return kernel


@njit(cache=True, error_model="numpy")
def _clip(x: float, clip: float) -> float:
    if not x < clip:
        return clip
    if x > 0.0:
        return x
    return 0.0


@njit(cache=True, inline="always")
def extra_stale(sf: np.ndarray, s: int) -> None:
    """Slot ``s``'s work in transit (``EXTRA``) is stale (its transit changed): ``EXTRA_OK``
    0, and the slot listed for the next :func:`refresh` (once: only where it was up to
    date; nothing to list while a look at every slot is due). Inlined into
    :func:`envs.sim.cluster.bank.advance`, whose numba cache is keyed by bank.py's content
    only: a change here needs bank.py changed too (or its cache cleared) to take effect
    there."""
    if sf[EXTRA_OK, s] != 0.0:
        sf[EXTRA_OK, s] = 0.0
        n = sf[EXTRA_N, 0]
        if n >= 0.0:
            sf[EXTRA_LIST, int(n)] = s
            sf[EXTRA_N, 0] = n + 1.0


@njit(cache=True, error_model="numpy")
def accrue(df: np.ndarray, t: float) -> None:
    """Every device's backlog to ``t``: ``backlog += rate x (t - backlog_t)``, ``backlog_t =
    t`` (:meth:`SharedGpuSim.run_passive` of an idle device)."""
    for d in range(df.shape[1]):
        df[B, d] += df[R, d] * (t - df[T, d])
        df[T, d] = t


@njit(cache=True, error_model="numpy")
def refresh(m: int, now: float, need: float, inv_b: float, inv_sla: float, clip: float,
            do_sums: bool, sf: np.ndarray, sm: np.ndarray, sb: np.ndarray, df: np.ndarray,
            bounds: np.ndarray, o32: np.ndarray, valid: np.ndarray, sums: np.ndarray) -> int:
    """The features of a query of model ``m`` at ``now`` (``m < 0``: the sums only).

    Writes the row ``FINISH`` of ``sf`` (per slot, seconds; ``inf`` where ``m`` does not
    fit); ``valid`` (the slots that can take the query: it fits and is resident, or the
    slot's memory after evicting its idle models, ``ROOM``, holds ``need`` bytes; where that
    was needed and ``ROOM_OK`` is 0 it is left False and the slot listed in the row
    ``STALE``: the caller computes its room and sets it); the
    clipped float32 rows of ``o32`` (queue x ``inv_b``; busy, finish and loading x
    ``inv_sla``; resident; free memory); with ``do_sums``, ``sums``: the devices' backlog and
    dynamic energy, the slots' busy seconds priced (price x share) and summed, and per device
    the busy time ahead of ``now``, summed over devices (device ``d``'s slots are
    ``bounds[d]`` to ``bounds[d + 1]``, in partition order). Returns the number of slots
    listed in ``STALE``.
    """
    S = sf.shape[1]
    D = df.shape[1]
    M = sm.shape[1]
    stale = 0
    # The per-slot work as a few simple loops over 1-D rows (each vectorised by the compiler:
    # one loop with everything in it is not, and costs about twice as much at 1,664 slots);
    # the operations per element are those of the Python path, in its order.
    bu = sf[BU]
    busy = sf[BUSY]
    if m >= 0:
        extra_ok = sf[EXTRA_OK]
        extra_row = sf[EXTRA]
        n_x = int(sf[EXTRA_N, 0])  # the slots listed stale (-1: look at every slot)
        for i in range(S if n_x < 0 else n_x):
            s = i if n_x < 0 else int(sf[EXTRA_LIST, i])
            if extra_ok[s] == 0.0:  # the work in transit (finish_estimates_s's sum)
                extra = 0.0
                for k in range(M):
                    n = sm[TRANSIT, k, s]
                    if n != 0.0:
                        extra += n * sm[PER_ITEM, k, s]
                extra_row[s] = extra
                extra_ok[s] = 1.0
        sf[EXTRA_N, 0] = 0.0
        up = sf[UP]
        qw = sf[QW]
        qi = sf[QI]
        tn = sf[TN]
        link = sf[LINK]
        free_b = sf[FREE]
        frac = sf[FREE_FRAC]
        room = sf[ROOM]
        room_ok = sf[ROOM_OK]
        finish = sf[FINISH]
        res = sb[RES, m]
        ready = sm[READY, m]
        lt = sm[LT, m]
        fit = sb[FIT, m]
        solo = sm[SOLO, m]
        hop_row = sm[HOP, m]
        o_busy = o32[O_BUSY]
        o_queue = o32[O_QUEUE]
        o_res = o32[O_RESIDENT]
        o_load = o32[O_LOADING]
        o_free = o32[O_FREE]
        o_fin = o32[O_FINISH]
        for s in range(S):  # busy left (ClusterSim.busy_left_s), queue, free memory
            wait = bu[s] - now if busy[s] != 0.0 else 0.0
            o_busy[s] = _clip(wait * inv_sla, clip)
            o_queue[s] = _clip((qi[s] + tn[s]) * inv_b, clip)
            o_free[s] = _clip(frac[s], clip)  # 1 - MEM / CAP
        for s in range(S):  # load wait (ClusterSim.load_wait_s), kept in FINISH meanwhile
            r = ready[s]
            r_load = r - now if r > now else 0.0
            start = link[s]
            if start < now:
                start = now
            n_load = start - now + lt[s]
            resident = res[s] != 0
            load = r_load if resident else n_load
            finish[s] = load
            o_res[s] = 1.0 if resident else 0.0
            o_load[s] = _clip(load * inv_sla, clip)
        for s in range(S):  # the finish estimate (finish_estimates_s), inf where m does not fit
            wait = bu[s] - now if busy[s] != 0.0 else 0.0
            down = up[s] - now
            if down > wait:
                wait = down
            f = wait + (qw[s] + solo[s])
            hop = hop_row[s]
            load = finish[s]
            x = (load if load > hop else hop) + f + extra_row[s]
            if fit[s] == 0:
                x = _INF
            finish[s] = x
            o_fin[s] = _clip(x * inv_sla, clip)
        for s in range(S):  # valid: resident, or room without evicting, or an up-to-date ROOM
            fits = fit[s] != 0
            resident = res[s] != 0
            roomy = need <= free_b[s]  # CAP - MEM
            ok = room_ok[s] != 0.0
            valid[s] = fits & (resident | roomy | (ok & (need <= room[s])))
            stale += fits & ~(resident | roomy | ok)
        if stale:  # the slots whose room is needed and stale, in slot order
            stale = 0
            for s in range(S):
                if (fit[s] != 0 and res[s] == 0 and not need <= free_b[s]
                        and room_ok[s] == 0.0):
                    sf[STALE, stale] = s
                    stale += 1
    if not do_sums:
        return stale
    # One pass over the devices and, within each, its slots; every sum keeps its order (over
    # the devices, over a device's partitions, over the slots), so the floats are the same.
    price = sf[PRICE]
    share = sf[SHARE]
    bs = sf[BS]
    backlog = 0.0
    energy = 0.0
    ahead = 0.0
    cost = 0.0
    total = 0.0
    for d in range(D):
        backlog += df[B, d]
        energy += df[E, d]
        a = 0.0
        for s in range(bounds[d], bounds[d + 1]):
            if busy[s] != 0.0:
                u = bu[s]
                if u > now:
                    a += u - now
            b = bs[s]
            cost += b * price[s] * share[s]
            total += b
        ahead += a
    sums[S_BACKLOG] = backlog
    sums[S_ENERGY] = energy
    sums[S_COST] = cost
    sums[S_BUSY] = total
    sums[S_AHEAD] = ahead
    return stale


@njit(cache=True, error_model="numpy")
def accrue_refresh(acc_t: float, m: int, now: float, need: float, inv_b: float,
                   inv_sla: float, clip: float, do_sums: bool, sf: np.ndarray, sm: np.ndarray,
                   sb: np.ndarray, df: np.ndarray, bounds: np.ndarray, o32: np.ndarray,
                   valid: np.ndarray, sums: np.ndarray) -> int:
    """:func:`accrue` to ``acc_t`` (skipped when ``acc_t < 0``), then :func:`refresh`: one
    call where the simulator would make two (the devices' backlog clocks move at each
    decision, the features are read right after)."""
    if acc_t >= 0.0:
        accrue(df, acc_t)
    return refresh(m, now, need, inv_b, inv_sla, clip, do_sums, sf, sm, sb, df, bounds, o32,
                   valid, sums)


@njit(cache=True, error_model="numpy")
def ewma(rates: np.ndarray, decay: float, m: int, inc: float, scale: float, clip: float,
         out: np.ndarray) -> None:
    """``rates *= decay``, ``rates[m] += inc``, then ``out = clip(rates x scale)`` (float32;
    the observation's ``rates``)."""
    for i in range(rates.shape[0]):
        rates[i] = rates[i] * decay
    rates[m] += inc
    for i in range(rates.shape[0]):
        out[i] = _clip(rates[i] * scale, clip)


@njit(cache=True, error_model="numpy")
def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[:] = src`` (a loop from 0 over views: vectorised, where a loop over ``range(a,
    b)`` with ``a`` unknown is not, for the negative-index check)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(cache=True, error_model="numpy", **NO_NRT)
def observe_flat(acc_t: float, m: int, now: float, need: float, inv_b: float, inv_sla: float,
                 clip: float, do_sums: bool, sf: np.ndarray, sm: np.ndarray, sb: np.ndarray,
                 df: np.ndarray, bounds: np.ndarray, buf: np.ndarray, off: int, valid: np.ndarray,
                 sums: np.ndarray, rates: np.ndarray, decay: float, inc: float, scale: float,
                 roff: int, sla_x: float, soff: int, tmpl: np.ndarray) -> int:
    """A decision's observation in one call (what :func:`ewma` and :func:`accrue_refresh`
    do, and the SLA's entry), written into the flat float32 ``buf``: the template ``tmpl``
    (as long) outside ``buf[off:off + 6 S]``, then :func:`ewma`'s rates at
    ``buf[roff:roff + M]``, ``clip(sla_x)`` at ``buf[soff]``, the per-slot rows of
    :func:`refresh` (``o32``) as ``buf[off:off + 6 S]``, every entry of them (so ``buf`` may
    come uninitialised). The same operations as those calls, so the same values."""
    S = sf.shape[1]
    _copy(buf[:off], tmpl[:off])
    _copy(buf[off + 6 * S:], tmpl[off + 6 * S:])
    for i in range(rates.shape[0]):
        rates[i] = rates[i] * decay
    rates[m] += inc
    for i in range(rates.shape[0]):
        buf[roff + i] = _clip(rates[i] * scale, clip)
    buf[soff] = _clip(sla_x, clip)
    if acc_t >= 0.0:
        accrue(df, acc_t)
    return refresh(m, now, need, inv_b, inv_sla, clip, do_sums, sf, sm, sb, df, bounds,
                   buf[off:off + 6 * S].reshape((6, S)), valid, sums)
