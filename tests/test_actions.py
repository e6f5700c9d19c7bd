"""One rule for actions in every registered env: a masked, out-of-range or non-integer action
raises ValueError and changes nothing; the opt-in wrapper substitutes and counts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.baselines import env_family
from envs.wrappers import NearestValidAction

ENV_IDS = envs.registered_ids()
SMALL = {"episode_queries": 150}
EXTRA = {"Repartition": {"interval_s": 1e-4}}


def _make(env_id: str) -> gym.Env:
    return gym.make(env_id, **SMALL, **EXTRA.get(env_family(env_id), {})).unwrapped


def _replay(env_id: str, history: list[tuple[str, int]]) -> gym.Env:
    """A fresh env taken through ``history`` (("reset", seed) and ("step", action) entries)."""
    env = _make(env_id)
    for kind, x in history:
        if kind == "reset":
            env.reset(seed=x)
        else:
            env.step(x)
    return env


def _state(env_id: str, history: list[tuple[str, int]], action: int) -> tuple:
    """What stepping ``action`` after ``history`` gives on a fresh env: what the env that saw
    the refusals must give too (replayed rather than pickled: a 64-node env pickles in ~1 s)."""
    obs, r, term, trunc, info = _replay(env_id, history).step(action)
    return ({k: v.tobytes() for k, v in obs.items()}, r, term, trunc,
            tuple(sorted(info.items())))


def _step_state(env: gym.Env, action: int) -> tuple:
    obs, r, term, trunc, info = env.step(action)
    return ({k: v.tobytes() for k, v in obs.items()}, r, term, trunc,
            tuple(sorted(info.items())))


def _to_masked_decision(env: gym.Env, rng: np.random.Generator, limit: int = 400,
                        history: list[tuple[str, int]] | None = None) -> bool:
    """Step valid actions until some action is masked; False if none within ``limit``
    (``history`` records the resets and steps taken)."""
    log = [] if history is None else history
    for _ in range(limit):
        mask = env.action_masks()
        if not mask.all():
            return True
        a = int(rng.choice(np.flatnonzero(mask)))
        log.append(("step", a))
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            seed = int(rng.integers(1 << 30))
            log.append(("reset", seed))
            env.reset(seed=seed)
    return False


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_masked_and_non_integer_actions_raise_and_change_nothing(env_id: str) -> None:
    env = _make(env_id)
    env.reset(seed=11)
    history: list[tuple[str, int]] = [("reset", 11)]
    rng = np.random.default_rng(0)
    n = int(env.action_space.n)
    for bad in (0.5, 1.0, np.float32(0.0), True, "1", np.array([0]), None):
        with pytest.raises(ValueError, match="integers"):
            env.step(bad)
    for bad in (-1, n, n + 7):
        with pytest.raises(ValueError, match="out of range"):
            env.step(bad)
    if not _to_masked_decision(env, rng, history=history):
        # PartitionPlacement presets: every model fits on every partition, so the mask only
        # ever forbids nothing; the rule is the same function (envs.actions.checked_action).
        # The refusals above changed nothing: the valid action gives what it gives on a
        # fresh env taken through the same steps.
        valid = int(np.flatnonzero(env.action_masks())[0])
        assert _step_state(env, valid) == _state(env_id, history, valid)
        pytest.skip(f"{env_id}: no action is ever masked in this preset")
    mask = env.action_masks()
    masked = int(np.flatnonzero(~mask)[0])
    valid = int(np.flatnonzero(mask)[0])
    with pytest.raises(ValueError, match="masked"):
        env.step(masked)
    with pytest.raises(ValueError, match="masked"):
        env.step(np.int64(masked))
    # Every refusal above changed nothing: the valid action gives what it gives on a fresh env
    # taken through the same resets and steps.
    assert _step_state(env, valid) == _state(env_id, history, valid)
    env.step(np.array(int(np.flatnonzero(env.action_masks())[0])))  # a 0-d integer array


@pytest.mark.parametrize("env_id", ["ldsgym/ShardRouting-v0", "ldsgym/ShardPlacement-v0"])
def test_nearest_valid_action_wrapper_substitutes_and_counts(env_id: str) -> None:
    env = NearestValidAction(_make(env_id))
    env.reset(seed=2)
    assert _to_masked_decision(env.unwrapped, np.random.default_rng(1))
    env.substituted = 0
    mask = env.action_masks()
    masked = int(np.flatnonzero(~mask)[0])
    valid = np.flatnonzero(mask)
    later = valid[valid >= masked]
    assert env.action(masked) == (int(later[0]) if len(later) else int(valid[0]))
    _, _, _, _, info = env.step(masked)
    assert info["substituted_actions"] == 2  # the call above counted too
    env.reset(seed=2)
    _, _, _, _, info = env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert info["substituted_actions"] == 0


@pytest.mark.parametrize("env_id", ["ldsgym/PartitionPlacement-v0", "ldsgym/Repartition-v0"])
def test_negative_delay_is_reported_in_the_unit_given(env_id: str) -> None:
    with pytest.raises(ValueError, match=r"max_queue_delay_ms must be >= 0, got -1$"):
        gym.make(env_id, max_queue_delay_ms=-1)
