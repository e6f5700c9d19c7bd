"""Sweeps on Ray (extra ``ldsgym[ray]``): the Hydra Ray launcher runs a two-job multirun in
parallel on a local Ray instance it starts (and stops), and the Optuna sweeper launches its
trials through it. Run with ``python -m pytest -m ray``; skipped without the extra."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_app

pytestmark = pytest.mark.ray
pytest.importorskip("ray")
pytest.importorskip("hydra_plugins.hydra_ray_launcher")

#: A tiny local Ray instance (the machine is shared): two CPUs, no dashboard, 200 MB store.
RAY = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
       "+hydra.launcher.ray.init.include_dashboard=false",
       "+hydra.launcher.ray.init.object_store_memory=200000000"]
QUICK = ["experiment=quick", "progress=false", "eval.baselines=[least_loaded,shortest_finish]",
         "export.parity_samples=100"]


def _span(job: Path) -> tuple[float, float]:
    """When a job started (Hydra wrote its config) and finished (meta.json, written last)."""
    return (job / ".hydra" / "config.yaml").stat().st_mtime, (job / "meta.json").stat().st_mtime


def _learned_mean(job: Path, metric: str) -> float:
    with open(job / "results.csv", newline="") as fh:
        return float(np.mean([float(r[metric]) for r in csv.DictReader(fh)
                              if r["policy"] == "learned"]))


def test_two_jobs_in_parallel_on_a_local_ray_instance(tmp_path: Path) -> None:
    root = tmp_path / "m"
    res = run_app("experiments.train", "-m", *RAY, *QUICK, "seed=0,1",
                  f"hydra.sweep.dir={root}", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "Ray Launcher is launching 2 jobs" in out
    pids = set(re.findall(r"\(_run_job pid=(\d+)", out))
    assert len(pids) == 2, pids  # two Ray worker processes ran the jobs
    jobs = [root / "0", root / "1"]
    for job in jobs:
        for name in ("model.zip", "policy.onnx", "results.csv", "report.md", "meta.json"):
            assert (job / name).is_file(), job / name
    (s0, e0), (s1, e1) = (_span(j) for j in jobs)
    assert max(s0, s1) < min(e0, e1), "the two jobs did not overlap in time"
    seeds = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["seed"] for j in jobs]
    assert sorted(seeds) == [0, 1]

    agg = run_app("experiments.aggregate", f"multirun_dir={root}")
    assert agg.returncode == 0, agg.stderr[-3000:]
    assert "2 finished job(s) summarised, 0 left out" in agg.stdout
    with open(root / "summary.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh)
                   if r["policy"] == "learned" and r["metric"] == "goodput")
    assert row["n_seeds"] == "2" and row["seeds"] == "0 1"
    expected = np.mean([_learned_mean(j, "goodput") for j in jobs])
    assert float(row["mean"]) == pytest.approx(expected)


def test_optuna_trials_on_ray(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    root = tmp_path / "o"
    res = run_app("experiments.train", "-m", *RAY, *QUICK, "search=main",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                  f"hydra.sweep.dir={root}", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Ray Launcher is launching 2 jobs" in res.stdout + res.stderr
    study = yaml.safe_load((root / "optimization_results.yaml").read_text())
    assert set(study["best_params"]) == {"agent.learning_rate", "agent.ent_coef", "agent.gamma",
                                         "agent.policy_kwargs.hidden"}
    # Each trial returned its learned policy's mean goodput; the study kept the larger one.
    values = [_learned_mean(root / d, "goodput") for d in ("0", "1")]
    assert study["best_value"] == pytest.approx(max(values))
    lr = [yaml.safe_load((root / d / ".hydra" / "config.yaml").read_text())["agent"]
          ["learning_rate"] for d in ("0", "1")]
    assert lr[0] != lr[1] and all(1e-4 <= x <= 3e-3 for x in lr)


SEARCHES = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "search")
                  .glob("*.yaml"))


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_space_composes_with_its_study(search: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.common import CONF_DIR

    overrides = [f"search={search}"] + ([] if search == "main" else [f"experiment={search}"])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert "optuna" in sweeper._target_.lower() and sweeper.study_name == search
    assert sweeper.params and all(k.startswith("agent.") for k in sweeper.params)
    for key in sweeper.params:  # every searched key exists in the study's agent config
        assert OmegaConf.select(cfg, key) is not None, key
    assert cfg.objective in ("goodput", "sla_attainment")


@pytest.fixture()
def ray_cluster(tmp_path: Path):
    """A one-node Ray cluster started with ``ray start --head`` (stopped after the test)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "head.log"
    ray_cli = Path(sys.executable).parent / "ray"
    with open(log, "w") as fh:
        head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}",
                                 "--num-cpus=2", "--include-dashboard=false",
                                 "--object-store-memory=200000000"], stdout=fh, stderr=fh,
                                env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while "block forever" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # --block: stops the cluster's processes and exits
        head.wait(timeout=60)
        # `ray stop` would also forget the cluster; without it ray.init() would later try to
        # join this one (gone) instead of starting its own.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def test_two_jobs_on_an_existing_cluster(ray_cluster: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "c"
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # `ray start` turns token auth on
    res = subprocess.run([sys.executable, "-m", "experiments.train", "-m",
                          "hydra/launcher=ray_cluster",
                          f"hydra.launcher.ray.init.address={ray_cluster}", *QUICK, "seed=0,1",
                          f"hydra.sweep.dir={root}"], capture_output=True, text=True,
                         timeout=900, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "Connected to Ray cluster" in out and "Started a local Ray instance" not in out
    for job in (root / "0", root / "1"):
        assert (job / "meta.json").is_file() and (job / "results.csv").is_file()
