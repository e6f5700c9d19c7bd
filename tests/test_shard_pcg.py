"""The compiled PCG64 float32 draws (:mod:`envs.sim.dlrm.pcg`) are numpy's stream, bit for
bit, and the simulator falls back to numpy's draws when they cannot be trusted."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.dlrm import kernels, pcg
from envs.sim.jit import AVAILABLE

needs_jit = pytest.mark.skipif(not AVAILABLE, reason="numba off: numpy draws only")


def _numpy_scaled(g: np.random.Generator, m: np.ndarray, norm: np.ndarray) -> np.ndarray:
    u = g.random(int(m.sum()), dtype=np.float32)
    if kernels.AVAILABLE:
        kernels.scale_draws(u, m, norm)
        return u
    return u * norm.repeat(m) + np.float32(1.0)


@needs_jit
def test_draws_are_numpys_across_interleavings() -> None:
    assert pcg.check()
    norm = np.array([0.75, 12.5, 3.0], dtype=np.float32)
    sizes = np.random.default_rng(0)
    for seed in (3, 2024):
        a = np.random.default_rng(seed)
        b = np.random.default_rng(seed)
        v = pcg.views(a.bit_generator)
        assert v is not None
        for step in range(60):
            # odd and even totals, empty tables, fewer than the 4 interleaved chains, many
            m = sizes.integers(0, [3, 9, 40] if step % 2 else [2, 700, 3000])
            u = np.empty(int(m.sum()), dtype=np.float32)
            pcg.uniform_scaled(v[0], v[1], m, norm, u)
            ref = _numpy_scaled(b, m, norm)
            assert np.array_equal(u.view(np.uint32), ref.view(np.uint32))
            assert a.bit_generator.state == b.bit_generator.state
            # numpy's own draws on the same generator see the state the kernel left
            k = step % 4
            if k == 0:
                assert a.random(dtype=np.float32) == b.random(dtype=np.float32)
            elif k == 1:
                assert a.binomial(40, 0.3) == b.binomial(40, 0.3)
            elif k == 2:
                assert a.random() == b.random()
            assert a.bit_generator.state == b.bit_generator.state


@needs_jit
def test_views_only_for_pcg64_and_after_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pcg.views(np.random.PCG64(1)) is not None
    assert pcg.views(np.random.PCG64DXSM(1)) is None
    assert pcg.views(np.random.Philox(1)) is None
    monkeypatch.setattr(pcg, "_CHECKED", False)
    assert pcg.views(np.random.PCG64(1)) is None


@needs_jit
def test_the_check_fails_for_a_wrong_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    right = pcg.uniform_scaled

    def skips_the_buffer(p: np.ndarray, buf: np.ndarray, m: np.ndarray, norm: np.ndarray,
                         u: np.ndarray) -> None:
        buf[2] = 0  # drops numpy's buffered half
        right(p, buf, m, norm, u)

    assert pcg._check()
    monkeypatch.setattr(pcg, "uniform_scaled", skips_the_buffer)
    assert not pcg._check()


def _episode_digest(env: gym.Env, steps: int) -> list:
    out = []
    rng = np.random.default_rng(0)
    for _ in range(steps):
        mask = env.unwrapped.action_masks()
        a = int(rng.choice(np.flatnonzero(mask)))
        obs, r, term, trunc, _ = env.step(a)
        flat = [np.ravel(v) for v in obs.values()] if isinstance(obs, dict) else [obs]
        out.append((r, np.concatenate(flat).tobytes()))
        if term or trunc:
            break
    sim = env.unwrapped.sim
    out.append(sim.rng.bit_generator.state)
    return out


def test_simulator_falls_back_to_numpy_with_the_same_results(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make("ldsgym/ShardRouting-v0")
    env.reset(seed=7)
    with_pcg = _episode_digest(env, 400)
    if AVAILABLE:
        assert env.unwrapped.sim._pcg[1] is not None  # (the compiled draws were used)
    monkeypatch.setattr(pcg, "views", lambda bg: None)
    env.reset(seed=7)
    assert _episode_digest(env, 400) == with_pcg
    pv = env.unwrapped.sim._pcg
    assert pv is None or pv[1] is None  # (numpy drew them)


@needs_jit
def test_pickled_simulator_draws_on_from_its_own_generator() -> None:
    env = gym.make("ldsgym/ShardRouting-v0")
    env.reset(seed=9)
    _episode_digest(env, 50)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.unwrapped.sim._pcg is None  # (views of the old generator are not pickled)
    a, b = _episode_digest(env, 300), _episode_digest(copy, 300)
    assert a == b
    sim = copy.unwrapped.sim
    assert sim._pcg is not None and sim._pcg[0] is sim.rng.bit_generator
