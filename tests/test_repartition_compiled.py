"""Repartition's compiled interval (envs.sim.device.compiled_shared) against the Python loop.

The Python loop (``compiled=False``) is the reference: every observation, reward and ``info``
of whole episodes, with re-partitionings under way, must be equal (not close) with the kernel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from envs.repartition import RepartitionEnv
from envs.sim.device import compiled_shared, tables

needs_jit = pytest.mark.skipif(not compiled_shared.AVAILABLE,
                               reason="numba missing or LDSGYM_NO_JIT set")


def _cycle(env: RepartitionEnv, step: int) -> int:
    """Every third interval, switch to the next candidate (when allowed); else keep."""
    mask = env.action_masks()
    if step % 3:
        return 0
    a = 1 + (step // 3) % env.n_layouts
    return a if mask[a] else 0


def _episode(compiled: bool, seed: int, **kwargs: Any) -> tuple[list[Any], RepartitionEnv]:
    env = RepartitionEnv(compiled=compiled, **kwargs)
    obs, info = env.reset(seed=seed)
    out: list[Any] = [(obs, 0.0, info, env.latency_counts())]
    done = False
    step = 0
    while not done:
        obs, r, term, trunc, info = env.step(_cycle(env, step))
        step += 1
        done = term or trunc
        out.append((obs, r, info, env.latency_counts()))
    return out, env


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for k, ((o1, r1, i1, h1), (o2, r2, i2, h2)) in enumerate(zip(a, b, strict=True)):
        assert o1.keys() == o2.keys()
        for key in o1:
            np.testing.assert_array_equal(o1[key], o2[key], err_msg=f"step {k} obs {key}")
        assert r1 == r2, f"step {k} reward"
        assert i1 == i2, f"step {k} info"
        assert h1 == h2, f"step {k} latency histogram"


SHORT = {"load": 1.0, "episode_s": 20.0, "interval_s": 1.0}
#: MPS shares, with interference (the default for MPS).
MPS = {"sharing": "mps", "layout": [50, 30, 20]}
#: Requests of several items, some larger than a batch (max_batch 8: such a request runs alone).
SIZED = [{"name": "resnet50", "weight": 0.6, "sla_ms": 30.0,
          "size": {"kind": "uniform", "low": 1, "high": 12}},
         {"name": "bert-base", "weight": 0.4, "sla_ms": 60.0, "size": 3}]


@needs_jit
@pytest.mark.parametrize(("seed", "extra"), [
    (0, {}),
    (1, {}),
    (2, {"trace": "mix-swing", "load": 1.2}),
    (3, {"placement": "least_loaded"}),
    (4, {"placement": "round_robin"}),
    (5, {"placement": "interference_aware"}),
    (6, {"reconfig_mode": "preempt"}),
    (7, {"load": 0.5, "max_queue_delay_ms": 5.0, "drop_expired": False}),
    (8, {"sharing": "mps", "layout": [50, 30, 20], "interference": False}),
    (9, {"request_sizes": True, "workload": SIZED, "load": 1.1}),
    # MPS with interference: the co-runners' slowdowns and the rescheduling of running batches
    (20, MPS),
    (21, {**MPS, "load": 1.2, "trace": "mix-swing"}),
    (22, {**MPS, "layout": [50, 50], "placement": "interference_aware"}),
    (23, {**MPS, "reconfig_params": {"mps_shadow": 1}}),
    (24, {**MPS, "reconfig_params": {"mps_shadow": 1}, "reconfig_mode": "preempt",
          "load": 0.9}),
    (25, {**MPS, "reconfig_mode": "preempt"}),
    (26, {**MPS, "placement": "least_loaded", "load": 0.5, "max_queue_delay_ms": 5.0,
          "drop_expired": False}),
    (27, {**MPS, "layout": [40, 30, 20, 10], "placement": "round_robin", "load": 0.8}),
    (28, {**MPS, "request_sizes": True, "workload": SIZED, "load": 1.1}),
    (29, {**MPS, "placement": "interference_aware", "load": 1.5}),
    # MIG slices that interfere (interference: true)
    (30, {"interference": True}),
])
def test_compiled_episodes_equal_the_python_loop(seed: int, extra: dict[str, Any]) -> None:
    kwargs = {**SHORT, **extra}
    ref, py_env = _episode(False, seed, **kwargs)
    got, jit_env = _episode(True, seed, **kwargs)
    assert not py_env.compiled and jit_env.compiled
    _assert_same(ref, got)
    final = got[-1][2]
    assert final["reconfigurations"] >= 2 and final["downtime_s"] > 0
    assert final["arrived"] == final["completed"] + final["dropped"]
    # Both simulators end in the same state (what no info shows included).
    s1, s2 = py_env.sim, jit_env.sim
    assert s1 is not None and s2 is not None
    assert (s1.backlog, s1.now, s1.counters.busy_s, s1.counters.energy_j) == (
        s2.backlog, s2.now, s2.counters.busy_s, s2.counters.energy_j)
    assert (s1._factor, s1._rem, s1._rt, s1._last_key, s1.busy_until) == (
        s2._factor, s2._rem, s2._rt, s2._last_key, s2.busy_until)
    if py_env.interference:  # co-runners slowed batches down
        assert max(s1._factor) > 1.0


@needs_jit
def test_a_drain_completes_inside_a_compiled_interval() -> None:
    """At load 1 every slice is busy when a switch starts: the changed slices drain their
    running batch inside the kernel's interval, then stay down for the sampled downtime and
    come back up (SLOT_UP) inside a later one."""
    env = RepartitionEnv(compiled=True, load=1.0, episode_s=30.0, interval_s=1.0)
    env.reset(seed=0)
    env.step(0)
    sim = env.sim
    assert sim is not None and all(sim.busy[p] for p in range(4))
    seven = env.candidates.index(("7g.80gb",))
    _, _, _, _, info = env.step(1 + seven)
    assert info["reconfigurations"] == 1
    _, sampled = env.reconfig_log[-1]
    assert not sim._changed  # drained, by a batch end inside the interval (1, 2]
    assert 1.0 < sim.reconfig_until - sampled <= 2.0
    assert info["downtime_s"] == pytest.approx(sim.reconfig_until - 1.0)
    slot = next(p for p in range(env.n_slots) if sim.active[p])
    assert sim.up_at[slot] == sim.reconfig_until > sim.now
    busy_before = sim.counters.busy_s[slot]
    while sim.now < sim.reconfig_until:
        env.step(0)
    assert sim.counters.busy_s[slot] > busy_before  # the 7g slice came up and serves
    assert env.layout_name() == "7g.80gb"


@needs_jit
@pytest.mark.parametrize("extra", [{}, MPS])
def test_compiled_and_python_intervals_mix_within_an_episode(extra: dict[str, Any]) -> None:
    """The kernel leaves the simulator as the Python loop does (with interference: the
    factors, the remaining work and the last running set _reshape saw): alternating the two,
    interval by interval, gives the Python episode."""
    ref, _ = _episode(False, 11, **SHORT, **extra)
    env = RepartitionEnv(compiled=True, **SHORT, **extra)
    obs, info = env.reset(seed=11)
    got: list[Any] = [(obs, 0.0, info, env.latency_counts())]
    done = False
    step = 0
    while not done:
        env.compiled = step % 2 == 0
        obs, r, term, trunc, info = env.step(_cycle(env, step))
        step += 1
        done = term or trunc
        got.append((obs, r, info, env.latency_counts()))
    _assert_same(ref, got)


def test_compiled_is_the_default_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    mig = RepartitionEnv(episode_queries=1000)
    assert mig.compiled == compiled_shared.AVAILABLE
    mps = RepartitionEnv(sharing="mps", layout=[50, 50], episode_queries=1000)
    assert mps.interference and mps.compiled == compiled_shared.AVAILABLE
    prio = RepartitionEnv(priorities=True, episode_queries=1000)
    assert not prio.compiled
    assert not RepartitionEnv(compiled=False, episode_queries=1000).compiled
    # Where sum() compensates (Python 3.12+), the kernel's sums would differ: the Python loop.
    monkeypatch.setattr(tables, "_PLAIN_SUM", False)
    mps = RepartitionEnv(sharing="mps", layout=[50, 50], episode_queries=1000)
    assert not mps.compiled
    assert mps._slowdowns.kernel_tables(0, 2, (1,)) is None
    with pytest.raises(ValueError, match=r"3\.12"):
        RepartitionEnv(sharing="mps", layout=[50, 50], compiled=True)


def test_compiled_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="priorities"):
        RepartitionEnv(priorities=True, compiled=True)
    with pytest.raises(ValueError, match="compiled must be"):
        RepartitionEnv(compiled="yes")  # type: ignore[arg-type]


def test_without_numba_the_python_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_shared, "AVAILABLE", False)
    env = RepartitionEnv(episode_queries=2000)
    assert not env.compiled
    with pytest.raises(ValueError, match="numba"):
        RepartitionEnv(compiled=True)
    env.reset(seed=0)
    _, _, _, trunc, info = env.step(0)
    while not trunc:
        _, _, _, trunc, info = env.step(0)
    assert info["arrived"] == 2000 and math.isfinite(info["goodput"])


def _kernel_factors(tabs: tuple[np.ndarray, ...], jobs: tuple[tuple[int, int] | None, ...]
                    ) -> list[float]:
    """The factors the kernel's _reshape computes for the running ``jobs``."""
    dom, compat, rows, consts = tabs
    P = len(jobs)
    busy = np.array([j is not None for j in jobs])
    model = np.array([-1 if j is None else j[0] for j in jobs], np.int64)
    items = np.array([0 if j is None else j[1] for j in jobs], np.int64)
    out = [1.0] * P
    if sum(bool(busy[q] and dom[q]) for q in range(P)) < 2:
        return out
    for q in range(P):
        if busy[q] and dom[q]:
            anyco, s0, s1 = compiled_shared.co_sums(q, dom[q], compat, busy, model, items, rows)
            if anyco:
                out[q] = compiled_shared.co_factor(rows, q, model[q], items[q], dom[q], s0, s1,
                                                   consts)
    return out


@pytest.mark.parametrize(("sharing", "layout", "sigma"), [
    ("mps", [40, 30, 20, 10], 0.0),
    ("mps", [50, 30, 20], 0.02),  # the stretch's contention term (fitted on CPUs)
    ("ts", [4], 0.0),
    ("mig", ["3g", "2g", "1g", "1g"], 0.0),
])
def test_kernel_slowdowns_equal_the_callable(sharing: str, layout: list[Any],
                                             sigma: float) -> None:
    """The kernel's slowdown arithmetic (co_sums, co_factor on kernel_tables) gives the floats
    of CoRunnerSlowdowns, for the running set and for a batch of one placed next to it."""
    from envs.sim.device.tables import CoRunnerSlowdowns, normalise_layout
    from hwmodels.interference import InterferenceModel
    from hwmodels.partitions import make_layout
    from hwmodels.specs import load_device
    from hwmodels.workloads import build_profile

    dev = load_device("a100-80gb")
    if sigma:
        dev = dataclasses.replace(dev, sm_contention=sigma)
    profiles = [build_profile(n) for n in ("resnet50", "bert-base", "mobilenet_v2")]
    parts = make_layout(dev, normalise_layout(layout, sharing)[0])
    slots = (*parts, None)  # and an empty slot
    fn = CoRunnerSlowdowns(InterferenceModel(dev), profiles, {0: slots}, isolated_mig=False)
    sizes = (1, 2, 3, 4, 8, 12)
    tabs = fn.kernel_tables(0, len(profiles), sizes)
    assert tabs is not None
    dom, compat, rows, consts = tabs
    P = len(slots)
    active = [p is not None for p in slots]
    rng = np.random.default_rng(0)
    slowed = 0
    for _ in range(300):
        jobs = tuple(None if slots[p] is None or rng.random() < 0.3 else (
            int(rng.integers(len(profiles))), int(rng.choice(sizes))) for p in range(P))
        expected = fn(0, jobs)
        assert _kernel_factors(tabs, jobs) == list(expected)
        slowed += max(expected) > 1.0
        m = int(rng.integers(len(profiles)))
        pred = fn.predicted(0, jobs, (m, 1), active)
        busy = np.array([j is not None for j in jobs])
        model = np.array([-1 if j is None else j[0] for j in jobs], np.int64)
        items = np.array([0 if j is None else j[1] for j in jobs], np.int64)
        for r in range(P):
            f = 1.0
            if dom[r] and active[r]:
                anyco, s0, s1 = compiled_shared.co_sums(r, dom[r], compat, busy, model, items,
                                                        rows)
                if anyco:
                    f = compiled_shared.co_factor(rows, r, m, 1, dom[r], s0, s1, consts)
            assert f == pred[r], (jobs, m, r)
    assert slowed > 100
