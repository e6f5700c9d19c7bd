"""Behaviour cloning: warm-start a maskable policy from a heuristic teacher (then PPO).

Small and self-contained (the imitation library's BC in a few lines): roll the teacher out,
record ``(observation, mask, action)``, and minimise the negative log-likelihood of the teacher's
actions under the learner's masked action distribution
(``policy.evaluate_actions(obs, actions, action_masks=...)``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from agents.policy import Policy


def collect(env: gym.Env[Any, Any], teacher: Policy, n_steps: int,
            seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``n_steps`` decisions of ``teacher`` on ``env`` (new episodes from ``seed`` on): stacked
    dict observations, action masks and the teacher's actions.

    Raises:
        ValueError: ``n_steps < 1``.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    obs_l: list[dict[str, np.ndarray]] = []
    masks: list[np.ndarray] = []
    acts: list[int] = []
    ep = seed
    # An oracle teacher (a per-interval hindsight schedule) replays each episode first, as in
    # agents.evaluation.run_episode.
    bind = getattr(teacher, "bind_env", None)
    if callable(bind):
        bind(env, ep)
    obs, _ = env.reset(seed=ep)
    reset = getattr(teacher, "reset", None)
    if reset is not None:
        reset(ep)
    while len(acts) < n_steps:
        mask = np.array(env.unwrapped.action_masks(), dtype=np.bool_)  # type: ignore[attr-defined]
        pred, _ = teacher.predict(obs, deterministic=True, action_masks=mask)
        a = int(np.asarray(pred).reshape(-1)[0])
        obs_l.append({k: np.array(v) for k, v in obs.items()})
        masks.append(mask)
        acts.append(a)
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            ep += 1
            if callable(bind):
                bind(env, ep)
            obs, _ = env.reset(seed=ep)
            if reset is not None:
                reset(ep)
    stacked = {k: np.stack([o[k] for o in obs_l]) for k in obs_l[0]}
    return stacked, np.stack(masks), np.array(acts, dtype=np.int64)


def clone(model: Any, obs: dict[str, np.ndarray], masks: np.ndarray, actions: np.ndarray,
          epochs: int = 5, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
          weights: np.ndarray | None = None) -> list[float]:
    """Fit ``model.policy`` (a MaskablePPO policy) to the teacher's actions; returns the mean
    negative log-likelihood per epoch (weighted by ``weights``, one per decision, where
    given: e.g. more weight on a teacher's rare actions)."""
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != (len(actions),) or not (weights > 0).all():
            raise ValueError(f"weights: expected {len(actions)} positive values, got shape "
                             f"{weights.shape}")
    policy = model.policy
    policy.set_training_mode(True)
    opt = th.optim.Adam(policy.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    n = len(actions)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            ob, _ = policy.obs_to_tensor({k: v[idx] for k, v in obs.items()})
            act = th.as_tensor(actions[idx], device=policy.device)
            _, logp, _ = policy.evaluate_actions(ob, act, action_masks=masks[idx])
            if weights is None:
                loss = -logp.mean()
            else:
                w = th.as_tensor(weights[idx], device=policy.device)
                loss = -(w * logp).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    policy.set_training_mode(False)
    return losses
