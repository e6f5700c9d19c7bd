"""ShardRouting's ``info`` and reward paths give what the plain formulas give.

``_info`` builds its dict in one display (the request summary inlined) and the fused
(within-request) step takes its reward without ``_reward`` when nothing can have changed;
each test here runs the straightforward version next to it over whole episodes and wants
equality: values, types, key order.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.shard import ShardRoutingEnv
from tests.test_shard_fastpath import _LINK_FAULTS

#: Node failures with no retries: failed sub-requests and requests.
_FAILURES = [{"start_ms": t, "duration_ms": 15, "target": n, "kind": "node", "mode": "fail"}
             for t, n in ((4, 1), (10, 2), (12, 3), (30, 5))]


def _reference_info(env: ShardRoutingEnv) -> dict[str, object]:
    """``info`` from scratch: the request summary (``FanoutCounters.summary``) under the
    env's entries, and the energy as the sum of :meth:`ShardRoutingEnv.energy_breakdown`
    (the formulas ``_info`` inlines)."""
    sim = env.sim
    assert sim is not None
    now = sim.events.now
    sub, req = sim.sub, sim.req
    node_ahead, dense_ahead = sim.busy_ahead_s(now)
    summary = req.summary(now, dense_ahead)
    sub_dropped = sub.dropped
    lookups = sim.cache_lookups_total
    mean_link, max_link = sim.link_utilization(now)
    info = {
        **summary,
        "requests_arrived": req.arrived, "requests_completed": req.completed,
        "requests_good": req.good, "requests_dropped": req.dropped,
        "requests_in_system": req.in_system, "dense_utilization": summary["utilization"],
        "arrived": sub.arrived, "completed": sub.completed, "good": sub.good,
        "late": sub.late, "dropped": sub_dropped, "dropped_rejected": sub.dropped_rejected,
        "dropped_overflow": sub.dropped_overflow, "dropped_expired": sub.dropped_expired,
        "dropped_failed": sub.dropped_failed, "in_system": sub.in_system,
        "retried": sim.sub_retried,
        "utilization": (sum(sub.busy_s) - node_ahead) / (env.n_nodes * now) if now > 0 else 0.0,
        "cache_hit_rate": sim.cache_hits_total / lookups if lookups else 0.0,
        "link_utilization": mean_link, "link_utilization_max": max_link,
        "capacity_qps": env.capacity_qps, "invalid_actions": env._invalid,
    }
    parts = env.energy_breakdown()
    e = (parts["idle"] + parts["nodes"] + parts["fast"] + parts["slow"] + parts["links"]
         + parts["dense"])
    info["energy_j"] = e
    info["energy_per_query_j"] = e / req.completed if req.completed else 0.0
    info["power_w"] = e / now if now > 0 else 0.0
    return info


@pytest.mark.parametrize(("env_id", "kwargs", "jit"), [
    ("ldsgym/ShardRouting-v0", {}, True),
    ("ldsgym/ShardRouting-v0", {}, False),
    ("ldsgym/ShardRouting-v0", {"load": 1.4, "faults": _LINK_FAULTS, "allow_shed": True},
     True),
    ("ldsgym/ShardRouting-v0", {"load": 1.2, "max_retries": 0, "faults": _FAILURES}, True),
    ("ldsgym/ShardRouting-v0", {"load": 1.2, "max_retries": 0, "faults": _FAILURES}, False),
    ("ldsgym/ShardRouting-Tiers-v0", {}, True),
])
def test_info_is_the_summary_info(env_id: str, kwargs: dict, jit: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``info`` (reset, event and routing steps, sheds, failures, the drain) is the
    from-scratch one, entry for entry, values, types and key order."""
    from envs.sim.dlrm import kernels

    monkeypatch.setattr(kernels, "AVAILABLE", jit and kernels.AVAILABLE)
    env = gym.make(env_id, episode_queries=1200, **kwargs).unwrapped
    _, info = env.reset(seed=6)
    rng = np.random.default_rng(6)
    trunc = False
    seen = set()
    while not trunc:
        assert repr(list(info.items())) == repr(list(_reference_info(env).items()))
        seen.add((info["dropped_failed"] > 0, info["requests_completed"] > 0))
        valid = np.flatnonzero(env.action_masks())
        _, _, _, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
    assert repr(list(info.items())) == repr(list(_reference_info(env).items()))
    assert any(completed for _, completed in seen)
    if kwargs.get("faults") is _FAILURES:
        assert (True, True) in seen  # failed sub-requests and requests counted


@pytest.mark.parametrize("reward", [
    "goodput", {"name": "goodput", "backlog_weight": 0.5}, "violations",
    {"name": "goodput", "energy_weight": 0.01}])
def test_fused_reward_is_reward(reward: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fused step's reward taken without ``_reward`` (the empty outcome's value) is what
    ``_reward`` gives there, and the backlog the reward counts stays the same to the bit:
    the same episode (rewards, observations, infos, the backlog after every step) as with
    ``_reward`` called every step."""

    def episode(shortcut: bool) -> tuple[list[object], int]:
        env = gym.make("ldsgym/ShardRouting-v0", episode_queries=1500, load=1.3,
                       reward=reward, faults=_LINK_FAULTS).unwrapped
        calls = {"n": 0}
        orig = env._reward

        def counted() -> float:
            calls["n"] += 1
            r = orig()
            if not shortcut:
                env._synced = False
            return r

        env._reward = counted
        obs, _ = env.reset(seed=8)
        rng = np.random.default_rng(8)
        out: list[object] = []
        trunc = False
        while not trunc:
            valid = np.flatnonzero(env.action_masks())
            obs, r, _, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
            sim = env.sim
            out.append((repr(r), type(r), {k: v.tobytes() for k, v in obs.items()},
                        repr(list(info.items())), sim.backlog.hex(), sim._backlog_t.hex()))
        return out, calls["n"]

    fast, n_fast = episode(True)
    ref, n_ref = episode(False)
    assert n_ref == len(ref)  # _reward every step
    assert len(fast) == len(ref)
    for i, (a, b) in enumerate(zip(fast, ref, strict=True)):
        assert a == b, f"step {i} differs"
    from envs.sim.dlrm import kernels

    if isinstance(reward, dict) and reward.get("energy_weight"):
        assert n_fast == n_ref  # a reward that prices energy: _reward every step
    elif kernels.AVAILABLE:
        assert n_fast < len(ref) // 2  # most steps took the shortcut
