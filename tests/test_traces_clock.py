"""Real time scales and drifting mixes (issue 16): ``rate_mode="scale"`` keeps the trace's clock,
tenants map to models by config, and :class:`traces.MixSchedule` drifts the mix over a day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces import (
    CsvReplay,
    MixSchedule,
    ModelClass,
    ServeGenReplay,
    WorkloadMix,
    get_trace,
    shared_dir,
)
from traces.replay import renewal_fill, stochastic_round

SHARED = shared_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None or not (SHARED / "traces").is_dir(),
    reason="shared data directory (../shared or $LDSGYM_SHARED) not available")
MIX = WorkloadMix((ModelClass("resnet50", sla_ms=30.0), ModelClass("bert", weight=2.0)))


def _tenant_csv(path: Path) -> Path:
    """Two tenants over 600 s (the model column is ignored: ``relabel=True``): tenant a at 2/s
    for the first 300 s then 0.5/s, tenant b at 0.5/s then 2/s; every row's size is its
    tenant's id times 1000 plus its minute."""
    rng = np.random.default_rng(0)
    rows = []
    for tenant, (r1, r2) in (("a", (2.0, 0.5)), ("b", (0.5, 2.0))):
        for lo, hi, r in ((0.0, 300.0, r1), (300.0, 600.0, r2)):
            t = np.sort(rng.uniform(lo, hi, int(r * (hi - lo))))
            rows += [(x, tenant) for x in t]
    rows.sort()
    lines = ["time_s,model,tenant,size"] + [
        f"{t:.6f},resnet50,{k},{(1 if k == 'a' else 2) * 1000 + int(t // 60)}" for t, k in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scale_keeps_the_clock_and_the_tenants_drift(tmp_path: Path) -> None:
    path = _tenant_csv(tmp_path / "t.csv")
    src = CsvReplay(str(path), rate_mode="scale", loop=True, relabel=True,
                    tenant_models={"a": "resnet50", "b": "bert"})
    n, rate = 400_000, 1000.0
    a = src.sample(np.random.default_rng(1), MIX, n, rate)
    assert len(a) == n and np.all(np.diff(a.time_s) >= 0)
    # the window's mean rate is the target and its length n / rate: the clock is the trace's
    assert a.time_s[-1] == pytest.approx(n / rate, rel=0.02)
    # every arrival copies a row of its own tenant and minute (sizes encode both)
    tenant_id = np.where(a.tenant == a.tenants.index("a"), 1, 2)
    assert np.all(a.size // 1000 == tenant_id)
    assert np.all(a.model == np.where(tenant_id == 1, 0, 1))
    # the mix drifts as the trace's does: per minute of trace time, tenant a's share is 0.8 in
    # the first half and 0.2 in the second (the window starts at a drawn offset, wrapping)
    minute = a.size % 1000
    for m in np.unique(minute):
        sel = minute == m
        if sel.sum() < 2000:
            continue
        share = float(np.mean(tenant_id[sel] == 1))
        assert share == pytest.approx(0.8 if m < 5 else 0.2, abs=0.05)


def test_scale_is_reproducible_and_refuses_bad_options(tmp_path: Path) -> None:
    path = _tenant_csv(tmp_path / "t.csv")
    src = CsvReplay(str(path), rate_mode="scale")
    a = src.sample(np.random.default_rng(3), MIX, 50_000, 500.0)
    b = src.sample(np.random.default_rng(3), MIX, 50_000, 500.0)
    assert a.identical(b)
    with pytest.raises(ValueError, match="scale_window_s"):
        CsvReplay(str(path), rate_mode="scale", scale_window_s=0)
    with pytest.raises(ValueError, match="tenant_models names tenant 'zzz'"):
        CsvReplay(str(path), relabel=True, tenant_models={"zzz": "bert"}).sample(
            np.random.default_rng(0), MIX, 100, 1.0)
    with pytest.raises(ValueError, match="too few requests"):
        CsvReplay(str(path), rate_mode="scale", loop=False).sample(
            np.random.default_rng(0), MIX, 10_000, 5.0)


def test_scale_refuses_a_time_far_beyond_the_rest(tmp_path: Path) -> None:
    """One row at 1e9 s would cut the trace into 16.7 M bins (it ran out of memory before):
    one line naming the file and the cause, before any large allocation."""
    t = np.cumsum(np.random.default_rng(0).exponential(0.01, 2_000))
    t[-1] = 1e9
    path = tmp_path / "outlier.csv"
    path.write_text("time_s,model\n" + "".join(f"{x:.6f},resnet50\n" for x in t))
    with pytest.raises(ValueError, match=r"outlier\.csv: rate_mode='scale' would cut .* "
                       r"1[0-9],[0-9,]+ bins .*far beyond the rest"):
        CsvReplay(str(path), rate_mode="scale").sample(np.random.default_rng(0), MIX, 1_000,
                                                      500.0)
    # the default mode never bins the trace's clock: the outlier costs nothing there
    CsvReplay(str(path)).sample(np.random.default_rng(0), MIX, 1_000, 500.0)
    # in bins long enough to pass the bin limit, the same outlier would have the one sparse
    # bin filled with ~1e11 arrivals (87 s before this check); now one line, before drawing
    with pytest.raises(ValueError, match=r"outlier\.csv: rate_mode='scale' would draw 2\.5e\+08 "
                       r"arrivals in 1 bin\(s\) of 200000 s .*lower scale_window_s"):
        CsvReplay(str(path), rate_mode="scale", scale_window_s=2e5).sample(
            np.random.default_rng(0), MIX, 1_000, 500.0)


def test_scale_window_in_a_gap_starts_where_requests_resume(tmp_path: Path) -> None:
    """Two 5-minute bursts an hour apart: most drawn starts fall in the gap. The episode is still
    at the target rate (it ran at ~300 q/s of 500 when the factor fell back to the split's mean
    rate), and starts at a request of the second burst's first bin."""
    rng = np.random.default_rng(1)
    t = np.concatenate([np.cumsum(rng.exponential(0.05, 6_000)),
                        3_900 + np.cumsum(rng.exponential(0.05, 6_000))])
    path = tmp_path / "gap.csv"
    path.write_text("time_s,model\n" + "".join(f"{x:.6f},resnet50\n" for x in t))
    src = CsvReplay(str(path), rate_mode="scale")
    rates = [src.sample(np.random.default_rng(s), MIX, 20_000, 500.0).mean_rate_qps
             for s in range(12)]
    assert min(rates) > 470 and max(rates) < 530, rates


def test_renewal_fill_counts_and_cv() -> None:
    rng = np.random.default_rng(0)
    k = np.array([0, 5, 20_000])
    t, g = renewal_fill(rng, np.array([0.0, 10.0, 100.0]), np.array([1.0, 2.0, 50.0]), k,
                        np.array([1.0, 1.0, 0.25]))
    assert np.array_equal(np.bincount(g, minlength=3), k)
    assert np.all((t[g == 1] >= 10) & (t[g == 1] < 12))
    gaps = np.diff(np.sort(t[g == 2]))
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.1)  # shape 0.25: CV 2
    x = stochastic_round(rng, np.full(100_000, 2.3))
    assert set(np.unique(x).tolist()) == {2, 3} and x.mean() == pytest.approx(2.3, abs=0.01)


def test_mix_schedule_drifts_the_mix_at_a_constant_rate() -> None:
    src = MixSchedule(amplitude=1.0, period=100.0, phase=0.0, phases=(0.0, 0.5))
    a = src.sample(np.random.default_rng(0), MIX, 200_000, 1000.0)
    assert a.mean_rate_qps == pytest.approx(1000.0, rel=0.01)
    t = a.time_s % 100.0
    # model 0 peaks at phase 0 (t = 0), model 1 at t = 50; popularity 1:2
    early = (t < 5) | (t > 95)
    mid = (t > 45) & (t < 55)
    assert np.mean(a.model[early] == 0) > 0.9
    assert np.mean(a.model[mid] == 1) > 0.95
    # where the two curves cross (t = 25, 75) the shares are the popularities
    cross = (np.abs(t - 25) < 1) | (np.abs(t - 75) < 1)
    assert np.mean(a.model[cross] == 1) == pytest.approx(2 / 3, abs=0.03)
    with pytest.raises(ValueError, match="2 phases for 3 models"):
        MixSchedule(phases=(0.0, 0.5)).sample(np.random.default_rng(0), WorkloadMix(
            (ModelClass("a"), ModelClass("b"), ModelClass("c"))), 10, 1.0)
    with pytest.raises(ValueError, match="amplitude"):
        MixSchedule(amplitude=-1)


@needs_shared
def test_servegen_scale_keeps_the_day_and_multiplies_each_window() -> None:
    src = ServeGenReplay(dataset="m-large", rate_mode="scale", split="all")
    data = src.load()
    a = src.sample(np.random.default_rng(0), MIX, 300_000, 2000.0)
    # the episode lasts n / rate seconds of the data set's day (not compressed)
    assert a.time_s[-1] == pytest.approx(150.0, rel=0.05)
    native = data.window_count.sum() / data.duration_s
    assert native < 200  # the multiplied rate is far above the data's own
    assert len(set(a.tenant.tolist())) > 3


@needs_shared
def test_azure_tenants_preset_maps_code_and_conv() -> None:
    mix = WorkloadMix((ModelClass("resnet50"), ModelClass("bert-base")))
    a = get_trace("azure-tenants").sample(np.random.default_rng(0), mix, 200_000, 2000.0)
    code = a.tenants.index("code")
    assert np.all(a.model[a.tenant == code] == 1) and np.all(a.model[a.tenant != code] == 0)
    assert a.time_s[-1] == pytest.approx(100.0, rel=0.05)


def test_mix_swing_alternates_the_heavy_model_every_150_s() -> None:
    from envs.presets import get_workload

    src = get_trace("mix-swing")
    a = src.sample(np.random.default_rng(0), get_workload("vision-nlp"), 120_000, 100.0)
    assert a.mean_rate_qps == pytest.approx(100.0, rel=0.02)
    phase = (a.time_s // 150.0).astype(int) % 2
    assert a.time_s[-1] > 900  # several repeats
    bert = a.model == 2
    assert np.mean(bert[phase == 0]) == pytest.approx(0.2, abs=0.01)
    assert np.mean(bert[phase == 1]) == pytest.approx(0.7, abs=0.01)
    with pytest.raises(ValueError, match="workload has 2 models"):
        src.sample(np.random.default_rng(0), MIX, 10, 1.0)
