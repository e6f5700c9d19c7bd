"""PartitionPlacement's observation comes from one table of features
(:mod:`envs.partition_features`): a new feature is one row in it, and the fused per-step
values, the rollout builders and the observation space all follow."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs import partition_features as pf


@pytest.mark.parametrize("variant", sorted(pf.VARIANTS))
def test_every_observation_entry_has_one_place_in_the_fused_values(variant: str) -> None:
    feats = pf.compile_features(variant)
    P, M = 5, 3
    sizes, order, raw_len = feats.layout(P, M)
    assert list(sizes) == list(pf.OBSERVATION)
    assert len(order) == sum(sizes.values())
    assert max(order) < raw_len
    zero = sum(sizes[k] for k in (*pf.PER_QUERY, *pf.CONSTANT))
    computed = [i for i in order if i != zero]
    # Every computed entry is read once, except those a variant aliases (finish_prio).
    aliased = sum(sizes[k] for k in feats.same)
    assert len(computed) - len(set(computed)) == aliased


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-v0",
                                    "ldsgym/PartitionPlacement-MPS-v0",
                                    "ldsgym/PartitionPlacement-Prio-v0"])
def test_a_new_feature_is_one_row_in_the_table(env_id: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # "idle": 1 where the partition has nothing queued and runs nothing.
    monkeypatch.setitem(pf.PER_PARTITION, "idle", ("1.0 if q == 0 and r < 0 else 0.0", None))
    monkeypatch.setitem(pf.OBSERVATION, "idle", ("P", 0.0, 1.0))
    monkeypatch.setattr(pf, "_COMPILED", {})
    env = gym.make(env_id).unwrapped
    assert env.observation_space["idle"].shape == (env.n_partitions,)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(200):
        sim = env.sim
        want = [1.0 if q == 0 and r < 0 else 0.0
                for q, r in zip(sim.queued_items, sim.running_model, strict=True)]
        assert obs["idle"].tolist() == want
        assert env.observation_space.contains(obs)
        # The rollout builder of the new key gives the same values.
        m, deadline, _ = sim.pending_query()
        sla = deadline - sim.now
        got = env._builders["idle"](env, sim, m, sim.now, sla, 1.0 / sla if sla > 0 else 1e3)
        assert got == want
        valid = np.flatnonzero(env.action_masks())
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
        if terminated or truncated:
            break
