"""Learning online while serving (issue [N]): one long non-stationary episode served three ways
on the same arrivals — a pretrained policy frozen, the same policy that keeps training with PPO
while it serves, and the best heuristic — with goodput over time and the time each needs to
recover after a shift of the workload.

The arrivals of an episode depend only on its seed (a trace never reacts to the actions), so
the three arms see exactly the same queries. The online arm serves with the learner's
deterministic (argmax) actions while PPO, which is on-policy, collects its sampled rollouts on a
twin of the env that replays the same arrivals in lockstep (see :func:`serve_learning`), and
updates every ``update_every`` decisions; the frozen arm and the heuristic act
deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.evaluation import masks_of
from agents.policy import Policy


@dataclass
class Timeline:
    """What one arm did over the episode: after every decision the simulated clock and the
    cumulative number of arrived and good (in-SLA) queries."""

    name: str
    time_s: list[float] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)
    good: list[int] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    def record(self, info: dict[str, Any]) -> None:
        """Append one decision's ``info``."""
        self.time_s.append(float(info["sim_time_s"]))
        self.arrived.append(int(info["arrived"]))
        self.good.append(int(info["good"]))

    def windows(self, edges_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Goodput (good queries per second) and the good fraction of arrivals in each window
        ``[edges_s[i], edges_s[i+1])`` (NaN where nothing arrived)."""
        t = np.asarray(self.time_s)
        at = np.searchsorted(t, edges_s, side="left")
        good = np.concatenate(([0], np.asarray(self.good)))[at]
        arrived = np.concatenate(([0], np.asarray(self.arrived)))[at]
        d_good, d_arr = np.diff(good).astype(float), np.diff(arrived).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(d_arr > 0, d_good / d_arr, np.nan)
        return d_good / np.diff(edges_s), fraction


class _Recorder(gym.Wrapper[Any, Any, Any, Any]):
    """Records every step's ``info`` into a :class:`Timeline`."""

    def __init__(self, env: gym.Env[Any, Any], timeline: Timeline) -> None:
        super().__init__(env)
        self.timeline = timeline

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self.timeline.record(out[4])
        if out[2] or out[3]:
            self.timeline.final = dict(out[4])
        return out


def serve(make_env: Callable[[], gym.Env[Any, Any]], policy: Policy, seed: int,
          name: str) -> Timeline:
    """One episode served by a fixed policy (deterministic actions), recorded."""
    timeline = Timeline(name)
    env = _Recorder(make_env(), timeline)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        action, _ = policy.predict(obs, deterministic=True, action_masks=masks_of(env))
        obs, _, terminated, truncated, _ = env.step(int(action))
        done = terminated or truncated
    env.close()
    return timeline


def serve_learning(make_env: Callable[[], gym.Env[Any, Any]], new_model: Callable[[Any], Any],
                   pretrained: Any | None, seed: int, name: str = "online",
                   progress: bool = False,
                   serving: str = "greedy") -> tuple[Timeline, Any, Timeline | None]:
    """One episode served by a policy that keeps learning: ``new_model(vec_env)`` builds the
    learner (e.g. MaskablePPO with ``n_steps`` = the update interval), which starts from
    ``pretrained``'s weights when given and trains with PPO until the episode ends.

    ``serving="greedy"``: the served stream gets the learner's deterministic (argmax) action at
    every decision, and PPO collects its on-policy rollouts with sampled actions on a *twin*:
    a second copy of the env reset with the same seed, so it sees exactly the served stream's
    arrivals (the trace never reacts to actions), stepped in lockstep — the twin's k-th
    decision is the same query, at the same arrival time, as the served stream's k-th. Its
    queues differ (its actions do), which is the point: exploration costs the twin, not the
    users. Served decision k uses the weights of the last update, trained on twin decisions
    before k; nothing of the future is seen. ``serving="sampled"``: PPO's sampled actions serve
    the stream itself (no twin; exploration is paid in served queries).

    Returns:
        The served stream's timeline, the learner, and the twin's timeline (None when
        ``serving="sampled"``).

    Raises:
        ValueError: ``serving`` is neither ``"greedy"`` nor ``"sampled"``.
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv

    if serving not in ("greedy", "sampled"):
        raise ValueError(f"serving: expected 'greedy' or 'sampled', got {serving!r}")
    timeline = Timeline(name)
    twin_timeline = Timeline(f"{name} (twin)") if serving == "greedy" else None

    class _Reseeded(gym.Wrapper[Any, Any, Any, Any]):
        def reset(self, **kwargs: Any) -> Any:
            return self.env.reset(seed=seed)  # the episode the other arms serve

    rollout_timeline = twin_timeline if twin_timeline is not None else timeline
    venv = DummyVecEnv([lambda: _Recorder(_Reseeded(make_env()), rollout_timeline)])
    model = new_model(venv)
    model.set_logger(Logger(None, []))  # SB3's default leaves an empty SB3-* dir in /tmp
    if pretrained is not None:
        model.policy.load_state_dict(pretrained.policy.state_dict())

    served: _Recorder | None = None
    if twin_timeline is not None:
        served = _Recorder(make_env(), timeline)
    stream = {"obs": served.reset(seed=seed)[0] if served is not None else None, "done": False}

    def serve_one() -> None:
        assert served is not None
        action, _ = model.predict(stream["obs"], deterministic=True,
                                  action_masks=masks_of(served))
        stream["obs"], _, terminated, truncated, _ = served.step(int(action))
        stream["done"] = bool(terminated or truncated)

    class _Serve(BaseCallback):
        """After each rollout decision: the served stream's decision for the same query (greedy
        mode); stops when the episode ends."""

        def _on_step(self) -> bool:
            twin_done = bool(self.locals["dones"][0])
            if served is None:
                return not twin_done
            serve_one()
            return not (twin_done or stream["done"])

    # More steps than the episode has decisions: the callback stops at its end.
    n_decisions = int(getattr(venv.envs[0].unwrapped, "episode_queries", 10**9))
    model.learn(total_timesteps=n_decisions * 2 + 1, callback=_Serve(),
                progress_bar=progress, reset_num_timesteps=True)
    venv.close()
    if served is not None:
        while not stream["done"]:  # (only if the twin ended first: not lockstep)
            serve_one()
        served.close()
    return timeline, model, twin_timeline


def recovery_times(timelines: Sequence[Timeline], shifts_s: Sequence[float], end_s: float,
                   window_s: float, fraction: float = 0.95,
                   hold: int = 1) -> dict[str, list[float]]:
    """Per arm and per shift, the seconds from the shift to the end of the first sliding window
    (width ``window_s``, starts every quarter window from the shift) whose good fraction
    (in-SLA queries / arrivals) reaches ``fraction`` of the reference — the best arm's mean
    good fraction over the second half of that phase — and holds it: the good fraction over
    the ``hold`` windows from that window's start, counted together, reaches it too. NaN: not
    recovered before the next shift (or the episode's end).

    ``hold=1`` counts the first window that reaches the level, however briefly; a larger hold
    keeps one lucky window of an arm that stays below the level from counting as recovered.

    Args:
        timelines: The arms.
        shifts_s: Start of each phase after the first, in seconds.
        end_s: End of the last phase.
        window_s: Width of the sliding window.
        fraction: Share of the reference that counts as recovered.
        hold: Windows over which the level must hold (>= 1), all inside the phase.
    """
    if hold < 1:
        raise ValueError(f"hold: must be >= 1, got {hold}")
    bounds = [*shifts_s, end_s]
    out: dict[str, list[float]] = {t.name: [] for t in timelines}
    step = window_s / 4
    for k, start in enumerate(shifts_s):
        stop = bounds[k + 1]
        if stop - start <= window_s:
            for t in timelines:
                out[t.name].append(float("nan"))
            continue
        lo = np.arange(start, stop - window_s + 1e-12, step)
        half = lo >= start + (stop - start) / 2
        series = {}
        for t in timelines:
            _, frac = _sliding(t, lo, window_s)
            series[t.name] = frac
        if not np.any(half):
            half = np.ones(len(lo), dtype=bool)
        levels = [float(np.nanmean(s[half])) for s in series.values()
                  if np.any(np.isfinite(s[half]))]
        if not levels:  # nothing arrived in this phase
            for t in timelines:
                out[t.name].append(float("nan"))
            continue
        level = fraction * max(levels)
        span = hold * window_s
        inside = lo + span <= stop + 1e-12
        for t in timelines:
            _, held = _sliding(t, lo, span)
            with np.errstate(invalid="ignore"):
                ok = np.flatnonzero((series[t.name] >= level) & (held >= level) & inside)
            out[t.name].append(float(lo[ok[0]] + window_s - start) if len(ok) else float("nan"))
    return out


def _sliding(t: Timeline, lo: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(t.time_s)
    good = np.concatenate(([0], np.asarray(t.good)))
    arrived = np.concatenate(([0], np.asarray(t.arrived)))
    a = np.searchsorted(times, lo, side="left")
    b = np.searchsorted(times, lo + width, side="left")
    d_good = (good[b] - good[a]).astype(float)
    d_arr = (arrived[b] - arrived[a]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return d_good / width, np.where(d_arr > 0, d_good / d_arr, np.nan)
