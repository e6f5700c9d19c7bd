"""The shard envs' fast paths give the same bits as the plain formulas they replace.

The step of ``ShardRouting``/``ShardPlacement`` reuses buffers, updates per-node rows
incrementally between the decisions of one request, caches masks, and works on slices of the
row caches; each test here runs the straightforward version next to it and wants equality.
"""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.shard import ShardRoutingEnv
from envs.shard_placement import ShardPlacementEnv
from envs.sim.dlrm import ShardSim
from envs.sim.dlrm.records import Arena, RangeSubRequest, SubRequest
from envs.sim.dlrm.rowcache import LfuRowCache, LruRowCache

_LINK_FAULTS = [
    {"start_ms": 5, "duration_ms": 30, "target": 1, "kind": "link", "mode": "fail"},
    {"start_ms": 20, "duration_ms": 50, "target": 2, "kind": "link", "mode": "slow",
     "factor": 3},
    {"start_ms": 30, "duration_ms": 20, "target": 4, "kind": "node", "mode": "fail"},
]


def _reference_obs(env: ShardRoutingEnv) -> dict[str, np.ndarray]:
    """The observation computed from scratch (the original, unoptimised formulas)."""
    sim = env.sim
    assert sim is not None and sim.pending is not None
    sub = sim.pending
    now = sim.now
    req = sub.req
    inv_sla = 1.0 / max(req.deadline - req.arrival, 1e-9)
    s = sub.shard
    holds = env.layout.holds.T.astype(np.float64)[s]
    finish = sim.predict_finish(sub, env._fixed, env._bps)
    vals = np.empty((10, env.n_nodes))
    vals[0] = np.asarray(sim.outstanding) / 8.0
    vals[1] = sim.remaining_work(now) * sim.measured_slow * inv_sla
    vals[2] = ((sim.link_bytes(now, up=False) + sim.link_bytes(now, up=True))
               / (env._bps * sim.link_factor) * inv_sla)
    vals[3] = sim.hit_rate
    vals[4] = sim.row_hit[:, s] * holds
    rb = sim.spec.row_bytes
    full = sim.lay.pinned_bytes + sim.spec.cache_rows * rb
    used = sim.lay.pinned_bytes + sim._cache_size * rb
    vals[5] = np.divide(used, full, out=np.zeros(env.n_nodes), where=full > 0)
    vals[6] = sim.measured_slow
    vals[7] = sim.up()
    vals[8] = holds
    vals[9] = finish * inv_sla
    flat = np.clip(vals, 0.0, 10.0).astype(np.float32)
    extra = np.array([sub.lookups / env._mean_lookups, sub.resp_bytes / env._mean_resp,
                      (len(sim.fanout_left()) + 1) / env.n_shards, env._req_pred * inv_sla,
                      env._rate / env.capacity_qps])
    ex = np.clip(extra, 0.0, 10.0).astype(np.float32)
    names = ("queue", "work", "link", "hit", "hit_shard", "occupancy", "slow", "up", "holds",
             "finish")
    out = {k: flat[i] for i, k in enumerate(names)}
    out.update(shard=np.eye(env.n_shards, dtype=np.float32)[s], size=ex[0:2],
               request=ex[2:4], rates=ex[4:5])
    return out


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


@pytest.mark.parametrize("kwargs", [
    {},
    {"nodes": 16, "shards": 16},
    {"partition": "row"},
    {"faults": "random", "allow_shed": True},
    {"faults": _LINK_FAULTS, "cache_policy": "lfu"},
])
def test_routing_obs_and_mask_match_the_plain_formulas(kwargs: dict) -> None:
    env = gym.make("ldsgym/ShardRouting-v0", episode_queries=600, **kwargs).unwrapped
    assert isinstance(env, ShardRoutingEnv)
    obs, _ = env.reset(seed=5)
    for i in range(1500):
        assert _same(obs, _reference_obs(env))
        sim = env.sim
        assert sim is not None and sim.pending is not None
        mask = env.action_masks()
        ref = np.zeros(env.n_nodes + 1, dtype=bool)
        ref[sim.valid_nodes(sim.pending.shard)] = True
        ref[-1] = env.allow_shed
        assert np.array_equal(mask, ref)
        mask[:] = False  # the caller's copy: the env's cache must not change
        valid = np.flatnonzero(env.action_masks())
        obs, _, _, trunc, _ = env.step(int(valid[(i * 7) % len(valid)]))
        if trunc:
            obs, _ = env.reset()


def test_placement_router_is_the_earliest_predicted_replica() -> None:
    env = gym.make("ldsgym/ShardPlacement-v0", episode_queries=300,
                   faults={"rate_hz": 20.0, "duration_ms": 10.0}).unwrapped
    assert isinstance(env, ShardPlacementEnv)
    env.reset(seed=2)
    sim = env.sim
    assert sim is not None
    rng = np.random.default_rng(0)
    checked = 0
    while sim.pending is not None:
        sub = sim.pending
        finish = sim.predict_finish(sub, env._fixed, env._bps)
        valid = sim.valid_nodes(sub.shard)
        expect = min(valid, key=lambda k: (finish[k], k))
        assert sim.earliest_replica(sub, env._fixed.tolist(), env._bps.tolist()) == expect
        checked += 1
        if checked % 8 == 0:  # now and then a placement step (migrations, drops)
            mask = env.action_masks()
            env.step(int(rng.choice(np.flatnonzero(mask))) if rng.random() < 0.3 else 0)
            continue
        sim.route(expect)
        sim.advance()
    assert checked > 100


@pytest.mark.parametrize("cls", [LruRowCache, LfuRowCache])
def test_warm_ranges_is_warm_of_the_concatenated_ranges(cls: type) -> None:
    rng = np.random.default_rng(1)
    for trial in range(60):
        n_keys, cap = 2000, int(rng.integers(0, 900))
        a, b = cls(n_keys, cap), cls(n_keys, cap)
        for _ in range(int(rng.integers(0, 6))):  # some history first
            keys = np.unique(rng.integers(0, n_keys, 300))
            counts = rng.integers(1, 4, len(keys))
            assert a.access(keys, counts) == b.access(keys, counts)
        starts = rng.integers(0, n_keys - 300, 4).tolist()
        lengths = rng.integers(0, 300, 4).tolist()
        if trial % 3 == 0:  # disjoint ranges (the fast path)
            starts = [k * 500 + s % 200 for k, s in enumerate(starts)]
        a.warm_ranges(starts, lengths)
        parts = [np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)]
        b.warm(np.concatenate(parts))
        for name in cls.__slots__:
            va, vb = getattr(a, name), getattr(b, name)
            assert (np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb), name


@pytest.mark.parametrize("cls", [LruRowCache, LfuRowCache])
def test_access_with_offset_and_total_is_plain_access(cls: type) -> None:
    rng = np.random.default_rng(2)
    a, b = cls(5000, 700), cls(5000, 700)
    for i in range(300):
        off = int(rng.integers(0, 1000))
        keys = np.unique(rng.zipf(1.3, 200) % 4000)
        counts = rng.integers(1, 5, len(keys))
        total = int(counts.sum()) if i % 2 else None
        assert a.access(keys, counts, off, total) == b.access(keys + off, counts)
        if i % 97 == 96:
            a.clear()
            b.clear()
        assert a.size == b.size


def test_a_cleared_lru_cache_behaves_as_a_new_one() -> None:
    rng = np.random.default_rng(3)
    used = LruRowCache(3000, 400)
    for _ in range(50):
        keys = np.unique(rng.integers(0, 3000, 200))
        used.access(keys, np.ones(len(keys), dtype=np.int64))
    used.clear()
    fresh = LruRowCache(3000, 400)
    used.warm(np.arange(100, 350))
    fresh.warm(np.arange(100, 350))
    for _ in range(100):
        keys = np.unique(rng.integers(0, 3000, 200))
        counts = rng.integers(1, 3, len(keys))
        assert used.access(keys, counts) == fresh.access(keys, counts)
        assert used.size == fresh.size


def test_reset_reuses_the_caches_and_pickles_keep_the_shared_rows() -> None:
    env = gym.make("ldsgym/ShardRouting-v0", episode_queries=200).unwrapped
    env.reset(seed=0)
    old = env.sim
    caches = [nd.cache for nd in old.nodes]
    held = old.pending
    keys, counts = held.keys.copy(), held.counts.copy()
    env.reset(seed=0)
    assert [nd.cache for nd in env.sim.nodes] == caches and old.nodes == []
    assert env.sim._arena is old._arena  # and the memory of the draws
    for _ in range(30):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert np.array_equal(held.keys, keys) and np.array_equal(held.counts, counts)
    clone = pickle.loads(pickle.dumps(env))
    for sim in (env.sim, clone.sim):
        for name in ShardSim._VIEWS:
            assert np.shares_memory(getattr(sim, name), sim.node_state), name
        assert np.shares_memory(sim.hit_rate, sim.node_features)
        assert np.shares_memory(sim.measured_slow, sim.node_features)
        assert np.shares_memory(sim._lb2_bytes, sim.inflight_bytes)
        for name, array in ShardSim._MEMORYVIEWS.items():  # the event loop's element access
            view = getattr(sim, name)
            assert isinstance(view, memoryview), name
            assert np.shares_memory(np.asarray(view), getattr(sim, array)), name
            assert np.asarray(view).shape == getattr(sim, array).shape, name
    for name in ("_rate_n", "_fin", "_finish", "_req_node", "_acc"):
        assert np.shares_memory(getattr(clone, name), clone._consts), name
    a, b = env.action_masks(), clone.action_masks()
    assert np.array_equal(a, b)
    act = int(np.flatnonzero(a)[-1])
    for x, y in zip(env.step(act), clone.step(act), strict=True):
        assert repr(x) == repr(y)


def test_link_utilization_is_over_the_links_busy_times() -> None:
    env = gym.make("ldsgym/ShardRouting-v0", faults=_LINK_FAULTS).unwrapped
    env.reset(seed=3)
    for i in range(600):
        env.step(int(np.flatnonzero(env.action_masks())[i % 2 - 1]))
        sim = env.sim
        busy = [lk.busy_s for lk in sim.links_down + sim.links_up]
        assert busy == sim._link_busy
        now = sim.now
        assert sim.link_utilization(now) == (sum(busy) / (len(busy) * now), max(busy) / now)


def test_arena_reuses_a_buffer_only_when_nothing_points_into_it() -> None:
    arena = Arena(100)
    a, b = arena.take(60), arena.take(40)
    assert a.base is b.base and not np.shares_memory(a, b)
    c = arena.take(30)  # the first buffer is full: a second one
    assert c.base is not a.base
    big = arena.take(500)
    assert big.base is None and len(big) == 500
    del a
    d = arena.take(80)  # b still points into the first buffer: a third one
    assert d.base is not b.base and d.base is not c.base
    first = id(b.base)
    del b
    e = arena.take(90)
    assert id(e.base) == first  # free again
    assert len(arena._bufs) == 3


def test_kept_keys_survive_later_draws() -> None:
    # Sub-requests keep views of the arena: later requests must not write over them.
    env = gym.make("ldsgym/ShardRouting-v0").unwrapped
    env.reset(seed=5)
    sim = env.sim
    req = sim.pending.req
    kept = [sim._make_subrequests(req, sim.n_shards) for _ in range(40)]
    copies = [[(s.keys.copy(), s.counts.copy()) for s in subs] for subs in kept]
    for _ in range(300):
        sim._make_subrequests(req, sim.n_shards)  # dropped at once: their memory is reused
    del kept[::2], copies[::2]
    for _ in range(300):
        sim._make_subrequests(req, sim.n_shards)
    for subs, cps in zip(kept, copies, strict=True):
        for s, (k, c) in zip(subs, cps, strict=True):
            assert np.array_equal(s.keys, k) and np.array_equal(s.counts, c)


def _reference_subrequests(sim: ShardSim, fanout: int) -> list[tuple]:
    """The lookups of one request the plain way (np.unique, sample_ranks, 2-D indexing)."""
    from envs.sim.dlrm.skew import sample_ranks

    spec, lay, S, rng = sim.spec, sim.lay, sim.n_shards, sim.rng
    m = rng.binomial(lay.c_n, lay.c_ptracked)
    rep = np.repeat(np.arange(len(m)), m)
    ranks = sample_ranks(rng, lay.c_bound[rep], spec.alpha, lay.c_norm[rep], lay.single)
    untracked_total = lay.c_n - m
    if spec.row_wise:
        shard = ranks % S
        key = lay.gseg_off[lay.seg_of[shard, lay.c_tables[rep]]] + (ranks // S).astype(
            lay.key_dtype)
        untracked = rng.multinomial(int(untracked_total.sum()), np.full(S, 1.0 / S))
        lookups = lay.pinned_lookups + np.bincount(shard, minlength=S) + untracked
    else:
        key = lay.c_keyoff[rep] + ranks.astype(lay.key_dtype)
        untracked = np.bincount(lay.c_shard, weights=untracked_total,
                                minlength=S).astype(np.int64)
        lookups = lay.pinned_lookups + lay.cached_lookups_tw
    uniq, counts = np.unique(key, return_counts=True)
    bounds = np.searchsorted(uniq, lay.shard_base)
    out = []
    for s in range(fanout):
        a, b = int(bounds[s]), int(bounds[s + 1])
        n_look = int(lookups[s])
        out.append((uniq[a:b].astype(np.int64) - lay.shard_base[s], counts[a:b],
                    int(untracked[s]), n_look, spec.header_bytes + n_look * spec.id_bytes,
                    float(lay.resp_bytes[s]), int(counts[a:b].sum())))
    return out


@pytest.mark.parametrize("kwargs", [
    {}, {"partition": "row"}, {"partition": "row", "shards": 6, "nodes": 6},
    {"shards": 5, "nodes": 7, "tables": 30}, {"alpha": 1.0}, {"alpha": 1.2, "partition": "row"},
])
def test_subrequests_match_the_plain_draw(kwargs: dict) -> None:
    env = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
    env.reset(seed=4)
    sim = env.sim
    req = sim.pending.req
    for fanout in (sim.n_shards, sim.n_shards, 3, sim.n_shards):
        state = sim.rng.bit_generator.state
        ref = _reference_subrequests(sim, fanout)
        sim.rng.bit_generator.state = state
        subs = sim._make_subrequests(req, fanout)
        assert len(subs) == len(ref)
        for sub, (keys, counts, untracked, look, req_b, resp_b, tracked) in zip(
                subs, ref, strict=True):
            assert np.array_equal(sub.keys, keys) and sub.keys.dtype == keys.dtype
            assert np.array_equal(sub.counts, counts) and sub.counts.dtype == counts.dtype
            assert (sub.d_untracked, sub.lookups, sub.req_bytes, sub.resp_bytes,
                    sub.tracked_lookups, sub.d_tracked) == (untracked, look, req_b, resp_b,
                                                            tracked, len(keys))


def test_range_subrequests_hold_their_keys_until_read() -> None:
    # The compiled simulator's sub-requests make their keys/counts views when first read; the
    # request's arrays are held from the start, so the arena does not reuse their memory.
    env = gym.make("ldsgym/ShardRouting-v0").unwrapped
    env.reset(seed=3)
    held = [env.sim.pending, *env.sim._fanout]
    if not isinstance(held[0], RangeSubRequest):
        pytest.skip("numba off: the reference simulator's sub-requests")
    want = []
    for sub in held:
        rel, counts, lo, hi = sub._range
        assert sub.d_tracked == hi - lo
        want.append((rel[lo:hi].copy(), counts[lo:hi].copy()))
    for _ in range(3000):  # many requests' draws through the arena (episodes recycle it)
        *_, term, trunc, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
        if term or trunc:
            env.reset(seed=4)
    for sub, (keys, counts) in zip(held, want, strict=True):
        assert np.array_equal(sub.keys, keys) and sub.keys.dtype == keys.dtype
        assert np.array_equal(sub.counts, counts) and sub.counts.dtype == counts.dtype
        assert sub.keys is sub.keys  # (made once)
        copy = pickle.loads(pickle.dumps(sub))
        assert type(copy) is SubRequest
        for name in SubRequest.__slots__:
            a, b = getattr(copy, name), getattr(sub, name)
            if isinstance(a, np.ndarray):
                assert np.array_equal(a, b) and a.dtype == b.dtype
            elif name != "req":
                assert a == b, name
