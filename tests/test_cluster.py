"""The cluster router: routed arrivals on a device, the cluster simulator, ClusterRouting."""

from __future__ import annotations

import numpy as np
import pytest

from envs.sim.device.serving import BatcherConfig
from envs.sim.device.shared import SharedGpuSim
from traces.arrivals import Arrivals

_LAT = [[[0.002 + 0.0005 * b for b in range(1, 9)] for _ in range(2)] for _ in range(3)]
_BATCHER = BatcherConfig(max_batch=8, max_queue_delay_s=0.001, queue_capacity=16)


def _trace(n: int, seed: int = 0) -> Arrivals:
    rng = np.random.default_rng(seed)
    return Arrivals(np.cumsum(rng.exponential(1 / 1500.0, n)),
                    rng.integers(0, 2, n).astype(np.int32), np.ones(n, np.int32),
                    np.full(n, 20.0), np.zeros(n, np.int8), ("a", "b"))


def _empty() -> Arrivals:
    return Arrivals(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
                    np.zeros(0, np.int8), ("a", "b"))


def _counters(sim: SharedGpuSim) -> tuple:
    c = sim.counters
    return (c.arrived, c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
            c.dropped_expired, c.busy_s, c.energy_j, c.latency.counts, c.latency.total_s,
            sim.backlog, sim.now)


def _shortest(sim: SharedGpuSim) -> int:
    return min(range(sim.n_partitions), key=lambda p: (sim.queued_items[p], p))


def _doubling(layout_id: object, jobs: tuple) -> list[float]:
    busy = sum(j is not None for j in jobs)
    return [2.0 if busy > 1 else 1.0] * len(jobs)


@pytest.mark.parametrize("slowdown", [None, _doubling])
def test_routed_arrivals_equal_placing_from_the_trace(slowdown: object) -> None:
    """A passive device fed with ``arrive`` at the trace's times is the trace-driven device."""
    trace = _trace(5000)
    kw = {"power_w": [(10.0, 50.0)] * 3, "slowdown": slowdown}
    a = SharedGpuSim(_LAT, [[True, True]] * 3, trace, _BATCHER, **kw)
    a.advance()
    a.run(lambda now, m, d, s=a: _shortest(s))
    a.finalize_energy()
    b = SharedGpuSim(_LAT, [[True, True]] * 3, _empty(), _BATCHER, **kw)
    times, models = trace.time_s.tolist(), trace.model.tolist()
    sla = trace.sla_ms.tolist()

    def never(now: float, m: int, d: float) -> int:
        raise AssertionError("a passive device has no arrivals of its own")

    for t, m, s in zip(times, models, sla, strict=True):
        b.run_until(never, t)
        b.arrive(_shortest(b), m, (t, t + s * 1e-3, 1e3 / s, 1, 0))
        c = b.counters
        assert c.arrived == c.completed + c.dropped + c.in_system
    b.advance()
    b.finalize_energy()
    assert _counters(a) == _counters(b)
    assert b.counters.completed > 4000 and b.counters.in_system == 0


def test_arrive_checks_the_slot() -> None:
    sim = SharedGpuSim(_LAT, [[True, False]] * 3, _empty(), _BATCHER)
    with pytest.raises(ValueError):
        sim.arrive(0, 1, (0.0, 0.1, 10.0, 1, 0))
    with pytest.raises(ValueError):
        sim.arrive(3, 0, (0.0, 0.1, 10.0, 1, 0))
    assert sim.counters.arrived == 0
