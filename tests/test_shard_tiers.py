"""Memory tiers per node (``node_tiers``, ``ldsgym/ShardRouting-Tiers-v0``).

Each node serves from its own fast and slow tier with its own row cache: a node's service
times use its tiers' read costs (and nobody else's), a cluster whose nodes all have the same
tiers is the default cluster to the bit, and bad ``node_tiers`` are refused in one line.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.evaluation import run_episode
from agents.shard_baselines import LatencyGreedy
from envs.shard import TIER_NODES
from envs.sim.dlrm import ClusterSpec, ShardLayout, ShardSim
from hwmodels.storage import get_tier


def _serve(spec: ClusterSpec) -> tuple[list[float], list[float], list[float], list[int]]:
    """Every sub-request routed to its shard's lowest-numbered replica (nodes 6 and 7 of the
    default chained declustering then serve nothing), cold caches, no stragglers, arrivals
    far enough apart that no queue overflows: per node busy seconds, fast and slow reads, and
    the request latency histogram."""
    lay = ShardLayout(spec)
    n_req = 30
    sim = ShardSim(lay, np.arange(n_req) * 0.05, np.full(n_req, 0.02),
                   budget=n_req * spec.n_shards, rng=np.random.default_rng(3))
    sim.advance()
    while sim.pending is not None:
        sim.route(min(sim.valid_nodes(sim.pending.shard)))
        sim.advance()
    assert sim.sub.dropped_overflow == 0
    return (list(sim.sub.busy_s), sim.fast_reads, sim.slow_reads,
            list(sim.req.latency.counts))


@pytest.fixture(scope="module")
def base() -> ClusterSpec:
    return gym.make("ldsgym/ShardRouting-v0").unwrapped.cluster  # type: ignore[no-any-return]


def test_each_node_serves_at_its_own_tiers_read_costs(base: ClusterSpec) -> None:
    nvme, sata = get_tier("nvme-ssd"), get_tier("sata-ssd")
    assert base.slow == nvme and not base.node_slow
    homo = _serve(base)
    all_sata = _serve(dataclasses.replace(base, slow=sata))
    # One tier per node, all the same: the scalar tier to the bit.
    assert _serve(dataclasses.replace(base, node_slow=(sata,) * 8)) == all_sata
    # Different tiers on nodes that serve nothing change nothing.
    assert _serve(dataclasses.replace(base, node_slow=(nvme,) * 6 + (sata,) * 2,
                                      node_cache_rows=(base.cache_rows,) * 6 + (1, 1))) == homo
    # Node 0 on SATA: node 0 is served as in the all-SATA cluster, the others as before.
    busy, fast, slow, _ = _serve(dataclasses.replace(base, node_slow=(sata,) + (nvme,) * 7))
    assert busy[0] == all_sata[0][0] and busy[1:] == homo[0][1:]
    assert fast == homo[1] and slow == homo[2]  # the same reads, at other costs
    assert all_sata[0][0] > 2 * homo[0][0] > 0  # SATA reads cost ~10x NVMe's
    lay = ShardLayout(dataclasses.replace(base, node_slow=(sata,) + (nvme,) * 7))
    assert lay.c_slow.tolist() == [base.read_cost_s(sata)] + [base.read_cost_s(nvme)] * 7
    assert not lay.uniform_tiers and ShardLayout(base).uniform_tiers


def test_per_node_cache_rows_size_each_nodes_cache(base: ClusterSpec) -> None:
    rows = (8, 16, 32, 64, 128, 256, 512, 1024)
    spec = dataclasses.replace(base, node_cache_rows=rows)
    lay = ShardLayout(spec)
    assert lay.cache_rows == list(rows)
    sim = ShardSim(lay, np.arange(10) * 1e-3, np.full(10, 0.02), budget=80,
                   rng=np.random.default_rng(0))
    assert [nd.cache.capacity for nd in sim.nodes] == list(rows)
    # A small cache misses more: node 0 (8 rows) serves shard 0 slower than in the base.
    small = _serve(dataclasses.replace(base, node_cache_rows=(8,) + (base.cache_rows,) * 7))
    homo = _serve(base)
    assert small[2][0] > homo[2][0] and small[2][1:] == homo[2][1:]


def _steps(env_id: str, kwargs: dict, steps: int) -> list[object]:
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=5)
    out: list[object] = []
    for _ in range(steps):
        valid = np.flatnonzero(env.unwrapped.action_masks())
        a = int(valid[np.argmin(obs["finish"][valid])])
        obs, r, term, trunc, info = env.step(a)
        out.append(({k: v.tobytes() for k, v in obs.items()}, repr(r), term, trunc,
                    repr(sorted(info.items()))))
        if trunc:
            obs, info = env.reset()
    return out


@pytest.mark.parametrize("tiers", [
    [{"count": 8}],
    [{"count": 3, "fast": "dram", "slow": "nvme-ssd", "cache_mb": 64, "queue_depth": 64},
     {"count": 5}],
])
def test_homogeneous_node_tiers_is_the_default_env(tiers: list[dict]) -> None:
    kwargs = {"episode_queries": 400, "request_obs": True}
    assert (_steps("ldsgym/ShardRouting-v0", {**kwargs, "node_tiers": tiers}, 900)
            == _steps("ldsgym/ShardRouting-v0", kwargs, 900))


def test_tiers_preset() -> None:
    env = gym.make("ldsgym/ShardRouting-Tiers-v0").unwrapped
    spec, lay = env.cluster, env.layout
    kinds = [(spec.fast_of(n).name, spec.slow_of(n).name, lay.cache_rows[n])
             for n in range(8)]
    gpu = ("hbm", "dram", 1024 * 2**20 // spec.row_bytes)
    dram = ("dram", "nvme-ssd", 256 * 2**20 // spec.row_bytes)
    ssd = ("dram", "nvme-ssd", 8 * 2**20 // spec.row_bytes)
    assert kinds == [gpu, dram, dram, ssd] * 2
    assert env.request_obs
    assert len(TIER_NODES) == 6 and sum(t.get("count", 1) for t in TIER_NODES) == 8
    # HBM with a GPU's reads in flight is the cheapest per read; the GPU nodes' slow tier
    # (DRAM) is 400x cheaper than the others' SSD.
    assert lay.c_fast[0] < lay.c_fast[1] and lay.c_slow[0] * 100 < lay.c_slow[1]
    # The capacity estimate prices shard 0 (DLRMv2's hot table) on each replica's tiers.
    svc = env.capacity.service_s[0]
    assert svc[0] * 20 < svc[1] and np.isfinite(svc[:3]).all()


def test_energy_prices_each_nodes_reads_at_its_tiers() -> None:
    env = gym.make("ldsgym/ShardRouting-Tiers-v0", episode_queries=400)
    info = run_episode(env, LatencyGreedy(), seed=1, fast=False)
    u = env.unwrapped
    m, sim = u.energy_model, u.sim
    assert m.fast_j_per_read[0] < m.fast_j_per_read[1]  # HBM 3.9 pJ/bit, DRAM 20.3
    assert m.slow_j_per_read[0] < m.slow_j_per_read[1]  # DRAM vs an SSD page
    # The GPU nodes add the A100's power: (400 - 60) W x memory_weight 0.5 while serving.
    assert m.node_dynamic_w[0] == m.node_dynamic_w[4] == pytest.approx(m.node_dynamic_w[1] + 170)
    assert len(set(m.node_dynamic_w)) == 2
    plain = gym.make("ldsgym/ShardRouting-v0", node_tiers=[
        {k: v for k, v in t.items() if k != "accelerator"} for t in TIER_NODES]).unwrapped
    assert m.idle_w == pytest.approx(plain.energy_model.idle_w + 2 * 60.0)
    parts = u.energy_breakdown()
    assert parts["fast"] == pytest.approx(sum(
        j * r for j, r in zip(m.fast_j_per_read, sim.fast_reads, strict=True)), rel=1e-12)
    assert parts["slow"] == pytest.approx(sum(
        j * r for j, r in zip(m.slow_j_per_read, sim.slow_reads, strict=True)), rel=1e-12)
    assert parts["nodes"] == pytest.approx(sum(
        w * b for w, b in zip(m.node_dynamic_w, sim.sub.busy_s, strict=True)), rel=1e-12)
    assert sum(sim.fast_reads) > 0 and sum(sim.slow_reads) > 0
    assert info["energy_j"] == pytest.approx(sum(parts.values()), rel=1e-12)


@pytest.mark.parametrize(("tiers", "match"), [
    ("hbm", r"expected a non-empty list"),
    ({"fast": "hbm"}, r"expected a non-empty list"),
    ([], r"expected a non-empty list"),
    ([3], r"node_tiers\[0\]: expected a dict"),
    ([{"count": 8, "fats": "hbm"}], r"node_tiers\[0\]: unknown key\(s\) \['fats'\]"),
    ([{"count": 8, "fast": "hbm3"}], r"node_tiers\[0\]: unknown storage tier 'hbm3'"),
    ([{"count": 7}, {"slow": "tape"}], r"node_tiers\[1\]: unknown storage tier 'tape'"),
    ([{"count": 0}, {"count": 8}], r"node_tiers\[0\]: count must be an integer >= 1"),
    ([{"count": 2.5}, {"count": 6}], r"count must be an integer >= 1, got 2.5"),
    ([{"count": 4}, {"count": 3}], r"the counts add up to 7 nodes, the cluster has 8"),
    ([{"count": 8, "cache_mb": -1}], r"cache_mb must be >= 0, got -1.0"),
    ([{"count": 8, "queue_depth": 0.5}], r"queue_depth must be >= 1, got 0.5"),
    ([{"count": 8, "cache_mb": "big"}], r"must be numbers"),
    ([{"count": 8, "accelerator": "b200"}], r"node_tiers\[0\]: hw 'b200': unknown device"),
])
def test_bad_node_tiers_are_one_line(tiers: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        gym.make("ldsgym/ShardRouting-v0", node_tiers=tiers)
    assert "\n" not in str(exc.value)


def test_cluster_spec_checks_per_node_lengths(base: ClusterSpec) -> None:
    with pytest.raises(ValueError, match="node_slow: 2 entries for 8 nodes"):
        dataclasses.replace(base, node_slow=(base.slow,) * 2)
