"""ONNX export: the exported policy picks the torch policy's actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3.common.logger import Logger

import envs  # noqa: F401
from agents.export import OnnxPolicy, export_onnx, parity
from agents.networks import SlotScoringPolicy
from agents.policy import SB3Policy
from experiments.common import EnvSpec
from experiments.pipeline import collect_observations

SLOTS = {"item_keys": ["queue", "queue_same", "busy", "finish", "size"],
         "global_keys": ["model", "sla", "rates"], "hidden": 32}


@pytest.fixture(scope="module", params=["mlp", "slots"])
def trained(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[MaskablePPO, EnvSpec, object]:
    spec = EnvSpec("ldsgym/PartitionPlacement-v0", {"episode_queries": 300})
    policy, kwargs = (("MultiInputPolicy", {"net_arch": [32, 32]}) if request.param == "mlp"
                      else (SlotScoringPolicy, SLOTS))
    model = MaskablePPO(policy, spec.make(), n_steps=256, batch_size=128,
                        n_epochs=2, seed=0, policy_kwargs=kwargs, device="cpu")
    model.set_logger(Logger(None, []))  # SB3's default would leave an empty SB3-* dir in /tmp
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


def test_slot_policy_is_permutation_equivariant_and_survives_save_load(tmp_path) -> None:
    import torch

    spec = EnvSpec("ldsgym/PartitionPlacement-v0", {"episode_queries": 100})
    model = MaskablePPO(SlotScoringPolicy, spec.make(), n_steps=64, batch_size=64, seed=1,
                        policy_kwargs=SLOTS, device="cpu")
    env = spec.make()
    obs, _ = env.reset(seed=2)
    for _ in range(30):  # get some queues going
        obs, *_ = env.step(0)
    perm = np.array([2, 0, 3, 1])
    items = SLOTS["item_keys"]
    permuted = {k: (v[perm] if k in items else v) for k, v in obs.items()}

    def logits(o, m=model):
        t = {k: torch.as_tensor(v[None]) for k, v in o.items()}
        with torch.no_grad():
            f = m.policy.extract_features(t, m.policy.pi_features_extractor)
            return m.policy.action_net(m.policy.mlp_extractor.forward_actor(f))[0].numpy()

    base, moved = logits(obs), logits(permuted)
    np.testing.assert_allclose(moved[:-1], base[:-1][perm], rtol=1e-5, atol=1e-6)
    assert moved[-1] == pytest.approx(base[-1], abs=1e-6)  # reject sees pooled slots only
    model.save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip")
    np.testing.assert_allclose(logits(obs, loaded), base, rtol=1e-6)
    assert loaded.policy.item_keys == SLOTS["item_keys"]
