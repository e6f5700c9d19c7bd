"""Slow: the MISD study's agent beats the informed baselines under overload on held-out windows
(run with ``pytest -m expensive``; needs the shared Azure trace)."""

from __future__ import annotations

import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

from agents.baselines import baselines_for
from agents.evaluation import evaluate, summary_rows
from agents.networks import SlotScoringPolicy
from agents.policy import SB3Policy
from experiments.common import EnvSpec
from traces.paths import shared_dir

ENV = "ldsgym/PartitionPlacement-v0"
KW = {"sharing": "mps", "layout": ["mps:40", "mps:30", "mps:15", "mps:15"],
      "reward": {"name": "goodput", "backlog_weight": 1.0}}


@pytest.mark.expensive
@pytest.mark.skipif(shared_dir() is None, reason="../shared (Azure trace) not present")
def test_learned_placement_beats_baselines_under_overload_on_held_out_windows() -> None:
    train = EnvSpec(ENV, {**KW, "trace": "azure-conv", "load": [0.8, 1.3]})
    model = MaskablePPO(
        SlotScoringPolicy, make_vec_env(train.make, n_envs=4, seed=0), n_steps=512,
        batch_size=256, n_epochs=5, gamma=0.95, ent_coef=0.01, seed=0, device="cpu",
        policy_kwargs={"item_keys": ["queue", "queue_same", "busy", "finish", "size",
                                     "slowdown", "slack", "resident"],
                       "global_keys": ["model", "sla", "rates"], "hidden": 64})
    model.learn(200_000)
    test = EnvSpec(ENV, {**KW, "trace": "azure-conv-test", "load": 1.2,
                         "episode_queries": 5000})
    names = ["shortest_finish", "interference_aware", "gpulet_best_fit", "round_robin"]
    policies = {"learned": SB3Policy(model),
                **{n: baselines_for(ENV)[n]() for n in names}}
    res = evaluate(test.make, policies, seeds=[10_000, 10_001, 10_002], progress=False)
    good = {r["policy"]: r["goodput"] for r in summary_rows(res)}
    assert good["learned"] > 1.1 * max(good[n] for n in names), good
