"""Row popularity calibration (envs/sim/dlrm/skew.py) and the vectorised row caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs.sim.dlrm.rowcache import LfuRowCache, LruRowCache
from envs.sim.dlrm.skew import (
    FITTED,
    LOCALITY_TARGETS,
    REFERENCE_ROWS,
    expected_reuse,
    fit_zipf,
    load_locality_targets,
    measured_reuse,
    sample_ranks,
)
from hwmodels.storage import EmbeddingCache

DATA = Path(__file__).resolve().parents[2] / "shared" / "traces" / "dlrm-embedding-locality"


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/traces not present")
def test_stored_targets_are_the_files_statistics() -> None:
    parsed = load_locality_targets(DATA)
    assert set(parsed) == {"2021", "2022"}
    for year, stats in parsed.items():
        assert stats.frac_once == pytest.approx(LOCALITY_TARGETS[year].frac_once, abs=1e-5)
        assert stats.mean_hits == pytest.approx(LOCALITY_TARGETS[year].mean_hits, abs=1e-4)
        assert len(stats.hist) == 17 and stats.hist[0] == pytest.approx(stats.frac_once, abs=1e-5)


def test_stored_fit_is_reproduced() -> None:
    fit = FITTED["all"]
    f1 = np.mean([LOCALITY_TARGETS[y].frac_once for y in ("2021", "2022")])
    m = np.mean([LOCALITY_TARGETS[y].mean_hits for y in ("2021", "2022")])
    assert (fit.target_frac_once, fit.target_mean_hits) == pytest.approx((f1, m), abs=1e-4)
    again = fit_zipf(fit.target_frac_once, fit.target_mean_hits)
    assert again.alpha == pytest.approx(fit.alpha, abs=2e-3)
    assert again.window == pytest.approx(fit.window, rel=5e-3)


@pytest.mark.parametrize("name", ["2021", "2022", "all"])
def test_fitted_law_matches_the_measured_reuse(name: str) -> None:
    fit = FITTED[name]
    f1, m = expected_reuse(fit.alpha, fit.window, REFERENCE_ROWS)
    assert f1 == pytest.approx(fit.target_frac_once, abs=2e-3)
    assert m == pytest.approx(fit.target_mean_hits, rel=2e-3)


def test_sampled_streams_have_the_expected_reuse() -> None:
    """The sampler the simulator uses produces the statistics the calibration predicts."""
    fit = FITTED["all"]
    rows = 2**18
    ids = sample_ranks(np.random.default_rng(0), np.full(int(fit.window * rows), rows),
                       fit.alpha)
    got = measured_reuse(ids)
    f1, m = expected_reuse(fit.alpha, fit.window, rows)
    assert got.frac_once == pytest.approx(f1, abs=5e-3)
    assert got.mean_hits == pytest.approx(m, rel=1e-2)
    # single precision (the simulator's fast path) draws from the same law
    ids32 = sample_ranks(np.random.default_rng(1), np.full(200_000, rows), fit.alpha,
                         single=True)
    ids64 = sample_ranks(np.random.default_rng(1), np.full(200_000, rows), fit.alpha)
    assert np.mean(ids32 < 100) == pytest.approx(np.mean(ids64 < 100), abs=5e-3)


def test_lru_matches_the_reference_cache_lookup_for_lookup() -> None:
    rng = np.random.default_rng(1)
    ids = sample_ranks(rng, np.full(20_000, 5000), 0.98)
    ref = EmbeddingCache(300, "lru").access(ids)
    cache = LruRowCache(5000, 300)
    mine = [cache.access(np.array([i]), np.array([1]))[0] == 1 for i in ids]
    assert np.array_equal(ref, np.array(mine))


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_batched_caches_track_the_reference(policy: str) -> None:
    rng = np.random.default_rng(2)
    ids = sample_ranks(rng, np.full(40_000, 5000), 0.98)
    ref = EmbeddingCache(300, policy).access(ids).mean()
    cache = LruRowCache(5000, 300) if policy == "lru" else LfuRowCache(5000, 300)
    hits = 0
    for j in range(0, len(ids), 128):
        keys, counts = np.unique(ids[j:j + 128], return_counts=True)
        hits += cache.access(keys, counts)[0]
    assert hits / len(ids) == pytest.approx(ref, abs=0.02)
    assert cache.size <= 300


def test_hit_rate_rises_with_skew() -> None:
    rates = []
    for alpha in (0.6, 0.8, FITTED["all"].alpha, 1.2):
        ids = sample_ranks(np.random.default_rng(3), np.full(60_000, 50_000), alpha)
        cache = LruRowCache(50_000, 2000)
        hits = 0
        for j in range(0, len(ids), 256):
            keys, counts = np.unique(ids[j:j + 256], return_counts=True)
            hits += cache.access(keys, counts)[0]
        rates.append(hits / len(ids))
    assert rates == sorted(rates) and rates[-1] - rates[0] > 0.3


def test_warm_start_and_clear() -> None:
    cache = LruRowCache(100, 10)
    cache.warm(np.arange(20))
    assert cache.size == 10
    hits, misses = cache.access(np.array([0, 50]), np.array([3, 1]))
    assert (hits, misses) == (3, 1)
    cache.clear()
    assert cache.size == 0 and cache.access(np.array([0]), np.array([1])) == (0, 1)


def test_simulated_cache_hit_rate_rises_with_skew() -> None:
    import gymnasium as gym

    import envs  # noqa: F401

    rates = []
    for alpha in (0.8, "all", 1.2):
        env = gym.make("ldsgym/ShardRouting-v0", alpha=alpha, episode_queries=400,
                       stragglers=None).unwrapped
        env.reset(seed=0)
        while env.sim.pending is not None:
            env.step(int(np.flatnonzero(env.action_masks())[0]))
        rates.append(env._info()["cache_hit_rate"])
    assert rates == sorted(rates) and rates[-1] - rates[0] > 0.2
