"""A permutation-equivariant actor-critic for "pick one of N slots" decisions.

Scheduling actions choose among interchangeable slots (partitions, replicas, nodes). A plain MLP
over the concatenated observation must learn the same scoring rule once per slot position; here
one small network scores every slot from that slot's features plus the global ones (shared
weights, as Decima scores graph nodes), a separate head scores *reject*, and the critic sees the
global features with mean/max-pooled slot embeddings. Works with sb3-contrib's MaskablePPO and
with :func:`agents.export.export_onnx` (it only uses ``extract_features``, ``mlp_extractor``
and ``action_net``).

Configure it with the observation keys that are per slot (shape ``(N,)``) and global::

    MaskablePPO(SlotScoringPolicy, env, policy_kwargs={
        "item_keys": ["queue", "busy", "finish"], "global_keys": ["model", "sla"]})

:class:`GridScoringPolicy` does the same over the cells of a rows x columns grid (ShardPlacement:
toggle shard ``s`` on node ``n``, the cell ``s * N + n``), each cell seeing its own features,
its row's and its column's, with the extra action (*keep*) first::

    MaskablePPO(GridScoringPolicy, env, policy_kwargs={
        "cell_keys": ["holds", "loading"], "row_keys": ["demand", "replicas"],
        "col_keys": ["queue", "util", "slots", "up"], "global_keys": ["rates"]})
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class SlotFeatures(BaseFeaturesExtractor):
    """Flattens ``[item features (N x F) | global features (G)]`` from a Dict observation."""

    def __init__(self, observation_space: gym.spaces.Dict, item_keys: Sequence[str],
                 global_keys: Sequence[str]) -> None:
        missing = [k for k in (*item_keys, *global_keys) if k not in observation_space.spaces]
        if missing:
            raise ValueError(f"policy_kwargs: observation has no key(s) {missing}; keys: "
                             f"{list(observation_space.spaces)}")
        if not item_keys:
            raise ValueError("policy_kwargs.item_keys: give at least one per-slot key")
        shapes = {k: observation_space.spaces[k].shape for k in item_keys}
        n = {s[0] for s in shapes.values() if s is not None and len(s) == 1}
        if len(n) != 1 or any(s is None or len(s) != 1 for s in shapes.values()):
            raise ValueError(f"policy_kwargs.item_keys must all have one shape (N,), got {shapes}")
        self.n_items = n.pop()
        self.item_keys = list(item_keys)
        self.global_keys = list(global_keys)
        self.n_global = sum(math.prod(observation_space.spaces[k].shape or (1,))
                            for k in global_keys)
        super().__init__(observation_space, self.n_items * len(item_keys) + self.n_global)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N*F + G)``: slot features slot-major, then globals."""
        items = torch.stack([observations[k].float() for k in self.item_keys], dim=-1)
        parts = [items.flatten(1)]
        if self.global_keys:
            parts.append(torch.cat([observations[k].float().flatten(1)
                                    for k in self.global_keys], dim=1))
        return torch.cat(parts, dim=1)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers)


class SlotScorer(nn.Module):
    """The policy/value trunk: per-slot scores (+ reject) and a pooled value latent.

    ``extra_first`` puts the extra (reject/keep) logit before the slots' instead of after.
    ``separate_critic`` gives the value head its own per-slot network (``embed_vf``) instead of
    sharing ``embed`` with the actor, so the value loss does not shape the actor's features.
    """

    def __init__(self, n_items: int, item_dim: int, global_dim: int, hidden: int,
                 extra_first: bool = False, separate_critic: bool = False) -> None:
        super().__init__()
        self.n_items, self.item_dim, self.global_dim = n_items, item_dim, global_dim
        self.extra_first = bool(extra_first)
        self.embed = _mlp([item_dim + global_dim, hidden, hidden])
        self.score = nn.Linear(hidden, 1)
        self.reject = nn.Sequential(_mlp([global_dim + 2 * hidden, hidden]), nn.Linear(hidden, 1))
        self.value = _mlp([global_dim + 2 * hidden, hidden, hidden])
        # Created last and only when asked, so the default network (and its seeded
        # initialisation) is unchanged.
        self.embed_vf = _mlp([item_dim + global_dim, hidden, hidden]) if separate_critic else None
        self.latent_dim_pi = n_items + 1
        self.latent_dim_vf = hidden

    def _trunk(self, features: torch.Tensor,
               embed: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b = features.shape[0]
        n, f = self.n_items, self.item_dim
        items = features[:, : n * f].reshape(b, n, f)
        glob = features[:, n * f:]
        embed = self.embed if embed is None else embed
        h = embed(torch.cat([items, glob.unsqueeze(1).expand(b, n, self.global_dim)], dim=-1))
        pooled = torch.cat([glob, h.mean(dim=1), h.amax(dim=1)], dim=1)
        return h, pooled

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Logits: one per slot, then reject."""
        h, pooled = self._trunk(features)
        if self.extra_first:
            return torch.cat([self.reject(pooled), self.score(h).squeeze(-1)], dim=1)
        return torch.cat([self.score(h).squeeze(-1), self.reject(pooled)], dim=1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """Value latent."""
        _, pooled = self._trunk(features, self.embed_vf)
        return self.value(pooled)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads."""
        return self.forward_actor(features), self.forward_critic(features)


class SlotScoringPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy with :class:`SlotScorer`; actions are ``N`` slots then reject.

    Args:
        item_keys: Observation keys of shape ``(N,)``, one value per slot.
        global_keys: Observation keys describing the request/system as a whole.
        hidden: Width of the shared slot network.
        separate_critic: The value head gets its own slot network instead of sharing the
            actor's (default: shared).
    """

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.Discrete,
                 lr_schedule: Any, item_keys: Sequence[str] = (),
                 global_keys: Sequence[str] = (), hidden: int = 64,
                 separate_critic: bool = False, **kwargs: Any) -> None:
        self.item_keys = list(item_keys)
        self.global_keys = list(global_keys)
        self.hidden = int(hidden)
        self.separate_critic = bool(separate_critic)
        self.n_actions = int(action_space.n)
        kwargs["features_extractor_class"] = SlotFeatures
        kwargs["features_extractor_kwargs"] = {"item_keys": self.item_keys,
                                               "global_keys": self.global_keys}
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fx = self.features_extractor
        assert isinstance(fx, SlotFeatures)
        if self.n_actions != fx.n_items + 1:
            raise ValueError(f"SlotScoringPolicy: {self.n_actions} actions, expected "
                             f"{fx.n_items} slots + reject")
        self.mlp_extractor = SlotScorer(  # type: ignore[assignment]  # same interface
            fx.n_items, len(fx.item_keys), fx.n_global, self.hidden,
            separate_critic=self.separate_critic)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # The scorer already outputs one logit per action.
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]  # Adam by default
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(item_keys=self.item_keys, global_keys=self.global_keys, hidden=self.hidden)
        if self.separate_critic:  # only when set: runs saved before the option load as before
            data["separate_critic"] = True
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        data.pop("net_arch", None)
        return data


class GridFeatures(BaseFeaturesExtractor):
    """Flattens ``[cell features (R*C x F) | global features (G)]`` from a Dict observation
    whose ``cell_keys`` have shape ``(R*C,)`` (cell ``r * C + c``), ``row_keys`` ``(R,)`` and
    ``col_keys`` ``(C,)``: each cell gets its own values, its row's and its column's (the
    layout of :class:`SlotFeatures` with ``R*C`` slots)."""

    def __init__(self, observation_space: gym.spaces.Dict, cell_keys: Sequence[str],
                 row_keys: Sequence[str], col_keys: Sequence[str],
                 global_keys: Sequence[str]) -> None:
        spaces = observation_space.spaces
        missing = [k for k in (*cell_keys, *row_keys, *col_keys, *global_keys)
                   if k not in spaces]
        if missing:
            raise ValueError(f"policy_kwargs: observation has no key(s) {missing}; keys: "
                             f"{list(spaces)}")
        if not row_keys or not col_keys:
            raise ValueError("policy_kwargs: give at least one of row_keys and of col_keys "
                             "(they set the grid's shape)")

        def size(keys: Sequence[str], what: str) -> int:
            shapes = {k: spaces[k].shape for k in keys}
            n = {s[0] for s in shapes.values() if s is not None and len(s) == 1}
            if len(n) != 1 or any(s is None or len(s) != 1 for s in shapes.values()):
                raise ValueError(f"policy_kwargs.{what} must all have one shape (n,), got {shapes}")
            return n.pop()

        self.n_rows, self.n_cols = size(row_keys, "row_keys"), size(col_keys, "col_keys")
        if cell_keys and size(cell_keys, "cell_keys") != self.n_rows * self.n_cols:
            raise ValueError(f"policy_kwargs.cell_keys: expected shape ({self.n_rows} x "
                             f"{self.n_cols},) = ({self.n_rows * self.n_cols},)")
        self.n_items = self.n_rows * self.n_cols
        self.cell_keys, self.row_keys = list(cell_keys), list(row_keys)
        self.col_keys, self.global_keys = list(col_keys), list(global_keys)
        self.item_keys = [*self.cell_keys, *self.row_keys, *self.col_keys]
        self.n_global = sum(math.prod(spaces[k].shape or (1,)) for k in global_keys)
        super().__init__(observation_space, self.n_items * len(self.item_keys) + self.n_global)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, R*C*F + G)``: cell features cell-major, then globals."""
        R, C = self.n_rows, self.n_cols
        rows = torch.stack([observations[k].float() for k in self.row_keys], dim=-1)
        b = rows.shape[0]
        cols = torch.stack([observations[k].float() for k in self.col_keys], dim=-1)
        parts = []
        if self.cell_keys:
            parts.append(torch.stack([observations[k].float() for k in self.cell_keys], dim=-1))
        parts.append(rows.unsqueeze(2).expand(b, R, C, rows.shape[-1]).reshape(b, R * C, -1))
        parts.append(cols.unsqueeze(1).expand(b, R, C, cols.shape[-1]).reshape(b, R * C, -1))
        out = [torch.cat(parts, dim=-1).flatten(1)]
        if self.global_keys:
            out.append(torch.cat([observations[k].float().flatten(1)
                                  for k in self.global_keys], dim=1))
        return torch.cat(out, dim=1)


class GridScoringPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy with :class:`SlotScorer` over the cells of a grid; actions are the
    extra one (ShardPlacement's *keep*) first, then one per cell (:class:`GridFeatures`).

    Args:
        cell_keys: Observation keys of shape ``(R*C,)``, one value per cell.
        row_keys: Keys of shape ``(R,)`` (ShardPlacement: per shard).
        col_keys: Keys of shape ``(C,)`` (per node).
        global_keys: Keys describing the system as a whole.
        hidden: Width of the shared cell network.
        keep_bias: Initial bias of the extra action's logit (a prior for keeping).
    """

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.Discrete,
                 lr_schedule: Any, cell_keys: Sequence[str] = (), row_keys: Sequence[str] = (),
                 col_keys: Sequence[str] = (), global_keys: Sequence[str] = (),
                 hidden: int = 64, keep_bias: float = 0.0, **kwargs: Any) -> None:
        self.cell_keys, self.row_keys = list(cell_keys), list(row_keys)
        self.col_keys, self.global_keys = list(col_keys), list(global_keys)
        self.hidden = int(hidden)
        self.keep_bias = float(keep_bias)
        self.n_actions = int(action_space.n)
        kwargs["features_extractor_class"] = GridFeatures
        kwargs["features_extractor_kwargs"] = {
            "cell_keys": self.cell_keys, "row_keys": self.row_keys, "col_keys": self.col_keys,
            "global_keys": self.global_keys}
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fx = self.features_extractor
        assert isinstance(fx, GridFeatures)
        if self.n_actions != fx.n_items + 1:
            raise ValueError(f"GridScoringPolicy: {self.n_actions} actions, expected 1 + "
                             f"{fx.n_rows} x {fx.n_cols} cells")
        self.mlp_extractor = SlotScorer(  # type: ignore[assignment]  # same interface
            fx.n_items, len(fx.item_keys), fx.n_global, self.hidden, extra_first=True)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the scorer already outputs one logit per action
        scorer = self.mlp_extractor
        assert isinstance(scorer, SlotScorer)
        head = scorer.reject[-1]
        assert isinstance(head, nn.Linear)
        with torch.no_grad():  # after SB3's orthogonal initialisation, which zeroes biases
            head.bias.fill_(self.keep_bias)
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]  # Adam by default
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(cell_keys=self.cell_keys, row_keys=self.row_keys, col_keys=self.col_keys,
                    global_keys=self.global_keys, hidden=self.hidden, keep_bias=self.keep_bias)
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        data.pop("net_arch", None)
        return data
