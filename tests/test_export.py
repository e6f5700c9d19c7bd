"""ONNX export: the exported policy picks the torch policy's actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO

import envs  # noqa: F401
from agents.export import OnnxPolicy, export_onnx, parity
from agents.policy import SB3Policy
from experiments.common import EnvSpec
from experiments.pipeline import collect_observations


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[MaskablePPO, EnvSpec, object]:
    spec = EnvSpec("ldsgym/PartitionPlacement-v0", {"episode_queries": 300})
    model = MaskablePPO("MultiInputPolicy", spec.make(), n_steps=256, batch_size=128,
                        n_epochs=2, seed=0, policy_kwargs={"net_arch": [32, 32]}, device="cpu")
    model.learn(512)  # enough to move the weights away from their initialisation
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "policy.onnx")
    return model, spec, path


def test_onnx_matches_torch_on_1000_observations(trained) -> None:
    model, spec, path = trained
    obs, masks = collect_observations(spec, SB3Policy(model), 1200, seed=500)
    assert len(masks) >= 1000
    assert parity(model, path, obs, masks) == 1.0


def test_onnx_respects_masks_and_single_observations(trained) -> None:
    model, spec, path = trained
    onnx = OnnxPolicy(path)
    env = spec.make()
    obs, _ = env.reset(seed=1)
    mask = np.zeros(env.action_space.n, dtype=bool)
    for only in range(env.action_space.n):
        mask[:] = False
        mask[only] = True
        a, _ = onnx.predict(obs, action_masks=mask)
        assert int(a) == only
    full = np.ones(env.action_space.n, dtype=bool)
    a_onnx, _ = onnx.predict(obs, action_masks=full)
    a_torch, _ = model.predict(obs, deterministic=True, action_masks=full)
    assert int(a_onnx) == int(a_torch)


def test_export_replaces_file_atomically(trained, tmp_path) -> None:
    model, _, _ = trained
    target = tmp_path / "policy.onnx"
    target.write_bytes(b"old")
    export_onnx(model, target)
    assert target.read_bytes()[:4] != b"old"
    assert not list(tmp_path.glob(".*tmp"))
    gym.make("ldsgym/PartitionPlacement-v0")  # registry still fine
