"""Learning online while serving (issue [N], ``experiment=online``): the three arms serve the
same arrivals, the online arm really trains, windows and recovery times are computed right, and
bad ``online.*`` input is one line with nothing written."""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from agents.baselines import make_baseline
from agents.online import Timeline, recovery_times, serve, serve_learning
from agents.policy import SB3Policy
from tests.conftest import run_app, run_in_process


def _timeline(name: str, times: list[float], good: list[int]) -> Timeline:
    t = Timeline(name)
    for i, (x, g) in enumerate(zip(times, good, strict=True)):
        t.record({"sim_time_s": x, "arrived": i + 1, "good": g})
    return t


def test_windows_count_good_queries_per_second_and_fraction() -> None:
    t = _timeline("a", [0.5, 1.5, 2.5, 3.5], [1, 1, 2, 3])
    goodput, frac = t.windows(np.array([0.0, 2.0, 4.0]))
    # [0, 2): arrivals 1-2, good 0 -> 1 ; [2, 4): arrivals 3-4, good 1 -> 3
    assert goodput.tolist() == [0.5, 1.0]
    assert frac.tolist() == [0.5, 1.0]


def test_recovery_is_measured_from_each_shift() -> None:
    times = list(np.arange(0.0, 20.0, 0.01))
    # Arm "fast" serves everything in time; arm "slow" loses every query for 3 s after the
    # shift at 10 s, then serves everything again.
    fast = _timeline("fast", times, list(range(1, len(times) + 1)))
    good, g = [], 0
    for x in times:
        g += 0 if 10.0 <= x < 13.0 else 1
        good.append(g)
    slow = _timeline("slow", times, good)
    never = _timeline("never", times, [min(i + 1, 1000) for i in range(len(times))])
    rec = recovery_times([fast, slow, never], [10.0], 20.0, window_s=1.0, fraction=0.95)
    assert rec["fast"][0] == pytest.approx(1.0)          # its first full window
    assert rec["slow"][0] == pytest.approx(4.0, abs=0.3)  # 3 s outage + one window
    assert math.isnan(rec["never"][0])


def test_a_hold_keeps_one_lucky_window_from_counting_as_recovered() -> None:
    times = list(np.arange(0.0, 20.0, 0.01))
    best = _timeline("best", times, list(range(1, len(times) + 1)))
    # "lucky" serves half its queries in time after the shift at 10 s, except for one second
    # (12-13 s) in which it serves all of them; "slow" loses everything for 3 s, then serves
    # everything.
    lucky, slow, g, h = [], [], 0, 0
    for i, x in enumerate(times):
        g += 1 if x < 10.0 or 12.0 <= x < 13.0 or i % 2 == 0 else 0
        h += 0 if 10.0 <= x < 13.0 else 1
        lucky.append(g)
        slow.append(h)
    arms = [best, _timeline("lucky", times, lucky), _timeline("slow", times, slow)]
    once = recovery_times(arms, [10.0], 20.0, window_s=1.0, fraction=0.95, hold=1)
    held = recovery_times(arms, [10.0], 20.0, window_s=1.0, fraction=0.95, hold=3)
    assert once["lucky"][0] == pytest.approx(3.0, abs=0.01)  # the lucky second counts
    assert math.isnan(held["lucky"][0])                       # ... not with a hold
    assert held["slow"][0] == pytest.approx(once["slow"][0]) == pytest.approx(4.0, abs=0.3)
    assert held["best"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hold"):
        recovery_times(arms, [10.0], 20.0, window_s=1.0, hold=0)


def _agent(venv: gym.Env, n_steps: int = 64, learning_rate: float = 3e-4) -> object:
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=32, n_epochs=1,
                       seed=0, device="cpu", learning_rate=learning_rate,
                       policy_kwargs={"net_arch": [16]})


_MAKE = functools.partial(gym.make, "ldsgym/PartitionPlacement-v0", trace="mix-shift",
                          episode_queries=400)


def _pretrained() -> object:
    from stable_baselines3.common.vec_env import DummyVecEnv

    return _agent(DummyVecEnv([_MAKE]))


@pytest.mark.parametrize("serving", ["greedy", "sampled"])
def test_the_arms_serve_the_same_arrivals_and_the_online_arm_learns(serving: str) -> None:
    pretrained = _pretrained()
    before = [p.detach().clone() for p in pretrained.policy.parameters()]  # type: ignore[attr-defined]
    frozen = serve(_MAKE, SB3Policy(pretrained), 30_000, "frozen")
    heuristic = serve(_MAKE, make_baseline("least_loaded"), 30_000, "least_loaded")
    online, learner, twin = serve_learning(_MAKE, _agent, pretrained, 30_000, serving=serving)
    # One decision per arriving query, at its arrival time: the same arrivals for every arm
    # (the last step's clock is the end of the drain, which depends on the policy).
    assert len(frozen.time_s) == len(heuristic.time_s) == len(online.time_s) == 400
    assert frozen.time_s[:-1] == heuristic.time_s[:-1] == online.time_s[:-1]
    assert frozen.final["arrived"] == online.final["arrived"] == 400
    assert (twin is None) == (serving == "sampled")
    # The learner started from the pretrained weights and changed them (6 updates of 64 steps);
    # the pretrained model itself is untouched.
    after = list(learner.policy.parameters())  # type: ignore[attr-defined]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(torch.equal(a, b) for a, b in
               zip(pretrained.policy.parameters(), before, strict=True))  # type: ignore[attr-defined]
    assert learner.num_timesteps >= 400  # type: ignore[attr-defined]


class _Log(gym.Wrapper):  # type: ignore[type-arg]
    """Logs every decision's query (arrival time, model) and the action taken."""

    logs: ClassVar[list[list[tuple[float, int, int]]]] = []

    def __init__(self, env: gym.Env) -> None:  # type: ignore[type-arg]
        super().__init__(env)
        self.log: list[tuple[float, int, int]] = []
        _Log.logs.append(self.log)

    def reset(self, **kwargs: object) -> tuple[object, dict]:  # type: ignore[type-arg]
        obs, info = self.env.reset(**kwargs)
        self.query = (float(info["sim_time_s"]), int(np.argmax(obs["model"])))
        return obs, info

    def step(self, action: object) -> tuple:  # type: ignore[type-arg]
        out = self.env.step(action)
        self.log.append((*self.query, int(action)))  # type: ignore[call-overload]
        self.query = (float(out[4]["sim_time_s"]), int(np.argmax(out[0]["model"])))
        return out


def test_the_twin_sees_the_served_arrivals_and_the_served_actions_are_greedy() -> None:
    _Log.logs = []
    pretrained = _pretrained()
    frozen = serve(lambda: _Log(_MAKE()), SB3Policy(pretrained), 30_000, "frozen")
    # A learner that cannot move (learning rate 0): serving greedily must then be exactly the
    # frozen policy's episode, decision by decision, while the twin explores.
    online, _, twin = serve_learning(lambda: _Log(_MAKE()),
                                     functools.partial(_agent, learning_rate=0.0),
                                     pretrained, 30_000, serving="greedy")
    assert twin is not None
    frozen_log, twin_log, served_log = _Log.logs  # built in this order: frozen, twin, served
    assert len(served_log) == len(twin_log) == 400
    # Lockstep: the twin's k-th decision is the served stream's k-th query (time and model).
    assert [q[:2] for q in twin_log] == [q[:2] for q in served_log]
    assert twin.time_s[:-1] == online.time_s[:-1]
    # The served actions are the deterministic ones; the twin's are PPO's samples.
    assert [q[2] for q in served_log] == [q[2] for q in frozen_log]
    assert online.good == frozen.good
    assert [q[2] for q in twin_log] != [q[2] for q in served_log]
    with pytest.raises(ValueError, match="serving"):
        serve_learning(_MAKE, _agent, pretrained, 30_000, serving="argmax")


@pytest.mark.parametrize("arg, needle", [
    ("online.update_every=0", "online.update_every"),
    ("online.trace=no-such", "online.trace"),
    ("online.seed=10000", "online.seed"),
    ("+online.typo=1", "online.typo"),
    ("online.trace.weights=[[1,1]]", "online.trace"),
    ("online.serving=argmax", "online.serving"),
    ("online.recover_hold=0", "online.recover_hold"),
])
def test_bad_online_input_writes_nothing(tmp_path: Path, arg: str, needle: str,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    status, err = run_in_process("experiments.train", ["experiment=online", arg], tmp_path,
                                  capsys, monkeypatch)
    assert status == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_experiment_online_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_app("experiments.train", "experiment=online", "total_timesteps=512", "n_envs=1",
                  "env.kwargs.episode_queries=200", "eval.seeds=[10000]",
                  "eval.baselines=[least_loaded,shortest_finish]",
                  "export.parity_samples=100", "online.episode_queries=1500",
                  "online.update_every=128", "online.windows=6", "agent.n_steps=128",
                  "agent.batch_size=64", "agent.n_epochs=1", "progress=false",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr
    with open(out / "online_summary.csv") as f:
        summary = list(csv.DictReader(f))
    arms = [r["arm"] for r in summary]
    assert arms[0].startswith("best heuristic (") and arms[0].split("(")[1].rstrip(")") in (
        "least_loaded", "shortest_finish")
    assert arms[1:] == ["frozen", "online (greedy; PPO on a twin)"]
    assert {"recover_s_shift1", "recover_s_shift2"} <= set(summary[0])  # two mix shifts
    with open(out / "online.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 6
    assert (out / "plots" / "online_goodput.png").stat().st_size > 1000
    saved = np.load(out / "online_timelines.npz")
    assert saved["names"].tolist() == arms
    assert len(saved["arm2_good"]) == len(saved["arm2_time_s"]) == 1500
    assert "## Online learning" in (out / "report.md").read_text()
