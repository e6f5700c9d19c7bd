"""Replica-selection heuristics for ``ldsgym/ShardRouting``, as :class:`~agents.policy.Policy`.

Each reads only the observation of the pending sub-request and the action mask (actions
``0..N-1`` are nodes, ``N`` sheds; a heuristic never sheds unless nothing else is valid).

* ``random``: uniform over the live replicas.
* ``round_robin``: cycles through each shard's live replicas.
* ``static_hash``: a fixed replica per shard (a hash of the shard), another live one if it is
  down (consistent hashing).
* ``least_outstanding``: fewest outstanding sub-requests (join-the-shortest-queue; Envoy's
  LEAST_REQUEST).
* ``power_of_two``: two random live replicas, the less loaded of them (Mitzenmacher 2001).
* ``locality``: the replica whose cache is warmest for the shard, among those within two
  sub-requests of the shortest queue (consistent hashing with bounded loads).
* ``latency_greedy``: the earliest predicted response (link + queue x measured slowdown +
  service + link), like C3 (NSDI'15) and Clockwork.
* ``deadline_shed``: ``latency_greedy`` with admission control where the env allows shedding
  (``allow_shed=True``): a sub-request whose request is predicted to miss its SLA (its best
  replica's predicted response, or the latest one already routed for the request, past
  ``threshold`` x the SLA) is shed, so a request that is lost anyway stops taking node and link
  time from the others (Clockwork drops requests it predicts will miss, OSDI'20 sec. 4). Without
  ``allow_shed`` it is ``latency_greedy``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import numpy as np

from agents.policy import HeuristicPolicy, Obs, SeededRng

_QUEUE_NORM = 8.0  # the env's scale of the ``queue`` feature


def _valid(mask: np.ndarray) -> np.ndarray:
    """Indices of valid node actions (the last action sheds)."""
    return np.flatnonzero(mask[:-1])


def _shard(obs: Obs) -> int:
    return int(np.argmax(obs["shard"]))


class ShardHeuristic(HeuristicPolicy):
    """Base: nodes are the slots; the action count is ``N + 1`` (shed last)."""

    @staticmethod
    def n_actions(observation: Obs) -> int:
        """``N + 1``: one action per node (the ``queue`` key) plus shed."""
        return int(observation["queue"].shape[-1]) + 1

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Choose among the valid nodes (shed only if none)."""
        valid = _valid(mask)
        if not len(valid):
            return len(mask) - 1
        return int(self.choose(obs, valid))

    @abstractmethod
    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """One of ``valid`` (non-empty)."""


class RandomReplica(SeededRng, ShardHeuristic):
    """Uniformly random among the live replicas.

    Args:
        seed: Seed of its own generator (re-seeded by the harness each episode).
    """

    name = "random"

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """A random live replica."""
        return int(self.rng.choice(valid))


class RoundRobinReplica(ShardHeuristic):
    """Cycles through each shard's live replicas (one cursor per shard)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def reset(self, seed: int | None = None) -> None:
        """Restart every cursor."""
        self._next = {}

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """The next live replica after the shard's last choice (in node order)."""
        s = _shard(obs)
        start = self._next.get(s, 0)
        after = valid[valid >= start]
        node = int(after[0]) if len(after) else int(valid[0])
        self._next[s] = node + 1
        return node


class StaticHashReplica(ShardHeuristic):
    """A fixed replica per shard: ``valid[hash(shard) % len(valid)]``.

    Keeps each shard's traffic on one node (its cache stays warm for it) but ignores load;
    when that node is down the shard moves to another live replica.
    """

    name = "static_hash"

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """The shard's home replica among the live ones."""
        s = _shard(obs)
        return int(valid[(s * 2654435761 >> 7) % len(valid)])


class LeastOutstanding(ShardHeuristic):
    """Fewest outstanding sub-requests; ties to the emptier link, then the lower node."""

    name = "least_outstanding"

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """Join the shortest queue."""
        order = np.lexsort((valid, obs["link"][valid], obs["queue"][valid]))
        return int(valid[order[0]])


class PowerOfTwo(SeededRng, ShardHeuristic):
    """Power of two choices: sample two live replicas, take the one with fewer outstanding.

    Args:
        seed: Seed of its generator (re-seeded by ``reset(seed)``, so runs are reproducible).
    """

    name = "power_of_two"

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """The less loaded of two sampled replicas (ties: the first sampled)."""
        if len(valid) == 1:
            return int(valid[0])
        a, b = self.rng.choice(valid, size=2, replace=False)
        q = obs["queue"]
        return int(b if q[b] < q[a] else a)


class LocalityAware(ShardHeuristic):
    """Cache-affinity with bounded load: the warmest cache for the shard among the replicas
    whose queue is within ``slack`` sub-requests of the shortest.

    Args:
        slack: Extra outstanding sub-requests tolerated for a warmer cache.
    """

    name = "locality"

    def __init__(self, slack: float = 2.0) -> None:
        self.slack = slack

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """Warmest cache among the nearly least loaded."""
        q = obs["queue"][valid]
        near = valid[q <= q.min() + self.slack / _QUEUE_NORM]
        hit = obs["hit_shard"][near]
        order = np.lexsort((near, obs["queue"][near], -hit))
        return int(near[order[0]])


class LatencyGreedy(ShardHeuristic):
    """Latency-predictive: the replica whose response is predicted back first (``finish``:
    link backlog and transfer, queued work and service at the measured slowdown, return)."""

    name = "latency_greedy"

    def choose(self, obs: Obs, valid: np.ndarray) -> int:
        """Argmin of the predicted response time."""
        order = np.lexsort((valid, obs["finish"][valid]))
        return int(valid[order[0]])


class DeadlineShed(LatencyGreedy):
    """``latency_greedy`` that sheds the sub-requests of a request predicted to miss its SLA.

    A request completes only when its last sub-request is back (and its top MLP has run), so
    once the latest predicted response among its routed sub-requests (``request[1]``), or the
    best this sub-request can get (min ``finish`` over its live replicas), passes
    ``threshold`` SLAs, the request is late whatever happens next: its remaining sub-requests
    are shed instead of queued ahead of requests that can still make it. ``threshold`` < 1
    leaves room for the top MLP and the predictions' error; its default was chosen on training
    seeds 0-1 at 90% and 110% load of ``ShardRouting-RequestAware-v0`` (0.7 / 0.8 / 0.9 / 1.0).
    """

    name = "deadline_shed"

    def __init__(self, threshold: float = 0.7) -> None:
        if not np.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"deadline_shed: threshold must be a positive number, got "
                             f"{threshold!r}")
        self.threshold = float(threshold)

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Shed (when allowed) a request predicted late; otherwise ``latency_greedy``."""
        valid = _valid(mask)
        if len(valid) and mask[-1]:
            best = float(np.min(obs["finish"][valid]))
            if max(best, float(obs["request"][1])) > self.threshold:
                return len(mask) - 1
        return super().act(obs, mask)


#: Baselines of ShardRouting by name (``BASELINES_BY_ENV["ShardRouting"]``).
SHARD_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls
    for cls in (RandomReplica, RoundRobinReplica, StaticHashReplica, LeastOutstanding,
                PowerOfTwo, LocalityAware, LatencyGreedy, DeadlineShed)
}


# ---------------------------------------------------------------------------------------------
# ShardPlacement: action 0 keeps the placement, 1 + s * N + n toggles shard s on node n.
# ---------------------------------------------------------------------------------------------


class PlacementHeuristic(HeuristicPolicy):
    """Base of the placement baselines (``S * N + 1`` actions, no-op first)."""

    @staticmethod
    def n_actions(observation: Obs) -> int:
        """``1 + S * N`` (the ``holds`` key has ``S * N`` entries)."""
        return int(observation["holds"].shape[-1]) + 1


class StaticPlacement(PlacementHeuristic):
    """Never changes the placement (the ShardRouting deployment)."""

    name = "static"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Keep."""
        return 0


class RandomPlacement(SeededRng, PlacementHeuristic):
    """Keeps the placement, except with probability ``p`` a random allowed toggle.

    Args:
        p: Probability of a change per decision.
        seed: Seed of its generator (re-seeded by ``reset(seed)``).
    """

    name = "random"

    def __init__(self, p: float = 0.02, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.p = p

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Mostly keep."""
        toggles = np.flatnonzero(mask[1:]) + 1
        if len(toggles) and self.rng.random() < self.p:
            return int(self.rng.choice(toggles))
        return 0


class HotReplicate(PlacementHeuristic):
    """Replicate the hottest shard onto the least busy node with a free slot; when no node has
    one, drop a replica of a cold shard to make room (hot-shard replication).

    Args:
        hot: Per-replica demand (node-seconds per second) above which a shard gets a replica.
        cold: Per-replica demand below which a replica may be dropped to make room.
    """

    name = "hot_replicate"

    def __init__(self, hot: float = 0.5, cold: float = 0.2) -> None:
        self.hot = hot
        self.cold = cold

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """One change at a time, only when nothing is loading."""
        if obs["loading"].any():
            return 0
        demand = obs["demand"]
        n_nodes = len(obs["up"])
        s = int(np.argmax(demand))
        if demand[s] <= self.hot:
            return 0
        add = [n for n in range(n_nodes) if mask[1 + s * n_nodes + n]
               and not obs["holds"][s * n_nodes + n]]
        if add:
            n = min(add, key=lambda k: (obs["util"][k], obs["queue"][k], k))
            return 1 + s * n_nodes + n
        holds = obs["holds"].reshape(-1, n_nodes)
        drops = [(demand[c], -obs["util"][n], c, n) for c in range(len(demand)) if c != s
                 and demand[c] < self.cold for n in range(n_nodes)
                 if holds[c, n] and not holds[s, n] and mask[1 + c * n_nodes + n]]
        if drops:
            _, _, c, n = min(drops)
            return 1 + c * n_nodes + n
        return 0


class DemandReplicate(PlacementHeuristic):
    """Replicas in proportion to demand: each shard gets ``ceil(work / per)`` replicas, several
    loads at once (proportional replication with a per-replica demand target).

    ``hot_replicate`` adds one replica at a time, of the single hottest shard and only when no
    replica is loading; when a heavy shard turns hot it climbs from 3 to 8 replicas over a
    few dozen requests, while its queues grow. Here every shard's total recent work ``W_s``
    (``demand`` x live replicas, node-seconds per second) sets a target of ``ceil(W_s / per)``
    replicas (at most one per node); a shard below it (live + loading) gets one more on the
    least busy node with a free slot, largest per-replica demand first, while fewer than
    ``max_loads`` replicas are loading; with no free slot on a node without the shard, it
    drops a replica there of a cold shard (per-replica demand below ``drop_per``) that keeps
    more than ``base`` replicas. With nothing to add and nothing loading, a replica of a
    shard above ``max(ceil(W_s / drop_per), base)`` replicas (a cooled shard) is dropped, from
    the node with the fullest slots (``drop_per`` < ``per``: the gap is the hysteresis that
    stops it from toggling). Its defaults were chosen on training seeds 0-7 at 80% and 100%
    load of ``ldsgym/ShardPlacement-Drift-v0`` (``per`` 0.15-0.3, ``max_loads`` 2 or 8).

    Args:
        per: Per-replica demand a shard's replicas are sized for.
        drop_per: Per-replica demand below which a shard's extra replicas may be dropped.
        base: Replicas a shard keeps whatever its demand (the initial replication).
        max_loads: Replicas loading at once, at most.
    """

    name = "demand_replicate"

    def __init__(self, per: float = 0.2, drop_per: float = 0.1, base: int = 3,
                 max_loads: int = 8) -> None:
        if not 0.0 < drop_per < per:
            raise ValueError(f"demand_replicate: expected 0 < drop_per < per, got "
                             f"drop_per={drop_per}, per={per}")
        if base < 1 or max_loads < 1:
            raise ValueError(f"demand_replicate: base and max_loads must be >= 1, got "
                             f"{base}, {max_loads}")
        self.per, self.drop_per = float(per), float(drop_per)
        self.base, self.max_loads = int(base), int(max_loads)

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """An add toward the targets, a drop to make room for one, a drop of a cooled
        shard's replica, or keep."""
        n_nodes = len(obs["up"])
        holds = np.asarray(obs["holds"]).reshape(-1, n_nodes) > 0.5
        loading = np.asarray(obs["loading"]).reshape(-1, n_nodes) > 0.5
        toggles = np.asarray(mask[1:]).reshape(holds.shape)
        demand = np.asarray(obs["demand"], dtype=np.float64)
        live = holds.sum(axis=1)
        work = demand * np.maximum(live, 1)
        util, queue = obs["util"], obs["queue"]
        n_loading = int(loading.sum())
        if n_loading < self.max_loads:
            want = np.minimum(np.ceil(work / self.per), n_nodes)
            have = live + loading.sum(axis=1)
            short = [s for s in np.argsort(-demand, kind="stable") if want[s] > have[s]]
            for s in short:
                add = [n for n in range(n_nodes) if toggles[s, n] and not holds[s, n]]
                if add:
                    n = min(add, key=lambda k: (util[k], queue[k], k))
                    return 1 + int(s) * n_nodes + n
                room = [(demand[c], -util[n], c, n) for c in range(len(demand))
                        if c != s and live[c] > self.base and demand[c] < self.drop_per
                        for n in range(n_nodes) if holds[c, n] and toggles[c, n]
                        and not holds[s, n] and not loading[s, n]]
                if room:
                    _, _, c, n = min(room)
                    return 1 + c * n_nodes + n
        if n_loading == 0:
            keep = np.maximum(np.ceil(work / self.drop_per), self.base)
            for s in np.argsort(demand, kind="stable"):
                if live[s] > keep[s]:
                    drop = [n for n in range(n_nodes) if holds[s, n] and toggles[s, n]]
                    if drop:
                        n = max(drop, key=lambda k: (obs["slots"][k], util[k], k))
                        return 1 + int(s) * n_nodes + n
        return 0


def balanced_loads(demand: np.ndarray, live: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Node loads under the balancing split, for a batch of placements.

    Each shard's traffic is split over its live replicas so that node loads even out
    (iterative proportional fitting, as :func:`envs.sim.dlrm.estimate_capacity`); a node's load
    is ``sum_s x[s, n] * demand[s, n]``, where ``demand[s, n]`` is the node-seconds per second
    node ``n`` would spend serving all of shard ``s``.

    Args:
        demand: ``(S, N)`` work rates.
        live: ``(C, S, N)`` booleans, one placement per candidate.
        iterations: Fitting rounds.

    Returns:
        ``(C, N)`` each candidate's node loads (shards without a replica add nothing).
    """
    h = live.astype(np.float64)
    count = h.sum(axis=2, keepdims=True)
    x = np.divide(h, count, out=np.zeros_like(h), where=count > 0)
    d = demand[None, :, :]
    for _ in range(iterations):
        load = (x * d).sum(axis=1, keepdims=True)  # (C, 1, N)
        x = h * x / np.maximum(load, 1e-12)
        total = x.sum(axis=2, keepdims=True)
        x = np.divide(x, total, out=np.zeros_like(x), where=total > 0)
    return np.asarray((x * d).sum(axis=1))


def queueing_cost(loads: np.ndarray, cap: float = 0.95) -> np.ndarray:
    """``sum_n rho_n / (1 - rho_n)`` per row of ``loads`` (the M/M/1 queue lengths; ``rho``
    above ``cap`` continues on the tangent at ``cap``, so overloads still rank)."""
    rho = np.asarray(loads, dtype=np.float64)
    inside = np.minimum(rho, cap)
    slope = 1.0 / (1.0 - cap) ** 2
    cost = inside / (1.0 - inside) + slope * np.maximum(rho - cap, 0.0)
    return np.asarray(cost.sum(axis=-1))


class TierAwarePlacement(PlacementHeuristic):
    """Greedy bin-packing of demand against the nodes' service rates, tiers included.

    Every ``period`` decisions (and only when nothing is loading) it prices the placement by
    the node loads under the balancing split of every shard over its live replicas
    (:func:`balanced_loads`), with each shard's work rate *at each node*: the ``node_demand``
    observation (``tier_obs=True``: the node's own tiers and hit rate), or, where the env has
    no such key, the shard's ``demand`` x live replicas at every node (a tier-blind load
    balancer). The price is the M/M/1 queue length summed over nodes (:func:`queueing_cost`),
    so a change that relieves any busy node counts, the busiest most. It adds the replica that
    lowers the price most; when no add lowers it by ``gain`` (relative) it looks at swaps on
    full nodes (drop a replica there so that a later decision adds a better one). Nothing
    changes while the busiest node's load is below ``busy``. The mask keeps every change
    within the nodes' slots and the replica rules.

    Args:
        gain: Relative drop of the price a change must bring.
        busy: Load (node-seconds per second) of the busiest node below which the placement is
            left alone.
        period: Decisions between two looks (a look prices up to a few hundred placements;
            1, the default, decides from the observation alone, as a teacher to clone must).
    """

    name = "tier_aware"

    def __init__(self, gain: float = 0.1, busy: float = 0.25, period: int = 1) -> None:
        if not 0.0 <= gain < 1.0:
            raise ValueError(f"gain must be in [0, 1), got {gain}")
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.gain = float(gain)
        self.busy = float(busy)
        self.period = int(period)
        self._tick = 0

    def reset(self, seed: int | None = None) -> None:
        """Restart the decision counter."""
        self._tick = 0

    @staticmethod
    def work_rates(obs: Obs) -> np.ndarray:
        """``(S, N)``: node-seconds per second node ``n`` would spend serving all of shard
        ``s`` (``node_demand`` where present, else tier-blind from ``demand``)."""
        n_nodes = len(obs["up"])
        if "node_demand" in obs:
            return np.asarray(obs["node_demand"], dtype=np.float64).reshape(-1, n_nodes)
        holds = np.asarray(obs["holds"]).reshape(-1, n_nodes) > 0.5
        live = (holds & (np.asarray(obs["up"]) > 0.5)[None, :]).sum(axis=1)
        rate = np.asarray(obs["demand"], dtype=np.float64) * np.maximum(live, 1)
        return np.repeat(rate[:, None], n_nodes, axis=1)

    def _best(self, demand: np.ndarray, cand: np.ndarray, now: float) -> int:
        """Index of the cheapest candidate placement if it beats ``now`` by ``gain``, else -1."""
        price = queueing_cost(balanced_loads(demand, cand))
        best = int(np.argmin(price))
        return best if price[best] <= now * (1.0 - self.gain) else -1

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Keep, or the add (or the drop of a swap) that lowers the price most."""
        self._tick += 1
        if (self._tick - 1) % self.period or obs["loading"].any():
            return 0
        n_nodes = len(obs["up"])
        demand = self.work_rates(obs)
        n_shards = demand.shape[0]
        holds = np.asarray(obs["holds"]).reshape(n_shards, n_nodes) > 0.5
        live = holds & (np.asarray(obs["up"]) > 0.5)[None, :]
        loads = balanced_loads(demand, live[None])
        if float(loads.max()) < self.busy:
            return 0
        now = float(queueing_cost(loads)[0])
        toggles = mask[1:].reshape(n_shards, n_nodes)
        adds = np.argwhere(toggles & ~holds)
        if len(adds):
            cand = np.repeat(live[None], len(adds), axis=0)
            cand[np.arange(len(adds)), adds[:, 0], adds[:, 1]] = True
            best = self._best(demand, cand, now)
            if best >= 0:
                s, n = adds[best]
                return 1 + int(s) * n_nodes + int(n)
        full = np.asarray(obs["slots"]) >= 1.0 - 1e-6
        swaps = [(c, s, n) for n in np.flatnonzero(full) for c in np.flatnonzero(toggles[:, n]
                 & holds[:, n]) for s in np.flatnonzero(~holds[:, n])]
        if not swaps:
            return 0
        idx = np.array(swaps)
        cand = np.repeat(live[None], len(idx), axis=0)
        rows = np.arange(len(idx))
        cand[rows, idx[:, 0], idx[:, 2]] = False
        cand[rows, idx[:, 1], idx[:, 2]] = True
        best = self._best(demand, cand, now)
        if best >= 0:
            c, _, n = idx[best]
            return 1 + int(c) * n_nodes + int(n)
        return 0


#: Baselines of ShardPlacement by name (``BASELINES_BY_ENV["ShardPlacement"]``).
PLACEMENT_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls for cls in (StaticPlacement, RandomPlacement, HotReplicate,
                              DemandReplicate, TierAwarePlacement)
}
