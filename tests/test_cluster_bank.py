"""The cluster's device bank (envs.sim.cluster.bank: every device's passive event loop in one
compiled call per decision) against the device simulators of the Python path: whole episodes
are compared in tests/test_cluster_compiled.py (the bank is the compiled path wherever it is
usable); here the devices' own state, written back from the bank, must equal the Python path's
device by device mid-episode, also after a deep copy and a pickle."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from envs.cluster import ClusterRoutingEnv
from envs.sim.cluster import bank, kernels
from envs.sim.device.shared import SharedGpuSim

needs_jit = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing or LDSGYM_NO_JIT set")


def _state(dev: SharedGpuSim) -> dict[str, Any]:
    """What a passive device's future depends on (and what its counters say)."""
    live = sorted((t, prio, seq, ev.kind, ev.target) for t, prio, seq, ev in dev.events.heap
                  if not ev.cancelled)
    c = dev.counters
    return {
        "now": dev.events.now, "seq": dev.events._seq, "events": live,
        "queues": [[list(levels[0]) for levels in row] for row in dev.lqueues],
        "running": [list(b) for b in dev._running], "busy": list(dev.busy),
        "busy_until": list(dev.busy_until), "running_model": list(dev.running_model),
        "queued_items": list(dev.queued_items),
        "queued_by_model": [list(r) for r in dev.queued_by_model],
        "queued_work_s": list(dev.queued_work_s),
        "work_level": [list(w) for w in dev.queued_work_level], "up_at": list(dev.up_at),
        "rem": list(dev._rem), "rt": list(dev._rt), "factor": list(dev._factor),
        "job": list(dev._job), "jobcode": list(dev._jobcode),
        "done": [None if e is None else (e.time, e.kind, e.target) for e in dev._done],
        "timeout": [None if e is None else (e.time, e.kind, e.target) for e in dev._timeout],
        "backlog": (dev.backlog, dev._backlog_t, dev._backlog_rate),
        "counters": (c.arrived, c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
                     c.dropped_expired, c.energy_j, list(c.busy_s)),
    }


def _step_both(py: ClusterRoutingEnv, jit: ClusterRoutingEnv, rng: np.random.Generator,
               steps: int) -> None:
    for _ in range(steps):
        mask = py.action_masks()
        np.testing.assert_array_equal(mask, jit.action_masks())
        a = int(rng.choice(np.flatnonzero(mask)))
        r1, r2 = py.step(a), jit.step(a)
        assert r1[1] == r2[1] and r1[4] == r2[4]
        if r1[2] or r1[3]:
            break


def _assert_same_devices(py: ClusterRoutingEnv, jit: ClusterRoutingEnv) -> None:
    assert py.sim is not None and jit.sim is not None
    for d, (a, b) in enumerate(zip(py.sim.devices, jit.sim.devices, strict=True)):
        sa, sb = _state(a), _state(b)
        for key in sa:
            assert sa[key] == sb[key], f"device {d} {key}"


@needs_jit
@pytest.mark.parametrize(("cluster", "kwargs"), [
    ("8", {"load": 1.4, "episode_queries": 2000}),
    ("16", {"load": 1.0, "episode_queries": 1500, "max_batch": 4, "queue_capacity": 6}),
])
def test_the_banks_devices_equal_the_python_paths(cluster: str, kwargs: dict[str, Any]) -> None:
    py = ClusterRoutingEnv(cluster=cluster, compiled=False, **kwargs)
    jit = ClusterRoutingEnv(cluster=cluster, compiled=True, **kwargs)
    py.reset(seed=3)
    jit.reset(seed=3)
    assert jit.sim is not None and jit.sim._bank is not None  # the bank runs the devices
    rng = np.random.default_rng(3)
    busy = False
    for _ in range(4):
        _step_both(py, jit, rng, kwargs["episode_queries"] // 5)
        _assert_same_devices(py, jit)
        assert jit.sim is not None and py.sim is not None
        busy = busy or any(dev.queued_items[p] and dev.busy[p] for dev in py.sim.devices
                           for p in range(dev.n_partitions))
        # Reading the devices does not move the bank: copies go on equal.
        py2, jit2 = copy.deepcopy(py), pickle.loads(pickle.dumps(jit))
        state = rng.bit_generator.state
        _step_both(py2, jit2, rng, 50)
        _assert_same_devices(py2, jit2)
        rng.bit_generator.state = state
    assert busy  # queues and running batches were compared, not only idle devices
    _step_both(py, jit, rng, kwargs["episode_queries"])  # to the end, drain included
    _assert_same_devices(py, jit)
    assert py.sim is not None and py.sim.done


@needs_jit
def test_usable_only_for_sizes_the_bank_holds() -> None:
    env = ClusterRoutingEnv(cluster="8", episode_queries=10, max_batch=4)
    env.reset(seed=0)
    assert env.sim is not None
    devices = env.sim.devices
    assert bank.usable(devices, np.array([1, 4, 2]))
    assert not bank.usable(devices, np.array([1, 5]))  # more than a batch: the Python loop
    assert not bank.usable(devices, np.array([0, 1]))
    assert not bank.usable([], np.array([1]))


def test_no_bank_without_numba() -> None:
    env = ClusterRoutingEnv(cluster="8", episode_queries=10, compiled=False)
    env.reset(seed=0)
    assert env.sim is not None and env.sim._bank is None


@needs_jit
def test_the_held_models_row_is_what_the_rooms_read() -> None:
    """``I_HELD`` (bit k: model k in transit to the slot, queued or running there), by which
    the bank marks a room stale only where it changed, equals at every decision what
    ``ClusterSim._rooms`` reads (the router's transit counts, the bank's queues and running
    model), ``LRU`` is the slots' resident models in ``ClusterSim.resident``'s order, and
    the rooms the kernels list as up to date (computed by ``bank.rooms``) equal a fresh
    computation by the Python reference."""
    env = ClusterRoutingEnv(cluster="16", load=1.2, episode_queries=1500, max_batch=4,
                            queue_capacity=6)
    env.reset(seed=5)
    sim = env.sim
    assert sim is not None and sim._bank is not None
    rng = np.random.default_rng(5)
    held_bits = checked = 0
    for _ in range(1400):
        b = sim._bank
        assert b is not None
        for s in range(sim.n_slots):
            want = 0
            for k in range(sim.n_models):
                if sim.in_transit[s][k] or b.BM[s, k]:
                    want |= 1 << k
            if b.SI[bank.I_RM, s] >= 0:
                want |= 1 << int(b.SI[bank.I_RM, s])
            assert int(b.SI[bank.I_HELD, s]) == want, s
            held_bits += want != 0
            lru = b.LRU[s].tolist()  # the resident models in LRU order (bank.rooms's sum order)
            assert lru == list(sim.resident[s]) + [-1] * (len(lru) - len(sim.resident[s])), s
        ok = np.flatnonzero(sim._sf[kernels.ROOM_OK] != 0.0).tolist()
        room = sim._sf[kernels.ROOM].copy()
        sim._rooms(ok, 0.0, np.zeros(sim.n_slots, bool))  # what each would be now
        np.testing.assert_array_equal(sim._sf[kernels.ROOM][ok], room[ok])
        checked += len(ok)
        mask = env.action_masks()
        env.step(int(rng.choice(np.flatnonzero(mask))))
    assert held_bits > 1000 and checked > 1000
