"""``warm_start`` of the train app: behaviour cloning from a baseline before PPO."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.common import CONF_DIR, UserError
from experiments.warm_start import TEACHER_SEED_OFFSET, WarmStart, warm_start_settings
from tests.conftest import run_app

ENV = "ldsgym/ShardPlacement-Drift-v0"


def _cfg(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=simd_placement", *overrides])


def test_off_when_null_and_parsed_when_given() -> None:
    assert warm_start_settings(_cfg("warm_start=null"), ENV) is None
    assert warm_start_settings(_cfg(), ENV) == WarmStart("hot_replicate", steps=20_000,
                                                         epochs=15)  # simd_placement's recipe
    ws = warm_start_settings(_cfg("warm_start=null",
                                  "warm_start={teacher: hot_replicate, steps: 500, lr: 0.01}"),
                             ENV)
    assert ws == WarmStart("hot_replicate", steps=500, epochs=5, batch_size=256, lr=0.01)
    ws = warm_start_settings(_cfg("warm_start=null",
                                  "warm_start={teacher: tier_aware, rare_weight: 30}"), ENV)
    assert ws == WarmStart("tier_aware", rare_weight=30.0)


@pytest.mark.parametrize(("value", "needle"), [
    ("{teacher: latency_greedy}", "warm_start.teacher"),  # a ShardRouting baseline
    ("{teacher: static, steps: 0}", "warm_start.steps"),
    ("{teacher: static, epochs: -1}", "warm_start.epochs"),
    ("{teacher: static, lr: 0}", "warm_start.lr"),
    ("{teacher: static, rare_weight: 0}", "warm_start.rare_weight"),
    ("{teacher: static, epoch: 3}", "unknown key"),
    ("{steps: 10}", "expected {teacher"),
    ("{teacher: static, steps: many}", "warm_start:"),
])
def test_bad_settings_are_one_line(value: str, needle: str) -> None:
    with pytest.raises(UserError, match=re.escape(needle)) as exc:
        warm_start_settings(_cfg("warm_start=null", f"warm_start={value}"), ENV)
    assert "\n" not in str(exc.value)


def test_teacher_seeds_stay_apart_from_evaluation_and_normalisation() -> None:
    clash = f"eval.seeds=[{TEACHER_SEED_OFFSET + 5}]"
    with pytest.raises(UserError, match="evaluation seeds"):
        warm_start_settings(_cfg("warm_start.steps=10", clash), ENV)
    with pytest.raises(UserError, match=re.escape("vec_env.normalize")):
        warm_start_settings(_cfg("vec_env.normalize=true"), ENV)


@pytest.mark.expensive  # a tiny training job: 20-40 s on 2 shared cores
def test_train_app_clones_then_trains(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = run_app("experiments.train", "experiment=simd_placement", "total_timesteps=256",
                  "warm_start.steps=600", "warm_start.epochs=3",
                  "agent.n_steps=64", "agent.batch_size=64", "progress=false",
                  "eval.seeds=[10000]", "eval.loads=[0.8]", "export.parity_samples=50",
                  "env.kwargs.episode_queries=200", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    record = json.loads((out / "warm_start.json").read_text())
    assert record["teacher"] == "hot_replicate" and record["decisions"] == 600
    assert sum(record["action_counts"].values()) == 600
    assert record["nll"][-1] < record["nll"][0]
    assert "warm start: cloned 600 hot_replicate decisions" in res.stdout
    assert (out / "model.zip").is_file() and (out / "results.csv").is_file()
