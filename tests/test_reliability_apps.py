"""Apps under interruption and bad input: checkpoints and resume, one-line errors, nothing
written on rejection, foreign files reported and left untouched."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO, run_app, run_in_process

QUICK = ("experiment=quick", "progress=false", "export.parity_samples=100",
         "env.kwargs.episode_queries=100", "eval.seeds=[10000]", "eval.baselines=[random]")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def _run_with_model(dest: Path, data: bytes) -> Path:
    """A run folder (the saved overrides of a quick run) whose model.zip is ``data``."""
    (dest / ".hydra").mkdir(parents=True)
    (dest / ".hydra" / "overrides.yaml").write_text("- experiment=quick\n")
    (dest / "model.zip").write_bytes(data)
    return dest


def _zip_bytes(tmp: Path) -> bytes:
    import zipfile

    path = tmp / "any.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data", "x" * 5000)
        zf.writestr("policy.pth", os.urandom(3000))
    return path.read_bytes()


BAD_TRAIN = [
    ("n_envs=0", "n_envs"),
    ("n_envs=-1", "n_envs"),
    ("seed=abc", "seed"),
    ("n_envs=1.5", "n_envs"),
    ("total_timesteps=0", "total_timesteps"),
    ("export.parity_samples=0", "export.parity_samples"),
    ("env.kwargs.max_queue_delay_ms=-1", "max_queue_delay_ms: a duration must be >= 0 ms, got -1"),
    ("eval.seeds=[1,10000]", "eval.seeds"),
    ("eval.loads=[0.5,0]", "eval.loads"),
    ("eval.traces=[no-such-trace]", "eval.traces"),
    ("eval.traces=[]", "eval.traces"),
    ("checkpoint.every_steps=-5", "checkpoint.every_steps"),
    ("vec_env=threads", "vec_env"),
    ("torch_threads=0", "torch_threads"),
    ("resume=/no/such/run", "resume"),
]


@pytest.mark.parametrize("arg, needle", BAD_TRAIN)
def test_bad_train_input_writes_nothing(tmp_path: Path, arg: str, needle: str,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    status, err = run_in_process("experiments.train", [arg], tmp_path, capsys, monkeypatch)
    assert status == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert list(tmp_path.iterdir()) == []  # no runs/<date>/<time>/ left behind


def test_bad_input_in_a_fresh_process_writes_nothing(tmp_path: Path) -> None:
    """The same as a user sees it: a new process, exit status 2, one line, no folder."""
    res = subprocess.run([sys.executable, "-m", "experiments.train", "n_envs=0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=_env())
    assert res.returncode == 2
    assert res.stderr.strip() == "error: n_envs: must be >= 1, got 0"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (("targets={bin}",), "targets: {bin}: not UTF-8"),
    (("mode=fit", "profile={bin}", "hw=cpu"), "profile: {bin}: not UTF-8"),
])
def test_binary_calibration_input_writes_nothing(tmp_path: Path, args: tuple[str, ...],
                                                 needle: str, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    status, err = run_in_process("experiments.calibrate",
                                  [a.format(bin=binary) for a in args], work, capsys, monkeypatch)
    assert status == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle.format(bin=binary) in lines[0], err
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("app", ["experiments.evaluate", "experiments.export"])
@pytest.mark.parametrize("kind", ["truncated", "foreign"])
def test_corrupt_model_is_one_line_and_untouched(tmp_path: Path, app: str, kind: str,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _zip_bytes(tmp_path)
    # A zip cut short, or a whole zip that is not an SB3 model.
    data = whole[: len(whole) // 3] if kind == "truncated" else whole
    run = _run_with_model(tmp_path / kind, data)
    before = _snapshot(run)
    status, err = run_in_process(app, [f"run_dir={run}", "progress=false"], tmp_path,
                                  capsys, monkeypatch)
    assert status == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(run / "model.zip") in lines[0] and "not a model saved by" in lines[0]
    assert _snapshot(run) == before  # no eval-*/export-* folder, the file untouched


def test_interrupt_then_resume_finishes_with_one_tensorboard_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    total = 4096  # the first checkpoint (1,024) leaves 3,072 steps to stop in, then resume
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *QUICK, f"total_timesteps={total}",
         "checkpoint.every_steps=1024", f"hydra.run.dir={out}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before the first checkpoint"
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert f"resume={out}" in lines[0] and "checkpoint at step" in lines[0]
    assert not (out / "model.zip").exists()
    assert (out / "checkpoint" / "model.zip").is_file()
    import json

    stopped = json.loads(state.read_text())["num_timesteps"]
    assert 0 < stopped < total

    res = run_app("experiments.train", f"resume={out}", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("model.zip", "policy.onnx", "report.md", "results.csv", "meta.json"):
        assert (out / name).is_file(), name
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("time/fps")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[-1] >= total
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert set(gaps) == {512}  # one rollout = n_steps 256 x 2 envs, the same across the resume
    assert stopped % 512 == 0  # the start of the rollout in progress
    assert any(s <= stopped for s in steps) and any(s > stopped for s in steps)


@pytest.mark.expensive
def test_resuming_a_finished_run_reports_again_and_keeps_the_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_app("experiments.train", *QUICK, "total_timesteps=512", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    model = (out / "model.zip").read_bytes()
    (out / "report.md").unlink()
    res = run_app("experiments.train", f"resume={out}", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "model.zip").read_bytes() == model
    assert (out / "report.md").is_file()
