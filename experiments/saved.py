"""Loading a finished training run: its composed config and its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.common import UserError

#: Keys of the evaluate/export apps that are not part of the training config.
_APP_KEYS = ("run_dir=", "policies=", "+run_dir=", "+policies=")


def saved_run_config(run_dir: str | Path, extra_overrides: list[str]) -> DictConfig:
    """The training run's config, composed again with its overrides plus ``extra_overrides``.

    Raises:
        UserError: ``run_dir`` is not a finished training run.
    """
    from hydra import compose

    path = Path(run_dir)
    overrides_file = path / ".hydra" / "overrides.yaml"
    if not path.is_dir():
        raise UserError(f"run_dir={run_dir}: no such directory")
    if not overrides_file.is_file():
        raise UserError(f"run_dir={run_dir}: not a training run (no .hydra/overrides.yaml)")
    saved = [str(o) for o in OmegaConf.load(overrides_file)]
    extra = [o for o in extra_overrides if not o.startswith(_APP_KEYS)]
    return compose("train", overrides=saved + extra)


def load_model(cfg: DictConfig, run_dir: str | Path) -> Any:
    """The run's trained model (the algorithm class comes from its ``agent`` config).

    Raises:
        UserError: no ``model.zip`` in the run folder.
    """
    from hydra.utils import get_class

    path = Path(run_dir) / "model.zip"
    if not path.is_file():
        raise UserError(f"run_dir={run_dir}: no model.zip (did training finish?)")
    algo: Any = get_class(str(cfg.agent._target_))
    return algo.load(str(path), device="cpu")


def current_overrides() -> list[str]:
    """This invocation's command-line overrides."""
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task]
