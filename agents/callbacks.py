"""Stable-Baselines3 callbacks: scheduling metrics to TensorBoard under ``sched/`` and ``hw/``;
resumable checkpoints."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

#: info key -> TensorBoard tag, logged (as a mean over the episodes that ended) every rollout.
SCALARS = {
    "sla_attainment": "sched/sla_attainment",
    "goodput": "sched/goodput",
    "p50_latency_ms": "sched/p50_latency_ms",
    "p99_latency_ms": "sched/p99_latency_ms",
    "dropped": "sched/dropped",
    "completed": "sched/completed",
    "utilization": "hw/utilization",
    "energy_per_query_j": "hw/energy_per_query_j",
}


class SchedMetricsCallback(BaseCallback):
    """Records the episode metrics that environments put in ``info`` when an episode ends."""

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.episodes = 0

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos", [])
        dones = self.locals.get("dones", [])
        for info, done in zip(infos, dones, strict=False):
            if not done:
                continue
            self.episodes += 1
            for key, tag in SCALARS.items():
                if key in info:
                    self.logger.record_mean(tag, float(info[key]))
        return True


class Checkpointer(CheckpointCallback):
    """SB3's :class:`CheckpointCallback` keeping one resumable checkpoint, written atomically.

    Every ``save_freq`` calls (``every_steps // n_envs``) and whenever :meth:`save_now` is
    called, ``<save_path>/model.zip`` (and ``vecnormalize.pkl`` when the env is normalised)
    is replaced by the current model, then ``state.json`` (the step count) and ``rng.pt`` (the
    torch, NumPy and ``random`` generator states). A file is written under a temporary name and
    renamed, so an interruption at any moment leaves the previous checkpoint whole.

    Training stops at the next environment step after :meth:`request_stop` (e.g. from a signal
    handler): the callback saves a checkpoint and returns ``False``, which ends ``learn``.

    A checkpoint holds the learner as it was when the rollout in progress began: on-policy
    algorithms change their weights only between rollouts, and a partial rollout is not saved
    (SB3 keeps no rollout buffer in ``model.zip``), so its steps are not counted either. The
    step count of a resumed run, and its TensorBoard steps, continue from that rollout's start.
    """

    def __init__(self, save_freq: int, save_path: str | Path, state: dict[str, Any] | None = None,
                 verbose: int = 0) -> None:
        """
        Args:
            save_freq: Save every this many calls (one call = one step of every env); 0 = only
                through :meth:`save_now` and :meth:`request_stop`.
            save_path: The checkpoint folder.
            state: Extra entries for ``state.json`` (e.g. how often the run was resumed).
        """
        super().__init__(save_freq=int(save_freq), save_path=str(save_path),
                         name_prefix="model", save_vecnormalize=True, verbose=verbose)
        self.state = dict(state or {})
        self.stop_requested = False
        self.saved_at: int | None = None
        self._rollout_start: int | None = None

    def _on_rollout_start(self) -> None:
        self._rollout_start = int(self.model.num_timesteps)

    def request_stop(self) -> None:
        """Save and stop at the next step (safe to call from a signal handler)."""
        self.stop_requested = True

    def _on_step(self) -> bool:
        if self.stop_requested:
            self.save_now()
            return False
        if self.save_freq > 0 and self.n_calls % self.save_freq == 0:
            self.save_now()
        return True

    def save_now(self) -> Path:
        """Write the checkpoint now; returns its folder."""
        import torch

        folder = Path(self.save_path)
        folder.mkdir(parents=True, exist_ok=True)
        now = int(self.model.num_timesteps)
        steps = now if self._rollout_start is None else self._rollout_start
        self.model.num_timesteps = steps  # the learner as at the rollout's start (see above)
        try:
            replace_file(folder / "model.zip", lambda tmp: self.model.save(tmp))
        finally:
            self.model.num_timesteps = now
        vec_norm = self.model.get_vec_normalize_env()
        if vec_norm is not None:
            replace_file(folder / "vecnormalize.pkl", lambda tmp: vec_norm.save(tmp))
        replace_file(folder / "rng.pt", lambda tmp: torch.save(rng_state(), tmp))
        state = {**self.state, "num_timesteps": steps}
        replace_file(folder / "state.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(state) + "\n"))
        self.saved_at = steps
        return folder


def rng_state() -> dict[str, Any]:
    """The torch, NumPy (global) and ``random`` generator states of this process."""
    import torch

    # SB3 draws minibatch orders from NumPy's global generator: it is part of the state.
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),  # noqa: NPY002
            "random": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["random"])


def replace_file(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` then rename ``tmp`` over ``path`` (same folder, so the rename is atomic).

    The temporary name keeps ``path``'s suffix: SB3's ``save`` appends ``.zip`` otherwise.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SelectBest(BaseCallback):
    """Keeps the policy weights that score best on validation (checkpoint selection).

    Every ``every_steps`` training steps from ``start_step`` (checked at the start of a
    rollout, when an on-policy learner's weights have just been updated) ``score(model)`` is
    called; it returns ``(score,
    details)``, higher is better. The weights of the best check so far (the first of equal
    scores) are kept in memory; :meth:`finish` scores the final weights too (unless the last
    check was at the same step) and loads the best ones into the model. ``on_check(record,
    is_best)`` is called after every check (e.g. to persist the history and the best weights).
    """

    def __init__(self, every_steps: int, score: Callable[[Any], tuple[float, dict[str, Any]]],
                 on_check: Callable[[dict[str, Any], bool], None] | None = None,
                 history: list[dict[str, Any]] | None = None,
                 best_state: dict[str, Any] | None = None, start_step: int = 0,
                 verbose: int = 0) -> None:
        """
        Args:
            every_steps: Steps between checks (>= 1).
            score: The validation score of a model, and what to record beside it.
            on_check: Called with each check's record and whether it is the best so far.
            history: Checks of an earlier, interrupted part of the run (resume).
            best_state: The best weights of that part (``policy.state_dict()``).
            start_step: The first check's step (0: ``every_steps``).
        """
        super().__init__(verbose)
        self.every_steps = int(every_steps)
        self.score_fn = score
        self.on_check = on_check
        self.history: list[dict[str, Any]] = list(history or [])
        self.best_state = best_state
        self.best: dict[str, Any] | None = (max(self.history, key=lambda r: r["score"])
                                            if self.history and best_state is not None else None)
        self.next_at = (max(r["step"] for r in self.history) + self.every_steps
                        if self.history else start_step or self.every_steps)

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self.next_at:
            self.check()
            self.next_at = self.model.num_timesteps + self.every_steps

    def _on_step(self) -> bool:
        return True

    def check(self) -> dict[str, Any]:
        """Score the current weights now; returns the check's record."""
        import copy
        import time

        t0 = time.perf_counter()
        value, details = self.score_fn(self.model)
        record = {"step": int(self.model.num_timesteps), "score": float(value),
                  "seconds": round(time.perf_counter() - t0, 2), **details}
        self.history.append(record)
        is_best = self.best is None or record["score"] > self.best["score"]
        if is_best:
            self.best = record
            self.best_state = copy.deepcopy(self.model.policy.state_dict())
        logger = getattr(self.model, "_logger", None)  # none before learn() sets one
        if logger is not None:
            logger.record("select/score", float(value))
        if self.verbose:
            print(f"select: step {record['step']:,} score {value:+.4f}"
                  f"{' (best)' if is_best else ''}")
        if self.on_check is not None:
            self.on_check(record, is_best)
        return record

    def finish(self, model: Any) -> dict[str, Any]:
        """Score the final weights (if not just checked) and load the best into ``model``;
        returns the best check's record."""
        self.model = model
        if not self.history or self.history[-1]["step"] != int(model.num_timesteps):
            self.check()
        assert self.best is not None and self.best_state is not None
        model.policy.load_state_dict(self.best_state)
        return self.best
