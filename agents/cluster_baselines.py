"""Routers of a heterogeneous cluster (``ldsgym/ClusterRouting-v0``) from the literature.

Each reads only the observation and the action mask (the last action rejects); the logic of
each rule is a pure function of :mod:`envs.sim.device.rules`.

* ``round_robin``, ``least_loaded`` (join the shortest queue, counting queries in transit),
  ``power_of_two`` (Mitzenmacher: the shorter queue of two random valid slots), ``random``.
* ``earliest_finish`` (Clockwork): the slot with the earliest predicted finish, which counts
  the network hop and any weight load; rejects a query no slot can finish within its SLA.
* ``cheapest_meeting_sla`` (INFaaS): the cheapest slot (dollars per query of this model
  there) among those predicted to meet the SLA; else the earliest finish.
* ``static_assignment``: a fixed model-to-slots placement planned once per episode by
  best-fit packing (:func:`best_fit_plan`: models by popularity, replicas in proportion to it,
  each replica on the slot with the least memory left that holds it), then the earliest
  finish among the model's slots; a model without one falls back to the earliest finish.
* ``cache_aware`` (Shepherd/AlpaServe-like placement-aware routing): slots where the model is
  resident first, the earliest finish among them; else the earliest finish.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.policy import HeuristicPolicy, Obs, SeededRng
from envs.sim.device import rules
from envs.sim.jit import AVAILABLE, njit

_NO_KEY = 0xFFFFFFFF  # above every float32 bit pattern of a key in [0, inf]
_INF_BITS = 0x7F800000  # float32 +inf; patterns above it: NaN; with the sign bit: negative


@njit(cache=True, error_model="numpy")
def _least_loaded_rows(queue: np.ndarray, busy: np.ndarray, valid: np.ndarray) -> int:
    """:func:`rules.least_loaded_of` on float32 rows, in three passes the compiler vectorises
    (it costs ~4 ns a slot in one scalar pass, ~1.5 us at 1,664 slots): every key (the same
    two roundings), their minimum over the valid slots taken on their bit patterns (ordered
    as the floats where the keys are in ``[+0, inf]``), the first valid slot with it. ``-1``
    where a key is NaN or negative (-0.0 included): the caller asks the scalar rule then."""
    n = queue.shape[0]
    keys = np.empty(n, np.float32)
    for p in range(n):
        keys[p] = np.float32(np.float64(queue[p])
                             + np.float64(np.float32(np.float64(busy[p]) * rules.MILLI_F32)))
    bits = keys.view(np.uint32)
    best = np.uint32(_NO_KEY)
    odd = np.uint32(0)
    for p in range(n):
        b = bits[p]
        odd |= np.uint32(1) if b > np.uint32(_INF_BITS) else np.uint32(0)
        v = b if valid[p] else np.uint32(_NO_KEY)
        best = v if v < best else best
    if odd:
        return -1
    if best == np.uint32(_NO_KEY):
        return n
    for p in range(n):
        if valid[p] and bits[p] == best:
            return p
    return n


def _earliest(obs: Obs, valid: list[bool], reject_hopeless: bool, can_reject: bool) -> int:
    return rules.earliest(obs["finish"].tolist(), valid, reject_hopeless, can_reject)


class ClusterLeastLoaded(HeuristicPolicy):
    """Join the shortest queue (queued and in-transit items), ties to the slot that frees up
    first."""

    name = "least_loaded"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The valid slot with the shortest queue.

        :func:`rules.least_loaded` over :func:`rules.least_loaded_keys` (every size 0: ties
        to the lower index): with numba :func:`rules.least_loaded_of`, compiled, in one pass
        over the rows; else in numpy: the same float32 roundings (a cast rounds to nearest
        even, as the rules' packing does) and the first minimum, so the same slot. Either
        way outside Python (a 1,024-device cluster has 1,664 slots); on float32 rows the
        compiled rule is :func:`_least_loaded_rows` (vectorised), the scalar one where it
        declines."""
        if AVAILABLE:
            queue, busy = obs["queue"], obs["busy"]
            if queue.dtype == np.float32 and busy.dtype == np.float32 and mask.dtype == bool:
                a = int(_least_loaded_rows(queue, busy, mask))
                if a >= 0:
                    return a
            return int(rules.least_loaded_of_jit(queue, busy, mask))
        n = len(obs["queue"])
        valid = np.asarray(mask[:n], dtype=bool)
        if not valid.any():
            return n
        milli = (obs["busy"].astype(np.float64) * rules.MILLI_F32).astype(np.float32)
        key = (obs["queue"].astype(np.float64) + milli).astype(np.float32)
        return int(np.argmin(np.where(valid, key, np.float32(np.inf))))


class PowerOfTwo(SeededRng, HeuristicPolicy):
    """Power of two choices: two valid slots at random, the one with the shorter queue."""

    name = "power_of_two"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The shorter of two random valid slots."""
        n = len(mask) - 1
        n_valid = int(np.count_nonzero(mask[:-1]))
        if not n_valid:
            return n
        i, j = (int(x) for x in self.rng.integers(0, n_valid, 2))
        key = rules.least_loaded_keys(obs["queue"].tolist(), obs["busy"].tolist())
        return rules.two_choices(i, j, key, mask.tolist(), n)


class EarliestFinish(HeuristicPolicy):
    """Clockwork: the earliest predicted finish (hop, load, wait, work); rejects a query
    that no slot can finish within its SLA."""

    name = "earliest_finish"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Argmin of ``finish`` over the valid slots, or reject."""
        return _earliest(obs, mask.tolist(), True, bool(mask[-1]))


class CheapestMeetingSla(HeuristicPolicy):
    """INFaaS: the cheapest slot predicted to meet the SLA; else the earliest finish."""

    name = "cheapest_meeting_sla"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The cheapest slot meeting the SLA."""
        valid = mask.tolist()
        p = rules.cheapest_within(obs["price"].tolist(), obs["finish"].tolist(), valid[:-1])
        return p if p >= 0 else _earliest(obs, valid, True, bool(mask[-1]))


def best_fit_plan(popularity: list[float], footprint: list[float],
                  mem: list[float]) -> list[list[bool]]:
    """A static placement of models on slots by best-fit packing.

    First pass, models in order of popularity (ties: index): model ``m`` gets up to ``max(1,
    round(share x S))`` replicas (``share``: its popularity over the total), each on the slot
    with the least memory left that still holds it and does not hold it yet (ties: the lower
    index). Second pass, in the same order: every model is added to every slot that still has
    room for it (the memory left is filled with the most popular models). Footprints and
    memories are in any one unit.

    Returns:
        ``plan[m][s]``: whether model ``m`` is placed on slot ``s``.
    """
    S, M = len(mem), len(popularity)
    total = sum(popularity) or 1.0
    left = list(mem)
    plan = [[False] * S for _ in range(M)]
    order = sorted(range(M), key=lambda k: (-popularity[k], k))

    def place(m: int) -> bool:
        need = footprint[m]
        best = -1
        for s in range(S):
            if not plan[m][s] and left[s] >= need and (best < 0 or left[s] < left[best]):
                best = s
        if best < 0:
            return False
        plan[m][best] = True
        left[best] -= need
        return True

    for m in order:
        for _ in range(min(S, max(1, round(popularity[m] / total * S)))):
            if not place(m):
                break
    for m in order:
        while place(m):
            pass
    return plan


class StaticAssignment(HeuristicPolicy):
    """A fixed placement by best-fit packing (:func:`best_fit_plan`), planned at the first
    decision of an episode from the constant ``popularity``, ``footprint`` and ``mem``
    features; the earliest finish among the model's slots."""

    name = "static_assignment"

    def __init__(self) -> None:
        self.plan: list[list[bool]] | None = None

    def reset(self, seed: int | None = None) -> None:
        """Forget the placement (planned again at the next decision)."""
        self.plan = None

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The earliest finish among the model's assigned slots."""
        if self.plan is None:
            self.plan = best_fit_plan(obs["popularity"].tolist(), obs["footprint"].tolist(),
                                      obs["mem"].tolist())
        m = int(np.argmax(obs["model"]))
        assigned = self.plan[m]
        valid = mask.tolist()
        mine = [v and a for v, a in zip(valid[:-1], assigned, strict=True)]
        if any(mine):
            return _earliest(obs, [*mine, valid[-1]], False, bool(mask[-1]))
        return _earliest(obs, valid, True, bool(mask[-1]))


class CacheAware(HeuristicPolicy):
    """Placement-aware: slots holding the model first (earliest finish among them)."""

    name = "cache_aware"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The earliest finish among resident slots, else among all."""
        valid = mask.tolist()
        hot = [v and r > 0.5 for v, r in zip(valid[:-1], obs["resident"].tolist(), strict=True)]
        if any(hot):
            return _earliest(obs, [*hot, valid[-1]], False, bool(mask[-1]))
        return _earliest(obs, valid, True, bool(mask[-1]))


#: Baselines of ClusterRouting by name that are its own (``random`` and ``round_robin`` are
#: PartitionPlacement's, which read nothing but the mask: :data:`agents.baselines.BASELINES_BY_ENV`
#: adds them).
CLUSTER_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls for cls in (ClusterLeastLoaded, PowerOfTwo, EarliestFinish,
                              CheapestMeetingSla, StaticAssignment, CacheAware)
}
