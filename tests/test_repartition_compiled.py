"""Repartition's compiled interval (envs.sim.device.compiled_shared) against the Python loop.

The Python loop (``compiled=False``) is the reference: every observation, reward and ``info``
of whole episodes, with re-partitionings under way, must be equal (not close) with the kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from envs.repartition import RepartitionEnv
from envs.sim.device import compiled_shared

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
def test_compiled_and_python_intervals_mix_within_an_episode() -> None:
    """The kernel leaves the simulator as the Python loop does: alternating the two, interval
    by interval, gives the Python episode."""
    ref, _ = _episode(False, 11, **SHORT)
    env = RepartitionEnv(compiled=True, **SHORT)
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


def test_compiled_is_the_default_where_it_applies() -> None:
    mig = RepartitionEnv(episode_queries=1000)
    assert mig.compiled == compiled_shared.AVAILABLE
    mps = RepartitionEnv(sharing="mps", layout=[50, 50], episode_queries=1000)
    assert mps.interference and not mps.compiled  # interference: the Python loop
    prio = RepartitionEnv(priorities=True, episode_queries=1000)
    assert not prio.compiled
    assert not RepartitionEnv(compiled=False, episode_queries=1000).compiled


def test_compiled_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="interference"):
        RepartitionEnv(sharing="mps", layout=[50, 50], compiled=True)
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
