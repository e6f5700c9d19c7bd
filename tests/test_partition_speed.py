"""The per-step shortcuts of PartitionPlacement (shared slowdown caches, bounded caches,
inlined info) change no result."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
import envs.partition as partition
import envs.sim.device.shared as sim_misd
from envs.sim.device.shared import evict_oldest
from envs.sim.metrics import Counters


def _trajectory(env: Any, seed: int, steps: int) -> list[Any]:
    obs, info = env.reset(seed=seed)
    out: list[Any] = [{k: v.tobytes() for k, v in obs.items()}, info]
    for t in range(steps):
        mask = env.action_masks()
        valid = np.flatnonzero(mask)
        obs, r, term, trunc, info = env.step(int(valid[(t * 7) % len(valid)]))
        out.append(({k: v.tobytes() for k, v in obs.items()}, r, term, trunc, info))
        if term or trunc:
            env.reset()
    return out


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-MPS-v0",
                                    "ldsgym/PartitionPlacement-Prio-v0"])
def test_shared_slowdown_cache_changes_nothing(env_id: str) -> None:
    partition._SHARED_SLOWDOWNS.clear()
    cold = _trajectory(gym.make(env_id).unwrapped, 3, 600)
    a, b = gym.make(env_id).unwrapped, gym.make(env_id).unwrapped
    assert a._slowdowns is b._slowdowns and a._fcache is b._fcache
    assert len(a._fcache) > 0  # warm from the first env
    assert _trajectory(a, 3, 600) == cold
    # Interleaved envs on one cache, each as if alone.
    partition._SHARED_SLOWDOWNS.clear()
    alone = _trajectory(gym.make(env_id).unwrapped, 4, 300)
    c, d = gym.make(env_id).unwrapped, gym.make(env_id).unwrapped
    c.reset(seed=4)
    d.reset(seed=5)
    for t in range(100):
        d.step(int(np.flatnonzero(d.action_masks())[t % 2]))
    assert _trajectory(c, 4, 300) == alone


def test_bounded_caches_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    env_id = "ldsgym/PartitionPlacement-MPS-v0"
    partition._SHARED_SLOWDOWNS.clear()
    want = _trajectory(gym.make(env_id).unwrapped, 1, 800)
    partition._SHARED_SLOWDOWNS.clear()
    monkeypatch.setattr(sim_misd, "_CACHE_MAX", 50)
    env = gym.make(env_id).unwrapped
    assert _trajectory(env, 1, 800) == want
    assert len(env._fcache) <= 51


def test_evict_oldest_keeps_the_newer_half() -> None:
    cache = {k: k * k for k in range(10)}
    evict_oldest(cache)
    assert cache == {k: k * k for k in range(5, 10)}


def test_pickled_env_goes_on_alike() -> None:
    env = gym.make("ldsgym/PartitionPlacement-MPS-v0").unwrapped
    env.reset(seed=2)
    for t in range(50):
        env.step(int(np.flatnonzero(env.action_masks())[t % 2]))
    copy = pickle.loads(pickle.dumps(env))
    assert _trajectory(copy, 9, 200) == _trajectory(env, 9, 200)
    obs, *_ = copy.step(0)
    assert obs["slack"].dtype == np.float32 and obs["slack"].flags.writeable


def test_summary_quantiles_match_the_histogram() -> None:
    rng = np.random.default_rng(0)
    c = Counters(2)
    lat = c.latency
    for i in range(3000):
        lat.add(float(rng.lognormal(-5, 1.5)))
        if i % 37 == 0:
            s = c.summary(1.0)
            assert s["p50_latency_ms"] == lat.quantile_s(0.50) * 1e3
            assert s["p99_latency_ms"] == lat.quantile_s(0.99) * 1e3
    s = c.summary(1.0)
    assert s["p50_latency_ms"] == lat.p50.value_s * 1e3
    assert s["p99_latency_ms"] == lat.p99.value_s * 1e3


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-MPS-v0",
                                    "ldsgym/PartitionPlacement-Prio-v0",
                                    "ldsgym/PartitionPlacement-TS-v0"])
def test_predictions_follow_the_running_set(env_id: str) -> None:
    """The per-running-set dict of predictions never serves a stale running set."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=7)
    sim = env.sim
    fn = sim._slowdown
    for t in range(1500):
        m = sim._cm[sim._pj]
        assert tuple(sim._jobcode) == sim._last_key or sim._last_key is None
        want = tuple(fn.predicted(sim.layout_id, tuple(sim._job), (m, 1), sim.active))
        assert tuple(sim.predicted(m)) == want
        valid = np.flatnonzero(env.action_masks())
        _, _, _, trunc, _ = env.step(int(valid[(t * 7) % len(valid)]))
        if trunc:
            env.reset()
            sim = env.sim


def test_summary_between_samples_repeats_the_last_read() -> None:
    """The latencies summary keeps until the next sample are those it would compute again."""
    rng = np.random.default_rng(1)
    c = Counters(2)
    lat = c.latency
    for _ in range(400):
        for _ in range(int(rng.integers(0, 3))):
            lat.add(float(rng.lognormal(-5, 1.5)))
        s = c.summary(1.0)
        again = c.summary(1.0)
        assert again == s and again is not s
        n = lat.n
        assert s["p50_latency_ms"] == lat.quantile_s(0.50) * 1e3
        assert s["p99_latency_ms"] == lat.quantile_s(0.99) * 1e3
        assert s["mean_latency_ms"] == (lat.total_s / n * 1e3 if n else 0.0)


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-v0",
                                    "ldsgym/PartitionPlacement-MPS-v0",
                                    "ldsgym/PartitionPlacement-Prio-v0"])
def test_observations_and_infos_are_the_callers(env_id: str) -> None:
    """Every observation is fresh memory (not the scratch space _obs packs into) and every
    info a fresh dict: scribbling over them changes no later step."""
    want = _trajectory(gym.make(env_id).unwrapped, 5, 300)
    env = gym.make(env_id).unwrapped
    obs, info = env.reset(seed=5)
    got: list[Any] = [{k: v.tobytes() for k, v in obs.items()}, dict(info)]
    before = obs
    for t in range(300):
        for v in obs.values():
            assert v.flags.writeable and not np.shares_memory(v, env._raw_f32)
            v[...] = -1.0
        info["arrived"] = -1
        valid = np.flatnonzero(env.action_masks())
        obs, r, term, trunc, info = env.step(int(valid[(t * 7) % len(valid)]))
        assert not any(np.shares_memory(obs[k], before[k]) for k in obs) or trunc
        got.append(({k: v.tobytes() for k, v in obs.items()}, r, term, trunc, dict(info)))
        before = obs
        if term or trunc:
            env.reset()
    assert got == want
