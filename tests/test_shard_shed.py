"""``deadline_shed``: latency_greedy with admission control on ShardRouting (issue 18)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.evaluation import run_episode
from agents.shard_baselines import SHARD_BASELINES, DeadlineShed, LatencyGreedy

ENV = "ldsgym/ShardRouting-RequestAware-v0"


def _obs(finish: list[float], critical: float) -> dict[str, np.ndarray]:
    n = len(finish)
    return {"queue": np.zeros(n, np.float32), "finish": np.asarray(finish, np.float32),
            "request": np.array([0.5, critical], np.float32)}


def test_sheds_only_a_request_predicted_late_and_only_where_allowed() -> None:
    pol = DeadlineShed(threshold=0.7)
    mask = np.array([True, True, False, True])  # nodes 0, 1 hold the shard; shed allowed
    assert pol.act(_obs([0.9, 0.5, 0.1], 0.2), mask) == 1  # node 1 makes it: greedy's pick
    assert pol.act(_obs([0.9, 0.8, 0.1], 0.2), mask) == 3  # its best replica is past 0.7
    assert pol.act(_obs([0.1, 0.2, 0.1], 0.75), mask) == 3  # the request is late already
    no_shed = mask.copy()
    no_shed[-1] = False
    assert pol.act(_obs([0.9, 0.8, 0.1], 0.9), no_shed) == 1  # not allowed: latency_greedy


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_threshold_that_is_not_a_positive_number_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="deadline_shed: threshold"):
        DeadlineShed(threshold=bad)


def test_without_allow_shed_it_is_latency_greedy_step_for_step() -> None:
    a = run_episode(gym.make(ENV, load=1.1, episode_queries=1500), DeadlineShed(), seed=3)
    b = run_episode(gym.make(ENV, load=1.1, episode_queries=1500), LatencyGreedy(), seed=3)
    for key in ("good", "dropped", "completed", "episode_return", "p99_latency_ms"):
        assert a[key] == b[key], key
    assert "deadline_shed" in SHARD_BASELINES


def test_under_overload_shedding_lost_requests_serves_more_requests_in_time() -> None:
    """At 110% load on a few seeds: it sheds, every sub-request is still accounted for, and
    more requests finish within their SLA than with latency_greedy on the same arrivals."""
    good = {"greedy": 0, "shed": 0}
    for seed in (5, 6, 7):
        for name, pol in (("greedy", LatencyGreedy()), ("shed", DeadlineShed())):
            env = gym.make(ENV, load=1.1, episode_queries=2000, allow_shed=True)
            r = run_episode(env, pol, seed=seed)
            assert r["arrived"] == r["completed"] + r["dropped"] + r["in_system"]
            good[name] += r["requests_good"]
            if name == "shed":
                assert r["dropped_rejected"] > 0
            else:
                assert r["dropped_rejected"] == 0
    assert good["shed"] > 1.05 * good["greedy"]


def test_the_simd_shed_experiment_allows_shedding_and_clones_deadline_shed() -> None:
    from hydra import compose, initialize_config_dir

    from experiments.common import CONF_DIR
    from experiments.warm_start import warm_start_settings

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["experiment=simd_shed"])
    assert cfg.env.id == ENV and cfg.env.kwargs.allow_shed is True
    ws = warm_start_settings(cfg, ENV)
    assert ws is not None and ws.teacher == "deadline_shed"
    assert "deadline_shed" in SHARD_BASELINES
