"""MIG placement rules, layouts, MPS shares and time slicing against NVIDIA's documentation."""

from __future__ import annotations

import pytest

from hwmodels.partitions import (
    MIG_TABLES,
    MPS_MAX_CLIENTS,
    enumerate_layouts,
    enumerate_placements,
    full_gpu,
    make_layout,
    max_instances,
    mig_layout,
    mps_layout,
    place,
    time_slice_layout,
)
from hwmodels.specs import load_device

CLASSIC = ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]  # without 1g.20gb


def test_a100_slice_sizes_and_starts() -> None:
    """T059-T061: SMs, memory and allowed start slices per profile."""
    t = MIG_TABLES["a100-80gb"]
    assert (t.compute_slices, t.memory_slices) == (7, 8)
    got = {p.name: (p.sms, p.memory_slices, p.starts) for p in t.profiles}
    assert got == {
        "1g.10gb": (14, 1, (0, 1, 2, 3, 4, 5, 6)),
        "1g.20gb": (14, 2, (0, 2, 4, 6)),
        "2g.20gb": (28, 2, (0, 2, 4)),
        "3g.40gb": (42, 4, (0, 4)),
        "4g.40gb": (56, 4, (0,)),
        "7g.80gb": (98, 8, (0,)),
    }
    assert MIG_TABLES["a100-40gb"].profiles[0].mem_gb == pytest.approx(4.864)


def test_sms_lost_in_mig_mode() -> None:
    """A100: 98 of 108 SMs usable in MIG mode (10 lost, 9.3%: T059); H100 SXM: 112 of 132."""
    for dev, table, lost in (("a100-80gb", "a100-80gb", 10), ("h100-sxm", "h100-80gb", 20)):
        d = load_device(dev)
        biggest = max(p.sms for p in MIG_TABLES[table].profiles)
        assert d.sm_count - biggest == lost
        assert sum(p.sms for p in mig_layout(d, ["1g.10gb"] * 7)) == biggest
    assert full_gpu(load_device("a100-80gb")).sms == 108


def test_h100_and_h200_tables() -> None:
    """T062: 1g 16, 2g 32, 3g 48, 4g 64, 7g 112 SMs."""
    for name in ("h100-80gb", "h200-141gb"):
        sms = {p.short: p.sms for p in MIG_TABLES[name].profiles}
        assert sms == {"1g": 16, "1g.2x": 16, "2g": 32, "3g": 48, "4g": 64, "7g": 112}


def test_max_instances_per_profile() -> None:
    """T061: 1g x7, 1g double-memory x4, 2g x3, 3g x2, 4g x1, 7g x1; A30: 4/2/1."""
    assert max_instances("a100-80gb") == {"1g": 7, "1g.2x": 4, "2g": 3, "3g": 2, "4g": 1,
                                          "7g": 1}
    assert max_instances("a30-24gb") == {"1g": 4, "2g": 2, "4g": 1}


def test_configuration_counts_match_nvidia() -> None:
    """MIG user guide: 19 A100 configurations (classic profiles), 5 on the A30."""
    assert len(enumerate_placements("a100-80gb", include=CLASSIC)) == 19
    assert len(enumerate_placements("h100-80gb", include=CLASSIC)) == 19
    assert len(enumerate_placements("a30-24gb")) == 5
    assert len(enumerate_layouts("a100-80gb")) == 28
    classic = [lay for lay in enumerate_layouts("a100-80gb") if "1g.20gb" not in lay]
    assert len(classic) == 12
    for lay in enumerate_layouts("a100-80gb"):
        assert place(MIG_TABLES["a100-80gb"], lay) is not None


@pytest.mark.parametrize("layout, ok", [
    (["4g.40gb", "3g.40gb"], True),
    (["3g.40gb", "3g.40gb"], True),
    (["2g.20gb"] * 3 + ["1g.10gb"], True),
    (["4g.40gb", "2g.20gb", "1g.10gb"], True),
    (["4g.40gb", "4g.40gb"], False),            # 8 compute slices
    (["3g.40gb", "3g.40gb", "1g.10gb"], False),  # memory slices all taken
    (["1g.20gb"] * 5, False),                   # only 4 double-memory starts
    (["7g.80gb", "1g.10gb"], False),
])
def test_placement_rules(layout: list[str], ok: bool) -> None:
    d = load_device("a100-80gb")
    if ok:
        assert len(mig_layout(d, layout)) == len(layout)
    else:
        with pytest.raises(ValueError, match="impossible"):
            mig_layout(d, layout)


def test_mig_errors() -> None:
    with pytest.raises(ValueError, match="does not support MIG"):
        mig_layout(load_device("t4"), ["1g.10gb"])
    with pytest.raises(ValueError, match="does not exist"):
        mig_layout(load_device("a100-80gb"), ["5g.50gb"])


def test_mps_shares_and_time_slicing() -> None:
    d = load_device("a100-80gb")
    parts = mps_layout(d, [50, 30, 20])
    assert [p.sms for p in parts] == [54, 32, 22]
    assert all(p.mode == "mps" and not p.isolated and p.bw_fraction == 1.0 for p in parts)
    with pytest.raises(ValueError, match="sum <= 100"):
        mps_layout(d, [60, 50])
    with pytest.raises(ValueError, match="limit"):
        mps_layout(d, [1.0] * (MPS_MAX_CLIENTS + 1))
    ts = time_slice_layout(d, 3)
    assert all(p.sms == 108 and p.mode == "time" for p in ts)
    assert make_layout(d, ["ts:3"]) == ts
    assert make_layout(d, ["mps:50", "mps:50"])[0].mode == "mps"
    assert make_layout(d, ["full"])[0].mode == "exclusive"
    assert make_layout(d, ["3g.40gb"])[0].mode == "mig"
    with pytest.raises(ValueError, match="ts:3"):
        make_layout(d, ["ts:x"])
