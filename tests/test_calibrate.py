"""Calibration against published targets: mapping, error bounds of the committed fits, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.calibrate import _compress_ids, load_devices, spec_yaml
from hwmodels import calibration as cal
from hwmodels.specs import DeviceSpec, load_device

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO / "calibration" / "published_targets.csv"
PROFILE = REPO / "calibration" / "cpu_profile.csv"

# Bounds reached by the committed fits (calibration/FIDELITY.md), with margin: a regression of
# the models or of the fitted YAMLs fails here.
PERF_MEDIAN, PERF_P90 = 0.08, 0.30
CATEGORY_MEDIAN = {"2-MIG": 0.06, "3-throughput": 0.11, "3-latency": 0.25, "3-batch": 0.09,
                   "3-model": 0.02, "1-spec": 0.01, "4-interf": 0.02, "5-link": 0.01,
                   "6-storage": 0.01, "7-power": 0.20}


@pytest.fixture(scope="module")
def targets() -> list[cal.Target]:
    return cal.read_targets(TARGETS)


@pytest.fixture(scope="module")
def calibrated() -> dict[str, DeviceSpec]:
    return load_devices("calibrated")


@pytest.fixture(scope="module")
def results(targets: list[cal.Target], calibrated: dict[str, DeviceSpec]) -> list[cal.Result]:
    return cal.validate(targets, calibrated)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_targets_rejects_bad_files(tmp_path: Path) -> None:
    header = ",".join(cal.TARGET_COLUMNS)
    row = "T1,3-throughput,q,T4,resnet50,1,5,x/s,src,,high"
    assert len(cal.read_targets(_write(tmp_path / "ok.csv", f"{header}\n{row}\n"))) == 1
    with pytest.raises(ValueError, match=r"bad\.csv line 3: expected 11 fields"):
        cal.read_targets(_write(tmp_path / "bad.csv", f"{header}\n{row}\nT2,oops\n"))
    with pytest.raises(ValueError, match="missing column"):
        cal.read_targets(_write(tmp_path / "cols.csv", "id,value\nT1,3\n"))
    with pytest.raises(ValueError, match="duplicate id T1"):
        cal.read_targets(_write(tmp_path / "dup.csv", f"{header}\n{row}\n{row}\n"))
    with pytest.raises(ValueError, match="empty file"):
        cal.read_targets(_write(tmp_path / "empty.csv", ""))


def test_parse_published() -> None:
    p = cal.parse_published
    assert p("469.1 / 2.128") == [cal.Bound(469.1, 469.1), cal.Bound(2.128, 2.128)]
    assert p("4-5") == [cal.Bound(4, 5)] and p("<0.1") == [cal.Bound(0, 0.1)]
    assert p("~2") == [cal.Bound(2, 2)] and p("-0.9") == [cal.Bound(-0.9, -0.9)]
    assert p("5-10 (throughput +25%)") == [cal.Bound(5, 10)]
    assert p("not possible (restart needed)") is None
    assert cal.Bound(4, 5).error(4.5) == 0 and cal.Bound(4, 5).error(6) == pytest.approx(0.2)


def test_target_mapping(targets: list[cal.Target], calibrated: dict[str, DeviceSpec]) -> None:
    plans = {t.id: cal.plan_target(t, calibrated) for t in targets}
    t018, t030, t032, t069 = plans["T018"], plans["T030"], plans["T032"], plans["T069"]
    assert isinstance(t018, cal.Plan) and t018.precision == "int8" and t018.kind == "offline"
    assert "seq_len=172" in t018.extra["work"].profile.description
    assert isinstance(t030, cal.Plan) and t030.precision == "bf16"  # OpenVINO on Cooper Lake
    assert "seq_len=384" in t030.extra["work"].profile.description
    assert isinstance(t032, cal.Plan) and t032.extra["work"].per_query == cal.MLPERF_DLRM_PAIRS
    assert isinstance(t069, cal.Plan) and (t069.stack, t069.precision, t069.batch) == (
        "triton", "fp16", 1)
    t055 = plans["T055"]
    assert isinstance(t055, cal.Plan) and t055.kind == "aggregate"
    assert t055.extra["count"] == 7 and t055.layout == ("1g.10gb",)
    assert isinstance(plans["T057"], str) and "not modelled" in plans["T057"]
    assert cal.device_name("V100-16GB") == "v100"
    assert cal.device_name("A100-SXM4-80GB (per GPU of 8)") == "a100-80gb"
    assert cal.device_name("TPU v4") is None


def test_mlperf_dlrm_profile() -> None:
    prof = cal.mlperf_dlrm_profile()
    assert prof.flops == pytest.approx(4.9e6, rel=0.03)  # per user-item pair
    assert sum(lay.kind == "embedding" for lay in prof.layers) == 26


def test_committed_fit_meets_its_bounds(results: list[cal.Result]) -> None:
    perf = [r.rel_error for r in results if cal.is_performance(r)]
    assert len(perf) >= 60
    assert np.median(perf) <= PERF_MEDIAN
    assert np.percentile(perf, 90) <= PERF_P90
    summary = {s.group: s for s in cal.summarize(results)}
    for cat, bound in CATEGORY_MEDIAN.items():
        assert summary[cat].median <= bound, (cat, summary[cat].median)


def test_every_skipped_row_says_why(results: list[cal.Result]) -> None:
    skipped = [r for r in results if r.skipped]
    assert skipped and all(len(r.reason) > 10 for r in skipped)
    # The energy rows (category 8-energy) set hwmodels.energy and are checked by its tests.
    assert len([r for r in skipped if not r.id.startswith(("T163", "T164"))]) <= 15
    predicted = {r.id for r in results if not r.skipped}
    assert {"T001", "T041", "T049", "T055", "T069", "T093", "T115", "T144"} <= predicted


def test_mig_targets(results: list[cal.Result]) -> None:
    """T049 (one 1g slice ~13%), T055 (7 slices ~90%), T115-T117 (neighbours cost < 3%)."""
    by_id = {r.id: r for r in results}
    for i in ("T049", "T055", "T056", "T058"):
        assert by_id[i].rel_error < 0.10, i
    # BERT on one 1g slice: the slice's 1/8 of the L2 holds less of BERT's activations than
    # the whole GPU's L2, and the model loses more to that than the published ratio (10.4%;
    # 4.4% before L2-resident activations, calibration/FIDELITY.md).
    assert by_id["T050"].rel_error < 0.12
    for i in ("T115", "T116", "T117"):
        assert -3.0 < float(by_id[i].predicted) < -0.5


def test_fit_reduces_error(targets: list[cal.Target]) -> None:
    devices = {n: load_device(n) for n in ("a100-80gb", "t4")}
    devices = {n: d.replace(eff_compute_max=0.3) for n, d in devices.items()}
    train = ["T001", "T002", "T014", "T018", "T028", "T041", "T043"]
    before = cal.validate([t for t in targets if t.id in train], devices)
    res = cal.fit_targets(targets, devices, train, max_nfev=40)
    after = cal.validate([t for t in targets if t.id in train], res.devices)
    assert np.median([r.rel_error for r in after]) < np.median([r.rel_error for r in before])
    assert set(res.fitted_devices) == {"a100-80gb", "t4"}
    assert "a100-80gb.eff_compute_max" in res.params and "global.launch_us" in res.params
    with pytest.raises(ValueError, match="no fittable"):
        cal.fit_targets(targets, devices, ["T144"])
    with pytest.raises(ValueError, match="unknown fit parameter"):
        cal.fit_targets(targets, devices, train, per_device=["bogus"])


def test_spec_yaml_round_trip() -> None:
    def rounded(x: object) -> object:
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        return float(f"{x:.6g}") if isinstance(x, float) else x

    for name in ("a100-80gb", "cpu", "t4"):
        spec = load_device(name)
        again = DeviceSpec.from_mapping(yaml.safe_load(spec_yaml(spec, "# header")))
        assert rounded(again.to_mapping()) == rounded(spec.to_mapping())
    assert _compress_ids(["T001", "T002", "T003", "T013", "T015"]) == "T001-T003, T013, T015"


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def test_read_profile_rejects_bad_rows(tmp_path: Path) -> None:
    head = ",".join(cal.PROFILE_COLUMNS)
    ok = _write(tmp_path / "p.csv", f"{head}\nbert-base@32,2,0.5,10.5,resnet50,1\n")
    rows = cal.read_profile(ok)
    assert rows[0].colocated and rows[0].corunner_batch == 1
    assert cal.parse_model("bert-base@32").description == "seq_len=32"
    with pytest.raises(ValueError, match="line 2"):
        cal.read_profile(_write(tmp_path / "b.csv", f"{head}\nnope,1,1,3,,\n"))
    with pytest.raises(ValueError, match="line 2: need batch"):
        cal.read_profile(_write(tmp_path / "c.csv", f"{head}\nresnet50,1,1.5,3,,\n"))
    with pytest.raises(ValueError, match="corunner_batch"):
        cal.read_profile(_write(tmp_path / "d.csv", f"{head}\nresnet50,1,1,3,resnet50,\n"))
    text = cal.write_profile(tmp_path / "w.csv", rows)
    assert cal.read_profile(tmp_path / "w.csv") == [
        cal.ProfileRow(r.model, r.batch, r.share, round(r.latency_ms, 4), r.corunner_model,
                       r.corunner_batch, 2) for r in rows]
    assert text.startswith(head)


@pytest.mark.skipif(not PROFILE.is_file(), reason="no committed CPU profile")
def test_cpu_profile_predictions() -> None:
    """The committed cpu spec predicts the committed measurements, held-out rows included."""
    rows = cal.read_profile(PROFILE)
    cpu = load_device("cpu")
    pred = cal.predict_profile(rows, cpu, "fp32")
    meas = np.array([r.latency_ms for r in rows])
    err = np.abs(pred - meas) / meas
    held = np.array([(i + 1) % 3 == 0 for i in range(len(rows))])  # fit.profile_holdout_every
    coloc = np.array([r.colocated for r in rows])
    assert coloc.sum() >= 6 and (held & coloc).any()
    assert np.median(err) <= PROFILE_MEDIAN
    assert np.median(err[held]) <= PROFILE_HELD_MEDIAN
    assert np.median(err[coloc]) <= PROFILE_HELD_MEDIAN
    # Co-location slows the measured job in the model as in the data.
    solo = {(r.model, r.batch, r.share): p
            for r, p in zip(rows, pred, strict=True) if not r.colocated}
    for r, p in zip(rows, pred, strict=True):
        if r.colocated and (r.model, r.batch, r.share) in solo:
            assert p > solo[(r.model, r.batch, r.share)]


# Reached by the committed cpu spec on the committed profile: 9% overall, 12% held out.
PROFILE_MEDIAN, PROFILE_HELD_MEDIAN = 0.14, 0.18


def test_fit_profile_on_synthetic_rows() -> None:
    """Rows generated from a known spec are fitted back closely."""
    truth = load_device("cpu").replace(eff_compute_max=0.4, launch_us=20.0)
    rows = [cal.ProfileRow(m, b, s, 1.0) for m in ("resnet50", "bert-base@32")
            for b in (1, 4) for s in (1.0, 0.5)]
    lat = cal.predict_profile(rows, truth)
    rows = [cal.ProfileRow(r.model, r.batch, r.share, float(v))
            for r, v in zip(rows, lat, strict=True)]
    fit = cal.fit_profile(rows, load_device("cpu"), np.ones(len(rows), bool))
    err = np.abs(fit.predicted_ms - lat) / lat
    assert np.median(err) < 0.05


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.calibrate", *args,
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_validate_writes_outputs(tmp_path: Path) -> None:
    out = _run(tmp_path, "devices=calibrated", f"targets={TARGETS}")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    lines = (run / "validation.csv").read_text().splitlines()
    assert lines[0] == "id,predicted,published,rel_error,reason"
    assert len(lines) == 1 + len(cal.read_targets(TARGETS))
    assert (run / "validation.png").stat().st_size > 0
    assert "performance (all)" in (run / "summary.md").read_text()


@pytest.mark.parametrize("args, needle", [
    (["mode=bogus"], "mode: unknown 'bogus'"),
    (["targets=/nonexistent/t.csv"], "/nonexistent/t.csv: no such file"),
    (["mode=fit", "profile=calibration/cpu_profile.csv"], "hw="),
    (["mode=fit", "fit.per_device=[nope]"], "fit.per_device"),
    (["mode=profile", "profile_run.device=cpu", "profile_run.colocation=streams"],
     "profile_run.colocation"),
    (["mode=fit", "profile=gpulet:/nonexistent/gpulet", "hw=a100-40gb"],
     "/nonexistent/gpulet: no such file"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    out = _run(tmp_path, *args)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_malformed_targets(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", ",".join(cal.TARGET_COLUMNS) + "\nT1,oops\n")
    out = _run(tmp_path, f"targets={bad}")
    assert out.returncode == 2
    assert "bad.csv line 2" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.expensive
def test_held_out_devices_within_20_percent(targets: list[cal.Target]) -> None:
    """Fit without the A10, A100-PCIe and A30; their rows come out within 20% median."""
    devices = load_devices("conf")
    results = cal.validate(targets, devices)
    held = {"a10", "a100-pcie-80gb", "a30"}
    fittable = [r.id for r in results if r.kind in cal.FIT_KINDS]
    train = [i for i, r in zip(fittable, [r for r in results if r.kind in cal.FIT_KINDS],
                                strict=True) if r.device not in held]
    fit = cal.fit_targets(targets, devices, train)
    after = cal.validate(targets, fit.devices)
    errs = [r.rel_error for r in after if cal.is_performance(r) and r.device in held]
    assert len(errs) >= 8 and np.median(errs) <= 0.20


@pytest.mark.expensive
def test_cli_profile_then_fit(tmp_path: Path) -> None:
    """A tiny profile run on this machine (CPU), then a fit of the cpu spec to it."""
    out = _run(tmp_path, "mode=profile", "profile_run.device=cpu",
               "profile_run.models=[mobilenet_v2]", "profile_run.batches={mobilenet_v2:[1,2]}",
               "profile_run.pairs=[[mobilenet_v2,1,mobilenet_v2,1]]", "profile_run.passes=1",
               "profile_run.repeats=1", "profile_run.min_time_s=0")
    assert out.returncode == 0, out.stderr
    rows = cal.read_profile(tmp_path / "run" / "profile.csv")
    assert len(rows) == 5 and sum(r.colocated for r in rows) == 1  # a symmetric pair: once
    fit_dir = tmp_path / "fit"
    fit = subprocess.run([sys.executable, "-m", "experiments.calibrate", "mode=fit",
                          f"profile={tmp_path / 'run' / 'profile.csv'}", "hw=cpu",
                          "fit.out_dir=null", "fit.profile_holdout_every=0",
                          f"hydra.run.dir={fit_dir}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert fit.returncode == 0, fit.stderr
    spec = load_device(str(fit_dir / "hw" / "cpu-calibrated.yaml"))
    assert "fitted by experiments.calibrate" in spec.sources["eff_compute_max"]
    assert (fit_dir / "profile_validation.csv").is_file()
