"""Every registered environment: checkers, determinism, pickling, conservation, masks."""

from __future__ import annotations

import pickle
import random
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from agents.baselines import BASELINES, baselines_for, env_family
from agents.evaluation import masks_of, run_episode
from envs.wrappers import NearestValidAction

ENV_IDS = envs.registered_ids()
SMALL = {"episode_queries": 150}
#: Environments that decide per time interval, not per query: short intervals so that 150
#: queries make a long episode (their ``episode_queries`` counts arrivals, not decisions).
INTERVAL_FAMILIES = {"Repartition": {"interval_s": 1e-4}}


def _kw(env_id: str, **kwargs: object) -> dict[str, object]:
    """``kwargs`` plus the family's extra test arguments."""
    return {**kwargs, **INTERVAL_FAMILIES.get(env_family(env_id), {})}


def test_registry_has_the_fixed_ids() -> None:
    assert "ldsgym/PartitionPlacement-v0" in ENV_IDS
    assert all(i.startswith("ldsgym/") for i in ENV_IDS)
    assert len(ENV_IDS) >= 3  # base id + hardware presets


# The checkers sample from the whole action space; the envs refuse masked actions
# (envs/actions.py), so the checkers step them through the explicit substitute.
@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
def test_gymnasium_checker(env_id: str) -> None:
    env = gym.make(env_id, **_kw(env_id, **SMALL))
    gym_check_env(NearestValidAction(env.unwrapped), skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_checker(env_id: str) -> None:
    sb3_check_env(NearestValidAction(gym.make(env_id, **_kw(env_id, **SMALL)).unwrapped),
                  warn=True)


def _rollout(env: gym.Env, seed: int, n: int, disturb: bool = False) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)  # the action sequence, independent of the env
    out = []
    for _ in range(n):
        if disturb:  # global RNGs must not matter
            random.random()
            np.random.rand(7)
        mask = masks_of(env)
        a = int(rng.choice(np.flatnonzero(mask)))
        obs, r, term, trunc, info = env.step(a)
        out.append((a, r, term, trunc, {k: obs[k].tobytes() for k in obs},
                    tuple(sorted(info.items()))))
        if term or trunc:
            obs, _ = env.reset()
    return out


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    small = _kw(env_id, **SMALL)
    a = _rollout(gym.make(env_id, **small), seed=7, n=400)
    np.random.seed(999)
    random.seed(999)
    b = _rollout(gym.make(env_id, **small), seed=7, n=400, disturb=True)
    assert a == b
    c = _rollout(gym.make(env_id, **small), seed=8, n=400)
    assert a != c


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_mid_episode(env_id: str) -> None:
    env = gym.make(env_id, **_kw(env_id, **SMALL)).unwrapped
    env.reset(seed=3)
    for _ in range(40):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(60):
        valid = np.flatnonzero(env.action_masks())
        a = int(valid[-2] if len(valid) > 1 else valid[0])  # ShardPlacement: keep may be all
        o1, r1, t1, u1, i1 = env.step(a)
        o2, r2, t2, u2, i2 = clone.step(a)
        assert r1 == r2 and t1 == t2 and u1 == u2 and i1 == i2
        assert all(np.array_equal(o1[k], o2[k]) for k in o1)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("load", [0.5, 1.3])
def test_conservation_every_step(env_id: str, load: float) -> None:
    env = gym.make(env_id, **_kw(env_id, episode_queries=500, load=load))
    per_query = env_family(env_id) not in INTERVAL_FAMILIES
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    done = False
    steps = 0
    while not done:
        assert info["arrived"] == info["completed"] + info["dropped"] + info["in_system"]
        if per_query:
            assert info["arrived"] == steps + 1  # the pending query has arrived
        assert info["good"] + info["late"] == info["completed"]
        mask = masks_of(env)
        _obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        steps += 1
        done = term or trunc
    # After the last decision the system drains: nothing is left in it.
    assert info["arrived"] == 500 == info["completed"] + info["dropped"]
    assert info["in_system"] == 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_masks_never_empty_and_obs_in_space(env_id: str) -> None:
    env = gym.make(env_id, **_kw(env_id, **SMALL))
    obs, _ = env.reset(seed=5)
    for _ in range(150):
        mask = masks_of(env)
        assert mask.dtype == bool and mask.shape == (env.action_space.n,)
        assert mask.any()
        assert env.observation_space.contains(obs)
        obs, _, term, trunc, _ = env.step(int(np.flatnonzero(mask)[0]))
        if term or trunc:
            break


def test_masks_forbid_models_that_do_not_fit() -> None:
    # GPT-2 XL in fp32 (6.2 GB + headroom) fits a 20 GB 4g slice of an A100-40GB, not a 1g.5gb.
    from hwmodels.specs import load_device

    a100_40 = load_device("a100-80gb").replace(name="A100-40GB", mem_gb=40.0, mig="a100-40gb")
    env = gym.make("ldsgym/PartitionPlacement-v0", hw=a100_40,
                   layout=["4g.20gb", "1g.5gb", "1g.5gb"], precision="fp32",
                   workload=[{"name": "resnet50", "sla_ms": 15},
                             {"name": "gpt2-xl-decode", "sla_ms": 100}], **SMALL).unwrapped
    env.reset(seed=0)
    fits = np.array(env._fits)
    assert fits.tolist() == [[True, True], [True, False], [True, False]]
    seen_masked = False
    for _ in range(150):
        mask = env.action_masks()
        m = env.sim.pending_model()
        assert np.array_equal(mask[:-1], fits[:, m]) and mask[-1]
        seen_masked |= not mask[:-1].all()
        env.step(int(np.flatnonzero(mask)[0]))
        if env.sim.pending is None:
            break
    assert seen_masked


BASELINE_CASES = [(e, n) for e in ENV_IDS for n in sorted(baselines_for(e))]


def test_every_env_family_has_baselines() -> None:
    assert all(baselines_for(e) for e in ENV_IDS)


#: Baselines that simulate every candidate layout at each decision (the hindsight oracles
#: replay the whole episode per layout): 50 queries, still 90-200 interval decisions each
#: (1-3.5 s -> 0.3-1.4 s a case on 2 cores).
SLOW_BASELINES = {"best_static_hindsight", "interval_hindsight", "greedy"}


@pytest.mark.parametrize("env_id, name", BASELINE_CASES)
def test_baselines_never_pick_masked_actions(env_id: str, name: str) -> None:
    queries = 50 if name in SLOW_BASELINES else SMALL["episode_queries"]
    env = gym.make(env_id, **_kw(env_id, episode_queries=queries))
    result = run_episode(env, baselines_for(env_id)[name](), seed=11)  # raises if masked
    if env_family(env_id) in INTERVAL_FAMILIES:
        assert result["steps"] >= 1 and result["arrived"] == queries
    else:
        assert result["steps"] >= queries


def test_step_before_reset_and_bad_action_raise() -> None:
    env = gym.make("ldsgym/PartitionPlacement-v0", **SMALL).unwrapped
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(env.action_space.n + 3)


@pytest.mark.parametrize("kwargs, needle", [
    ({"layout": ["4g.40gb", "4g.40gb"]}, "impossible"),
    ({"layout": ["9g"]}, "does not exist"),
    ({"hw": "no-such-gpu"}, "unknown device"),
    ({"workload": [{"name": "resnet51", "sla_ms": 10}]}, "unknown model"),
    ({"workload": "nope"}, "unknown preset"),
    ({"load": -1}, "load"),
    ({"reward": "nope"}, "reward"),
])
def test_bad_arguments_name_the_problem(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        gym.make("ldsgym/PartitionPlacement-v0", **kwargs)


def test_heuristic_ordering_makes_sense() -> None:
    """The informed heuristics beat the blind ones at high load (a sanity check of the model)."""
    from agents.evaluation import evaluate, summary_rows

    names = ["random", "least_loaded", "shortest_finish"]
    res = evaluate(lambda: gym.make("ldsgym/PartitionPlacement-v0", load=1.0,
                                    episode_queries=600),
                   {n: BASELINES[n]() for n in names}, seeds=[1, 2], progress=False)
    att = {r["policy"]: r["sla_attainment"] for r in summary_rows(res)}
    assert att["shortest_finish"] > att["least_loaded"] > att["random"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickles_small(env_id: str) -> None:
    """Large simulator arrays (row caches, trace columns) pickle compressed and scratch buffers
    not at all, so a worker gets a fresh env in well under 2 MB (ShardRouting: 20 MB before)."""
    env = gym.make(env_id, **_kw(env_id)).unwrapped
    env.reset(seed=0)
    assert len(pickle.dumps(env)) < 2_000_000


def _pickles_small_and_goes_on_alike(env: Any, seed: int, steps: int, after: int) -> None:
    """``steps`` random valid steps, a pickle under 2 MB, then the copy and the original take
    the same ``after`` actions with identical masks, observations, rewards, flags and info."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    blob = pickle.dumps(env)
    assert len(blob) < 2_000_000
    clone = pickle.loads(blob)
    for _ in range(after):
        a = int(rng.choice(np.flatnonzero(env.action_masks())))
        assert np.array_equal(env.action_masks(), clone.action_masks())
        o1, r1, t1, u1, i1 = env.step(a)
        o2, r2, t2, u2, i2 = clone.step(a)
        assert r1 == r2 and t1 == t2 and u1 == u2 and i1 == i2
        assert all(np.array_equal(o1[k], o2[k]) for k in o1)
        if t1 or u1:
            break


@pytest.mark.expensive
def test_the_largest_env_pickles_under_2_mb_after_5000_steps() -> None:
    """ShardRouting-64N after 5,000 steps (64 row caches of about 12,000 resident rows each):
    1.93 MB with the caches' state and the sub-request table xz-compressed, the scratch
    buffers left out and the warm-up rows compressed (2.56 MB with the table unpacked and the
    caches bz2-compressed); the copy goes on as the original."""
    env = gym.make("ldsgym/ShardRouting-64N-v0", episode_queries=6_000).unwrapped
    _pickles_small_and_goes_on_alike(env, seed=0, steps=5_000, after=40)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickles_small_mid_episode(env_id: str) -> None:
    """Mid-episode too: the row caches pickle only their resident rows and the sub-requests
    in the system their rows compactly (ShardPlacement: 9.3 MB after 5,000 steps before, 0.8
    MB now), and the copy goes on exactly as the original."""
    env = gym.make(env_id, **_kw(env_id, episode_queries=600)).unwrapped
    _pickles_small_and_goes_on_alike(env, seed=1, steps=500, after=80)
