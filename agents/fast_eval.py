"""Fast evaluation of heuristic baselines: whole episodes without the Gymnasium step overhead.

A heuristic reads a few observation entries and the action mask; building the full ``Dict``
observation (numpy arrays), the ``info`` dict and the mask array at every step costs far more
than the decision itself. Environments that offer a *rollout* (``env.unwrapped.rollout``, see
:meth:`envs.partition.PartitionPlacementEnv.rollout`) run the episode themselves and call a
plain function at every decision::

    a = decide(k, x)      # k: index into env.action_mask_table(); x: the requested features

where ``x`` holds only the observation entries the heuristic declares (``features``), as Python
floats equal to the float32 values of the observation. A :class:`Kernel` is such a function for
one baseline, written to make exactly the choice its ``act(obs, mask)`` makes (ties, float32
rounding and clipping included); the result is the same episode, so the same metrics, as
stepping the env (``tests/test_fast_eval.py`` checks equality on several seeds, loads and
baselines). Policies without a kernel (learned ones, unknown heuristics) and envs without a
rollout use the ordinary loop; :func:`agents.evaluation.run_episode` picks the path.

Adding a kernel for a new heuristic: write ``def kernel(policy, masks, sizes) -> Kernel`` that
reproduces ``act`` and register it in :data:`KERNELS` under the policy's class (exact class, so
a subclass that overrides ``act`` never inherits a kernel that would disagree with it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import (
    LeastLoadedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    ShortestExpectedFinishPolicy,
)
from agents.misd_baselines import GpuletBestFit, InterferenceAwarePolicy, PremaPolicy
from agents.policy import HeuristicPolicy
from envs.sim.device import compiled as gpu_jit
from envs.sim.device import rules

#: ``decide(k, x) -> action``: ``k`` indexes the env's action-mask table, ``x`` the features.
Decide = Callable[[int, tuple[float, ...]], int]

#: Wrappers that only check or order calls, so bypassing them changes no result.
_PASSIVE_WRAPPERS = ("PassiveEnvChecker", "OrderEnforcing")


@dataclass(frozen=True)
class Kernel:
    """One baseline's decision as a plain function over the features it declares.

    Attributes:
        features: Observation keys ``decide`` reads, in the order they are concatenated in
            ``x``.
        decide: The decision, see :data:`Decide`.
    """

    features: tuple[str, ...]
    decide: Decide


#: ``make(policy, masks, sizes) -> Kernel``: ``masks`` the env's action-mask table, ``sizes``
#: the length of every observation entry.
KernelFactory = Callable[[Any, Sequence[np.ndarray], Mapping[str, int]], Kernel]


def _mask_lists(masks: Sequence[np.ndarray]) -> tuple[list[list[bool]], list[int], list[bool]]:
    """Per mask: its entries as a list, the reject action, whether rejecting is allowed."""
    return ([mask.tolist() for mask in masks], [len(mask) - 1 for mask in masks],
            [bool(mask[-1]) for mask in masks])


def _random(policy: RandomPolicy, masks: Sequence[np.ndarray],
            sizes: Mapping[str, int]) -> Kernel:
    """:class:`RandomPolicy`: the same draw from the policy's own generator
    (``rng.integers(0, number valid)``, then :func:`~envs.sim.device.rules.nth_valid`)."""
    lists, reject, _ = _mask_lists(masks)
    n_valid = [sum(mask[:-1]) for mask in lists]
    nth = rules.nth_valid

    def decide(k: int, x: tuple[float, ...]) -> int:
        n = n_valid[k]
        return nth(int(policy.rng.integers(0, n)), lists[k], reject[k]) if n else reject[k]

    return Kernel((), decide)


def _round_robin(policy: RoundRobinPolicy, masks: Sequence[np.ndarray],
                 sizes: Mapping[str, int]) -> Kernel:
    """:class:`RoundRobinPolicy`: its own cursor, advanced exactly as ``act`` does."""
    lists, reject, _ = _mask_lists(masks)
    rr = rules.round_robin

    def decide(k: int, x: tuple[float, ...]) -> int:
        p, policy.cursor = rr(policy.cursor, lists[k], reject[k])
        return p

    return Kernel((), decide)


def _least_loaded(policy: LeastLoadedPolicy, masks: Sequence[np.ndarray],
                  sizes: Mapping[str, int]) -> Kernel:
    """:class:`LeastLoadedPolicy`: :func:`~envs.sim.device.rules.least_loaded` on the keys of
    :func:`~envs.sim.device.rules.least_loaded_keys`, as ``act``."""
    P = sizes["queue"]
    lists, _, _ = _mask_lists(masks)
    keys, rule = rules.least_loaded_keys, rules.least_loaded

    def decide(k: int, x: tuple[float, ...]) -> int:
        return rule(keys(x[:P], x[P:2 * P]), x[2 * P:], lists[k])

    return Kernel(("queue", "busy", "size"), decide)


def _earliest(policy: Any, masks: Sequence[np.ndarray]) -> Decide:
    """:func:`~envs.sim.device.rules.earliest` on ``x`` (finish in units of the SLA)."""
    lists, _, can_reject = _mask_lists(masks)
    hopeless = bool(policy.reject_hopeless)
    rule = rules.earliest

    def decide(k: int, x: tuple[float, ...]) -> int:
        return rule(x, lists[k], hopeless, can_reject[k])

    return decide


def _shortest_finish(policy: ShortestExpectedFinishPolicy, masks: Sequence[np.ndarray],
                     sizes: Mapping[str, int]) -> Kernel:
    """:class:`ShortestExpectedFinishPolicy`: earliest ``finish``."""
    return Kernel(("finish",), _earliest(policy, masks))


def _gpulet_best_fit(policy: GpuletBestFit, masks: Sequence[np.ndarray],
                     sizes: Mapping[str, int]) -> Kernel:
    """:class:`GpuletBestFit`: :func:`~envs.sim.device.rules.best_fit` on ``slack`` and
    ``size``, the margin rounded to float32 as ``act`` does."""
    lists, _, can_reject = _mask_lists(masks)
    hopeless = bool(policy.reject_hopeless)
    margin = rules.f32(policy.margin)
    rule = rules.best_fit

    def decide(k: int, x: tuple[float, ...]) -> int:
        P = len(x) // 2
        return rule(x[:P], x[P:], lists[k], margin, hopeless, can_reject[k])

    return Kernel(("slack", "size"), decide)


def _prema(policy: PremaPolicy, masks: Sequence[np.ndarray],
           sizes: Mapping[str, int]) -> Kernel:
    """:class:`PremaPolicy`: earliest ``finish_prio``."""
    return Kernel(("finish_prio",), _earliest(policy, masks))


def _interference_aware(policy: InterferenceAwarePolicy, masks: Sequence[np.ndarray],
                        sizes: Mapping[str, int]) -> Kernel:
    """:class:`InterferenceAwarePolicy`: :func:`~envs.sim.device.rules.most_slack`."""
    lists, _, can_reject = _mask_lists(masks)
    hopeless = bool(policy.reject_hopeless)
    rule = rules.most_slack

    def decide(k: int, x: tuple[float, ...]) -> int:
        return rule(x, lists[k], hopeless, can_reject[k])

    return Kernel(("slack",), decide)


#: Kernels by the exact class of the baseline they reproduce.
KERNELS: dict[type[HeuristicPolicy], KernelFactory] = {
    RandomPolicy: _random,
    RoundRobinPolicy: _round_robin,
    LeastLoadedPolicy: _least_loaded,
    ShortestExpectedFinishPolicy: _shortest_finish,
    GpuletBestFit: _gpulet_best_fit,
    PremaPolicy: _prema,
    InterferenceAwarePolicy: _interference_aware,
}


def rollout_env(env: gym.Env[Any, Any]) -> Any | None:
    """The unwrapped env if it offers a rollout and no wrapper in between alters anything."""
    inner: Any = env
    while isinstance(inner, gym.Wrapper):
        if type(inner).__name__ not in _PASSIVE_WRAPPERS:
            return None
        inner = inner.env
    needed = ("rollout", "action_mask_table")
    return inner if all(callable(getattr(inner, n, None)) for n in needed) else None


def supports(env: gym.Env[Any, Any], policy: Any) -> bool:
    """Whether :func:`run_fast` can evaluate ``policy`` on ``env``."""
    return type(policy) in KERNELS and rollout_env(env) is not None


def kernel_for(env: Any, policy: Any) -> Kernel:
    """The kernel of ``policy`` bound to ``env`` (an env with a rollout, unwrapped).

    Call it after ``policy.reset(seed)``: kernels read the policy's state (its generator, its
    round-robin cursor) as ``act`` does, and leave it where ``act`` would.

    Raises:
        ValueError: no kernel for the policy's class.
    """
    make = KERNELS.get(type(policy))
    if make is None:
        raise ValueError(f"no kernel for {policy!r}")
    sizes = {key: int(np.prod(box.shape)) for key, box in env.observation_space.spaces.items()}
    return make(policy, env.action_mask_table(), sizes)


def run_fast(env: gym.Env[Any, Any], policy: Any, seed: int,
             compiled: bool = True) -> dict[str, Any]:
    """One episode of a heuristic with a kernel: the final ``info`` + return and steps.

    The same as :func:`agents.evaluation.run_episode` with the ordinary loop (minus
    ``wall_s`` and ``seed``, which the caller adds). Where the whole episode can run compiled
    (:func:`compiled_rule`: numba installed, the v0 simulator, a rule in
    :mod:`envs.sim.device.compiled`), it does, unless ``compiled=False``; the result is the same.

    Raises:
        ValueError: no kernel for the policy, or no rollout in the env.
    """
    inner = rollout_env(env)
    if inner is None:
        raise ValueError(f"no fast path on {env}")
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(seed)
    if compiled and compiled_rule(inner, policy) is not None:
        return run_compiled(inner, policy, seed)
    kernel = kernel_for(inner, policy)
    result: dict[str, Any] = inner.rollout(kernel.decide, kernel.features, seed=seed)
    return result


# ------------------------------------------------------------------------- compiled episodes
#: The compiled decision rule (:mod:`envs.sim.device.compiled`) of each baseline class (exact
#: class).
COMPILED_RULES: dict[type[HeuristicPolicy], int] = {
    RandomPolicy: gpu_jit.RULE_RANDOM,
    RoundRobinPolicy: gpu_jit.RULE_ROUND_ROBIN,
    LeastLoadedPolicy: gpu_jit.RULE_LEAST_LOADED,
    ShortestExpectedFinishPolicy: gpu_jit.RULE_EARLIEST,
    PremaPolicy: gpu_jit.RULE_EARLIEST,
    GpuletBestFit: gpu_jit.RULE_GPULET,
    InterferenceAwarePolicy: gpu_jit.RULE_MAX_SLACK,
}


def compiled_rule(env: Any, policy: Any) -> int | None:
    """The compiled rule that runs ``policy`` on ``env`` (unwrapped), or ``None``.

    Compiled episodes need an env that compiles (``env.compiles``: numba, the v0 simulator,
    a linear reward) and a policy whose exact class has a rule.
    """
    rule = COMPILED_RULES.get(type(policy))
    if rule is None or not getattr(env, "compiles", False):
        return None
    return rule


def run_compiled(env: Any, policy: Any, seed: int | None,
                 actions: np.ndarray | None = None,
                 record: np.ndarray | None = None, reset: bool = True) -> dict[str, Any]:
    """One whole episode of ``env`` (an unwrapped env that compiles) decided by ``policy``'s
    compiled rule, or by ``actions`` (one per query, replayed): ``env.run_compiled``, with
    the policy's parameters and state (its generator's draws, its cursor).

    Returns:
        As :meth:`envs.partition.PartitionPlacementEnv.rollout`.

    Raises:
        ValueError: the policy has no compiled rule, or an action is masked or out of range.
        RuntimeError: ``reset=False`` and no fresh episode (reset, nothing decided yet).
    """
    choices: Any = None
    if actions is not None:
        rule = gpu_jit.RULE_REPLAY
        replay = np.asarray(actions, dtype=np.int64)

        def choices(model: np.ndarray) -> np.ndarray:
            if len(replay) < len(model):
                raise ValueError(f"{len(replay)} actions for {len(model)} queries")
            return replay
    else:
        found = compiled_rule(env, policy)
        if found is None:
            raise ValueError(f"no compiled rule for {policy!r} on {env}")
        rule = found
    if rule == gpu_jit.RULE_RANDOM:
        # act() draws rng.integers(0, number valid) per query with a valid partition; drawn
        # here in one call (numpy gives the same stream either way).
        n_valid = np.array([m[:-1].sum() for m in env.action_mask_table()])

        def choices(model: np.ndarray) -> np.ndarray:
            lens = n_valid[model]
            out = np.full(len(model), -1, np.int64)
            some = lens > 0
            out[some] = policy.rng.integers(0, lens[some])
            return out
    try:
        result, cursor = env.run_compiled(
            rule, seed=seed, reset=reset,
            reject_hopeless=bool(getattr(policy, "reject_hopeless", False)),
            margin=float(getattr(policy, "margin", 0.0)), choices=choices,
            cursor=int(getattr(policy, "cursor", 0)), record=record)
    except ValueError as exc:
        raise ValueError(f"rollout: {exc}") from None
    if rule == gpu_jit.RULE_ROUND_ROBIN:
        policy.cursor = cursor
    return result
