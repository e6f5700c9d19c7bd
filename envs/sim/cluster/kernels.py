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

import numpy as np

from envs.sim.jit import AVAILABLE, njit

__all__ = ["AVAILABLE", "accrue", "ewma", "refresh"]

# Rows of the per-slot float matrix ``sf``.
BU, UP, QW, BS, MEM, EXTRA, ROOM = range(7)
N_SF = 7
# Rows of the per-(model, slot) float tensor ``sm`` (``res`` and ``fit`` are per (model, slot)
# too: a decision reads one model's row over the slots).
SOLO, HOP, LT, READY = range(4)
# Rows of the per-device float matrix ``df``.
B, T, R, E, LINK = range(5)
N_DF = 5
# Rows of the float32 output ``o32`` (the observation's per-slot keys computed here).
O_QUEUE, O_BUSY, O_FINISH, O_RESIDENT, O_LOADING, O_FREE = range(6)
# Entries of ``sums``.
S_BACKLOG, S_ENERGY, S_COST, S_BUSY, S_AHEAD = range(5)

_INF = float("inf")


@njit(cache=True)
def _clip(x: float, clip: float) -> float:
    if not x < clip:
        return clip
    if x > 0.0:
        return x
    return 0.0


@njit(cache=True)
def accrue(df: np.ndarray, t: float) -> None:
    """Every device's backlog to ``t``: ``backlog += rate x (t - backlog_t)``, ``backlog_t =
    t`` (:meth:`SharedGpuSim.run_passive` of an idle device)."""
    for d in range(df.shape[1]):
        df[B, d] += df[R, d] * (t - df[T, d])
        df[T, d] = t


@njit(cache=True)
def refresh(m: int, now: float, need: float, inv_b: float, inv_sla: float, clip: float,
            sf: np.ndarray, cap: np.ndarray, cost_w: np.ndarray, busy: np.ndarray,
            qi: np.ndarray, tn: np.ndarray, res: np.ndarray, fit: np.ndarray,
            sm: np.ndarray, sd: np.ndarray, df: np.ndarray, pad: np.ndarray,
            finish: np.ndarray, o32: np.ndarray, mask: np.ndarray, sums: np.ndarray,
            do_sums: bool) -> None:
    """The features of a query of model ``m`` at ``now`` (``m < 0``: the sums only).

    Writes ``finish`` (per slot, seconds; ``inf`` where ``m`` does not fit), the clipped
    float32 rows of ``o32`` (queue / ``inv_b``, busy and finish and loading x ``inv_sla``,
    resident, free memory), ``mask`` (the slots that can take the query: it fits and is
    resident, or the slot's memory after evicting its idle models, ``ROOM``, holds
    ``need`` bytes) and ``sums`` (the devices' backlog and dynamic energy, the slots' busy
    seconds priced (``cost_w``: price x share) and summed, and per device the busy time
    ahead of ``now`` summed over devices; only with ``do_sums``).
    """
    S = sf.shape[1]
    D = df.shape[1]
    if m >= 0:
        for s in range(S):
            # busy left / wait (ClusterSim.busy_left_s, finish_estimates_s)
            wait = sf[BU, s] - now if busy[s] else 0.0
            o32[O_BUSY, s] = _clip(wait * inv_sla, clip)
            o32[O_QUEUE, s] = _clip((qi[s] + tn[s]) * inv_b, clip)
            # load wait (ClusterSim.load_wait_s)
            if res[m, s]:
                r = sm[READY, m, s]
                load = r - now if r > now else 0.0
                o32[O_RESIDENT, s] = 1.0
            else:
                start = df[LINK, sd[s]]
                if start < now:
                    start = now
                load = start - now + sm[LT, m, s]
                o32[O_RESIDENT, s] = 0.0
            o32[O_LOADING, s] = _clip(load * inv_sla, clip)
            o32[O_FREE, s] = _clip(1.0 - sf[MEM, s] / cap[s], clip)
            if fit[m, s]:
                down = sf[UP, s] - now
                if down > wait:
                    wait = down
                f = wait + (sf[QW, s] + sm[SOLO, m, s])
                hop = sm[HOP, m, s]
                x = (load if load > hop else hop) + f + sf[EXTRA, s]
                finish[s] = x
                mask[s] = res[m, s] or need <= sf[ROOM, s]
            else:
                x = _INF
                finish[s] = x
                mask[s] = False
            o32[O_FINISH, s] = _clip(x * inv_sla, clip)
    if not do_sums:
        return
    backlog = 0.0
    energy = 0.0
    ahead = 0.0
    for d in range(D):
        backlog += df[B, d]
        energy += df[E, d]
        a = 0.0
        for j in range(pad.shape[0]):
            s = pad[j, d]
            if s < S and busy[s]:
                u = sf[BU, s]
                if u > now:
                    a += u - now
        ahead += a
    cost = 0.0
    total = 0.0
    for s in range(S):
        b = sf[BS, s]
        cost += b * cost_w[0, s] * cost_w[1, s]
        total += b
    sums[S_BACKLOG] = backlog
    sums[S_ENERGY] = energy
    sums[S_COST] = cost
    sums[S_BUSY] = total
    sums[S_AHEAD] = ahead


@njit(cache=True)
def ewma(rates: np.ndarray, decay: float, m: int, inc: float, scale: float, clip: float,
         out: np.ndarray) -> None:
    """``rates *= decay``, ``rates[m] += inc``, then ``out = clip(rates x scale)`` (float32;
    the observation's ``rates``)."""
    for i in range(rates.shape[0]):
        rates[i] = rates[i] * decay
    rates[m] += inc
    for i in range(rates.shape[0]):
        out[i] = _clip(rates[i] * scale, clip)
