"""The ``vec_env`` config group (SB3 DummyVecEnv or SubprocVecEnv, optionally under
VecNormalize; the training envs themselves are :class:`agents.vec.TrainingEnvs`, which report a
crashed worker), and the saved normalisation of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from agents.normalize import VECNORMALIZE_FILE, NormalizedModel, ObsNormalizer, load_normalizer
from experiments.common import EnvSpec, UserError

#: ``vec_env.kind`` -> SB3 class name.
KINDS = {"dummy": "DummyVecEnv", "subproc": "SubprocVecEnv"}


def _settings(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.vec_env`` with its defaults (a config without the group trains as before)."""
    settings: dict[str, Any] = {"kind": "dummy", "start_method": None, "normalize": False,
                                "norm_obs": True, "norm_reward": True, "clip_obs": 10.0,
                                "clip_reward": 10.0}
    group = cfg.get("vec_env")
    if group is not None:
        settings.update({str(k): v for k, v in group.items()})
    return settings


def vec_env_kind(cfg: DictConfig) -> str:
    """``vec_env.kind``: ``dummy`` or ``subproc``.

    Raises:
        UserError: another kind.
    """
    kind = str(_settings(cfg)["kind"])
    if kind not in KINDS:
        raise UserError(f"vec_env.kind: unknown '{kind}'; expected one of {', '.join(KINDS)}")
    return kind


def vec_env_start_method(cfg: DictConfig) -> str | None:
    """SubprocVecEnv's multiprocessing start method (``None``: SB3's default)."""
    method = _settings(cfg)["start_method"]
    return None if method is None else str(method)


def with_normalization(cfg: DictConfig, venv: Any) -> Any:
    """``venv`` under SB3 ``VecNormalize`` when ``vec_env.normalize``, else ``venv``."""
    from stable_baselines3.common import vec_env as sb3_vec

    s = _settings(cfg)
    if not bool(s["normalize"]):
        return venv
    gamma = float(cfg.agent.get("gamma", 0.99)) if "agent" in cfg else 0.99
    return sb3_vec.VecNormalize(venv, norm_obs=bool(s["norm_obs"]),
                                norm_reward=bool(s["norm_reward"]),
                                clip_obs=float(s["clip_obs"]),
                                clip_reward=float(s["clip_reward"]), gamma=gamma)


def make_training_env(cfg: DictConfig, spec: EnvSpec) -> Any:
    """``n_envs`` training environments seeded from ``seed``, as ``vec_env`` asks (the
    training loop's :class:`agents.vec.TrainingEnvs`, under VecNormalize when asked).

    Raises:
        UserError: an unknown ``vec_env.kind``, or ``n_envs`` < 1.
    """
    from agents.vec import TrainingEnvs

    n_envs = int(cfg.n_envs)
    if n_envs < 1:
        raise UserError(f"n_envs: must be >= 1, got {n_envs}")
    envs = TrainingEnvs(spec.make, spec.env_id, n_envs, int(cfg.seed),
                        subproc=vec_env_kind(cfg) == "subproc",
                        start_method=vec_env_start_method(cfg))
    return with_normalization(cfg, envs.vec_env)


def finish_training(model: Any, venv: Any, out: Path) -> Any:
    """Save ``vecnormalize.pkl`` when training normalised observations; returns the model to
    export and evaluate (wrapped so that it normalises its input), else ``model`` itself."""
    from stable_baselines3.common.vec_env import VecNormalize

    if not isinstance(venv, VecNormalize):
        return model
    venv.save(str(out / VECNORMALIZE_FILE))
    if not venv.norm_obs:
        return model
    return NormalizedModel(model, ObsNormalizer.from_vec_normalize(venv))


def with_saved_normalization(model: Any, run_dir: str | Path, spec: EnvSpec) -> Any:
    """``model`` wrapped with the run's ``vecnormalize.pkl`` if it has one (evaluate, export).

    Raises:
        UserError: the file does not fit the environment.
    """
    path = Path(run_dir) / VECNORMALIZE_FILE
    if not path.is_file():
        return model
    try:
        normalizer = load_normalizer(path, spec.make)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return model if normalizer is None else NormalizedModel(model, normalizer)
