"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# One OpenMP thread in every process the tests start (apps, vec-env workers, probes), as the
# apps' ``torch_threads: 1`` gives once they apply it: their start-up checks load saved models
# before that (``experiments.evaluate``/``export``: SB3's orthogonal init, two threads spinning
# on a busy 2-core machine, ~4 s of an evaluate run's 10 s). An explicit setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_in_process(module: str, args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``python -m module args`` in this process (the start-up checks run before Hydra, so a
    rejected run ends there): exit status and stderr."""
    import importlib

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [module, *args])
    app = importlib.import_module(module)
    with pytest.raises(SystemExit) as info:
        app.main()
    return int(info.value.code or 0), capsys.readouterr().err


def quick_train_refused(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> str:
    """``experiments.train experiment=quick *args`` (in this process) must stop with status 2
    and one line, no traceback, no model written; returns that line."""
    status, err = run_in_process("experiments.train", [
        "experiment=quick", *args, f"hydra.run.dir={tmp_path}/x"], tmp_path, capsys, monkeypatch)
    assert status == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x" / "model.zip").exists()
    return lines[0]


def run_app(*args: str, cwd: Path | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` in the repo (or ``cwd``) and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


# Property-based tests: a few examples by default (CI's budget); ``--hypothesis-profile=fuzz``
# for a long local run.
settings.register_profile("ci", max_examples=3, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _sb3_logdir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SB3 makes an empty ``SB3-<date>`` folder in the system's temp dir for every model that
    learns without a logger; the tests' models make theirs under pytest's own temp dir."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Tests that train or run a policy in this process use one torch thread, as the apps do
    (``torch_threads: 1``): the policies are small MLPs, and two threads on a busy 2-core
    machine spin against each other (a 1,000-observation parity check: 24 s -> 10 s)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


#: Checkpoint selection of the tiny quick run: a check every 512 steps on validation episodes
#: of 300 queries (azure-conv and the env's own trace, load 1.0).
QUICK_SELECT = "{every: 512, traces: [azure-conv, null], loads: [1.0], episode_queries: 300}"


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one tiny end-to-end training of the default suite (``experiment=quick``, 2,048
    steps, with checkpoint selection ``QUICK_SELECT``): train, select, export, evaluate,
    report. Shared by tests/test_train_e2e.py (the run folder, TensorBoard, the evaluate and
    export apps on it) and tests/test_select.py (the exported model is the best check). The
    plain path (no ``select``) runs end to end in tests/test_reliability_apps.py
    (interrupted, then resumed) and tests/test_online.py."""
    out = tmp_path_factory.mktemp("run") / "r"
    res = run_app("experiments.train", "experiment=quick", "progress=false",
                  f"select={QUICK_SELECT}", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out
