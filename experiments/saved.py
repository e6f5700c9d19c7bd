"""Loading a finished training run: its composed config and its model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.common import UserError, current_overrides  # noqa: F401  (re-exported)

#: Keys of the evaluate/export apps that are not part of the training config.
_APP_KEYS = ("run_dir=", "policies=", "+run_dir=", "+policies=", "resume=", "+resume=")


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
    # ``+key=v`` is how the evaluate command line adds a key its own config lacks (e.g.
    # ``+eval.env_overrides.episode_queries=N``); the run's config may already have that key,
    # where ``+`` would fail, so it is set with ``++`` (add or override) there.
    extra = [f"+{o}" if o.startswith("+") and not o.startswith("++") else o
             for o in extra_overrides if not o.startswith(_APP_KEYS)]
    return compose("train", overrides=saved + extra)


#: File in a run folder whose policy is an ensemble (``select.ensemble``): its members.
ENSEMBLE_FILE = "ensemble.json"


def load_model(cfg: DictConfig, run_dir: str | Path) -> Any:
    """The run's trained model (the algorithm class comes from its ``agent`` config); where
    the run has an ``ensemble.json`` (``select.ensemble``), the
    :class:`agents.ensemble.EnsembleModel` of the models it lists.

    Raises:
        UserError: no ``model.zip`` in the run folder; an unreadable ``ensemble.json`` or
            member (the message names the file).
    """
    path = Path(run_dir) / "model.zip"
    if not path.is_file():
        raise UserError(f"run_dir={run_dir}: no model.zip (did training finish?)")
    if (Path(run_dir) / ENSEMBLE_FILE).is_file():
        return load_ensemble(cfg, Path(run_dir))
    return load_model_file(cfg, path)


def load_ensemble(cfg: DictConfig, run_dir: Path) -> Any:
    """The :class:`agents.ensemble.EnsembleModel` of ``run_dir/ensemble.json``'s ``members``
    (model files relative to the run folder).

    Raises:
        UserError: the file is not such a list, or a member is missing or not a model.
    """
    import json

    from agents.ensemble import EnsembleModel

    file = run_dir / ENSEMBLE_FILE
    try:
        members = json.loads(file.read_text())["members"]
        if not isinstance(members, list) or not members or not all(
                isinstance(m, str) for m in members):
            raise ValueError("'members' must be a non-empty list of model files")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: not an ensemble record ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]})") from None
    models = []
    for member in members:
        path = run_dir / member
        if not path.is_file():
            raise UserError(f"{file}: member {member} not found in {run_dir}")
        models.append(load_model_file(cfg, path))
    try:
        return EnsembleModel(models)
    except ValueError as exc:
        raise UserError(f"{file}: {exc}") from None


def algorithm(cfg: DictConfig) -> Any:
    """The SB3 algorithm class of the run's ``agent`` config."""
    from hydra.utils import get_class

    return get_class(str(cfg.agent._target_))


def load_model_file(cfg: DictConfig, path: Path) -> Any:
    """Load a model saved by the run's algorithm (``cfg.agent._target_``).

    Raises:
        UserError: the file is not such a model (truncated, foreign, another algorithm); the
            message names the file and the problem, the file is left as it is.
    """
    import zipfile

    algo = algorithm(cfg)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a model saved by {algo.__name__} (not a zip archive: "
                        "truncated or a different file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return algo.load(str(path), device="cpu")
    except Exception as exc:
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise UserError(f"{path}: not a model saved by {algo.__name__} "
                        f"({type(exc).__name__}: {text})") from None
