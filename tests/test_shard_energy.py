"""The energy model of the sharded cluster (:mod:`hwmodels.energy`) in ShardRouting/Placement."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.shard_baselines import LatencyGreedy
from hwmodels.calibration.targets import read_targets
from hwmodels.energy import TIER_ENERGY, ClusterEnergy, link_energy, tier_energy
from hwmodels.links import get_link
from hwmodels.storage import get_tier

TARGETS = Path(__file__).resolve().parents[1] / "calibration" / "published_targets.csv"


def _target(tid: str) -> str:
    return next(t.value for t in read_targets(TARGETS) if t.id == tid)


def test_tier_figures_are_the_published_ones() -> None:
    assert TIER_ENERGY["hbm"].pj_per_bit == float(_target("T163"))
    low_nj = float(_target("T164").split("-")[0])  # nJ per 64-bit access
    assert TIER_ENERGY["dram"].pj_per_bit == pytest.approx(low_nj * 1e3 / 64)


def test_build_by_hand() -> None:
    dram, ssd = get_tier("dram"), get_tier("nvme-ssd")
    eth = get_link("ethernet-25g")
    m = ClusterEnergy.build(n_nodes=2, node_idle_w=100.0, node_dynamic_w=50.0, fast=dram,
                            slow=ssd, row_bytes=512, links=[eth, eth], dense_servers=1,
                            dense_idle_w=60.0, dense_busy_w=160.0)
    # idle: 2 x (100 W + 0.04 W/GB x 512 GB + 5 W SSD) + 2 links x 2 ports x 6 W + 60 W
    assert m.idle_w == pytest.approx(2 * (100 + 0.04 * 512 + 5) + 2 * 2 * 6 + 60)
    fast_j = 512 * 8 * 1.3e3 / 64 * 1e-12  # 8 lines of 64 B
    assert m.fast_j_per_read == pytest.approx((fast_j,) * 2)
    assert m.slow_j_per_read == pytest.approx((15e-6,) * 2)  # one 4 KiB page
    assert m.link_j_per_byte == pytest.approx((30 * 8e-12,) * 2)
    assert m.dense_dynamic_w == pytest.approx(100.0)
    parts = m.breakdown_j(2.0, [0.25, 0.75], [6e5, 4e5], [1e3, 0.0], [1e6, 0.0], 0.5)
    assert parts == pytest.approx({"idle": 2 * m.idle_w, "nodes": 50.0,
                                   "fast": 1e6 * fast_j, "slow": 1e3 * 15e-6,
                                   "links": 1e6 * 240e-12, "dense": 50.0})
    assert m.energy_j(2.0, [0.25, 0.75], [6e5, 4e5], [1e3, 0.0], [1e6, 0.0], 0.5) == pytest.approx(
        sum(parts.values()))


def test_build_per_node_tiers() -> None:
    """Node 0 an HBM node with DRAM behind, node 1 DRAM with an NVMe SSD: each node's reads
    are priced at its own tiers, and its idle floor counts its own devices."""
    hbm, dram, ssd = get_tier("hbm"), get_tier("dram"), get_tier("nvme-ssd")
    eth = get_link("ethernet-25g")
    m = ClusterEnergy.build(n_nodes=2, node_idle_w=[160.0, 100.0], node_dynamic_w=[220.0, 50.0],
                            fast=[hbm, dram], slow=[dram, ssd], row_bytes=512,
                            links=[eth, eth], dense_servers=1, dense_idle_w=60.0,
                            dense_busy_w=160.0)
    hbm_j = 512 * 8 * 3.9e-12
    dram_j = 512 * 8 * 1.3e3 / 64 * 1e-12
    assert m.fast_j_per_read == pytest.approx((hbm_j, dram_j))
    assert m.slow_j_per_read == pytest.approx((dram_j, 15e-6))
    assert m.idle_w == pytest.approx(160 + 0.04 * dram.capacity_gb
                                     + 100 + 0.04 * dram.capacity_gb + 5 + 2 * 2 * 6 + 60)
    assert m.node_dynamic_w == (220.0, 50.0)
    parts = m.breakdown_j(1.0, [0.5, 2.0], [10.0, 20.0], [30.0, 40.0], [0.0, 0.0], 0.0)
    assert parts["nodes"] == pytest.approx(0.5 * 220 + 2.0 * 50)
    assert parts["fast"] == pytest.approx(10 * hbm_j + 20 * dram_j)
    assert parts["slow"] == pytest.approx(30 * dram_j + 40 * 15e-6)
    with pytest.raises(ValueError, match="2 idle and 3 dynamic node powers for 2 nodes"):
        ClusterEnergy.build(n_nodes=2, node_idle_w=[1.0, 1.0], node_dynamic_w=[1.0] * 3,
                            fast=hbm, slow=dram, row_bytes=512, links=[eth, eth],
                            dense_servers=1, dense_idle_w=1.0, dense_busy_w=1.0)
    with pytest.raises(ValueError, match="1 fast and 2 slow tiers for 2 nodes"):
        ClusterEnergy.build(n_nodes=2, node_idle_w=1.0, node_dynamic_w=1.0, fast=[hbm],
                            slow=[dram, ssd], row_bytes=512, links=[eth, eth],
                            dense_servers=1, dense_idle_w=1.0, dense_busy_w=1.0)


def test_bad_names_and_overrides() -> None:
    with pytest.raises(ValueError, match="no energy figures for tier"):
        tier_energy("tape")
    with pytest.raises(ValueError, match="no energy figures for link"):
        link_energy("carrier-pigeon")
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        gym.make("ldsgym/ShardRouting-v0", energy={"bogus": 1.0})
    with pytest.raises(ValueError, match="must be >= 0"):
        gym.make("ldsgym/ShardRouting-v0", energy={"idle_w": -1.0})


def _greedy_episode(env: gym.Env, seed: int, queries: int) -> tuple[list[float], list[dict]]:
    policy = LatencyGreedy()
    obs, info = env.reset(seed=seed)
    rewards, infos = [], [info]
    done = False
    while not done:
        a, _ = policy.predict(obs, action_masks=env.unwrapped.action_masks())
        obs, r, term, trunc, info = env.step(int(a))
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return rewards, infos


def test_routing_info_energy() -> None:
    env = gym.make("ldsgym/ShardRouting-v0", episode_queries=400)
    _, infos = _greedy_episode(env, 0, 400)
    e = np.array([i["energy_j"] for i in infos])
    assert e[0] > 0 and np.all(np.diff(e) >= 0) and e[-1] > e[0]
    u = env.unwrapped
    parts = u.energy_breakdown()
    assert sum(parts.values()) == pytest.approx(e[-1])
    assert parts["idle"] == pytest.approx(u.energy_model.idle_w * u.sim.now)
    assert min(parts.values()) > 0  # every part is exercised by an ordinary episode
    last = infos[-1]
    assert last["energy_per_query_j"] == pytest.approx(e[-1] / last["requests_completed"])
    assert last["power_w"] == pytest.approx(e[-1] / u.sim.now)
    # Mean power between the idle floor and every device and link at once at full tilt.
    assert u.energy_model.idle_w < last["power_w"] < (
        u.energy_model.idle_w + sum(u.energy_model.node_dynamic_w)
        + u.cluster.dense_servers * u.energy_model.dense_dynamic_w + 1e3)


def test_energy_weight_prices_joules_and_routes_the_same() -> None:
    w = 0.01
    base = gym.make("ldsgym/ShardRouting-v0", episode_queries=300)
    priced = gym.make("ldsgym/ShardRouting-v0", episode_queries=300,
                      reward={"name": "goodput", "energy_weight": w})
    r0, i0 = _greedy_episode(base, 5, 300)
    r1, i1 = _greedy_episode(priced, 5, 300)
    assert len(r0) == len(r1)
    e = np.array([i["energy_j"] for i in i1])
    assert [i["energy_j"] for i in i0] == list(e)  # same dynamics
    assert np.allclose(np.array(r1), np.array(r0) - w * np.diff(e), rtol=0, atol=1e-9)
    assert math.isclose(sum(r1), sum(r0) - w * (e[-1] - e[0]), abs_tol=1e-6)


def test_placement_migrations_cost_link_energy() -> None:
    env = gym.make("ldsgym/ShardPlacement-v0", episode_queries=60,
                   reward={"name": "goodput", "energy_weight": 0.01})
    _, info = env.reset(seed=1)
    u = env.unwrapped
    sent0 = sum(u.sim.link_bytes_sent)
    mask = u.action_masks()
    add = next(a for a in range(1, len(mask))
               if mask[a] and not u.sim.holds[(a - 1) % u.n_nodes, (a - 1) // u.n_nodes])
    *_, info = env.step(add)
    assert sum(u.sim.link_bytes_sent) - sent0 >= u.sim.migration_bytes > 0
    e0 = info["energy_j"]
    while info["requests_completed"] == 0:
        *_, info = env.step(0)
    assert info["energy_j"] > e0 > 0 and info["energy_per_query_j"] > 0


def test_request_aware_entries() -> None:
    """RequestAware-v0: the plain env's entries, dynamics and rewards, plus REQUEST_KEYS that
    agree with the request's own entries."""
    from envs.shard import REQUEST_KEYS

    plain = gym.make("ldsgym/ShardRouting-v0", episode_queries=200)
    aware = gym.make("ldsgym/ShardRouting-RequestAware-v0", episode_queries=200)
    o0, _ = plain.reset(seed=2)
    o1, _ = aware.reset(seed=2)
    policy = LatencyGreedy()
    done, seen_slack = False, False
    while not done:
        for k in o0:
            assert np.array_equal(o0[k], o1[k]), k
        assert set(o1) - set(o0) == set(REQUEST_KEYS)
        crit = float(o1["request"][1])  # critical path so far / SLA
        expect = np.clip(np.maximum(crit - o1["finish"], 0.0), 0, 10)
        assert np.allclose(o1["slack"], expect, atol=1e-5)
        assert o1["req_routed"].max() == pytest.approx(crit, abs=1e-6)
        seen_slack |= bool(o1["slack"].max() > 0)
        assert aware.observation_space.contains(o1)
        a, _ = policy.predict(o0, action_masks=plain.unwrapped.action_masks())
        o0, r0, _, t0, _ = plain.step(int(a))
        o1, r1, _, t1, _ = aware.step(int(a))
        assert r0 == r1 and t0 == t1
        done = t0
    assert seen_slack
