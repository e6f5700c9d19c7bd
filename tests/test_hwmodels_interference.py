"""Co-runner interference: 1 alone, monotone in co-runner demand, MIG nearly isolated."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels.interference import DEFAULTS, InterferenceModel
from hwmodels.partitions import full_gpu, mig_layout, mps_layout, time_slice_layout
from hwmodels.specs import load_device


@pytest.fixture(scope="module")
def a100() -> InterferenceModel:
    return InterferenceModel(load_device("a100-80gb"), "fp16")


def test_alone_and_idle_are_one(a100: InterferenceModel) -> None:
    d = a100.device
    for parts in (mps_layout(d, [50, 50]), mig_layout(d, ["3g.40gb", "3g.40gb"]),
                  time_slice_layout(d, 2)):
        f = a100.slowdowns(parts, [("resnet50", 8), None])
        np.testing.assert_array_equal(f, [1.0, 1.0])
    assert a100.slowdowns([full_gpu(d)], [("bert-base", 4)])[0] == 1.0
    np.testing.assert_array_equal(a100.slowdowns(mps_layout(d, [50, 50]), [None, None]), [1, 1])


def test_mps_slowdown_grows_with_corunner_demand(a100: InterferenceModel) -> None:
    parts = mps_layout(a100.device, [50, 50])
    prev = 1.0
    for batch in (1, 4, 16, 64):  # bigger batches: more bandwidth, more SM time
        f = a100.slowdowns(parts, [("resnet50", 8), ("resnet50", batch)])[0]
        assert f >= prev - 1e-12
        prev = f
    assert prev > 1.0
    # More co-runners slow it more.
    three = mps_layout(a100.device, [34, 33, 33])
    f2 = a100.slowdowns(three, [("resnet50", 8), ("bert-base", 8), None])[0]
    f3 = a100.slowdowns(three, [("resnet50", 8), ("bert-base", 8), ("bert-base", 8)])[0]
    assert f3 > f2 > 1.0


def test_mps_pair_interferes_as_measured(a100: InterferenceModel) -> None:
    """gpulet (A100, MPS shares summing to 100%): batches 1-4 of ResNet-50 next to another CNN
    take 1.40-1.44x their solo time, batches 16-64 1.08-1.10x on average (published_targets
    T160-T161). Launch-bound work interferes; so do shares that sum to 100%."""
    parts = mps_layout(a100.device, [50, 50])
    small = a100.slowdowns(parts, [("resnet50", 1), ("resnet50", 1)])
    large = a100.slowdowns(parts, [("resnet50", 64), ("resnet50", 64)])
    assert np.all((small > 1.3) & (small < 1.5))
    assert np.all((large > 1.03) & (large < 1.2)) and np.all(large < small)
    mixed = a100.slowdowns(parts, [("resnet50", 8), ("bert-base", 8)])
    assert np.all((mixed > 1.05) & (mixed < 1.3))


def test_mps_host_bound_job_is_as_slow_as_its_host_work() -> None:
    """An eager job whose host dispatch is the bottleneck slows by ``1 + mps_host``."""
    from hwmodels.calibration import stack_latency

    d = load_device("a100-40gb-gpulet-calibrated")
    model = InterferenceModel(d, "tf32", latency=stack_latency(d, "tf32", "eager"))
    parts = mps_layout(d, [50, 50])
    demand = model.demand("resnet50", 1, parts[0])
    assert demand.host > 0.9  # batch 1 of eager ResNet-50 waits for the host
    f = model.slowdowns(parts, [("resnet50", 1), ("mobilenet_v2", 1)])[0]
    assert f == pytest.approx(max(demand.host * (1 + model.params["mps_host"]),
                                  1 + demand.overhead * model.params["mps_host"]), rel=0.05)
    # within 100% of the SMs, a busier co-runner slows a compute-bound job more
    busy = [model.slowdowns(parts, [("vgg16", 64), ("resnet50", b)])[0] for b in (1, 8, 64)]
    assert busy[0] <= busy[1] <= busy[2] and busy[2] > 1.0


def test_under_filled_kernels_interfere_like_host_work() -> None:
    """Layers with fewer output tiles than the share has SMs are latency-bound GPU work
    (``underfill``): it shrinks with the batch and with fewer SMs, and a co-runner stretches it
    by ``mps_host`` as it does host work; CPUs have none."""
    from hwmodels.latency import FILL_ELEMS_PER_SM, LatencyModel

    d = load_device("a100-80gb")
    half, fifth = mps_layout(d, [50, 50]), mps_layout(d, [20, 80])
    br = LatencyModel(d, "fp16").breakdown("resnet50", [1, 8, 64, 256], half[0])
    u = br.underfill_s / br.total_s
    assert np.all(np.diff(u) < 0) and u[0] > 0.1 and u[-1] < 0.01
    assert np.all(br.underfill_s <= br.compute_s + br.memory_s + 1e-15)
    few = LatencyModel(d, "fp16").breakdown("resnet50", 8, fifth[0])
    assert float(few.underfill_s / few.total_s) < u[1]
    # a batch of FILL_ELEMS_PER_SM x SMs gives every layer (>= 1 output each) a full wave
    full = LatencyModel(d, "fp16").breakdown("resnet50", FILL_ELEMS_PER_SM * half[0].sms,
                                             half[0])
    assert float(full.underfill_s) == 0.0
    model = InterferenceModel(d, "fp16")
    off = InterferenceModel(d, "fp16", params={"mps_host": 0.0})
    jobs = [("resnet50", 1), ("bert-base", 64)]
    dem = model.demand("resnet50", 1, half[0])
    assert dem.underfill > 0.1 and dem.host == 0.0
    f, f0 = model.slowdowns(half, jobs)[0], off.slowdowns(half, jobs)[0]
    assert f - f0 == pytest.approx((dem.overhead + dem.underfill) * model.params["mps_host"])
    cpu = InterferenceModel(load_device("cpu"), "fp32")
    assert cpu.demand("resnet50", 1, mps_layout(cpu.device, [50, 50])[0]).underfill == 0.0


def test_mig_nearly_isolated() -> None:
    """T115-T117: an A100 1g slice loses 1-2.5% when the other six are busy; A30 ~8.5%."""
    a100 = InterferenceModel(load_device("a100-80gb"), "int8")
    parts = mig_layout(a100.device, ["1g.10gb"] * 7)
    busy = [("resnet50", 64)] * 7
    f = a100.slowdowns(parts, busy)
    assert np.all((f > 1.005) & (f < 1.03))
    fewer = a100.slowdowns(parts, [("resnet50", 64), ("resnet50", 64)] + [None] * 5)[0]
    assert 1.0 < fewer < f[0]
    a30 = InterferenceModel(load_device("a30"), "int8")
    g = a30.slowdowns(mig_layout(a30.device, ["1g.6gb"] * 4), [("resnet50", 64)] * 4)
    assert np.all((g > 1.05) & (g < 1.12))


def test_time_slicing_shares_the_device(a100: InterferenceModel) -> None:
    parts = time_slice_layout(a100.device, 3)
    f2 = a100.slowdowns(parts, [("resnet50", 64), ("resnet50", 64), None])
    f3 = a100.slowdowns(parts, [("resnet50", 64)] * 3)
    assert 1.8 < f2[0] < 2.2 and 2.7 < f3[0] < 3.3


def test_parameters_are_validated_and_overridable() -> None:
    d = load_device("a100-80gb")
    with pytest.raises(ValueError, match="unknown interference"):
        InterferenceModel(d, params={"nope": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        InterferenceModel(d, params={"mps_bw": -1.0})
    parts = mps_layout(d, [50, 50])
    jobs = [("resnet50", 8), ("resnet50", 64)]
    lo = InterferenceModel(d, params={"mps_bw": 0.1, "mps_cache": 0.0}).slowdowns(parts, jobs)
    hi = InterferenceModel(d, params={"mps_bw": 2.0, "mps_cache": 0.5}).slowdowns(parts, jobs)
    assert np.all(hi > lo)
    assert set(DEFAULTS) == {"mig", "mps_sm", "mps_bw", "mps_cache", "mps_host", "mps_overlap",
                             "ts_switch"}
    with pytest.raises(ValueError, match="running entries"):
        InterferenceModel(d).slowdowns(parts, [None])
