"""A mixture of trace sources (``trace=mixture``): draws by weight, reproducibly, accepted by
every environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from traces import Mixture, get_trace, zipf_mix
from traces.paths import shared_dir

MIX = zipf_mix(["resnet50", "bert-base"], 1.0)


def test_each_episode_is_one_drawn_source_at_a_drawn_rate() -> None:
    m = Mixture(traces=("poisson", "gamma-bursty", "mmpp"), weights=(2, 1, 1),
                rate_scale=(0.5, 1.5))
    rng = np.random.default_rng(0)
    draws = [m.draw(rng) for _ in range(4000)]
    ks = np.bincount([k for k, _ in draws], minlength=3) / len(draws)
    assert ks == pytest.approx([0.5, 0.25, 0.25], abs=0.03)
    factors = np.array([f for _, f in draws])
    assert factors.min() >= 0.5 and factors.max() <= 1.5
    assert factors.mean() == pytest.approx(1.0, abs=0.03)
    # sample() is exactly: draw, then that source at the scaled rate, from the same generator.
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    got = m.sample(rng_a, MIX, 3000, 100.0)
    k, f = m.draw(rng_b)
    want = get_trace(m.traces[k]).sample(rng_b, MIX, 3000, 100.0 * f)
    assert np.array_equal(got.time_s, want.time_s) and np.array_equal(got.model, want.model)
    assert len(got) / got.time_s[-1] == pytest.approx(100.0 * f, rel=0.15)


def test_a_fixed_factor_and_equal_weights() -> None:
    m = Mixture(traces=("poisson", "diurnal"), rate_scale=(0.8, 0.8))
    assert m.probabilities.tolist() == [0.5, 0.5]
    assert {m.draw(np.random.default_rng(s))[1] for s in range(20)} == {0.8}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"traces": ()}, "at least one"),
    ({"traces": ("poisson", "nope")}, "unknown preset 'nope'"),
    ({"traces": ("mixture",)}, "is a mixture itself"),
    ({"traces": ("poisson",), "weights": (1, 2)}, "2 weights for 1 traces"),
    ({"traces": ("poisson", "mmpp"), "weights": (0, 0)}, "not all 0"),
    ({"traces": ("poisson",), "rate_scale": (1.2, 0.8)}, "0 < lo <= hi"),
    ({"traces": ("poisson",), "rate_scale": (0.0, 1.0)}, "0 < lo <= hi"),
])
def test_bad_mixtures_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mixture(**kwargs)


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-v0", "ldsgym/Repartition-v0",
                                    "ldsgym/ShardRouting-v0", "ldsgym/ShardPlacement-v0"])
def test_every_base_env_takes_the_mixture(env_id: str) -> None:
    kwargs = {"episode_queries": 2000} if "Repartition" in env_id else {}
    env = gym.make(env_id, trace="mixture", **kwargs)
    seen = []
    for seed in (1, 2):
        _, info = env.reset(seed=seed)
        for _ in range(20):
            valid = np.flatnonzero(env.unwrapped.action_masks())
            _, _, term, trunc, info = env.step(int(valid[0]))
            if term or trunc:
                break
        seen.append(info["arrived"])
    env.reset(seed=1)  # the same seed, the same episode
    for _ in range(20):
        valid = np.flatnonzero(env.unwrapped.action_masks())
        _, _, term, trunc, info = env.step(int(valid[0]))
        if term or trunc:
            break
    assert info["arrived"] == seen[0]


@pytest.mark.skipif(shared_dir() is None, reason="needs ../shared (the real traces)")
def test_the_real_mixture_replays_training_windows() -> None:
    m = get_trace("mixture-real")
    assert isinstance(m, Mixture)
    assert all(not t.endswith("-test") for t in m.traces)
    rng = np.random.default_rng(3)
    for _ in range(6):
        a = m.sample(rng, MIX, 500, 200.0)
        assert len(a) == 500 and np.all(np.diff(a.time_s) >= 0)
