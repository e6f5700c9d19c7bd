"""RLlib adapter (extra ``ldsgym[rllib]``): PPO on every ``ldsgym/`` environment, with masks.

RLlib's default encoders take flat Box observations and know nothing of ``action_masks()``.
Three pieces bridge that, all of RLlib's own kinds (new API stack):

- :func:`register_envs`: an env creator per registered ``ldsgym/`` id (``tune.register_env``),
  whose env is wrapped by :class:`MaskInObservation`: the env's Dict observation plus its mask
  under ``action_mask``.
- :class:`FlattenMaskedObservations`: an env-to-module connector (RLlib's
  ``FlattenObservations``) that flattens every key but the mask, giving
  ``{"action_mask": Box(n), "observations": Box(d)}``.
- :class:`ActionMaskingTorchRLModule`: RLlib's PPO torch module whose logits of masked actions
  are pushed to the float minimum at inference, exploration and training.

:func:`ppo_config` puts them together::

    from agents.rllib import ppo_config
    algo = ppo_config("ldsgym/PartitionPlacement-v0", {"episode_queries": 200}).build_algo()
    print(algo.train()["env_runners"]["episode_return_mean"])

Ray and RLlib are imported by this module only; nothing else in the project needs them.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.connectors.common.flatten_observations import (
    FlattenObservations as _FlattenObservations,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.numpy import flatten_inputs_to_1d_tensor
from ray.rllib.utils.torch_utils import FLOAT_MIN
from ray.tune.registry import register_env

from agents.evaluation import masks_of

MASK_KEY = "action_mask"
OBS_KEY = "observations"


class MaskInObservation(gym.ObservationWrapper[dict[str, np.ndarray], Any, dict[str, np.ndarray]]):
    """Adds the valid-action mask (``env.action_masks()``, float 0/1) to a Dict observation."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Dict):
            raise TypeError(f"{env.spec.id if env.spec else env}: needs a Dict observation space")
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError("action masking needs a Discrete action space")
        if MASK_KEY in env.observation_space.spaces:
            raise ValueError(f"observation already has a key '{MASK_KEY}'")
        n = int(env.action_space.n)
        self.observation_space = spaces.Dict({  # type: ignore[assignment]
            **env.observation_space.spaces,
            MASK_KEY: spaces.Box(0.0, 1.0, (n,), np.float32)})

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The observation with the mask of the decision it asks for."""
        return {**observation, MASK_KEY: masks_of(self.env).astype(np.float32)}


def make_env(env_id: str, config: dict[str, Any] | None = None) -> gym.Env[Any, Any]:
    """An ``ldsgym/`` environment built with ``config`` as its kwargs, mask in observation."""
    import envs  # noqa: F401  (registers the ldsgym/ namespace)

    return MaskInObservation(gym.make(env_id, **dict(config or {})))


def register_envs() -> list[str]:
    """Register an RLlib env creator under every ``ldsgym/`` id; returns the ids.

    ``AlgorithmConfig.environment("ldsgym/...", env_config={...})`` then builds the env with
    ``env_config`` as its kwargs (e.g. ``{"load": 1.2, "episode_queries": 500}``).
    """
    import envs

    ids = envs.registered_ids()
    for env_id in ids:
        register_env(env_id, functools.partial(_creator, env_id))
    return ids


def _creator(env_id: str, env_config: Any) -> gym.Env[Any, Any]:
    return make_env(env_id, dict(env_config or {}))


class FlattenMaskedObservations(_FlattenObservations):
    """RLlib's ``FlattenObservations`` for every key but ``action_mask``, which is kept apart:
    ``{"action_mask": ..., "observations": <1-D float32>}`` for the masking RLModule."""

    def __init__(self, input_observation_space: gym.Space[Any] | None = None,
                 input_action_space: gym.Space[Any] | None = None, **kwargs: Any) -> None:
        kwargs.pop("keys_to_remove", None)
        super().__init__(input_observation_space, input_action_space,
                         keys_to_remove=[MASK_KEY], as_learner_connector=False, **kwargs)

    def recompute_output_observation_space(self, input_observation_space: gym.Space[Any],
                                           input_action_space: gym.Space[Any]) -> gym.Space[Any]:
        """``Dict(action_mask=<the mask's Box>, observations=<flat Box>)``."""
        flat = super().recompute_output_observation_space(input_observation_space,
                                                          input_action_space)
        assert isinstance(input_observation_space, spaces.Dict)  # checked by the base class
        return spaces.Dict({MASK_KEY: input_observation_space[MASK_KEY], OBS_KEY: flat})

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict[str, Any] | None = None,
                 **kwargs: Any) -> Any:
        """Rewrite the newest observation of every episode that stepped (in place)."""
        for episode in self.single_agent_episode_iterator(episodes,
                                                          agents_that_stepped_only=True):
            last = episode.get_observations(-1)
            rest = {k: v for k, v in last.items() if k != MASK_KEY}
            flat = flatten_inputs_to_1d_tensor(rest, self._input_obs_base_struct,
                                               batch_axis=False)
            episode.set_observations(at_indices=-1, new_data={
                MASK_KEY: np.asarray(last[MASK_KEY], np.float32),
                OBS_KEY: np.asarray(flat, np.float32)})
            episode.observation_space = self.observation_space
        return batch


class ActionMaskingTorchRLModule(DefaultPPOTorchRLModule):
    """PPO's default torch module over ``observations``, with masked logits.

    Expects the observation space ``Dict(action_mask=Box(n), observations=Box(d))`` that
    :class:`FlattenMaskedObservations` produces; the networks are built for ``observations``
    alone. Masked logits get ``FLOAT_MIN`` added (``log(0)`` clamped), so masked actions are
    never sampled and carry no probability mass in the PPO loss.
    """

    def __init__(self, *, observation_space: gym.Space[Any] | None = None,
                 **kwargs: Any) -> None:
        if not (isinstance(observation_space, spaces.Dict)
                and {MASK_KEY, OBS_KEY} <= set(observation_space.spaces)):
            raise ValueError(f"ActionMaskingTorchRLModule needs Dict({MASK_KEY}=..., "
                             f"{OBS_KEY}=...) observations (add FlattenMaskedObservations), "
                             f"got {observation_space}")
        self.observation_space_with_mask = observation_space
        super().__init__(observation_space=observation_space[OBS_KEY], **kwargs)

    def setup(self) -> None:
        """Build PPO's encoder and heads on the flat observations, then expose the full space."""
        super().setup()
        self.observation_space = self.observation_space_with_mask

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Inference and exploration: PPO's forward pass, then the mask."""
        mask, batch = self._split(batch)
        return self._mask(super()._forward(batch, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Training: PPO's forward pass (logits, embeddings), then the mask."""
        if isinstance(batch[Columns.OBS], dict):
            mask, batch = self._split(batch)
            batch[MASK_KEY] = mask
        return self._mask(super()._forward_train(batch, **kwargs), batch[MASK_KEY])

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        """Values of the flat observations (the caller's batch is left as it is)."""
        if isinstance(batch[Columns.OBS], dict):
            _mask, batch = self._split(batch)
        return super().compute_values(batch, embeddings)

    @staticmethod
    def _split(batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        obs = batch[Columns.OBS]
        batch = {**batch, Columns.OBS: obs[OBS_KEY]}
        return obs[MASK_KEY], batch

    @staticmethod
    def _mask(out: dict[str, Any], mask: Any) -> dict[str, Any]:
        inf_mask = torch.clamp(torch.log(mask), min=FLOAT_MIN)
        out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + inf_mask
        return out


def _flatten_connector(env: Any = None, spaces_: Any = None,
                       device: Any = None) -> FlattenMaskedObservations:
    """``env_to_module_connector`` factory: RLlib passes the (single) env spaces."""
    if spaces_ and "__env_single__" in spaces_:
        obs_space, act_space = spaces_["__env_single__"]
    else:
        obs_space, act_space = env.single_observation_space, env.single_action_space
    return FlattenMaskedObservations(obs_space, act_space)


def ppo_config(env_id: str, env_config: dict[str, Any] | None = None, *,
               hidden: tuple[int, ...] = (64, 64), seed: int = 0) -> Any:
    """RLlib ``PPOConfig`` for an ``ldsgym/`` env: masks in the observation, the flatten
    connector, the masking module. Tune it further with the usual ``.training(...)``,
    ``.env_runners(...)`` calls.

    Raises:
        ValueError: ``env_id`` is not a registered ``ldsgym/`` id.
    """
    ids = register_envs()
    if env_id not in ids:
        raise ValueError(f"unknown environment '{env_id}'; registered: {', '.join(ids)}")
    return (
        PPOConfig()
        .environment(env_id, env_config=dict(env_config or {}))
        .framework("torch")
        .env_runners(env_to_module_connector=_flatten_connector)
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=ActionMaskingTorchRLModule,
            model_config={"fcnet_hiddens": list(hidden), "head_fcnet_hiddens": list(hidden),
                          "vf_share_layers": False}))
        .debugging(seed=seed)
    )


__all__ = ["MASK_KEY", "OBS_KEY", "ActionMaskingTorchRLModule", "FlattenMaskedObservations",
           "MaskInObservation", "make_env", "ppo_config", "register_envs"]
