"""``ldsgym/ClusterRouting-v0``: route each query to a device (partition) of a heterogeneous
cluster, loading and evicting models as needed."""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import checked_action
from envs.presets import get_workload, load_range
from envs.rewards import Outcome, Reward, make_reward
from envs.sim.cluster import kernels as cluster_kernels
from envs.sim.cluster.sim import ClusterSim
from envs.sim.cluster.spec import (
    CLUSTER_PRESETS,
    DeviceGroup,
    base_model,
    build_tables,
    warm_residents,
)
from envs.sim.device.serving import BatcherConfig
from envs.sim.metrics import Counters
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.workloads import build_profile
from traces.arrivals import Arrivals, TraceSource, WorkloadMix
from traces.presets import get_trace

Obs = dict[str, np.ndarray]
#: Observation values are clipped to ``[0, CLIP]``.
CLIP = 10.0
#: Per-slot keys of the observation (each of shape ``(S,)``), in order.
SLOT_KEYS = ("queue", "busy", "finish", "resident", "loading", "free_mem", "energy", "price",
             "mem")


def _group(spec: Mapping[str, Any]) -> DeviceGroup:
    """A device group from a config mapping (``{hw, layout, price_per_hour, link, count}``)."""
    d = dict(spec)
    return DeviceGroup(hw=d["hw"], layout=tuple(d.get("layout", ("full",))),
                       price_per_hour=float(d.get("price_per_hour", 1.0)),
                       link=str(d.get("link", "ethernet-25g")), count=int(d.get("count", 1)))


def _clip(x: float) -> float:
    return CLIP if not x < CLIP else (x if x > 0.0 else 0.0)


def _clip_array(x: np.ndarray) -> np.ndarray:
    """:func:`_clip` elementwise (the same values: NaN -> CLIP, negatives and -0.0 -> 0.0),
    as float32."""
    out = np.fmin(x, CLIP)
    np.fmax(out, 0.0, out=out)
    out += 0.0  # -0.0 -> 0.0
    return out.astype(np.float32)


class ClusterRoutingEnv(gym.Env[Obs, np.int64]):
    """Route inference queries across a heterogeneous cluster that must load models.

    ## Description

    A router fronts a cluster of different devices (by default 8: two T4s, two L4s, an A10,
    an A100 as MIG slices ``3g+2g+1g+1g``, an A100 under MPS ``50/30/20`` and an H100), each a
    full device simulator (:class:`envs.sim.device.shared.SharedGpuSim`: dynamic batching,
    interference among MPS shares), reached over a network link with its own latency and
    bandwidth (:mod:`hwmodels.links`) and priced per hour. Queries for 22 models (Zipf
    popularity, fine-tuned copies of one architecture among them) arrive from a trace. At every
    arrival the agent picks the *slot* (a partition of a device) that serves the query, or
    rejects it. A slot holds the models that fit its memory; a query for a model the slot lacks
    evicts least recently used idle models and loads the weights over the device's host link
    (hundreds of milliseconds: far beyond the SLAs), and the query waits for the load. The
    simulator is :class:`envs.sim.cluster.sim.ClusterSim`.

    ## Action Space

    ``Discrete(S + 1)``: ``0..S-1`` route the query to that slot, ``S`` rejects it.
    :meth:`action_masks` allows the slots that can hold the query's model (its partition's
    memory, after evicting idle models); rejecting is always allowed, so a mask is never empty.
    A masked, out-of-range or non-integer action raises ``ValueError`` and changes nothing (the
    rule of every ldsgym env, :mod:`envs.actions`).

    ## Observation Space

    A ``Dict`` of float32 boxes in ``[0, 10]`` (S slots, M models):

    | key          | shape | meaning                                                           |
    |--------------|-------|-------------------------------------------------------------------|
    | ``model``    | (M,)  | one-hot model of the query                                        |
    | ``sla``      | (1,)  | its SLA / the largest SLA of the mix                              |
    | ``rates``    | (M,)  | recent arrival rate per model (1 s EWMA) / the cluster's capacity |
    | ``queue``    | (S,)  | items queued and in transit per slot / ``max_batch``              |
    | ``busy``     | (S,)  | time left in the slot's running batch / the query's SLA           |
    | ``finish``   | (S,)  | expected time until the query would finish there (network hop or  |
    |              |       | load, wait, queued work, its batch) / its SLA                     |
    | ``resident`` | (S,)  | 1 where the query's model is resident on the slot                 |
    | ``loading``  | (S,)  | time until the model's weights would be ready there / its SLA     |
    |              |       | (0: loaded; a whole load where it is not resident)                |
    | ``free_mem`` | (S,)  | fraction of the slot's memory not held by models                  |
    | ``energy``   | (S,)  | joules per query of this model there at full batches / the        |
    |              |       | largest over the slots                                            |
    | ``price``    | (S,)  | dollars per query of this model there at full batches / the       |
    |              |       | largest over the slots                                            |
    | ``mem``      | (S,)  | the slot's memory / the largest slot's (constant)                 |
    | ``popularity``| (M,) | the mix's popularity / the most popular model's (constant)        |
    | ``footprint``| (M,)  | each model's weights + workspace / the largest slot's memory      |
    |              |       | (constant): with ``mem``, what a placement plan packs             |

    ## Rewards

    A reward object (:mod:`envs.rewards`) weighs what happened since the last decision: the
    default ``goodput`` reward is ``good - late - dropped``; ``energy_weight`` prices joules
    (the devices' dynamic energy and idle power) and ``cost_weight`` dollars (each slot's busy
    time at its share of its device's hourly price). Worked example, with
    ``reward={name: goodput, energy_weight: 0.01, cost_weight: 1000}``: between two arrivals
    five queries finish in time, one late, none dropped; the cluster spent 30 J and its slots
    were busy for US$0.0001 of device time: ``r = 5 - 1 - 0.3 - 0.1 = 3.6``.

    A query's outcome reaches the reward an SLA after its decision (about 650 decisions at load
    1.0: SLAs of 10-150 ms at ~16,000 queries/s) and the cost of a weight load some 8,000
    decisions later: beyond any discount a policy-gradient learner can use. ``decision_credit``
    (``w``, default 0: off) adds a potential-based term (Ng et al., 1999) that books each
    routed query's *predicted* outcome at its decision: ``w x`` the reward of one query in
    time if its finish estimate there (the ``finish`` feature) is within its deadline, else of
    one dropped; the booking is withdrawn when the deadline passes, and what is still booked at
    the episode's end is withdrawn in its last step. The potential is zero at the start and
    the end, so an episode's (undiscounted) return is the same with and without the term; only
    when the signal arrives changes.

    ## Starting State

    Idle devices with empty queues; every slot holds the most popular models that fit its
    memory (a warm cluster); the first query of a freshly drawn trace is pending.

    ## Episode End

    Episodes last ``episode_queries`` decisions (a truncation). After the last decision the
    queries in transit are delivered and every device drains, so the final ``info`` counts
    every query as completed or dropped.

    ## Arguments

    ``gym.make("ldsgym/ClusterRouting-v0", cluster="8", workload="cluster-zipf",
    trace="zipf-shift", load=0.8, episode_queries=300000, max_batch=8, max_queue_delay_ms=2,
    queue_capacity=64, drop_expired=True, precision="fp16", reward="goodput",
    rate_window_s=1, interference=True, hw=None, hw_price_per_hour=1, decision_credit=0,
    compiled=None)``. ``compiled``: the simulator's compiled path (numba; ``None``: where numba
    is available and ``LDSGYM_NO_JIT`` is not set) or its Python path, the reference (the same
    episodes bit for bit; :mod:`envs.sim.cluster.sim`, "Two paths").
    ``cluster`` is a preset
    name (:data:`envs.sim.cluster.spec.CLUSTER_PRESETS`: ``"8"``, ``"16"``, ``"64"``,
    ``"1024"``) or a list of device groups (``{hw, layout, price_per_hour, link, count}``).
    ``hw`` (a ``conf/hw`` name, a mapping or a :class:`~hwmodels.specs.DeviceSpec`; what the
    train app's ``hw`` group passes) makes the cluster homogeneous instead: as many whole
    devices of that kind as the preset has, on 100 GbE, at ``hw_price_per_hour`` each (drop the
    group, ``~hw``, for the preset's heterogeneous cluster). ``load`` the offered load as a
    fraction of the cluster's capacity (the sum over devices of
    :func:`envs.sim.device.tables.capacity_qps` for the mix), or a range ``[lo, hi]`` drawn per
    episode. ``info`` holds the metrics of :meth:`envs.sim.cluster.sim.ClusterSim.summary`
    (``sla_attainment``, ``goodput``, ``p99_latency_ms``, ``energy_per_query_j``,
    ``cost_per_query_usd``, ``loads``, ``evictions``, ...).

    ## Version History

    * v0: first release (issue 15): routing, network hops, weight loads with LRU eviction,
      presets of 8 and 16 devices. Default traffic ``zipf-shift`` (Poisson arrivals, the
      popularity rotating by five ranks every quarter episode:
      :class:`traces.shift.PopularityShift`) and 300,000 queries per episode (about 20 s of
      simulated time at load 1.0 on 8 devices, 40 loads' worth: a load, 0.5-0.75 s,
      amortises; the 16-device id 600,000). Was Poisson, 1,000 queries (65 ms, shorter than
      one load).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012
    _steps: int
    _rates: list[float] | np.ndarray
    _rate_t: float
    _snapshot: tuple[int, int, int, float, float, float]
    _mask: np.ndarray | None
    _trace_seed: int
    _credits: list[tuple[float, float]]
    _credit_sum: float
    _finish_s: list[float] | np.ndarray

    def __init__(
        self,
        cluster: str | Sequence[Mapping[str, Any] | DeviceGroup] = "8",
        workload: str | Sequence[Mapping[str, Any]] | WorkloadMix = "cluster-zipf",
        trace: str | TraceSource = "zipf-shift",
        load: float | Sequence[float] = 0.8,
        episode_queries: int = 300_000,
        max_batch: int = 8,
        max_queue_delay_ms: float = 2.0,
        queue_capacity: int = 64,
        drop_expired: bool = True,
        precision: str = "fp16",
        reward: str | dict[str, Any] | Reward = "goodput",
        rate_window_s: float = 1.0,
        interference: bool = True,
        hw: str | Mapping[str, Any] | DeviceSpec | None = None,
        hw_price_per_hour: float = 1.0,
        decision_credit: float = 0.0,
        compiled: bool | None = None,
    ) -> None:
        if isinstance(cluster, str):
            try:
                groups = CLUSTER_PRESETS[cluster]
            except KeyError:
                raise ValueError(f"cluster '{cluster}': unknown preset; known: "
                                 f"{', '.join(CLUSTER_PRESETS)}") from None
        else:
            groups = tuple(g if isinstance(g, DeviceGroup) else _group(g) for g in cluster)
        if hw is not None:  # a homogeneous cluster of as many whole devices of this kind
            groups = (DeviceGroup(load_device(hw), ("full",), float(hw_price_per_hour),
                                  "ethernet-100g", sum(g.count for g in groups)),)
        self.groups = groups
        self.mix = get_workload(workload)
        self.trace = get_trace(trace)
        lo, hi = load_range(load)
        if episode_queries < 1:
            raise ValueError(f"episode_queries must be >= 1, got {episode_queries}")
        self.load = lo
        self.load_range = (lo, hi)
        self.episode_queries = int(episode_queries)
        self.batcher = BatcherConfig(max_batch, max_queue_delay_ms * 1e-3, queue_capacity,
                                     drop_expired)
        self.reward_fn = make_reward(reward)
        self._reward_value = getattr(self.reward_fn, "value", None)
        if not (math.isfinite(decision_credit) and decision_credit >= 0.0):
            raise ValueError(f"decision_credit must be a finite number >= 0, got "
                             f"{decision_credit}")
        self.decision_credit = float(decision_credit)
        #: The reward of one query served in time and of one dropped (the predictions the
        #: decision credit books at routing time).
        self._credit_good = float(self.reward_fn(Outcome(good=1))) * self.decision_credit
        self._credit_bad = float(self.reward_fn(Outcome(dropped=1))) * self.decision_credit
        self.rate_window_s = float(rate_window_s)
        profiles = [build_profile(base_model(n)) for n in self.mix.names]
        self.tables = build_tables(groups, profiles, self.mix.probabilities, max_batch,
                                   precision, interference)
        tab = self.tables
        S, M = len(tab.slots), len(profiles)
        self.n_slots, self.n_models = S, M
        self.capacity_qps = tab.capacity_qps
        order = np.argsort(-self.mix.probabilities, kind="stable").tolist()
        #: Per slot, the models resident at the start of an episode (LRU first).
        self.initial_residents = warm_residents(tab, order)
        self._slowdown_caches: list[dict[Any, tuple[float, ...]] | None] = [
            {} if sd is not None else None for sd in tab.slowdowns]
        # Per model: joules and dollars per query on each slot at full batches, normalised by
        # the largest over the slots where it fits (0 where it does not).
        self._energy_of: list[np.ndarray] = []
        self._price_of: list[np.ndarray] = []
        per_item = tab.per_item_s
        for m in range(M):
            e_row, c_row = [], []
            for s, (d, p) in enumerate(tab.slots):
                t = float(per_item[s, m])
                busy_w = tab.power_w[d][p][1]
                e_row.append(busy_w * t if math.isfinite(t) else 0.0)
                c_row.append(tab.price_per_s[d] * tab.slot_share[s] * t
                             if math.isfinite(t) else 0.0)
            e_max, c_max = max(e_row) or 1.0, max(c_row) or 1.0
            self._energy_of.append(np.array([x / e_max for x in e_row], dtype=np.float32))
            self._price_of.append(np.array([x / c_max for x in c_row], dtype=np.float32))
        self._solo_ms = np.array([
            min(tab.latency[d][p][m][0] for d, p in tab.slots if tab.fits[d][p][m])
            for m in range(M)]) * 1e3
        self._onehot = list(np.eye(M, dtype=np.float32))
        self._slot_mem = np.array(tab.slot_mem_bytes, dtype=np.float64)
        self._max_sla_s = float(self.mix.sla_ms.max()) * 1e-3
        self._inv_b = 1.0 / max_batch
        self._inv_cap = 1.0 / self.capacity_qps
        sizes = {"model": M, "sla": 1, "rates": M, **dict.fromkeys(SLOT_KEYS, S),
                 "popularity": M, "footprint": M}
        biggest = max(tab.slot_mem_bytes)
        self._mem = np.array([b / biggest for b in tab.slot_mem_bytes], dtype=np.float32)
        prob = self.mix.probabilities
        self._popularity = (prob / prob.max()).astype(np.float32)
        self._footprint = np.array([_clip(b / biggest) for b in tab.footprint_bytes],
                                   dtype=np.float32)
        self.observation_space: spaces.Dict = spaces.Dict({  # type: ignore[assignment]
            k: spaces.Box(0.0, CLIP, (n,), np.float32) for k, n in sizes.items()})
        self.action_space = spaces.Discrete(S + 1)
        self.sim: ClusterSim | None = None
        self.compiled = cluster_kernels.AVAILABLE if compiled is None else bool(compiled)
        # The compiled path's observation: one float32 buffer per decision, the keys views
        # into it; per model a template with the constant keys filled.
        layout, k = [], 0
        for key, n in sizes.items():
            layout.append((key, k, k + n))
            k += n
        self._layout = layout
        self._obs_size = k
        #: The keys' spans as slice objects (a view per key of each decision's buffer).
        self._slices = [(key, slice(a, b)) for key, a, b in layout]
        spans = {key: (a, b) for key, a, b in layout}
        self._span_sla = spans["sla"][0]
        self._span_rates = spans["rates"]
        self._span_slots = (spans["queue"][0], spans["free_mem"][1])
        self._templates: list[np.ndarray] = []
        for m in range(M):
            tmpl = np.zeros(k, np.float32)
            for key, row in (("model", self._onehot[m]), ("energy", self._energy_of[m]),
                             ("price", self._price_of[m]), ("mem", self._mem),
                             ("popularity", self._popularity),
                             ("footprint", self._footprint)):
                a, b = spans[key]
                tmpl[a:b] = row
            self._templates.append(tmpl)
        # The compiled path's mask: the simulator writes the slots' part at each decision
        # (action_masks() hands out copies; step() reads it before the next is written).
        self._mask_buf = np.ones(S + 1, dtype=bool)
        self._mask_slots = self._mask_buf[:S]

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace, start a warm cluster and run to the first arrival."""
        super().reset(seed=seed)
        trace_seed = self._trace_seed = int(self.np_random.integers(0, 2**63 - 1))
        lo, hi = self.load_range
        if hi > lo:
            self.load = lo + (hi - lo) * float(self.np_random.random())
        arrivals = self._draw_arrivals(trace_seed)
        # The previous episode's device simulators are restarted rather than built again
        # (at 1,024 devices building and freeing them dominated a short episode).
        previous, self.sim = self.sim, None
        self.sim = ClusterSim(self.tables, arrivals, self.batcher, self.initial_residents,
                              self._slowdown_caches, compiled=self.compiled, reuse=previous)
        self._rates = [0.0] * self.n_models if not self.compiled else np.zeros(self.n_models)
        self._rate_t = 0.0
        self._steps = 0
        self._snapshot = (0, 0, 0, 0.0, 0.0, 0.0)
        self._mask = None
        self._credits = []
        self._credit_sum = 0.0
        self.sim.advance()
        return self._observe(), self.sim.summary()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Route (or reject) the pending query and run to the next arrival."""
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("call reset() before step()")
        mask = self._mask  # read only here; action_masks() hands out copies
        a = checked_action(action, self.action_space,
                           mask if mask is not None else self.action_masks())
        credit = 0.0
        if a == self.n_slots:
            sim.reject()
        else:
            if self.decision_credit:
                credit = self._book_credit(a)
            sim.route(a)
        self._steps += 1
        self._mask = None
        sim.advance()
        if sim.pending is not None:  # the next decision's observation (it reads the state
            obs = self._observe()    # only: the counters below are the same either way)
        c = sim.counters()
        if sim.pending is None:  # truncated: drained
            if self.decision_credit:  # the potential is 0 at the episode's end
                credit -= self._credit_sum
                self._credits.clear()
                self._credit_sum = 0.0
            return self._last_obs, self._reward(c) + credit, False, True, sim.summary(c)
        if self.decision_credit:
            credit -= self._expire_credits(sim.now)
        reward = self._reward(c) + credit
        return obs, reward, False, False, sim.summary(c)

    def action_masks(self) -> np.ndarray:
        """Valid actions for the pending query (reject is always valid)."""
        sim = self.sim
        if sim is not None and sim.pending is not None:
            if self._mask is None:  # once per decision: nothing changes until step()
                m = sim.pending_query()[0]
                self._mask = np.array([*sim.valid_slots(m), True], dtype=bool)
            return self._mask.copy()
        return np.ones(self.n_slots + 1, dtype=bool)

    def latency_counts(self) -> list[int]:
        """Latency histogram of the episode so far (bins: ``envs.sim.metrics.BIN_EDGES_S``)."""
        return list(self.sim.latency.counts) if self.sim is not None else []

    # ------------------------------------------------------------------ internals
    def _draw_arrivals(self, trace_seed: int) -> Arrivals:
        """The episode's queries, from its trace seed and load (the same every time)."""
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix,
                                     self.episode_queries, self.load * self.capacity_qps)
        arrivals = arrivals.resolve_sla(self._solo_ms)
        return dataclasses.replace(arrivals, size=np.ones(len(arrivals), np.int32))

    def __getstate__(self) -> dict[str, Any]:
        # The trace's columns (hundreds of thousands of queries) are drawn again from the
        # episode's seed when unpickled instead of travelling.
        state = self.__dict__.copy()
        if state.get("sim") is not None:
            state["sim"] = state["sim"].without_trace()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._mask_slots = self._mask_buf[:self.n_slots]  # a view again (pickle copies)
        if self.sim is not None:
            self.sim.attach_trace(self._draw_arrivals(self._trace_seed))

    def _observe(self) -> Obs:
        """The pending query's arrival counted in the rates (:meth:`_observe_arrival`), then
        its observation (:meth:`_obs`); on the compiled path one kernel call
        (:meth:`ClusterSim.observe_flat`) does what the Python path computes there."""
        if not self.compiled:
            self._observe_arrival()
            return self._obs()
        sim = self.sim
        assert sim is not None and sim.pending is not None
        now = sim.now
        m, deadline, sla = sim.pending_query()
        decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
        self._rate_t = now
        left = deadline - now
        inv_sla = 1.0 / left if left > 0 else 1e3
        rates = self._rates
        assert isinstance(rates, np.ndarray)  # the compiled path's
        buf = np.empty(self._obs_size, np.float32)  # the kernel writes every entry
        self._finish_s = sim.observe_flat(
            m, self._inv_b, inv_sla, CLIP, buf, self._span_slots[0], self._mask_slots,
            rates, decay, 1.0 / self.rate_window_s, self._inv_cap, self._span_rates[0],
            sla / self._max_sla_s, self._span_sla, self._templates[m])
        self._mask = self._mask_buf  # the last entry (reject) stays True
        obs = {key: buf[span] for key, span in self._slices}
        self._last_obs = obs
        return obs

    def _observe_arrival(self) -> None:
        """The Python path's rates: decayed to now, plus one for the pending query."""
        sim = self.sim
        assert sim is not None
        now = sim.now
        decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
        rates = self._rates = [r * decay for r in self._rates]
        rates[sim.pending_query()[0]] += 1.0 / self.rate_window_s
        self._rate_t = now

    def _book_credit(self, s: int) -> float:
        """Book the predicted outcome of routing the pending query to slot ``s`` (the
        reward of a query served in time if its finish estimate there is within its
        deadline, else of a dropped one, times ``decision_credit``) until its deadline;
        returns it."""
        sim = self.sim
        assert sim is not None
        deadline = sim.pending_query()[1]
        value = (self._credit_good if self._finish_s[s] <= deadline - sim.now
                 else self._credit_bad)
        heapq.heappush(self._credits, (deadline, value))
        self._credit_sum += value
        return value

    def _expire_credits(self, now: float) -> float:
        """Withdraw the predictions of the queries whose deadline has passed by ``now``;
        returns their sum."""
        credits = self._credits
        total = 0.0
        while credits and credits[0][0] <= now:
            total += heapq.heappop(credits)[1]
        self._credit_sum -= total
        return total

    def _reward(self, c: Counters) -> float:
        """The reward for what happened since the last call (the differences of the counters
        ``c``, :meth:`ClusterSim.counters` now)."""
        sim = self.sim
        assert sim is not None
        good, completed, energy = c.good, c.completed, c.energy_j
        backlog, cost = sim.backlog_and_cost()
        dropped = c.dropped
        g0, l0, d0, e0, b0, c0 = self._snapshot
        self._snapshot = (good, completed - good, dropped, energy, backlog, cost)
        value = self._reward_value
        if value is None:
            return float(self.reward_fn(Outcome(good - g0, completed - good - l0, dropped - d0,
                                                energy - e0, 0, backlog - b0, cost - c0)))
        return float(value(good - g0, completed - good - l0, dropped - d0, energy - e0, 0,
                           backlog - b0, cost - c0))

    def _obs(self) -> Obs:
        """The Python path's observation (the reference of :meth:`_observe`'s)."""
        sim = self.sim
        assert sim is not None and sim.pending is not None
        m, deadline, sla = sim.pending_query()
        left = deadline - sim.now
        inv_sla = 1.0 / left if left > 0 else 1e3
        load_wait = sim.load_wait_s
        finish = self._finish_s = sim.finish_estimates_s(m)
        obs = {
            "model": self._onehot[m].copy(),
            "sla": np.array([_clip(sla / self._max_sla_s)], dtype=np.float32),
            "rates": _clip_array(np.array(self._rates) * self._inv_cap),
            "queue": _clip_array(np.array(sim.queued_items()) * self._inv_b),
            "busy": _clip_array(np.array(sim.busy_left_s()) * inv_sla),
            "finish": _clip_array(np.array(finish) * inv_sla),
            "resident": np.array([m in r for r in sim.resident], dtype=np.float32),
            "loading": _clip_array(np.array([load_wait(s, m) for s in range(self.n_slots)])
                                   * inv_sla),
            "free_mem": _clip_array(1.0 - np.array(sim.mem_used) / self._slot_mem),
            "energy": self._energy_of[m].copy(),
            "price": self._price_of[m].copy(),
            "mem": self._mem.copy(),
            "popularity": self._popularity.copy(),
            "footprint": self._footprint.copy(),
        }
        self._last_obs = obs
        return obs
