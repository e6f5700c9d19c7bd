"""The shared-GPU simulator (envs/sim/device/shared.py): interference, priorities,
re-partitioning."""

from __future__ import annotations

import numpy as np
import pytest

from envs.sim.device.serving import BatcherConfig, GpuServingSim
from envs.sim.device.shared import SharedGpuSim, SlotSpec
from envs.sim.device.tables import CoRunnerSlowdowns, normalise_layout
from hwmodels.interference import InterferenceModel
from hwmodels.partitions import make_layout
from hwmodels.specs import load_device
from hwmodels.workloads import build_profile
from traces.arrivals import Arrivals


def _arrivals(times: list[float], models: list[int], sla_ms: float | list[float] = 100.0,
              priority: list[int] | None = None) -> Arrivals:
    n = len(times)
    sla = np.full(n, sla_ms) if np.isscalar(sla_ms) else np.array(sla_ms, dtype=np.float64)
    prio = np.zeros(n, np.int8) if priority is None else np.array(priority, np.int8)
    return Arrivals(np.array(times), np.array(models, dtype=np.int32), np.ones(n, np.int32),
                    sla, prio, ("a", "b"))


def _random_trace(n: int, seed: int = 0) -> Arrivals:
    rng = np.random.default_rng(seed)
    return Arrivals(np.cumsum(rng.exponential(1 / 1500.0, n)),
                    rng.integers(0, 2, n).astype(np.int32), np.ones(n, np.int32),
                    np.full(n, 20.0), rng.integers(0, 3, n).astype(np.int8), ("a", "b"))


_LAT = [[[0.002 + 0.0005 * b for b in range(1, 9)] for _ in range(2)] for _ in range(3)]
_BATCHER = BatcherConfig(max_batch=8, max_queue_delay_s=0.001, queue_capacity=16)


def _counters(sim: GpuServingSim) -> tuple:
    c = sim.counters
    return (c.arrived, c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
            c.dropped_expired, c.busy_s, c.energy_j, c.latency.counts, c.latency.total_s,
            sim.backlog, sim.now)


def _shortest(sim: GpuServingSim) -> int:
    return min(range(sim.n_partitions), key=lambda p: (sim.queued_items[p], p))


def test_without_features_it_is_the_v0_simulator_bit_for_bit() -> None:
    results = []
    for cls in (GpuServingSim, SharedGpuSim):
        sim = cls(_LAT, [[True, True]] * 3, _random_trace(20_000), _BATCHER,
                  power_w=[(10.0, 50.0)] * 3, chunk=777)
        sim.advance()
        sim.run(lambda now, m, d, s=sim: _shortest(s) if s.pending % 11 else 3)
        sim.finalize_energy()
        results.append(_counters(sim))
    assert results[0] == results[1]
    assert results[0][3] > 0 and results[0][1] > 15_000


def _two_slots(times: list[float], models: list[int], **kw) -> SharedGpuSim:
    lat = [[[0.010], [0.010]], [[0.010], [0.010]]]  # 10 ms per batch of one, everywhere
    return SharedGpuSim(lat, [[True, True]] * 2, _arrivals(times, models, **kw.pop("arr", {})),
                        BatcherConfig(max_batch=1, max_queue_delay_s=0.0),
                        power_w=[(1.0, 11.0)] * 2, **kw)


def _both_busy_double(layout_id: object, jobs: tuple) -> list[float]:
    """Slowdown 2 for each running batch while both slots are busy."""
    both = all(j is not None for j in jobs)
    return [2.0 if both and j is not None else 1.0 for j in jobs]


def test_interference_recomputes_completions_when_a_corunner_starts_and_stops() -> None:
    # A (slot 0) starts at 0 ms alone; B (slot 1) starts at 4 ms and both slow down 2x.
    # A: 4 ms done alone, its 6 ms left take 12 ms -> ends at 16 ms. B: 12 ms at half speed
    # = 6 ms of work, the 4 ms left run alone -> ends at 20 ms.
    sim = _two_slots([0.0, 0.004], [0, 1], slowdown=_both_busy_double)
    sim.advance()
    sim.place(0)
    sim.advance()
    sim.place(1)
    assert sim.busy_until == [pytest.approx(0.016), pytest.approx(0.024)]
    sim.run_until(lambda *a: 0, 0.0161)  # A finished: B speeds up again
    assert sim.counters.completed == 1 and sim.busy_until[1] == pytest.approx(0.020)
    sim.advance()
    c = sim.counters
    assert sim.done and c.completed == 2
    assert sim.now == pytest.approx(0.020)
    assert c.latency.total_s == pytest.approx(0.016 + 0.016)
    assert c.busy_s == [pytest.approx(0.016), pytest.approx(0.016)]
    # Dynamic energy is charged per solo second of work: 10 W x 10 ms per batch.
    sim.finalize_energy()
    assert c.energy_j == pytest.approx(2 * 10.0 * 0.010 + 2 * 1.0 * 0.020)


def test_a_batch_restarted_on_the_same_slot_gets_its_co_runners_slowdown() -> None:
    """The same model and size restarting on a slot leaves the running set's key as it was;
    the new batch must still get its slowdown (it ran unslowed before this was fixed).
    A1 (slot 0) runs alone from 0 ms; B (slot 1) starts at 2 ms: both 2x. A1 ends at 18 ms and
    A2, queued behind it, starts at once beside B: B's last 2 ms of work end at 22 ms; A2 does
    2 ms of work by then and its last 8 ms alone end at 30 ms (28 ms if it ran unslowed)."""
    sim = _two_slots([0.0, 0.001, 0.002], [0, 0, 1], slowdown=_both_busy_double)
    for slot in (0, 0, 1):
        sim.advance()
        sim.place(slot)
    sim.advance()
    c = sim.counters
    assert sim.done and c.completed == 3
    assert sim.now == pytest.approx(0.030)
    assert c.latency.total_s == pytest.approx(0.018 + 0.029 + 0.020)


def test_interference_from_the_calibrated_model_mps_vs_mig() -> None:
    dev = load_device("a100-80gb")
    profiles = [build_profile("resnet50"), build_profile("bert-base")]
    model = InterferenceModel(dev)
    mps = make_layout(dev, normalise_layout([50, 50], "mps")[0])
    mig = make_layout(dev, ["3g", "3g"])
    jobs = ((0, 8), (1, 4))
    f_mps = CoRunnerSlowdowns(model, profiles, {0: mps})(0, jobs)
    assert all(f > 1.0 for f in f_mps)
    assert CoRunnerSlowdowns(model, profiles, {0: mps})(0, ((0, 8), None)) == [1.0, 1.0]
    # MIG slices: isolated by default (PartitionPlacement-v0's dynamics), nearly so otherwise.
    assert CoRunnerSlowdowns(model, profiles, {0: mig})(0, jobs) == [1.0, 1.0]
    f_mig = CoRunnerSlowdowns(model, profiles, {0: mig}, isolated_mig=False)(0, jobs)
    assert all(1.0 < f < 1.03 for f in f_mig)


def test_layout_spellings() -> None:
    assert normalise_layout([50, 30, 20], "mps") == (["mps:50", "mps:30", "mps:20"], "mps")
    assert normalise_layout(["mps:50", "mps:50"]) == (["mps:50", "mps:50"], "mps")
    assert normalise_layout([3], "ts") == (["ts:3"], "ts")
    assert normalise_layout(["ts", "ts"], "ts") == (["ts:2"], "ts")
    assert normalise_layout(["3g", "2g"]) == (["3g", "2g"], "mig")
    with pytest.raises(ValueError, match="sharing"):
        normalise_layout(["3g"], "nvlink")


def _one_slot(times: list[float], models: list[int], priority: list[int], **kw) -> SharedGpuSim:
    lat = [[[0.010], [0.010]]]
    return SharedGpuSim(lat, [[True, True]], _arrivals(times, models, priority=priority),
                        BatcherConfig(max_batch=1, max_queue_delay_s=0.0), **kw)


@pytest.mark.parametrize("priorities", [False, True])
def test_priority_classes_go_first_at_batch_boundaries(priorities: bool) -> None:
    # Model 0 = low priority (0), model 1 = high (1). A low batch runs 0-10 ms; a low request
    # waits since 1 ms, two high ones arrive at 2 and 3 ms.
    sim = _one_slot([0.0, 0.001, 0.002, 0.003], [0, 0, 1, 1], [0, 0, 1, 1],
                    priorities=priorities)
    sim.run_until(lambda *a: 0, 0.0105)
    assert sim.running_model[0] == (1 if priorities else 0)
    sim.run_until(lambda *a: 0, 0.0205)
    assert sim.running_model[0] == 1
    sim.run_until(lambda *a: 0, 0.0305)
    assert sim.running_model[0] == (0 if priorities else 1)
    sim.advance()
    assert sim.done and sim.counters.completed == 4


def test_preemption_kills_a_less_important_running_batch() -> None:
    # Low starts at 0 (10 ms); high arrives at 2 ms, kills it, runs 2-12 ms; low restarts.
    sim = _one_slot([0.0, 0.002], [0, 1], [0, 1], priorities=True, preempt=True,
                    power_w=[(0.0, 10.0)])
    sim.advance()
    sim.place(0)
    sim.advance()
    sim.place(0)
    assert sim.running_model[0] == 1 and sim.preemptions == 1
    sim.advance()
    c = sim.counters
    assert sim.done and c.completed == 2 and sim.now == pytest.approx(0.022)
    assert c.latency.total_s == pytest.approx(0.010 + 0.022)
    assert c.busy_s[0] == pytest.approx(0.002 + 0.010 + 0.010)
    assert c.energy_j == pytest.approx(10.0 * (0.002 + 0.010 + 0.010))


def _spec(ms: float) -> SlotSpec:
    return SlotSpec(latency=[[ms * 1e-3], [ms * 1e-3]], fits=[True, True], power_w=(1.0, 2.0))


@pytest.mark.parametrize("drain", [True, False])
def test_reconfiguration_downtime_serves_nothing_on_changed_slots(drain: bool) -> None:
    times = [0.0, 0.001, 0.002] + [0.003 + 0.001 * k for k in range(20)]
    sim = _two_slots(times, [0] * len(times), arr={"sla_ms": 1000.0})
    sim.advance()
    sim.place(1)  # slot 1 runs 0-10 ms
    for _ in range(2):
        sim.advance()
        sim.place(1)  # two requests queued behind it
    sim.run_until(lambda *a: 0, 0.0025)
    handed = sim.reconfigure({1: _spec(5.0)}, downtime_s=0.050, drain=drain)
    # Queued requests come back; the running batch too when it is killed.
    assert len(handed) == (2 if drain else 3)
    assert sim.reconfiguring and sim.reconfigurations == 1
    for m, req in handed:
        sim.requeue(1, m, req)  # they wait for the new partition
    up = (0.010 if drain else 0.0025) + 0.050
    starts: list[float] = []
    while sim.now < up + 0.02:
        was = sim.busy[1]
        sim.run_until(lambda *a: 0, sim.now + 0.0005)
        if sim.busy[1] and not was:
            starts.append(sim.now)
    assert starts and starts[0] >= up - 1e-9  # nothing started on slot 1 while it was down
    assert sim.up_at[1] == pytest.approx(up)
    assert sim.downtime_s == pytest.approx(up - 0.0025)
    assert not sim.reconfiguring
    # Slot 0 kept serving meanwhile.
    sim.advance()
    c = sim.counters
    assert sim.done and c.arrived == c.completed + c.dropped == len(times)
    assert sim.latency[1][0][0] == 0.005


def test_a_second_reconfiguration_waits_for_the_first() -> None:
    sim = _two_slots([0.0, 1.0], [0, 0])
    sim.advance()
    sim.reconfigure({0: None}, downtime_s=0.5)
    with pytest.raises(RuntimeError):
        sim.reconfigure({1: None}, downtime_s=0.5)
    assert sim.fits[0] == [False, False] and not sim.active[0]
    with pytest.raises(ValueError):
        sim.place(0)


@pytest.mark.parametrize("hw, layout", [
    ("a100-80gb", ["mps:40", "mps:30", "mps:15", "mps:15"]),
    ("a100-80gb", ["ts:3"]),
    ("a100-80gb", ["3g", "2g", "1g", "1g"]),
    ("a30", ["mps:50", "mps:25", "mps:25"]),
    ("xeon-8380h-4s", ["mps:50", "mps:50"]),
])
def test_slowdowns_equal_the_interference_model_exactly(hw: str, layout: list[str]) -> None:
    dev = load_device(hw)
    names = ["resnet50", "mobilenet_v2", "bert-base"]
    profiles = [build_profile(n) for n in names]
    parts = make_layout(dev, layout)
    model = InterferenceModel(dev)
    fast = CoRunnerSlowdowns(model, profiles, {7: parts}, isolated_mig=False)
    rng = np.random.default_rng(0)
    for _ in range(200):
        jobs = tuple(None if rng.random() < 0.3 else (int(rng.integers(3)),
                                                       int(rng.integers(1, 9)))
                     for _ in parts)
        expected = model.slowdowns(parts, [None if j is None else (profiles[j[0]], j[1])
                                           for j in jobs])
        assert fast(7, jobs) == expected.tolist()
