"""PyTorch-eager latency, the SM-share bandwidth limit, the gpulet reader and its split, and the
fit of co-located profile rows (the measured data itself is never needed: tests write rows in
its format; a test over the real data runs where a mirror of it is present)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.sim.device.tables import CoRunnerSlowdowns
from hwmodels import calibration as cal
from hwmodels.interference import InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import full_gpu, mps_layout
from hwmodels.specs import load_device
from hwmodels.workloads import build_profile

GPULET = Path(os.environ.get("LDSGYM_GPULET", "/work/.mirror/0909wlgur+Gpulet/repo"))
FITTED = "a100-40gb-gpulet-calibrated"


def _eager() -> tuple[object, LatencyModel]:
    d = load_device(FITTED)
    return d, cal.stack_latency(d, "tf32", "eager")


def test_eager_batch1_is_host_bound_and_flat_in_the_share() -> None:
    """T156/T158: batch-1 eager latency barely depends on the SM share; it is about the
    operator count times the host's dispatch cost."""
    d, lat = _eager()
    parts = {s: cal.share_partitions(d, s, False)[0] for s in (0.2, 0.5, 1.0)}
    for name in ("resnet50", "densenet121", "resnet152"):
        t = {s: float(lat.latency_s(name, 1, p)) for s, p in parts.items()}
        assert t[0.2] / t[1.0] < 1.1, name
        ops = build_profile(name).arrays().eager_ops.sum()
        assert t[1.0] >= ops * lat.host_us * 1e-6
    # T156/T158 within 15%
    assert float(lat.latency_s("resnet50", 1, parts[1.0])) * 1e3 == pytest.approx(4.762, rel=0.15)
    assert float(lat.latency_s("densenet121", 1, parts[1.0])) * 1e3 == pytest.approx(11.97,
                                                                                    rel=0.15)


def test_eager_large_batches_scale_with_the_share() -> None:
    """T156/T157: batch 64 takes about 3x longer on 20% of the SMs; MobileNetV2's depthwise
    and unfused layers too (they cannot pull the full bandwidth from a fifth of the SMs)."""
    d, lat = _eager()
    full, small = (cal.share_partitions(d, s, False)[0] for s in (1.0, 0.2))
    for name, measured in [("resnet50", 79.19 / 25.69), ("mobilenet_v2", 47.23 / 16.10)]:
        ratio = float(lat.latency_s(name, 64, small) / lat.latency_s(name, 64, full))
        assert ratio == pytest.approx(measured, rel=0.2), name
    no_cap = LatencyModel(lat.device.replace(bw_sm_fraction=0.0), "tf32", eager=True,
                          host_us=lat.host_us)
    assert float(no_cap.latency_s("mobilenet_v2", 64, small)) < 0.8 * float(
        lat.latency_s("mobilenet_v2", 64, small))


def test_pipeline_is_never_faster_than_either_side() -> None:
    d, lat = _eager()
    part = full_gpu(d)
    br = lat.breakdown("inception_v3", np.array([1, 8, 64]), part)
    assert np.all(br.total_s >= br.host_s)
    assert np.all(br.total_s >= br.compute_s + br.memory_s)
    assert np.allclose(br.total_s, br.compute_s + br.memory_s + br.overhead_s)
    engine = LatencyModel(d, "tf32")
    assert float(engine.breakdown("resnet50", 1, part).host_s) == 0.0


def test_bandwidth_limit_leaves_mig_and_full_gpu_alone() -> None:
    """bw_sm_fraction caps MPS shares with fewer SMs than needed to saturate DRAM; MIG slices
    keep their memory slices' bandwidth (so MIG latencies do not change)."""
    from hwmodels.partitions import mig_layout

    d = load_device("a100-80gb")
    assert d.bw_sm_fraction > 0
    off = d.replace(bw_sm_fraction=0.0)
    for layout in (["1g.10gb"], ["1g.20gb"], ["2g.20gb"], ["3g.40gb"], ["7g.80gb"]):
        p = mig_layout(d, layout)[0]
        assert float(LatencyModel(d).latency_s("mobilenet_v2", 64, p)) == float(
            LatencyModel(off).latency_s("mobilenet_v2", 64, p))
    p = mps_layout(d, [20, 80])[0]
    assert float(LatencyModel(d).latency_s("mobilenet_v2", 64, p)) > float(
        LatencyModel(off).latency_s("mobilenet_v2", 64, p))


def test_sim_slowdowns_equal_the_eager_interference_model() -> None:
    """The simulator's copy of the MPS formula (host and SM-overlap terms included) gives the
    interference model's floats for eager demands too."""
    d, lat = _eager()
    model = InterferenceModel(d, "tf32", latency=lat)
    profiles = [build_profile(n) for n in ("resnet50", "vgg16", "mobilenet_v2")]
    parts = mps_layout(d, [40, 30, 30])
    fast = CoRunnerSlowdowns(model, profiles, {0: parts})
    rng = np.random.default_rng(1)
    for _ in range(100):
        jobs = tuple(None if rng.random() < 0.3 else (int(rng.integers(3)),
                                                       int(rng.choice([1, 4, 16, 64])))
                     for _ in parts)
        expected = model.slowdowns(parts, [None if j is None else (profiles[j[0]], j[1])
                                           for j in jobs])
        assert fast(0, jobs) == expected.tolist()


def _write_gpulet(root: Path) -> None:
    (root / "data").mkdir(parents=True)
    solo = []
    for m, base in [("resnet50", 4.8), ("vgg16", 1.6), ("mobilenet", 4.6), ("vgg19", 1.8)]:
        for b in (1, 8):
            for s in (20, 50, 100):
                lat = base * (1 + (b - 1) * 0.1) * (100 / s) ** 0.3 / 1e3
                solo.append(f"{m},{b},{s},throughput,{b / lat:.3f},latency,{lat:.7f},1")
    (root / "data" / "inference.csv").write_text("\n".join(solo) + "\n")
    pairs = []
    for m in ("resnet50", "vgg19"):
        for s in (20, 50):
            for co in ("resnet50", "mobilenet"):
                lat = 0.007 if m == "resnet50" else 0.004
                pairs.append(f"{m},1,{s},{co},8,throughput,{1 / lat:.3f},latency,{lat},1")
    (root / "data" / "interference.csv").write_text("\n".join(pairs) + "\n")


def test_cli_fits_a_gpulet_checkout(tmp_path: Path) -> None:
    """``profile=gpulet:DIR`` passes the start-up checks (a directory, not a file) and fits."""
    _write_gpulet(tmp_path / "gpulet")
    out = subprocess.run([sys.executable, "-m", "experiments.calibrate", "mode=fit",
                          f"profile=gpulet:{tmp_path / 'gpulet'}", "hw=a100-40gb",
                          "fit.profile_spec=a100-40gb-test", f"fit.out_dir={tmp_path / 'fit'}",
                          f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fit" / "a100-40gb-test-calibrated.yaml").is_file()
    assert "held out, co-located" in (tmp_path / "run" / "summary.md").read_text()


def test_gpulet_reader_and_fixed_split(tmp_path: Path) -> None:
    _write_gpulet(tmp_path)
    rows = cal.read_gpulet(tmp_path)
    assert len(rows) == 24 + 8
    assert {r.model for r in rows} == {"resnet50", "vgg16", "mobilenet_v2", "vgg19"}
    assert all(r.stack == "eager" and r.precision == "tf32" for r in rows)
    r0 = rows[0]
    assert (r0.model, r0.batch, r0.share) == ("resnet50", 1, 0.2)
    co = [r for r in rows if r.colocated]
    assert {r.corunner_model for r in co} == {"resnet50", "mobilenet_v2"}
    assert co[0].latency_ms == pytest.approx(7.0)
    train = [cal.gpulet_is_training(r) for r in rows]
    for r, t in zip(rows, train, strict=True):
        if r.colocated:
            assert t == (r.model == "resnet50")
        else:
            assert t == (r.model in ("resnet50", "vgg16", "mobilenet_v2"))
    with pytest.raises(ValueError, match=r"no data/inference\.csv"):
        cal.read_gpulet(tmp_path / "nowhere")
    f = cal.measured_slowdowns(rows)
    assert np.isnan(f[0]) and np.isfinite(f[len(rows) - 1])


def test_profile_stack_and_precision_columns(tmp_path: Path) -> None:
    head = ",".join(cal.PROFILE_COLUMNS + cal.PROFILE_OPTIONAL_COLUMNS)
    path = tmp_path / "p.csv"
    path.write_text(f"{head}\nresnet50,1,0.5,5.0,,,eager,tf32\nresnet50,1,1,2.0,,,,\n"
                    "resnet50,1,0.5,7.0,vgg16,8,eager,tf32\n")
    rows = cal.read_profile(path)
    assert (rows[0].stack, rows[0].precision) == ("eager", "tf32")
    assert (rows[1].stack, rows[1].precision) == ("", "")
    again = tmp_path / "q.csv"
    cal.write_profile(again, rows)
    assert [(r.stack, r.precision) for r in cal.read_profile(again)] == [
        (r.stack, r.precision) for r in rows]
    d = load_device(FITTED)
    pred = cal.predict_profile(rows, d, "fp16")
    assert pred[0] != pytest.approx(pred[1])  # eager tf32 vs the fp16 engine
    with pytest.raises(ValueError, match="unknown stack"):
        bad = tmp_path / "b.csv"
        bad.write_text(f"{head}\nresnet50,1,0.5,5.0,,,nope,tf32\n")
        cal.read_profile(bad)
    stats = cal.colocation_stats(rows, pred, cal.predicted_slowdowns(rows, d, "fp16"),
                                 np.array([True, True, False]))
    assert set(stats) == {"held out"} and stats["held out"].n == 1


def test_fit_recovers_synthetic_colocation() -> None:
    """Rows predicted by a known device are fitted back: solo parameters first, then the
    interference parameters on the slowdowns."""
    truth = load_device(FITTED)
    rows = []
    for m in ("resnet50", "vgg16", "mobilenet_v2"):
        for b in (1, 8, 64):
            for s in (0.2, 0.5, 1.0):
                rows.append(cal.ProfileRow(m, b, s, 1.0, stack="eager", precision="tf32"))
    for b in (1, 8, 64):
        for s in (0.2, 0.5, 0.8):
            for co, cb in (("vgg16", 64), ("mobilenet_v2", 1)):
                rows.append(cal.ProfileRow("resnet50", b, s, 1.0, co, cb, stack="eager",
                                           precision="tf32"))
    lat = cal.predict_profile(rows, truth, "tf32")
    rows = [cal.ProfileRow(r.model, r.batch, r.share, float(v), r.corunner_model,
                           r.corunner_batch, stack=r.stack, precision=r.precision)
            for r, v in zip(rows, lat, strict=True)]
    fit = cal.fit_profile(rows, load_device("a100-40gb"), np.ones(len(rows), bool), "tf32",
                          prior_weight=0.0)
    err = np.abs(fit.predicted_ms - lat) / lat
    assert np.median(err) < 0.03
    assert fit.params["interference.mps_host"] == pytest.approx(
        truth.interference["mps_host"], rel=0.2)


@pytest.mark.skipif(not GPULET.exists(), reason="no mirror of github.com/0909wlgur/Gpulet")
def test_gpulet_held_out_figures() -> None:
    """The committed fit on the real data reproduces the figures of calibration/FIDELITY.md."""
    rows = cal.read_gpulet(GPULET)
    assert len(rows) == 420 + 3675
    d = load_device(FITTED)
    train = np.array([cal.gpulet_is_training(r) for r in rows])
    assert train.sum() == 168 + 1225
    pred = cal.predict_profile(rows, d, "tf32")
    stats = cal.colocation_stats(rows, pred, cal.predicted_slowdowns(rows, d, "tf32"), train)
    held = stats["held out"]
    assert held.n == 2450
    assert held.latency_median < 0.08 and held.latency_p90 < 0.25
    assert held.slowdown_median < 0.07 and held.spearman > 0.8
    meas = np.array([r.latency_ms for r in rows])
    err = np.abs(pred - meas) / meas
    solo = np.array([not r.colocated for r in rows])
    per_model = [np.median(err[solo & np.array([r.model == m for r in rows])])
                 for m in {r.model for r in rows}]
    assert np.median(per_model) < 0.15
