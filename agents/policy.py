"""One policy interface for heuristics and learned agents: SB3's ``predict``.

``predict(observation, state=None, episode_start=None, deterministic=True, action_masks=None)``
returns ``(actions, state)``, as Stable-Baselines3 (and sb3-contrib's MaskablePPO, which adds
``action_masks``) do. Observations may be single (a dict of 1-D arrays) or batched (a leading
batch axis); the returned action array has the matching shape. Heuristics read only the
observation and the mask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.sim.device import rules

Obs = dict[str, np.ndarray]


@runtime_checkable
class Policy(Protocol):
    """Anything with SB3's ``predict`` signature (plus ``action_masks``)."""

    def predict(
        self,
        observation: Obs,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for ``observation`` (and the recurrent state, ``None`` here)."""
        ...


class HeuristicPolicy(ABC):
    """Base of the hand-written baselines: batches single decisions through :meth:`act`.

    Subclasses implement :meth:`act` for one observation and its mask.
    """

    #: Short name used in configs, reports and ``agents.baselines.BASELINES``.
    name = "heuristic"

    @abstractmethod
    def act(self, obs: Obs, mask: np.ndarray) -> int:
        """One action for one (unbatched) observation."""

    def reset(self, seed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Forget any per-episode state (called by the harness at each episode start)."""

    def predict(
        self,
        observation: Obs,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3-compatible entry point; see :class:`Policy`."""
        first = next(iter(observation.values()))
        batched = first.ndim == 2
        n_actions = self.n_actions(observation)
        if action_masks is None:
            action_masks = np.ones((first.shape[0], n_actions) if batched else n_actions, bool)
        masks = np.asarray(action_masks, dtype=bool)
        if not batched:
            return np.asarray(self.act(observation, masks)), state
        acts = [
            self.act({k: v[i] for k, v in observation.items()}, masks[i])
            for i in range(first.shape[0])
        ]
        return np.asarray(acts), state

    @staticmethod
    def n_actions(observation: Obs) -> int:
        """Actions in the env: one per partition/replica (``finish`` or ``queue``) + reject."""
        key = "finish" if "finish" in observation else "queue"
        return int(observation[key].shape[-1]) + 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def earliest_or_reject(finish: np.ndarray, mask: np.ndarray, reject_hopeless: bool) -> int:
    """The valid slot with the smallest predicted finish (in units of the SLA).

    With ``reject_hopeless``, rejects (the last action) when even the best finish exceeds the
    SLA and rejecting is allowed; rejects too when no slot is valid.
    """
    return rules.earliest(finish.tolist(), mask.tolist(), reject_hopeless, bool(mask[-1]))


class SeededRng:
    """Mixin for randomised heuristics: their own generator, re-seeded with the episode seed.

    The harness calls ``reset(seed)`` at every episode start, so a randomised baseline draws the
    same choices for the same episode whatever ran before it (no global RNG involved).
    """

    def __init__(self, seed: int | None = 0) -> None:
        #: The policy's own generator (the fast paths draw from it exactly as ``act`` does).
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Re-seed (``None`` keeps the current generator)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)


class SB3Policy:
    """Wraps a trained (Maskable)PPO model in the :class:`Policy` interface."""

    name = "learned"

    def __init__(self, model: Any) -> None:
        self.model = model

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def predict(
        self,
        observation: Obs,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Delegates to the model (passing the mask when the model takes one)."""
        if action_masks is not None and _takes_masks(self.model):
            return self.model.predict(observation, state, episode_start, deterministic,
                                      action_masks=action_masks)
        return self.model.predict(observation, state, episode_start, deterministic)


def _takes_masks(model: Any) -> bool:
    import inspect

    return "action_masks" in inspect.signature(model.predict).parameters
