"""Drifting shard popularity (envs/sim/dlrm/popularity.py, ``popularity=`` of the shard envs)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.shard_baselines import HotReplicate
from envs.shard_placement import ShardPlacementEnv
from envs.sim.dlrm import ShardSim
from envs.sim.dlrm.popularity import ShardPopularity


def _env(env_id: str = "ldsgym/ShardPlacement-v0", **kw: object) -> ShardPlacementEnv:
    env = gym.make(env_id, **kw).unwrapped
    assert isinstance(env, ShardPlacementEnv)
    return env


def _run(env: ShardPlacementEnv, seed: int, policy: HotReplicate | None = None
         ) -> tuple[list[tuple[int, int, int]], list[np.ndarray]]:
    """(request, shard, d_untracked) of every sub-request, and the ``demand`` observations."""
    obs, _ = env.reset(seed=seed)
    subs: list[tuple[int, int, int]] = []
    demand = []
    done = False
    while not done:
        sim = env.sim
        assert sim is not None and sim.pending is not None
        for sub in (sim.pending, *sim.fanout_left()):
            if sub.req is sim.pending.req:
                subs.append((sub.req.id, sub.shard, sub.d_untracked))
        demand.append(obs["demand"])
        a = 0 if policy is None else policy.predict(obs, action_masks=env.action_masks())[0]
        obs, _, _, done, _ = env.step(int(a))
    return subs, demand


def test_the_hot_shard_rotates_and_the_demand_observation_follows() -> None:
    n, phases = 400, 4
    pop = {"hot": 1, "factor": 4.0, "phases": phases, "first": 1, "shift": 2}
    env = _env(episode_queries=n, load=0.6, popularity=pop, stragglers=None)
    subs, demand = _run(env, seed=5)
    a = np.array(subs)
    phase = a[:, 0] * phases // n
    hot = [1, 3, 5, 7]
    base = env._shard_reads
    for p, s in enumerate(hot):
        mine = a[(phase == p) & (a[:, 1] == s), 2].mean()
        other = a[(phase != p) & (a[:, 1] == s), 2].mean()
        # (w - 1) * reads more long-tail lookups while hot, none otherwise
        assert mine - other == pytest.approx(3.0 * base[s], rel=0.02)
    # The observation sees it: by the end of each phase its hot shard's per-replica demand is
    # well above its level at the end of the phase before.
    d = np.array(demand)
    ends = [(p + 1) * n // phases - 1 for p in range(phases)]
    for p in range(1, phases):
        s = hot[p]
        assert d[ends[p], s] > 2.0 * d[ends[p - 1], s]


def test_factor_one_is_the_stationary_episode() -> None:
    kw = {"episode_queries": 120, "load": 0.9}
    flat = _run(_env(**kw, popularity={"hot": 3, "factor": 1.0}), seed=2, policy=HotReplicate())
    plain = _run(_env(**kw), seed=2, policy=HotReplicate())
    assert flat[0] == plain[0]
    assert all(np.array_equal(x, y) for x, y in zip(flat[1], plain[1], strict=True))


def test_random_hot_sets_follow_the_episode_seed() -> None:
    env = _env("ldsgym/ShardPlacement-Drift-v0", episode_queries=200)

    def hot_sets(seed: int) -> list[tuple[int, ...]]:
        env.reset(seed=seed)
        sim = env.sim
        assert sim is not None and sim._extra is not None
        extra = np.array(sim._extra)
        return [tuple(np.flatnonzero(extra[i * 50] > 0)) for i in range(4)]

    a, b, c = hot_sets(0), hot_sets(0), hot_sets(1)
    assert a == b and a != c
    assert all(len(h) == 2 for h in a + c)
    assert len(set(a + c)) > 1  # the pair changes between phases / episodes


def test_drift_costs_the_static_placement() -> None:
    kw = {"episode_queries": 300}
    out = {}
    for env_id in ("ldsgym/ShardPlacement-v0", "ldsgym/ShardPlacement-Drift-v0"):
        env = _env(env_id, **kw, load=0.8)
        env.reset(seed=4)
        done, info = False, {}
        while not done:
            _, _, _, done, info = env.step(0)
        out[env_id] = info["sla_attainment"]
    assert out["ldsgym/ShardPlacement-Drift-v0"] < out["ldsgym/ShardPlacement-v0"] - 0.05


@pytest.mark.parametrize(("spec", "msg"), [
    ({"hot": 9}, "popularity.hot"),
    ({"factor": 0.5}, "popularity.factor"),
    ({"phases": 0}, "popularity.phases"),
    ({"hots": 1}, "unknown key"),
    ({"weights": [[1.0] * 7]}, "popularity.weights"),
    ({"weights": [[0.5] * 8]}, "popularity.weights"),
    ("drift", "expected a mapping"),
])
def test_bad_popularity_is_one_clear_error(spec: object, msg: str) -> None:
    with pytest.raises(ValueError, match=msg) as exc:
        gym.make("ldsgym/ShardPlacement-v0", popularity=spec)
    assert "\n" not in str(exc.value)


def test_explicit_weights_and_the_sim_checks_its_input() -> None:
    pop = ShardPopularity.parse({"weights": [[1.0] * 4, [2.0, 1.0, 1.0, 1.0]]}, 4)
    assert pop is not None
    extra = pop.extra_reads(4, [10.0, 5.0, 5.0, 5.0], np.random.default_rng(0))
    assert extra.tolist() == [[0] * 4, [0] * 4, [10, 0, 0, 0], [10, 0, 0, 0]]
    env = _env(episode_queries=10)
    with pytest.raises(ValueError, match="extra_reads"):
        ShardSim(env.layout, np.zeros(3), np.ones(3), 24, np.random.default_rng(0),
                 extra_reads=np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="extra_reads"):
        ShardSim(env.layout, np.zeros(3), np.ones(3), 24, np.random.default_rng(0),
                 extra_reads=-np.ones((3, env.n_shards), dtype=np.int64))
