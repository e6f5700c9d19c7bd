"""The compiled event loop (:class:`envs.sim.dlrm.compiled.CompiledShardSim`) is the reference
:class:`~envs.sim.dlrm.cluster.ShardSim` to the bit.

Whole episodes (every observation, reward, ``info``, mask, and the final state after the drain,
the random stream's position included) on the compiled loop and on the reference, which
``kernels.AVAILABLE = False`` (as ``LDSGYM_NO_JIT=1``) selects; the configurations push the
paths the kernel implements: queues that overflow, tables, heaps and key store that grow, many
requests in flight, row-wise sharding, per-node tiers, 16 nodes, the request-aware entries,
scheduled slowdowns of nodes and links, replicas that move (ShardPlacement), and a pickled
copy mid-episode.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.dlrm import ShardSim, kernels
from envs.sim.dlrm.compiled import CompiledShardSim, eligible
from envs.sim.jit import INSTALLED
from tests.test_shard_compiled_episodes import _FAULTS, _episode, _final_state

pytestmark = pytest.mark.skipif(not INSTALLED, reason="numba not installed")

_CASES = [
    ("ldsgym/ShardRouting-v0", {}),
    ("ldsgym/ShardRouting-v0", {"load": 3.0}),  # queues overflow, many requests in flight
    ("ldsgym/ShardRouting-RowWise-v0", {"load": 1.3}),
    ("ldsgym/ShardRouting-Tiers-v0", {}),
    ("ldsgym/ShardRouting-16N-v0", {"load": 1.2}),
    ("ldsgym/ShardRouting-RequestAware-v0", {"load": 1.1}),
    ("ldsgym/ShardRouting-Slowdowns-v0", {"load": 1.2}),  # nodes and links slowed down
    ("ldsgym/ShardRouting-Hetero-v0", {}),
    # failures: retries, evacuated nodes and links, caches cleared, random failures
    ("ldsgym/ShardRouting-v0", {"load": 1.2, "faults": _FAULTS}),
    ("ldsgym/ShardRouting-Faults-v0", {"load": 1.1}),
    ("ldsgym/ShardRouting-v0", {"load": 1.2, "faults": _FAULTS, "max_retries": 0,
                                "replication": 1}),  # sub-requests fail, sent or not
]


def _sim_class(env_id: str, kwargs: dict[str, Any]) -> type:
    env: Any = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    return type(env.sim)


@pytest.mark.parametrize(("env_id", "kwargs"), _CASES)
def test_whole_episodes_are_the_reference(env_id: str, kwargs: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"episode_queries": 2400, **kwargs}
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    assert _sim_class(env_id, kwargs) is CompiledShardSim
    compiled = _episode(env_id, kwargs, 3)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert _sim_class(env_id, kwargs) is ShardSim
    reference = _episode(env_id, kwargs, 3)
    assert len(compiled) == len(reference)
    for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
        assert c == r, f"{env_id} {kwargs}: step {i} differs"
    final = compiled[-1]
    assert isinstance(final, dict) and final["in_flight"] == (0, 0)  # drained


def _tiny_arrays(monkeypatch: pytest.MonkeyPatch, **sizes: int) -> None:
    """The compiled simulator's initial array sizes set to ``sizes`` (so that they must grow),
    with the kernels on."""
    for name, size in sizes.items():
        monkeypatch.setattr(CompiledShardSim, name, size)
    monkeypatch.setattr(kernels, "AVAILABLE", True)


def test_growth_and_overflow_are_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny initial arrays, so that every one grows (and the kernel stops, grows or flushes,
    and goes on) many times, in an overloaded episode whose queues overflow."""
    kwargs = {"episode_queries": 2400, "load": 3.0}
    _tiny_arrays(monkeypatch, _HEAP0=4, _MSG0=1, _SUB0=2, _REQ0=1, _BUF0=1, _KEYS0=8, _ALIVE0=1)
    compiled = _episode("ldsgym/ShardRouting-v0", kwargs, 5)
    env: Any = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
    env.reset(seed=5)
    sim = env.sim
    assert isinstance(sim, CompiledShardSim)
    while sim.pending is not None:
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert sim.sub.dropped_overflow > 0
    assert len(sim._req_i) > 16 and len(sim._sub_i) > 64 and len(sim._hp_t) > 16
    assert sim._mh.shape[1] > 4 and len(sim._buf) > 1 and len(sim._keys) > 8
    assert sim._alive2.shape[1] > 64
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    reference = _episode("ldsgym/ShardRouting-v0", kwargs, 5)
    assert compiled == reference


def test_pickled_mid_episode_goes_on_as_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled simulator pickled mid-episode (its state as arrays, keys compacted) goes on
    exactly as the reference that was never pickled."""
    kwargs = {"episode_queries": 1600, "load": 1.5}
    runs = []
    for available, copy in ((True, True), (False, False)):
        monkeypatch.setattr(kernels, "AVAILABLE", available)
        env: Any = gym.make("ldsgym/ShardRouting-v0", **kwargs).unwrapped
        env.reset(seed=4)
        rng = np.random.default_rng(4)
        out = []
        for t in range(1500):
            if copy and t == 700:
                env = pickle.loads(pickle.dumps(env))
            valid = np.flatnonzero(env.action_masks())
            obs, r, _, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
            out.append(({k: v.tobytes() for k, v in obs.items()}, r, repr(sorted(info.items()))))
            if trunc:
                break
        runs.append(out)
    assert runs[0] == runs[1]


def test_only_what_the_kernel_implements_is_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    assert _sim_class("ldsgym/ShardRouting-v0", {}) is CompiledShardSim
    # LFU caches stay on the reference; failures and slowdowns do not
    assert _sim_class("ldsgym/ShardRouting-Slowdowns-v0", {}) is CompiledShardSim
    assert _sim_class("ldsgym/ShardRouting-Faults-v0", {}) is CompiledShardSim
    assert _sim_class("ldsgym/ShardRouting-v0", {"cache_policy": "lfu"}) is ShardSim
    env: Any = gym.make("ldsgym/ShardRouting-v0").unwrapped
    assert eligible(env.layout, (), None, dynamic=True)  # replicas that move: compiled
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert not eligible(env.layout, (), None, dynamic=False)


def _placement_episode(env_id: str, kwargs: dict[str, Any], seed: int) -> list[object]:
    """A whole ShardPlacement episode of random toggles (replicas added and dropped, so
    migrations finish among the other messages) and no-ops, and the final state."""
    env: Any = gym.make(env_id, **kwargs).unwrapped
    obs, info = env.reset(seed=seed)
    out: list[object] = [({k: v.tobytes() for k, v in obs.items()}, repr(sorted(info.items())))]
    rng = np.random.default_rng(seed)
    trunc = False
    while not trunc:
        valid = np.flatnonzero(env.action_masks())
        a = int(valid[int(rng.integers(len(valid)))]) if rng.random() < 0.6 else 0
        obs, r, _, trunc, info = env.step(a)
        out.append(({k: v.tobytes() for k, v in obs.items()}, repr(r),
                    repr(sorted(info.items()))))
    out.append(_final_state(env))
    out.append((env.sim.migrations, env.sim.migrations_failed, env.sim.migration_bytes,
                env.sim.holds.tobytes(), [list(r) for r in env.sim.replicas]))
    return out


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("ldsgym/ShardPlacement-v0", {}),
    ("ldsgym/ShardPlacement-Drift-v0", {}),
    ("ldsgym/ShardPlacement-Tiers-v0", {}),
    ("ldsgym/ShardPlacement-v0", {"faults": "random", "load": 1.1}),  # migrations aborted
])
def test_placement_episodes_are_the_reference(env_id: str, kwargs: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"episode_queries": 2400, **kwargs}
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    assert _sim_class(env_id, kwargs) is CompiledShardSim
    compiled = _placement_episode(env_id, kwargs, 6)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert _sim_class(env_id, kwargs) is ShardSim
    reference = _placement_episode(env_id, kwargs, 6)
    assert len(compiled) == len(reference)
    for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
        assert c == r, f"{env_id}: step {i} differs"
    assert compiled[-1][0] > 10  # type: ignore[index]  (migrations happened)


def test_route_earliest_grows_and_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """ShardPlacement routes each sub-request with ``route_earliest`` (on the compiled
    simulator the choice and the send are one kernel call): with tiny initial tables, heaps
    and message heaps it stops, grows and calls again many times, and the episode is still
    the reference's (``route(earliest_replica(...))`` in Python)."""
    kwargs = {"episode_queries": 1600, "load": 2.0}
    _tiny_arrays(monkeypatch, _HEAP0=4, _MSG0=1, _SUB0=2, _REQ0=1)
    compiled = _placement_episode("ldsgym/ShardPlacement-v0", kwargs, 8)
    env: Any = gym.make("ldsgym/ShardPlacement-v0", **kwargs).unwrapped
    env.reset(seed=8)
    sim = env.sim
    assert isinstance(sim, CompiledShardSim)
    calls = {"route": 0}
    route = sim.route

    def counted(node: int) -> None:  # the Python route: not used when the kernel routes
        calls["route"] += 1
        route(node)

    monkeypatch.setattr(sim, "route", counted)
    for _ in range(40):
        env.step(0)
    assert calls["route"] == 0
    assert len(sim._sub_i) > 2 and sim._mh.shape[1] > 1 and len(sim._hp_t) > 4
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    reference = _placement_episode("ldsgym/ShardPlacement-v0", kwargs, 8)
    assert len(compiled) == len(reference)
    for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
        assert c == r, f"step {i} differs"


def test_route_observe_within_a_request_grows_and_is_the_reference(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ShardRouting routes a sub-request whose request has more to route with
    ``route_observe`` (the send and the next one's observation in one kernel call, from the
    request's sub-request rows): every decision but the last of each request takes it, none
    of them calls the Python ``route``, and with tiny initial tables and heaps (it stops,
    grows and calls again) the episode is still the reference's."""
    kwargs = {"episode_queries": 1600, "load": 2.0}
    _tiny_arrays(monkeypatch, _HEAP0=4, _MSG0=1, _SUB0=2, _REQ0=1)
    compiled = _episode("ldsgym/ShardRouting-RequestAware-v0", kwargs, 6)
    env: Any = gym.make("ldsgym/ShardRouting-RequestAware-v0", **kwargs).unwrapped
    env.reset(seed=6)
    sim = env.sim
    assert isinstance(sim, CompiledShardSim)
    calls = {"route": 0, "fused": 0}
    route, route_observe = sim.route, sim.route_observe

    def counted(node: int) -> None:
        calls["route"] += 1
        route(node)

    def counted_fused(*args: Any) -> np.ndarray | None:
        out = route_observe(*args)
        calls["fused"] += out is not None
        return out

    monkeypatch.setattr(sim, "route", counted)
    monkeypatch.setattr(sim, "route_observe", counted_fused)
    for _ in range(80):  # 10 requests of 8 sub-requests
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert calls == {"route": 10, "fused": 70}
    assert len(sim._sub_i) > 2 and sim._mh.shape[1] > 1 and len(sim._hp_t) > 4
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    reference = _episode("ldsgym/ShardRouting-RequestAware-v0", kwargs, 6)
    assert len(compiled) == len(reference)
    for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
        assert c == r, f"step {i} differs"


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("ldsgym/ShardRouting-v0", {"reward": {"name": "goodput", "energy_weight": 0.01}}),
    ("ldsgym/ShardRouting-Faults-v0", {"load": 1.1}),
    ("ldsgym/ShardRouting-RequestAware-v0", {"allow_shed": True}),
])
def test_routed_step_info_is_info(env_id: str, kwargs: dict[str, Any],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After a decision ``route_observe`` took, ``step``'s info (from the kernel's link sums
    and the terms kept between events) is ``_info()``'s of that state (Python's
    ``link_utilization`` and ``energy_j``), entry for entry, types and key order too."""
    env: Any = gym.make(env_id, episode_queries=1200, **kwargs).unwrapped
    env.reset(seed=4)
    sim = env.sim
    assert isinstance(sim, CompiledShardSim)
    fused = {"n": 0}
    route_observe = sim.route_observe

    def counted(*args: Any) -> np.ndarray | None:
        out = route_observe(*args)
        fused["n"] += out is not None
        return out

    monkeypatch.setattr(sim, "route_observe", counted)
    rng = np.random.default_rng(4)
    trunc = False
    while not trunc:
        n = fused["n"]
        valid = np.flatnonzero(env.action_masks())
        _, _, _, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
        if fused["n"] > n:
            assert repr(list(info.items())) == repr(list(env._info().items()))
            busy, busy_max, links, req_pred = env._acc.tolist()
            assert req_pred == env._req_pred
            now = sim.events.now
            assert (busy / (2 * env.n_nodes * now), busy_max / now) == sim.link_utilization(now)
            head, dense = env._energy_part
            assert head + links + dense == env.energy_j()
    assert fused["n"] > 500


def test_route_observe_only_with_rows() -> None:
    """Row-wise sharding and extra reads (drifting popularity) have no sub-request rows:
    every decision takes the Python route (whole episodes of both are checked against the
    reference above and in test_shard_compiled_episodes)."""
    for env_id, kwargs in (("ldsgym/ShardRouting-RowWise-v0", {}),
                           ("ldsgym/ShardRouting-v0", {"popularity": {"hot": 2}})):
        env: Any = gym.make(env_id, episode_queries=400, **kwargs).unwrapped
        env.reset(seed=1)
        sim = env.sim
        if not isinstance(sim, CompiledShardSim):
            continue
        assert not sim._fan_ok
        for _ in range(16):
            assert sim.route_observe(0, env._consts, 0.0, 0.0, env._out_size) is None
            env.step(int(np.flatnonzero(env.action_masks())[0]))


def test_placement_routes_runs_of_rows_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """ShardPlacement routes a request's sub-requests from their rows, a run of live ones per
    compiled call (``segment.send_rows_earliest``), not one ``send_earliest`` call each;
    with tiny initial tables and heaps the call stops part-way, grows and goes on, and the
    episode is still the reference's (``test_placement_episodes_are_the_reference`` covers
    failures: sub-requests without a live replica in the middle of a run)."""
    from envs.sim.dlrm import segment

    kwargs = {"episode_queries": 400, "load": 2.0}
    _tiny_arrays(monkeypatch, _HEAP0=4, _MSG0=1, _SUB0=2, _REQ0=1)
    calls = {"one": 0, "rows": 0}
    one, rows = segment.send_earliest, segment.send_rows_earliest

    def counted_one(*args: Any) -> int:
        calls["one"] += 1
        return int(one(*args))

    def counted_rows(*args: Any) -> int:
        calls["rows"] += 1
        return int(rows(*args))

    monkeypatch.setattr(segment, "send_earliest", counted_one)
    monkeypatch.setattr(segment, "send_rows_earliest", counted_rows)
    compiled = _placement_episode("ldsgym/ShardPlacement-v0", kwargs, 9)
    assert calls["one"] == 0 and calls["rows"] >= 400
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    reference = _placement_episode("ldsgym/ShardPlacement-v0", kwargs, 9)
    assert len(compiled) == len(reference)
    for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
        assert c == r, f"step {i} differs"


def test_fused_step_without_kernel_sums_is_the_same_episode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Python whose ``sum`` compensates its rounding (3.12+) the fused step takes its
    info from ``_info``: that path plays the same episode (every observation, reward and
    info) as the one from the kernel's sums."""
    import envs.shard as shard_env

    kwargs = {"episode_queries": 300, "reward": {"name": "goodput", "energy_weight": 0.01}}
    fused = _episode("ldsgym/ShardRouting-v0", kwargs, 3)
    monkeypatch.setattr(shard_env, "_KERNEL_SUMS", False)
    calls = {"n": 0}
    info = shard_env.ShardRoutingEnv._info

    def counted(self: Any) -> dict[str, Any]:
        calls["n"] += 1
        return info(self)

    monkeypatch.setattr(shard_env.ShardRoutingEnv, "_info", counted)
    assert _episode("ldsgym/ShardRouting-v0", kwargs, 3) == fused
    assert calls["n"] >= len(fused) - 2  # every step's info came from _info


def test_stragglers_inside_run_are_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # _run handles the straggler events in its loop (while arriving and while draining)
    # instead of returning them to advance; the episode is still the reference's.
    inside = {False: 0, True: 0}  # stragglers handled inside _run, by its drain
    running: list[bool] = []
    run, on_straggler = CompiledShardSim._run, CompiledShardSim._on_straggler

    def spy_run(self: CompiledShardSim, drain: bool) -> int:
        running.append(drain)
        try:
            return run(self, drain)
        finally:
            running.pop()

    def spy_straggler(self: CompiledShardSim, node: int, now: float) -> None:
        if running:
            inside[running[-1]] += 1
        on_straggler(self, node, now)

    monkeypatch.setattr(CompiledShardSim, "_run", spy_run)
    monkeypatch.setattr(CompiledShardSim, "_on_straggler", spy_straggler)
    kwargs = {"episode_queries": 2400, "load": 1.2}
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    compiled = _episode("ldsgym/ShardRouting-v0", kwargs, 5)
    assert inside[False] > 0 and inside[True] > 0
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert _episode("ldsgym/ShardRouting-v0", kwargs, 5) == compiled
