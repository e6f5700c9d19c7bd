"""Export a trained MaskablePPO policy to ONNX, and check that it picks the same actions.

The exported graph takes one input per observation key (float32, leading batch axis) plus
``action_mask`` (bool) and returns ``action`` (int64, the greedy masked action) and ``logits``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NEG = -1e9


class OnnxablePolicy(torch.nn.Module):
    """The deterministic, masked actor of an SB3 actor-critic policy as a plain module."""

    def __init__(self, policy: Any, keys: Sequence[str], normalizer: Any | None = None) -> None:
        """``normalizer``: an :class:`agents.normalize.ObsNormalizer` (a run trained with
        VecNormalize) whose frozen statistics become part of the graph, so that the exported
        policy still takes raw observations."""
        super().__init__()
        self.policy = policy
        self.keys = list(keys)
        self.norm_keys = [k for k in self.keys if normalizer is not None and k in normalizer.mean]
        self.clip = float(normalizer.clip_obs) if normalizer is not None else 0.0
        for i, key in enumerate(self.norm_keys):
            mean, scale = normalizer.float32_stats(key)  # type: ignore[union-attr]
            self.register_buffer(f"norm_mean_{i}", torch.as_tensor(mean))
            self.register_buffer(f"norm_scale_{i}", torch.as_tensor(scale))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` = observation tensors in :attr:`keys` order, then the action mask."""
        obs = dict(zip(self.keys, inputs[:-1], strict=True))
        for i, key in enumerate(self.norm_keys):
            scaled = (obs[key] - getattr(self, f"norm_mean_{i}")) / getattr(
                self, f"norm_scale_{i}")
            obs[key] = torch.clamp(scaled, -self.clip, self.clip)
        mask = inputs[-1]
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        latent = self.policy.mlp_extractor.forward_actor(features)
        logits = self.policy.action_net(latent)
        logits = torch.where(mask, logits, torch.full_like(logits, _NEG))
        return torch.argmax(logits, dim=-1), logits


def export_onnx(model: Any, path: str | Path) -> Path:
    """Write ``model``'s policy (an SB3/sb3-contrib algorithm) to ``path`` as ONNX.

    A model wrapped in :class:`agents.normalize.NormalizedModel` is exported with its
    observation normalisation inside the graph (the inputs stay raw observations); an
    :class:`agents.ensemble.EnsembleModel` as one graph of all its members (the same inputs and
    outputs).
    """
    from agents.ensemble import EnsembleModel

    space = model.observation_space
    keys = list(space.spaces.keys())
    n_actions = int(model.action_space.n)
    dummy = [torch.zeros((2, *space[k].shape), dtype=torch.float32) for k in keys]
    mask = torch.ones((2, n_actions), dtype=torch.bool)
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} for _ in [*keys, "action_mask"])
    path = Path(path)
    for name in ("torch.onnx", "onnxscript", "onnx_ir"):  # chatty INFO/"no torchvision" notes
        logging.getLogger(name).setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = (model.actor if isinstance(model, EnsembleModel) else OnnxablePolicy(
            model.policy.to("cpu").eval(), keys, getattr(model, "obs_normalizer", None)))
        program = torch.onnx.export(
            module,
            (*dummy, mask),
            input_names=[*keys, "action_mask"],
            output_names=["action", "logits"],
            dynamic_shapes=(dynamic,),
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    tmp = path.with_name(f".{path.name}.tmp")
    program.save(str(tmp))  # then rename: a crash never leaves a half-written policy.onnx
    os.replace(tmp, path)
    return path


class OnnxPolicy:
    """A :class:`~agents.policy.Policy` backed by an exported ONNX file (onnxruntime, CPU)."""

    name = "onnx"

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.keys = [i.name for i in self.session.get_inputs() if i.name != "action_mask"]

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        """Greedy masked action(s), like ``MaskablePPO.predict(deterministic=True)``."""
        rank = len(self.session.get_inputs()[0].shape)
        batched = np.ndim(observation[self.keys[0]]) == rank
        feeds = {}
        for k in self.keys:
            arr = np.asarray(observation[k], dtype=np.float32)
            feeds[k] = arr if batched else arr[None]
        n = feeds[self.keys[0]].shape[0]
        if action_masks is None:
            n_actions = int(self.session.get_outputs()[1].shape[-1])
            mask = np.ones((n, n_actions), dtype=bool)
        else:
            mask = np.asarray(action_masks, dtype=bool).reshape(n, -1)
        feeds["action_mask"] = mask
        action = self.session.run(["action"], feeds)[0]
        return (action if batched else action[0]), state


def parity(model: Any, onnx_path: str | Path, observations: dict[str, np.ndarray],
           masks: np.ndarray) -> float:
    """Fraction of ``observations`` (batched) on which ONNX and torch pick the same action."""
    torch_actions, _ = model.predict(observations, deterministic=True, action_masks=masks)
    onnx_actions, _ = OnnxPolicy(onnx_path).predict(observations, action_masks=masks)
    return float(np.mean(np.asarray(torch_actions) == np.asarray(onnx_actions)))
