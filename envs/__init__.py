"""Gymnasium environments of ldsgym; importing this package registers them all.

Base ids always exist; variants are registered from the preset tables in :mod:`envs.presets`
(``ldsgym/PartitionPlacement-H100-v0``, ...). Every environment exposes ``action_masks()``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from envs.partition import PartitionPlacementEnv
from envs.presets import HW_PRESETS, WORKLOADS
from envs.shard import SHARD_PRESETS, ShardRoutingEnv
from envs.shard_placement import ShardPlacementEnv

NAMESPACE = "ldsgym"


def _register(env_id: str, entry_point: str, **kwargs: object) -> None:
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register(f"{NAMESPACE}/PartitionPlacement-v0", "envs.partition:PartitionPlacementEnv")
for _hw, _preset in HW_PRESETS.items():
    _register(f"{NAMESPACE}/PartitionPlacement-{_hw}-v0", "envs.partition:PartitionPlacementEnv",
              hw=_preset.hw, layout=list(_preset.layout))

_register(f"{NAMESPACE}/ShardRouting-v0", "envs.shard:ShardRoutingEnv")
for _name, _shard in SHARD_PRESETS.items():
    _register(f"{NAMESPACE}/ShardRouting-{_name}-v0", "envs.shard:ShardRoutingEnv",
              **_shard.kwargs())
_register(f"{NAMESPACE}/ShardPlacement-v0", "envs.shard_placement:ShardPlacementEnv")


def registered_ids() -> list[str]:
    """Every environment id in the ``ldsgym/`` namespace."""
    return sorted(k for k in registry if k.startswith(f"{NAMESPACE}/"))


__all__ = ["HW_PRESETS", "NAMESPACE", "SHARD_PRESETS", "WORKLOADS", "PartitionPlacementEnv",
           "ShardPlacementEnv", "ShardRoutingEnv", "registered_ids"]
