"""A drifting model mix (``trace=mix-shift``, :class:`traces.MixShift`): per phase the models
are drawn with that phase's popularity, the arrival rate does not change, and every environment
accepts it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from traces import MixShift, get_trace, zipf_mix

MIX = zipf_mix(["resnet50", "mobilenet_v2", "bert-base"], 1.0)


def test_each_phase_draws_its_own_mix_at_one_rate() -> None:
    src = MixShift(durations=(1.0, 2.0), weights=((8, 1, 1), (0, 1, 3)), time_unit="s")
    arr = src.sample(np.random.default_rng(3), MIX, 80_000, 20_000.0)
    t, m = arr.time_s, arr.model
    assert np.all(np.diff(t) >= 0)
    assert len(t) / t[-1] == pytest.approx(20_000.0, rel=0.02)
    first, second = m[t < 1.0], m[(t >= 1.0) & (t < 3.0)]
    assert np.bincount(first, minlength=3) / len(first) == pytest.approx([0.8, 0.1, 0.1], abs=0.01)
    assert np.bincount(second, minlength=3) / len(second) == pytest.approx([0, 0.25, 0.75],
                                                                           abs=0.01)
    # Without repeat the last phase continues past the schedule.
    late = m[t >= 3.0]
    assert len(late) > 1000 and not np.any(late == 0)


def test_default_rotates_the_workloads_own_popularity() -> None:
    src = get_trace("mix-shift")
    assert isinstance(src, MixShift)
    p = src.phase_probabilities(MIX)
    assert p.shape == (3, 3)
    for k in range(3):
        assert p[k] == pytest.approx(np.roll(MIX.probabilities, k))
    # Episode time unit: each phase is a third of the expected episode.
    n, rate = 30_000, 1_000.0
    arr = src.sample(np.random.default_rng(0), MIX, n, rate)
    edges = src.phase_edges_s(n, rate)
    assert edges[-1] == pytest.approx(n / rate)
    for k in range(3):
        sel = arr.model[(arr.time_s >= edges[k]) & (arr.time_s < edges[k + 1])]
        assert np.argmax(np.bincount(sel, minlength=3)) == k  # model k is the most requested


def test_repeat_cycles_and_same_seed_same_trace() -> None:
    src = MixShift(durations=(0.5, 0.5), weights=((1, 0, 0), (0, 0, 1)), repeat=True,
                   time_unit="s")
    a = src.sample(np.random.default_rng(5), MIX, 20_000, 4_000.0)
    b = src.sample(np.random.default_rng(5), MIX, 20_000, 4_000.0)
    assert np.array_equal(a.time_s, b.time_s) and np.array_equal(a.model, b.model)
    in_second_half = np.mod(a.time_s, 1.0) >= 0.5
    assert np.all(a.model[in_second_half] == 2) and np.all(a.model[~in_second_half] == 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"durations": ()}, "durations"),
    ({"durations": (1.0, -1.0)}, "durations"),
    ({"durations": (1.0,), "weights": ((1, 1), (1, 1))}, "one row per duration"),
    ({"durations": (1.0,), "weights": ((0, 0),)}, "positive sum"),
    ({"cv": -1.0}, "cv"),
])
def test_bad_parameters_name_what_is_wrong(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MixShift(**kwargs)  # type: ignore[arg-type]


def test_a_weight_row_of_the_wrong_length_names_the_models() -> None:
    src = MixShift(durations=(1.0,), weights=((1, 2),))
    with pytest.raises(ValueError, match="resnet50, mobilenet_v2, bert-base"):
        src.sample(np.random.default_rng(0), MIX, 10, 1.0)


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-v0",
                                    "ldsgym/PartitionPlacement-MPS-v0"])
def test_environments_accept_it(env_id: str) -> None:
    env = gym.make(env_id, trace="mix-shift", episode_queries=600)
    env.reset(seed=1)
    done, steps = False, 0
    while not done:
        mask = env.unwrapped.action_masks()  # type: ignore[attr-defined]
        _, _, term, trunc, info = env.step(int(np.flatnonzero(mask)[0]))
        done, steps = term or trunc, steps + 1
    assert info["arrived"] == 600
    env.close()


@pytest.mark.parametrize("durations", [(1.0,), (1.0, 2.0), (0.5, 0.25, 0.25, 3.0)])
def test_phase_lookup_is_the_clipped_searchsorted(durations: tuple[float, ...]) -> None:
    """MixShift's phase of a time: one searchsorted on the inner edges, equal to the clipped
    searchsorted on all of them, at the edges exactly, before the first and past the last."""
    edges = np.concatenate(([0.0], np.cumsum(durations)))
    rng = np.random.default_rng(0)
    t = np.concatenate((rng.uniform(-1.0, edges[-1] + 1.0, 5000), edges, [np.nan, np.inf]))
    ref = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(durations) - 1)
    np.testing.assert_array_equal(MixShift._phase_of(edges, t), ref)


@pytest.mark.parametrize(("repeat", "cv"), [(True, 1.0), (False, 1.0), (True, 0.5)])
def test_blockwise_draw_equals_the_whole_trace_draw(repeat: bool, cv: float) -> None:
    """``sample`` works through the trace block by block (phase, uniform, model): the same
    arrivals, draw for draw, as the draw over the whole trace at once (the code it replaced),
    across several blocks and a partial last one; and the rng is left in the same state."""
    from traces.arrivals import Arrivals
    from traces.synthetic import _BLOCK, _unit_arrivals

    src = MixShift(durations=(0.2, 0.5, 0.3), weights=((5, 1, 1), (1, 5, 1), (1, 1, 5)),
                   repeat=repeat, cv=cv, time_unit="s")
    n, rate = 3 * _BLOCK + 17, 50_000.0
    mine = np.random.default_rng(7)
    got = src.sample(mine, MIX, n, rate)
    rng = np.random.default_rng(7)
    edges = src.phase_edges_s(n, rate)
    times = _unit_arrivals(rng, n, cv) / rate
    t = np.mod(times, edges[-1]) if repeat else times
    phase = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    cdf = np.cumsum(src.phase_probabilities(MIX), axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(n)
    model = np.zeros(n, dtype=np.int32)
    for j in range(cdf.shape[1] - 1):
        np.add(model, u >= cdf[phase, j], out=model, casting="unsafe")
    want = Arrivals.from_mix(times, MIX, rng, model=model)
    assert got.identical(want)
    assert len(set(got.model[t > 0.9].tolist())) == 3  # every model drawn
    assert mine.bit_generator.state == rng.bit_generator.state


def test_constant_columns_take_no_memory_and_read_as_arrays() -> None:
    """Columns that are the same for every request (no classes, output sizes or tenants) are
    read-only broadcast views: equal to the filled arrays, and writing to one fails loudly."""
    from traces.arrivals import constant_column

    arr = MixShift(durations=(1.0,), time_unit="s").sample(np.random.default_rng(0), MIX,
                                                           10_000, 1_000.0)
    for name, value in (("output_size", 0), ("tenant", -1), ("priority", 0)):
        col = getattr(arr, name)
        assert col.strides == (0,) and not col.flags.writeable
        assert np.array_equal(col, np.full(len(arr), value))
        with pytest.raises(ValueError, match="read-only"):
            col[0] = 1
    assert np.isnan(arr.sla_multiple).all() and arr.sla_multiple.strides == (0,)
    assert not arr.needs_sla_resolution
    assert arr.size.flags.writeable and arr.sla_ms.flags.writeable  # what simulators read
    half = arr.take(np.arange(0, len(arr), 2))
    assert np.array_equal(half.tenant, np.full(len(half), -1))
    c = constant_column(5, 2.5, np.float64)
    assert c.dtype == np.float64 and c.tolist() == [2.5] * 5
