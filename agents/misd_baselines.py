"""Baselines of the MISD literature (many models, one GPU) for PartitionPlacement and Repartition.

PartitionPlacement (where each query goes):

* ``gpulet_best_fit`` (gpulet, Choi et al. ATC'22, greedy best fit): the *smallest* partition
  on which the query still meets its deadline, keeping large partitions free for queries that
  need them; when none can, the one where it finishes first (or reject).
* ``prema`` (PREMA, Choi & Rhu HPCA'20, token-based priority scheduling with preemption): run
  with ``priorities=True`` (and optionally ``preempt=True``) the partitions serve the most
  important queued class first at every batch boundary; the placement counts only the work
  that will not yield to the query (``finish_prio``) and picks the earliest finish.
* ``interference_aware`` (in the spirit of iGniter / Usher): the partition with the most slack
  to the deadline once the co-runners' predicted slowdown is applied (``slack``).

Repartition (every T seconds: keep the layout or switch):

* ``static``: never re-partition (the starting layout; GPUs are often configured once).
* ``best_static_hindsight``: an oracle: before each episode it replays the same trace (same
  seed) once per candidate layout held fixed, and then serves the episode in the layout that
  had the highest goodput. The upper bound of every static policy.
* ``threshold`` (GSLICE-like, Dhakal et al. SoCC'20): re-partition only when the current
  layout's forecast utilisation stays across a threshold: above ``high``, towards more
  capacity for the forecast mix; below ``low``, towards lower latency while utilisation stays
  under ``high``; only when the gain over a horizon beats the switch's downtime cost
  (``switch_cost``), with a cooldown between switches.
* ``load_proportional`` (gpulet's periodic reorganisation): every ``period`` intervals, switch
  to the layout whose capacity best matches the forecast per-model load (lowest utilisation)
  when that gain over a horizon beats the switch's downtime cost.
* ``interval_hindsight``: an oracle and upper bound: replays the episode once per candidate
  layout held fixed and takes, per interval, the layout that served the most queries within
  their SLA in that interval; the sum of those maxima, switching ignored, is the bound
  (reported as ``bound_*`` extras); acting, it follows that schedule at the real switch cost.
* ``greedy`` (MIG-serving-like, Tan et al. 2021): at every decision, the layout whose
  partitions, time-shared as well as possible, cover the recently observed per-model rates
  with the largest max-min ratio of capacity to demand; with hysteresis (margin, patience,
  cooldown, a switch must pay for its downtime).

* ``lookahead`` (model-predictive): the greedy's rule and hysteresis, but each candidate is
  scored by simulating it, in a copy of the environment, on fresh arrivals with the recently
  observed per-model rates (SLA attainment), which catches the head-of-line blocking between
  models sharing a partition that the max-min profile misses.

Each reads only the observation and the mask, except the hindsight oracles (handed the
environment by the harness through ``bind_env``), ``greedy`` (which reads the candidates'
profiled per-query costs from the environment through ``bind_env``, never the trace) and
``lookahead`` (which copies the environment as its model and feeds it its own arrivals).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linprog

from agents.policy import HeuristicPolicy, Obs, earliest_or_reject
from envs.sim.device import rules
from traces.synthetic import MixShift


class GpuletBestFit(HeuristicPolicy):
    """Greedy best fit: the smallest partition that still meets the deadline.

    Among the partitions with ``slack >= margin`` the smallest (``size``), ties to the least
    slack (the tightest fit), then to the lower index. When none has that much slack: the one
    with the most slack, or reject if ``reject_hopeless`` and even that is negative.

    Args:
        margin: Slack (a fraction of the time to the deadline) a fit must leave: the estimate
            behind ``slack`` assumes full batches and no further co-runners.
        reject_hopeless: Reject queries no partition can serve in time.
    """

    name = "gpulet_best_fit"

    def __init__(self, margin: float = 0.5, reject_hopeless: bool = True) -> None:
        self.margin = margin
        self.reject_hopeless = reject_hopeless

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """See the class docstring."""
        # The observation is float32: the margin is compared as a float32, as numpy would.
        return rules.best_fit(obs["slack"].tolist(), obs["size"].tolist(), mask.tolist(),
                              rules.f32(self.margin), self.reject_hopeless, bool(mask[-1]))


class PremaPolicy(HeuristicPolicy):
    """PREMA-style: the earliest finish counting only work at least as important.

    Args:
        reject_hopeless: Reject a query that finishes late everywhere (``finish_prio > 1``).
    """

    name = "prema"

    def __init__(self, reject_hopeless: bool = True) -> None:
        self.reject_hopeless = reject_hopeless

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Argmin of ``finish_prio`` over valid partitions."""
        return earliest_or_reject(obs["finish_prio"], mask, self.reject_hopeless)


class InterferenceAwarePolicy(HeuristicPolicy):
    """The partition with the most slack once co-runner slowdowns are predicted.

    Args:
        reject_hopeless: Reject a query whose best slack is negative (late everywhere).
    """

    name = "interference_aware"

    def __init__(self, reject_hopeless: bool = True) -> None:
        self.reject_hopeless = reject_hopeless

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Argmax of ``slack`` over valid partitions."""
        return rules.most_slack(obs["slack"].tolist(), mask.tolist(), self.reject_hopeless,
                                bool(mask[-1]))


#: PartitionPlacement baselines added by this module, by name (agents.baselines adds them).
MISD_PLACEMENT_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls for cls in (GpuletBestFit, PremaPolicy, InterferenceAwarePolicy)
}


# ---------------------------------------------------------------------------- Repartition
class _LayoutPolicy(HeuristicPolicy):
    """Base of the Repartition baselines: action 0 keeps, ``1 + l`` switches to layout l."""

    @staticmethod
    def n_actions(observation: Obs) -> int:
        """One action per candidate layout, plus keep."""
        return int(observation["layout"].shape[-1]) + 1

    @staticmethod
    def _switch(mask: np.ndarray, target: int) -> int:
        """The action that switches to ``target`` if allowed, else keep."""
        a = 1 + int(target)
        return a if a < len(mask) and mask[a] else 0


class StaticLayout(_LayoutPolicy):
    """Never re-partition."""

    name = "static"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Keep."""
        return 0


class BestStaticInHindsight(_LayoutPolicy):
    """Oracle: the static layout with the best goodput on this very episode (see module).

    The harness calls :meth:`bind_env` with the environment and the episode seed before the
    episode; the policy replays the episode in a copy once per candidate layout.

    Attributes:
        scores: Goodput of each candidate on the last bound episode.
        choice: Index of the chosen candidate (the first of the best).
    """

    name = "best_static_hindsight"

    def __init__(self, metric: str = "goodput") -> None:
        self.metric = metric
        self.scores: list[float] = []
        self.choice: int | None = None
        self._first = True

    def bind_env(self, env: Any, seed: int) -> None:
        """Replay the episode of ``seed`` in every static layout and remember the best."""
        base = env.unwrapped
        self.scores = [static_score(base, layout, seed, self.metric)
                       for layout in range(base.n_layouts)]
        self.choice = int(np.argmax(self.scores))
        self._first = True

    def reset(self, seed: int | None = None) -> None:
        """The next decision is the episode's first."""
        self._first = True

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Switch (for free) to the chosen layout at the first decision, then keep."""
        first, self._first = self._first, False
        if not first or self.choice is None:
            return 0
        return self._switch(mask, self.choice)


def static_score(env: Any, layout: int, seed: int, metric: str = "goodput") -> float:
    """``metric`` of the episode ``seed`` of a copy of ``env`` held in candidate ``layout``."""
    return float(static_trajectory(env, layout, seed)[-1][metric])


def static_trajectory(env: Any, layout: int, seed: int) -> list[dict[str, Any]]:
    """The ``info`` after every step of the episode ``seed`` of a copy of ``env`` (unwrapped)
    held in candidate ``layout`` (chosen, for free, at the first decision)."""
    sim_env = copy.deepcopy(env)
    sim_env.reset(seed=seed)
    first = 1 + layout if layout != sim_env.start_index else 0
    _, _, term, trunc, info = sim_env.step(first)
    infos = [info]
    while not (term or trunc):
        _, _, term, trunc, info = sim_env.step(0)
        infos.append(info)
    return infos


def _gain_minus_cost(rel_gain: np.ndarray, cost: np.ndarray, horizon: float) -> np.ndarray:
    """Intervals of capacity a switch is expected to win over ``horizon`` intervals (a
    relative improvement held that long) minus what its downtime loses (``switch_cost``)."""
    return rel_gain * horizon - cost


class ThresholdRepartition(_LayoutPolicy):
    """GSLICE-like threshold re-partitioning with hysteresis and a cooldown (see module).

    A trigger needs the forecast utilisation of the current layout above ``high`` (or below
    ``low``) for ``patience`` intervals in a row. Above: the target is the layout with the
    largest relative utilisation reduction; below: the one with the largest relative latency
    reduction among those that keep utilisation under ``high - margin``. Either way the switch
    happens only if the gain held for ``horizon`` intervals beats the switch's expected loss of
    capacity (``switch_cost``).

    Args:
        high: Forecast utilisation above which the layout is too small.
        low: Forecast utilisation below which a faster layout is affordable.
        margin: Headroom kept under ``high`` when choosing a faster layout.
        patience: Consecutive intervals a threshold must be crossed.
        horizon: Intervals over which a switch must pay for itself.
        cooldown: Intervals to wait after a switch before the next.
    """

    name = "threshold"

    def __init__(self, high: float = 0.85, low: float = 0.5, margin: float = 0.05,
                 patience: int = 3, horizon: float = 30.0, cooldown: int = 10) -> None:
        self.high, self.low, self.margin = high, low, margin
        self.patience, self.horizon, self.cooldown = patience, horizon, cooldown
        self._wait = 0
        self._above = self._below = 0

    def reset(self, seed: int | None = None) -> None:
        """No cooldown, no crossing seen."""
        self._wait = 0
        self._above = self._below = 0

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """See the class docstring."""
        util, latency, cost = obs["util"], obs["latency"], obs["switch_cost"]
        if not util.any():
            return 0  # nothing observed yet
        cur = int(np.argmax(obs["layout"]))
        self._above = self._above + 1 if util[cur] > self.high else 0
        self._below = self._below + 1 if util[cur] < self.low else 0
        if self._wait > 0:
            self._wait -= 1
            return 0
        score = np.full(len(util), -np.inf)
        if self._above >= self.patience:
            rel = (util[cur] - util) / max(float(util[cur]), 1e-6)
            score = _gain_minus_cost(rel, cost, self.horizon)
        elif self._below >= self.patience:
            rel = (latency[cur] - latency) / max(float(latency[cur]), 1e-6)
            score = np.where(util < self.high - self.margin,
                             _gain_minus_cost(rel, cost, self.horizon), -np.inf)
        score[cur] = -np.inf
        target = int(np.argmax(score))
        if not score[target] > 0:
            return 0
        a = self._switch(mask, target)
        if a:
            self._wait = self.cooldown
            self._above = self._below = 0
        return a


class LoadProportional(_LayoutPolicy):
    """Periodic reorganisation to the layout that fits the forecast load best (see module).

    Every ``period`` intervals: the layout with the lowest forecast utilisation (the capacity
    most in proportion to the per-model load), if the relative reduction held for ``horizon``
    intervals beats the switch's expected loss of capacity and exceeds ``margin``.

    Args:
        period: Intervals between reorganisations.
        margin: Relative utilisation improvement needed to switch.
        horizon: Intervals over which a switch must pay for itself.
    """

    name = "load_proportional"

    def __init__(self, period: int = 10, margin: float = 0.05, horizon: float = 30.0) -> None:
        self.period, self.margin, self.horizon = period, margin, horizon
        self._t = 0

    def reset(self, seed: int | None = None) -> None:
        """Restart the period."""
        self._t = 0

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """See the class docstring."""
        self._t += 1
        util = obs["util"]
        if (self._t - 1) % self.period or not util.any():
            return 0
        cur = int(np.argmax(obs["layout"]))
        rel = (util[cur] - util) / max(float(util[cur]), 1e-6)
        score = np.where(rel > self.margin,
                         _gain_minus_cost(rel, obs["switch_cost"], self.horizon), -np.inf)
        score[cur] = -np.inf
        best = int(np.argmax(score))
        if not score[best] > 0:
            return 0
        return self._switch(mask, best)


class IntervalHindsight(_LayoutPolicy):
    """Oracle: the best layout of every interval in hindsight, switching ignored (see module).

    :meth:`bind_env` replays the episode once per candidate layout held fixed (as
    :class:`BestStaticInHindsight` does) and reads, from each replay, how many queries met
    their SLA in every interval (the step's increase of ``good``; the last step includes the
    final drain). Per interval the layout with the most is the interval's best; the **bound**
    adds up those maxima: what free, instantaneous re-partitioning to the right layout at every
    decision would serve (an interval's queries are routed, batched and dropped by the
    simulator in that layout; only the few milliseconds of queue handed across an interval
    boundary are taken from the held layout's own replay). By construction it is at least
    every static layout's good count. :meth:`episode_extras` reports it (``bound_goodput``:
    bound / the shortest replay's simulated time, so it is also at least every static
    goodput; ``bound_sla_attainment``; ``bound_switches``: changes of the per-interval best).

    Acting in the environment it follows that schedule (switching, at the real cost, whenever
    the interval's best layout changes; an interval tied with the previous one keeps it): the
    result the harness reports is the hindsight schedule *with* switching costs.

    Attributes:
        schedule: Per interval, the index of its best layout.
        per_interval: ``(L, intervals)`` good queries of each static replay in each interval.
        bound: The metrics of :meth:`episode_extras` for the last bound episode.
        static_finals: Per candidate, the final ``info`` of its static replay.
    """

    name = "interval_hindsight"

    def __init__(self) -> None:
        self.schedule: list[int] = []
        self.per_interval = np.zeros((0, 0), dtype=np.int64)
        self.bound: dict[str, float] = {}
        self.static_finals: list[dict[str, Any]] = []
        self._k = 0

    def bind_env(self, env: Any, seed: int) -> None:
        """Replay the episode of ``seed`` in every static layout; the per-interval best."""
        base = env.unwrapped
        runs = [static_trajectory(base, layout, seed) for layout in range(base.n_layouts)]
        lengths = {len(r) for r in runs}
        if len(lengths) != 1:  # the arrivals do not depend on the layout
            raise RuntimeError(f"interval_hindsight: static replays of seed {seed} have "
                               f"different numbers of intervals {sorted(lengths)}")
        good = np.array([[info["good"] for info in r] for r in runs], dtype=np.int64)
        per = np.diff(good, axis=1, prepend=0)
        schedule: list[int] = []
        for k in range(per.shape[1]):
            col = per[:, k]
            prev = schedule[-1] if schedule else int(np.argmax(col))
            schedule.append(prev if col[prev] == col.max() else int(np.argmax(col)))
        total = int(per.max(axis=0).sum())
        arrived = int(runs[0][-1]["arrived"])
        sim_time = min(float(r[-1]["sim_time_s"]) for r in runs)
        self.per_interval, self.schedule = per, schedule
        self.static_finals = [r[-1] for r in runs]
        self.bound = {
            "bound_good": float(total),
            "bound_goodput": total / sim_time if sim_time > 0 else 0.0,
            "bound_sla_attainment": total / arrived if arrived else 1.0,
            "bound_switches": float(sum(a != b for a, b in itertools.pairwise(schedule))),
        }
        self._k = 0

    def episode_extras(self) -> dict[str, float]:
        """The bound of the last bound episode (added to the harness's episode result)."""
        return dict(self.bound)

    def reset(self, seed: int | None = None) -> None:
        """The next decision is the episode's first."""
        self._k = 0

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Switch to this interval's best layout (keep while a switch is under way)."""
        k, self._k = self._k, self._k + 1
        if k >= len(self.schedule):
            return 0
        target = self.schedule[k]
        return 0 if target == int(np.argmax(obs["layout"])) else self._switch(mask, target)


def maxmin_capacity(per_item_s: np.ndarray, mix: np.ndarray) -> float:
    """Queries/s one layout serves of the mix ``mix`` when its partitions are time-shared
    among the models as well as possible (a linear program).

    ``per_item_s[p, m]``: seconds per query of model m on partition p at full batches (inf: the
    model does not fit, or no partition). The largest ``lam`` such that ``lam * mix[m]``
    queries/s of every model can be split over the partitions with each partition busy at most
    all the time: max-min of capacity / demand over the models, times the total demand.
    """
    cost = np.asarray(per_item_s, dtype=np.float64)
    pi = np.asarray(mix, dtype=np.float64)
    pi = pi / pi.sum()
    P, M = cost.shape
    ok = np.isfinite(cost)
    n = P * M + 1  # x[p, m] (queries/s), then lam
    c = np.zeros(n)
    c[-1] = -1.0
    rows, rhs = [], []
    for p in range(P):
        if ok[p].any():
            r = np.zeros(n)
            r[p * M:(p + 1) * M] = np.where(ok[p], cost[p], 0.0)
            rows.append(r)
            rhs.append(1.0)
    for m in range(M):
        if pi[m] > 0:
            r = np.zeros(n)
            r[m:P * M:M] = -1.0
            r[-1] = pi[m]
            rows.append(r)
            rhs.append(0.0)
    bounds = [(0.0, None if ok[p, m] else 0.0) for p in range(P) for m in range(M)]
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=[*bounds, (0.0, None)],
                  method="highs")
    return float(res.x[-1]) if res.status == 0 else 0.0


class GreedyMaxMin(_LayoutPolicy):
    """MIG-serving-like greedy: the layout that best covers the recently observed per-model
    rates, with hysteresis (see module).

    At each decision the demand is the mean per-model arrival rate of the last ``window``
    intervals observed (``rates``: what happened, not a forecast). Every candidate is scored by
    its max-min coverage ``lam / demand`` (:func:`maxmin_capacity` over the profiled seconds
    per query of each model on each partition under its SLO: at the largest batch that runs
    within ``slo_fraction`` of the SLA, the rule that a query may wait for one batch and then
    run in the next; read from the environment's tables by :meth:`bind_env`, never the
    trace), capped at ``headroom`` (capacity beyond it buys nothing). The best candidate
    replaces the current layout only if its capped coverage is ``margin`` (relative) above
    the current one, that gain held for ``horizon`` intervals beats the switch's expected loss
    (``switch_cost``), and the same target won ``patience`` decisions in a row; after a
    switch it waits ``cooldown`` intervals.

    Args:
        window: Intervals of observed rates averaged into the demand.
        margin: Relative coverage gain needed to switch.
        headroom: Coverage above which more capacity does not count.
        patience: Consecutive decisions the same target must win.
        cooldown: Intervals to wait after a switch.
        horizon: Intervals over which a switch must pay for itself.
        slo_fraction: Share of the SLA a batch may take in the profile.
    """

    name = "greedy"

    def __init__(self, window: int = 3, margin: float = 0.05, headroom: float = 1.2,
                 patience: int = 2, cooldown: int = 3, horizon: float = 30.0,
                 slo_fraction: float = 0.5) -> None:
        self.window, self.margin, self.headroom = window, margin, headroom
        self.slo_fraction = slo_fraction
        self.patience, self.cooldown, self.horizon = patience, cooldown, horizon
        self._cost: np.ndarray | None = None
        self._capacity = 1.0
        self._cache: dict[tuple[int, tuple[float, ...]], float] = {}
        self._wait = self._streak = 0
        self._target = -1

    def bind_env(self, env: Any, seed: int) -> None:
        """Read the candidates' profiled per-partition costs (static tables, not the trace)."""
        base = env.unwrapped
        cost = np.asarray(base.slo_per_item_s(self.slo_fraction), dtype=np.float64)
        if self._cost is None or cost.shape != self._cost.shape or not np.array_equal(
                cost, self._cost):
            self._cache = {}
        self._cost = cost
        self._capacity = float(base.capacity_qps)

    def reset(self, seed: int | None = None) -> None:
        """No cooldown, no streak."""
        self._wait = self._streak = 0
        self._target = -1

    def coverage(self, demand_qps: np.ndarray) -> np.ndarray:
        """Per candidate, max-min capacity / demand for per-model rates ``demand_qps``."""
        if self._cost is None:
            raise RuntimeError("greedy: call bind_env(env, seed) first (the harness does)")
        total = float(demand_qps.sum())
        if total <= 0:
            return np.full(len(self._cost), np.inf)
        pi = tuple(round(float(x), 2) for x in demand_qps / total)
        out = np.empty(len(self._cost))
        for lay in range(len(self._cost)):
            key = (lay, pi)
            lam = self._cache.get(key)
            if lam is None:
                lam = self._cache[key] = maxmin_capacity(self._cost[lay], np.array(pi))
            out[lay] = lam / total
        return out

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """See the class docstring."""
        n_models = len(obs["forecast"])
        hist = np.asarray(obs["rates"], dtype=np.float64).reshape(-1, n_models)
        seen = hist[hist.sum(axis=1) > 0][-self.window:]
        if self._wait > 0:
            self._wait -= 1
            return 0
        if not len(seen) or not mask.all():
            return 0
        # rates are fractions of the reference capacity per interval: queries/s
        cov = np.minimum(self.coverage(seen.mean(axis=0) * self._capacity), self.headroom)
        cur = int(np.argmax(obs["layout"]))
        rel = (cov - cov[cur]) / max(float(cov[cur]), 1e-9)
        score = np.where(rel > self.margin,
                         _gain_minus_cost(rel, obs["switch_cost"], self.horizon), -np.inf)
        score[cur] = -np.inf
        best = int(np.argmax(score))
        if not score[best] > 0:
            self._streak, self._target = 0, -1
            return 0
        self._streak = self._streak + 1 if best == self._target else 1
        self._target = best
        if self._streak < self.patience:
            return 0
        a = self._switch(mask, best)
        if a:
            self._wait, self._streak, self._target = self.cooldown, 0, -1
        return a


class LookaheadRepartition(GreedyMaxMin):
    """Model-predictive re-partitioning: the greedy's decision rule and hysteresis, with each
    candidate scored by *simulating* it on the recently observed rates (see module).

    The demand is the greedy's (the mean per-model rate of the last ``window`` intervals
    observed). :meth:`bind_env` keeps a copy of the environment as a model; per decision, each
    candidate serves ``sim_queries`` fresh Poisson arrivals with that demand's rate and mix
    (a seed of its own, the same for every candidate: common random numbers; never the
    episode's trace) from an idle start, and its coverage is the SLA attainment it reaches.
    This catches what the max-min profile cannot: queries of different models queued on one
    partition block each other, so several small partitions can lose to one large one under
    tight SLAs. Scores are cached per demand rounded to 2% (mix) and 2% of the reference
    capacity (rate). A window with fewer than ``min_queries`` arrivals tells too little about
    the mix: all candidates score alike (keep).

    Args:
        window, margin, patience, cooldown, horizon: As :class:`GreedyMaxMin`; by default it
            reacts faster (one interval of rates, no patience): the simulated scores are less
            noisy than the profile's near-ties, and at T = 10 s on a mix alternating every
            150 s, window 3 / patience 2 gained +11.7% over the best static layout and
            window 1 / patience 1 +17.5% (issue 16 notes).
        sim_queries: Simulated queries per candidate and decision (at GPU rates a fraction of
            a second: queues under millisecond SLAs settle within milliseconds).
        min_queries: Fewest arrivals in the window for a decision.
        model_seed: Seed of the model's arrivals.
    """

    name = "lookahead"

    def __init__(self, window: int = 1, margin: float = 0.05, patience: int = 1,
                 cooldown: int = 3, horizon: float = 30.0, sim_queries: int = 3000,
                 model_seed: int = 12345, min_queries: int = 200) -> None:
        super().__init__(window=window, margin=margin, headroom=math.inf, patience=patience,
                         cooldown=cooldown, horizon=horizon)
        if sim_queries < 1:
            raise ValueError(f"lookahead: sim_queries must be >= 1, got {sim_queries}")
        self.sim_queries, self.model_seed = int(sim_queries), int(model_seed)
        self.min_queries = int(min_queries)
        self._interval_s = 1.0
        self._model: Any = None
        self._scores: dict[tuple[Any, ...], np.ndarray] = {}

    def bind_env(self, env: Any, seed: int) -> None:
        """Copy the environment as the model (its trace is replaced at every decision)."""
        base = env.unwrapped
        sim, base.sim = base.sim, None  # not the episode's state: the model resets its own
        try:
            self._model = copy.deepcopy(base)
        finally:
            base.sim = sim
        self._model.episode_s = None
        self._model.episode_queries = self.sim_queries
        self._model.interval_s = 3600.0  # one step: every query arrives within it
        self._capacity = float(base.capacity_qps)
        self._interval_s = float(base.interval_s)
        self._scores = {}

    def coverage(self, demand_qps: np.ndarray) -> np.ndarray:
        """Per candidate, the SLA attainment simulated for per-model rates ``demand_qps``."""
        model = self._model
        if model is None:
            raise RuntimeError("lookahead: call bind_env(env, seed) first (the harness does)")
        total = float(demand_qps.sum())
        if total * self._interval_s * self.window < self.min_queries:
            return np.ones(model.n_layouts)
        pi = tuple(round(float(x) * 50) / 50 for x in demand_qps / total)
        load = max(0.02, round(total / self._capacity * 50) / 50)
        key = (pi, load)
        out = self._scores.get(key)
        if out is None:
            model.trace = MixShift(durations=(1.0,), weights=(pi,), time_unit="episode")
            model.load = load
            out = self._scores[key] = np.array([
                static_score(model, lay, self.model_seed, "sla_attainment")
                for lay in range(model.n_layouts)])
        return out.copy()


#: Repartition baselines by name.
REPARTITION_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls
    for cls in (StaticLayout, BestStaticInHindsight, IntervalHindsight, ThresholdRepartition,
                LoadProportional, GreedyMaxMin, LookaheadRepartition)
}
