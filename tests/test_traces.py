"""Synthetic arrival processes, the workload mix, presets and Hydra configs of ``traces``."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import traces
from traces import (
    MMPP2,
    SYNTHETIC_PRESETS,
    TRACE_PRESETS,
    Arrivals,
    Diurnal,
    FlashCrowd,
    ModelClass,
    PiecewiseRate,
    Poisson,
    Renewal,
    RequestClass,
    SizeDist,
    TraceSource,
    WorkloadMix,
    get_trace,
    mix_from_spec,
    zipf_mix,
)
from traces.synthetic import weibull_shape_for_cv

REPO = Path(__file__).resolve().parent.parent
N = 200_000
RATE = 500.0
ONE = WorkloadMix((ModelClass("m"),))


def _gaps(a: Arrivals) -> np.ndarray:
    return np.diff(a.time_s)


def _cv(a: Arrivals) -> float:
    g = _gaps(a)
    return float(g.std() / g.mean())


# ---------------------------------------------------------------------------------------------
# Import isolation
# ---------------------------------------------------------------------------------------------


def test_import_pulls_no_gymnasium_torch_or_matplotlib() -> None:
    # Kept next to the import-linter contracts (pyproject.toml), which forbid gymnasium/torch/
    # hydra anywhere in traces but cannot say "matplotlib and scipy only inside functions"
    # (traces.stats imports matplotlib lazily) nor see modules loaded through third-party ones.
    code = ("import sys, traces, traces.stats; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'gymnasium', 'torch', 'matplotlib', 'hydra', 'scipy'}); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# Rates and CVs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "cv", "cv_tol"), [
    (Poisson(), 1.0, 0.02),
    (Renewal(cv=0.5, dist="gamma"), 0.5, 0.01),
    (Renewal(cv=3.0, dist="gamma"), 3.0, 0.04),
    (Renewal(cv=0.5, dist="weibull"), 0.5, 0.01),
    (Renewal(cv=3.0, dist="weibull"), 3.0, 0.08),
    (Renewal(cv=2.0, dist="lognormal"), 2.0, 0.10),
    (Renewal(cv=0.0), 0.0, 1e-9),
])
def test_renewal_rate_and_cv(source: TraceSource, cv: float, cv_tol: float) -> None:
    a = source.sample(np.random.default_rng(1), ONE, N, RATE)
    assert len(a) == N
    rate = N / a.time_s[-1]
    # the sum of N gaps has relative std cv / sqrt(N): allow 5 sigma (and float error for cv 0)
    assert rate == pytest.approx(RATE, rel=5 * max(cv, 1e-6) / math.sqrt(N) + 1e-9)
    if cv == 0:
        assert np.allclose(_gaps(a), 1 / RATE)
    else:
        assert _cv(a) == pytest.approx(cv, rel=cv_tol)


def test_rate_scale_multiplies_the_target() -> None:
    a = Renewal(cv=1.0, rate_scale=2.0).sample(np.random.default_rng(0), ONE, N, RATE)
    assert N / a.time_s[-1] == pytest.approx(2 * RATE, rel=0.015)


@pytest.mark.parametrize("cv", [0.3, 1.0, 2.0, 5.0])
def test_weibull_shape_solves_the_cv(cv: float) -> None:
    k = weibull_shape_for_cv(cv)
    got = math.sqrt(math.gamma(1 + 2 / k) / math.gamma(1 + 1 / k) ** 2 - 1)
    assert got == pytest.approx(cv, rel=1e-9)
    assert weibull_shape_for_cv(1.0) == pytest.approx(1.0, rel=1e-9)


def _mmpp_theory(src: MMPP2, rate: float) -> tuple[float, float]:
    """Exact CV of the stationary inter-arrival time and the asymptotic IDC of an MMPP2."""
    lam_l, lam_h = src.rates(rate)
    m_l, m_h = src.sojourns(1.0)
    r_lh, r_hl = 1 / m_l, 1 / m_h
    q = np.array([[-r_lh, r_lh], [r_hl, -r_hl]])
    d1 = np.diag([lam_l, lam_h])
    pi = np.array([r_hl, r_lh]) / (r_hl + r_lh)
    pe = pi @ d1 / (pi @ d1).sum()
    inv = np.linalg.inv(-(q - d1))
    m1 = pe @ inv @ np.ones(2)
    m2 = 2 * pe @ inv @ inv @ np.ones(2)
    idc = 1 + 2 * pi[0] * pi[1] * (lam_h - lam_l) ** 2 / ((r_lh + r_hl) * rate)
    return float(math.sqrt(m2 / m1**2 - 1)), float(idc)


def test_mmpp_rate_and_cv_match_theory() -> None:
    src = MMPP2(rate_ratio=10.0, high_fraction=0.1, mean_high=0.01, time_unit="s")
    cv, idc = _mmpp_theory(src, RATE)
    assert cv > 1.4  # bursty
    rates, cvs = [], []
    for seed in range(3):
        a = src.sample(np.random.default_rng(seed), ONE, N, RATE)
        rates.append(N / a.time_s[-1])
        cvs.append(_cv(a))
    # count over the episode has variance ~ idc * N
    assert np.mean(rates) == pytest.approx(RATE, rel=5 * math.sqrt(idc / (3 * N)))
    assert np.mean(cvs) == pytest.approx(cv, rel=0.03)


def test_mmpp_high_state_share() -> None:
    """Count in 10 ms bins: about high_fraction of the time runs at ~lambda_high."""
    src = MMPP2(rate_ratio=20.0, high_fraction=0.2, mean_high=1.0, time_unit="s")
    a = src.sample(np.random.default_rng(3), ONE, N, 1000.0)
    lo, hi = src.rates(1000.0)
    counts = np.bincount((a.time_s // 0.1).astype(int))[:-1] / 0.1
    share_high = np.mean(counts > math.sqrt(lo * hi))
    assert share_high == pytest.approx(0.2, abs=0.06)


def test_diurnal_follows_the_sinusoid() -> None:
    src = Diurnal(amplitude=0.6, period=1.0, phase=0.25, time_unit="episode")
    a = src.sample(np.random.default_rng(0), ONE, N, RATE)
    horizon = N / RATE
    assert a.time_s[-1] == pytest.approx(horizon, rel=0.02)
    bins = 50
    counts = np.bincount(np.minimum((a.time_s / horizon * bins).astype(int), bins - 1),
                         minlength=bins)
    x = (np.arange(bins) + 0.5) / bins
    expected = N / bins * (1 + 0.6 * np.sin(2 * np.pi * (x + 0.25)))
    assert np.corrcoef(counts, expected)[0, 1] > 0.99
    assert counts.max() / counts.mean() == pytest.approx(1.6, rel=0.06)


def test_diurnal_random_phase_is_drawn_from_rng() -> None:
    src = Diurnal(amplitude=0.9, phase=None)
    a = src.sample(np.random.default_rng(1), ONE, 20_000, RATE)
    b = src.sample(np.random.default_rng(2), ONE, 20_000, RATE)
    ha = np.bincount((a.time_s / a.time_s[-1] * 9.999).astype(int), minlength=10)
    hb = np.bincount((b.time_s / b.time_s[-1] * 9.999).astype(int), minlength=10)
    assert np.argmax(ha) != np.argmax(hb) or not np.allclose(ha, hb, rtol=0.1)


def test_flash_crowd_peak_and_mean() -> None:
    src = FlashCrowd(magnitude=8.0, start=0.4, ramp=0.0, hold=0.1, decay=0.0)
    a = src.sample(np.random.default_rng(0), ONE, N, RATE)
    horizon = N / RATE
    assert a.time_s[-1] == pytest.approx(horizon, rel=0.02)
    t = a.time_s / horizon
    base = N / (1.0 + 7.0 * 0.1)  # arrivals per episode of base rate
    in_hold = np.count_nonzero((t >= 0.4) & (t < 0.5))
    before = np.count_nonzero(t < 0.4)
    assert in_hold == pytest.approx(8.0 * 0.1 * base, rel=0.02)
    assert before == pytest.approx(0.4 * base, rel=0.02)


def test_flash_crowd_with_ramp_and_decay_keeps_the_mean_rate() -> None:
    src = FlashCrowd(magnitude=10.0, start=None, ramp=0.02, hold=0.05, decay=0.05)
    a = src.sample(np.random.default_rng(5), ONE, N, RATE)
    assert N / a.time_s[-1] == pytest.approx(RATE, rel=0.02)
    counts = np.bincount((a.time_s / a.time_s[-1] * 99.999).astype(int), minlength=100)
    assert counts.max() > 5 * np.median(counts)


def test_piecewise_schedule_levels() -> None:
    src = PiecewiseRate(levels=(1.0, 3.0, 0.0, 2.0), durations=(1.0, 1.0, 1.0, 1.0),
                        repeat=True, time_unit="s")
    a = src.sample(np.random.default_rng(0), ONE, N, RATE)
    assert N / a.time_s[-1] == pytest.approx(RATE, rel=0.02)
    phase = (a.time_s % 4.0).astype(int)
    share = np.bincount(phase, minlength=4) / N
    assert share == pytest.approx([1 / 6, 3 / 6, 0.0, 2 / 6], abs=0.005)


def test_piecewise_absolute_rates_ignore_the_target() -> None:
    src = PiecewiseRate(levels=(100.0, 300.0), durations=(10.0, 10.0), normalize=False,
                        repeat=False, time_unit="s")
    a = src.sample(np.random.default_rng(0), ONE, 50_000, 1.0)
    assert np.count_nonzero(a.time_s < 10.0) == pytest.approx(1000, rel=0.12)
    assert 49_000 / (a.time_s[-1] - a.time_s[1000]) == pytest.approx(300.0, rel=0.03)


def test_modulated_renewal_is_burstier_than_poisson() -> None:
    a = Diurnal(amplitude=0.0, cv=3.0).sample(np.random.default_rng(0), ONE, N, RATE)
    assert _cv(a) == pytest.approx(3.0, rel=0.05)


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYNTHETIC_PRESETS)
def test_same_seed_same_arrivals_different_seed_different(name: str) -> None:
    src = get_trace(name)
    mix = zipf_mix(["a", "b", "c"], 1.0, size={"kind": "lognormal", "mean": 100, "cv": 1.0})
    a = src.sample(np.random.default_rng(7), mix, 20_000, 300.0)
    b = src.sample(np.random.default_rng(7), mix, 20_000, 300.0)
    c = src.sample(np.random.default_rng(8), mix, 20_000, 300.0)
    assert a.identical(b)
    assert not np.array_equal(a.time_s, c.time_s)
    assert not np.array_equal(a.model, c.model)
    assert len(a) == 20_000
    assert np.all(np.diff(a.time_s) >= 0) and a.time_s[0] >= 0


def test_poisson_output_is_backward_compatible() -> None:
    """The original Poisson + from_mix draw order: exponential gaps, then model uniforms."""
    mix = WorkloadMix((ModelClass("a", 1.0), ModelClass("b", 3.0, sla_ms=50.0, priority=2)))
    a = Poisson().sample(np.random.default_rng(0), mix, 1000, 10.0)
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.1, size=1000))
    m = np.searchsorted(np.array([0.25, 1.0]), rng.random(1000), side="right")
    assert np.array_equal(a.time_s, t)
    assert np.array_equal(a.model, m)
    assert np.array_equal(a.sla_ms, np.where(m == 1, 50.0, 100.0))
    assert np.array_equal(a.priority, np.where(m == 1, 2, 0))
    assert np.all(a.size == 1) and np.all(a.output_size == 0) and np.all(a.tenant == -1)


# ---------------------------------------------------------------------------------------------
# Workload mix
# ---------------------------------------------------------------------------------------------


def test_zipf_popularity() -> None:
    mix = zipf_mix(["a", "b", "c", "d"], s=1.2)
    w = np.arange(1, 5) ** -1.2
    assert mix.probabilities == pytest.approx(w / w.sum())
    m = mix.sample_models(np.random.default_rng(0), N)
    assert np.bincount(m, minlength=4) / N == pytest.approx(w / w.sum(), abs=0.005)
    spec = mix_from_spec([{"name": "x"}, {"name": "y"}, {"name": "z"}], zipf_s=1.0)
    assert spec.probabilities == pytest.approx(np.array([1, 1 / 2, 1 / 3]) / (11 / 6))


def test_sample_models_matches_searchsorted_for_many_models() -> None:
    mix = zipf_mix([f"m{i}" for i in range(30)], 0.8)
    rng1, rng2 = np.random.default_rng(4), np.random.default_rng(4)
    m = mix.sample_models(rng1, 10_000)
    cdf = np.cumsum(mix.probabilities)
    cdf[-1] = 1.0
    assert np.array_equal(m, np.searchsorted(cdf, rng2.random(10_000), side="right"))


@pytest.mark.parametrize(("spec", "mean", "lo", "hi"), [
    ({"kind": "const", "value": 8}, 8.0, 8, 8),
    ({"kind": "uniform", "low": 1, "high": 32}, 16.5, 1, 32),
    ({"kind": "geometric", "mean": 4.0}, 4.0, 1, None),
    ({"kind": "poisson", "mean": 20.0}, 20.0, 0, None),
    ({"kind": "lognormal", "mean": 512.0, "cv": 1.0}, 512.0, 0, None),
    ({"kind": "choice", "values": [1, 8, 32], "weights": [0.5, 0.3, 0.2]}, 9.3, 1, 32),
    ({"kind": "lognormal", "mean": 512.0, "cv": 2.0, "minimum": 16, "maximum": 4096}, None,
     16, 4096),
])
def test_size_distributions(spec: dict[str, object], mean: float | None, lo: int,
                            hi: int | None) -> None:
    d = SizeDist.from_spec(spec)
    x = d.sample(np.random.default_rng(0), N)
    assert x.dtype == np.int32 and len(x) == N
    if mean is not None:
        assert x.mean() == pytest.approx(mean, rel=0.02)
        assert d.expected == pytest.approx(mean)
    assert x.min() >= lo
    if hi is not None:
        assert x.max() <= hi


def test_size_dist_rejects_bad_specs() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        SizeDist.from_spec({"kind": "pareto"})
    with pytest.raises(ValueError, match="unknown key"):
        SizeDist.from_spec({"kind": "const", "vlaue": 3})
    with pytest.raises(ValueError, match="zipf"):
        SizeDist(kind="zipf", a=1.0)


def test_mix_sizes_sla_classes_and_priorities() -> None:
    mix = mix_from_spec([
        {"name": "resnet50", "weight": 3, "sla_ms": 20, "priority": 1,
         "size": {"kind": "uniform", "low": 1, "high": 8}},
        {"name": "llama", "weight": 1, "sla_multiple": 5.0,
         "size": {"kind": "lognormal", "mean": 1000, "cv": 1.0},
         "output_size": {"kind": "geometric", "mean": 200},
         "classes": [{"name": "interactive", "weight": 1, "sla_multiple": 2.0, "priority": 3},
                     {"name": "batch", "weight": 3, "sla_ms": 10_000.0, "priority": 0}]},
    ])
    a = Poisson().sample(np.random.default_rng(0), mix, N, 1000.0)
    r, ll = a.model == 0, a.model == 1
    assert r.mean() == pytest.approx(0.75, abs=0.005)
    assert a.size[r].min() >= 1 and a.size[r].max() <= 8
    assert a.size[ll].mean() == pytest.approx(1000, rel=0.03)
    assert np.all(a.output_size[r] == 0)
    assert a.output_size[ll].mean() == pytest.approx(200, rel=0.03)
    assert np.all(a.sla_ms[r] == 20) and np.all(a.priority[r] == 1)
    assert np.all(np.isnan(a.sla_multiple[r]))
    inter = ll & (a.priority == 3)
    batch = ll & (a.priority == 0)
    assert inter.sum() / ll.sum() == pytest.approx(0.25, abs=0.01)
    assert inter.sum() + batch.sum() == ll.sum()
    assert np.all(a.sla_multiple[inter] == 2.0)
    assert np.all(np.isnan(a.sla_multiple[batch])) and np.all(a.sla_ms[batch] == 10_000)
    assert a.needs_sla_resolution
    solved = a.resolve_sla([4.0, 30.0])  # per-model solo latency (ms)
    assert np.all(solved.sla_ms[inter] == 60.0)
    assert np.all(solved.sla_ms[batch] == 10_000) and np.all(solved.sla_ms[r] == 20)
    per_req = a.resolve_sla(np.full(len(a), 7.0))
    assert np.all(per_req.sla_ms[inter] == 14.0)
    with pytest.raises(ValueError, match="resolve_sla"):
        a.resolve_sla([1.0, 2.0, 3.0])


def test_model_sla_multiple_without_classes() -> None:
    mix = WorkloadMix((ModelClass("a", sla_multiple=3.0), ModelClass("b", sla_ms=40.0)))
    a = Poisson().sample(np.random.default_rng(1), mix, 1000, 10.0)
    out = a.resolve_sla(np.array([10.0, 99.0]))
    assert np.all(out.sla_ms[a.model == 0] == 30.0)
    assert np.all(out.sla_ms[a.model == 1] == 40.0)


def test_model_class_is_backward_compatible_and_validated() -> None:
    m = ModelClass("resnet50", 2.0, 50.0, 1)
    assert (m.name, m.weight, m.sla_ms, m.priority) == ("resnet50", 2.0, 50.0, 1)
    assert m.sla_multiple is None and m.size is None and m.classes == ()
    with pytest.raises(ValueError, match="sla_multiple"):
        ModelClass("x", sla_multiple=0.0)
    with pytest.raises(ValueError, match="unknown key"):
        mix_from_spec([{"name": "x", "sla": 3}])
    with pytest.raises(ValueError, match="unknown key"):
        mix_from_spec([{"name": "x", "classes": [{"prio": 1}]}])
    with pytest.raises(ValueError, match="weight"):
        RequestClass(weight=-1.0)


def test_arrivals_take_and_lengths() -> None:
    a = Poisson().sample(np.random.default_rng(0), zipf_mix(["a", "b"]), 100, 10.0)
    b = a.take(slice(10, 20))
    assert len(b) == 10 and np.array_equal(b.time_s, a.time_s[10:20]) and b.models == a.models
    with pytest.raises(ValueError, match="rows"):
        Arrivals(a.time_s, a.model[:5], a.size, a.sla_ms, a.priority)


def test_invalid_process_parameters() -> None:
    with pytest.raises(ValueError):
        Renewal(cv=-1.0)
    with pytest.raises(ValueError):
        MMPP2(high_fraction=1.0)
    with pytest.raises(ValueError):
        Diurnal(amplitude=1.5)
    with pytest.raises(ValueError):
        PiecewiseRate(levels=(1.0,), durations=(1.0, 2.0))
    with pytest.raises(ValueError, match="rate"):
        Renewal().sample(np.random.default_rng(0), ONE, 10, 0.0)


# ---------------------------------------------------------------------------------------------
# Presets and Hydra configs
# ---------------------------------------------------------------------------------------------


def test_presets_resolve_and_unknown_names_fail() -> None:
    for name in TRACE_PRESETS:
        assert isinstance(get_trace(name), TraceSource)
    src = Renewal(cv=2.0)
    assert get_trace(src) is src
    with pytest.raises(ValueError, match="unknown preset"):
        get_trace("no-such-trace")
    for required in ("poisson", "gamma-bursty", "mmpp", "diurnal", "flash-crowd", "azure-code",
                     "azure-conv", "servegen-m-large", "azure-code-test"):
        assert required in TRACE_PRESETS


def _yaml_kwargs(name: str) -> tuple[str, dict[str, object]]:
    cfg = yaml.safe_load((REPO / "conf" / "trace" / f"{name}.yaml").read_text())
    return cfg.pop("_target_"), cfg


@pytest.mark.parametrize("name", sorted(TRACE_PRESETS))
def test_every_preset_has_a_matching_hydra_config(name: str) -> None:
    target, kwargs = _yaml_kwargs(name)
    src = get_trace(name)
    assert target == f"traces.{type(src).__name__}"
    assert getattr(traces, type(src).__name__) is type(src)
    fields = {f.name for f in dataclasses.fields(src) if f.init}  # type: ignore[arg-type]
    assert set(kwargs) == fields, "config keys must be the constructor's parameters"
    built = type(src)(**kwargs)
    assert built == src


def test_hydra_instantiates_trace_configs() -> None:
    instantiate = pytest.importorskip("hydra.utils").instantiate
    omegaconf = pytest.importorskip("omegaconf")
    for name in ("step-schedule", "servegen-m-large", "azure-both-test", "mmpp"):
        cfg = omegaconf.OmegaConf.load(REPO / "conf" / "trace" / f"{name}.yaml")
        assert instantiate(cfg) == get_trace(name)


def test_no_stray_trace_configs() -> None:
    names = {p.stem for p in (REPO / "conf" / "trace").glob("*.yaml")}
    assert names == set(TRACE_PRESETS)


# ---------------------------------------------------------------------------------------------
# Bench hooks
# ---------------------------------------------------------------------------------------------


def test_bench_generation_reports_a_rate() -> None:
    by = traces.bench_generation_by_preset(n=50_000, repeats=1)
    assert set(by) == set(SYNTHETIC_PRESETS)
    assert all(v > 1e5 for v in by.values())
    assert traces.bench_generation(n=20_000, repeats=1) > 1e5
