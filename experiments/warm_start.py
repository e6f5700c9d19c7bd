"""``warm_start``: behaviour cloning from a heuristic before PPO (:mod:`agents.bc`).

    python -m experiments.train experiment=simd_placement \\
        warm_start='{teacher: hot_replicate, steps: 20000}'

The teacher (a baseline of the environment) drives ``steps`` decisions on episodes of its own
seeds (``seed + 100000`` on, apart from training and evaluation seeds); the fresh policy is fitted
to its actions (masked negative log-likelihood), then PPO trains as usual. Not with
``vec_env.normalize`` (the clone would see raw observations, PPO normalised ones), and not
when resuming from a checkpoint (the checkpoint already holds the warm-started policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from experiments.common import EnvSpec, UserError, option_mapping

#: Offset of the teacher's episode seeds from ``seed`` (past any evaluation seed in use).
TEACHER_SEED_OFFSET = 100_000
_KEYS = {"teacher", "steps", "epochs", "batch_size", "lr", "rare_weight"}


@dataclass(frozen=True)
class WarmStart:
    """The ``warm_start`` settings."""

    teacher: str
    steps: int = 20_000
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    #: Weight of the decisions where the teacher did not take its most common action (a
    #: placement teacher keeps on all but a few dozen of thousands; 1: plain cloning).
    rare_weight: float = 1.0


def warm_start_settings(cfg: DictConfig, env_id: str) -> WarmStart | None:
    """``cfg.warm_start`` checked (None when absent or null).

    Raises:
        UserError: unknown keys, a value out of range, a teacher that is not a baseline of the
            environment, evaluation seeds among the teacher's, or ``vec_env.normalize``.
    """
    value = option_mapping(cfg, "warm_start", "teacher", _KEYS, "{teacher: NAME, steps: N, ...}")
    if value is None:
        return None
    try:
        ws = WarmStart(str(value["teacher"]), int(value.get("steps", 20_000)),
                       int(value.get("epochs", 5)), int(value.get("batch_size", 256)),
                       float(value.get("lr", 1e-3)), float(value.get("rare_weight", 1.0)))
    except (TypeError, ValueError) as exc:
        raise UserError(f"warm_start: {exc}") from None
    for key in ("steps", "epochs", "batch_size"):
        if getattr(ws, key) < 1:
            raise UserError(f"warm_start.{key}: must be >= 1, got {getattr(ws, key)}")
    if not ws.lr > 0:
        raise UserError(f"warm_start.lr: must be > 0, got {ws.lr}")
    if not ws.rare_weight > 0:
        raise UserError(f"warm_start.rare_weight: must be > 0, got {ws.rare_weight}")
    from agents.baselines import make_baseline

    try:
        make_baseline(ws.teacher, env_id)
    except ValueError as exc:
        raise UserError(f"warm_start.teacher: {exc}") from None
    first = int(cfg.seed) + TEACHER_SEED_OFFSET
    clash = sorted({int(s) for s in cfg.eval.seeds} & set(range(first, first + ws.steps)))
    if clash:
        raise UserError(f"warm_start: evaluation seeds {clash} would seed the teacher's episodes "
                        f"({first} on)")
    vec = cfg.get("vec_env")
    if vec is not None and bool(vec.get("normalize", False)):
        raise UserError("warm_start: not with vec_env.normalize=true (the clone would see raw "
                        "observations)")
    return ws


def run_warm_start(ws: WarmStart, spec: EnvSpec, model: Any, seed: int) -> dict[str, Any]:
    """Collect the teacher's decisions and clone them into ``model.policy``; returns what to
    record (teacher, decisions, its share of non-default actions, NLL per epoch)."""
    import numpy as np

    from agents.baselines import make_baseline
    from agents.bc import clone, collect

    env = spec.make()
    try:
        obs, masks, actions = collect(env, make_baseline(ws.teacher, spec.env_id), ws.steps,
                                      seed=seed + TEACHER_SEED_OFFSET)
    finally:
        env.close()
    weights = None
    if ws.rare_weight != 1.0:
        values, counts = np.unique(actions, return_counts=True)
        common = values[int(np.argmax(counts))]
        weights = np.where(actions == common, 1.0, ws.rare_weight)
    nll = clone(model, obs, masks, actions, epochs=ws.epochs, batch_size=ws.batch_size,
                lr=ws.lr, seed=seed, weights=weights)
    return {"teacher": ws.teacher, "decisions": len(actions), "rare_weight": ws.rare_weight,
            "action_counts": {int(a): int(c) for a, c in zip(*np.unique(actions,
                                                                       return_counts=True),
                                                            strict=True)},
            "nll": [round(x, 6) for x in nll]}
