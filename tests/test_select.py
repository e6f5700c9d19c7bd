"""``select``: checkpoint selection on validation episodes (experiments/selection.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments.common import CONF_DIR, UserError, env_spec
from experiments.selection import Select, Validator, select_settings
from tests.conftest import QUICK_SELECT, run_app

SEL = QUICK_SELECT


def _cfg(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=quick", *overrides])


def test_off_by_default_and_parsed_when_given() -> None:
    cfg = _cfg()
    assert select_settings(cfg, env_spec(cfg)) is None
    cfg = _cfg(f"select={SEL}")
    sel = select_settings(cfg, env_spec(cfg))
    assert sel == Select(every=512, traces=("azure-conv", None), loads=(1.0,),
                         episode_queries=300)
    assert sel is not None and sel.seeds == [9000]


@pytest.mark.parametrize(("value", "needle"), [
    ("{every: 0}", "select.every"),
    ("{every: 10, episodes: 0}", "select.episodes"),
    ("{every: 10, start: -1}", "select.start"),
    ("{every: 10, evry: 3}", "unknown key"),
    ("{episodes: 3}", "expected {every"),
    ("{every: 10, traces: [azure-conv-test]}", "held-out test split"),
    ("{every: 10, traces: [no-such-trace]}", "unknown trace preset"),
    ("{every: 10, loads: [0]}", "select.loads"),
    ("{every: 10, score: median}", "select.score"),
    ("{every: 10, baselines: [nope]}", "nope"),
    ("{every: 10, seed: 10000}", "select.seed"),  # an evaluation seed
    ("{every: 10, seed: 0}", "select.seed"),  # a training seed
    ("{every: many}", "select:"),
    ("{every: 10, loads: [0.8, 1.0], targets: [0.1]}", "select.targets"),  # one per load
    ("{every: 10, targets: [0.1]}", "select.targets"),  # no loads: nothing to pair with
    ("{every: 10, loads: [1.0], targets: 0.1}", "select.targets"),
    ("{every: 10, runs: 0}", "select.runs"),
    ("{every: 10, runs: 2, ensemble: 3}", "select.ensemble"),  # more members than runs
    ("{every: 10, ensemble: 0}", "select.ensemble"),
])
def test_bad_settings_are_one_line(value: str, needle: str) -> None:
    cfg = _cfg(f"select={value}")
    with pytest.raises(UserError, match=re.escape(needle)) as exc:
        select_settings(cfg, env_spec(cfg))
    assert "\n" not in str(exc.value)


def test_bad_key_fails_the_app_before_training(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import quick_train_refused

    line = quick_train_refused(["select={every: 10, evry: 3}"], tmp_path, capsys, monkeypatch)
    assert "select: unknown key(s) ['evry']" in line


def test_targets_make_the_score_a_margin_over_per_load_requirements(monkeypatch) -> None:
    """Gains per cell (trace x load) less their load's target; ``min``: the worst margin."""
    cfg = _cfg("select={every: 10, traces: [azure-conv, azure-code], loads: [0.8, 1.0], "
               "targets: [-0.02, 0.10], score: min}")
    sel = select_settings(cfg, env_spec(cfg))
    assert sel is not None and sel.targets == (-0.02, 0.10)
    validator = Validator.__new__(Validator)  # the baselines' episodes are not needed here
    validator.sel = sel
    validator.cells = [(t, lo) for t in sel.traces for lo in sel.loads]
    validator.targets = {0.8: -0.02, 1.0: 0.10}
    validator.best_baseline = {cell: ("b", 100.0) for cell in validator.cells}
    learned = {("azure-conv", 0.8): 99.0, ("azure-conv", 1.0): 125.0,
               ("azure-code", 0.8): 120.0, ("azure-code", 1.0): 108.0}
    monkeypatch.setattr(Validator, "_run", lambda self, cell, pols: {"learned": learned[cell]})
    score, gains = validator.score(model=None)
    assert gains == pytest.approx({"azure-conv@0.8": -0.01, "azure-conv@1": 0.25,
                                   "azure-code@0.8": 0.20, "azure-code@1": 0.08})
    # Margins +0.01, +0.15, +0.22, -0.02: azure-code at 100% misses its +10% by 2 points,
    # although its gain (+8%) is not the smallest (-1% at 80%).
    assert score == pytest.approx(-0.02)
    validator.targets = {}
    assert validator.score(model=None)[0] == pytest.approx(-0.01)  # plain min of the gains


def test_select_best_keeps_the_best_scoring_weights() -> None:
    """Checks at 150, 250, 350 score 0.1, 0.5, 0.5, the end (450) 0.2: the weights of 250."""
    from sb3_contrib import MaskablePPO

    from agents.callbacks import SelectBest

    cfg = _cfg()
    env = env_spec(cfg).make()
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, seed=0, device="cpu")
    scores = iter([0.1, 0.5, 0.5, 0.2])
    seen: list[dict[str, torch.Tensor]] = []

    def score(m):
        seen.append({k: v.clone() for k, v in m.policy.state_dict().items()})
        return next(scores), {"n": len(seen)}

    sel = SelectBest(100, score, start_step=150)
    sel.init_callback(model)
    for step in (100, 150, 200, 250, 300, 350, 400):
        with torch.no_grad():
            for p in model.policy.parameters():
                p.add_(torch.randn_like(p))  # "training"
        model.num_timesteps = step
        sel.on_rollout_start()
    model.num_timesteps = 450
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(torch.randn_like(p))
    best = sel.finish(model)
    assert [r["step"] for r in sel.history] == [150, 250, 350, 450]  # from start_step on
    assert best["step"] == 250 and best["score"] == 0.5  # the first of equal scores
    now = model.policy.state_dict()
    assert all(torch.equal(now[k], seen[1][k]) for k in now)
    assert not all(torch.equal(now[k], seen[-1][k]) for k in now)  # not the last weights


def test_train_exports_the_best_scoring_check(quick_run: Path) -> None:
    out = quick_run  # experiment=quick with select=SEL (tests/conftest.py)
    record = json.loads((out / "select.json").read_text())
    history = record["history"]
    assert [r["step"] for r in history] == [512, 1024, 1536, 2048]  # 2 envs x 256 per rollout
    best = max(r["score"] for r in history)
    assert record["chosen_score"] == best
    assert record["chosen_step"] == next(r["step"] for r in history if r["score"] == best)
    assert set(record["best_baselines"]) == {"azure-conv@1", "env@1"}
    assert "Checkpoint selection (select)" in (out / "report.md").read_text()
    assert not (out / "checkpoint" / "select_best.pt").exists()  # training finished
    assert (out / "model_last.zip").is_file() == (record["chosen_step"] != 2048)
    # The exported model.zip scores what the chosen check scored (same validation episodes).
    from experiments.saved import load_model

    cfg = _cfg(f"select={SEL}")
    sel = select_settings(cfg, env_spec(cfg))
    assert sel is not None
    from agents.baselines import baselines_for

    validator = Validator(sel, env_spec(cfg), list(baselines_for(env_spec(cfg).env_id)))
    score, _ = validator.score(load_model(cfg, out))
    assert score == pytest.approx(best, abs=1e-12)


def test_runs_training_seeds_must_miss_the_evaluation_seeds() -> None:
    # seed 9998 alone trains on 9998-9999 (2 envs); a second run (seed 9999) would use 10000.
    cfg = _cfg("seed=9998", "select={every: 10, seed: 5000}")
    assert select_settings(cfg, env_spec(cfg)) is not None
    cfg = _cfg("seed=9998", "select={every: 10, seed: 5000, runs: 2}")
    with pytest.raises(UserError, match=re.escape("select.runs")):
        select_settings(cfg, env_spec(cfg))


SEL_RUNS = SEL.replace("}", ", runs: 2, ensemble: 2}")


@pytest.fixture(scope="module")
def best_of_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny ``select.runs: 2, ensemble: 2`` training (seeds 3 and 4), shared by the two
    tests below: ``runs`` alone takes the same path up to ``ensemble.json`` (what
    ``test_runs_keep_the_best_scoring_training_run`` checks is written either way)."""
    out = tmp_path_factory.mktemp("select") / "r"
    res = run_app("experiments.train", "experiment=quick", "progress=false", "seed=3",
                  f"select={SEL_RUNS}", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def test_runs_keep_the_best_scoring_training_run(best_of_two: Path) -> None:
    out = best_of_two
    record = json.loads((out / "select.json").read_text())
    subs = {s: json.loads((out / "runs" / f"seed-{s}" / "select.json").read_text())
            for s in (3, 4)}
    assert [r["seed"] for r in record["runs"]] == [3, 4]
    for r in record["runs"]:  # each run chose its own best check
        assert r["chosen_score"] == subs[r["seed"]]["chosen_score"]
        assert r["chosen_score"] == max(h["score"] for h in subs[r["seed"]]["history"])
    assert subs[3]["history"] != subs[4]["history"]  # two trainings, not one twice
    best = max(record["runs"], key=lambda r: r["chosen_score"])
    assert record["chosen_seed"] == best["seed"]
    assert record["chosen_score"] == best["chosen_score"]
    chosen = out / "runs" / f"seed-{best['seed']}" / "model.zip"
    assert (out / "model.zip").read_bytes() == chosen.read_bytes()
    assert "Best of 2 training runs by that score" in (out / "report.md").read_text()


def test_ensemble_is_refused_with_the_online_study() -> None:
    cfg = _cfg("select={every: 10, runs: 2, ensemble: 2}", "+online={episode_queries: 1000}")
    with pytest.raises(UserError, match=re.escape("select.ensemble")):
        select_settings(cfg, env_spec(cfg))


def test_runs_with_ensemble_act_together(best_of_two: Path) -> None:
    from agents.ensemble import EnsembleModel
    from agents.policy import SB3Policy
    from experiments.pipeline import collect_observations
    from experiments.saved import load_model

    out = best_of_two
    sel = SEL_RUNS
    ens = json.loads((out / "ensemble.json").read_text())
    assert ens["members"] == ["runs/seed-3/model.zip", "runs/seed-4/model.zip"]
    assert ens["seeds"] == [3, 4]
    record = json.loads((out / "select.json").read_text())
    assert record["ensemble"]["seeds"] == [3, 4]
    cfg = _cfg(f"select={sel}", "seed=3")
    model = load_model(cfg, out)
    assert isinstance(model, EnsembleModel) and len(model) == 2
    # select.json's ensemble score is the ensemble's own, on the same validation episodes.
    s = select_settings(cfg, env_spec(cfg))
    assert s is not None
    from agents.baselines import baselines_for

    validator = Validator(s, env_spec(cfg), list(baselines_for(env_spec(cfg).env_id)))
    score, _ = validator.score(model)
    assert score == pytest.approx(record["ensemble"]["score"], abs=1e-12)
    assert "Ensemble (select.ensemble): the policies of seeds 3, 4" in (
        out / "report.md").read_text()
    # The exported graph is the ensemble's (parity with the ensemble, not with model.zip).
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parity_agreement"] == 1.0
    from agents.export import OnnxPolicy

    obs, masks = collect_observations(env_spec(cfg), SB3Policy(model), 300, seed=900)
    onnx_actions, _ = OnnxPolicy(out / "policy.onnx").predict(obs, action_masks=masks)
    assert np.array_equal(onnx_actions, model.predict(obs, deterministic=True,
                                                      action_masks=masks)[0])
    # run_dir= apps load the ensemble too.
    res = run_app("experiments.evaluate", f"run_dir={out}", f"hydra.run.dir={out / 'ev'}",
                  "progress=false")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "the ensemble of" in (out / "ev" / "report.md").read_text()


def test_ensemble_members_are_the_best_scoring_runs_in_seed_order() -> None:
    from experiments.selection import ensemble_members

    runs = [{"seed": s, "chosen_score": c}
            for s, c in zip([5, 6, 7, 8], [0.01, 0.03, -0.2, 0.04], strict=True)]
    assert [r["seed"] for r in ensemble_members(runs, 2)] == [6, 8]  # 8 scored best: seed order
    assert [r["seed"] for r in ensemble_members(runs, 3)] == [5, 6, 8]
    assert [r["seed"] for r in ensemble_members(runs, 4)] == [5, 6, 7, 8]
    # Of equal scores the earlier run, whatever the order of the rest.
    tied = [{"seed": s, "chosen_score": c}
            for s, c in zip([0, 1, 2, 3], [0.02, 0.05, 0.02, 0.02], strict=True)]
    assert [r["seed"] for r in ensemble_members(tied, 2)] == [0, 1]
    assert [r["seed"] for r in ensemble_members(tied, 3)] == [0, 1, 2]
    with pytest.raises(ValueError):
        ensemble_members(runs, 5)
