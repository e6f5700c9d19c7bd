"""Re-export a saved run's policy to ``policy.onnx`` and check it against torch.

    python -m experiments.export run_dir=runs/2026-11-29/10-00-00
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.checks import at_least, check_common
from experiments.common import EnvSpec, UserError, env_spec, hydra_app, write_json
from experiments.interrupts import Interrupts


@dataclass(frozen=True)
class ExportStart:
    """The result of the start-up checks."""

    spec: EnvSpec
    model: Any
    parity_samples: int


def startup(cfg: DictConfig, overrides: list[str]) -> ExportStart:
    """Every check that can fail on the user's input, before any work."""
    from experiments.saved import load_model, saved_run_config
    from experiments.vecenv import with_saved_normalization

    samples = at_least("export.parity_samples", cfg.export.parity_samples, 1)
    env_cfg = saved_run_config(cfg.run_dir, overrides)
    check_common(env_cfg)
    spec = env_spec(env_cfg)
    model = load_model(env_cfg, cfg.run_dir)
    model = with_saved_normalization(model, cfg.run_dir, spec)  # vecnormalize.pkl, if any
    return ExportStart(spec, model, samples)


@hydra_app("export", startup=startup)
def main(cfg: DictConfig, start: ExportStart, _interrupts: Interrupts) -> None:
    """Export, then compare actions on held-out observations."""

    from experiments.pipeline import export_and_check

    out = Path(cfg.run_dir)
    result = export_and_check(start.model, start.spec, out, start.parity_samples)
    write_json(out / "export.json", result)
    agree = result["parity_agreement"]
    print(f"{out / 'policy.onnx'}: ONNX and torch agree on {agree:.2%} of "
          f"{result['parity_samples']} held-out observations")
    if agree < 1.0:
        raise UserError(f"ONNX parity {agree:.2%} < 100% (see {out / 'export.json'})")


if __name__ == "__main__":
    main()
