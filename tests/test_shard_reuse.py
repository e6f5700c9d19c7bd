"""A reset reuses what the previous episode's simulator built (its caches' memory, their
warm-up ranges, the layout's arrays): no state may leak from one episode into the next or
between copies of an env, and the compiled simulator's readings equal their formulas.
"""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.dlrm import segment as sg
from envs.sim.dlrm.compiled import CompiledShardSim
from envs.sim.dlrm.rowcache import LruRowCache
from envs.sim.jit import AVAILABLE

_IDS = ["ldsgym/ShardRouting-v0", "ldsgym/ShardRouting-RequestAware-v0",
        "ldsgym/ShardRouting-16N-v0", "ldsgym/ShardRouting-64N-v0",
        "ldsgym/ShardRouting-RowWise-v0", "ldsgym/ShardRouting-Faults-v0"]
#: Faults with alpha 1: the exponential law, drawn by numpy (no compiled draws to reuse).
_KWARGS = {"ldsgym/ShardRouting-Faults-v0": {"alpha": 1.0}}


def _make(env_id: str) -> gym.Env:
    return gym.make(env_id, episode_queries=240, **_KWARGS.get(env_id, {})).unwrapped


def _episode(env: gym.Env, seed: int | None, steps: int = 300) -> list[object]:
    """What an episode shows: the observations' bytes, rewards and infos (repr: values,
    types, key order), with the bench's action rule (the next valid node in turn)."""
    obs, info = env.reset(seed=seed)
    out: list[object] = [sorted((k, v.tobytes()) for k, v in obs.items()), repr(info)]
    k = 0
    na = env.action_space.n
    for _ in range(steps):
        mask = env.action_masks()
        k = (k + 1) % na
        while not mask[k]:
            k = (k + 1) % na
        obs, reward, term, trunc, info = env.step(k)
        out += [sorted((k2, v.tobytes()) for k2, v in obs.items()), repr(reward), repr(info)]
        if term or trunc:
            break
    return out


def _cached(env: gym.Env) -> list[tuple[np.ndarray, int]]:
    """Per node: the cached keys and the cache size (tick values aside)."""
    out = []
    for nd in env.sim.nodes:
        c = nd.cache
        assert isinstance(c, LruRowCache)
        if isinstance(env.sim, CompiledShardSim):
            oldest, size = int(env.sim._cache_i[len(out), 0]), int(env.sim._cache_i[len(out), 3])
        else:
            oldest, size = c.oldest, c.size
        out.append((np.flatnonzero(c.last1 >= oldest), size))
    return out


@pytest.mark.parametrize("env_id", _IDS)
def test_episode_after_many_resets_is_a_fresh_envs(env_id: str) -> None:
    """Many episodes (whole and cut short) then a seeded one == that seeded episode on a
    fresh env; the caches start from the same keys; the reused memory was reused."""
    used = _make(env_id)
    _episode(used, seed=3)
    for i in range(6):
        _episode(used, seed=None, steps=40 * i)  # cut short: caches in every state
    old = used.sim
    got = _episode(used, seed=11)
    fresh = _make(env_id)
    want = _episode(fresh, seed=11)
    assert got == want
    used.reset(seed=5)
    fresh.reset(seed=5)
    for (k1, s1), (k2, s2) in zip(_cached(used), _cached(fresh), strict=True):
        assert s1 == s2 and np.array_equal(k1, k2)
    if isinstance(used.sim, CompiledShardSim) and isinstance(old, CompiledShardSim):
        assert used.sim._l1 is old._l1  # the caches' memory was reused ...
        assert used.sim._warm_plan is old._warm_plan  # ... and their warm-up ranges
        assert used.sim._l1 is not fresh.sim._l1
        if old._pcg is not None and old._pcg[1] is not None:  # the draws' scratch
            assert used.sim._pcg is not None and used.sim._pcg[2] is old._pcg[2]
            assert used.sim._pcg[0] is used.sim.rng.bit_generator
            assert used.sim._pcg[1] is not None
        elif old._pcg is not None:  # numpy's draws (e.g. the exponential law): still so
            assert used.sim._pcg is None or used.sim._pcg[1] is None


@pytest.mark.parametrize("env_id", _IDS)
def test_pickled_copies_run_independently(env_id: str) -> None:
    """A pickled copy and its original, interleaved reset by reset, each give the episodes
    of an env of their own."""
    a = _make(env_id)
    _episode(a, seed=2, steps=70)
    b = pickle.loads(pickle.dumps(a))
    solo = pickle.loads(pickle.dumps(a))
    ref = [_episode(solo, seed=s) for s in (8, 9, 10)]
    for s, want in zip((8, 9, 10), ref, strict=True):
        assert _episode(a, seed=s) == want
        assert _episode(b, seed=s) == want
    assert a.sim is not b.sim and a.sim._l1 is not b.sim._l1 if AVAILABLE else True


@pytest.mark.skipif(not AVAILABLE, reason="numba off: no compiled simulator")
def test_busy_ahead_and_link_utilization_are_their_formulas() -> None:
    """The compiled readings equal the reference formulas (Python's min/max and sum, in
    order) to the bit at every step of an episode, idle and busy nodes included."""
    env = _make("ldsgym/ShardRouting-v0")
    env.reset(seed=4)
    sim = env.sim
    assert isinstance(sim, CompiledShardSim)
    k, checked, idle = 0, 0, 0
    while sim.pending is not None:
        now = sim.events.now
        serving = sim._nd_i[:, sg.E_SERV].tolist()
        service_s = sim._nd_f[:, sg.D_SVC].tolist()
        ends = sim.service_end.tolist()
        nodes = 0.0
        for n in range(sim.n_nodes):
            if serving[n] >= 0:
                nodes += min(max(ends[n] - now, 0.0), service_s[n])
        idle += serving.count(-1)
        got = sim.busy_ahead_s(now)[0]
        assert repr(got) == repr(nodes)
        busy = sim._link_busy_a.tolist()
        for t in (now, 0.5 * now + 1e-9, 1.0):
            want = (sum(busy) / (len(busy) * t), sim._mvF[sg.F_LBMAX] / t)
            assert repr(sim.link_utilization(t)) == repr(want)
        assert sim.link_utilization(0.0) == (0.0, 0.0)
        checked += 1
        mask = env.action_masks()
        k = (k + 1) % env.action_space.n
        while not mask[k]:
            k = (k + 1) % env.action_space.n
        env.step(k)
    assert checked > 200 and idle > 0
