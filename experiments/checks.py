"""Start-up checks of the apps: every value's range and the relations between keys, before any
work and before anything is written (types are checked earlier, by the schemas of
:mod:`experiments.schema` while Hydra composes the config)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.common import UserError


def at_least(key: str, value: Any, low: int) -> int:
    """``int(value)``, or a :class:`UserError` naming ``key`` when it is below ``low``."""
    number = int(value)
    if number < low:
        raise UserError(f"{key}: must be >= {low}, got {value}")
    return number


def training_seeds(seed: int, n_envs: int, resumes: int = 0) -> range:
    """The episode seeds of the training environments: ``make_vec_env`` seeds env ``i`` with
    ``seed + i``; each resume starts fresh environments ``n_envs`` seeds further on."""
    start = seed + n_envs * resumes
    return range(start, start + n_envs)


def check_eval_seeds(cfg: DictConfig, train_seeds: Iterable[int]) -> list[int]:
    """``eval.seeds``: at least one, no repeats, none a training seed."""
    seeds = [int(s) for s in cfg.eval.seeds]
    if not seeds:
        raise UserError("eval.seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"eval.seeds: repeated seeds in {seeds}")
    overlap = sorted(set(seeds) & set(train_seeds))
    if overlap:
        raise UserError(f"eval.seeds: {overlap} also seed training environments (seed={cfg.seed}"
                        f", n_envs={cfg.n_envs}); held-out seeds must differ")
    return seeds


def check_durations(kwargs: Any, prefix: str = "env.kwargs") -> None:
    """Every ``*_ms``/``*_s`` number in the env kwargs is >= 0, reported in the unit typed."""
    if OmegaConf.is_config(kwargs):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    if not isinstance(kwargs, dict):
        return
    for key, value in kwargs.items():
        unit = "ms" if str(key).endswith("_ms") else "s" if str(key).endswith("_s") else None
        if isinstance(value, dict):
            check_durations(value, f"{prefix}.{key}")
        elif unit and isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0 or value != value:
                raise UserError(f"{prefix}.{key}: a duration must be >= 0 {unit}, got {value}")


def check_common(cfg: DictConfig) -> None:
    """Keys every app reads: evaluation loads, ONNX parity samples, env durations."""
    at_least("export.parity_samples", cfg.export.parity_samples, 1)
    at_least("torch_threads", cfg.torch_threads, 1)
    loads = cfg.eval.get("loads")
    if loads is not None:
        if not loads:
            raise UserError("eval.loads: give at least one load, or null for the env's own")
        bad = [x for x in loads if not float(x) > 0]
        if bad:
            raise UserError(f"eval.loads: every load must be > 0, got {list(loads)}")
    if "env" in cfg and cfg.env is not None and "kwargs" in cfg.env:
        check_durations(cfg.env.kwargs)


def check_train(cfg: DictConfig, resumes: int = 0) -> None:
    """Ranges of the training keys and evaluation seeds apart from training seeds."""
    check_common(cfg)
    at_least("total_timesteps", cfg.total_timesteps, 1)
    n_envs = at_least("n_envs", cfg.n_envs, 1)
    at_least("checkpoint.every_steps", cfg.checkpoint.every_steps, 0)
    from experiments.vecenv import vec_env_kind

    vec_env_kind(cfg)  # dummy or subproc
    check_eval_seeds(cfg, training_seeds(int(cfg.seed), n_envs, resumes))
