"""Observation normalisation learned during training (SB3 ``VecNormalize``), outside the VecEnv.

A run trained with ``VecNormalize`` saves its statistics as ``vecnormalize.pkl`` beside
``model.zip`` (the rl-baselines3-zoo convention). Evaluation, the ONNX export and its parity
check read raw observations from plain environments, so they need the same transform applied
outside any VecEnv: :class:`ObsNormalizer` is that transform (pure numpy, the statistics frozen),
and :class:`NormalizedModel` wraps a trained model so that ``predict`` sees normalised input.
Rewards are normalised during training only; nothing here touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

#: File name of the saved statistics in a run folder.
VECNORMALIZE_FILE = "vecnormalize.pkl"


@dataclass(frozen=True)
class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` per observation key.

    Keys without statistics pass through unchanged (``VecNormalize(norm_obs_keys=...)``).
    """

    mean: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    clip_obs: float
    epsilon: float

    @classmethod
    def from_vec_normalize(cls, vec_normalize: Any) -> ObsNormalizer:
        """The frozen statistics of an SB3 ``VecNormalize`` over a Dict observation space.

        Raises:
            ValueError: it does not normalise observations, or the space is not a Dict.
        """
        if not vec_normalize.norm_obs:
            raise ValueError("VecNormalize was built with norm_obs=False: nothing to apply")
        rms = vec_normalize.obs_rms
        if not isinstance(rms, dict):
            raise ValueError("only Dict observation spaces are supported")
        keys = vec_normalize.norm_obs_keys
        return cls(
            mean={k: np.asarray(rms[k].mean, dtype=np.float64) for k in keys},
            var={k: np.asarray(rms[k].var, dtype=np.float64) for k in keys},
            clip_obs=float(vec_normalize.clip_obs),
            epsilon=float(vec_normalize.epsilon),
        )

    def __call__(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalised copy of a single or batched Dict observation (float32, like the space)."""
        out = {}
        for key, value in observation.items():
            if key in self.mean:
                mean, scale = self.float32_stats(key)
                scaled = (np.asarray(value, np.float32) - mean) / scale
                out[key] = np.clip(scaled, np.float32(-self.clip_obs), np.float32(self.clip_obs))
            else:
                out[key] = value
        return out

    def float32_stats(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, sqrt(var + epsilon))`` of ``key`` in float32, as the ONNX graph holds them
        (the same float32 operations on both sides, so torch and ONNX agree exactly)."""
        mean = self.mean[key].astype(np.float32)
        scale = np.sqrt(self.var[key] + self.epsilon).astype(np.float32)
        return mean, scale


class NormalizedModel:
    """A trained SB3 model whose ``predict`` normalises observations first.

    Everything else (``policy``, ``observation_space``, ``action_space``, ``save``...) is the
    wrapped model's; :attr:`obs_normalizer` tells the ONNX export what to put in the graph.
    """

    def __init__(self, model: Any, normalizer: ObsNormalizer) -> None:
        self.model = model
        self.obs_normalizer = normalizer

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The model's ``predict`` on the normalised observation (masks passed through)."""
        obs = self.obs_normalizer(observation)
        if action_masks is None:
            return self.model.predict(obs, state, episode_start, deterministic)
        return self.model.predict(obs, state, episode_start, deterministic,
                                  action_masks=action_masks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def load_normalizer(path: str | Path,
                    make_env: Callable[[], gym.Env[Any, Any]]) -> ObsNormalizer | None:
    """Read ``vecnormalize.pkl`` and check it against the environment's observation space;
    ``None`` when it normalised rewards only.

    Raises:
        ValueError: the statistics do not fit the environment (another env or layout).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([make_env])
    try:
        vec_normalize = VecNormalize.load(str(path), venv)
    except (AssertionError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: does not match the environment ({exc})") from None
    finally:
        venv.close()
    if not vec_normalize.norm_obs:
        return None
    return ObsNormalizer.from_vec_normalize(vec_normalize)
