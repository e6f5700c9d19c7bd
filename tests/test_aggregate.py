"""experiments.aggregate: a multirun of tiny real runs in one table, with intervals over seeds."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments.aggregate import t_interval
from tests.conftest import run_app

BASELINES = ("least_loaded", "shortest_finish")


def test_t_interval_by_hand() -> None:
    mean, half = t_interval([1.0, 2.0, 3.0], 0.95)
    # sd 1, sem 1/sqrt(3), t(0.975, 2 dof) = 4.302652729911275
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert t_interval([5.0, 5.0], 0.95) == (5.0, 0.0)
    m, h = t_interval([7.0], 0.95)
    assert m == 7.0 and math.isnan(h)


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real jobs (seeds 0 and 1), each evaluated at two loads, plus an unfinished one."""
    root = tmp_path_factory.mktemp("multirun") / "m"
    res = run_app("experiments.train", "-m", "experiment=quick", "seed=0,1", "progress=false",
                  "eval.loads=[0.8,1.0]", f"eval.baselines=[{','.join(BASELINES)}]",
                  "export.parity_samples=100", f"hydra.sweep.dir={root}", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # A job that died before evaluating: its folder has the config and a model, no results.
    shutil.copytree(root / "1", root / "2", ignore=shutil.ignore_patterns(
        "results.csv", "meta.json", "report.md", "eval-*"))
    return root


def _episode_means(path: Path) -> dict[tuple[float, str], dict[str, float]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[tuple[float, str], dict[str, float]] = {}
    for load, policy in {(float(r["load"]), r["policy"]) for r in rows}:
        sel = [r for r in rows if float(r["load"]) == load and r["policy"] == policy]
        out[(load, policy)] = {k: float(np.mean([float(r[k]) for r in sel]))
                               for k in ("goodput", "sla_attainment")}
    return out


def best_of(root: Path) -> str:
    job_means = [_episode_means(root / d / "results.csv") for d in ("0", "1")]
    return max(BASELINES, key=lambda b: np.mean([m[(1.0, b)]["goodput"] for m in job_means]))


@pytest.mark.expensive  # two real training jobs (50 s); t interval: tested by hand
def test_aggregate_a_real_multirun(multirun: Path) -> None:
    res = run_app("experiments.aggregate", f"multirun_dir={multirun}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 finished job(s) summarised, 1 left out" in res.stdout
    with open(multirun / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cells = {(float(r["load"]), r["policy"], r["metric"]): r for r in rows}
    assert {k[:2] for k in cells if "-vs-" not in k[1]} == {
        (lo, p) for lo in (0.8, 1.0) for p in ("learned", *BASELINES)}
    job0 = _episode_means(multirun / "0" / "results.csv")
    job1 = _episode_means(multirun / "1" / "results.csv")
    for (load, policy), m0 in job0.items():
        for metric in ("goodput", "sla_attainment"):
            row = cells[(load, policy, metric)]
            pair = [m0[metric], job1[(load, policy)][metric]]
            mean, half = t_interval(pair, 0.95)
            assert row["n_seeds"] == "2" and row["seeds"] == "0 1"
            assert float(row["mean"]) == pytest.approx(mean)
            assert float(row["ci_halfwidth"]) == pytest.approx(half)
            assert float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"])
    diff = cells[(1.0, f"learned-vs-{best_of(multirun)}", "goodput")]
    assert float(diff["mean"]) == pytest.approx(
        float(cells[(1.0, "learned", "goodput")]["mean"])
        - float(cells[(1.0, best_of(multirun), "goodput")]["mean"]))
    # Every numeric column of results.csv is summarised.
    assert {"p99_latency_ms", "dropped", "utilization", "episode_return"} <= {
        k[2] for k in cells}
    md = (multirun / "summary.md").read_text()
    assert "Left out: 1 job folder(s)" in md and "`2`: unfinished or failed" in md
    assert "## Learned vs best baseline" in md
    assert "| learned |" in md and "| shortest_finish |" in md
    plots = sorted((multirun / "summary_plots").glob("*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 10_000
    assert f"summary_plots/{plots[0].name}" in md


@pytest.mark.expensive  # two real training jobs (50 s); t interval: tested by hand
def test_learned_vs_best_is_paired(multirun: Path) -> None:
    from experiments.aggregate import find_jobs, learned_vs_best, per_job_means

    jobs, skipped = find_jobs(multirun)
    assert sorted(j.seed for j in jobs) == [0, 1] and len(skipped) == 1
    versus = learned_vs_best(per_job_means(jobs), 0.95)
    row = next(v for v in versus if v["load"] == 1.0 and v["metric"] == "goodput")
    job_means = [_episode_means(multirun / d / "results.csv") for d in ("0", "1")]
    best = best_of(multirun)
    assert row["best_baseline"] == best
    diffs = [m[(1.0, "learned")]["goodput"] - m[(1.0, best)]["goodput"] for m in job_means]
    mean, half = t_interval(diffs, 0.95)
    assert row["difference"] == pytest.approx(mean)
    assert row["difference_ci"] == pytest.approx(half)


@pytest.mark.expensive  # two real training jobs (50 s); t interval: tested by hand
def test_a_folder_of_runs_with_one_seed(multirun: Path, tmp_path: Path) -> None:
    shutil.copytree(multirun / "0", tmp_path / "runs" / "2026-12-06" / "10-00-00")
    res = run_app("experiments.aggregate", f"multirun_dir={tmp_path / 'runs'}")
    assert res.returncode == 0, res.stderr[-3000:]
    md = (tmp_path / "runs" / "summary.md").read_text()
    assert "(1 seed)" in md and "Left out" not in md


@pytest.mark.parametrize("arg, needle", [
    ("multirun_dir=/no/such/folder", "no such directory"),
    ("confidence=1.5", "confidence"),
])
def test_bad_input_is_one_line(arg: str, needle: str, tmp_path: Path) -> None:
    args = [arg] if arg.startswith("multirun_dir") else [arg, f"multirun_dir={tmp_path}"]
    res = run_app("experiments.aggregate", *args)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


@pytest.mark.expensive  # two real training jobs (50 s); t interval: tested by hand
def test_a_folder_without_finished_jobs(multirun: Path, tmp_path: Path) -> None:
    shutil.copytree(multirun / "2", tmp_path / "only" / "0")
    res = run_app("experiments.aggregate", f"multirun_dir={tmp_path / 'only'}")
    assert res.returncode == 2
    assert "no finished training job" in res.stderr and "unfinished" in res.stderr
    assert not (tmp_path / "only" / "summary.csv").exists()
