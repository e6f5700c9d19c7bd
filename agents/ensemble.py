"""Several trained policies acting as one: the mean of their masked action probabilities.

An :class:`EnsembleModel` holds K trained (Maskable)PPO models of the same environment. At each
decision every member's actor gives its masked action distribution (logits of masked actions
set to a large negative number, then softmax); the ensemble's distribution is their mean, its
greedy action the argmax of that mean (the first of equal values, as ``torch.argmax``). Issue
[N]: one training seed's policy passes or fails the goal by chance; the mean of three seeds'
policies fails far less often (README, "*An ensemble of training seeds*").

The same module (:class:`EnsembleActor`) computes the torch actions and is exported to ONNX as
one graph (:func:`agents.export.export_onnx`), with the inputs and outputs of a single
policy's graph (``logits`` = log of the mean probabilities, masked actions at ``-1e9``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from agents.export import OnnxablePolicy

_NEG = -1e9
#: Floor of a probability before its log (a valid action's mean probability that underflows).
_TINY = 1e-30


class EnsembleActor(torch.nn.Module):
    """The members' deterministic masked actors as one module: ``(action, logits)``."""

    def __init__(self, policies: Sequence[Any], keys: Sequence[str]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(OnnxablePolicy(p, keys) for p in policies)
        self.keys = list(keys)

    def probabilities(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Mean of the members' masked action probabilities; ``inputs`` as :meth:`forward`."""
        probs = [torch.softmax(member(*inputs)[1], dim=-1) for member in self.members]
        return torch.stack(probs).mean(dim=0)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` = observation tensors in :attr:`keys` order, then the action mask."""
        probs = self.probabilities(*inputs)
        mask = inputs[-1]
        logits = torch.where(mask, torch.log(probs.clamp_min(_TINY)),
                             torch.full_like(probs, _NEG))
        return torch.argmax(probs, dim=-1), logits


class EnsembleModel:
    """K trained models acting by the mean of their masked action probabilities.

    Offers what the pipeline uses of an SB3 model: ``predict`` (SB3's signature, with
    ``action_masks``), ``observation_space``, ``action_space``; :func:`agents.export.export_onnx`
    writes it as one graph. It cannot be trained further.

    Raises:
        ValueError: no members, or members of different observation/action spaces.
    """

    def __init__(self, models: Sequence[Any]) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = models[0]
        for m in models[1:]:
            if (m.observation_space != first.observation_space
                    or m.action_space != first.action_space):
                raise ValueError("ensemble members differ in their observation or action space")
        self.models = list(models)
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.keys = list(self.observation_space.spaces.keys())
        self.actor = EnsembleActor([m.policy.to("cpu").eval() for m in self.models],
                                   self.keys).eval()

    def __len__(self) -> int:
        return len(self.models)

    def _inputs(self, observation: dict[str, np.ndarray],
                action_masks: np.ndarray | None) -> tuple[list[torch.Tensor], bool]:
        """Observation tensors (batched) + the mask, and whether the input was batched."""
        key = self.keys[0]
        batched = np.ndim(observation[key]) == len(self.observation_space[key].shape) + 1
        obs = [torch.as_tensor(np.asarray(observation[k], dtype=np.float32)) for k in self.keys]
        if not batched:
            obs = [t.unsqueeze(0) for t in obs]
        n, n_actions = obs[0].shape[0], int(self.action_space.n)
        mask = (np.ones((n, n_actions), dtype=bool) if action_masks is None
                else np.asarray(action_masks, dtype=bool).reshape(n, n_actions))
        return [*obs, torch.as_tensor(mask)], batched

    def action_probabilities(self, observation: dict[str, np.ndarray],
                             action_masks: np.ndarray | None = None) -> np.ndarray:
        """The ensemble's masked action distribution(s), shape ``(batch, actions)``."""
        inputs, _ = self._inputs(observation, action_masks)
        with torch.no_grad():
            return self.actor.probabilities(*inputs).numpy()

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Greedy (``deterministic``) or sampled action(s) of the mean distribution."""
        inputs, batched = self._inputs(observation, action_masks)
        with torch.no_grad():
            if deterministic:
                actions = self.actor(*inputs)[0]
            else:
                probs = self.actor.probabilities(*inputs)
                actions = torch.multinomial(probs, 1).squeeze(-1)
        out = actions.numpy().astype(np.int64)
        return (out if batched else out[0]), state
