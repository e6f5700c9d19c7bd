"""The simulator core: event ordering, metrics, batching, drops (no gymnasium involved)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.sim.core import EventQueue
from envs.sim.gpu import BatcherConfig, GpuServingSim
from envs.sim.metrics import LatencyHistogram
from traces.arrivals import Arrivals

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("gymnasium", "gym", "torch", "stable_baselines3", "sb3_contrib", "hydra",
             "omegaconf")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", ["envs/sim", "hwmodels", "traces"])
def test_lower_layers_import_no_rl_or_config_libraries(folder: str) -> None:
    for path in sorted((REPO / folder).rglob("*.py")):
        bad = _imports(path) & set(FORBIDDEN)
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize("module", ["hwmodels.latency", "hwmodels.partitions", "traces"])
def test_importing_lower_layers_loads_no_torch_or_gymnasium(module: str) -> None:
    code = (f"import sys, {module}; "
            "bad = [m for m in ('torch', 'gymnasium', 'stable_baselines3') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_event_queue_orders_by_time_priority_then_insertion() -> None:
    q = EventQueue()
    q.schedule(2.0, kind=0, target=1)
    q.schedule(1.0, kind=0, target=2, priority=1)
    q.schedule(1.0, kind=0, target=3, priority=0)
    q.schedule(1.0, kind=0, target=4, priority=0)
    cancelled = q.schedule(0.5, kind=0, target=5)
    EventQueue.cancel(cancelled)
    assert q.peek() == 1.0
    order = [q.pop().target for _ in range(4)]
    assert order == [3, 4, 2, 1]
    assert q.now == 2.0
    with pytest.raises(ValueError):
        q.schedule(1.0, kind=0)
    assert q.peek() == float("inf")


def test_histogram_quantiles_within_one_percent() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(-5, 1.2, 50_000)
    h = LatencyHistogram()
    for v in x:
        h.add(float(v))
    for q, streaming in ((0.5, h.p50.value_s), (0.99, h.p99.value_s)):
        exact = np.quantile(x, q)
        assert abs(streaming - exact) / exact < 0.011
        assert h.quantile_s(q) == pytest.approx(streaming)
    assert len(h.counts) < 2000  # flat memory


def _arrivals(times: list[float], models: list[int], sla_ms: float = 100.0) -> Arrivals:
    n = len(times)
    return Arrivals(np.array(times), np.array(models, dtype=np.int32),
                    np.ones(n, dtype=np.int32), np.full(n, sla_ms), np.zeros(n, dtype=np.int8),
                    ("a", "b"))


def _run(sim: GpuServingSim, decide) -> None:
    sim.advance()
    while sim.pending is not None:
        decide(sim)
        sim.advance()


def test_dynamic_batching_by_hand() -> None:
    # One partition, latency(b) = 10 ms + 1 ms * b for both models; max batch 4, 2 ms delay.
    lat = [[[0.010 + 0.001 * b for b in range(1, 5)] for _ in range(2)]]
    times = [0.0, 0.001, 0.0015, 0.0016, 0.0017, 0.020]
    sim = GpuServingSim(lat, [[True, True]], _arrivals(times, [0, 0, 0, 0, 0, 1]),
                        BatcherConfig(max_batch=4, max_queue_delay_s=0.002, queue_capacity=64))
    _run(sim, lambda s: s.place(0))
    c = sim.counters
    assert sim.done and c.completed == 6 and c.dropped == 0
    # Batch 1: requests 0-3 start at 1.6 ms when the 4th arrives (batch full), take 14 ms.
    # Batch 2: request 4 (arrived 1.7 ms) starts at 15.6 ms when the partition frees, 11 ms.
    # Batch 3: request 5 (model b, arrived 20 ms) starts at 26.6 ms, ends 37.6 ms.
    assert sim.now == pytest.approx(0.0376)
    assert c.busy_s[0] == pytest.approx(0.014 + 0.011 + 0.011)
    assert c.latency.total_s == pytest.approx(
        (0.0156 - 0.0) + (0.0156 - 0.001) + (0.0156 - 0.0015) + (0.0156 - 0.0016)
        + (0.0266 - 0.0017) + (0.0376 - 0.020))


def test_idle_partition_waits_at_most_the_queue_delay() -> None:
    lat = [[[0.005 * b for b in range(1, 9)]]]
    sim = GpuServingSim(lat, [[True]], _arrivals([0.0], [0]),
                        BatcherConfig(max_batch=8, max_queue_delay_s=0.003))
    _run(sim, lambda s: s.place(0))
    assert sim.now == pytest.approx(0.003 + 0.005)


def test_expired_requests_are_dropped_and_overflow_counted() -> None:
    lat = [[[0.050 for _ in range(4)]]]  # every batch takes 50 ms; SLA 60 ms
    times = [0.0, 0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006]
    sim = GpuServingSim(lat, [[True]], _arrivals(times, [0] * 7, sla_ms=60.0),
                        BatcherConfig(max_batch=1, max_queue_delay_s=0.0, queue_capacity=4))
    _run(sim, lambda s: s.place(0))
    c = sim.counters
    # Request 0 runs 0-50 ms; 1 starts at 50 ms but would end at 100 > 60.1: dropped, and so
    # are 2-4 (queue holds 4); 5 and 6 overflowed the queue of 4.
    assert c.completed == 1 and c.good == 1
    assert c.dropped_overflow == 2
    assert c.dropped_expired == 4
    assert c.arrived == c.completed + c.dropped


def test_late_requests_are_served_when_drop_expired_is_off() -> None:
    lat = [[[0.050]]]
    sim = GpuServingSim(lat, [[True]], _arrivals([0.0, 0.0001], [0, 0], sla_ms=60.0),
                        BatcherConfig(max_batch=1, max_queue_delay_s=0.0, drop_expired=False))
    _run(sim, lambda s: s.place(0))
    assert sim.counters.completed == 2 and sim.counters.good == 1 and sim.counters.late == 1


def test_backlog_integrates_time_in_system_over_sla() -> None:
    lat = [[[0.010]]]
    sim = GpuServingSim(lat, [[True]], _arrivals([0.0, 0.0], [0, 0], sla_ms=20.0),
                        BatcherConfig(max_batch=1, max_queue_delay_s=0.0))
    _run(sim, lambda s: s.place(0))
    # Latencies 10 ms and 20 ms, each in units of the 20 ms SLA: 0.5 + 1.0.
    assert sim.backlog == pytest.approx(1.5)


def test_lazy_quantiles_equal_the_histogram_however_often_they_are_read() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(-5, 1.0, 20_000)
    every, never = LatencyHistogram(), LatencyHistogram()
    for i, v in enumerate(x):
        every.add(float(v))
        never.add(float(v))
        if i % 7 == 0:  # reading walks the bins; it must not change what is recorded
            assert every.p99.value_s == every.quantile_s(0.99)
            assert every.p50.value_s == every.quantile_s(0.50)
    assert never.p50.value_s == every.p50.value_s == never.quantile_s(0.5)
    assert never.p99.value_s == every.p99.value_s == never.quantile_s(0.99)
    batch = LatencyHistogram()
    starts = [1.0 - float(v) for v in x]
    for k in range(0, len(starts), 8):
        batch.add_finished(1.0, [(s,) for s in starts[k:k + 8]])
        batch.p99.value_s  # noqa: B018  (reads in between)
    assert batch.counts == never.counts and batch.n == never.n
    assert batch.total_s == pytest.approx(never.total_s, rel=1e-12)
    assert batch.p99.value_s == never.p99.value_s


def test_pop_until_skips_cancelled_events_and_stops_at_the_horizon() -> None:
    q = EventQueue()
    a = q.schedule(1.0, kind=0, target=1)
    q.schedule(2.0, kind=0, target=2)
    q.schedule(3.0, kind=0, target=3)
    EventQueue.cancel(a)
    ev = q.pop_until(2.5)
    assert ev is not None and ev.target == 2 and q.now == 2.0
    assert q.pop_until(2.5) is None and q.now == 2.0
    ev = q.pop_until(float("inf"))
    assert ev is not None and ev.target == 3
    assert q.pop_until(float("inf")) is None and len(q) == 0


def _gpu_sim(n: int, seed: int = 0, chunk: int = 8192) -> GpuServingSim:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / 900.0, n))
    arr = Arrivals(times, rng.integers(0, 2, n).astype(np.int32), np.ones(n, dtype=np.int32),
                   np.full(n, 20.0), np.zeros(n, dtype=np.int8), ("a", "b"))
    lat = [[[0.002 + 0.0005 * b for b in range(1, 9)] for _ in range(2)] for _ in range(3)]
    return GpuServingSim(lat, [[True, True]] * 3, arr,
                         BatcherConfig(max_batch=8, max_queue_delay_s=0.001, queue_capacity=16),
                         power_w=[(10.0, 50.0)] * 3, chunk=chunk)


def _shortest_queue(sim: GpuServingSim) -> int:
    return min(range(sim.n_partitions), key=lambda p: (sim.queued_items[p], p))


def test_run_equals_the_step_by_step_loop() -> None:
    a, b = _gpu_sim(5_000, chunk=333), _gpu_sim(5_000, chunk=333)
    _run(a, lambda s: s.place(_shortest_queue(s)) if s.pending % 11 else s.reject())
    b.advance()
    steps = b.run(lambda now, m, deadline: (
        _shortest_queue(b) if b.pending % 11 else b.n_partitions))
    assert steps == 5_000 and a.done and b.done
    for attr in ("arrived", "completed", "good", "dropped_rejected", "dropped_overflow",
                 "dropped_expired", "busy_s", "energy_j"):
        assert getattr(a.counters, attr) == getattr(b.counters, attr), attr
    assert a.counters.latency.counts == b.counters.latency.counts
    assert a.backlog == b.backlog and a.now == b.now


def test_simulator_memory_does_not_grow_with_the_episode() -> None:
    """Histogram, queues, heap and the trace's Python-list window stay the same size."""
    import tracemalloc

    growth = {}
    for n in (4_000, 40_000):
        sim = _gpu_sim(n, chunk=1024)
        sim.advance()
        tracemalloc.start()
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        max_heap = max_queued = 0
        while sim.pending is not None:
            sim.place(_shortest_queue(sim))
            sim.advance()
            max_heap = max(max_heap, len(sim.events))
            max_queued = max(max_queued, max(len(q) for qs in sim.queues for q in qs))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        growth[n] = peak - start
        assert len(sim.counters.latency.counts) < 2000
        assert len(sim._ct) <= 1024  # the window of the trace held as Python lists
        assert max_heap <= 2 * sim.n_partitions + 1 and max_queued <= 16
        assert sim.counters.completed + sim.counters.dropped == n
    # Ten times the queries, (about) the same memory: a chunk of lists and the queues.
    assert growth[40_000] < 1.5 * growth[4_000] + 50_000
