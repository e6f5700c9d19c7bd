"""Behaviour cloning from a heuristic (agents/bc.py) on ShardRouting-RequestAware."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO

import envs  # noqa: F401
from agents.bc import clone, collect
from agents.networks import SlotScoringPolicy
from agents.shard_baselines import LatencyGreedy
from envs.shard import REQUEST_KEYS

ITEMS = ["queue", "work", "link", "hit", "hit_shard", "occupancy", "slow", "up", "holds",
         "finish", *REQUEST_KEYS]


def test_clone_fits_the_teacher() -> None:
    env = gym.make("ldsgym/ShardRouting-RequestAware-v0", episode_queries=400)
    obs, masks, acts = collect(env, LatencyGreedy(), 1200, seed=7)
    assert acts.shape == (1200,) and masks[np.arange(1200), acts].all()
    model = MaskablePPO(SlotScoringPolicy, env, seed=0, n_steps=64, batch_size=64,
                        policy_kwargs={"item_keys": ITEMS,
                                       "global_keys": ["shard", "size", "request", "rates"],
                                       "hidden": 32})
    losses = clone(model, obs, masks, acts, epochs=10, batch_size=128)
    assert losses[-1] < 0.6 * losses[0]  # it learns the teacher
    pred, _ = model.predict({k: v[:400] for k, v in obs.items()}, deterministic=True,
                            action_masks=masks[:400])
    assert np.mean(pred == acts[:400]) > 0.6  # chance (uniform over ~3 replicas): ~0.33


def test_collect_rejects_nothing_to_do() -> None:
    env = gym.make("ldsgym/ShardRouting-v0", episode_queries=50)
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        collect(env, LatencyGreedy(), 0)


def test_clone_weights() -> None:
    """Unit weights are plain cloning (same losses to the bit); weights on one action raise
    its probability; bad weights are refused."""
    env = gym.make("ldsgym/ShardRouting-RequestAware-v0", episode_queries=200)
    obs, masks, acts = collect(env, LatencyGreedy(), 300, seed=3)
    kwargs = {"item_keys": ITEMS, "global_keys": ["shard", "size", "request", "rates"],
              "hidden": 16}

    def fit(weights: np.ndarray | None) -> tuple[list[float], MaskablePPO]:
        model = MaskablePPO(SlotScoringPolicy, env, seed=0, n_steps=64, batch_size=64,
                            policy_kwargs=kwargs)
        return clone(model, obs, masks, acts, epochs=3, batch_size=64, weights=weights), model

    plain, _ = fit(None)
    ones, _ = fit(np.ones(len(acts)))
    assert plain == ones
    values, counts = np.unique(acts, return_counts=True)
    rare = int(values[np.argmin(counts)])  # the teacher's least taken action
    _, model = fit(np.where(acts == rare, 50.0, 1.0))
    _, plain_model = fit(None)
    rows = np.flatnonzero(acts == rare)
    ob = {k: v[rows] for k, v in obs.items()}

    def p_rare(m: MaskablePPO) -> float:
        t, _ = m.policy.obs_to_tensor(ob)
        dist = m.policy.get_distribution(t, action_masks=masks[rows])
        return float(dist.distribution.probs[:, rare].mean().detach())

    assert p_rare(model) > p_rare(plain_model)
    with pytest.raises(ValueError, match="weights"):
        clone(model, obs, masks, acts, epochs=1, weights=np.zeros(len(acts)))


def test_collect_binds_an_oracle_teacher_to_each_episode() -> None:
    """An oracle with ``bind_env`` (the per-interval hindsight schedule) is bound to every
    episode's seed, as in ``run_episode``: replaying the collected actions gives its episode."""
    from agents.evaluation import run_episode
    from agents.misd_baselines import IntervalHindsight
    from traces.synthetic import MixShift

    swing = MixShift(durations=(5.0, 5.0), weights=((0.4, 0.4, 0.2), (0.15, 0.15, 0.7)),
                     repeat=True, time_unit="s")
    env = gym.make("ldsgym/Repartition-v0", trace=swing, load=1.0, episode_s=12.0,
                   interval_s=1.0, candidates=[["3g", "2g", "1g", "1g"], ["7g"]])
    _, _, acts = collect(env, IntervalHindsight(), 30, seed=4)  # 2 episodes and a part
    for seed, start in ((4, 0), (5, 13)):  # an episode of 12 s takes 13 decisions
        env.reset(seed=seed)
        done, info = False, {}
        for a in acts[start:start + 13]:
            assert not done
            _, _, _, done, info = env.step(int(a))
        ref = run_episode(env, IntervalHindsight(), seed)
        assert done and ref["steps"] == 13 and ref["reconfigurations"] > 0
        assert info["goodput"] == ref["goodput"]
        assert info["reconfigurations"] == ref["reconfigurations"]
