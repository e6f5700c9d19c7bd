"""Device specs, the roofline latency model and the import discipline of hwmodels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwmodels.latency import LatencyModel
from hwmodels.partitions import full_gpu, mig_layout
from hwmodels.specs import CALIBRATED_HW_DIR, DEFAULT_HW_DIR, DeviceSpec, load_device

REPO = Path(__file__).resolve().parents[1]
CONF_NAMES = sorted(p.stem for p in DEFAULT_HW_DIR.glob("*.yaml"))
CALIBRATED = sorted(p.stem for p in CALIBRATED_HW_DIR.glob("*-calibrated.yaml"))
PUBLISHED_FIELDS = ("sm_count", "clock_ghz", "peak_tflops", "mem_bw_gbs", "mem_gb", "l2_mb",
                    "tdp_w", "idle_w", "pcie_gbs", "nvlink_gbs", "mig")
REQUIRED = {"v100", "a100-40gb", "a100-80gb", "a100-pcie-80gb", "a10", "t4", "l4", "h100-sxm",
            "h100-pcie", "h200", "a30", "cpu"}


def test_required_devices_exist() -> None:
    assert REQUIRED <= set(CONF_NAMES)


@pytest.mark.parametrize("name", CONF_NAMES + CALIBRATED)
def test_every_spec_loads_and_cites_every_published_number(name: str) -> None:
    spec = load_device(name)
    missing = [f for f in PUBLISHED_FIELDS if f not in spec.sources]
    assert not missing, f"{name}: no source for {missing}"
    assert spec.peak("fp32") > 0 and spec.mem_bw_gbs > 0
    if spec.kind == "gpu":
        assert spec.peak("fp16") > spec.peak("fp32")  # tensor cores
        assert spec.tdp_w > spec.idle_w > 0


@pytest.mark.parametrize("name", CALIBRATED)
def test_calibrated_specs_name_their_fit(name: str) -> None:
    spec = load_device(name)
    for f in ("eff_compute_max", "eff_memory", "launch_us", "batch_overhead_us"):
        if spec.kind == "gpu" or f == "eff_compute_max":
            assert "experiments.calibrate mode=fit" in spec.sources.get(f, ""), (name, f)


def test_conf_specs_carry_the_fitted_parameters() -> None:
    """conf/hw/<name>.yaml were updated in place from calibration/<name>-calibrated.yaml."""
    for cal in CALIBRATED:
        base = cal.removesuffix("-calibrated")
        if base not in CONF_NAMES:  # a profile fit under its own name (a100-40gb-gpulet)
            continue
        a, b = load_device(base), load_device(cal)
        assert a.eff_compute_max == pytest.approx(b.eff_compute_max), base
        assert dict(a.stacks) == dict(b.stacks), base


def test_published_spec_numbers() -> None:
    a100 = load_device("a100-80gb")
    assert a100.peak("fp16") == 312e12 and a100.peak("int8") == 624e12  # T152
    assert a100.mem_bw_gbs == 2039  # T144
    assert load_device("h100-sxm").mem_bw_gbs == 3350  # T146
    assert load_device("h200").mem_bw_gbs == 4800  # T147
    assert load_device("t4").peak("fp16") == pytest.approx(65e12)  # T154
    assert load_device("l4").peak("fp16") == 121e12  # T155
    assert load_device("v100").peak("bf16") == load_device("v100").peak("fp16")  # fallback


def test_spec_validation_and_overrides(tmp_path: Path) -> None:
    base = load_device("a100-80gb").to_mapping()
    DeviceSpec.from_mapping(base)  # round trip
    with pytest.raises(ValueError, match="unknown key"):
        DeviceSpec.from_mapping({**base, "bogus": 1})
    with pytest.raises(ValueError, match="eff_compute_max"):
        DeviceSpec.from_mapping({**base, "eff_compute_max": 1.5})
    with pytest.raises(ValueError, match="kind"):
        DeviceSpec.from_mapping({**base, "kind": "tpu"})
    with pytest.raises(ValueError, match=r"stacks\.mlperf\.request_us must be a number"):
        DeviceSpec.from_mapping({**base, "stacks": {"mlperf": {"request_us": "fast"}}})
    with pytest.raises(ValueError, match="unknown device"):
        load_device("no-such-gpu")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**base, "eff_compute_max": 0.5}))
    assert load_device(str(path)).eff_compute_max == 0.5
    spec = load_device("a100-80gb").replace(eff_precision={"int8": 0.5})
    assert spec.eff_compute("int8") == pytest.approx(0.5 * spec.eff_compute_max)
    assert spec.eff_compute("fp16") == spec.eff_compute_max


def test_resnet50_batch1_on_a100_is_plausible() -> None:
    d = load_device("a100-80gb")
    for prec in ("fp16", "int8"):
        t = float(LatencyModel(d, prec).latency_s("resnet50", 1, full_gpu(d)))
        assert 0.3e-3 <= t <= 2e-3, (prec, t)


@pytest.mark.parametrize("hw, precision", [("a100-80gb", "fp16"), ("l4", "int8")])
def test_latency_grows_with_batch_and_throughput_saturates(hw: str, precision: str) -> None:
    """Latency grows with the batch; throughput saturates. With activations in the L2 it may
    fall where they spill to DRAM, gradually (no cliff: < 2% per batch step); on the L4
    (48 MB of L2, 300 GB/s GDDR6) it peaks at a middle batch, on the A100 (HBM) it stays
    within 2% of its best."""
    d = load_device(hw)
    for l2 in (0.0, d.l2_act_fraction):
        m = LatencyModel(d.replace(l2_act_fraction=l2), precision)
        for prof in ("resnet50", "bert-base", "mobilenet_v2", "dlrm-rm2", "gpt2-decode"):
            t = m.table_s(prof, full_gpu(d), 128)
            assert np.all(np.diff(t) > 0), prof
            tput = np.arange(1, 129) / t
            if l2 == 0:
                assert np.all(np.diff(tput) > -1e-9), prof
            assert np.all(tput[1:] >= 0.98 * tput[:-1]), (prof, l2)
            if hw == "a100-80gb":
                assert np.all(tput >= 0.98 * np.maximum.accumulate(tput)), (prof, l2)


def test_breakdown_adds_up() -> None:
    d = load_device("t4")
    br = LatencyModel(d, "int8").breakdown("resnet50", [1, 8, 64], full_gpu(d))
    np.testing.assert_allclose(br.total_s, br.compute_s + br.memory_s + br.overhead_s)
    assert np.all(br.flops > 0) and np.all(np.diff(br.bytes) > 0)


def test_l2_resident_activations() -> None:
    """Activations that fit in the usable L2 move no DRAM bytes; where they do not fit (large
    batches, a MIG slice's smaller share of the L2) they do; eager PyTorch keeps them in DRAM."""
    from hwmodels.calibration import stack_latency
    from hwmodels.workloads import build_profile

    d = load_device("l4")
    assert d.l2_act_fraction == 0.75 and d.l2_mb == 48
    prof = build_profile("resnet50")
    weights = float(prof.arrays().streamed_params.sum())
    on = LatencyModel(d, "int8").breakdown(prof, [1, 256], full_gpu(d))
    off = LatencyModel(d.replace(l2_act_fraction=0.0), "int8").breakdown(prof, [1, 256],
                                                                          full_gpu(d))
    # Batch 1 fits: only inputs that the previous layer did not just write (the image, the
    # skip tensors of residual adds) come from DRAM. int8: 1 byte per element.
    outs = [0.0] + [lay.act_out for lay in prof.layers[:-1]]
    fresh = sum(max(0.0, lay.act_in - o) for lay, o in zip(prof.layers, outs, strict=True))
    assert on.bytes[0] == pytest.approx(weights + fresh)
    assert off.bytes[0] > 1.5 * on.bytes[0] and on.total_s[0] < off.total_s[0]
    assert on.bytes[1] > 0.5 * off.bytes[1]  # batch 256: most activation bytes spill
    # Rows gathered from embedding tables and a decode step's KV cache come from DRAM.
    for name, kind in (("dlrm-rm2", "embedding"), ("gpt2-decode", "attention")):
        p = build_profile(name)
        lm_on = LatencyModel(d, "fp16")
        lm_off = LatencyModel(d.replace(l2_act_fraction=0.0), "fp16")
        b_on = lm_on.breakdown(p, 1, full_gpu(d)).bytes
        b_off = lm_off.breakdown(p, 1, full_gpu(d)).bytes
        # Input elements beyond the previous layer's output (table rows, cached K and V).
        fresh = sum(max(0.0, lay.act_in - prev.act_out)
                    for prev, lay in zip(p.layers, p.layers[1:], strict=False)
                    if lay.kind == kind)
        weights_b = float(p.arrays().streamed_params.sum()) * 2  # fp16
        assert fresh > 0 and b_on >= weights_b + 2 * fresh, name
        assert b_on < b_off, name  # the layers' own outputs still stay in the L2
    a100 = load_device("a100-80gb")
    lm = LatencyModel(a100, "int8")
    full = lm.breakdown(prof, 8, full_gpu(a100)).bytes
    slice_ = lm.breakdown(prof, 8, mig_layout(a100, ["1g.10gb"])[0]).bytes
    assert slice_ > full  # 1/8 of the L2 holds fewer layers
    assert stack_latency(d, "fp16", "eager").device.l2_act_fraction == 0.0
    assert stack_latency(d, "fp16", "triton").device.l2_act_fraction == 0.75
    with pytest.raises(ValueError, match="l2_act_fraction"):
        d.replace(l2_act_fraction=1.5)


@pytest.mark.parametrize("model", ["resnet50", "bert-base"])
def test_mig_slice_ratios(model: str) -> None:
    """T049: one 1g slice ~13% of the GPU; T055/T056: 7 slices together ~90%."""
    from hwmodels.interference import InterferenceModel

    d = load_device("a100-80gb")
    lm = LatencyModel(d, "int8")
    full, _ = lm.best_throughput(model, full_gpu(d), 1024)
    one, _ = lm.best_throughput(model, mig_layout(d, ["1g.10gb"])[0], 1024)
    assert 0.12 <= one / full <= 0.145
    slices = mig_layout(d, ["1g.10gb"] * 7)
    slow = InterferenceModel(d, "int8").slowdowns(slices, [(model, 64)] * 7)
    assert 0.86 <= 7 * one / slow[0] / full <= 0.93


def test_hwmodels_imports_no_torch_or_gymnasium() -> None:
    # Kept next to the import-linter contracts (pyproject.toml), which forbid torch/gymnasium/
    # hydra anywhere in hwmodels but cannot say "scipy only inside functions" (calibration
    # imports scipy.optimize lazily) nor see modules loaded through third-party ones.
    code = (
        "import sys, hwmodels, hwmodels.specs, hwmodels.latency, hwmodels.partitions, "
        "hwmodels.workloads, hwmodels.interference, hwmodels.reconfig, hwmodels.power, "
        "hwmodels.links, hwmodels.storage, hwmodels.calibration\n"
        "bad = [m for m in ('torch', 'gymnasium', 'hydra', 'scipy') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("path", sorted(DEFAULT_HW_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_device_found_under_its_published_names(path: Path) -> None:
    """Calibration finds each conf/hw device by its name and every alias (with the suffixes
    targets carry), so no published row of a known device is skipped for its spelling."""
    from hwmodels.calibration import device_name

    spec = load_device(str(path))
    assert spec.aliases, f"{path.name}: list the device's published names under aliases"
    for name in (spec.name, *spec.aliases):
        assert device_name(name) == path.stem, name
        assert device_name(f"  {name.upper()} ") == path.stem, name
        assert device_name(f"{name} (per GPU of 8)") == path.stem, name
        assert device_name(f"NVIDIA {name}") == path.stem, name
        if name[-1].isalnum():   # MLPerf system names append the GPU count and stack
            assert device_name(f"{name}x8_TRT") == path.stem, name
        if spec.mig is not None:
            assert device_name(f"{name} MIG 1g.10gb") == path.stem, name


def test_hopper_published_names() -> None:
    from hwmodels.calibration import device_name

    for name in ("H100-SXM", "H100-SXM5", "H100-SXM5-80GB", "h100 sxm"):
        assert device_name(name) == "h100-sxm"
    for name in ("H100-PCIe", "H100-PCIE", "H100-PCIe-80GB"):
        assert device_name(name) == "h100-pcie"
    assert device_name("H200-SXM") == "h200"
    # MLPerf system names and the names nvidia-smi / torch.cuda report.
    assert device_name("H100-SXM-80GBx8_TRT") == "h100-sxm"
    assert device_name("H100-PCIe-80GBx1") == "h100-pcie"
    assert device_name("H200-SXM-141GBx1_TRT") == "h200"
    assert device_name("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert device_name("NVIDIA H100 PCIe") == "h100-pcie"
    assert device_name("NVIDIA H200") == "h200"
    assert device_name("NVIDIA H100 NVL") is None   # no conf/hw device
    assert device_name("TPU v5e") is None


def test_aliases_round_trip() -> None:
    spec = load_device("h100-sxm")
    again = DeviceSpec.from_mapping(spec.to_mapping())
    assert again.aliases == spec.aliases
    with pytest.raises(ValueError, match="aliases"):
        DeviceSpec.from_mapping({**spec.to_mapping(), "aliases": "H100"})
