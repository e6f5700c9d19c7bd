"""Repartition-v0's opt-in clock observation (``time_obs``, ``clock_period_s``; issue 16)."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from traces.synthetic import MixShift

ENV = "ldsgym/Repartition-v0"
SWING = MixShift(durations=(5.0, 5.0), weights=((0.4, 0.4, 0.2), (0.15, 0.15, 0.7)),
                 repeat=True, time_unit="s")


def _episode(seed: int, actions: list[int], **kw: object) -> list[tuple]:
    env = gym.make(ENV, trace=SWING, load=1.0, episode_s=12.0, interval_s=1.0, **kw).unwrapped
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, info)]
    for a in actions:
        obs, r, _, trunc, info = env.step(a if env.action_masks()[a] else 0)
        out.append((obs, r, info))
        if trunc:
            break
    return out


def test_off_by_default_and_the_episode_is_unchanged_when_on() -> None:
    env = gym.make(ENV, episode_queries=2_000).unwrapped
    assert "time" not in env.observation_space.spaces and not env.time_obs
    obs, _ = env.reset(seed=0)
    assert "time" not in obs
    acts = [0, 2, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    off = _episode(3, acts)
    on = _episode(3, acts, time_obs=True, clock_period_s=10.0)
    assert len(off) == len(on) > 10
    for (o1, r1, i1), (o2, r2, i2) in zip(off, on, strict=True):
        assert set(o2) == set(o1) | {"time"}
        for k in o1:
            np.testing.assert_array_equal(o1[k], o2[k])
        assert r1 == r2 and i1 == i2


def test_clock_values_and_bounds() -> None:
    period = 4.0
    steps = _episode(1, [0] * 20, time_obs=True, clock_period_s=period)
    space = gym.make(ENV, time_obs=True).unwrapped.observation_space
    assert space["time"].shape == (3,)
    np.testing.assert_array_equal(space["time"].low, [0, -1, -1])
    np.testing.assert_array_equal(space["time"].high, [1, 1, 1])
    for k, (obs, _, _) in enumerate(steps):
        t = k * 1.0  # interval_s
        angle = 2 * math.pi * t / period
        np.testing.assert_allclose(obs["time"], [min(t / 12.0, 1.0), math.sin(angle),
                                                 math.cos(angle)], atol=1e-6)
        assert obs["time"].dtype == np.float32 and space["time"].contains(obs["time"])
    assert steps[-1][0]["time"][0] == 1.0  # clipped: the last interval may pass episode_s
    np.testing.assert_allclose(steps[0][0]["time"], [0.0, 0.0, 1.0])


def test_elapsed_fraction_of_an_episode_given_in_queries() -> None:
    env = gym.make(ENV, episode_queries=50_000, load=0.5, time_obs=True).unwrapped
    env.reset(seed=0)
    nominal = 50_000 / (0.5 * env.capacity_qps)
    assert env.nominal_episode_s == pytest.approx(nominal)
    obs, *_ = env.step(0)
    assert obs["time"][0] == pytest.approx(1.0 / nominal, rel=1e-6)


def test_clock_tells_the_phase_of_a_repeating_mix() -> None:
    # 5-s phases, period 10 s: the interval that starts at clock angle [0, pi) is light (the
    # heavy model 20% of the arrivals), at [pi, 2 pi) bert-heavy (70%).
    steps = _episode(0, [0] * 20, time_obs=True, clock_period_s=10.0)
    seen = set()
    for (prev, _, _), (obs, _, _) in itertools.pairwise(steps[:-1]):
        angle = math.atan2(float(prev["time"][1]), float(prev["time"][2])) % (2 * math.pi)
        heavy_phase = math.floor(angle / math.pi + 1e-4) % 2 == 1
        rates = obs["rates"].reshape(-1, 3)[-1]  # the interval just simulated
        share = rates[2] / rates.sum()
        assert (share > 0.55) if heavy_phase else (share < 0.35), (prev["time"], share)
        seen.add(heavy_phase)
    assert seen == {True, False}


@pytest.mark.parametrize("kw", [{"time_obs": "yes"}, {"time_obs": 1},
                                {"clock_period_s": 0.0}, {"clock_period_s": -5.0},
                                {"clock_period_s": float("inf")}, {"clock_period_s": float("nan")},
                                {"clock_period_s": "100"}, {"clock_period_s": True}])
def test_bad_clock_arguments_are_one_line(kw: dict) -> None:
    with pytest.raises(ValueError) as err:
        gym.make(ENV, **kw)
    msg = str(err.value)
    assert "\n" not in msg and ("time_obs" in msg or "clock_period_s" in msg)
