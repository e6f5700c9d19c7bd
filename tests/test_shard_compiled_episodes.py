"""Whole ShardRouting episodes are the same on the compiled path and on the numpy reference.

The compiled path (``kernels.AVAILABLE``: the lookup draws' key kernels, the row caches'
access kernels, the routing observation kernel with the request-aware entries, the
earliest-replica kernel) must give every observation, reward and ``info`` of an episode, and
the simulator's final state after the drain, to the bit: the reference is the numpy path
(``LDSGYM_NO_JIT=1``), as ``tests/test_repartition_compiled.py`` checks Repartition's
compiled interval against its Python loop.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.sim.dlrm import kernels
from envs.sim.dlrm.rowcache import LfuRowCache, LruRowCache
from envs.sim.jit import INSTALLED

pytestmark = pytest.mark.skipif(not INSTALLED, reason="numba not installed")


def _cache_state(cache: LruRowCache | LfuRowCache) -> list[object]:
    out: list[object] = []
    for name in type(cache).__slots__:
        v = getattr(cache, name)
        out.append(v.tobytes() if isinstance(v, np.ndarray) else v)
    return out


def _final_state(env: Any) -> dict[str, object]:
    """What the simulator holds after the episode (drained): counters, per-node state,
    estimates, caches, links, energy counters and the random stream's position."""
    sim = env.sim
    links = [(lk.v, lk.t, lk.n, lk.busy_s, lk.bytes_done, lk.factor)
             for lk in sim.links_down + sim.links_up]
    return {
        "now": sim.now, "backlog": sim.backlog,
        "sub": repr(sorted(sim.sub.summary(sim.now).items())),
        "req": repr(sorted(sim.req.summary(sim.now).items())),
        "failed": (sim.sub_failed, sim.sub_shed, sim.sub_retried),
        "node_state": sim.node_state.tobytes(), "row_hit": sim.row_hit.tobytes(),
        "outstanding": sim.outstanding.tobytes(),
        "caches": [_cache_state(nd.cache) for nd in sim.nodes],
        "links": links,
        "energy": (sim.fast_reads, sim.slow_reads, sim.link_bytes_sent,
                   list(sim.sub.busy_s), list(sim.req.busy_s)),
        "lookups": (sim.cache_lookups, sim.cache_hits),
        "rng": sim.rng.bit_generator.state,
        "in_flight": (len(sim._subs), len(sim._reqs)),
        "energy_j": env.energy_j(),
    }


def _episode(env_id: str, kwargs: dict[str, Any], seed: int) -> list[object]:
    """Every step of one whole episode (valid actions: a mix of the first, last and a
    rotating valid node) and the final state."""
    env: Any = gym.make(env_id, **kwargs).unwrapped
    obs, info = env.reset(seed=seed)
    out: list[object] = [({k: v.tobytes() for k, v in obs.items()}, repr(sorted(info.items())))]
    rng = np.random.default_rng(seed)
    trunc = False
    while not trunc:
        mask = env.action_masks()
        valid = np.flatnonzero(mask[:env.n_nodes])
        a = int(valid[int(rng.integers(len(valid)))])
        obs, r, term, trunc, info = env.step(a)
        out.append(({k: (v.dtype.str, v.tobytes()) for k, v in obs.items()}, repr(r), term,
                    trunc, repr(sorted(info.items())), mask.tobytes()))
    out.append(_final_state(env))
    return out


_FAULTS = [
    {"start_ms": 3, "duration_ms": 25, "target": 1, "kind": "link", "mode": "fail"},
    {"start_ms": 8, "duration_ms": 40, "target": 2, "kind": "link", "mode": "slow",
     "factor": 3},
    {"start_ms": 5, "duration_ms": 30, "target": 4, "kind": "node", "mode": "fail"},
]


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("ldsgym/ShardRouting-v0", {}),
    ("ldsgym/ShardRouting-v0", {"load": 1.2, "cache_policy": "lfu", "faults": _FAULTS}),
    ("ldsgym/ShardRouting-Tiers-v0", {}),
    ("ldsgym/ShardRouting-Faults-v0", {"load": 1.1}),
    ("ldsgym/ShardRouting-RowWise-v0", {}),
    ("ldsgym/ShardRouting-RequestAware-v0", {"load": 1.1}),
    ("ldsgym/ShardRouting-Hetero-v0", {}),
    ("ldsgym/ShardRouting-Slowdowns-v0", {}),
])
def test_whole_episodes_are_the_reference(env_id: str, kwargs: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"episode_queries": 1600, **kwargs}
    for seed in (1, 2):
        monkeypatch.setattr(kernels, "AVAILABLE", True)
        compiled = _episode(env_id, kwargs, seed)
        monkeypatch.setattr(kernels, "AVAILABLE", False)
        reference = _episode(env_id, kwargs, seed)
        assert len(compiled) == len(reference)
        for i, (c, r) in enumerate(zip(compiled, reference, strict=True)):
            assert c == r, f"{env_id} seed {seed}: step {i} differs"
        final = compiled[-1]
        assert isinstance(final, dict) and final["in_flight"] == (0, 0)  # drained


def test_the_episodes_are_not_trivial() -> None:
    # The comparison above is worth something only if the episodes exercise the paths:
    # cache hits and misses, every node used, faults that retry, and request-aware entries
    # that are not all zero.
    out = _episode("ldsgym/ShardRouting-v0", {"episode_queries": 1600, "faults": _FAULTS,
                                              "load": 1.2}, 1)
    final = out[-1]
    assert isinstance(final, dict)
    hits, lookups = sum(final["lookups"][1]), sum(final["lookups"][0])
    assert 0 < hits < lookups
    assert all(b > 0 for b in final["energy"][3])  # every node served
    assert final["failed"][2] > 0  # retried after the faults
    env: Any = gym.make("ldsgym/ShardRouting-RequestAware-v0", episode_queries=400).unwrapped
    obs, _ = env.reset(seed=3)
    seen = np.zeros(4)
    for _ in range(399):
        valid = np.flatnonzero(env.action_masks())
        obs, *_ = env.step(int(valid[-1]))
        seen += [float(obs[k].max()) for k in ("req_routed", "slack", "link_depth",
                                                 "ssd_depth")]
    assert (seen > 0).all()
