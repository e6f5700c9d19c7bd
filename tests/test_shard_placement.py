"""ldsgym/ShardPlacement-v0: migrations over the links, masks, and the heuristics' ordering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.shard_baselines import HotReplicate, StaticPlacement
from envs.shard_placement import ShardPlacementEnv


def _env(**kw: object) -> ShardPlacementEnv:
    env = gym.make("ldsgym/ShardPlacement-v0", **kw).unwrapped
    assert isinstance(env, ShardPlacementEnv)
    return env


def test_a_new_replica_serves_only_after_its_data_crossed_the_link() -> None:
    env = _env(episode_queries=400, stragglers=None)
    env.reset(seed=0)
    sim = env.sim
    N = env.n_nodes
    s, n = 0, int(np.flatnonzero(~sim.holds[:, 0])[0])
    mask = env.action_masks()
    assert mask[1 + s * N + n]
    t0 = sim.now
    nbytes = sim.migration_bytes_of(s, env._warm_ship)
    env.step(1 + s * N + n)
    assert sim.loading[n, s] and not sim.holds[n, s] and n not in sim.valid_nodes(s)
    assert not env.action_masks()[1 + s * N + n]  # no second load of the same replica
    while sim.loading[n, s]:
        env.step(0)
    assert sim.holds[n, s] and n in sim.valid_nodes(s)
    link = env.cluster.links[n]
    assert sim.now - t0 >= nbytes / link.payload_bps  # at least the transfer time
    assert sim.nodes[n].cache.size > 0  # the shipped hot rows warm its cache
    info = env._info()
    assert info["migrations"] == 1 and info["migration_mb"] == pytest.approx(nbytes / 1e6)
    # dropping it again takes it out of the routing at once
    env.step(1 + s * N + n)
    assert not sim.holds[n, s] and n not in sim.valid_nodes(s)


def test_masks_keep_a_live_replica_and_respect_slots() -> None:
    env = _env(episode_queries=300, replication=1, max_shards=1, stragglers=None)
    env.reset(seed=1)
    mask = env.action_masks()
    assert mask[0] and not mask[1:].any()  # one replica each, every slot used


def test_conservation_with_placement_changes_and_faults() -> None:
    env = _env(episode_queries=300, load=1.1, faults={"rate_hz": 20.0, "duration_ms": 10.0})
    _, info = env.reset(seed=2)
    rng = np.random.default_rng(0)
    done, steps = False, 0
    while not done:
        assert info["arrived"] == info["completed"] + info["dropped"] + info["in_system"]
        assert info["arrived"] == steps + 1
        mask = env.action_masks()
        a = int(rng.choice(np.flatnonzero(mask))) if rng.random() < 0.1 else 0
        _, _, _, done, info = env.step(a)
        steps += 1
    assert info["in_system"] == 0 and info["arrived"] == 300
    assert info["sub_arrived"] == info["sub_completed"] + info["sub_dropped"]


def test_replicating_the_hot_shard_beats_a_static_placement() -> None:
    out = {}
    for pol in (StaticPlacement(), HotReplicate()):
        env = _env(episode_queries=500, load=1.3)
        obs, info = env.reset(seed=3)
        done = False
        while not done:
            a, _ = pol.predict(obs, action_masks=env.action_masks())
            obs, _, _, done, info = env.step(int(a))
        out[pol.name] = info
    assert out["hot_replicate"]["migrations"] > 0
    assert out["hot_replicate"]["sla_attainment"] > out["static"]["sla_attainment"] + 0.3
