"""Re-export a saved run's policy to ``policy.onnx`` and check it against torch.

    python -m experiments.export run_dir=runs/2026-11-29/10-00-00
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments.common import UserError, env_spec, hydra_app, write_json


@hydra_app("export")
def main(cfg: DictConfig) -> None:
    """Export, then compare actions on held-out observations."""
    from experiments.pipeline import export_and_check
    from experiments.saved import current_overrides, load_model, saved_run_config
    from experiments.vecenv import with_saved_normalization

    env_cfg = saved_run_config(cfg.run_dir, current_overrides())
    model = load_model(env_cfg, cfg.run_dir)
    spec = env_spec(env_cfg)
    model = with_saved_normalization(model, cfg.run_dir, spec)  # vecnormalize.pkl, if any
    out = Path(cfg.run_dir)
    result = export_and_check(model, spec, out, int(cfg.export.parity_samples))
    write_json(out / "export.json", result)
    agree = result["parity_agreement"]
    print(f"{out / 'policy.onnx'}: ONNX and torch agree on {agree:.2%} of "
          f"{result['parity_samples']} held-out observations")
    if agree < 1.0:
        raise UserError(f"ONNX parity {agree:.2%} < 100% (see {out / 'export.json'})")


if __name__ == "__main__":
    main()
