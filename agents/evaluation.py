"""One harness that scores every policy on the same environment seeds."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents import fast_eval
from agents.policy import Policy

#: Metrics aggregated in reports, in display order.
REPORT_METRICS = (
    "sla_attainment",
    "goodput",
    "p50_latency_ms",
    "p99_latency_ms",
    "dropped",
    "utilization",
    "energy_per_query_j",
    "cost_per_query_usd",
    "reconfigurations",
    "downtime_s",
    "episode_return",
)


@dataclass
class PolicyResult:
    """Every episode of one policy, and its latency histogram summed over them."""

    name: str
    episodes: list[dict[str, Any]] = field(default_factory=list)
    latency_counts: np.ndarray | None = None

    def mean(self, key: str) -> float:
        """Mean of a metric over episodes."""
        return float(np.mean([e[key] for e in self.episodes]))

    def std(self, key: str) -> float:
        """Standard deviation of a metric over episodes."""
        return float(np.std([e[key] for e in self.episodes]))


def masks_of(env: gym.Env[Any, Any]) -> np.ndarray:
    """The env's action mask, through any wrappers."""
    return np.asarray(env.get_wrapper_attr("action_masks")(), dtype=bool)


def run_episode(env: gym.Env[Any, Any], policy: Policy, seed: int,
                fast: bool = True,
                on_step: Callable[[Any, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One episode with ``policy``; returns the final ``info`` plus return, steps and wall time.

    Args:
        env: The environment (possibly wrapped).
        policy: Any :class:`~agents.policy.Policy`.
        seed: Episode seed.
        fast: Use the fast path (:mod:`agents.fast_eval`) when the policy is a heuristic with
            a kernel and the env offers a rollout; the result is identical to the ordinary
            ``reset``/``step`` loop except for ``wall_s``. ``False`` forces the ordinary loop.
        on_step: Called with the observation and ``info`` after every step (the ordinary
            loop then runs: the fast path has no steps to show).

    A policy with a ``bind_env(env, seed)`` method (an oracle, such as the best static layout
    in hindsight) is handed the environment and the seed before the episode; one with an
    ``episode_extras()`` method adds what it returns to the result after it (e.g. the
    per-interval hindsight bound).

    Raises:
        RuntimeError: the policy picked a masked action.
    """
    bind = getattr(policy, "bind_env", None)
    if callable(bind):
        bind(env, seed)
    if fast and on_step is None and fast_eval.supports(env, policy):
        t0 = time.perf_counter()
        try:
            result = fast_eval.run_fast(env, policy, seed)
        except ValueError as exc:
            raise RuntimeError(f"policy {policy!r}: {exc}") from None
        return {**result, "wall_s": time.perf_counter() - t0, "seed": seed, **_extras(policy)}
    obs, info = env.reset(seed=seed)
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(seed)
    total, steps, t0 = 0.0, 0, time.perf_counter()
    done = False
    while not done:
        mask = masks_of(env)
        action, _ = policy.predict(obs, deterministic=True, action_masks=mask)
        a = int(np.asarray(action).reshape(-1)[0])
        if not mask[a]:
            raise RuntimeError(f"policy {policy!r} picked masked action {a} (mask {mask})")
        obs, reward, terminated, truncated, info = env.step(a)
        if on_step is not None:
            on_step(obs, info)
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return {**info, "episode_return": total, "steps": steps,
            "wall_s": time.perf_counter() - t0, "seed": seed, **_extras(policy)}


def _extras(policy: Policy) -> dict[str, Any]:
    """What the policy's ``episode_extras()`` reports (nothing if it has none)."""
    extras = getattr(policy, "episode_extras", None)
    return dict(extras()) if callable(extras) else {}


def evaluate(
    make_env: Callable[[], gym.Env[Any, Any]],
    policies: Mapping[str, Policy],
    seeds: Sequence[int],
    progress: bool = True,
    fast: bool = True,
    on_episode: Callable[[Mapping[str, PolicyResult]], None] | None = None,
) -> dict[str, PolicyResult]:
    """Run every policy on every seed (the same seeds for all) in fresh environments.

    Args:
        make_env: Builds the evaluation environment.
        policies: Policies by display name.
        seeds: Episode seeds (held out from training).
        progress: Show a progress bar over episodes.
        fast: Evaluate heuristics through their kernels (:mod:`agents.fast_eval`) where the
            env allows it: the same results, many times faster. ``False`` steps every policy
            through ``reset``/``step``.
        on_episode: Called with the results so far after every episode (e.g. to write them,
            so that an interrupted evaluation keeps what it finished).
    """
    results = {name: PolicyResult(name) for name in policies}
    bar = tqdm(total=len(policies) * len(seeds), desc="evaluating", unit="ep",
               disable=not progress)
    env = make_env()
    try:
        for name, policy in policies.items():
            res = results[name]
            for seed in seeds:
                bar.set_postfix_str(f"{name} seed={seed}")
                res.episodes.append(run_episode(env, policy, seed, fast=fast))
                counts = getattr(env.unwrapped, "latency_counts", None)
                if callable(counts):
                    c = np.asarray(counts(), dtype=np.int64)
                    res.latency_counts = c if res.latency_counts is None else (
                        res.latency_counts + c)
                bar.update()
                if on_episode is not None:
                    on_episode(results)
    finally:
        env.close()
        bar.close()
    return results


def summary_rows(results: Mapping[str, PolicyResult]) -> list[dict[str, Any]]:
    """One row per policy: mean and std of :data:`REPORT_METRICS` over its episodes."""
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {"policy": name, "episodes": len(res.episodes)}
        for key in REPORT_METRICS:
            if res.episodes and key in res.episodes[0]:
                row[key] = res.mean(key)
                row[f"{key}_std"] = res.std(key)
        # In-SLA queries (or requests, where a request fans out into several decisions: the
        # ShardRouting info's ``good`` counts sub-requests), for comparisons.
        good = next((k for k in ("requests_good", "good") if res.episodes
                     and k in res.episodes[0]), None)
        if good is not None:
            row["good"] = res.mean(good)
        rows.append(row)
    return rows
