"""The fast evaluation path gives exactly what stepping the env gives (agents/fast_eval.py)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents import fast_eval
from agents.baselines import BASELINES
from agents.evaluation import evaluate, run_episode
from agents.policy import HeuristicPolicy, SB3Policy

ENV = "ldsgym/PartitionPlacement-v0"
KEYS = ("model", "sla", "queue", "queue_same", "busy", "finish", "size", "rates", "priority",
        "slowdown", "finish_prio", "slack", "resident")

#: Env variants that exercise different parts of the simulator and of the reward.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "overload-small-queues": {"load": 1.3, "queue_capacity": 6, "max_batch": 4},
    "7-slices-no-drops": {"layout": ["1g"] * 7, "drop_expired": False, "load": 0.9},
    "sizes-dense-reward": {"request_sizes": True, "max_batch": 16,
                           "reward": {"name": "goodput", "late_weight": 0.3,
                                      "drop_weight": 1.7, "energy_weight": 0.01,
                                      "backlog_weight": 0.5}},
    "violations-reward-h100": {"hw": "h100-sxm", "reward": "violations", "load": 1.1},
    # The shared-GPU simulator (envs/sim/device/shared.py): MPS interference, priorities,
    # preemption.
    "mps-interference": {"layout": ["mps:50", "mps:30", "mps:20"], "load": 1.1},
    "priorities-preempt-ts": {"sharing": "ts", "layout": [3], "workload": "vision-nlp-prio",
                              "priorities": True, "preempt": True, "load": 1.2},
}


def _both(name: str, kwargs: dict[str, Any], seed: int,
          n: int = 1200) -> tuple[dict[str, Any], dict[str, Any], list[int], list[int]]:
    env = gym.make(ENV, episode_queries=n, **kwargs)
    slow = run_episode(env, BASELINES[name](), seed, fast=False)
    slow_counts = env.unwrapped.latency_counts()
    fast = run_episode(env, BASELINES[name](), seed, fast=True)
    fast_counts = env.unwrapped.latency_counts()
    for r in (slow, fast):
        r.pop("wall_s")
    return slow, fast, slow_counts, fast_counts


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_fast_path_equals_step_loop_exactly(name: str, variant: str) -> None:
    for seed in (0, 7):
        slow, fast, slow_counts, fast_counts = _both(name, VARIANTS[variant], seed)
        assert fast == slow  # every metric, the return and the step count, bit for bit
        assert fast_counts == slow_counts
        assert slow["steps"] == 1200 and slow["in_system"] == 0


def test_fast_path_covers_the_baselines_and_is_used_by_default() -> None:
    env = gym.make(ENV, episode_queries=50)
    for name, cls in BASELINES.items():
        assert cls in fast_eval.KERNELS, name
        assert fast_eval.supports(env, cls())
    assert not fast_eval.supports(env, SB3Policy(model=None))


class _Subclass(BASELINES["least_loaded"]):  # type: ignore[misc,valid-type]
    def act(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> int:
        return len(mask) - 1  # rejects everything: must not inherit the parent's kernel


def test_subclasses_and_altering_wrappers_take_the_step_loop() -> None:
    env = gym.make(ENV, episode_queries=200)
    assert not fast_eval.supports(env, _Subclass())
    assert run_episode(env, _Subclass(), 0)["dropped_rejected"] == 200
    scaled = gym.wrappers.TransformReward(gym.make(ENV, episode_queries=200),
                                          lambda r: 2.0 * r)
    assert not fast_eval.supports(scaled, BASELINES["least_loaded"]())
    plain = run_episode(gym.make(ENV, episode_queries=200), BASELINES["least_loaded"](), 3)
    doubled = run_episode(scaled, BASELINES["least_loaded"](), 3)
    assert doubled["episode_return"] == pytest.approx(2.0 * plain["episode_return"])


def test_evaluate_fast_and_slow_agree() -> None:
    make = lambda: gym.make(ENV, episode_queries=400, load=1.0)  # noqa: E731
    policies = {n: BASELINES[n]() for n in BASELINES}
    a = evaluate(make, policies, seeds=[1, 2], progress=False, fast=True)
    b = evaluate(make, policies, seeds=[1, 2], progress=False, fast=False)
    for name in policies:
        ea = [{k: v for k, v in e.items() if k != "wall_s"} for e in a[name].episodes]
        eb = [{k: v for k, v in e.items() if k != "wall_s"} for e in b[name].episodes]
        assert ea == eb
        assert np.array_equal(a[name].latency_counts, b[name].latency_counts)


@pytest.mark.parametrize("variant", ["default", "sizes-dense-reward", "mps-interference",
                                     "priorities-preempt-ts"])
def test_rollout_features_are_the_observation_values(variant: str) -> None:
    """Every feature the fast path hands to a kernel equals the float32 observation entry."""
    n = 600
    env = gym.make(ENV, episode_queries=n, **VARIANTS[variant]).unwrapped
    rng = np.random.default_rng(0)
    masks = env.action_mask_table()
    seen: list[list[float]] = []
    actions: list[int] = []

    def decide(k: int, x: tuple[float, ...]) -> int:
        seen.append(list(x))
        a = int(rng.choice(np.flatnonzero(masks[k])))
        actions.append(a)
        return a

    env.rollout(decide, KEYS, seed=4)
    obs, _ = env.reset(seed=4)
    stepped = []
    for a in actions:
        stepped.append(np.concatenate([obs[k] for k in KEYS]).tolist())
        obs, *_ = env.step(a)
    assert len(seen) == n and seen == stepped


def test_rollout_without_reset_continues_the_episode() -> None:
    env = gym.make(ENV, episode_queries=500).unwrapped
    policy = BASELINES["shortest_finish"]()
    whole = fast_eval.run_fast(env, policy, 9)
    kernel = fast_eval.kernel_for(env, policy)
    env.reset(seed=9)
    assert env.rollout(kernel.decide, kernel.features, reset=False) == whole
    with pytest.raises(RuntimeError):
        env.rollout(kernel.decide, kernel.features, reset=False)  # the episode is over


def test_rollout_rejects_masked_actions() -> None:
    a100_40 = {"name": "A100-40GB", "mem_gb": 40.0, "mig": "a100-40gb"}
    from hwmodels.specs import load_device

    hw = load_device("a100-80gb").replace(**a100_40)
    env = gym.make(ENV, hw=hw, layout=["4g.20gb", "1g.5gb", "1g.5gb"], precision="fp32",
                   workload=[{"name": "resnet50", "sla_ms": 15},
                             {"name": "gpt2-xl-decode", "sla_ms": 100}],
                   episode_queries=300).unwrapped
    with pytest.raises(ValueError, match="masked"):
        env.rollout(lambda k, x: 2, (), seed=0)  # 1g.5gb cannot hold GPT-2 XL
    # The baselines respect the mask there, on both paths alike.
    for name in BASELINES:
        slow = run_episode(env, BASELINES[name](), 1, fast=False)
        fast = run_episode(env, BASELINES[name](), 1, fast=True)
        slow.pop("wall_s"), fast.pop("wall_s")
        assert fast == slow


def _obs_and_x(rng: np.random.Generator, P: int, M: int,
               features: tuple[str, ...]) -> tuple[dict[str, np.ndarray], tuple[float, ...]]:
    """A random observation with ties, near-ties and clipped values, and its feature tuple."""
    def vec(n: int) -> np.ndarray:
        kind = rng.integers(4)
        if kind == 0:  # exact ties
            v = np.full(n, rng.choice([0.0, 0.125, 1.0, 10.0]))
        elif kind == 1:  # near-ties: one float32 ulp apart
            base = np.float32(rng.uniform(0.1, 2.0))
            v = base + np.float32(np.spacing(base)) * rng.integers(0, 2, n)
        elif kind == 2:  # multiples of 1/8, as queue lengths
            v = rng.integers(0, 12, n) / 8.0
        else:
            v = rng.uniform(0.0, 12.0, n)
        return np.minimum(v.astype(np.float32), np.float32(10.0))

    obs = {"model": np.eye(M, dtype=np.float32)[rng.integers(M)],
           "sla": vec(1), "queue": vec(P), "queue_same": vec(P), "busy": vec(P),
           "finish": vec(P), "size": rng.choice([1 / 7, 2 / 7, 3 / 7], P).astype(np.float32),
           "rates": vec(M), "priority": rng.choice([0.0, 1.0], 1).astype(np.float32),
           "slowdown": vec(P), "finish_prio": vec(P),
           "slack": np.minimum(np.float32(1.0), vec(P) - np.float32(rng.choice([0, 1, 5]))),
           "resident": rng.choice([0.0, 1.0], P).astype(np.float32)}
    x = tuple(float(v) for k in features for v in obs[k])
    return obs, x


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_kernels_match_act_on_adversarial_observations(name: str) -> None:
    """Kernels against ``act`` on observations full of ties and float32 near-ties."""
    rng = np.random.default_rng(1)
    for P in (1, 2, 4, 7):
        masks = [rng.random(P + 1) < 0.7 for _ in range(5)]
        for m in masks:
            m[-1] = True
        masks.append(np.r_[np.zeros(P, bool), True])  # nothing but reject
        slow: HeuristicPolicy = BASELINES[name]()
        fast: HeuristicPolicy = BASELINES[name]()
        slow.reset(3)
        fast.reset(3)
        kernel = fast_eval.KERNELS[type(fast)](fast, masks, {"queue": P, "finish": P})
        for _ in range(300):
            k = int(rng.integers(len(masks)))
            obs, x = _obs_and_x(rng, P, 3, kernel.features)
            assert kernel.decide(k, x) == slow.act(obs, masks[k])


# ------------------------------------------------------------------ compiled episodes (numba)
@pytest.mark.parametrize("variant", ["default", "overload-small-queues", "7-slices-no-drops",
                                     "sizes-dense-reward"])
def test_compiled_episode_equals_python_rollout(variant: str) -> None:
    """The compiled loop (envs/sim/device/compiled.py) against the Python rollout, every baseline,
    and the policy's state (generator, round-robin cursor) left where ``act`` leaves it."""
    if not fast_eval.gpu_jit.AVAILABLE:
        pytest.skip("numba is not installed")
    env = gym.make(ENV, episode_queries=1500, **VARIANTS[variant]).unwrapped
    for name in sorted(BASELINES):
        for seed in (0, 5):
            py, jit = BASELINES[name](), BASELINES[name]()
            assert fast_eval.compiled_rule(env, jit) is not None
            a = fast_eval.run_fast(env, py, seed, compiled=False)
            a_counts = env.latency_counts()
            b = fast_eval.run_fast(env, jit, seed, compiled=True)
            assert b == a, name
            assert env.latency_counts() == a_counts
            assert getattr(py, "_next", None) == getattr(jit, "_next", None)
            if hasattr(py, "_rng"):
                assert py.rng.bit_generator.state == jit.rng.bit_generator.state


def test_compiled_replay_and_masked_actions() -> None:
    """Replaying recorded actions reproduces the episode; a masked action is refused."""
    if not fast_eval.gpu_jit.AVAILABLE:
        pytest.skip("numba is not installed")
    env = gym.make(ENV, episode_queries=800, load=1.1).unwrapped
    policy = BASELINES["least_loaded"]()
    policy.reset(2)
    record = np.zeros(800, np.int64)
    first = fast_eval.run_compiled(env, policy, 2, record=record)
    assert fast_eval.run_compiled(env, None, 2, actions=record) == first
    assert set(np.unique(record)) <= set(range(env.n_partitions + 1))
    only = [{"name": "resnet50", "sla_ms": 15}, {"name": "gpt2-xl-decode", "sla_ms": 100}]
    from hwmodels.specs import load_device

    hw = load_device("a100-80gb").replace(name="A100-40GB", mem_gb=40.0, mig="a100-40gb")
    small = gym.make(ENV, hw=hw, layout=["4g.20gb", "1g.5gb", "1g.5gb"], precision="fp32",
                     workload=only, episode_queries=300).unwrapped
    with pytest.raises(ValueError, match="masked"):
        fast_eval.run_compiled(small, None, 0, actions=np.full(300, 2))


def test_compiled_path_only_where_it_is_exact() -> None:
    """MPS/TS interference and priority classes use the shared simulator: no compiled rule."""
    mps = gym.make(ENV, episode_queries=10, **VARIANTS["mps-interference"]).unwrapped
    dense = gym.make(ENV, episode_queries=10, reward="violations").unwrapped
    for env in (mps, dense):
        assert fast_eval.compiled_rule(env, BASELINES["shortest_finish"]()) is None

    class _Subclass(type(BASELINES["shortest_finish"]())):  # type: ignore[misc]
        pass

    plain = gym.make(ENV, episode_queries=10).unwrapped
    assert fast_eval.compiled_rule(plain, _Subclass()) is None


def test_without_numba_the_python_kernels_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba missing (``gpu_jit.AVAILABLE`` False): the same results through Python."""
    env = gym.make(ENV, episode_queries=400)
    want = run_episode(env, BASELINES["shortest_finish"](), 3, fast=False)
    monkeypatch.setattr(fast_eval.gpu_jit, "AVAILABLE", False)
    assert fast_eval.compiled_rule(env.unwrapped, BASELINES["shortest_finish"]()) is None
    got = run_episode(env, BASELINES["shortest_finish"](), 3)
    want.pop("wall_s"), got.pop("wall_s")
    assert got == want
