"""PartitionPlacement's ``drain_weight``: the last reward charges the episode's drain (the time
from the last arrival to the last completion, which ``goodput`` divides by), so that the
return sees what the metric sees. Default 0: the rewards are unchanged."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.device import compiled

ENV = "ldsgym/PartitionPlacement-v0"


def _episode(w: float, seed: int, env_id: str = ENV) -> tuple[list[float], float, dict]:
    """Always the first valid partition (piles work on the big slice: a long drain)."""
    env = gym.make(env_id, load=1.0, episode_queries=300, drain_weight=w).unwrapped
    env.reset(seed=seed)
    rewards, done, t_last, info = [], False, 0.0, {}
    while not done:
        t_last = env.sim.events.now  # the clock at this decision (the last one: the last arrival)
        a = int(np.flatnonzero(env.action_masks())[0])
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
        done = term or trunc
    return rewards, t_last, info


@pytest.mark.parametrize("env_id", [ENV, "ldsgym/PartitionPlacement-MPS-v0"])
def test_the_last_reward_charges_good_times_drain_over_the_end(env_id: str) -> None:
    r0, t_last, info0 = _episode(0.0, 3, env_id)
    r1, _, info1 = _episode(1.0, 3, env_id)
    r2, _, _ = _episode(2.0, 3, env_id)
    assert info1 == info0  # the dynamics and metrics do not change
    assert r1[:-1] == r0[:-1]  # only the episode's last reward does
    end, good = info0["sim_time_s"], info0["good"]
    drain = end - t_last
    assert drain > 1e-3 and good > 50  # a real drain to charge
    charge = good * drain / end
    assert r1[-1] == pytest.approx(r0[-1] - charge, abs=1e-9)
    assert r2[-1] == pytest.approx(r0[-1] - 2 * charge, abs=1e-9)
    # With weight 1 the in-SLA count is charged down to goodput x (time of the last arrival).
    assert good - charge == pytest.approx(info0["goodput"] * t_last, rel=1e-12)


def test_rollout_and_the_compiled_episode_return_the_same_charged_return() -> None:
    r1, _, _ = _episode(1.0, 5)
    env = gym.make(ENV, load=1.0, episode_queries=300, drain_weight=1.0).unwrapped
    first = [int(np.flatnonzero(m)[0]) for m in env.action_mask_table()]
    out = env.rollout(lambda k, x: first[k], seed=5)
    assert out["episode_return"] == pytest.approx(sum(r1), abs=1e-9)
    if not env.compiles:
        pytest.skip("numba not available")
    # The compiled path: its return with the charge minus without it is the charge.
    plain = gym.make(ENV, load=1.0, episode_queries=300).unwrapped
    a, _ = env.run_compiled(compiled.RULE_LEAST_LOADED, seed=5)
    b, _ = plain.run_compiled(compiled.RULE_LEAST_LOADED, seed=5)
    end, good = b["sim_time_s"], b["good"]
    last = float(plain.sim.trace_times_s[-1])
    assert end - last > 0
    assert a["episode_return"] == pytest.approx(b["episode_return"] - good * (end - last) / end,
                                                abs=1e-9)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_weight_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match="drain_weight"):
        gym.make(ENV, drain_weight=bad)
