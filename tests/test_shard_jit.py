"""The compiled kernels of :mod:`envs.sim.dlrm.kernels` and the numpy paths they replace agree.

Every caller keeps its numpy path for when numba is missing (``kernels.AVAILABLE`` False);
each test runs both and wants the same bits: row-cache state, sub-requests, and whole
trajectories of the shard envs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.dlrm import kernels
from envs.sim.dlrm.rowcache import LfuRowCache, LruRowCache
from envs.wrappers import NearestValidAction

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not available")

_FAULTS = [
    {"start_ms": 5, "duration_ms": 30, "target": 1, "kind": "link", "mode": "fail"},
    {"start_ms": 20, "duration_ms": 50, "target": 2, "kind": "link", "mode": "slow",
     "factor": 3},
    {"start_ms": 10, "duration_ms": 40, "target": 3, "kind": "node", "mode": "slow"},
    {"start_ms": 30, "duration_ms": 20, "target": 4, "kind": "node", "mode": "fail"},
]


def _state(cache: LruRowCache | LfuRowCache) -> list[object]:
    out: list[object] = []
    for name in type(cache).__slots__:
        v = getattr(cache, name)
        out.append(v.tobytes() if isinstance(v, np.ndarray) else v)
    return out


@pytest.mark.parametrize("cls", [LruRowCache, LfuRowCache])
@pytest.mark.parametrize("cap", [0, 1, 150, 700, 5000])
def test_cache_kernels_are_the_numpy_access(cls: type, cap: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(cap)
    a, b = cls(6000, cap), cls(6000, cap)
    a.warm(np.arange(100, 100 + cap // 2))
    b.warm(np.arange(100, 100 + cap // 2))
    for i in range(400):
        off = int(rng.integers(0, 1000))
        keys = np.unique(rng.zipf(1.2, int(rng.integers(0, 300))) % 5000)
        counts = rng.integers(1, 40 if i % 50 == 49 else 4, len(keys))  # grows LFU's hist
        total = int(counts.sum()) if i % 2 else None
        monkeypatch.setattr(kernels, "AVAILABLE", True)
        ra = a.access(keys, counts, off, total)
        monkeypatch.setattr(kernels, "AVAILABLE", False)
        rb = b.access(keys, counts, off, total)
        assert ra == rb
        assert _state(a) == _state(b)
        if i % 131 == 130:
            a.clear()
            b.clear()


def test_lru_kernel_across_compactions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many small ticks in a big cache: ``alive`` is compacted and grown along the way.
    a, b = LruRowCache(3000, 2500), LruRowCache(3000, 2500)
    rng = np.random.default_rng(7)
    for _ in range(600):
        keys = np.unique(rng.integers(0, 3000, int(rng.integers(1, 12))))
        counts = np.ones(len(keys), dtype=np.intp)
        monkeypatch.setattr(kernels, "AVAILABLE", True)
        ra = a.access(keys, counts)
        monkeypatch.setattr(kernels, "AVAILABLE", False)
        assert ra == b.access(keys, counts)
        assert _state(a) == _state(b)


def test_split_sorted_is_unique_and_searchsorted() -> None:
    rng = np.random.default_rng(3)
    for trial in range(200):
        S = int(rng.integers(1, 9))
        base = np.concatenate([[0], np.cumsum(rng.integers(0, 50, S))]).astype(np.int64)
        n = int(rng.integers(0, 300)) if base[-1] else 0
        key = np.sort(rng.integers(0, max(int(base[-1]), 1), n)).astype(
            np.int32 if trial % 2 else np.int64)
        rel = np.empty(n, dtype=np.int64)
        counts = np.empty(n, dtype=np.intp)
        out = np.empty((3, S + 1), dtype=np.int64)
        look = rng.integers(0, 1000, S)
        sign = 1 if trial % 3 else -1
        u = kernels.split_sorted(key, base, rel, counts, out, look, sign)
        uniq, cnt = np.unique(key, return_counts=True)
        b = np.searchsorted(uniq, base)
        tracked = np.searchsorted(key, base)
        assert u == len(uniq)
        assert np.array_equal(out[0], b)
        assert np.array_equal(out[1], tracked)
        assert np.array_equal(out[2], np.append(look + sign * np.diff(tracked), 0))
        assert np.array_equal(counts[:u], cnt)
        assert np.array_equal(rel[:u], uniq - base[:-1].repeat(np.diff(b)))


def test_split_sorted_keys_outside_the_bases() -> None:
    # Keys below base[0] or from base[-1] on keep their value (no shard's base subtracted),
    # bases may repeat or lie outside the keys; the same counts and boundaries as numpy's.
    rng = np.random.default_rng(11)
    for trial in range(400):
        nb = int(rng.integers(1, 7))
        base = np.sort(rng.integers(-3, 30, nb)).astype(np.int64)
        n = int(rng.integers(0, 40))
        key = np.sort(rng.integers(-6, 36, n)).astype(np.int32 if trial % 2 else np.int64)
        rel = np.empty(n, dtype=np.int64)
        counts = np.empty(n, dtype=np.intp)
        out = np.empty((3, nb), dtype=np.int64)
        look = rng.integers(0, 1000, nb)
        sign = 1 if trial % 3 else -1
        u = kernels.split_sorted(key, base, rel, counts, out, look, sign)
        uniq, cnt = np.unique(key, return_counts=True)
        tracked = np.searchsorted(key, base)
        s = np.searchsorted(base, uniq, side="right")  # base[s - 1] <= key < base[s]
        inner = (s > 0) & (s < nb)
        assert u == len(uniq)
        assert np.array_equal(out[0], np.searchsorted(uniq, base))
        assert np.array_equal(out[1], tracked)
        assert np.array_equal(out[2], np.append(look[:-1] + sign * np.diff(tracked), 0))
        assert np.array_equal(counts[:u], cnt)
        assert np.array_equal(rel[:u], np.where(inner, uniq - base[np.maximum(s - 1, 0)], uniq))


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_radix_sort_is_the_sort(dtype: type) -> None:
    rng = np.random.default_rng(5)
    tops = [1, 2, 5, 2047, 2048, 2049, 1_400_000, 2**31 - 1] + (
        [2**40, 2**62] if dtype is np.int64 else [])
    for top in tops:
        for n in (0, 1, 2, 3, 100, 7000):
            key = rng.integers(0, top, n).astype(dtype)
            buf = np.empty(2 * n + 1, dtype=dtype)
            buf[:n] = key
            assert kernels.radix_sort(buf[:n], buf[n:])
            assert np.array_equal(buf[:n], np.sort(key)), (top, n)
    key = np.array([3, -1, 2], dtype=dtype)  # negative keys: left to the caller's sort
    assert not kernels.radix_sort(key, np.empty(3, dtype=dtype))
    assert np.array_equal(key, [3, -1, 2])


@pytest.mark.parametrize("top", [1.0, 7.0, 2.0**24, 2.0**31, 2.0**40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_clipping_is_the_int64_clip(top: float, dtype: type) -> None:
    # Values around the bounds, fractions, huge ones, inf and NaN, in both key kernels.
    with np.errstate(over="ignore"):
        x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.999, top - 1, top - 0.5, top, top + 1,
                      2 * top, 1e30, 1e300, np.inf, np.nan]).astype(dtype)
    m = np.array([len(x)], dtype=np.int64)
    ub = np.array([int(dtype(top)) - 1], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        k = x.astype(np.int64) - 1
    want = np.clip(k, 0, ub[0])
    key = np.empty(len(x), dtype=np.int64)
    kernels.table_keys(x, m, ub, np.array([5], dtype=np.int64), key)
    assert np.array_equal(key, want + 5)
    for S, shift in ((4, 2), (3, -1)):
        gseg = np.arange(S, dtype=np.int64) * 10**12
        kernels.row_keys(x, m, ub, gseg, S, shift, key)
        assert np.array_equal(key, gseg[want % S] + want // S)


@pytest.mark.parametrize("kwargs", [
    {}, {"partition": "row"}, {"partition": "row", "shards": 6, "nodes": 6},
    {"shards": 5, "nodes": 7, "tables": 30}, {"alpha": 1.0}, {"alpha": 1.2, "partition": "row"},
    {"nodes": 64, "shards": 16, "replication": 4, "partition": "row"}, {"track_rows": 20},
])
def test_subrequests_jit_is_the_numpy_draw(kwargs: dict, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    env = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
    env.reset(seed=4)
    sim = env.sim
    req = sim.pending.req
    for fanout in (sim.n_shards, 3, sim.n_shards, 1):
        state = sim.rng.bit_generator.state
        nxt = sim._next_sub
        monkeypatch.setattr(kernels, "AVAILABLE", False)
        ref = sim._make_subrequests(req, fanout)
        after = sim.rng.bit_generator.state
        sim.rng.bit_generator.state = state
        sim._next_sub = nxt
        monkeypatch.setattr(kernels, "AVAILABLE", True)
        got = sim._make_subrequests(req, fanout)
        assert sim.rng.bit_generator.state == after  # the same draws
        assert len(got) == len(ref) == fanout
        for g, r in zip(got, ref, strict=True):
            assert g.keys.dtype == r.keys.dtype and np.array_equal(g.keys, r.keys)
            assert g.counts.dtype == r.counts.dtype and np.array_equal(g.counts, r.counts)
            for name in ("id", "shard", "d_tracked", "d_untracked", "lookups", "req_bytes",
                         "resp_bytes", "tracked_lookups"):
                gv, rv = getattr(g, name), getattr(r, name)
                assert gv == rv and type(gv) is type(rv), name


@pytest.mark.parametrize("kwargs", [{}, {"partition": "row"}, {"tables": 60}])
def test_binomials_one_at_a_time_are_the_array_draw(kwargs: dict) -> None:
    env = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
    env.reset(seed=2)
    sim, lay = env.sim, env.layout
    req = sim.pending.req
    for _ in range(5):
        state, nxt = sim.rng.bit_generator.state, sim._next_sub
        out = {}
        for scalar in (False, True):
            sim.rng.bit_generator.state, sim._next_sub = state, nxt
            lay.c_scalar = scalar
            subs = sim._make_subrequests(req, sim.n_shards)
            out[scalar] = ([(s.keys.tobytes(), s.counts.tobytes(), s.d_untracked, s.lookups,
                             s.req_bytes, s.tracked_lookups) for s in subs],
                           sim.rng.bit_generator.state)
        assert out[False] == out[True]


def _trajectory(env_id: str, kwargs: dict, steps: int) -> list[object]:
    # Every fifth action is any index, masked or not, through the explicit substitute.
    env = NearestValidAction(gym.make(env_id, **kwargs).unwrapped)
    obs, info = env.reset(seed=11)
    out: list[object] = []
    for i in range(steps):
        mask = env.action_masks()
        valid = np.flatnonzero(mask)
        a = int(valid[(i * 7) % len(valid)]) if i % 5 else (i * 3) % env.action_space.n
        obs, r, term, trunc, info = env.step(a)
        out.append((mask.tobytes(), {k: (v.dtype, v.tobytes()) for k, v in obs.items()},
                    repr(r), term, trunc, repr(sorted(info.items()))))
        if trunc:
            obs, info = env.reset()
    return out


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("ldsgym/ShardRouting-v0", {"episode_queries": 500}),
    ("ldsgym/ShardRouting-v0", {"episode_queries": 500, "faults": _FAULTS,
                                "allow_shed": True, "cache_policy": "lfu"}),
    ("ldsgym/ShardRouting-RowWise-v0", {"episode_queries": 500}),
    ("ldsgym/ShardRouting-64N-v0", {"episode_queries": 500}),
    ("ldsgym/ShardRouting-Faults-v0", {"episode_queries": 500, "alpha": 1.0}),
    ("ldsgym/ShardRouting-Tiers-v0", {"episode_queries": 500}),
    ("ldsgym/ShardPlacement-v0", {"episode_queries": 60, "faults": "random"}),
])
def test_envs_step_the_same_with_and_without_numba(env_id: str, kwargs: dict,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 150 if "Placement" in env_id else 1200
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    fast = _trajectory(env_id, kwargs, steps)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert fast == _trajectory(env_id, kwargs, steps)


def test_kernels_divide_by_zero_as_numpy_does() -> None:
    # numpy's error model: a zero link rate gives inf, as the numpy path, instead of raising.
    holds = np.ones((2, 1), dtype=bool)
    state = np.zeros((13, 2))
    state[10:12] = 1.0  # measured slowdown, up; link speed factor (row 12) 0
    one, zero = np.ones(2), np.zeros(2)
    best = kernels.earliest_replica(0.0, 0, 1, 1, 1, 100, 1.0, holds, np.zeros((2, 1)),
                                      state, one, zero, one, one, 1.0)
    assert best == 0  # both inf: the lower node
    state[11] = 0.0  # both down
    assert kernels.earliest_replica(0.0, 0, 1, 1, 1, 100, 1.0, holds, np.zeros((2, 1)),
                                      state, one, zero, one, one, 1.0) == -1
