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
    for path in sorted((REPO / folder).glob("*.py")):
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
