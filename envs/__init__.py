"""Gymnasium environments of ldsgym; importing this package registers them all.

Base ids always exist; variants are registered from the preset tables in :mod:`envs.presets`
(``ldsgym/PartitionPlacement-H100-v0``, ...). Every environment exposes ``action_masks()``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from envs.partition import PartitionPlacementEnv
from envs.presets import HW_PRESETS, WORKLOADS
from envs.shard import SHARD_PRESETS, TIER_NODES, ShardRoutingEnv
from envs.shard_placement import DRIFT_POPULARITY, ShardPlacementEnv
from traces.paths import shared_dir

NAMESPACE = "ldsgym"


def _register(env_id: str, entry_point: str, **kwargs: object) -> None:
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register(f"{NAMESPACE}/PartitionPlacement-v0", "envs.partition:PartitionPlacementEnv")
for _hw, _preset in HW_PRESETS.items():
    _register(f"{NAMESPACE}/PartitionPlacement-{_hw}-v0", "envs.partition:PartitionPlacementEnv",
              hw=_preset.hw, layout=list(_preset.layout))

# Variants replaying real traces are registered where the shared data is present.
_SHARED = shared_dir()
_HAS_SHARED = _SHARED is not None and (_SHARED / "traces" / "azure-llm-2023").is_dir()

_register(f"{NAMESPACE}/ShardRouting-v0", "envs.shard:ShardRoutingEnv")
for _name, _shard in SHARD_PRESETS.items():
    if _HAS_SHARED or not _shard.shared_data:
        _register(f"{NAMESPACE}/ShardRouting-{_name}-v0", "envs.shard:ShardRoutingEnv",
                  **_shard.kwargs())
_register(f"{NAMESPACE}/ShardPlacement-v0", "envs.shard_placement:ShardPlacementEnv")
# Drifting shard popularity: two shards at 3x their SSD traffic, a new random pair every
# quarter of the episode (envs.sim.dlrm.popularity), at 80% of the static placement's capacity.
_register(f"{NAMESPACE}/ShardPlacement-Drift-v0", "envs.shard_placement:ShardPlacementEnv",
          load=0.8, popularity=dict(DRIFT_POPULARITY))
# Memory tiers per node (the cluster of ShardRouting-Tiers-v0), with the tier-aware
# node_demand observation: shards 1 and 5 start without a replica on a GPU node.
_register(f"{NAMESPACE}/ShardPlacement-Tiers-v0", "envs.shard_placement:ShardPlacementEnv",
          node_tiers=[dict(t) for t in TIER_NODES], tier_obs=True)

# MISD (one GPU, many models): re-partitioning, and the preset variants of both MISD envs.
from envs.presets import PLACEMENT_PRESETS, REPARTITION_PRESETS  # noqa: E402
from envs.repartition import RepartitionEnv  # noqa: E402

_register(f"{NAMESPACE}/Repartition-v0", "envs.repartition:RepartitionEnv")
for _family, _entry, _presets in (
        ("PartitionPlacement", "envs.partition:PartitionPlacementEnv", PLACEMENT_PRESETS),
        ("Repartition", "envs.repartition:RepartitionEnv", REPARTITION_PRESETS)):
    for _name, _misd in _presets.items():
        if _HAS_SHARED or not _misd.shared_data:
            _register(f"{NAMESPACE}/{_family}-{_name}-v0", _entry, **_misd.kwargs())


# MIMD (a heterogeneous cluster behind a router): ClusterRouting, from its cluster presets.
from envs.cluster import ClusterRoutingEnv  # noqa: E402

_register(f"{NAMESPACE}/ClusterRouting-v0", "envs.cluster:ClusterRoutingEnv")
_register(f"{NAMESPACE}/ClusterRouting-16-v0", "envs.cluster:ClusterRoutingEnv", cluster="16",
          episode_queries=600_000)


def registered_ids() -> list[str]:
    """Every environment id in the ``ldsgym/`` namespace."""
    return sorted(k for k in registry if k.startswith(f"{NAMESPACE}/"))


__all__ = ["HW_PRESETS", "NAMESPACE", "SHARD_PRESETS", "WORKLOADS", "PartitionPlacementEnv",
           "ShardPlacementEnv", "ShardRoutingEnv", "registered_ids"]
__all__ += ["RepartitionEnv"]
__all__ += ["ClusterRoutingEnv"]
