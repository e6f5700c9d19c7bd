"""The steps of the main job, shared by the train, evaluate and export apps."""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.baselines import env_family, make_baseline
from agents.evaluation import PolicyResult, evaluate, masks_of, run_episode, summary_rows
from agents.export import export_onnx, parity
from agents.policy import Policy, SB3Policy
from experiments.common import EnvSpec, UserError, write_atomic, write_json
from experiments.report import (
    plot_layout_timeline,
    print_table,
    results_csv,
    write_report,
    write_trace_report,
)

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
    azure-conv-test}`` (the held-out split of a real trace the agent trained on), or a trace
    config with a ``_target_`` (e.g. a ``traces.MixShift`` with ``split: test``: its held-out
    windows), instantiated as the ``trace`` group is. Empty when the key is absent.

    Raises:
        UserError: it is not a mapping; the trace config does not build.
    """
    over = cfg.eval.get("env_overrides")
    if over is None:
        return {}
    value = OmegaConf.to_container(over, resolve=True) if OmegaConf.is_config(over) else over
    if not isinstance(value, dict):
        raise UserError(f"eval.env_overrides: expected a mapping of env kwargs, got {value!r}")
    out = {str(k): v for k, v in value.items()}
    trace = out.get("trace")
    if isinstance(trace, dict) and "_target_" in trace:
        from hydra.utils import instantiate

        try:
            out["trace"] = instantiate(trace, _convert_="all")
        except Exception as exc:  # hydra wraps the constructor's error
            msg = " ".join(str(exc).split())
            raise UserError(f"eval.env_overrides.trace: {msg}") from None
    return out


def eval_traces(cfg: DictConfig) -> list[str]:
    """``eval.traces``: trace presets to evaluate on, each apart (e.g. the held-out windows of
    every shared real trace); empty when null, then the env's own trace is used.

    Raises:
        UserError: not a list of known preset names, or a name repeated.
    """
    names = cfg.eval.get("traces")
    if names is None:
        return []
    from traces import TRACE_PRESETS

    out = [str(n) for n in names]
    if not out:
        raise UserError("eval.traces: give at least one trace preset, or null for the env's own")
    for name in out:
        if name not in TRACE_PRESETS:
            raise UserError(f"eval.traces: unknown trace preset '{name}'; known: "
                            f"{', '.join(sorted(TRACE_PRESETS))}")
    if len(set(out)) != len(out):
        raise UserError(f"eval.traces: repeated presets in {out}")
    return out


def check_eval_traces(cfg: DictConfig, spec: EnvSpec) -> None:
    """Build the environment once on each of ``eval.traces`` (reads and checks replayed files)
    before any work, so that a missing trace fails at start-up."""
    from experiments.common import check_env_builds

    overrides = eval_env_overrides(cfg)
    for name in eval_traces(cfg):
        try:
            check_env_builds(EnvSpec(spec.env_id, {**spec.kwargs, **overrides, "trace": name}))
        except UserError as exc:
            raise UserError(f"eval.traces: {name}: {exc}") from None


def eval_loads(cfg: DictConfig, spec: EnvSpec) -> list[float]:
    """``eval.loads``, or the env's own load (both ends of a trained range)."""
    loads = cfg.eval.get("loads")
    if loads is None:
        load = spec.kwargs.get("load", 1.0)
        ranged = OmegaConf.is_list(load) or isinstance(load, list | tuple)
        return sorted({float(x) for x in load}) if ranged else [float(load)]
    if any(float(x) <= 0 for x in loads):
        raise UserError(f"eval.loads: every load must be > 0, got {list(loads)}")
    return [float(x) for x in loads]


def evaluate_and_report(
    cfg: DictConfig,
    spec: EnvSpec,
    policies: dict[str, Policy],
    out: Path,
    header: str,
    extra: str = "",
) -> dict[float, dict[str, PolicyResult]]:
    """Score ``policies`` on the held-out seeds (at every ``eval.loads``, on every
    ``eval.traces``); write results.csv, report.md and plots; print the tables. Returns the
    results per load (of the first of ``eval.traces`` when given)."""
    seeds = [int(s) for s in cfg.eval.seeds]
    if not seeds:
        raise UserError("eval.seeds: give at least one seed")
    loads = eval_loads(cfg, spec)
    overrides = eval_env_overrides(cfg)
    if overrides:
        header += f"\n- evaluation env overrides (eval.env_overrides): `{overrides}`"
    traces = eval_traces(cfg)
    runs: list[tuple[str | None, float, Mapping[str, PolicyResult]]] = []
    if env_family(spec.env_id) == "Repartition":
        # Issue 16: which layout each policy holds as the mix drifts, on the first held-out
        # seed at the load nearest 100% (an episode more per policy; the same arrivals).
        load = min(loads, key=lambda x: abs(x - 1.0))
        where0 = {} if not traces else {"trace": traces[0]}
        path = layout_timeline(functools.partial(spec.make, **{**overrides, **where0,
                                                                "load": load}),
                               policies, seeds[0], out / "plots",
                               f"{spec.env_id} at {load:.0%} load, held-out seed {seeds[0]}")
        extra = (extra + "\n\n" if extra else "") + (
            f"Layout chosen by each policy over one held-out episode (seed {seeds[0]}, "
            f"{load:.0%} load), against the model mix:\n\n![{path.stem}](plots/{path.name})")

    def save_partial(trace: str | None, load: float, results: Mapping[str, PolicyResult]) -> None:
        write_atomic(out / "results.csv", results_csv(
            [(lo, r) for _, lo, r in runs] + [(load, results)],
            traces=[t for t, _, _ in runs] + [trace] if traces else None))

    by_trace: dict[str, dict[float, dict[str, PolicyResult]]] = {}
    todo: list[str | None] = list(traces) if traces else [None]
    for trace in todo:
        sweep: dict[float, dict[str, PolicyResult]] = {}
        where = {} if trace is None else {"trace": trace}
        for load in loads:
            make = functools.partial(spec.make, **{**overrides, **where, "load": load})
            sweep[load] = evaluate(make, policies, seeds, progress=bool(cfg.progress),
                                   fast=bool(cfg.eval.get("fast", True)),
                                   on_episode=functools.partial(save_partial, trace, load))
            runs.append((trace, load, sweep[load]))
            on = "" if trace is None else f" on {trace}"
            print_table(summary_rows(sweep[load]),
                        f"{spec.env_id}{on} at {load:.0%} load — {len(seeds)} held-out episodes")
        by_trace[str(trace)] = sweep
    if not traces:
        write_report(out, by_trace["None"], header, extra)
        return by_trace["None"]
    header += f"\n- evaluated on each trace apart (eval.traces): {', '.join(traces)}"
    write_trace_report(out, by_trace, header, extra)
    return by_trace[traces[0]]


def layout_timeline(make: Callable[[], Any], policies: Mapping[str, Policy], seed: int,
                    out_dir: Path, title: str = "") -> Path:
    """Run each policy for one episode of a Repartition env (``make``) on ``seed`` and plot
    the layout it held at each decision against the model mix
    (:func:`experiments.report.plot_layout_timeline`); returns the PNG's path."""
    env = make()
    base = env.unwrapped
    names = [base.layout_name(i) for i in range(base.n_layouts)]
    index = {n: i for i, n in enumerate(names)}
    m = base.n_models
    times: dict[str, list[float]] = {}
    layouts: dict[str, list[int]] = {}
    mix: list[np.ndarray] = []
    try:
        for name, policy in policies.items():
            ts, ls = times.setdefault(name, []), layouts.setdefault(name, [])
            first = not mix and name == next(iter(policies))

            def record(obs: Any, info: dict[str, Any], ts: list[float] = ts,
                       ls: list[int] = ls, first: bool = first) -> None:
                ts.append(float(info["sim_time_s"]))
                ls.append(index[str(info["layout"])])
                if first:  # arrivals per model in the interval just ended (the same for all)
                    mix.append(np.asarray(obs["rates"][-m:], dtype=np.float64))

            run_episode(env, policy, seed, on_step=record)
    finally:
        env.close()
    first_name = next(iter(policies))
    return plot_layout_timeline(times, layouts, names, times[first_name], np.array(mix),
                                [mc.name for mc in base.mix.models], out_dir, title)


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
