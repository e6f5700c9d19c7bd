"""Wrappers for agents that do not read the action mask."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class NearestValidAction(gym.ActionWrapper[Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Replaces a masked action by the next valid one (cyclically, by index) and counts it.

    The environments themselves refuse masked actions (:mod:`envs.actions`); this wrapper is the
    explicit, opt-in substitute for agents without masking (plain PPO/DQN) and for checkers that
    sample from the whole action space. ``info["substituted_actions"]`` counts substitutions
    since the last reset.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        self.substituted = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.substituted = 0
        return self.env.reset(**kwargs)

    def action(self, action: Any) -> int:
        a = int(action)
        mask = np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)
        if 0 <= a < len(mask) and mask[a]:
            return a
        self.substituted += 1
        valid = np.flatnonzero(mask)
        later = valid[valid >= a]
        return int(later[0]) if len(later) else int(valid[0])

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        return obs, float(reward), terminated, truncated, {
            **info, "substituted_actions": self.substituted}

    def action_masks(self) -> np.ndarray:
        """The wrapped env's mask (for masked agents that still see this wrapper)."""
        return np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)
