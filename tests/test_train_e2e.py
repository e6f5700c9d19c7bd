"""The main job end to end (tiny), its run folder, the evaluate/export apps, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_app


@pytest.fixture(scope="module")
def run(quick_run: Path) -> Path:
    """The suite's tiny training run (tests/conftest.py; with checkpoint selection)."""
    return quick_run


def test_run_folder_contents(run: Path) -> None:
    for name in (".hydra/config.yaml", "model.zip", "policy.onnx", "report.md", "results.csv",
                 "meta.json", "plots/metrics.png", "plots/latency_cdf.png"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    for policy in ("learned", "random", "round_robin", "least_loaded", "shortest_finish"):
        assert f"| {policy} |" in report
    rows = (run / "results.csv").read_text().splitlines()
    from agents.baselines import baselines_for

    n_policies = 1 + len(baselines_for("ldsgym/PartitionPlacement-v0"))  # learned + baselines
    assert len(rows) == 1 + n_policies * 2  # header + policies x 2 held-out seeds
    assert "ONNX parity: 100.00%" in report


def test_tensorboard_has_sched_scalars(run: Path) -> None:
    files = list((run / "tb").glob("events.out.tfevents.*"))
    assert files
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("sched/sla_attainment", "sched/goodput", "sched/p99_latency_ms",
                "sched/dropped", "hw/utilization"):
        assert tag in tags, tags
    values = [e.value for e in acc.Scalars("sched/sla_attainment")]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_evaluate_saved_run_keeps_original_report(run: Path) -> None:
    before = (run / "report.md").read_text()
    res = run_app("experiments.evaluate", f"run_dir={run}", "progress=false",
                  "policies=[learned,least_loaded]", "eval.seeds=[10005]")
    assert res.returncode == 0, res.stderr[-3000:]
    evals = sorted(run.glob("eval-*/report.md"))
    assert evals and "| learned |" in evals[-1].read_text()
    assert (run / "report.md").read_text() == before


def test_export_app_reexports_with_parity(run: Path) -> None:
    res = run_app("experiments.export", f"run_dir={run}", "export.parity_samples=1000")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "agree on 100.00% of 1000" in res.stdout


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluate app without a trained run (baselines only) on an env given a load range:
    one run shared by the two tests below."""
    out = tmp_path_factory.mktemp("baselines") / "b"
    res = run_app("experiments.evaluate", "policies=[random,shortest_finish]", "progress=false",
                  "eval.seeds=[1]", "env.kwargs.episode_queries=100",
                  "env.kwargs.load=[0.8,1.2]", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_baselines_alone(baselines_run: Path) -> None:
    report = (baselines_run / "report.md").read_text()
    assert "| shortest_finish |" in report and "| random |" in report


def test_an_env_trained_across_a_load_range_is_evaluated_at_both_ends(baselines_run: Path) -> None:
    loads = {line.split(",")[0] for line in
             (baselines_run / "results.csv").read_text().splitlines()[1:]}
    assert loads == {"0.8", "1.2"}


#: Bad input rejected by the apps' start-up checks (``experiments.common.precheck``, before
#: Hydra runs the app), in this process; one case per app also in a fresh process below, as
#: a user meets it (tests/test_reliability_apps.py has the train app's).
BAD_INPUT = [
    (("experiments.train", "no_such_key=1"), "no_such_key"),
    (("experiments.train", "hw=no-such-gpu"), "hw"),
    (("experiments.train", "env.kwargs.layout=[4g,4g]"), "impossible"),
    (("experiments.train", "workload.models=[{name: resnet51, sla_ms: 5}]"), "resnet51"),
    (("experiments.train", "eval.baselines=[nope]"), "nope"),
    (("experiments.evaluate", "run_dir=/no/such/run"), "run_dir"),
    (("experiments.evaluate", "policies=[learned]"), "learned"),
    (("experiments.export",), "run_dir"),
    (("experiments.train", "-m", "seed=0,1", "nokey=3"), "nokey"),
]


def _one_line_and_nothing_written(status: int, err: str, needle: str, out: Path) -> None:
    assert status != 0
    err = err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert not (out / "model.zip").exists()


@pytest.mark.parametrize("args, needle", BAD_INPUT)
def test_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], needle: str,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import run_in_process

    status, err = run_in_process(args[0], [*args[1:], f"hydra.run.dir={tmp_path}/x"],
                                  tmp_path, capsys, monkeypatch)
    _one_line_and_nothing_written(status, err, needle, tmp_path / "x")


@pytest.mark.parametrize("args, needle", [
    (("experiments.evaluate", "run_dir=/no/such/run"), "run_dir"),
    (("experiments.export",), "run_dir"),
])
def test_bad_input_is_one_line_in_a_fresh_process(tmp_path: Path, args: tuple[str, ...],
                                                  needle: str) -> None:
    res = run_app(*args, f"hydra.run.dir={tmp_path}/x", timeout=120)
    _one_line_and_nothing_written(res.returncode, res.stderr, needle, tmp_path / "x")


def test_bad_trace_file_is_one_line_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import run_in_process

    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,model\n0.1,resnet50\nabc,bert-base\n")
    status, err = run_in_process(
        "experiments.train", ["trace=poisson", "trace._target_=traces.CsvReplay",
                              f"+trace.path={bad}", f"hydra.run.dir={tmp_path}/x"],
        tmp_path, capsys, monkeypatch)
    assert status == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"{bad}:3" in lines[0] and "time_s" in lines[0]
    assert not (tmp_path / "x" / "model.zip").exists()
