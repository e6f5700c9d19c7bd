"""The steps of the main job, shared by the train, evaluate and export apps."""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.baselines import make_baseline
from agents.evaluation import PolicyResult, evaluate, masks_of, summary_rows
from agents.export import export_onnx, parity
from agents.policy import Policy, SB3Policy
from experiments.common import EnvSpec, UserError, write_atomic, write_json
from experiments.report import print_table, results_csv, write_report

#: Seeds of the observations used for the ONNX parity check (apart from evaluation seeds).
PARITY_SEED = 20_000


def baseline_names(cfg: DictConfig, env_id: str) -> list[str]:
    """``eval.baselines``, or every baseline registered for the environment when null."""
    from agents.baselines import baselines_for

    if cfg.eval.baselines is None:
        return list(baselines_for(env_id))
    return [str(n) for n in cfg.eval.baselines]


def make_policies(names: Sequence[str], model: Any | None, env_id: str) -> dict[str, Policy]:
    """Policies by name: ``learned`` (needs ``model``) and baselines.

    Raises:
        UserError: an unknown name, or ``learned`` without a model.
    """
    out: dict[str, Policy] = {}
    for name in names:
        if name == "learned":
            if model is None:
                raise UserError("policies: 'learned' needs run_dir=PATH of a trained run")
            out[name] = SB3Policy(model)
        else:
            try:
                out[name] = make_baseline(name, env_id)
            except ValueError as exc:
                raise UserError(str(exc)) from None
    return out


def collect_observations(spec: EnvSpec, policy: Policy, n: int,
                         seed: int = PARITY_SEED) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """At least ``n`` (observation, mask) pairs from episodes driven by ``policy``."""
    env = spec.make()
    obs_list: list[dict[str, np.ndarray]] = []
    masks: list[np.ndarray] = []
    ep = 0
    while len(obs_list) < n:
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done and len(obs_list) < n:
            mask = masks_of(env)
            obs_list.append(obs)
            masks.append(mask)
            action, _ = policy.predict(obs, deterministic=True, action_masks=mask)
            obs, _, terminated, truncated, _ = env.step(int(action))
            done = terminated or truncated
        ep += 1
    env.close()
    batch = {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]}
    return batch, np.stack(masks)


def export_and_check(model: Any, spec: EnvSpec, out: Path, n_samples: int) -> dict[str, Any]:
    """Write ``policy.onnx`` and compare its actions with torch's on held-out observations."""
    path = export_onnx(model, out / "policy.onnx")
    obs, masks = collect_observations(spec, SB3Policy(model), n_samples)
    agree = parity(model, path, obs, masks)
    return {"onnx": str(path.name), "parity_samples": len(masks), "parity_agreement": agree}


def eval_env_overrides(cfg: DictConfig) -> dict[str, Any]:
    """``eval.env_overrides``: env kwargs that differ at evaluation, e.g. ``{trace:
    azure-conv-test}`` (the held-out split of a real trace the agent trained on). Empty when
    the key is absent.

    Raises:
        UserError: it is not a mapping.
    """
    over = cfg.eval.get("env_overrides")
    if over is None:
        return {}
    value = OmegaConf.to_container(over, resolve=True) if OmegaConf.is_config(over) else over
    if not isinstance(value, dict):
        raise UserError(f"eval.env_overrides: expected a mapping of env kwargs, got {value!r}")
    return {str(k): v for k, v in value.items()}


def evaluate_and_report(
    cfg: DictConfig,
    spec: EnvSpec,
    policies: dict[str, Policy],
    out: Path,
    header: str,
    extra: str = "",
) -> dict[float, dict[str, PolicyResult]]:
    """Score ``policies`` on the held-out seeds (at every ``eval.loads``); write results.csv,
    report.md and plots; print the tables. Returns the results per load."""
    seeds = [int(s) for s in cfg.eval.seeds]
    if not seeds:
        raise UserError("eval.seeds: give at least one seed")
    loads = cfg.eval.get("loads")
    if loads is None:
        # The env's load; trained across a range [lo, hi]: both ends.
        load = spec.kwargs.get("load", 1.0)
        ranged = OmegaConf.is_list(load) or isinstance(load, list | tuple)
        loads = sorted({float(x) for x in load}) if ranged else [float(load)]
    elif any(float(x) <= 0 for x in loads):
        raise UserError(f"eval.loads: every load must be > 0, got {list(loads)}")
    sweep: dict[float, dict[str, PolicyResult]] = {}
    overrides = eval_env_overrides(cfg)
    if overrides:
        header += f"\n- evaluation env overrides (eval.env_overrides): `{overrides}`"
    def save_partial(load: float, results: Mapping[str, PolicyResult]) -> None:
        done = [(x, r) for x, r in sweep.items()] + [(load, results)]
        write_atomic(out / "results.csv", results_csv(done))

    for load in [float(x) for x in loads]:
        make = functools.partial(spec.make, **{**overrides, "load": load})
        sweep[load] = evaluate(make, policies, seeds, progress=bool(cfg.progress),
                               fast=bool(cfg.eval.get("fast", True)),
                               on_episode=functools.partial(save_partial, load))
        print_table(summary_rows(sweep[load]),
                    f"{spec.env_id} at {load:.0%} load — {len(seeds)} held-out episodes")
    write_report(out, sweep, header, extra)
    return sweep


def describe(cfg: DictConfig, spec: EnvSpec) -> str:
    """Markdown header of a report: what was run."""
    kw = {k: v for k, v in spec.kwargs.items() if k not in ("hw", "trace", "workload")}
    hw = cfg.hw.name if "hw" in cfg and cfg.hw is not None else "?"
    models = ", ".join(f"{m.name} (SLA {m.sla_ms} ms)" for m in cfg.workload.models) \
        if "workload" in cfg and cfg.workload is not None else "?"
    trace = OmegaConf.to_container(cfg.trace) if "trace" in cfg else "?"
    return "\n".join([
        f"# ldsgym report — `{spec.env_id}`",
        "",
        f"- hardware: {hw}; env kwargs: `{kw}`",
        f"- workload: {models}",
        f"- trace: `{trace}`",
        f"- evaluation seeds: {list(cfg.eval.seeds)}",
    ])


def write_meta(out: Path, cfg: DictConfig, extra: dict[str, Any]) -> None:
    """``meta.json``: seed, git revision, versions, wall times."""
    import gymnasium
    import stable_baselines3
    import torch

    from experiments.common import git_revision

    write_json(out / "meta.json", {
        "seed": int(cfg.seed),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    })
