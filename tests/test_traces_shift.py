"""PopularityShift: rank rotation per phase, the base's times kept, bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest

from envs.presets import get_workload
from traces import Poisson, PopularityShift, get_trace


def test_each_phase_rotates_the_popularity_by_shift_ranks() -> None:
    mix = get_workload("cluster-zipf")
    src = PopularityShift(base="poisson", period=0.25, shift=5)
    arr = src.sample(np.random.default_rng(0), mix, 80_000, 1000.0)
    base = Poisson().sample(np.random.default_rng(0), mix, 80_000, 1000.0)
    assert np.array_equal(arr.time_s, base.time_s)
    phase = src.phases(arr.time_s)
    assert phase.min() == 0 and phase.max() == 4  # the last arrival opens phase 4
    order = np.argsort(-mix.probabilities, kind="stable")
    for k in range(4):
        counts = np.bincount(arr.model[phase == k], minlength=len(order))
        assert int(np.argmax(counts)) == int(order[(5 * k) % len(order)])
        # the rotation of the base's models, request by request
        sel = phase == k
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        want = order[(rank[base.model[sel]] + 5 * k) % len(order)]
        assert np.array_equal(arr.model[sel], want)
    assert np.array_equal(arr.sla_ms, mix.sla_ms[arr.model])


def test_shift_zero_is_the_base_and_bad_arguments_fail() -> None:
    mix = get_workload("cluster-zipf")
    a = PopularityShift(shift=0).sample(np.random.default_rng(1), mix, 500, 100.0)
    b = Poisson().sample(np.random.default_rng(1), mix, 500, 100.0)
    assert a.identical(b)
    for kw in ({"base": "nope"}, {"base": "mixture"}, {"period": 0.0}, {"shift": -1},
               {"shift": 1.5}, {"time_unit": "h"}):
        with pytest.raises(ValueError):
            PopularityShift(**kw)  # type: ignore[arg-type]
    assert isinstance(get_trace("zipf-shift"), PopularityShift)
