"""ClusterRouting's compiled path (envs.sim.cluster.kernels, numpy mirrors refreshed only for
the devices that ran) against its Python path (every device moved to every decision, every
feature computed slot by slot from the device simulators).

The Python path is the reference: every observation, action mask, reward and ``info`` of whole
episodes, drain included, must be equal (not close) on both.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from envs.cluster import ClusterRoutingEnv
from envs.sim.cluster import kernels

needs_jit = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing or LDSGYM_NO_JIT set")

REWARD = {"name": "goodput", "energy_weight": 0.01, "cost_weight": 1000.0,
          "backlog_weight": 1.0}


def _assert_same_step(a: tuple[Any, ...], b: tuple[Any, ...], k: int) -> None:
    (o1, r1, t1, u1, i1), (o2, r2, t2, u2, i2) = a, b
    assert o1.keys() == o2.keys()
    for key in o1:
        assert o1[key].dtype == o2[key].dtype and o1[key].shape == o2[key].shape
        np.testing.assert_array_equal(o1[key], o2[key], err_msg=f"step {k} obs {key}")
    assert r1 == r2, f"step {k} reward {r1} != {r2}"
    assert (t1, u1) == (t2, u2), f"step {k} flags"
    assert i1 == i2, f"step {k} info"


def _lockstep(py: ClusterRoutingEnv, jit: ClusterRoutingEnv, rng: np.random.Generator,
              steps: int | None = None, reject_every: int = 0) -> int:
    """Step both envs with the same random valid actions until the episode ends (or
    ``steps``); returns the steps taken."""
    k = 0
    while steps is None or k < steps:
        m1, m2 = py.action_masks(), jit.action_masks()
        np.testing.assert_array_equal(m1, m2, err_msg=f"step {k} mask")
        a = int(py.action_space.n - 1) if reject_every and k % reject_every == 0 else \
            int(rng.choice(np.flatnonzero(m1)))
        a1, a2 = py.step(a), jit.step(a)
        _assert_same_step(a1, a2, k)
        k += 1
        if a1[2] or a1[3]:
            break
    return k


@needs_jit
@pytest.mark.parametrize(("seed", "kwargs"), [
    (0, {"cluster": "8", "load": 1.1, "episode_queries": 3000}),
    (1, {"cluster": "16", "load": 0.5, "episode_queries": 2500, "reward": REWARD,
         "decision_credit": 1.0}),
    (2, {"cluster": "64", "load": 1.3, "episode_queries": 2500, "queue_capacity": 6,
         "max_batch": 4, "reward": REWARD}),
    (3, {"cluster": "8", "load": [0.6, 1.4], "episode_queries": 2000, "drop_expired": False,
         "interference": False, "decision_credit": 0.5}),
    (4, {"hw": "t4", "load": 0.9, "episode_queries": 2000}),
])
def test_compiled_episodes_equal_the_python_path(seed: int, kwargs: dict[str, Any]) -> None:
    py = ClusterRoutingEnv(compiled=False, **kwargs)
    jit = ClusterRoutingEnv(compiled=True, **kwargs)
    assert not py.sim and not jit.sim
    for episode in range(2):  # a second episode: what one leaves behind must not matter
        o1, i1 = py.reset(seed=seed + 10 * episode)
        o2, i2 = jit.reset(seed=seed + 10 * episode)
        assert py.sim is not None and jit.sim is not None
        assert not py.sim.compiled and jit.sim.compiled
        _assert_same_step((o1, 0.0, False, False, i1), (o2, 0.0, False, False, i2), -1)
        rng = np.random.default_rng(seed)
        steps = _lockstep(py, jit, rng, reject_every=7 if seed == 0 else 0)
        assert steps == kwargs["episode_queries"]
        assert py.latency_counts() == jit.latency_counts()
        info = py.sim.summary()
        assert info == jit.sim.summary()
        assert info["loads"] > 0 and info["completed"] > 0 and info["in_system"] == 0


@needs_jit
def test_compiled_env_pickles_mid_episode() -> None:
    kwargs = {"cluster": "16", "load": 1.0, "episode_queries": 1500, "reward": REWARD}
    py = ClusterRoutingEnv(compiled=False, **kwargs)
    jit = ClusterRoutingEnv(compiled=True, **kwargs)
    py.reset(seed=5)
    jit.reset(seed=5)
    rng = np.random.default_rng(5)
    _lockstep(py, jit, rng, steps=600)
    jit2 = pickle.loads(pickle.dumps(jit))
    # A deep copy too (the simulator's row views of its mirrors must be views again).
    py3, jit3 = copy.deepcopy(py), copy.deepcopy(jit)
    assert _lockstep(py, jit2, rng) == 900
    assert _lockstep(py3, jit3, np.random.default_rng(5)) == 900


def test_the_default_path_follows_numba() -> None:
    env = ClusterRoutingEnv(episode_queries=10)
    env.reset(seed=0)
    assert env.compiled == kernels.AVAILABLE
    assert env.sim is not None and env.sim.compiled == kernels.AVAILABLE


def test_least_loaded_in_numpy_picks_what_the_rules_pick() -> None:
    """``ClusterLeastLoaded.act`` (compiled, or numpy without numba) and
    :func:`rules.least_loaded_of` (Python and compiled) against :func:`rules.least_loaded` over
    :func:`rules.least_loaded_keys` (the scalar reference), with ties and empty masks."""
    from agents.cluster_baselines import ClusterLeastLoaded
    from envs.sim.device import rules

    rng = np.random.default_rng(0)
    policy = ClusterLeastLoaded()
    for trial in range(3000):
        n = int(rng.integers(1, 40))
        queue = (rng.integers(0, 4, n) / 8.0).astype(np.float32)  # ties are common
        busy = rng.choice([0.0, 1e-4, 0.3, 0.30000001, 10.0], n).astype(np.float32)
        if trial % 7 == 0:  # keys the vectorised rule declines or orders on bit patterns
            # (NaN only compiled: numpy's argmin, the fallback, takes a NaN as the minimum;
            # the env's rows are clipped, never NaN)
            odd = [-0.0, -1.0, np.inf, 1e-45] + ([np.nan] if kernels.AVAILABLE else [])
            queue[rng.integers(0, n)] = rng.choice(odd)
        mask = np.append(rng.random(n) < (0.0 if trial % 50 == 0 else 0.6), True)
        obs = {"queue": queue, "busy": busy}
        key = rules.least_loaded_keys(queue.tolist(), busy.tolist())
        want = rules.least_loaded(key, [0.0] * n, mask.tolist())
        assert policy.act(obs, mask) == want, (queue, busy, mask)
        assert rules.least_loaded_of(queue, busy, mask) == want, (queue, busy, mask)
        assert rules.least_loaded_of_jit(queue, busy, mask) == want, (queue, busy, mask)


def test_entry_point_computes_what_the_kernel_computes() -> None:
    """``kernels.entry_point`` (the compiled version called without numba's dispatch) gives
    the dispatcher's results; for something that is not a numba kernel, itself."""
    df = np.array([[1.0, 2.0], [0.5, 0.25], [0.1, 0.3], [0.0, 0.0]])  # B, T, R, E rows
    want = df.copy()
    kernels.accrue(want, 1.5)
    fn = kernels.entry_point(kernels.accrue, (df, 1.5))
    fn(df, 1.5)
    np.testing.assert_array_equal(df, want)
    assert float(df[kernels.B, 0]) == 1.0 + 0.1 * (1.5 - 0.5)
    if kernels.AVAILABLE:
        assert fn is not kernels.accrue
    plain = lambda x: x  # noqa: E731
    assert kernels.entry_point(plain, (1,)) is plain
