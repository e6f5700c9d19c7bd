"""The drifting-popularity placement scenario (``ldsgym/ShardPlacement-Drift-v0``) and its
proportional-replication baseline (``demand_replicate``).

``demand_replicate`` sizes every shard's replicas to its demand (``ceil(work / per)``) and
loads several at once, where ``hot_replicate`` adds one replica of the hottest shard at a time;
it drops the extra replicas of a shard that cooled, and never asks for more than the mask.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import baselines_for
from agents.shard_baselines import DemandReplicate, HotReplicate

DRIFT = "ldsgym/ShardPlacement-Drift-v0"


def _obs(holds: np.ndarray, demand: list[float], util: list[float] | None = None,
         loading: np.ndarray | None = None, max_shards: int = 3) -> dict[str, np.ndarray]:
    S, N = holds.shape
    load = np.zeros((S, N), dtype=bool) if loading is None else loading
    used = holds.sum(axis=0) + load.sum(axis=0)
    return {"holds": holds.reshape(-1).astype(np.float32),
            "loading": load.reshape(-1).astype(np.float32),
            "demand": np.array(demand, dtype=np.float32),
            "util": np.array(util if util is not None else [0.5] * N, dtype=np.float32),
            "queue": np.zeros(N, dtype=np.float32), "up": np.ones(N, dtype=np.float32),
            "slots": (used / max_shards).astype(np.float32)}


def _mask(holds: np.ndarray, loading: np.ndarray | None = None,
          max_shards: int = 3) -> np.ndarray:
    """Adds where a node has a free slot, drops where the shard keeps another replica."""
    S, N = holds.shape
    load = np.zeros((S, N), dtype=bool) if loading is None else loading
    free = holds.sum(axis=0) + load.sum(axis=0) < max_shards
    add = ~holds & ~load & free[None, :]
    drop = holds & (holds.sum(axis=1) >= 2)[:, None]
    return np.concatenate([[True], (add | drop).reshape(-1)])


def test_adds_toward_the_target_on_the_least_busy_node() -> None:
    # Shard 0 on nodes 0-1 at 0.5 per replica: 1.0 of work wants ceil(1.0 / 0.2) = 5.
    holds = np.zeros((2, 4), dtype=bool)
    holds[0, :2] = holds[1, 2:] = True
    obs = _obs(holds, [0.5, 0.05], util=[0.9, 0.9, 0.6, 0.3])
    assert DemandReplicate().act(obs, _mask(holds)) == 1 + 0 * 4 + 3
    # Under the target per replica nothing is added (and nothing dropped: at the base).
    assert DemandReplicate().act(_obs(holds, [0.15, 0.05]), _mask(holds)) == 0


def test_loads_several_replicas_at_once_where_hot_replicate_waits() -> None:
    holds = np.zeros((2, 4), dtype=bool)
    holds[0, :2] = holds[1, 2:] = True
    loading = np.zeros((2, 4), dtype=bool)
    loading[0, 3] = True
    obs = _obs(holds, [0.5, 0.05], util=[0.9, 0.9, 0.6, 0.3], loading=loading)
    mask = _mask(holds, loading)
    assert DemandReplicate().act(obs, mask) == 1 + 0 * 4 + 2
    assert HotReplicate().act(obs, mask) == 0
    # At max_loads, or with the target met by the loads in flight, it waits too.
    assert DemandReplicate(max_loads=1).act(obs, mask) == 0
    loading[0, 2] = True  # live 2 + loading 2 = 4 replicas >= ceil(0.4 / 0.2) = 2
    assert DemandReplicate().act(_obs(holds, [0.2, 0.05], loading=loading),
                                 _mask(holds, loading)) == 0


def test_makes_room_by_dropping_a_cold_extra_replica() -> None:
    # Two nodes of two slots, both full: shard 0 on node 0 is hot; shard 1 (cold, two
    # replicas, base 1) frees node 1 for it.
    holds = np.array([[True, False], [True, True], [False, True]])
    obs = _obs(holds, [0.9, 0.01, 0.01], max_shards=2)
    act = DemandReplicate(base=1).act(obs, _mask(holds, max_shards=2))
    assert act == 1 + 1 * 2 + 1
    # With base 2 shard 1 keeps both replicas: nothing can be done.
    assert DemandReplicate(base=2).act(obs, _mask(holds, max_shards=2)) == 0


def test_drops_the_extra_replicas_of_a_cooled_shard() -> None:
    holds = np.zeros((2, 6), dtype=bool)
    holds[0, :5] = True
    holds[1, 5] = True
    # Shard 0 cooled to 0.02 per replica (0.1 of work): base 3 -> drop one, on the fullest
    # node of its replicas (node 0: it also holds shard 1 there below).
    holds[1, 0] = True
    obs = _obs(holds, [0.02, 0.01])
    assert DemandReplicate().act(obs, _mask(holds)) == 1 + 0 * 6 + 0
    # Not while a replica is loading (the drop would race the load for the slot).
    loading = np.zeros_like(holds)
    loading[1, 3] = True
    assert DemandReplicate().act(_obs(holds, [0.02, 0.01], loading=loading),
                                 _mask(holds, loading)) == 0
    # Hysteresis: at 0.15 per replica (0.75 of work) it keeps ceil(0.75 / 0.1) = 8 > 5.
    assert DemandReplicate().act(_obs(holds, [0.15, 0.01]), _mask(holds)) == 0


@pytest.mark.parametrize("kwargs", [{"per": 0.1, "drop_per": 0.2}, {"drop_per": 0.0},
                                    {"base": 0}, {"max_loads": 0}])
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="demand_replicate"):
        DemandReplicate(**kwargs)  # type: ignore[arg-type]


def test_on_the_drift_scenario_it_loads_in_parallel_within_the_mask() -> None:
    env = gym.make(DRIFT, load=1.0, episode_queries=300)
    u = env.unwrapped
    pol = baselines_for(DRIFT)["demand_replicate"]()
    assert isinstance(pol, DemandReplicate)
    obs, _ = env.reset(seed=3)
    most_loading, done = 0, False
    while not done:
        mask = u.action_masks()
        a = pol.act(obs, mask)
        assert mask[a]
        obs, _, _, done, info = env.step(a)
        most_loading = max(most_loading, int(u.sim.loading.sum()))
        assert (u.sim.holds.sum(axis=1) + u.sim.loading.sum(axis=1) <= u.max_shards).all()
    assert most_loading >= 2 and info["migrations"] >= 3


def test_experiment_is_simd_placement_with_demand_replicate_as_teacher() -> None:
    """experiment=simd_placement_demand: the scenario, agent, PPO and loads of
    experiment=simd_placement (and its evaluation seeds among more); only the teacher differs
    (a baseline of the env)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.common import CONF_DIR
    from experiments.warm_start import warm_start_settings

    def cfg(name: str) -> dict[str, Any]:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            c = compose("train", overrides=[f"experiment={name}"])
        out = OmegaConf.to_container(c, resolve=True)
        assert isinstance(out, dict)
        return out

    demand, hot = cfg("simd_placement_demand"), cfg("simd_placement")
    assert demand["env"] == hot["env"] and demand["env"]["id"] == DRIFT
    for key in ("agent", "total_timesteps", "n_envs"):
        assert demand[key] == hot[key], key
    assert demand["eval"]["loads"] == hot["eval"]["loads"]
    assert set(hot["eval"]["seeds"]) < set(demand["eval"]["seeds"])
    ws_demand, ws_hot = dict(demand["warm_start"]), dict(hot["warm_start"])
    assert ws_demand.pop("teacher") == "demand_replicate"
    assert ws_hot.pop("teacher") == "hot_replicate"
    assert ws_demand == ws_hot
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        ws = warm_start_settings(compose("train", overrides=["experiment=simd_placement_demand"]),
                                 DRIFT)
    assert ws is not None and ws.teacher == "demand_replicate"
