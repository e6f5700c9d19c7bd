"""experiment=simd_placement: its config, and the grid-scoring policy over ShardPlacement."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO
from stable_baselines3.common.logger import Logger

import envs  # noqa: F401  (registers the ids)
from agents.export import export_onnx, parity
from agents.networks import GridScoringPolicy
from agents.policy import SB3Policy
from envs.shard_placement import DRIFT_POPULARITY
from experiments.common import CONF_DIR, env_spec
from experiments.pipeline import collect_observations

GRID = {"cell_keys": ["holds", "loading"], "row_keys": ["demand", "replicas"],
        "col_keys": ["queue", "work", "util", "slots", "up"], "global_keys": ["rates"],
        "hidden": 16}


def _cfg(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=simd_placement", *overrides])


def test_the_experiment_spells_out_the_drift_preset() -> None:
    cfg = _cfg()
    kw = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    assert isinstance(kw, dict)
    registered = gym.spec(str(cfg.env.id)).kwargs
    # the env group's kwargs replace the preset's: they must say the same
    assert kw["popularity"] == registered["popularity"] == DRIFT_POPULARITY
    assert kw["load"] == registered["load"]
    env = env_spec(cfg).make().unwrapped
    assert env.popularity is not None and env.popularity.random and env.load == 0.8


def test_the_configured_agent_builds_and_keeps_by_default() -> None:
    cfg = _cfg("env.kwargs.episode_queries=60")
    env = env_spec(cfg).make()
    model = instantiate(cfg.agent, _convert_="all")(env=env, seed=0)
    assert isinstance(model.policy, GridScoringPolicy)
    obs, _ = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    mask[1::2] = False  # some toggles not allowed
    t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        probs = model.policy.get_distribution(t, action_masks=mask[None]).distribution.probs[0]
    assert float(probs[0]) > 0.5  # keep_bias: the first rollouts do not thrash the placement
    assert float(probs[torch.as_tensor(~mask)].sum()) == 0.0


def test_each_cell_sees_its_shard_and_node() -> None:
    env = gym.make("ldsgym/ShardPlacement-Drift-v0", episode_queries=60)
    model = MaskablePPO(GridScoringPolicy, env, n_steps=64, batch_size=64, seed=0,
                        policy_kwargs=GRID, device="cpu")
    obs, _ = env.reset(seed=1)
    for _ in range(20):
        obs, *_ = env.step(0)
    fx = model.policy.features_extractor
    t, _ = model.policy.obs_to_tensor(obs)
    N = env.unwrapped.n_nodes
    cells = fx(t)[0, :fx.n_items * len(fx.item_keys)].reshape(fx.n_items, -1).numpy()
    for s, n in ((0, 0), (3, 5), (7, 2)):
        want = [obs[k][s * N + n] for k in GRID["cell_keys"]] + [
            obs[k][s] for k in GRID["row_keys"]] + [obs[k][n] for k in GRID["col_keys"]]
        np.testing.assert_array_equal(cells[s * N + n], np.array(want, dtype=np.float32))
    with pytest.raises(ValueError, match="cell_keys"):
        MaskablePPO(GridScoringPolicy, env, policy_kwargs={**GRID, "cell_keys": ["demand"]})


@pytest.mark.expensive  # ONNX export and 256 training steps: 15-35 s on 2 shared cores
def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    cfg = _cfg("env.kwargs.episode_queries=100")
    spec = env_spec(cfg)
    model = MaskablePPO(GridScoringPolicy, spec.make(), n_steps=128, batch_size=64, n_epochs=2,
                        seed=0, policy_kwargs=GRID, device="cpu")  # keep_bias 0: varied actions
    model.set_logger(Logger(None, []))
    model.learn(256)
    path = export_onnx(model, tmp_path / "policy.onnx")
    obs, masks = collect_observations(spec, SB3Policy(model), 300, seed=500)
    assert parity(model, path, obs, masks) == 1.0
