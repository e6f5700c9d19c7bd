"""SlotScoringPolicy's ``separate_critic`` option: the value head's own slot network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sb3_contrib import MaskablePPO

import envs  # noqa: F401
from agents.export import export_onnx, parity
from agents.networks import SlotScoringPolicy
from agents.policy import SB3Policy
from experiments.common import EnvSpec
from experiments.pipeline import collect_observations

SLOTS = {"item_keys": ["queue", "queue_same", "busy", "finish", "size"],
         "global_keys": ["model", "sla", "rates"], "hidden": 32}
SPEC = EnvSpec("ldsgym/PartitionPlacement-v0", {"episode_queries": 200})


def _model(seed: int, **extra: object) -> MaskablePPO:
    return MaskablePPO(SlotScoringPolicy, SPEC.make(), n_steps=64, batch_size=64, seed=seed,
                       policy_kwargs={**SLOTS, **extra}, device="cpu")


def test_default_network_is_unchanged() -> None:
    """Off by default: no extra weights, and the seeded initialisation is the same as asking
    for ``separate_critic=False`` (the option's module is created after all the others)."""
    plain, off = _model(3), _model(3, separate_critic=False)
    keys = list(plain.policy.state_dict())
    assert not any("embed_vf" in k for k in keys)
    assert keys == list(off.policy.state_dict())
    for a, b in zip(plain.policy.state_dict().values(), off.policy.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # the shared network shares: the value loss reaches the actor's slot embedding
    obs, _ = plain.policy.obs_to_tensor(SPEC.make().reset(seed=0)[0])
    plain.policy.predict_values(obs).sum().backward()
    assert plain.policy.mlp_extractor.embed[0].weight.grad.abs().sum() > 0


def test_separate_critic_keeps_value_gradients_off_the_actor(tmp_path: Path) -> None:
    sep = _model(3, separate_critic=True)
    scorer = sep.policy.mlp_extractor
    assert scorer.embed_vf is not None
    obs, _ = sep.policy.obs_to_tensor(SPEC.make().reset(seed=0)[0])
    sep.policy.predict_values(obs).sum().backward()
    assert scorer.embed[0].weight.grad is None  # the value loss never touches the actor's net
    assert scorer.embed_vf[0].weight.grad.abs().sum() > 0
    sep.policy.zero_grad()
    sep.policy.get_distribution(obs).distribution.logits.sum().backward()
    assert scorer.embed[0].weight.grad.abs().sum() > 0
    assert scorer.embed_vf[0].weight.grad is None or not scorer.embed_vf[0].weight.grad.any()
    # training, saving and loading keep the option and the weights; ONNX export = torch actions
    sep.learn(128)
    sep.save(tmp_path / "m.zip")
    back = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    assert back.policy.separate_critic and back.policy.mlp_extractor.embed_vf is not None
    for a, b in zip(sep.policy.state_dict().values(), back.policy.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    observations, masks = collect_observations(SPEC, SB3Policy(sep), 300, seed=1)
    path = export_onnx(sep, tmp_path / "policy.onnx")
    assert parity(sep, path, observations, masks) == 1.0
    assert np.isfinite(back.policy.predict_values(obs).detach().numpy()).all()
