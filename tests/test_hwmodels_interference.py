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


def test_mps_pair_matches_published_range(a100: InterferenceModel) -> None:
    """T122 (second-hand): co-locating two DNNs costs 5-10%; T123: < 17% for most pairs."""
    f = a100.slowdowns(mps_layout(a100.device, [50, 50]), [("resnet50", 8), ("bert-base", 8)])
    assert 1.03 <= f.mean() <= 1.12 and f.max() < 1.17


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
    assert set(DEFAULTS) == {"mig", "mps_sm", "mps_bw", "mps_cache", "ts_switch"}
    with pytest.raises(ValueError, match="running entries"):
        InterferenceModel(d).slowdowns(parts, [None])
