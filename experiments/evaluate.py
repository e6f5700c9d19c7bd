"""Evaluate policies on held-out seeds: a saved run's learned policy and/or baselines.

    python -m experiments.evaluate run_dir=runs/2026-11-29/10-00-00
    python -m experiments.evaluate run_dir=... env.kwargs.load=1.2     # same model, more load
    python -m experiments.evaluate policies=[least_loaded,shortest_finish]   # baselines alone

With ``run_dir`` the environment is the run's own (its overrides, then this command's), and
results go to ``<run_dir>/eval-<time>/`` so the run's original report is kept. Every input is
checked before that folder is created; ``results.csv`` is rewritten (atomically) after every
episode, so an interrupted evaluation keeps the rows it finished.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.checks import check_common, check_eval_seeds, training_seeds
from experiments.common import EnvSpec, check_env_builds, env_spec, hydra_app, run_dir
from experiments.interrupts import Interrupted, Interrupts, signal_name


@dataclass(frozen=True)
class EvalStart:
    """The result of the start-up checks."""

    env_cfg: DictConfig
    spec: EnvSpec
    policies: dict[str, object]


def startup(cfg: DictConfig, overrides: list[str]) -> EvalStart:
    """Every check that can fail on the user's input, before any work."""
    from experiments.pipeline import baseline_names, check_eval_traces, make_policies
    from experiments.saved import load_model, saved_run_config

    check_common(cfg)
    model = None
    env_cfg = cfg
    if cfg.run_dir is not None:
        env_cfg = saved_run_config(cfg.run_dir, overrides)
        check_common(env_cfg)
        check_eval_seeds(env_cfg, training_seeds(int(env_cfg.seed), int(env_cfg.n_envs)))
        model = load_model(env_cfg, cfg.run_dir)
    else:
        check_eval_seeds(cfg, ())
    spec = env_spec(env_cfg)
    if model is not None:
        from experiments.vecenv import with_saved_normalization

        model = with_saved_normalization(model, cfg.run_dir, spec)
    names = list(cfg.policies) if cfg.policies is not None else (
        (["learned"] if model is not None else []) + baseline_names(env_cfg, spec.env_id))
    policies = make_policies(names, model, spec.env_id)
    check_env_builds(spec)
    check_eval_traces(env_cfg, spec)
    return EvalStart(env_cfg, spec, dict(policies))


@hydra_app("evaluate", startup=startup)
def main(cfg: DictConfig, start: EvalStart, _interrupts: Interrupts) -> None:
    """Evaluate and report."""

    from experiments.pipeline import describe, evaluate_and_report

    header = describe(start.env_cfg, start.spec)
    if cfg.run_dir is not None:
        from agents.ensemble import EnsembleModel

        model = start.policies.get("learned")
        model = getattr(model, "model", None)
        header += (f"\n- model: the ensemble of `{cfg.run_dir}/ensemble.json` ({len(model)} "
                   "policies)" if isinstance(model, EnsembleModel)
                   else f"\n- model: `{cfg.run_dir}/model.zip`")
    try:
        evaluate_and_report(start.env_cfg, start.spec, start.policies,  # type: ignore[arg-type]
                            run_dir(), header)
    except Interrupted as exc:
        raise Interrupted(exc.signum, f"interrupted by {signal_name(exc.signum)}: the finished "
                          f"episodes are in {run_dir() / 'results.csv'}") from None
    print(f"report: {run_dir() / 'report.md'}")


if __name__ == "__main__":
    main()
