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

Each reads only the observation and the mask, except the hindsight oracle (it is handed the
environment by the harness through ``bind_env``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.policy import HeuristicPolicy, Obs, earliest_or_reject
from envs.sim.device import rules


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
    sim_env = copy.deepcopy(env)
    sim_env.reset(seed=seed)
    first = 1 + layout if layout != sim_env.start_index else 0
    _, _, term, trunc, info = sim_env.step(first)
    while not (term or trunc):
        _, _, term, trunc, info = sim_env.step(0)
    return float(info[metric])


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


#: Repartition baselines by name.
REPARTITION_BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    cls.name: cls
    for cls in (StaticLayout, BestStaticInHindsight, ThresholdRepartition, LoadProportional)
}
