"""Windows on the trace's own clock (issue 16): a trace reports where an episode's window starts
on its clock (``Arrivals.start_s``), mix schedules start at an offset or at a drawn start inside
a train/test time split, and Repartition's ``time`` observation reads the trace's clock."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from traces import (
    CsvReplay,
    MixSchedule,
    MixShift,
    ModelClass,
    ServeGenReplay,
    WorkloadMix,
    shared_dir,
)
from traces.synthetic import split_range

MIX3 = WorkloadMix((ModelClass("a"), ModelClass("b"), ModelClass("c")))
SWING = dict(durations=(50.0, 50.0), weights=((0.4, 0.4, 0.2), (0.15, 0.15, 0.7)),
             repeat=True, time_unit="s")
SHARED = shared_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None or not (SHARED / "traces" / "servegen").is_dir(),
    reason="shared data directory (../shared or $LDSGYM_SHARED) not available")


def _heavy_share(a, lo: float, hi: float) -> float:
    sel = (a.time_s >= lo) & (a.time_s < hi)
    return float(np.mean(a.model[sel] == 2))


def test_mixshift_offset_moves_the_phases_and_is_reported() -> None:
    rng = np.random.default_rng
    a0 = MixShift(**SWING).sample(rng(0), MIX3, 20_000, 100.0)
    a50 = MixShift(**SWING, start_s=50.0).sample(rng(0), MIX3, 20_000, 100.0)
    assert a0.start_s == 0.0 and a50.start_s == 50.0
    # the same arrival times; the first 50 s are light from 0, heavy from 50 s on the clock
    np.testing.assert_array_equal(a0.time_s, a50.time_s)
    assert _heavy_share(a0, 0, 50) == pytest.approx(0.2, abs=0.03)
    assert _heavy_share(a50, 0, 50) == pytest.approx(0.7, abs=0.03)
    assert _heavy_share(a50, 50, 100) == pytest.approx(0.2, abs=0.03)
    # a whole period later the schedule is the same
    a100 = MixShift(**SWING, start_s=100.0).sample(rng(0), MIX3, 20_000, 100.0)
    assert np.mean(a100.model == a0.model) > 0.999


def test_mixshift_train_and_test_windows_never_overlap() -> None:
    span, frac, n, rate = 1000.0, 0.2, 10_000, 100.0  # 100-s episodes
    length = n / rate
    spans = {}
    for split in ("train", "test"):
        src = MixShift(**SWING, start_s=None, span_s=span, split=split, test_fraction=frac)
        starts = np.array([src.sample(np.random.default_rng(s), MIX3, n, rate).start_s
                           for s in range(40)])
        a, b = split_range(span, split, frac)
        assert np.all(starts >= a) and np.all(starts + length <= b + 1e-9)
        assert len(np.unique(starts)) == 40  # drawn per episode
        spans[split] = (starts.min(), (starts + length).max())
    assert spans["train"][1] <= 800.0 <= spans["test"][0]
    # the drawn start sets the phases: a window's heavy share over its first 10 s follows
    # the phase of its start on the clock
    src = MixShift(**SWING, start_s=None, span_s=span, split="test")
    for s in range(6):
        a = src.sample(np.random.default_rng(s), MIX3, 20_000, 200.0)
        heavy = (a.start_s % 100.0) >= 50.0 and (a.start_s + 10.0) % 100.0 >= 50.0
        light = (a.start_s % 100.0) < 40.0
        if heavy or light:
            assert _heavy_share(a, 0, 10) == pytest.approx(0.7 if heavy else 0.2, abs=0.05)


def test_mixschedule_reports_its_start_and_splits_the_period() -> None:
    a = MixSchedule(period=3600.0, phase=0.25, grid=360).sample(
        np.random.default_rng(0), MIX3, 1000, 10.0)
    assert a.start_s == pytest.approx(900.0)
    for split, (lo, hi) in (("train", (0.0, 2880.0)), ("test", (2880.0, 3600.0))):
        src = MixSchedule(period=3600.0, grid=360, split=split)
        for s in range(20):
            a = src.sample(np.random.default_rng(s), MIX3, 6000, 10.0)  # 600-s episodes
            assert lo <= a.start_s and a.start_s + 600.0 <= hi + 1e-6


@pytest.mark.parametrize("kw, match", [
    ({"start_s": None}, "span_s"),
    ({"split": "train"}, "start_s: null"),
    ({"start_s": None, "span_s": 100.0, "split": "nope"}, "split"),
    ({"start_s": -1.0}, "start_s"),
    ({"start_s": None, "span_s": 100.0, "test_fraction": 1.5}, "test_fraction"),
])
def test_bad_window_options_are_one_line(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        MixShift(**SWING, **kw)
    assert "\n" not in str(e.value)


def test_a_split_shorter_than_the_episode_is_refused() -> None:
    src = MixShift(**SWING, start_s=None, span_s=400.0, split="test")  # 80 s of test
    with pytest.raises(ValueError, match="shorter than an episode"):
        src.sample(np.random.default_rng(0), MIX3, 10_000, 100.0)


def _minute_csv(path: Path) -> Path:
    """600 s of trace at ~5 requests/s; every row's size is its minute + 1."""
    t = np.sort(np.random.default_rng(0).uniform(0.0, 600.0, 3000))
    lines = ["time_s,model,size"] + [f"{x:.6f},a,{int(x // 60) + 1}" for x in t]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replayed_windows_report_their_start_on_the_trace_clock(tmp_path: Path) -> None:
    path = _minute_csv(tmp_path / "t.csv")
    # native: the window's times shifted by its start are the recorded times
    nat = CsvReplay(str(path), rate_mode="native", relabel=True)
    for s in range(5):
        a = nat.sample(np.random.default_rng(s), MIX3, 500, 5.0)
        assert a.start_s > 0
        np.testing.assert_array_equal(np.floor((a.start_s + a.time_s) / 60.0) + 1, a.size)
    # scale: arrivals regenerated on the trace's clock, each copying a row of its own minute
    starts = []
    for split in ("train", "test"):
        src = CsvReplay(str(path), rate_mode="scale", relabel=True, split=split,
                        test_fraction=0.2, loop=True)
        for s in range(8):
            a = src.sample(np.random.default_rng(s), MIX3, 3000, 100.0)  # 30-s windows
            (lo, hi), = src.segments()
            assert lo <= a.start_s < hi
            starts.append((split, a.start_s))
            clock = a.start_s + a.time_s
            inside = clock < hi
            minute = np.floor(clock[inside] / 60.0) + 1
            assert np.mean(minute == a.size[inside]) > 0.97, (split, s)
    assert max(t for k, t in starts if k == "train") < 480.0 <= min(
        t for k, t in starts if k == "test")


@needs_shared
def test_servegen_windows_start_inside_their_split() -> None:
    rng = np.random.default_rng
    for split in ("train", "test"):
        src = ServeGenReplay(dataset="m-large", rate_mode="scale", split=split)
        (lo, hi), = src.segments()
        for s in range(3):
            a = src.sample(rng(s), MIX3, 20_000, 100.0)
            assert lo <= a.start_s < hi
            assert a.time_s[0] >= 0.0


def _clock_angles(obs_seq: list[dict]) -> np.ndarray:
    return np.array([math.atan2(float(o["time"][1]), float(o["time"][2])) for o in obs_seq])


def _reset_steps(trace: MixShift, steps: int, seed: int, **kw: object) -> tuple[object, list]:
    env = gym.make("ldsgym/Repartition-v0", trace=trace, load=1.0, episode_s=12.0,
                   interval_s=1.0, time_obs=True, clock_period_s=10.0, **kw).unwrapped
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, *_ = env.step(0)
        out.append(obs)
    return env, out


def test_repartition_clock_reads_the_trace_clock() -> None:
    swing = dict(durations=(5.0, 5.0), weights=((0.4, 0.4, 0.2), (0.15, 0.15, 0.7)),
                 repeat=True, time_unit="s")
    period = 10.0
    expect = [2 * math.pi * (3.7 + k) / period for k in range(6)]
    _, on = _reset_steps(MixShift(**swing, start_s=3.7), 5, 0)
    np.testing.assert_allclose(np.cos(_clock_angles(on)), np.cos(expect), atol=1e-6)
    np.testing.assert_allclose(np.sin(_clock_angles(on)), np.sin(expect), atol=1e-6)
    # the elapsed fraction still counts from the episode's start
    assert float(on[0]["time"][0]) == 0.0 and float(on[3]["time"][0]) == pytest.approx(3 / 12)
    # clock_origin="episode": the former clock
    _, ep = _reset_steps(MixShift(**swing, start_s=3.7), 5, 0, clock_origin="episode")
    np.testing.assert_allclose(np.cos(_clock_angles(ep)),
                               np.cos([2 * math.pi * k / period for k in range(6)]), atol=1e-6)
    # drawn starts: the clock at reset is the window's start, different per episode
    drawn = MixShift(**swing, start_s=None, span_s=400.0, split="test")
    angles = []
    for seed in range(4):
        env, obs = _reset_steps(drawn, 0, seed)
        start = env._clock0
        assert 320.0 <= start <= 400.0 - 12.0
        np.testing.assert_allclose(obs[0]["time"][1:], [math.sin(2 * math.pi * start / period),
                                                        math.cos(2 * math.pi * start / period)],
                                   atol=1e-6)
        angles.append(start)
    assert len(set(angles)) == 4
    with pytest.raises(ValueError, match="clock_origin"):
        gym.make("ldsgym/Repartition-v0", clock_origin="wall")


def test_windows_experiment_trains_and_evaluates_on_disjoint_windows() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.common import CONF_DIR, UserError, env_spec
    from experiments.pipeline import eval_env_overrides

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["experiment=misd_repartition"])
    train = env_spec(cfg).kwargs["trace"]
    test = eval_env_overrides(cfg)["trace"]
    assert isinstance(train, MixShift) and isinstance(test, MixShift)
    assert (train.split, test.split) == ("train", "test")
    # the same schedule otherwise
    assert train == MixShift(**{**vars(test), "split": "train"})
    episode_s = cfg.env.kwargs.episode_s
    for seed in range(5):
        a = train.sample(np.random.default_rng(seed), MIX3, 1000, 1000 / episode_s)
        b = test.sample(np.random.default_rng(seed), MIX3, 1000, 1000 / episode_s)
        assert a.start_s + episode_s <= 0.8 * train.span_s <= b.start_s
    bad = OmegaConf.merge(cfg, {"eval": {"env_overrides": {"trace": {
        "_target_": "traces.MixShift", "span_s": -1.0}}}})
    with pytest.raises(UserError, match=r"eval\.env_overrides\.trace") as e:
        eval_env_overrides(bad)
    assert "\n" not in str(e.value)
