"""ClusterRouting's reset reuses the previous episode's device simulators
(``ClusterSim(reuse=...)``, :meth:`envs.sim.device.shared.SharedGpuSim.restart`) and start
state: an env's next episode must equal a new env's episode of the same seed, on both paths,
whether the previous episode drained or was left midway, and after a pickle round trip."""

from __future__ import annotations

import math
import pickle
from collections import deque
from typing import Any

import numpy as np
import pytest

from envs.cluster import ClusterRoutingEnv
from envs.sim.cluster import kernels
from envs.sim.cluster.bank import DeviceBank
from envs.sim.cluster.sim import ClusterSim, _empty_trace
from envs.sim.device.shared import SharedGpuSim, SlotSpec

PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(
    not kernels.AVAILABLE, reason="numba missing or LDSGYM_NO_JIT set"))]

#: Caches of constant results (filled as needed, equal results either way) and the tables
#: both envs build alike; not state.
_SKIP = {"_fcache", "_lat_cache", "_batch_sizes", "_slowdown", "_predict", "tables"}


def _same(a: Any, b: Any, path: str, seen: set[tuple[int, int]]) -> None:
    """``a`` and ``b`` hold equal state, recursively (containers by content, objects by
    their attributes in order)."""
    key = (id(a), id(b))
    if key in seen:
        return
    seen.add(key)
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys"
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]", seen)
    elif isinstance(a, (list, tuple, deque)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]", seen)
    elif isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{path}: {a} != {b}"
    elif (hasattr(a, "__dict__") or hasattr(a, "__slots__")) and not callable(a):
        da, db = _attributes(a), _attributes(b)
        if isinstance(a, DeviceBank):  # the request buffers: what is queued and running
            # (a reused bank keeps its last episode's requests outside them, never read)
            for k, v in a._live_buffers().items():
                _same(v, b._live_buffers()[k], f"{path}.{k}", seen)
            for k in (*DeviceBank._BUFFERS, "_tail"):
                del da[k], db[k]
        assert list(da) == list(db), f"{path}: attributes {sorted(set(da) ^ set(db))}"
        for k in da:
            if k not in _SKIP:
                _same(da[k], db[k], f"{path}.{k}", seen)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _attributes(x: Any) -> dict[str, Any]:
    out = dict(vars(x)) if hasattr(x, "__dict__") else {}
    for cls in type(x).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(x, name):
                out[name] = getattr(x, name)
    return out


def _episode(env: ClusterRoutingEnv, seed: int, steps: int | None = None) -> list[Any]:
    """The episode's observations, masks, rewards, flags and infos under a seeded random
    valid policy (``steps``: stop there, leaving the episode midway)."""
    obs, info = env.reset(seed=seed)
    out: list[Any] = [obs, info]
    rng = np.random.default_rng(seed)
    k = 0
    while steps is None or k < steps:
        mask = env.action_masks()
        a = int(rng.choice(np.flatnonzero(mask))) if k % 9 else int(env.action_space.n - 1)
        obs, r, term, trunc, info = env.step(a)
        out.append((mask, obs, r, term, trunc, info))
        k += 1
        if term or trunc:
            out.append(env.latency_counts())
            break
    return out


def _assert_same_episode(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    _same(a, b, "episode", set())


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize(("cluster", "kwargs"), [
    ("8", {"load": 1.2, "episode_queries": 1500}),
    ("64", {"load": 0.9, "episode_queries": 1200, "queue_capacity": 6,
            "reward": {"name": "goodput", "energy_weight": 0.01, "backlog_weight": 1.0}}),
])
def test_next_episode_equals_a_new_envs(cluster: str, kwargs: dict[str, Any],
                                        compiled: bool) -> None:
    env = ClusterRoutingEnv(cluster=cluster, compiled=compiled, **kwargs)
    _episode(env, 3)  # drained: every queue empty, the containers kept
    devices = env.sim.devices if env.sim is not None else []
    bank = env.sim._bank if env.sim is not None else None
    again = _episode(env, 5)
    assert env.sim is not None and env.sim.devices is devices  # taken over, not rebuilt
    assert env.sim._bank is bank and (bank is not None) == compiled  # its arrays too
    fresh = _episode(ClusterRoutingEnv(cluster=cluster, compiled=compiled, **kwargs), 5)
    _assert_same_episode(again, fresh)
    assert again[-1] and sum(again[-1]) > 0  # queries were served

    # Left midway (queued, running and in-transit queries), then a new episode.
    _episode(env, 7, steps=kwargs["episode_queries"] // 2)
    assert any(d.queued_items[p] or d.busy[p] for d in env.sim.devices
               for p in range(d.n_partitions))
    _assert_same_episode(_episode(env, 5), fresh)

    # After a pickle round trip taken midway: the unpickled env's next episode too.
    _episode(env, 7, steps=kwargs["episode_queries"] // 3)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.sim is not None
    if compiled:  # what earlier episodes left in the request buffers does not travel
        assert copy.sim._bank is not None and env.sim._bank is not None
        live = env.sim._bank._live_buffers()
        assert not all(np.array_equal(getattr(env.sim._bank, k), v) for k, v in live.items())
        for k, v in live.items():
            np.testing.assert_array_equal(getattr(copy.sim._bank, k), v)
    devices = copy.sim.devices
    _assert_same_episode(_episode(copy, 5), fresh)
    assert copy.sim.devices is devices


@pytest.mark.parametrize("compiled", PATHS)
def test_reset_state_equals_a_new_envs(compiled: bool) -> None:
    """Attribute by attribute: the simulator a reused env starts an episode with and a new
    env's (what ``restart`` or the start template could forget shows here)."""
    kw: dict[str, Any] = {"cluster": "8", "load": 1.3, "episode_queries": 800,
                          "compiled": compiled}
    env = ClusterRoutingEnv(**kw)
    _episode(env, 1)
    _episode(env, 2, steps=300)
    env.reset(seed=4)
    new = ClusterRoutingEnv(**kw)
    new.reset(seed=4)
    _same(env.sim, new.sim, "sim", set())


def test_restart_equals_a_new_device_and_refuses_after_reconfigure() -> None:
    env = ClusterRoutingEnv(cluster="8", load=1.3, episode_queries=600, compiled=False)
    _episode(env, 1, steps=400)
    assert env.sim is not None
    assert any(dev.counters.completed for dev in env.sim.devices)
    tab, d = env.tables, 0
    dev = env.sim.devices[d]
    new = SharedGpuSim(tab.latency[d], tab.fits[d], _empty_trace(env.sim.models), env.batcher,
                       tab.power_w[d], slowdown=tab.slowdowns[d], slowdown_cache={})
    dev.restart()
    _same(dev, new, "device", set())
    spec = SlotSpec(tab.latency[d][0], tab.fits[d][0], tab.power_w[d][0])
    dev.reconfigure({0: spec}, 0.1)
    with pytest.raises(ValueError, match="reconfigured"):
        dev.restart()


def test_a_mismatched_reuse_builds_new_devices() -> None:
    a = ClusterRoutingEnv(cluster="8", episode_queries=300, compiled=False)
    b = ClusterRoutingEnv(cluster="8", episode_queries=300, compiled=False, max_batch=4)
    a.reset(seed=0)
    assert a.sim is not None
    old = a.sim.devices
    sim = ClusterSim(a.tables, a._draw_arrivals(a._trace_seed), b.batcher, a.initial_residents,
                     a._slowdown_caches, compiled=False, reuse=a.sim)  # another batcher
    assert a.sim.devices is old
    assert all(x is not y for x, y in zip(sim.devices, old, strict=True))
    assert sim.devices[0].batcher == b.batcher
