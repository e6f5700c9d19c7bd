"""Vectorised training environments whose crashes name the env and its seed.

``SubprocVecEnv`` runs each env in a worker process; when an env raises there, the worker dies
with a traceback of its own and the trainer sees only ``EOFError`` or a broken pipe. Here every
env is wrapped in :class:`CrashReport`: an exception in ``reset``/``step`` becomes
:class:`EnvCrash` naming the env id, the worker index and its seed. In a worker process the
message is written to a file the parent reads and the worker exits quietly; the parent's
:meth:`TrainingEnvs.crash` turns the broken connection into that message.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym


class EnvCrash(RuntimeError):
    """An environment raised during training (the message names the env and its seed)."""


class CrashReport(gym.Wrapper[Any, Any, Any, Any]):
    """Names the env, its worker and its seed in any exception from ``reset``/``step``."""

    def __init__(self, env: gym.Env[Any, Any], env_id: str, index: int, seed: int | None,
                 report_dir: str | None = None) -> None:
        super().__init__(env)
        self.env_id, self.index, self.seed = env_id, index, seed
        self.report_dir = report_dir

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if kwargs.get("seed") is not None:
            self.seed = int(kwargs["seed"])
        try:
            return self.env.reset(**kwargs)
        except Exception as exc:
            self._crash(exc, "reset")

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        try:
            return self.env.step(action)
        except Exception as exc:
            self._crash(exc, "step")

    def _crash(self, exc: Exception, where: str) -> NoReturn:
        text = " ".join(str(exc).split()) or type(exc).__name__
        message = (f"env {self.env_id} (worker {self.index}, seed {self.seed}) raised in "
                   f"{where}: {type(exc).__name__}: {text}")
        if self.report_dir is not None and mp.parent_process() is not None:
            Path(self.report_dir, f"worker-{self.index}.txt").write_text(message + "\n")
            raise SystemExit(1)  # the worker ends quietly; the parent reports the message
        raise EnvCrash(message) from exc


class TrainingEnvs:
    """``n_envs`` copies of an env in a ``DummyVecEnv`` or ``SubprocVecEnv``, each wrapped in
    :class:`CrashReport`; env ``i`` is seeded with ``seed + i`` (as SB3's ``make_vec_env``)."""

    def __init__(self, make: Callable[[], gym.Env[Any, Any]], env_id: str, n_envs: int,
                 seed: int, subproc: bool = False, start_method: str | None = None) -> None:
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        self.report_dir = tempfile.mkdtemp(prefix="ldsgym-workers-") if subproc else None
        fns: list[Callable[[], gym.Env[Any, Any]]] = [
            functools.partial(_build, make, env_id, i, seed + i, self.report_dir)
            for i in range(n_envs)]
        self.vec_env: Any = (SubprocVecEnv(fns, start_method=start_method) if subproc
                             else DummyVecEnv(fns))
        self.vec_env.seed(seed)  # env i: seed + i at its first reset

    def crash(self, exc: BaseException) -> EnvCrash:
        """The :class:`EnvCrash` behind a broken worker connection ``exc``."""
        found = []
        if self.report_dir is not None:
            found = [p.read_text().strip() for p in sorted(Path(self.report_dir).glob("*.txt"))]
        return EnvCrash(found[0] if found else
                        f"a SubprocVecEnv worker died ({type(exc).__name__}: {exc})")

    def close(self) -> None:
        """Close the envs (their workers) and remove the report folder."""
        try:
            self.vec_env.close()
        except (EOFError, OSError):
            pass  # a worker already died
        if self.report_dir is not None:
            shutil.rmtree(self.report_dir, ignore_errors=True)


def _build(make: Callable[[], gym.Env[Any, Any]], env_id: str, index: int, seed: int,
           report_dir: str | None) -> gym.Env[Any, Any]:
    """One training env, as ``make_vec_env`` builds it (``Monitor`` for episode statistics),
    inside :class:`CrashReport`. In a worker process SIGINT is ignored: Ctrl-C reaches the whole
    process group, and the trainer, not its workers, decides how to stop (it saves a
    checkpoint, then closes them)."""
    from stable_baselines3.common.monitor import Monitor

    if report_dir is not None and mp.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return CrashReport(Monitor(make()), env_id, index, seed, report_dir)
