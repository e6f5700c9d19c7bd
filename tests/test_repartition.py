"""ldsgym/Repartition-v0: reconfiguration costs and downtime, conservation, the oracle."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.evaluation import run_episode
from agents.misd_baselines import BestStaticInHindsight, static_score
from envs.repartition import RepartitionEnv, mps_share_vectors
from hwmodels.reconfig import ReconfigModel

ENV = "ldsgym/Repartition-v0"


def test_candidates_are_the_valid_layouts() -> None:
    env = gym.make(ENV).unwrapped
    assert env.n_layouts == 28 and env.n_slots == 7  # A100-80GB maximal MIG layouts
    assert env.candidates[env.start_index] == ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb")
    mps = gym.make(ENV, sharing="mps", layout=[50, 30, 20]).unwrapped
    assert len(mps.candidates) == len(mps_share_vectors(10, 4)) == 23
    assert all(sum(float(x[4:]) for x in c) == 100 for c in mps.candidates)
    assert mps.interference and not env.interference


def test_first_decision_is_free_then_switches_cost_downtime() -> None:
    env = gym.make(ENV, episode_queries=30_000, interval_s=0.5).unwrapped
    env.reset(seed=0)
    seven_g = env.candidates.index(("7g.80gb",))
    _, _, _, _, info = env.step(1 + seven_g)  # provisioning: no reconfiguration
    assert info["reconfigurations"] == 0 and info["downtime_s"] == 0
    assert info["layout"] == "7g.80gb" and info["completed"] > 0
    mask = env.action_masks()
    assert mask.all()
    back = env.start_index
    _, _, _, _, info = env.step(1 + back)
    assert info["reconfigurations"] == 1
    mask = env.action_masks()
    assert mask.sum() == 2 and mask[0] and mask[1 + back]  # only "keep" while switching


def test_changed_slices_serve_nothing_during_the_downtime() -> None:
    # 7g -> 1g x 7 changes every slice: with preemption nothing completes until they are up.
    env = gym.make(ENV, episode_queries=60_000, interval_s=0.25, reconfig_mode="preempt",
                   load=0.6).unwrapped
    env.reset(seed=1)
    env.step(1 + env.candidates.index(("7g.80gb",)))
    _, _, _, _, before = env.step(0)
    ones = env.candidates.index(("1g.10gb",) * 7)
    obs, _, _, _, info = env.step(1 + ones)
    sim = env.sim
    up = sim.reconfig_until
    assert up > sim.now  # still down after the interval (seconds of downtime)
    assert info["completed"] == before["completed"]  # the killed batch was handed back
    while sim.now + env.interval_s < up:
        assert obs["reconfig"][0] > 0
        obs, _, _, _, info = env.step(0)
        assert info["completed"] == before["completed"]
        assert not any(sim.busy)
    for _ in range(3):
        obs, _, _, _, info = env.step(0)
    assert info["completed"] > before["completed"] and obs["reconfig"][0] == 0


def test_sampled_downtime_averages_to_the_reconfig_model_mean() -> None:
    env = gym.make(ENV, episode_queries=100_000, interval_s=0.5, load=0.005,
                   reconfig_mode="preempt").unwrapped
    env.reset(seed=2)
    a = env.start_index
    b = env.candidates.index(("4g.40gb", "2g.20gb", "1g.10gb"))
    while len(env.reconfig_log) < 300:
        other = a if env._current == b else b
        _, _, _, trunc, _ = env.step(1 + other if env.action_masks().all() else 0)
        assert not trunc
    log = [s for _, s in env.reconfig_log]
    means = {round(m, 9) for m, _ in env.reconfig_log}
    rm = ReconfigModel(env.device)
    names = [env.candidates[a], env.candidates[b]]
    bundle = env._bundle_of(env.tables[a], 0)  # every slice holds every model here
    expected = {round(rm.mean(x, y, [bundle] * len(y), [bundle] * len(x), drain_s=0.0), 9)
                for x, y in (names, names[::-1])}
    assert means == expected
    assert np.mean(log) == pytest.approx(np.mean(sorted(expected)), rel=0.05)
    # Preempting: the changed slices go down at once, for exactly the sampled time.
    assert env.sim.downtime_s == pytest.approx(sum(s for _, s in env.reconfig_log))


def test_conservation_with_reconfigurations_every_step() -> None:
    # 80k queries: with the measured MIG instance costs (T162) a switch takes 3-9 s, so a
    # shorter episode may end inside the second one.
    env = gym.make(ENV, episode_queries=80_000, interval_s=0.2, load=1.2).unwrapped
    _, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    done = False
    while not done:
        assert info["arrived"] == info["completed"] + info["dropped"] + info["in_system"]
        assert info["good"] + info["late"] == info["completed"]
        valid = np.flatnonzero(env.action_masks())
        a = int(rng.choice(valid)) if rng.random() < 0.5 else 0
        _, _, term, trunc, info = env.step(a)
        done = term or trunc
    assert info["reconfigurations"] >= 2
    assert info["arrived"] == 80_000 == info["completed"] + info["dropped"]
    assert info["in_system"] == 0


def test_mps_repartitioning_with_interference() -> None:
    env = gym.make(ENV, sharing="mps", layout=[50, 30, 20], episode_queries=30_000,
                   interval_s=0.5).unwrapped
    env.reset(seed=4)
    target = env.candidates.index(("mps:40", "mps:30", "mps:20", "mps:10"))
    env.step(1 + env.candidates.index(("mps:100",)))
    _, _, _, _, info = env.step(1 + target)
    assert info["reconfigurations"] == 1
    done = False
    while not done:
        _, _, term, trunc, info = env.step(0)
        done = term or trunc
    assert info["in_system"] == 0 and info["completed"] > 10_000
    assert env.reconfig_log[0][0] == pytest.approx(ReconfigModel(env.device).mean(
        ["mps:100"], list(env.candidates[target]),
        [env._bundle_of(env.tables[target], i) for i in range(4)],
        [env._bundle_of(env.tables[env.candidates.index(("mps:100",))], 0)], drain_s=0.0))


def test_best_static_in_hindsight_picks_the_argmax() -> None:
    cands = [["7g"], ["3g", "2g", "1g", "1g"], ["1g"] * 7]
    env = gym.make(ENV, candidates=cands, episode_queries=20_000, interval_s=0.5, load=1.1)
    base: RepartitionEnv = env.unwrapped  # type: ignore[assignment]
    scores = [static_score(base, i, seed=5) for i in range(base.n_layouts)]
    assert len(set(scores)) == 3  # the layouts differ on this trace
    oracle = BestStaticInHindsight()
    result = run_episode(env, oracle, seed=5)
    assert oracle.scores == scores
    assert oracle.choice == int(np.argmax(scores))
    assert result["goodput"] == max(scores)
    assert result["reconfigurations"] == 0


def test_replayed_traces_keep_their_clock_by_default() -> None:
    from traces.replay import CsvReplay

    src = CsvReplay(path="unused.csv", rate_mode="compress")
    env = RepartitionEnv(trace=src, episode_queries=1000)
    assert env.trace.rate_mode == "scale"  # type: ignore[attr-defined]
    kept = RepartitionEnv(trace=src, episode_queries=1000, rate_mode=None)
    assert kept.trace.rate_mode == "compress"  # type: ignore[attr-defined]
    assert RepartitionEnv(trace="poisson", rate_mode="compress").trace == \
        RepartitionEnv(trace="poisson").trace  # synthetic sources ignore it
    with pytest.raises(ValueError, match="rate_mode must be"):
        RepartitionEnv(rate_mode="stretch")
    with pytest.raises(ValueError, match="episode_s must be > 0"):
        RepartitionEnv(episode_s=0)


def test_episode_s_sets_the_episode_length_in_seconds() -> None:
    env = RepartitionEnv(trace="mix-hourly", load=0.5, episode_s=6.0, interval_s=2.0)
    env.reset(seed=0)
    steps, trunc = 0, False
    while not trunc:
        _, _, _, trunc, info = env.step(0)
        steps += 1
    assert steps in (3, 4)  # the last arrival falls near 6 s
    assert info["arrived"] == int(np.ceil(6.0 * 0.5 * env.capacity_qps))
