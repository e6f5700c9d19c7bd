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


@pytest.mark.parametrize("kwargs", [{}, {"partition": "row"}])
def test_simulator_falls_back_to_numpy_with_the_same_results(
        monkeypatch: pytest.MonkeyPatch, kwargs: dict) -> None:
    # compiled binomials and uniforms, numpy's binomials and compiled uniforms, all numpy
    env = gym.make("ldsgym/ShardRouting-v0", **kwargs)
    env.reset(seed=7)
    with_pcg = _episode_digest(env, 400)
    if AVAILABLE:
        pv = env.unwrapped.sim._pcg
        assert pv[1] is not None and pv[2] is not None  # (the compiled draws were used)
    monkeypatch.setattr(pcg, "check_binomial", lambda: False)
    env.reset(seed=7)
    assert _episode_digest(env, 400) == with_pcg
    pv = env.unwrapped.sim._pcg
    assert pv is None or pv[2] is None  # (numpy drew the binomials)
    monkeypatch.setattr(pcg, "views", lambda bg: None)
    env.reset(seed=7)
    assert _episode_digest(env, 400) == with_pcg
    pv = env.unwrapped.sim._pcg
    assert pv is None or (pv[1] is None and pv[2] is None)  # (numpy drew them)


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


@needs_jit
def test_bucketed_draws_are_numpys_by_table_in_key_order() -> None:
    norm = np.array([2.5, 0.5, 40.0, 1.0], dtype=np.float32)
    order = np.array([2, 0, 3, 1], dtype=np.int64)
    sizes = np.random.default_rng(1)
    a = np.random.default_rng(11)
    b = np.random.default_rng(11)
    v = pcg.views(a.bit_generator)
    assert v is not None
    w = np.empty(20000, dtype=np.uint32)
    hist = np.empty(20000, dtype=np.int64)
    start = np.empty(4, dtype=np.int64)
    for step in range(40):
        m = sizes.integers(0, [5, 3000, 1, 9000] if step % 2 else [2, 40, 7, 1])
        u = np.empty(int(m.sum()), dtype=np.float32)
        pcg.uniform_bucketed(v[0], v[1], m, norm, order, w, hist, start, u)
        ref = _numpy_scaled(b, m, norm)
        assert a.bit_generator.state == b.bit_generator.state
        starts = np.concatenate([[0], np.cumsum(m)])
        i = 0
        for t in order.tolist():
            got = u[i:i + m[t]]
            want = ref[starts[t]:starts[t + 1]]
            assert np.array_equal(np.sort(got).view(np.uint32), np.sort(want).view(np.uint32))
            # bucketed on the top log2(m) bits: out of order only within a bucket
            assert (np.diff(got) < 0).sum() <= max(1, m[t] // 2)
            i += m[t]
        assert a.binomial(30, 0.5) == b.binomial(30, 0.5)


@needs_jit
@pytest.mark.parametrize("mode", ["sorted", "shuffled", "local"])
def test_nearly_sorted_split_is_split_sorted(mode: str) -> None:
    # Any order of a table's draws gives split_sorted's result; far from sorted (shuffled),
    # the insertion sort gives up and the radix sort finishes; locally out of order (keys
    # moved 1 to 40 places: the compare-exchange and the insertion), it sorts them.
    env = gym.make("ldsgym/ShardRouting-v0").unwrapped
    env.reset(seed=2)
    sim = env.sim
    lay = sim.lay
    rng = np.random.default_rng(5)
    order = np.argsort(lay.c_keyoff, kind="stable").astype(np.int64)
    S = sim.n_shards
    for _ in range(5):
        m = np.array([rng.binomial(k, p) for k, p in lay.c_n_p], dtype=np.int64)
        n = int(m.sum())
        u = rng.random(n, dtype=np.float32)
        kernels.scale_draws(u, m, lay.c_norm_d)
        x = np.power(u, lay.c_power)
        key = np.empty(n, dtype=lay.key_dtype)
        tmp = np.empty(2 * n, dtype=lay.key_dtype)
        rel, counts = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        out = np.empty((3, S + 1), dtype=np.int64)
        kernels.table_keys(x, m, lay.c_ub, lay.c_keyoff, key)
        kernels.radix_sort(key, tmp)
        un = kernels.split_sorted(key, lay.shard_base, rel, counts, out,
                                  lay.cached_lookups_tw, -1)
        # the same draws, table by table in key order, each table sorted or shuffled
        starts = np.concatenate([[0], np.cumsum(m)])
        parts = [np.sort(x[starts[t]:starts[t + 1]]) for t in order.tolist()]
        for p in parts:
            if mode == "shuffled":
                rng.shuffle(p)
            elif mode == "local" and len(p) > 1:
                for i in rng.integers(0, len(p), len(p) // 8).tolist():
                    j = max(0, i - int(rng.choice([1, 1, 2, 3, 40])))
                    p[j:i + 1] = np.roll(p[j:i + 1], 1)
        x2 = np.concatenate(parts)
        rel2, counts2 = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        out2 = np.empty((3, S + 1), dtype=np.int64)
        key2 = np.empty(n, dtype=lay.key_dtype)
        un2 = kernels.nearly_sorted_split(x2, m, lay.c_ub, lay.c_keyoff, order,
                                          lay.shard_base, key2, tmp, rel2, counts2, out2,
                                          lay.cached_lookups_tw)
        assert un2 == un
        assert np.array_equal(rel2[:un], rel[:un]) and np.array_equal(counts2[:un], counts[:un])
        assert np.array_equal(out2, out)


@needs_jit
def test_compiled_draws_hold_the_generators_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    # numpy holds bit_generator.lock while drawing; so must the kernels (they release the GIL)
    assert pcg.check()  # (before the spies: the check draws through them too)
    seen = []
    sims = []  # the simulator drawing (set after its reset)
    for name in ("binomial_bucketed", "binomial_scaled", "uniform_bucketed", "uniform_scaled"):
        right = getattr(pcg, name)

        def spy(*args: object, _right: object = right) -> object:
            if sims:
                seen.append(sims[-1].rng.bit_generator.lock._is_owned())
            return _right(*args)  # type: ignore[operator]

        monkeypatch.setattr(pcg, name, spy)
    for kwargs in ({}, {"partition": "row"}):  # (bucketed table-wise, scaled row-wise)
        env = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
        env.reset(seed=1)
        sims.append(env.sim)
        seen.clear()
        env.sim._make_subrequests(env.sim.pending.req, env.sim.n_shards)
        assert seen == [True]


def _binomial_pairs(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` (n, p) pairs: small, medium and huge n, p anywhere in [0, 1] with some 0.5,
    tiny and edge values."""
    n = np.concatenate([rng.integers(0, 20, k // 3), rng.integers(0, 3000, k // 3),
                        rng.integers(0, 10**8, k - 2 * (k // 3))]).astype(np.int64)
    p = rng.random(k)
    p[rng.random(k) < 0.1] = 0.5
    p[rng.random(k) < 0.05] = 1e-5
    p[rng.random(k) < 0.03] = 0.0
    p[rng.random(k) < 0.03] = 1.0
    return n, p


@needs_jit
def test_binomials_are_numpys() -> None:
    assert pcg.check_binomial()
    pairs = np.random.default_rng(4)
    branches = {"inversion": 0, "btpe": 0}
    for seed in range(40):
        a = np.random.default_rng(seed)
        b = np.random.default_rng(seed)
        v = pcg.views(a.bit_generator)
        assert v is not None
        n, p = _binomial_pairs(pairs, int(pairs.integers(1, 60)))
        small = n * np.minimum(p, 1.0 - p) <= 30.0
        branches["inversion"] += int((small & (n > 0) & (p > 0)).sum())
        branches["btpe"] += int((~small).sum())
        m = np.empty(len(n), dtype=np.int64)
        for rep in range(25):
            if rep % 3 == 1:  # an odd float32 count: numpy's buffered half across the draws
                assert np.array_equal(a.random(5, dtype=np.float32),
                                      b.random(5, dtype=np.float32))
            total = pcg.binomials(v[0], n, p, m)
            want = b.binomial(n, p)
            assert np.array_equal(m, want) and total == int(want.sum())
            assert a.bit_generator.state == b.bit_generator.state
            if rep % 3 == 2:  # numpy's own draws go on from the state the kernel left
                assert a.binomial(100, 0.4) == b.binomial(100, 0.4)
                assert a.random() == b.random()
    assert branches["inversion"] > 200 and branches["btpe"] > 200  # (pairs, 25 draws each)


@needs_jit
@pytest.mark.parametrize("bucketed", [False, True])
def test_binomials_then_uniforms_in_one_call(bucketed: bool) -> None:
    norm = np.array([2.5, 0.5, 40.0, 1.0], dtype=np.float32)
    order = np.array([2, 0, 3, 1], dtype=np.int64)
    cn = np.array([192, 6400, 7, 640], dtype=np.int64)
    cp = np.array([0.6561, 0.6561, 0.3, 0.8984])
    a = np.random.default_rng(21)
    b = np.random.default_rng(21)
    v = pcg.views(a.bit_generator)
    assert v is not None
    w = np.empty(int(cn.sum()), dtype=np.uint32)
    hist = np.empty(2 * int(cn.max()) + 2, dtype=np.int64)
    start = np.empty(4, dtype=np.int64)
    m = np.empty(4, dtype=np.int64)
    u = np.empty(int(cn.sum()), dtype=np.float32)
    for step in range(30):
        if bucketed:
            n = pcg.binomial_bucketed(v[0], v[1], cn, cp, m, norm, order, w, hist, start, u)
        else:
            n = pcg.binomial_scaled(v[0], v[1], cn, cp, m, norm, u)
        mb = np.array([b.binomial(k, q) for k, q in zip(cn.tolist(), cp.tolist(),
                                                                 strict=True)])
        assert np.array_equal(m, mb) and n == int(mb.sum())
        ref = _numpy_scaled(b, mb, norm)
        assert a.bit_generator.state == b.bit_generator.state
        if bucketed:  # table by table in key order
            starts = np.concatenate([[0], np.cumsum(mb)])
            ref = np.concatenate([np.sort(ref[starts[t]:starts[t + 1]]) for t in order.tolist()])
            got = np.concatenate([np.sort(part) for part in np.split(u[:n], np.cumsum(
                mb[order])[:-1])])
        else:
            got = u[:n]
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        if step % 2:
            assert a.random(dtype=np.float32) == b.random(dtype=np.float32)


@needs_jit
def test_the_binomial_check_fails_for_a_wrong_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    right = pcg.binomials

    def off_by_one(pv: np.ndarray, n: np.ndarray, p: np.ndarray, m: np.ndarray) -> int:
        total = right(pv, n, p, m)
        m[-1] += 1  # (one value wrong, the state right)
        return total + 1

    def one_draw_more(pv: np.ndarray, n: np.ndarray, p: np.ndarray, m: np.ndarray) -> int:
        total = right(pv, n, p, m)
        right(pv, n[-1:], p[-1:], m[-1:].copy())  # (the values right, the state not)
        return total

    assert pcg._check_binomial()
    for wrong in (off_by_one, one_draw_more):
        monkeypatch.setattr(pcg, "binomials", wrong)
        assert not pcg._check_binomial()
    monkeypatch.setattr(pcg, "binomials", right)
    monkeypatch.setattr(pcg, "_numpy_version", lambda: (2, 5))  # (BTPE's test changed)
    assert not pcg._check_binomial()
    monkeypatch.setattr(pcg, "_numpy_version", lambda: (2, 4))
    monkeypatch.setattr(pcg, "_CHECKED", False)  # (no trusted layout: no binomials either)
    assert not pcg._check_binomial()
