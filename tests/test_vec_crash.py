"""A training env that raises is reported with its env id, worker and seed, in one process or
in SubprocVecEnv workers."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agents.vec import EnvCrash, TrainingEnvs


class Boom(gym.Env[np.ndarray, int]):
    """Raises on its third step."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        if self.t == 3:
            raise ValueError("queue length went negative")
        return np.zeros(2, dtype=np.float32), 0.0, False, False, {}


def test_crash_in_one_process_names_env_worker_and_seed() -> None:
    envs = TrainingEnvs(Boom, "test/Boom-v0", 2, seed=5)
    envs.vec_env.reset()
    envs.vec_env.step(np.array([0, 1]))
    envs.vec_env.step(np.array([0, 1]))
    with pytest.raises(EnvCrash, match=r"env test/Boom-v0 \(worker 0, seed 5\) raised in step: "
                                       r"ValueError: queue length went negative"):
        envs.vec_env.step(np.array([0, 1]))
    envs.close()


@pytest.mark.expensive  # starts two worker processes (~10 s)
def test_crash_in_a_subprocess_worker_names_env_worker_and_seed() -> None:
    envs = TrainingEnvs(Boom, "test/Boom-v0", 2, seed=7, subproc=True)
    envs.vec_env.reset()
    with pytest.raises((EOFError, BrokenPipeError, ConnectionError)) as info:
        for _ in range(3):
            envs.vec_env.step(np.array([0, 1]))
    crash = envs.crash(info.value)
    assert str(crash).startswith("env test/Boom-v0 (worker ")
    assert "seed 7)" in str(crash) or "seed 8)" in str(crash)
    assert "ValueError: queue length went negative" in str(crash)
    envs.close()
