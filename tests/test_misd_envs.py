"""PartitionPlacement-v0's MISD options: sharing modes, interference, priorities, load ranges."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import baselines_for
from agents.evaluation import run_episode
from envs.sim.device.serving import GpuServingSim
from envs.sim.device.shared import SharedGpuSim

ENV = "ldsgym/PartitionPlacement-v0"


def test_mig_defaults_keep_the_v0_simulator_and_new_keys_are_derived() -> None:
    env = gym.make(ENV, episode_queries=400, load=1.1).unwrapped
    obs, _ = env.reset(seed=0)
    assert type(env.sim) is GpuServingSim and not env.shared
    for _ in range(300):
        assert obs["priority"][0] == 0 and not obs["slowdown"].any()
        assert np.array_equal(obs["finish_prio"], obs["finish"])
        unclipped = obs["finish"] < 10
        expected = (np.float32(1) - obs["finish"].astype(np.float64))[unclipped]
        assert np.allclose(obs["slack"][unclipped], expected, atol=1e-6)
        m = int(np.argmax(obs["model"]))
        assert np.array_equal(obs["resident"], (np.array(env.sim.running_model) == m))
        obs, *_ = env.step(int(np.argmin(obs["finish"])))


def test_mps_shares_interfere_and_time_slices_are_one_device() -> None:
    mps = gym.make(ENV, layout=["mps:50", "mps:30", "mps:20"], episode_queries=600).unwrapped
    obs, _ = mps.reset(seed=1)
    assert isinstance(mps.sim, SharedGpuSim) and mps.sharing == "mps" and mps.interference
    seen = 0.0
    for _ in range(500):
        seen = max(seen, float(obs["slowdown"].max()))
        obs, *_ = mps.step(int(np.argmin(obs["finish"])))
    assert 0.0 < seen < 1.0  # MPS co-runners cost a few to tens of percent
    ts = gym.make(ENV, sharing="ts", layout=[3], episode_queries=50).unwrapped
    full = gym.make(ENV, layout=["full"], episode_queries=50).unwrapped
    assert ts.capacity_qps == pytest.approx(full.capacity_qps)
    idle = sum(i for i, _ in ts._power)
    assert idle == pytest.approx(ts.device.idle_w)
    assert ts._power[0][1] - ts._power[0][0] == pytest.approx(
        ts.device.tdp_w - ts.device.idle_w)


def test_interference_can_be_forced_on_mig_and_off_on_mps() -> None:
    mig = gym.make(ENV, interference=True, episode_queries=50).unwrapped
    assert mig.shared and mig.interference
    mps = gym.make(ENV, layout=[50, 50], sharing="mps", interference=False,
                   episode_queries=50).unwrapped
    assert not mps.shared and type(mps.sim) is not SharedGpuSim


def test_priority_observation_and_levels() -> None:
    env = gym.make("ldsgym/PartitionPlacement-Prio-v0", episode_queries=400).unwrapped
    obs, _ = env.reset(seed=2)
    assert env.priority_levels == (1, 0) and env.n_levels == 2
    values = set()
    for _ in range(300):
        values.add(float(obs["priority"][0]))
        assert (obs["finish_prio"] <= obs["finish"] + 1e-6).all()
        obs, *_ = env.step(int(np.argmin(obs["finish_prio"])))
    assert values == {0.0, 1.0}


def test_a_load_range_draws_each_episodes_load() -> None:
    env = gym.make(ENV, load=[0.5, 1.2], episode_queries=50).unwrapped
    loads = []
    for seed in range(20):
        env.reset(seed=seed)
        loads.append(env.load)
    assert all(0.5 <= x <= 1.2 for x in loads) and len(set(loads)) == 20
    env.reset(seed=3)
    again = env.load
    env.reset(seed=3)
    assert env.load == again
    with pytest.raises(ValueError, match="load"):
        gym.make(ENV, load=[1.2, 0.5])


@pytest.mark.parametrize("name", ["gpulet_best_fit", "prema", "interference_aware"])
def test_misd_placement_baselines_serve_well_at_moderate_load(name: str) -> None:
    env = gym.make("ldsgym/PartitionPlacement-Prio-v0", load=0.5, episode_queries=2000)
    res = run_episode(env, baselines_for(ENV)[name](), seed=4)
    assert res["sla_attainment"] > 0.8 and res["in_system"] == 0
