"""Rewards as objects: what happened between two decisions, weighed.

An environment snapshots its counters at every decision and hands the difference, a
:class:`Outcome`, to its reward object. Rewards are chosen by name (``reward=goodput``) or by
passing an instance.

Worked example (``GoodputReward(late_weight=1, drop_weight=1, energy_weight=0)``): between two
arrivals, three requests finish within their SLA, one finishes late and one is dropped because
its queue was full: ``r = 3 - 1*1 - 1*1 = 1``. With ``energy_weight=0.01`` and 50 J spent in
between, ``r = 1 - 0.5 = 0.5``. With ``backlog_weight=0.5`` and, in between, four requests
each 2 ms in the system under a 10 ms SLA (backlog ``4 * 0.2 = 0.8``), ``r = 1 - 0.4 = 0.6``.
With ``cost_weight=1000`` and US$0.0002 of device time spent in between, ``r = 1 - 0.2 =
0.8`` (``ldsgym/ClusterRouting-v0`` prices its devices; elsewhere the cost is 0).

Re-partitioning (``ldsgym/Repartition-v0``, one decision per interval): with
``GoodputReward(reconfig_weight=500)``, an interval in which 6,000 requests finish in time,
200 late, 300 are dropped and one re-partitioning starts weighs ``6000 - 200 - 300 - 500 =
5000``; that environment divides by the queries its reference layout serves per interval
(6,600), so ``r = 0.758``. The weight prices a re-partitioning in queries, on top of the
queries its downtime loses (which the other terms already count).

Choosing one by config: ``env.kwargs.reward={name: goodput, late_weight: 0.5,
reconfig_weight: 200}`` or ``env.kwargs.reward=violations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened between two decisions.

    Attributes:
        good: Requests completed within their SLA.
        late: Requests completed after their deadline.
        dropped: Requests dropped or rejected.
        energy_j: Energy spent.
        reconfigurations: Re-partitionings started.
        backlog: Time requests spent in the system, each in units of its own SLA (summed over
            requests): a dense latency signal whose episode total is ``sum(latency / SLA)``.
        cost_usd: Dollars spent (``ldsgym/ClusterRouting-v0``: busy device time at its price).
    """

    good: int = 0
    late: int = 0
    dropped: int = 0
    energy_j: float = 0.0
    reconfigurations: int = 0
    backlog: float = 0.0
    cost_usd: float = 0.0


class Reward(Protocol):
    """Turns an :class:`Outcome` into a scalar."""

    def __call__(self, outcome: Outcome) -> float:
        """The reward for ``outcome``."""
        ...


@dataclass(frozen=True)
class GoodputReward:
    """``good - late_weight*late - drop_weight*dropped - energy_weight*J - reconfig_weight*n
    - backlog_weight*backlog - cost_weight*usd``.

    Args:
        late_weight: Cost of a request served after its deadline.
        drop_weight: Cost of a dropped or rejected request.
        energy_weight: Cost per joule.
        reconfig_weight: Cost per re-partitioning.
        backlog_weight: Cost per SLA-length of time a request spends in the system (a dense
            signal that reaches the agent before requests finish).
        cost_weight: Cost per US dollar spent (environments that price their devices).
    """

    late_weight: float = 1.0
    drop_weight: float = 1.0
    energy_weight: float = 0.0
    reconfig_weight: float = 0.0
    backlog_weight: float = 0.0
    cost_weight: float = 0.0

    def __call__(self, outcome: Outcome) -> float:
        """See the class docstring."""
        return self.value(outcome.good, outcome.late, outcome.dropped, outcome.energy_j,
                          outcome.reconfigurations, outcome.backlog, outcome.cost_usd)

    def value(self, good: int, late: int, dropped: int, energy_j: float,
              reconfigurations: int, backlog: float, cost_usd: float = 0.0) -> float:
        """The reward of an :class:`Outcome` given as its fields (what the environments
        call every step, without building the object). The cost term enters only where
        ``cost_usd`` is non-zero, so environments without prices get the same floats."""
        r = (good - self.late_weight * late - self.drop_weight * dropped
             - self.energy_weight * energy_j - self.reconfig_weight * reconfigurations
             - self.backlog_weight * backlog)
        return r - self.cost_weight * cost_usd if cost_usd else r

    @property
    def weights(self) -> tuple[float, float, float, float, float]:
        """``(late, drop, energy, reconfig, backlog)`` weights: the compiled episode
        (:mod:`envs.sim.device.compiled`) evaluates :meth:`value` with them."""
        return (self.late_weight, self.drop_weight, self.energy_weight,
                self.reconfig_weight, self.backlog_weight)


@dataclass(frozen=True)
class ViolationReward:
    """``-(late + dropped)``: only SLA violations count (a cost to minimise)."""

    def __call__(self, outcome: Outcome) -> float:
        """See the class docstring."""
        return -float(outcome.late + outcome.dropped)

    def value(self, good: int, late: int, dropped: int, energy_j: float,
              reconfigurations: int, backlog: float, cost_usd: float = 0.0) -> float:
        """As :meth:`GoodputReward.value`."""
        return -float(late + dropped)


REWARDS: dict[str, type] = {"goodput": GoodputReward, "violations": ViolationReward}


def make_reward(spec: str | dict[str, object] | Reward) -> Reward:
    """A reward from a name, ``{"name": ..., **params}``, or an instance.

    Raises:
        ValueError: unknown name or parameters.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        params = dict(spec)
        name = str(params.pop("name", "goodput"))
        if name not in REWARDS:
            raise ValueError(f"reward '{name}': unknown; known: {', '.join(REWARDS)}")
        try:
            return REWARDS[name](**params)
        except TypeError as exc:
            raise ValueError(f"reward '{name}': {exc}") from None
    return spec
