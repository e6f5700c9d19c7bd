"""Evaluate policies on held-out seeds: a saved run's learned policy and/or baselines.

    python -m experiments.evaluate run_dir=runs/2026-11-29/10-00-00
    python -m experiments.evaluate run_dir=... env.kwargs.load=1.2     # same model, more load
    python -m experiments.evaluate policies=[least_loaded,shortest_finish]   # baselines alone

With ``run_dir`` the environment is the run's own (its overrides, then this command's), and
results go to ``<run_dir>/eval-<time>/`` so the run's original report is kept.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.common import check_env_builds, env_spec, hydra_app, run_dir


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    """Evaluate and report."""
    from experiments.pipeline import (
        baseline_names,
        describe,
        evaluate_and_report,
        make_policies,
    )
    from experiments.saved import current_overrides, load_model, saved_run_config

    model = None
    env_cfg = cfg
    if cfg.run_dir is not None:
        env_cfg = saved_run_config(cfg.run_dir, current_overrides())
        model = load_model(env_cfg, cfg.run_dir)
    spec = env_spec(env_cfg)
    if model is not None:
        from experiments.vecenv import with_saved_normalization

        model = with_saved_normalization(model, cfg.run_dir, spec)
    names = list(cfg.policies) if cfg.policies is not None else (
        (["learned"] if model is not None else []) + baseline_names(env_cfg, spec.env_id))
    policies = make_policies(names, model, spec.env_id)
    check_env_builds(spec)
    header = describe(env_cfg, spec)
    if cfg.run_dir is not None:
        header += f"\n- model: `{cfg.run_dir}/model.zip`"
    evaluate_and_report(env_cfg, spec, policies, run_dir(), header)
    print(f"report: {run_dir() / 'report.md'}")


if __name__ == "__main__":
    main()
