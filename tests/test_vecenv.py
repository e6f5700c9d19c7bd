"""Parallel rollouts (``vec_env=subproc``) and VecNormalize saved beside the model, reloaded by
evaluate and export and baked into policy.onnx."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from agents.normalize import NormalizedModel, ObsNormalizer, load_normalizer
from experiments.common import CONF_DIR, env_spec
from experiments.vecenv import make_training_env
from tests.conftest import run_app


def _cfg(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["env.kwargs.episode_queries=50", *overrides])


def test_vec_env_group_picks_the_sb3_class() -> None:
    cfg = _cfg("vec_env=subproc", "n_envs=2", "vec_env.normalize=true")
    venv = make_training_env(cfg, env_spec(cfg))
    try:
        assert isinstance(venv, VecNormalize)
        assert isinstance(venv.venv, SubprocVecEnv) and venv.num_envs == 2
        obs = venv.reset()
        assert set(obs) == set(venv.observation_space.spaces)
        masks = np.stack(venv.env_method("action_masks"))
        assert masks.shape == (2, venv.action_space.n) and masks.any(axis=1).all()
    finally:
        venv.close()
    cfg = _cfg()
    venv = make_training_env(cfg, env_spec(cfg))
    try:
        assert isinstance(venv, DummyVecEnv) and venv.num_envs == cfg.n_envs
    finally:
        venv.close()


def test_obs_normalizer_matches_vec_normalize(tmp_path: Path) -> None:
    cfg = _cfg()
    spec = env_spec(cfg)
    venv = VecNormalize(DummyVecEnv([spec.make, spec.make]), gamma=0.99, clip_obs=5.0)
    venv.seed(3)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):  # statistics move away from (0, 1)
        masks = np.stack(venv.env_method("action_masks"))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        venv.step(actions)
    raw = venv.get_original_obs()
    norm = ObsNormalizer.from_vec_normalize(venv)
    ours = norm(raw)
    theirs = venv.normalize_obs(raw)
    for key in raw:
        # float32 arithmetic (as in policy.onnx) vs SB3's float64: rounding apart
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-4)
        assert ours[key].dtype == np.float32
    assert any(not np.allclose(ours[k], raw[k]) for k in raw)
    venv.save(str(tmp_path / "vn.pkl"))
    venv.close()
    loaded = load_normalizer(tmp_path / "vn.pkl", spec.make)
    assert loaded is not None
    for key in raw:
        np.testing.assert_array_equal(loaded(raw)[key], ours[key])
    other = env_spec(_cfg("env=shard_routing"))
    with pytest.raises(ValueError, match="does not match"):
        load_normalizer(tmp_path / "vn.pkl", other.make)


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vecenv") / "r"
    res = run_app("experiments.train", "experiment=quick", "progress=false", "vec_env=subproc",
                  "n_envs=2", "vec_env.normalize=true", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _learned_row(report: str) -> str:
    match = re.search(r"^\| learned \|.*$", report, flags=re.MULTILINE)
    assert match, report
    return match.group(0)


@pytest.mark.expensive  # trains in subprocesses (15-35 s); the normalizer: test above
def test_subproc_training_saves_vecnormalize(normalized_run: Path) -> None:
    for name in ("model.zip", "vecnormalize.pkl", "policy.onnx", "report.md"):
        assert (normalized_run / name).is_file(), name
    assert "ONNX parity: 100.00%" in (normalized_run / "report.md").read_text()


@pytest.mark.expensive  # trains in subprocesses (15-35 s); the normalizer: test above
def test_evaluate_reloads_vecnormalize(normalized_run: Path) -> None:
    trained = _learned_row((normalized_run / "report.md").read_text())
    res = run_app("experiments.evaluate", f"run_dir={normalized_run}", "progress=false",
                  "policies=[learned]")
    assert res.returncode == 0, res.stderr[-3000:]
    report = sorted(normalized_run.glob("eval-*/report.md"))[-1].read_text()
    # The same held-out seeds: identical numbers only if the statistics were applied.
    assert _learned_row(report) == trained


@pytest.mark.expensive  # trains in subprocesses (15-35 s); the normalizer: test above
def test_export_bakes_normalization_into_onnx(normalized_run: Path) -> None:
    res = run_app("experiments.export", f"run_dir={normalized_run}", "export.parity_samples=800")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "agree on 100.00% of 800" in res.stdout
    # In process: raw observations into policy.onnx = normalised ones into the torch model.
    from sb3_contrib import MaskablePPO

    from agents.export import OnnxPolicy
    from agents.policy import SB3Policy
    from experiments.pipeline import collect_observations

    cfg = _cfg("experiment=quick")
    spec = env_spec(cfg)
    model = MaskablePPO.load(str(normalized_run / "model.zip"), device="cpu")
    norm = load_normalizer(normalized_run / "vecnormalize.pkl", spec.make)
    assert norm is not None
    wrapped = NormalizedModel(model, norm)
    obs, masks = collect_observations(spec, SB3Policy(wrapped), 300, seed=777)
    torch_actions, _ = wrapped.predict(obs, deterministic=True, action_masks=masks)
    onnx_actions, _ = OnnxPolicy(normalized_run / "policy.onnx").predict(obs,
                                                                         action_masks=masks)
    np.testing.assert_array_equal(onnx_actions, torch_actions)


def test_bad_vec_env_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import quick_train_refused

    assert "vec_env.kind" in quick_train_refused(["vec_env.kind=threads"], tmp_path, capsys,
                                                 monkeypatch)


@pytest.mark.expensive  # trains in subprocesses (15-35 s); the normalizer: test above
def test_scaling_app_measures_both_vec_envs(tmp_path: Path) -> None:
    import csv

    res = run_app("experiments.scaling", "experiment=quick", "scaling.n_envs=[1,2]",
                  "scaling.timesteps=256", f"hydra.run.dir={tmp_path}/s")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with open(tmp_path / "s" / "scaling.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["vec_env"], r["n_envs"]) for r in rows] == [
        ("dummy", "1"), ("subproc", "1"), ("dummy", "2"), ("subproc", "2")]
    assert all(float(r["env_steps_per_s"]) > 0 and float(r["learn_steps_per_s"]) > 0
               for r in rows)
    assert "| subproc | 2 |" in (tmp_path / "s" / "scaling.md").read_text()
