"""The fast paths of the MISD simulators equal the plain ones they stand for, exactly."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.repartition import _NamedReconfigModel
from envs.sim.device.tables import CoRunnerSlowdowns
from hwmodels.interference import InterferenceModel
from hwmodels.partitions import make_layout
from hwmodels.reconfig import ReconfigModel
from hwmodels.specs import load_device
from hwmodels.workloads import build_profile

NAMES = ["resnet50", "mobilenet_v2", "bert-base"]


@pytest.mark.parametrize(("hw", "layout", "isolated"), [
    ("a100-80gb", ["mps:40", "mps:30", "mps:15", "mps:15"], True),
    ("a100-80gb", ["ts:3"], True),
    ("a100-80gb", ["3g", "2g", "1g", "1g"], False),
    ("xeon-8380h-4s", ["mps:50", "mps:50"], True),
])
def test_predicted_is_the_slowdown_with_the_job_placed(hw: str, layout: list[str],
                                                       isolated: bool) -> None:
    dev = load_device(hw)
    profiles = [build_profile(n) for n in NAMES]
    parts = make_layout(dev, layout)
    fast = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {3: parts},
                             isolated_mig=isolated)
    plain = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {3: parts},
                              isolated_mig=isolated)
    model = InterferenceModel(dev)
    rng = np.random.default_rng(1)
    P = len(parts)
    for _ in range(300):
        jobs = tuple(None if rng.random() < 0.3 else (int(rng.integers(3)),
                                                       int(rng.integers(1, 9)))
                     for _ in range(P))
        job = (int(rng.integers(3)), int(rng.integers(1, 9)))
        active = [bool(rng.random() < 0.9) for _ in range(P)]
        got = fast.predicted(3, jobs, job, active)
        want = []
        for p in range(P):
            placed = list(jobs)
            placed[p] = job
            want.append(plain(3, tuple(placed))[p] if active[p] else 1.0)
        assert got == want
        # Both orders of asking (the cache of sums is shared) give the reference's floats.
        ref = model.slowdowns(parts, [None if j is None else (profiles[j[0]], j[1])
                                      for j in jobs])
        assert fast(3, jobs) == ref.tolist()


def _episode(env_id: str, seed: int, wrap: bool, **kwargs: Any) -> list[Any]:
    env = gym.make(env_id, episode_queries=600, **kwargs).unwrapped
    if wrap:  # a slowdown callable without `predicted`: the simulator asks slot by slot
        inner = env._slowdowns
        env._slowdowns = lambda lid, jobs: inner(lid, jobs)
    obs, _ = env.reset(seed=seed)
    out = []
    done = False
    i = 0
    while not done:
        valid = np.flatnonzero(env.action_masks())
        obs, r, _, done, info = env.step(int(valid[(i * 5) % len(valid)]))
        out.append((r, sorted(info.items()), [v.tobytes() for v in obs.values()]))
        i += 1
    return out


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-MPS-v0",
                                    "ldsgym/PartitionPlacement-Prio-v0"])
def test_one_pass_prediction_equals_asking_per_slot(env_id: str) -> None:
    assert _episode(env_id, 4, False) == _episode(env_id, 4, True)


@pytest.mark.parametrize("kwargs", [
    {},
    {"layout": ["mps:40", "mps:30", "mps:15", "mps:15"], "placement": "interference_aware"},
])
def test_interval_router_equals_route(kwargs: dict[str, Any]) -> None:
    def run(fast: bool) -> list[Any]:
        env = gym.make("ldsgym/Repartition-v0", episode_queries=12_000, **kwargs).unwrapped
        if not fast:
            env._router = lambda: env._route_counted
        env.reset(seed=2)
        out = []
        for i in range(4):
            mask = env.action_masks()
            valid = np.flatnonzero(mask)
            obs, r, _, trunc, info = env.step(int(valid[(i * 3) % len(valid)]))
            out.append((r, sorted(info.items()), [v.tobytes() for v in obs.values()]))
            if trunc:
                break
        return out

    assert run(True) == run(False)


def test_named_reconfig_steps_equal_the_model() -> None:
    dev = load_device("a100-80gb")
    profiles = [build_profile(n) for n in NAMES]
    cached, plain = _NamedReconfigModel(dev), ReconfigModel(dev)
    cases = [(["3g", "2g", "1g", "1g"], ["4g", "2g", "1g"], profiles[:3], None),
             (["3g", "2g", "1g", "1g"], ["3g", "2g", "1g", "1g"], [*profiles, profiles[0]],
              [*profiles, profiles[1]]),
             (["7g"], ["3g", "3g"], [profiles[0], None], [profiles[2]])]
    for _ in range(2):  # the second round is answered from the cache
        for old, new, models, old_models in cases:
            assert (cached.steps(old, new, models, old_models, drain_s=0.0)
                    == plain.steps(old, new, models, old_models, drain_s=0.0))
            rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
            assert (cached.sample(rng_a, old, new, models, old_models)
                    == plain.sample(rng_b, old, new, models, old_models))


@pytest.mark.parametrize("layout", [["mps:40", "mps:30", "mps:15", "mps:15"], ["ts:3"]])
def test_inlined_sums_equal_sum(layout: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import envs.sim.device.tables as misd

    dev = load_device("a100-80gb")
    profiles = [build_profile(n) for n in NAMES]
    parts = make_layout(dev, layout)
    rng = np.random.default_rng(2)
    jobs_list = [tuple(None if rng.random() < 0.3 else (int(rng.integers(3)),
                                                         int(rng.integers(1, 9)))
                       for _ in parts) for _ in range(200)]

    def run() -> list[list[float]]:
        s = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {0: parts})
        return ([s(0, j) for j in jobs_list]
                + [s.predicted(0, j, (1, 1), [True] * len(parts)) for j in jobs_list])

    inlined = run()
    monkeypatch.setattr(misd, "_PLAIN_SUM", False)  # the path for Pythons whose sum() differs
    assert run() == inlined


@pytest.mark.parametrize(("hw", "layout", "sigma"), [
    ("a100-80gb", ["mps:40", "mps:30", "mps:15", "mps:15"], None),
    ("a100-80gb", ["mps:40", None, "mps:30", None], None),
    ("a100-80gb", ["mps:40", "mps:30", "mps:15", "mps:15"], 0.05),
    ("xeon-8380h-4s", ["mps:50", "mps:50"], None),
    ("xeon-8380h-4s", ["mps:20", "mps:30", "mps:50"], 0.02),
])
def test_mps_fast_path_equals_the_generic_one(hw: str, layout: list[str | None],
                                              sigma: float | None) -> None:
    """The fused paths for layouts of MPS shares (and empty slots) give the generic path's
    floats, in any order of asking (the sums kept for the last running set included)."""
    dev = load_device(hw)
    if sigma is not None:  # the stretch's contention terms
        dev = dataclasses.replace(dev, sm_contention=sigma)
    profiles = [build_profile(n) for n in NAMES]
    made = iter(make_layout(dev, [x for x in layout if x is not None]))
    parts = [None if x is None else next(made) for x in layout]
    fast = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {3: parts})
    plain = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {3: parts})
    plain._fused[3] = None  # the generic path
    assert fast._mps_info(3) is not None
    rng = np.random.default_rng(7)
    P = len(parts)
    for _ in range(400):
        jobs = tuple(None if x is None or rng.random() < 0.3
                     else (int(rng.integers(3)), int(rng.integers(1, 9))) for x in layout)
        if rng.random() < 0.7:
            assert fast(3, jobs) == plain(3, jobs)
        for _ in range(int(rng.integers(0, 4))):
            job = (int(rng.integers(3)), int(rng.integers(1, 9)))
            active = None if rng.random() < 0.3 else [bool(rng.random() < 0.9)
                                                      for _ in range(P)]
            assert fast.predicted(3, jobs, job, active) == plain.predicted(3, jobs, job, active)
    copied = pickle.loads(pickle.dumps(fast))
    assert copied._last_sums is None and copied(3, jobs) == fast(3, jobs)
    del copied.__dict__["_fused"]  # as pickled before the fused paths
    again = pickle.loads(pickle.dumps(copied))
    assert again(3, jobs) == fast(3, jobs)
