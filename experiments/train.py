"""The main job: train an agent, export it to ONNX, evaluate it against the baselines.

    python -m experiments.train                      # MaskablePPO on PartitionPlacement-v0
    python -m experiments.train env.kwargs.load=1.0 total_timesteps=200000
    python -m experiments.train experiment=quick     # a tiny smoke run

Writes into the Hydra run folder: ``.hydra/``, ``tb/``, ``model.zip``, ``policy.onnx``,
``report.md``, ``results.csv``, ``plots/*.png``, ``meta.json``.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from experiments.common import check_env_builds, env_spec, hydra_app, run_dir


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    """Train, export, evaluate, report; returns the learned policy's ``objective`` metric
    (what a sweeper such as Optuna optimises, see :mod:`experiments.sweeps`)."""
    import torch
    from hydra.utils import instantiate
    from stable_baselines3.common.logger import configure

    from agents.callbacks import SchedMetricsCallback
    from experiments.common import UserError
    from experiments.pipeline import (
        baseline_names,
        describe,
        evaluate_and_report,
        export_and_check,
        make_policies,
        write_meta,
    )
    from experiments.sweeps import objective_metric, objective_value
    from experiments.vecenv import finish_training, make_training_env

    torch.set_num_threads(int(cfg.torch_threads))  # tiny MLPs: more threads only contend
    out = run_dir()
    spec = env_spec(cfg)
    check_env_builds(spec)
    if int(cfg.total_timesteps) < 1:
        raise UserError(f"total_timesteps: must be >= 1, got {cfg.total_timesteps}")
    objective_metric(cfg)  # a bad `objective` fails before training
    policies_names = ["learned", *baseline_names(cfg, spec.env_id)]
    # Validate the baseline names before training.
    make_policies([n for n in policies_names if n != "learned"], None, spec.env_id)

    vec_env = make_training_env(cfg, spec)  # vec_env group: dummy/subproc, VecNormalize
    try:
        model = instantiate(cfg.agent, _convert_="all")(env=vec_env, seed=int(cfg.seed))
    except Exception as exc:
        raise UserError(f"agent: {' '.join(str(exc).split())}") from None
    model.set_logger(configure(str(out / "tb"), ["tensorboard", "csv"]))
    t0 = time.perf_counter()
    model.learn(total_timesteps=int(cfg.total_timesteps), callback=SchedMetricsCallback(),
                progress_bar=bool(cfg.progress))
    train_s = time.perf_counter() - t0
    vec_env.close()
    model.save(out / "model.zip")
    model = finish_training(model, vec_env, out)  # + vecnormalize.pkl when normalising

    export = export_and_check(model, spec, out, int(cfg.export.parity_samples))
    print(f"policy.onnx: ONNX and torch agree on {export['parity_agreement']:.2%} of "
          f"{export['parity_samples']} held-out observations")
    t1 = time.perf_counter()
    extra = (f"Training: {int(cfg.total_timesteps)} steps in {train_s:.0f} s. "
             f"ONNX parity: {export['parity_agreement']:.2%} of {export['parity_samples']} "
             "observations.")
    policies = make_policies(policies_names, model, spec.env_id)
    sweep = evaluate_and_report(cfg, spec, policies, out, describe(cfg, spec), extra)
    write_meta(out, cfg, {"train_seconds": train_s, "eval_seconds": time.perf_counter() - t1,
                          "total_timesteps": int(cfg.total_timesteps), **export})
    print(f"run folder: {out}")
    return objective_value(cfg, sweep)


if __name__ == "__main__":
    main()
