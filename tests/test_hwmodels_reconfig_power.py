"""Reconfiguration cost and power."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels.partitions import full_gpu, mig_layout
from hwmodels.power import PowerModel
from hwmodels.reconfig import DEFAULTS, STEPS, ReconfigModel
from hwmodels.specs import load_device


@pytest.fixture(scope="module")
def rc() -> ReconfigModel:
    return ReconfigModel(load_device("a100-80gb"))


def test_no_change_costs_nothing(rc: ReconfigModel) -> None:
    lay = ["3g.40gb", "3g.40gb"]
    assert rc.mean(lay, lay, ["resnet50", "bert-base"]) == 0.0


def test_steps(rc: ReconfigModel) -> None:
    s = rc.steps(["full"], ["3g.40gb", "3g.40gb"], ["resnet50", "bert-large"], drain_s=0.2)
    assert set(s) == set(STEPS)
    assert s["mode"] == DEFAULTS["mig_mode_s"]  # T063: 4-5 s to enable MIG
    assert s["create"] == pytest.approx(2 * 3 * DEFAULTS["gi_create_slice_s"])
    assert s["drain"] == 0.2
    # Weights of ResNet-50 and BERT-large in FP16 over PCIe Gen4 at 80%.
    nbytes = (25.56e6 + 335.1e6) * 2
    assert s["reload"] == pytest.approx(nbytes / (31.5e9 * 0.8) + DEFAULTS["load_s"], rel=0.01)
    # Keeping a slice keeps its model: only the new slices are created and loaded.
    k = rc.steps(["3g.40gb", "3g.40gb"], ["3g.40gb", "2g.20gb", "1g.10gb"],
                 ["resnet50", "bert-base", None])
    assert k["mode"] == 0 and k["destroy"] == DEFAULTS["gi_destroy_s"]
    assert k["create"] == pytest.approx(3 * DEFAULTS["gi_create_slice_s"])
    # Same layout, different model: reload without re-partitioning.
    m = rc.steps(["7g.80gb"], ["7g.80gb"], ["bert-base"], old_models=["resnet50"])
    assert m["create"] == 0 and m["reload"] > 0


def test_mig_operations_match_the_measured_log(rc: ReconfigModel) -> None:
    """T162 (one A100 log, low confidence): 7 x 1g created in 2.5 s, destroyed in 4.4 s
    (these set the per-operation costs); 7 x 1g -> 2 x 3g took 6.5 s (a check)."""
    seven = ["1g.10gb"] * 7
    empty = [None] * 7
    assert rc.steps(["3g.40gb", "3g.40gb"], seven, empty)["create"] == pytest.approx(2.5,
                                                                                      rel=0.01)
    switch = rc.steps(seven, ["3g.40gb", "3g.40gb"], [None, None])
    assert switch["destroy"] == pytest.approx(4.4, rel=0.01)
    assert switch["destroy"] > rc.steps(["3g.40gb", "3g.40gb"], seven, empty)["create"]
    assert switch["destroy"] + switch["create"] == pytest.approx(6.5, rel=0.05)


def test_mps_restart_vs_shadow() -> None:
    """T066: an MPS share change needs a client restart; T065: GSLICE's shadow < 0.1 ms."""
    d = load_device("a100-80gb")
    old, new, models = ["mps:50", "mps:50"], ["mps:30", "mps:70"], ["resnet50", "resnet50"]
    restart = ReconfigModel(d).mean(old, new, models)
    shadow = ReconfigModel(d, params={"mps_shadow": 1}).mean(old, new, models)
    assert restart > 1.0 and shadow <= 1e-4


def test_sample_mean_matches_mean(rc: ReconfigModel) -> None:
    rng = np.random.default_rng(0)
    args = (["7g.80gb"], ["3g.40gb", "2g.20gb", "1g.10gb"], ["resnet50", "bert-base", None])
    draws = np.array([rc.sample(rng, *args) for _ in range(4000)])
    assert draws.mean() == pytest.approx(rc.mean(*args), rel=0.03)
    assert draws.std() > 0
    fixed = ReconfigModel(rc.device, params={"cv": 0.0})
    assert fixed.sample(rng, *args) == fixed.mean(*args)


def test_reconfig_overrides_and_errors() -> None:
    d = load_device("a100-80gb").replace(reconfig={"gi_create_s": 2.0})
    assert ReconfigModel(d).params["gi_create_s"] == 2.0
    with pytest.raises(ValueError, match="unknown reconfig"):
        ReconfigModel(d, params={"bogus": 1})
    with pytest.raises(ValueError, match="models"):
        ReconfigModel(d).mean(["full"], ["3g.40gb"], [])
    with pytest.raises(ValueError, match="impossible"):
        ReconfigModel(d).mean(["full"], ["4g.40gb", "4g.40gb"], [None, None])


def test_power_bounds_and_energy() -> None:
    d = load_device("a100-80gb")
    pm = PowerModel(d, "int8")
    full = full_gpu(d)
    busy = pm.busy_w("resnet50", 256, full)
    assert d.idle_w < busy <= d.tdp_w
    assert pm.busy_w("resnet50", 1, full) < busy  # launch-bound batches keep SMs idle
    e = [pm.energy_per_query_j("resnet50", b, full) for b in (1, 8, 64, 256)]
    assert all(np.diff(e) < 0)
    slices = mig_layout(d, ["3g.40gb", "3g.40gb"])
    idle = pm.device_w(slices, [None, None])
    assert idle == pytest.approx(d.idle_w)
    assert idle < pm.device_w(slices, [("resnet50", 64), None]) <= d.tdp_w
    with pytest.raises(ValueError, match="unknown power"):
        PowerModel(d, params={"x": 1})


def test_power_vs_mlperf_power() -> None:
    """T138: 8 x A100-SXM DGX ~85 ResNet-50 samples/J at the wall (within 15%)."""
    from hwmodels.calibration import DGX_A100_HOST_W

    d = load_device("a100-80gb")
    pm = PowerModel(d, "int8", {"host_w": DGX_A100_HOST_W / 8})
    from hwmodels.latency import LatencyModel

    tput, batch = LatencyModel(d, "int8").best_throughput("resnet50", full_gpu(d), 2048)
    spj = pm.samples_per_joule(tput, full_gpu(d), "resnet50", batch)
    assert spj == pytest.approx(85, rel=0.15)
