"""Learning online while serving (issue [N]): one long non-stationary episode served three ways
on the same arrivals — a pretrained policy frozen, the same policy that keeps training with PPO
while it serves, and the best heuristic — with goodput over time and the time each needs to
recover after a shift of the workload.

The arrivals of an episode depend only on its seed (a trace never reacts to the actions), so
the three arms see exactly the same queries. The online arm acts with PPO's sampled actions (it
is on-policy) and updates every ``update_every`` decisions; the frozen arm and the heuristic act
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
                   progress: bool = False) -> tuple[Timeline, Any]:
    """One episode served by a policy that keeps learning: ``new_model(vec_env)`` builds the
    learner (e.g. MaskablePPO with ``n_steps`` = the update interval), which starts from
    ``pretrained``'s weights when given and trains with PPO on the episode's own decisions until
    it ends. Returns the timeline and the learner."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    timeline = Timeline(name)

    class _Reseeded(gym.Wrapper[Any, Any, Any, Any]):
        def reset(self, **kwargs: Any) -> Any:
            return self.env.reset(seed=seed)  # the episode the other arms serve

    venv = DummyVecEnv([lambda: _Recorder(_Reseeded(make_env()), timeline)])
    model = new_model(venv)
    if pretrained is not None:
        model.policy.load_state_dict(pretrained.policy.state_dict())

    class _UntilEpisodeEnds(BaseCallback):
        def _on_step(self) -> bool:
            return not bool(self.locals["dones"][0])

    # More steps than the episode has decisions: the callback stops at its end.
    n_decisions = int(getattr(venv.envs[0].unwrapped, "episode_queries", 10**9))
    model.learn(total_timesteps=n_decisions * 2 + 1, callback=_UntilEpisodeEnds(),
                progress_bar=progress, reset_num_timesteps=True)
    venv.close()
    return timeline, model


def recovery_times(timelines: Sequence[Timeline], shifts_s: Sequence[float], end_s: float,
                   window_s: float, fraction: float = 0.95) -> dict[str, list[float]]:
    """Per arm and per shift, the seconds from the shift until the arm's windowed good fraction
    (in-SLA queries / arrivals, sliding windows of ``window_s``) first reaches ``fraction`` of
    the reference: the best arm's mean good fraction over the second half of that phase. NaN:
    not recovered before the next shift (or the episode's end).

    Args:
        timelines: The arms.
        shifts_s: Start of each phase after the first, in seconds.
        end_s: End of the last phase.
        window_s: Width of the sliding window.
        fraction: Share of the reference that counts as recovered.
    """
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
        ref = max(levels)
        for t in timelines:
            ok = np.flatnonzero(series[t.name] >= fraction * ref)
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
