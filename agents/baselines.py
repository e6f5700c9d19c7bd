"""Heuristic schedulers from the literature, as :class:`~agents.policy.Policy` objects.

Each reads only the observation and the action mask. The last action is *reject* (the
environments put it there); a heuristic rejects only when nothing else is valid, unless it says
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.cluster_baselines import CLUSTER_BASELINES
from agents.misd_baselines import MISD_PLACEMENT_BASELINES, REPARTITION_BASELINES
from agents.policy import HeuristicPolicy, Obs, SeededRng, earliest_or_reject
from agents.shard_baselines import PLACEMENT_BASELINES, SHARD_BASELINES
from envs.sim.device import rules


class RandomPolicy(SeededRng, HeuristicPolicy):
    """Uniformly random among the valid partitions (never rejects unless it must).

    Args:
        seed: Seed of its own generator (re-seeded by the harness each episode).
    """

    name = "random"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """A random valid partition."""
        n_valid = int(np.count_nonzero(mask[:-1]))
        if not n_valid:
            return len(mask) - 1
        # rng.choice(valid) draws rng.integers(0, len(valid)): the same stream, one rule.
        return rules.nth_valid(int(self.rng.integers(0, n_valid)), mask.tolist(), len(mask) - 1)


class RoundRobinPolicy(HeuristicPolicy):
    """Cycles through the partitions, skipping those that cannot serve the query."""

    name = "round_robin"

    def __init__(self) -> None:
        #: The partition the next search starts at.
        self.cursor = 0

    def reset(self, seed: int | None = None) -> None:
        """Start again at partition 0."""
        self.cursor = 0

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The next valid partition in cyclic order."""
        p, self.cursor = rules.round_robin(self.cursor, mask.tolist(), len(mask) - 1)
        return p


class LeastLoadedPolicy(HeuristicPolicy):
    """Join-the-shortest-queue: fewest queued items, ties to the larger partition."""

    name = "least_loaded"

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """The valid partition with the shortest queue."""
        key = rules.least_loaded_keys(obs["queue"].tolist(), obs["busy"].tolist())
        size = obs["size"].tolist() if "size" in obs else [0.0] * len(key)
        return rules.least_loaded(key, size, mask.tolist())


class ShortestExpectedFinishPolicy(HeuristicPolicy):
    """Clockwork-style: the partition where the query is predicted to finish first.

    Uses the ``finish`` feature (expected completion time in units of the query's SLA). Like
    Clockwork, it rejects a query that no partition can finish within its SLA when
    ``reject_hopeless`` is set, freeing capacity for queries that can still make it.

    Args:
        reject_hopeless: Reject when the best predicted finish exceeds the SLA.
    """

    name = "shortest_finish"

    def __init__(self, reject_hopeless: bool = True) -> None:
        self.reject_hopeless = reject_hopeless

    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """Argmin of the predicted finish time over valid partitions."""
        return earliest_or_reject(obs["finish"], mask, self.reject_hopeless)


#: Baselines of PartitionPlacement by name, as configs and the evaluate app refer to them:
#: these four, then the MISD literature's (gpulet, PREMA, interference-aware).
BASELINES: dict[str, Callable[[], HeuristicPolicy]] = {
    **{cls.name: cls for cls in (RandomPolicy, RoundRobinPolicy, LeastLoadedPolicy,
                                 ShortestExpectedFinishPolicy)},
    **MISD_PLACEMENT_BASELINES,
}

#: Baseline registries per environment family (the env id without namespace and version, up
#: to the first '-': ``ldsgym/PartitionPlacement-H100-v0`` -> ``PartitionPlacement``).
BASELINES_BY_ENV: dict[str, dict[str, Callable[[], HeuristicPolicy]]] = {
    "PartitionPlacement": BASELINES,
    "Repartition": REPARTITION_BASELINES,
    "ShardRouting": SHARD_BASELINES,
    "ShardPlacement": PLACEMENT_BASELINES,
    "ClusterRouting": {"random": RandomPolicy, "round_robin": RoundRobinPolicy,
                       **CLUSTER_BASELINES},
}


def env_family(env_id: str) -> str:
    """``ldsgym/PartitionPlacement-H100-v0`` -> ``PartitionPlacement``."""
    return env_id.split("/")[-1].split("-")[0]


def baselines_for(env_id: str) -> dict[str, Callable[[], HeuristicPolicy]]:
    """The baseline registry of an environment id (empty if it has none)."""
    return BASELINES_BY_ENV.get(env_family(env_id), {})


def make_baseline(name: str, env_id: str = "ldsgym/PartitionPlacement-v0") -> HeuristicPolicy:
    """A baseline by name for the environment ``env_id``.

    Raises:
        ValueError: unknown name, listing the known ones.
    """
    registry = baselines_for(env_id)
    try:
        return registry[name]()
    except KeyError:
        raise ValueError(f"policy '{name}': unknown baseline for {env_id}; known: "
                         f"{', '.join(registry) or 'none'}") from None

