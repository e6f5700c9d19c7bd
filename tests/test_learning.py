"""Slow: the agent learns something (run with ``pytest -m expensive``)."""

from __future__ import annotations

import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

from agents.baselines import RandomPolicy, RoundRobinPolicy
from agents.evaluation import evaluate, summary_rows
from agents.policy import SB3Policy
from experiments.common import EnvSpec


@pytest.mark.expensive
def test_maskable_ppo_beats_blind_baselines() -> None:
    spec = EnvSpec("ldsgym/PartitionPlacement-v0",
                   {"reward": {"name": "goodput", "backlog_weight": 1.0}})
    model = MaskablePPO("MultiInputPolicy", make_vec_env(spec.make, n_envs=4, seed=0),
                        n_steps=512, batch_size=256, n_epochs=5, gamma=0.95, seed=0,
                        device="cpu", policy_kwargs={"net_arch": [64, 64]})
    model.learn(150_000)
    res = evaluate(spec.make, {"learned": SB3Policy(model), "random": RandomPolicy(),
                               "round_robin": RoundRobinPolicy()},
                   seeds=[10_000, 10_001, 10_002], progress=False)
    att = {r["policy"]: r["sla_attainment"] for r in summary_rows(res)}
    assert att["learned"] > max(att["random"], att["round_robin"]) + 0.05, att
