"""Ensembles of trained policies (agents/ensemble.py): the mean of masked action probabilities,
its ONNX export as one graph, and loading a run folder's ``ensemble.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from sb3_contrib import MaskablePPO
from stable_baselines3.common.logger import Logger

import envs  # noqa: F401
from agents.ensemble import EnsembleModel
from agents.export import OnnxPolicy, export_onnx, parity
from agents.networks import SlotScoringPolicy
from agents.policy import SB3Policy
from experiments.common import CONF_DIR, EnvSpec, UserError
from experiments.pipeline import collect_observations

SLOTS = {"item_keys": ["queue", "queue_same", "busy", "finish", "size"],
         "global_keys": ["model", "sla", "rates"], "hidden": 32}
SPEC = EnvSpec("ldsgym/PartitionPlacement-v0", {"episode_queries": 300})


def _model(seed: int) -> MaskablePPO:
    model = MaskablePPO(SlotScoringPolicy, SPEC.make(), n_steps=256, batch_size=128,
                        n_epochs=2, seed=seed, policy_kwargs=SLOTS, device="cpu")
    model.set_logger(Logger(None, []))
    model.learn(512)  # weights away from their initialisation, different per seed
    return model


@pytest.fixture(scope="module")
def members() -> list[MaskablePPO]:
    return [_model(0), _model(1)]


@pytest.fixture(scope="module")
def data(members) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return collect_observations(SPEC, SB3Policy(members[0]), 1200, seed=700)


def _sb3_probs(model: MaskablePPO, obs: dict[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        tensor, _ = model.policy.obs_to_tensor(obs)
        dist = model.policy.get_distribution(tensor, action_masks=masks)
        return dist.distribution.probs.numpy()


def test_an_ensemble_of_identical_policies_acts_like_one(members, data) -> None:
    obs, masks = data
    one = members[0]
    single, _ = one.predict(obs, deterministic=True, action_masks=masks)
    for k in (1, 2, 3):
        ens = EnsembleModel([one] * k)
        actions, _ = ens.predict(obs, deterministic=True, action_masks=masks)
        assert np.array_equal(actions, single)
        np.testing.assert_allclose(ens.action_probabilities(obs, masks),
                                   _sb3_probs(one, obs, masks), atol=1e-6)


def test_the_ensemble_acts_by_the_mean_of_the_members_probabilities(members, data) -> None:
    obs, masks = data
    pa, pb = (_sb3_probs(m, obs, masks) for m in members)
    ens = EnsembleModel(members)
    probs = ens.action_probabilities(obs, masks)
    np.testing.assert_allclose(probs, (pa + pb) / 2, atol=1e-6)
    actions, _ = ens.predict(obs, deterministic=True, action_masks=masks)
    assert np.array_equal(actions, np.argmax(probs, axis=1))
    # The members disagree somewhere, and the mean is neither of them.
    own = [m.predict(obs, deterministic=True, action_masks=masks)[0] for m in members]
    assert not np.array_equal(own[0], own[1])
    assert not np.allclose(probs, pa, atol=1e-3) and not np.allclose(probs, pb, atol=1e-3)


def test_masks_are_respected(members, data) -> None:
    obs, _ = data
    ens = EnsembleModel(members)
    n = len(next(iter(obs.values())))
    rng = np.random.default_rng(3)
    masks = rng.random((n, ens.action_space.n)) < 0.4
    masks[np.arange(n), rng.integers(0, ens.action_space.n, n)] = True  # one valid at least
    probs = ens.action_probabilities(obs, masks)
    assert np.all(probs[~masks] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for deterministic in (True, False):
        actions, _ = ens.predict(obs, deterministic=deterministic, action_masks=masks)
        assert masks[np.arange(n), actions].all()
    single = {k: v[0] for k, v in obs.items()}  # unbatched: a scalar action
    for only in range(ens.action_space.n):
        mask = np.zeros(ens.action_space.n, dtype=bool)
        mask[only] = True
        action, _ = ens.predict(single, deterministic=True, action_masks=mask)
        assert np.ndim(action) == 0 and int(action) == only


def test_onnx_export_is_one_graph_with_parity(members, data, tmp_path: Path) -> None:
    import onnxruntime as ort

    obs, masks = data
    ens = EnsembleModel(members)
    path = export_onnx(ens, tmp_path / "policy.onnx")
    assert parity(ens, path, obs, masks) == 1.0
    single = export_onnx(members[0], tmp_path / "single.onnx")
    io = [[(x.name, x.shape[1:]) for x in (s.get_inputs() + s.get_outputs())]
          for s in (ort.InferenceSession(str(p)) for p in (path, single))]
    assert io[0] == io[1]  # same inputs and outputs as one policy's graph
    onnx_actions, _ = OnnxPolicy(path).predict(obs, action_masks=masks)
    member_actions = [m.predict(obs, deterministic=True, action_masks=masks)[0] for m in members]
    assert any(not np.array_equal(onnx_actions, a) for a in member_actions)  # not one member


def test_members_must_share_their_spaces(members) -> None:
    three = EnvSpec("ldsgym/PartitionPlacement-v0",
                    {"episode_queries": 300, "layout": ["3g", "2g", "1g"]})
    other = MaskablePPO(SlotScoringPolicy, three.make(), policy_kwargs=SLOTS, device="cpu")
    with pytest.raises(ValueError, match="differ"):
        EnsembleModel([members[0], other])
    with pytest.raises(ValueError, match="at least one"):
        EnsembleModel([])


def _cfg():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=quick"])


def test_a_run_folder_with_ensemble_json_loads_the_ensemble(members, data,
                                                             tmp_path: Path) -> None:
    from experiments.saved import load_model

    obs, masks = data
    for i, m in enumerate(members):
        (tmp_path / "runs" / f"seed-{i}").mkdir(parents=True)
        m.save(tmp_path / "runs" / f"seed-{i}" / "model.zip")
    members[0].save(tmp_path / "model.zip")
    cfg = _cfg()
    assert isinstance(load_model(cfg, tmp_path), MaskablePPO)  # no ensemble.json: model.zip
    record = {"members": ["runs/seed-0/model.zip", "runs/seed-1/model.zip"]}
    (tmp_path / "ensemble.json").write_text(json.dumps(record))
    ens = load_model(cfg, tmp_path)
    assert isinstance(ens, EnsembleModel) and len(ens) == 2
    np.testing.assert_allclose(ens.action_probabilities(obs, masks),
                               EnsembleModel(members).action_probabilities(obs, masks),
                               atol=1e-7)
    for text, needle in ((json.dumps({"members": ["runs/seed-9/model.zip"]}), "seed-9"),
                         ("{not json", "not an ensemble record"),
                         (json.dumps({"members": []}), "not an ensemble record")):
        (tmp_path / "ensemble.json").write_text(text)
        with pytest.raises(UserError, match=needle) as exc:
            load_model(cfg, tmp_path)
        assert "\n" not in str(exc.value) and "ensemble.json" in str(exc.value)
