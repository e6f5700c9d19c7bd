"""``ldsgym/ShardPlacement-v0``: decide which shards each node serves, paying the migrations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.actions import checked_action
from envs.rewards import Outcome
from envs.shard import ShardRoutingEnv, clip, clip_ufunc
from envs.sim.dlrm import ShardSim, added_row_hit, kernels
from envs.sim.dlrm.compiled import make_shard_sim

Obs = dict[str, np.ndarray]
_CLIP = 10.0
#: ``popularity`` of ``ldsgym/ShardPlacement-Drift-v0`` (:mod:`envs.sim.dlrm.popularity`): two
#: shards at 3x their SSD traffic, a new random pair every quarter of the episode.
DRIFT_POPULARITY: dict[str, Any] = {"hot": 2, "factor": 3.0, "phases": 4, "random": True}


def _f32(x: np.ndarray, hi: float = _CLIP) -> np.ndarray:
    """``np.clip(x, 0, hi).astype(np.float32)`` in one ufunc call."""
    out = np.empty(x.shape, dtype=np.float32)
    clip_ufunc(x, 0.0, hi, out=out, casting="unsafe")
    return out


def _mean(values: list[float], table: np.ndarray, rows: list[int], col: int) -> float:
    """``float(table[rows, col].mean())`` given ``values``, that column as floats (``rows``
    not empty): numpy sums fewer than 8 values one after the other (then divides), so plain
    floats give the same bits; longer ones go to numpy (pairwise summation)."""
    if len(rows) < 8:
        it = iter(rows)
        acc = values[next(it)]
        for n in it:
            acc += values[n]
        return acc / len(rows)
    return float(table[rows, col].mean())


class ShardPlacementEnv(ShardRoutingEnv):
    """Place shard replicas on the embedding nodes while a built-in router serves requests.

    ## Description

    The cluster of ``ldsgym/ShardRouting-v0`` (same arguments, same simulator), but the agent
    now controls *placement*: which nodes serve which shard. A new replica is a DRAM working
    set (the node's SSD holds every table already): its pinned tables and the shard's hot rows
    are shipped over the node's link, competing with the sub-requests on it, and the node
    serves the shard (with a warm cache) once they are in. Dropping a replica frees its memory
    slot at once (what is queued there finishes). Each node holds at most ``max_shards``
    shards. Every sub-request is routed by the latency-predictive rule (the earliest predicted
    response among the live replicas, as ``latency_greedy``).

    The agent is consulted at every request arrival, before its sub-requests are routed; most
    of the time the right answer is to leave the placement alone.

    ## Action Space

    ``Discrete(1 + S * N)``: ``0`` keeps the placement; ``1 + s * N + n`` toggles shard ``s``
    on node ``n`` (starts loading it, or drops it). :meth:`action_masks` allows adding where the
    node is up, has a free slot (held + loading < ``max_shards``) and does not hold or load the
    shard, and
    dropping where the shard keeps ``min_replicas`` replicas and another live one. Several
    loads may be in flight (they share the links). The action rule of every ldsgym env
    (:mod:`envs.actions`): ``step`` raises ``ValueError``, changing nothing, for a masked
    action, an index out of range or a non-integer; an unmasked agent can use
    :class:`envs.wrappers.NearestValidAction`. (``info["invalid_actions"]`` stays 0.)

    ## Observation Space

    A ``Dict`` of float32 boxes in ``[0, 10]``:

    | key         | shape   | meaning                                                      |
    |-------------|---------|--------------------------------------------------------------|
    | ``holds``   | (S*N,)  | 1 where node ``n`` serves shard ``s`` (index ``s * N + n``)  |
    | ``loading`` | (S*N,)  | 1 where a replica is being loaded                            |
    | ``demand``  | (S,)    | each shard's recent work (node-seconds per second) / live replicas |
    | ``replicas``| (S,)    | live replicas of each shard / N                              |
    | ``queue``   | (N,)    | sub-requests outstanding at each node / 8                    |
    | ``work``    | (N,)    | estimated work queued at each node / SLA                     |
    | ``util``    | (N,)    | each node's recent busy fraction                             |
    | ``slots``   | (N,)    | shards held or loading / ``max_shards``                      |
    | ``up``      | (N,)    | 1 if the node is up and reachable                            |
    | ``rates``   | (1,)    | recent request rate / capacity of the initial placement      |
    | ``node_demand`` | (S*N,) | (``tier_obs``) shard ``s``'s work rate at node ``n`` |
    | ``best_demand`` | (S,) | (``tier_obs``) its smallest ``node_demand`` over its live replicas |

    ``node_demand`` (index ``s * N + n``) is shard ``s``'s recent work (node-seconds per
    second) if node ``n`` served all of it, at node ``n``'s tiers and hit rate: each request's
    sub-requests priced at every node as the router's prediction does (overhead + the larger
    of the fast- and slow-tier reads, misses from the node's hit rate for the shard: measured
    where it holds the shard, else the Che estimate of its cache with the shard added,
    :func:`envs.sim.dlrm.added_row_hit`), decayed as ``demand``. On a cluster with one tier
    it differs between nodes only by their hit rates; with ``node_tiers`` it shows where a
    shard would be served fast. ``best_demand`` is the shard's at its fastest live replica (0
    when none), so a toggle's worth can be read against what the shard has already.

    ## Rewards

    As ShardRouting (requests good/late/dropped and the backlog since the last decision),
    minus ``reward.reconfig_weight`` per replica started. Worked example (``reconfig_weight
    = 5``): the agent adds a replica of the hot shard; until the next arrival one request
    completes in time: ``r = 1 - 5 = -4``; the cheaper queues pay it back over the episode.

    ## Starting State

    The initial placement of ShardRouting (chained declustering), warm caches, no migration.

    ## Episode End

    After ``episode_queries`` *requests* (truncation); the system then drains.

    ## Arguments

    Those of :class:`~envs.shard.ShardRoutingEnv` (``load`` is relative to the initial
    placement's capacity) plus ``max_shards`` (slots per node; default one more than the
    initial placement uses), ``min_replicas`` (default 1) and ``tier_obs`` (default False: add
    the ``node_demand`` key).

    ``ldsgym/ShardPlacement-Tiers-v0`` is the cluster of ``ldsgym/ShardRouting-Tiers-v0``
    (``node_tiers`` = :data:`envs.shard.TIER_NODES`: GPU/HBM, DRAM+SSD and SSD-backed nodes)
    with ``tier_obs``: two shards (1 and 5) start without a replica on a GPU node.

    ``ldsgym/ShardPlacement-Drift-v0`` is the drifting-popularity scenario: ``popularity=``
    :data:`DRIFT_POPULARITY` at ``load=0.8`` (see ``popularity`` in
    :class:`~envs.shard.ShardRoutingEnv`): the placement that fits one quarter of the episode
    is wrong for the next.

    ## Version History

    * v0: first release.
    * v0 (unchanged dynamics): masked, out-of-range and non-integer actions raise ``ValueError``
      in every env (:mod:`envs.actions`) instead of being treated as ``0``; valid actions give the
      same episodes as before (golden trajectories bit-identical).
    * v0 (unchanged dynamics where every node has the same row cache): ``tier_obs`` (the
      ``node_demand`` and ``best_demand`` keys) and ``ldsgym/ShardPlacement-Tiers-v0``; with
      ``node_tiers`` a new replica's warm rows are capped at the target node's row cache.
    """

    def __init__(self, max_shards: int | None = None, min_replicas: int = 1,
                 load: float = 1.0, reward: str | dict[str, Any] | Any = None,
                 tier_obs: bool = False, **kwargs: Any) -> None:
        if reward is None:
            reward = {"name": "goodput", "backlog_weight": 1.0, "reconfig_weight": 5.0}
        super().__init__(load=load, reward=reward, **kwargs)
        N, S = self.n_nodes, self.n_shards
        held = self.layout.holds.sum(axis=1)
        self.max_shards = int(max_shards) if max_shards is not None else int(held.max()) + 1
        if self.max_shards < int(held.max()):
            raise ValueError(f"max_shards={self.max_shards}: the initial placement already "
                             f"puts {int(held.max())} shards on a node")
        if min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {min_replicas}")
        self.min_replicas = int(min_replicas)
        self.tier_obs = bool(tier_obs)
        box = spaces.Box
        obs_spaces: dict[str, spaces.Space[Any]] = {
            "holds": box(0.0, 1.0, (S * N,), np.float32),
            "loading": box(0.0, 1.0, (S * N,), np.float32),
            "demand": box(0.0, _CLIP, (S,), np.float32),
            "replicas": box(0.0, 1.0, (S,), np.float32),
            "queue": box(0.0, _CLIP, (N,), np.float32),
            "work": box(0.0, _CLIP, (N,), np.float32),
            "util": box(0.0, 1.0, (N,), np.float32),
            "slots": box(0.0, 1.0, (N,), np.float32),
            "up": box(0.0, 1.0, (N,), np.float32),
            "rates": box(0.0, _CLIP, (1,), np.float32),
        }
        if self.tier_obs:
            obs_spaces["node_demand"] = box(0.0, _CLIP, (S * N,), np.float32)
            obs_spaces["best_demand"] = box(0.0, _CLIP, (S,), np.float32)
            #: Hit-rate prior of every (node, shard) for the shards a node does not hold.
            self._hit_prior = added_row_hit(self.layout, self.capacity)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Discrete(1 + S * N)
        # Rows shipped to warm a new replica: the steady-state cache share of each segment on
        # the shard's first replica (the Che estimate).
        warm = np.zeros(len(self.layout.seg_rows), dtype=np.int64)
        for s, reps in enumerate(self.cluster.replicas):
            segs = self.layout.seg_shard == s
            warm[segs] = self.capacity.warm_rows[reps[0], segs]
        self._warm_ship = warm
        # Per target node: no more rows than the node's row cache holds (with one cache size
        # on every node this is ``warm`` itself: a replica's rows of a shard fit its cache).
        ship = np.repeat(warm[None, :], N, axis=0)
        for s in range(S):
            segs = self.layout.seg_shard == s
            total = int(warm[segs].sum())
            for n in range(N):
                cap = self.layout.cache_rows[n]
                if total > cap:
                    ship[n, segs] = warm[segs] * cap // total
        self._warm_ship_to = ship
        self._fixed_list: list[float] = self._fixed.tolist()
        self._bps_list: list[float] = self._bps.tolist()
        self._pmask = np.ones(1 + S * N, dtype=bool)
        self._pmask_key: tuple[ShardSim, int] | None = None
        self._tobs: dict[str, np.ndarray] = {}
        self._tobs_key: tuple[ShardSim, int] | None = None
        self._live = np.zeros((S, N), dtype=bool)
        self._topo_bufs: tuple[np.ndarray, ...] | None = None
        self._tobs_jit: dict[str, np.ndarray] = {}
        self._live_key: tuple[ShardSim, int] | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace and run to the first request."""
        super(ShardRoutingEnv, self).reset(seed=seed)
        trace_seed, sim_seed = (int(x) for x in self.np_random.integers(0, 2**63 - 1, size=2))
        n_req = self.episode_queries
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix, n_req,
                                     self.load * self.capacity_qps)
        arrivals = arrivals.resolve_sla(np.full(len(self.mix.models), self.solo_ms))
        budget = n_req * self.n_shards
        self.sim = make_shard_sim(
            self.layout, arrivals.time_s, arrivals.sla_ms * 1e-3, budget,
            np.random.default_rng(sim_seed), faults=self.faults, stragglers=self.stragglers,
            random_faults=self.random_faults, ewma=self.ewma, row_hit0=self.capacity.row_hit,
            warm_rows=self.capacity.warm_rows, recycle=self.sim, dynamic=True,
            extra_reads=self._extra_reads(len(arrivals.time_s), trace_seed))
        self._rate = 0.0
        self._rate_t = 0.0
        self._demand = np.zeros(self.n_shards)
        self._demand_list: list[float] = [0.0] * self.n_shards
        self._node_demand = np.zeros((self.n_shards, self.n_nodes))
        self._busy_prev: list[float] = [0.0] * self.n_nodes
        self._util = np.zeros(self.n_nodes)
        self._util_list: list[float] = [0.0] * self.n_nodes
        self._util_t = 0.0
        self._snapshot = (0, 0, 0, 0.0)
        self._started = 0
        self._invalid = 0
        self.sim.advance()
        self._observe()
        self._energy_prev = self.energy_j()
        return self._obs(), self._info()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Apply the placement change, route the request's sub-requests, run to the next one."""
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("call reset() before step()")
        a = checked_action(action, self.action_space, self._placement_mask(sim))
        started = 0
        if a:
            s, n = divmod(a - 1, self.n_nodes)
            if sim.holds[n, s]:
                sim.drop_replica(s, n)
            else:
                sim.add_replica(s, n, self._warm_ship_to[n])
                started = 1
        self._started += started
        fixed, bps = ((self._fixed, self._bps) if kernels.AVAILABLE
                      else (self._fixed_list, self._bps_list))
        # The latency-predictive rule: min(valid, key=(predict_finish(sub)[k], k)), for each
        # sub-request of the request.
        sim.route_request_earliest(fixed, bps)
        truncated = sim.pending is None
        if not truncated:
            self._observe()
        reward = self._reward_placement(started)
        obs = self._obs() if not truncated else self._last_obs
        assert obs is not None
        return obs, reward, False, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """No-op, and the toggles allowed now (see the class docstring)."""
        sim = self.sim
        if sim is None or sim.pending is None:
            mask = np.zeros(1 + self.n_shards * self.n_nodes, dtype=bool)
            mask[0] = True
            return mask
        return self._placement_mask(sim).copy()

    def _placement_mask(self, sim: ShardSim) -> np.ndarray:
        """:meth:`action_masks` while a request is pending, cached until the placement or a
        node's state changes (do not modify)."""
        if self._pmask_key is not None and self._pmask_key[0] is sim and (
                self._pmask_key[1] == sim.topology_version):
            return self._pmask
        if kernels.AVAILABLE:
            self._topology_jit(sim)
            return self._pmask
        N, S = self.n_nodes, self.n_shards
        mask = np.zeros(1 + S * N, dtype=bool)
        mask[0] = True
        up = np.asarray(sim.up())
        used = sim.holds.sum(axis=1) + sim.loading.sum(axis=1)
        add = ~sim.holds.T & ~sim.loading.T & (up & (used < self.max_shards))[None, :]
        live = (sim.holds & up[:, None]).sum(axis=0)  # (S,)
        total = sim.holds.sum(axis=0)
        keep = (total - 1 >= self.min_replicas)[:, None] & (
            (live[:, None] - (sim.holds.T & up[None, :])) >= 1)
        drop = sim.holds.T & keep
        mask[1:] = (add | drop).reshape(-1)
        self._pmask, self._pmask_key = mask, (sim, sim.topology_version)
        return mask

    # ------------------------------------------------------------------ helpers
    def _observe(self) -> None:
        """Per-request bookkeeping: request rate, per-shard demand, node utilisation.

        Elementwise in Python floats on the lists :attr:`_demand_list` and
        :attr:`_util_list` (the same IEEE operations, in the same order, as the array
        expressions ``demand * decay + work / window`` and ``util * (1 - w) + clip(inst, 0, 1)
        * w``, so the same bits), then one array of both for :meth:`_obs`."""
        sim = self.sim
        assert sim is not None and sim.pending is not None
        now = sim.events.now
        window = self.rate_window_s
        dt = now - self._rate_t
        decay = math.exp(-dt / window)
        self._rate = self._rate * decay + 1.0 / window
        # Demand: estimated node-seconds this request brings to each shard, as a rate.
        work = [0.0] * self.n_shards
        pending = sim.pending
        req = pending.req
        row_hit = sim.row_hit
        rh_t = row_hit.T.tolist()  # (S, N) as floats
        replicas = sim.replicas
        overhead = self.cluster.node_overhead_s
        lay = self.layout
        uniform = lay.uniform_tiers
        cf_list, cs_list = lay.c_fast_list, lay.c_slow_list
        c_fast, c_slow = cf_list[0], cs_list[0]
        for sub in (pending, *sim.fanout_left()):
            if sub.req is req:  # the nominal service at the replicas' mean hit estimate
                s = sub.shard
                reps = replicas[s] or [0]
                hit = _mean(rh_t[s], row_hit, reps, s)
                if not uniform:  # the replicas' mean per-read costs (sum() adds in turn)
                    k = len(reps)
                    c_fast = sum([cf_list[n] for n in reps]) / k
                    c_slow = sum([cs_list[n] for n in reps]) / k
                miss = sub.d_tracked * (1.0 - hit) + sub.d_untracked
                work[s] = overhead + max(c_fast * (sub.lookups - miss), c_slow * miss)
        demand = [d * decay + w / window for d, w in zip(self._demand_list, work, strict=True)]
        self._demand_list = demand
        if self.tier_obs:
            self._node_demand = (self._node_demand * decay
                                 + self._node_work(sim) / window)
        util: list[float] = self._util_list
        if now > self._util_t:
            busy = list(sim.sub.busy_s)
            span = now - self._util_t
            w = 1.0 - decay
            keep = 1.0 - w
            util = []
            for b, p, u in zip(busy, self._busy_prev, self._util_list, strict=True):
                x = (b - p) / span
                # np.clip(x, 0, 1) (x is not NaN: busy times are finite, span > 0)
                x = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
                util.append(u * keep + x * w)
            self._util_list = util
            self._busy_prev = busy
            self._util_t = now
        both = np.array(demand + util)
        self._demand, self._util = both[:self.n_shards], both[self.n_shards:]
        self._rate_t = now

    def _tier_keys(self, sim: ShardSim, obs: Obs) -> None:
        """``node_demand`` and ``best_demand`` into ``obs``."""
        nd = self._node_demand
        obs["node_demand"] = _f32(nd.reshape(-1))
        key = (sim, sim.topology_version)
        if self._live_key != key:  # the live replicas change only with the topology
            self._live = sim.holds.T & np.asarray(sim.up(), dtype=bool)[None, :]  # (S, N)
            self._live_key = key
        # min over the live entries (np.where(live, nd, inf).min(axis=1): a min is exact)
        best = nd.min(axis=1, where=self._live, initial=np.inf)
        best[~np.isfinite(best)] = 0.0
        obs["best_demand"] = _f32(best)

    def _node_work(self, sim: ShardSim) -> np.ndarray:
        """``(S, N)``: node-seconds each of the pending request's sub-requests would take at
        each node (zero for shards it has no sub-request in)."""
        assert sim.pending is not None
        S = self.n_shards
        req = sim.pending.req
        lookups, tracked, untracked = [0.0] * S, [0.0] * S, [0.0] * S
        has = [False] * S
        for sub in (sim.pending, *sim.fanout_left()):
            if sub.req is req:
                s = sub.shard
                has[s] = True
                lookups[s], tracked[s], untracked[s] = sub.lookups, sub.d_tracked, sub.d_untracked
        per_shard = np.array((lookups, tracked, untracked), dtype=np.float64)[:, :, None]
        hit = np.where(sim.holds, sim.row_hit, self._hit_prior).T  # (S, N)
        miss = per_shard[1] * (1.0 - hit) + per_shard[2]
        lay = self.layout
        # overhead + max(c_fast * (lookups - miss), c_slow * miss), in place (the same
        # elementwise operations: products and sums commute exactly)
        work = per_shard[0] - miss
        np.multiply(work, lay.c_fast, out=work)
        np.multiply(miss, lay.c_slow, out=miss)
        np.maximum(work, miss, out=work)
        work += self.cluster.node_overhead_s
        if not all(has):
            work[~np.array(has)] = 0.0
        return work

    def _topology_obs(self, sim: ShardSim) -> dict[str, np.ndarray]:
        """The parts of the observation that only change with the placement or a node's
        state (cached per :attr:`ShardSim.topology_version`; callers copy them)."""
        key = self._tobs_key
        if key is not None and key[0] is sim and key[1] == sim.topology_version:
            return self._tobs
        if kernels.AVAILABLE:
            self._topology_jit(sim)
            return self._tobs
        N = self.n_nodes
        up = np.asarray(sim.up(), dtype=np.float64)
        used = sim.holds.sum(axis=1) + sim.loading.sum(axis=1)
        self._tobs = {
            "holds": sim.holds.T.reshape(-1).astype(np.float32),
            "loading": sim.loading.T.reshape(-1).astype(np.float32),
            "replicas": _f32(sim.holds.sum(axis=0) / N, 1.0),
            "slots": _f32(used / self.max_shards, 1.0),
            "up": up.astype(np.float32),
            "live": np.maximum((sim.holds & up[:, None].astype(bool)).sum(axis=0), 1),
        }
        self._tobs_key = (sim, sim.topology_version)
        return self._tobs

    def _topology_jit(self, sim: ShardSim) -> None:
        """:meth:`_placement_mask` and :meth:`_topology_obs` in one compiled pass
        (:func:`envs.sim.kernels.placement_topology`), both cached. The kernel refills the
        same buffers each time (their users copy them: :meth:`action_masks`, :meth:`_obs`;
        :func:`envs.actions.checked_action` only reads the mask)."""
        bufs = self._topo_bufs
        if bufs is None:
            N, S = self.n_nodes, self.n_shards
            f32 = np.empty(2 * S * N + S + 2 * N, dtype=np.float32)
            self._topo_bufs = bufs = (
                np.empty(1 + S * N, dtype=bool), f32[:S * N], f32[S * N:2 * S * N],
                f32[2 * S * N:2 * S * N + S], f32[2 * S * N + S:-N], f32[-N:],
                np.empty(S, dtype=np.int64))
            mask, holds_f, loading_f, replicas, slots, up, live = bufs
            self._tobs_jit = {"holds": holds_f, "loading": loading_f, "replicas": replicas,
                              "slots": slots, "up": up, "live": live}
        mask, holds_f, loading_f, replicas, slots, up, live = bufs
        kernels.placement_topology(sim.holds, sim.loading, sim.up(), self.max_shards,
                                     self.min_replicas, mask, holds_f, loading_f, replicas,
                                     slots, up, live)
        key = (sim, sim.topology_version)
        self._pmask, self._pmask_key = mask, key
        self._tobs = self._tobs_jit
        self._tobs_key = key

    def _obs(self) -> Obs:
        sim = self.sim
        assert sim is not None and sim.pending is not None
        req = sim.pending.req
        inv_sla = req.inv_sla  # 1 / max(deadline - arrival, 1e-9)
        topo = self._topology_obs(sim)
        if kernels.AVAILABLE:
            S, N = self.n_shards, self.n_nodes
            f = np.empty(S + 3 * N, dtype=np.float32)
            kernels.placement_obs(self._demand, topo["live"], sim.outstanding,
                                    sim.service_end, sim.work_s, sim.events.now, inv_sla,
                                    self._util, f)
            obs = {
                "holds": topo["holds"].copy(),
                "loading": topo["loading"].copy(),
                "demand": f[:S],
                "replicas": topo["replicas"].copy(),
                "queue": f[S:S + N],
                "work": f[S + N:S + 2 * N],
                "util": f[S + 2 * N:],
                "slots": topo["slots"].copy(),
                "up": topo["up"].copy(),
                "rates": np.array([clip(self._rate / self.capacity_qps)], dtype=np.float32),
            }
            if self.tier_obs:
                self._tier_keys(sim, obs)
            self._last_obs = obs
            return obs
        obs = {
            "holds": topo["holds"].copy(),
            "loading": topo["loading"].copy(),
            "demand": _f32(self._demand / topo["live"]),
            "replicas": topo["replicas"].copy(),
            "queue": _f32(np.divide(sim.outstanding, 8.0)),
            "work": _f32(sim.remaining_work(sim.now) * inv_sla),
            "util": _f32(self._util, 1.0),
            "slots": topo["slots"].copy(),
            "up": topo["up"].copy(),
            "rates": np.array([clip(self._rate / self.capacity_qps)], dtype=np.float32),
        }
        if self.tier_obs:
            self._tier_keys(sim, obs)
        self._last_obs = obs
        return obs

    def _reward_placement(self, started: int) -> float:
        sim = self.sim
        assert sim is not None
        sim.sync_backlog()
        c = sim.req
        snap = (c.good, c.completed - c.good, c.dropped, sim.backlog)
        old = self._snapshot
        self._snapshot = snap
        return float(self.reward_fn(Outcome(snap[0] - old[0], snap[1] - old[1],
                                            snap[2] - old[2], self._energy_delta(), started,
                                            snap[3] - old[3])))

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        info = super()._info()
        req = sim.req
        # Requests are the decision unit here: the conservation law is in requests.
        info.update({
            "sub_arrived": info["arrived"], "sub_completed": info["completed"],
            "sub_dropped": info["dropped"],
            "arrived": req.arrived, "completed": req.completed, "good": req.good,
            "late": req.completed - req.good, "dropped": req.dropped,
            "in_system": req.in_system,
            "migrations": sim.migrations, "migrations_failed": sim.migrations_failed,
            "migration_mb": sim.migration_bytes / 1e6,
            "replicas_total": int(np.count_nonzero(sim.holds)),
        })
        return info
