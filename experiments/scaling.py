"""SB3 throughput of the training VecEnvs: DummyVecEnv vs SubprocVecEnv at several ``n_envs``.

    python -m experiments.scaling                                   # the main job's env and agent
    python -m experiments.scaling "scaling.n_envs=[1,2,4,8]" scaling.timesteps=16384
    python -m experiments.scaling experiment=simd_study            # another study's env/agent

For every (kind, n_envs): environment steps per second of the VecEnv alone (random valid
actions, no learning) and of ``model.learn`` (rollouts + PPO updates), written to
``scaling.csv`` and ``scaling.md`` in the run folder.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, open_dict

from experiments.common import UserError, env_spec, hydra_app, run_dir, write_atomic


def _measure(cfg: DictConfig, kind: str, n_envs: int) -> dict[str, Any]:
    from hydra.utils import instantiate
    from stable_baselines3.common.logger import Logger

    from experiments.vecenv import make_training_env

    run = copy.deepcopy(cfg)
    with open_dict(run):
        run.vec_env.kind = kind
        run.n_envs = n_envs
    spec = env_spec(run)
    steps = int(cfg.scaling.timesteps)

    venv = make_training_env(run, spec)
    rng = np.random.default_rng(0)
    try:
        venv.reset()
        t0 = time.perf_counter()
        for _ in range(max(1, steps // n_envs)):
            masks = np.stack(venv.env_method("action_masks"))
            venv.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
        env_rate = (max(1, steps // n_envs) * n_envs) / (time.perf_counter() - t0)
    finally:
        venv.close()

    venv = make_training_env(run, spec)
    try:
        model = instantiate(run.agent, _convert_="all")(env=venv, seed=int(run.seed))
        model.set_logger(Logger(None, []))  # SB3's default leaves an empty SB3-* dir in /tmp
        t0 = time.perf_counter()
        model.learn(total_timesteps=steps, progress_bar=False)
        learn_rate = model.num_timesteps / (time.perf_counter() - t0)
    finally:
        venv.close()
    return {"env_id": spec.env_id, "vec_env": kind, "n_envs": n_envs, "timesteps": steps,
            "env_steps_per_s": env_rate, "learn_steps_per_s": learn_rate}


@hydra_app("scaling")
def main(cfg: DictConfig) -> None:
    """Measure every (kind, n_envs) pair and write the table."""
    import torch

    torch.set_num_threads(int(cfg.torch_threads))
    kinds = [str(k) for k in cfg.scaling.kinds]
    counts = [int(n) for n in cfg.scaling.n_envs]
    if any(n < 1 for n in counts) or int(cfg.scaling.timesteps) < 1:
        raise UserError("scaling.n_envs and scaling.timesteps: every value must be >= 1")
    rows = []
    for n in counts:
        for kind in kinds:
            row = _measure(cfg, kind, n)
            rows.append(row)
            print(f"{kind:8s} n_envs={n}: {row['env_steps_per_s']:8.0f} env steps/s, "
                  f"{row['learn_steps_per_s']:7.0f} learn steps/s", flush=True)
    out = run_dir()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "scaling.csv", buf.getvalue())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [f"SB3 throughput on `{rows[0]['env_id']}` ({os.cpu_count()} CPUs, load average "
             f"{load[0]:.1f} at the end), {cfg.scaling.timesteps} steps per measurement", "",
             "| VecEnv | n_envs | env steps/s (random valid actions) | learn steps/s (PPO) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['vec_env']} | {r['n_envs']} | {r['env_steps_per_s']:,.0f} | "
              f"{r['learn_steps_per_s']:,.0f} |" for r in rows]
    write_atomic(out / "scaling.md", "\n".join(lines) + "\n")
    print(f"table: {out / 'scaling.md'}")


if __name__ == "__main__":
    main()
