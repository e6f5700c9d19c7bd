"""ShardPlacement on memory tiers per node (``ldsgym/ShardPlacement-Tiers-v0``, ``tier_obs``)
and the tier-aware placement baseline (``tier_aware``).

``node_demand`` prices each request's sub-requests at every node with that node's tiers and
hit rate; ``tier_aware`` packs the shards' work onto the nodes where it is served fastest, so
on the Tiers cluster it gives the two shards without a GPU replica one, and it never asks for
more than a node's slots.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import baselines_for
from agents.evaluation import run_episode
from agents.shard_baselines import (
    StaticPlacement,
    TierAwarePlacement,
    balanced_loads,
    queueing_cost,
)
from envs.shard import TIER_NODES
from envs.sim.dlrm import added_row_hit

TIERS = "ldsgym/ShardPlacement-Tiers-v0"
GPU_NODES = (0, 4)


def test_preset_is_the_routing_tiers_cluster() -> None:
    place = gym.make(TIERS).unwrapped
    route = gym.make("ldsgym/ShardRouting-Tiers-v0").unwrapped
    for attr in ("c_fast", "c_slow"):
        assert np.array_equal(getattr(place.layout, attr), getattr(route.layout, attr))
    assert place.layout.cache_rows == route.layout.cache_rows
    assert place.cluster.replicas == route.cluster.replicas
    assert place.capacity_qps == route.capacity_qps
    assert place.tier_obs and "node_demand" in place.observation_space.spaces
    # Shards 1 and 5 have no replica on a GPU node at the start.
    no_gpu = [s for s, reps in enumerate(place.cluster.replicas)
              if not set(reps) & set(GPU_NODES)]
    assert no_gpu == [1, 5]


def test_tier_obs_off_by_default() -> None:
    env = gym.make("ldsgym/ShardPlacement-v0", node_tiers=[dict(t) for t in TIER_NODES])
    obs, _ = env.reset(seed=0)
    for key in ("node_demand", "best_demand"):
        assert key not in obs and key not in env.observation_space.spaces


def test_node_demand_uses_each_nodes_tiers_and_hit_rate() -> None:
    env = gym.make(TIERS)
    obs, _ = env.reset(seed=5)
    u = env.unwrapped
    sim = u.sim
    N, S = u.n_nodes, u.n_shards
    got = obs["node_demand"].reshape(S, N)
    prior = added_row_hit(u.layout, u.capacity)
    req = sim.pending.req
    seen = set()
    for sub in (sim.pending, *sim.fanout_left()):
        if sub.req is not req:
            continue
        s = sub.shard
        seen.add(s)
        for n in range(N):
            hit = sim.row_hit[n, s] if sim.holds[n, s] else prior[n, s]
            miss = sub.d_tracked * (1.0 - hit) + sub.d_untracked
            work = u.cluster.node_overhead_s + max(
                u.layout.c_fast[n] * (sub.lookups - miss), u.layout.c_slow[n] * miss)
            want = min(work / u.rate_window_s, 10.0)  # the first request: no decay yet
            assert got[s, n] == pytest.approx(want, rel=1e-6), (s, n)
    assert seen
    # An HBM node serves every shard's request at least as fast as a DRAM+SSD node, the
    # SSD-heavy shard 1 (no GPU replica) far faster.
    for s in seen:
        assert got[s, 0] <= got[s, 1]
    assert 1 in seen and got[1, 0] < 0.2 * got[1, 1]
    # best_demand: each shard's node_demand at its fastest live replica.
    want_best = [got[s][sim.holds[:, s]].min() for s in range(S)]
    assert obs["best_demand"] == pytest.approx(want_best)
    assert obs["best_demand"][1] > 5 * obs["best_demand"][0]  # shard 0 has a GPU replica
    assert env.observation_space.contains(obs)
    for _ in range(50):
        obs, *_ = env.step(0)
    assert env.observation_space.contains(obs)


def test_added_row_hit() -> None:
    u = gym.make(TIERS).unwrapped
    hit = added_row_hit(u.layout, u.capacity)
    held = u.layout.holds
    assert np.array_equal(hit[held], u.capacity.row_hit[held])
    assert ((hit > 0) & (hit < 1))[~held].all()
    # Shard 1 is held by neither node 0 (1 GiB HBM cache) nor node 7 (8 MB): the bigger cache
    # would hit more.
    assert not held[0, 1] and not held[7, 1]
    assert hit[0, 1] > hit[7, 1] + 0.1


def test_balanced_loads_and_price() -> None:
    # One shard on two nodes, 1 node-s/s if node 0 served it all, 3 on node 1: the balancing
    # split sends 3/4 to node 0, both end at 0.75.
    loads = balanced_loads(np.array([[1.0, 3.0]]), np.array([[[True, True]]]))
    assert loads[0] == pytest.approx([0.75, 0.75], rel=1e-6)
    only0 = balanced_loads(np.array([[1.0, 3.0]]), np.array([[[True, False]]]))
    assert only0[0] == pytest.approx([1.0, 0.0])
    none = balanced_loads(np.array([[1.0, 3.0]]), np.array([[[False, False]]]))
    assert not none.any()
    # The price grows with every node's load and keeps ranking overloads.
    rho = np.array([[0.2, 0.5], [0.2, 0.6], [0.2, 0.95], [0.2, 1.5], [0.2, 3.0]])
    price = queueing_cost(rho)
    assert (np.diff(price) > 0).all()
    assert price[0] == pytest.approx(0.25 + 1.0)


def _grid_obs(holds: np.ndarray, demand: np.ndarray, slots: np.ndarray) -> dict[str, np.ndarray]:
    S, N = holds.shape
    return {"holds": holds.reshape(-1).astype(np.float32),
            "loading": np.zeros(S * N, dtype=np.float32),
            "node_demand": demand.reshape(-1).astype(np.float32),
            "demand": np.zeros(S, dtype=np.float32), "up": np.ones(N, dtype=np.float32),
            "slots": slots.astype(np.float32)}


def test_tier_aware_adds_where_service_is_fastest() -> None:
    # Shard 0 on the slow nodes 1 and 2 (2 node-s/s each if all there), 0.1 on node 0.
    holds = np.array([[False, True, True], [True, False, False]])
    demand = np.array([[0.1, 2.0, 2.0], [0.05, 0.05, 0.05]])
    mask = np.zeros(1 + 6, dtype=bool)
    mask[0] = True
    mask[1 + 0 * 3 + 0] = True  # add shard 0 on node 0
    mask[1 + 1 * 3 + 1] = True  # add shard 1 on node 1
    pol = TierAwarePlacement(period=8)
    assert pol.act(_grid_obs(holds, demand, np.array([0.5, 0.5, 0.5])), mask) == 1
    # Nothing to gain below `busy`; and between looks it keeps.
    assert TierAwarePlacement(busy=5.0).act(
        _grid_obs(holds, demand, np.array([0.5, 0.5, 0.5])), mask) == 0
    assert pol.act(_grid_obs(holds, demand, np.array([0.5, 0.5, 0.5])), mask) == 0


def test_tier_aware_swaps_on_a_full_node() -> None:
    # Two nodes of two slots, both full: hot shard 0 only on node 0, cold shard 1 on both,
    # shard 2 only on node 1. Dropping shard 1 from node 1 makes room for shard 0 there.
    holds = np.array([[True, False], [True, True], [False, True]])
    demand = np.array([[1.8, 1.8], [0.01, 0.01], [0.01, 0.01]])
    mask = np.zeros(1 + 6, dtype=bool)
    mask[0] = True
    mask[1 + 1 * 2 + 0] = mask[1 + 1 * 2 + 1] = True  # drops of shard 1
    act = TierAwarePlacement().act(_grid_obs(holds, demand, np.ones(2)), mask)
    assert act == 1 + 1 * 2 + 1


def test_tier_aware_tier_blind_without_node_demand() -> None:
    obs = _grid_obs(np.array([[True, False], [True, True]]), np.zeros((2, 2)), np.ones(2))
    del obs["node_demand"]
    obs["demand"] = np.array([0.4, 0.1], dtype=np.float32)
    rates = TierAwarePlacement.work_rates(obs)
    assert rates == pytest.approx(np.array([[0.4, 0.4], [0.2, 0.2]]))


@pytest.mark.parametrize("kwargs", [{"gain": 1.0}, {"gain": -0.1}, {"period": 0}])
def test_tier_aware_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TierAwarePlacement(**kwargs)  # type: ignore[arg-type]


def test_tier_aware_on_tiers_gives_every_shard_a_gpu_replica_within_slots() -> None:
    env = gym.make(TIERS, load=1.1, episode_queries=600)
    u = env.unwrapped
    pol = TierAwarePlacement()
    obs, _ = env.reset(seed=10000)
    pol.reset(10000)
    done = False
    while not done:
        mask = u.action_masks()
        a = pol.act(obs, mask)
        assert mask[a]
        obs, _, _, done, info = env.step(a)
        used = u.sim.holds.sum(axis=1) + u.sim.loading.sum(axis=1)
        assert (used <= u.max_shards).all()
    holds = u.sim.holds
    assert all(holds[list(GPU_NODES), s].any() for s in range(u.n_shards))
    assert info["migrations"] == 2
    tiered = info["good"]
    static = run_episode(env, StaticPlacement(), 10000)
    assert tiered > 2 * static["good"]


def test_registered_as_a_placement_baseline() -> None:
    assert baselines_for(TIERS)["tier_aware"]().name == "tier_aware"


def test_experiment_spells_out_the_preset() -> None:
    """experiment=simd_placement_tiers repeats the preset's node_tiers (the env group's kwargs
    replace a preset's): they must stay equal, with tier_obs and the tier-aware keys."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.common import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=simd_placement_tiers"])
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    assert isinstance(kwargs, dict)
    assert kwargs["node_tiers"] == [dict(t) for t in TIER_NODES]
    assert kwargs["tier_obs"] is True and cfg.env.id == TIERS
    assert "node_demand" in cfg.agent.policy_kwargs.cell_keys
    assert "best_demand" in cfg.agent.policy_kwargs.row_keys
    assert cfg.warm_start.teacher == "tier_aware" and cfg.warm_start.rare_weight > 1
