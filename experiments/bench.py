"""Simulation speed: env steps per second for every registered environment, as a ratio to
``CartPole-v1``'s raw step measured in the same process.

    python -m experiments.bench                # writes bench.csv and bench.md in out_dir

The env step is timed the way an RL loop uses it: ``action_masks()`` then ``step()`` on the
unwrapped environment, with a cheap deterministic action choice (the first valid partition in
round-robin order), resets included.
"""

from __future__ import annotations

import csv
import io
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from experiments.common import UserError, hydra_app, write_atomic


def _time_cartpole(steps: int) -> float:
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    step = env.step
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, term, trunc, _ = step(i & 1)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def _time_env(env_id: str, steps: int) -> tuple[float, float]:
    """(steps/s with masks, steps/s of step() alone) for one environment."""
    env: Any = gym.make(env_id).unwrapped
    env.reset(seed=0)
    n = env.action_space.n
    masks, step = env.action_masks, env.step
    k = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        mask = masks()
        k = (k + 1) % n
        while not mask[k]:
            k = (k + 1) % n
        _, _, term, trunc, _ = step(k)
        if term or trunc:
            env.reset()
    with_masks = steps / (time.perf_counter() - t0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = step(0)
        if term or trunc:
            env.reset()
    alone = steps / (time.perf_counter() - t0)
    return with_masks, alone


def run_bench(env_ids: list[str], steps: int, repeats: int) -> list[dict[str, Any]]:
    """Best-of-``repeats`` rates; CartPole is measured before each environment."""
    rows = []
    for env_id in env_ids:
        cart = max(_time_cartpole(steps) for _ in range(repeats))
        timings = [_time_env(env_id, steps) for _ in range(repeats)]
        rate = max(t[0] for t in timings)
        alone = max(t[1] for t in timings)
        rows.append({
            "env": env_id,
            "steps_per_s": rate,
            "step_only_per_s": alone,
            "cartpole_steps_per_s": cart,
            "cost_vs_cartpole": cart / rate,
        })
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The README table."""
    lines = [
        "| environment | env steps/s (masks + step) | step() alone/s | CartPole-v1 raw steps/s "
        "| step cost / CartPole step |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| `{r['env']}` | {r['steps_per_s']:,.0f} | {r['step_only_per_s']:,.0f} "
                     f"| {r['cartpole_steps_per_s']:,.0f} | {r['cost_vs_cartpole']:.2f}x |")
    return "\n".join(lines)


@hydra_app("bench")
def main(cfg: DictConfig) -> None:
    """Measure and write bench.csv / bench.md."""
    import envs

    ids = list(cfg.envs) if cfg.envs is not None else envs.registered_ids()
    unknown = [i for i in ids if i not in envs.registered_ids()]
    if unknown:
        raise UserError(f"envs: unknown id(s) {unknown}; registered: {envs.registered_ids()}")
    if int(cfg.steps) < 100 or int(cfg.repeats) < 1:
        raise UserError("steps must be >= 100 and repeats >= 1")
    rows = run_bench(ids, int(cfg.steps), int(cfg.repeats))
    out = Path(str(cfg.out_dir))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "bench.csv", buf.getvalue())
    md = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}"
          f", Python {platform.python_version()}, numpy {np.__version__}; best of "
          f"{cfg.repeats} x {cfg.steps} steps.\n\n" + to_markdown(rows) + "\n")
    write_atomic(out / "bench.md", md)
    print(md)


if __name__ == "__main__":
    main()
