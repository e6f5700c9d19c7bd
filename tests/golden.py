"""Golden trajectories: what every env and every baseline does today, recorded in the repo.

A refactor of the serving core must leave these bit for bit as they are (``tests/
test_golden.py`` checks them). Each case runs something deterministic and reduces its whole
output stream to two digests:

- ``exact``: SHA-256 over every observation entry's bytes, every reward, flag and ``info``
  value (floats as ``float.hex``), every action. Bit-identical or not.
- ``rounded``: the same stream with floats rounded to 10 significant digits. A machine with
  other SIMD kernels in numpy may differ from the recording machine in the last bits of a
  transcendental; the rounded digest still holds there, the exact one is checked where the
  platform fingerprint equals the recording's (see :func:`platform_fingerprint`).

Cases:

- ``step/<id>``: every registered id, ``reset(seed=3)`` then up to ``STEPS`` steps with actions
  drawn uniformly among the valid ones from a generator of its own.
- ``baseline/<family>/<variant>/<name>/<path>``: one episode of every baseline of every
  family through each path it has: ``step`` (the reset/step loop), ``kernel`` (the Python fast
  kernels, ``run_fast(compiled=False)``), ``compiled`` (the numba episode).
- ``repartition/<placement>``: Repartition-v0 with each inner placement rule.

Regenerate (only in a commit that means to change behaviour, saying so)::

    python tests/golden.py --write [prefix ...]

With prefixes, only the cases whose names start with one of them are re-recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

GOLDEN = Path(__file__).with_name("golden") / "trajectories.json"

#: Steps per registered-id case (episodes end earlier where they are short).
STEPS = 120
#: Seed of every case.
SEED = 3


class Digest:
    """Two running SHA-256 digests over a stream of values (exact and rounded floats)."""

    def __init__(self) -> None:
        self.exact = hashlib.sha256()
        self.rounded = hashlib.sha256()

    def _put(self, exact: str, rounded: str) -> None:
        self.exact.update(exact.encode())
        self.exact.update(b"\x00")
        self.rounded.update(rounded.encode())
        self.rounded.update(b"\x00")

    def add(self, value: Any) -> None:
        """Fold ``value`` (nested dicts, lists, arrays, scalars) into both digests."""
        if isinstance(value, dict):
            self._put("{", "{")
            for key in sorted(value, key=str):
                self._put(str(key), str(key))
                self.add(value[key])
            self._put("}", "}")
        elif isinstance(value, (list, tuple)):
            self._put("[", "[")
            for v in value:
                self.add(v)
            self._put("]", "]")
        elif isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            self._put(f"a{arr.dtype.str}{arr.shape}", f"a{arr.dtype.str}{arr.shape}")
            if arr.dtype.kind == "f":
                self.exact.update(arr.tobytes())
                self.rounded.update(" ".join(_round(float(v)) for v in arr.ravel()).encode())
            else:
                self.exact.update(arr.tobytes())
                self.rounded.update(arr.tobytes())
        elif isinstance(value, (bool, np.bool_)):
            self._put(f"b{bool(value)}", f"b{bool(value)}")
        elif isinstance(value, (int, np.integer)):
            self._put(f"i{int(value)}", f"i{int(value)}")
        elif isinstance(value, (float, np.floating)):
            x = float(value)
            self._put("f" + x.hex(), "f" + _round(x))
        elif value is None or isinstance(value, str):
            self._put(f"s{value}", f"s{value}")
        else:
            raise TypeError(f"golden: cannot digest {type(value).__name__}: {value!r}")

    def result(self) -> dict[str, str]:
        """The two hex digests."""
        return {"exact": self.exact.hexdigest(), "rounded": self.rounded.hexdigest()}


def _round(x: float) -> str:
    if not math.isfinite(x) or x == 0.0:
        return repr(x)
    return f"{x:.10g}"


def platform_fingerprint() -> str:
    """What decides the last bits of numpy/numba float results: versions, machine, SIMD."""
    import numba

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - older numpy
        feats = {}
    simd = ",".join(sorted(k for k, v in feats.items() if v))
    return (f"numpy {np.__version__}; numba {numba.__version__}; {platform.machine()}; "
            f"{hashlib.sha256(simd.encode()).hexdigest()[:12]}")


# ----------------------------------------------------------------------------- the cases
def _no_wall(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("wall_s",)}


def _step_case(env_id: str, kwargs: dict[str, Any] | None = None,
               steps: int | None = STEPS) -> Callable[[], dict[str, str]]:
    """Reset, then ``steps`` random valid actions (``None``: to the episode's end)."""
    def run() -> dict[str, str]:
        import envs  # noqa: F401

        env = gym.make(env_id, **(kwargs or {}))
        d = Digest()
        rng = np.random.default_rng(SEED)
        obs, info = env.reset(seed=SEED)
        d.add(obs)
        d.add(info)
        k = 0
        while steps is None or k < steps:
            mask = np.asarray(env.unwrapped.action_masks(), dtype=bool)
            d.add(mask)
            a = _draw(rng, env.action_space, mask)
            d.add(a)
            obs, reward, terminated, truncated, info = env.step(a)
            d.add(obs)
            d.add([float(reward), bool(terminated), bool(truncated)])
            d.add(info)
            k += 1
            if terminated or truncated:
                break
        env.close()
        return d.result()

    return run


def _draw(rng: np.random.Generator, space: gym.Space[Any], mask: np.ndarray) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.choice(np.flatnonzero(mask)))
    if isinstance(space, gym.spaces.MultiDiscrete):
        # mask is the concatenation of one mask per component
        out, k = [], 0
        for n in space.nvec.ravel():
            part = mask[k:k + int(n)]
            valid = np.flatnonzero(part)
            out.append(int(rng.choice(valid)) if len(valid) else 0)
            k += int(n)
        return np.array(out, dtype=space.dtype)
    raise TypeError(f"golden: no action draw for {space}")


#: PartitionPlacement variants that exercise different parts of the simulator and reward
#: (as tests/test_fast_eval.py), each baseline runs on each through every path it has.
PP_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "overload": {"load": 1.3, "queue_capacity": 6, "max_batch": 4},
    "7-slices": {"layout": ["1g"] * 7, "drop_expired": False, "load": 0.9},
    "sizes": {"request_sizes": True, "max_batch": 16,
              "reward": {"name": "goodput", "late_weight": 0.3, "drop_weight": 1.7,
                         "energy_weight": 0.01, "backlog_weight": 0.5}},
    "h100-violations": {"hw": "h100-sxm", "reward": "violations", "load": 1.1},
    "mps": {"layout": ["mps:50", "mps:30", "mps:20"], "load": 1.1},
    "ts-prio-preempt": {"sharing": "ts", "layout": [3], "workload": "vision-nlp-prio",
                        "priorities": True, "preempt": True, "load": 1.2},
}
PP_QUERIES = 1500


def _baseline_case(env_id: str, kwargs: dict[str, Any], name: str,
                   path: str) -> Callable[[], dict[str, str]]:
    def run() -> dict[str, str]:
        import envs  # noqa: F401
        from agents import fast_eval
        from agents.baselines import baselines_for
        from agents.evaluation import run_episode

        env = gym.make(env_id, **kwargs)
        policy = baselines_for(env_id)[name]()
        if path == "step":
            result = run_episode(env, policy, SEED, fast=False)
        elif path == "fast":
            result = run_episode(env, policy, SEED, fast=True)
        else:
            result = fast_eval.run_fast(env, policy, SEED, compiled=(path == "compiled"))
        d = Digest()
        d.add(_no_wall(result))
        counts = getattr(env.unwrapped, "latency_counts", None)
        if callable(counts):
            d.add(list(counts()))
        env.close()
        return d.result()

    return run


def cases() -> Iterator[tuple[str, Callable[[], dict[str, str]]]]:
    """Every golden case by name."""
    import envs
    from agents import fast_eval
    from agents.baselines import baselines_for

    for env_id in envs.registered_ids():
        yield f"step/{env_id}", _step_case(env_id)
    pp = "ldsgym/PartitionPlacement-v0"
    for variant, kw in PP_VARIANTS.items():
        kwargs = {"episode_queries": PP_QUERIES, **kw}
        probe = gym.make(pp, **kwargs)
        for name, cls in baselines_for(pp).items():
            yield f"baseline/PartitionPlacement/{variant}/{name}/step", \
                _baseline_case(pp, kwargs, name, "step")
            yield f"baseline/PartitionPlacement/{variant}/{name}/kernel", \
                _baseline_case(pp, kwargs, name, "kernel")
            if fast_eval.compiled_rule(probe.unwrapped, cls()) is not None:
                yield f"baseline/PartitionPlacement/{variant}/{name}/compiled", \
                    _baseline_case(pp, kwargs, name, "compiled")
        probe.close()
    others = {
        "ldsgym/Repartition-v0": {"episode_queries": 20_000},
        "ldsgym/Repartition-MPS-v0": {"episode_queries": 10_000},
        "ldsgym/ShardRouting-v0": {"episode_queries": 2000},
        "ldsgym/ShardRouting-Faults-v0": {"episode_queries": 2000},
        # Shedding allowed: deadline_shed's admission control (the others never shed).
        "ldsgym/ShardRouting-RequestAware-v0": {"episode_queries": 2000, "allow_shed": True},
        "ldsgym/ShardPlacement-v0": {},
        "ldsgym/ClusterRouting-v0": {"episode_queries": 1500, "load": 1.1},
    }
    for env_id, kwargs in others.items():
        family = env_id.split("/")[1].split("-")[0]
        tag = env_id.split("/")[1].removesuffix("-v0")
        for name in baselines_for(env_id):
            yield f"baseline/{family}/{tag}/{name}/step", \
                _baseline_case(env_id, kwargs, name, "step")
            yield f"baseline/{family}/{tag}/{name}/fast", \
                _baseline_case(env_id, kwargs, name, "fast")
    from envs.repartition import PLACEMENTS

    for placement in PLACEMENTS:
        for env_id in ("ldsgym/Repartition-v0", "ldsgym/Repartition-MPS-v0"):
            tag = env_id.split("/")[1].removesuffix("-v0")
            yield f"repartition/{tag}/{placement}", _step_case(
                env_id, {"placement": placement, "episode_queries": 20_000}, None)


def load() -> dict[str, Any]:
    """The recorded file: ``{"platform": str, "cases": {name: {"exact", "rounded"}}}``."""
    return dict(json.loads(GOLDEN.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="re-record (else: check)")
    parser.add_argument("prefixes", nargs="*", help="only the cases starting with these")
    args = parser.parse_args(argv)
    recorded = load() if GOLDEN.exists() else {"platform": "", "cases": {}}
    fresh = dict(recorded["cases"]) if args.prefixes else {}
    bad = 0
    names = []
    for name, run in cases():
        names.append(name)
        if args.prefixes and not any(name.startswith(p) for p in args.prefixes):
            continue
        got = run()
        old = recorded["cases"].get(name)
        same = old == got
        print(f"{'same' if same else 'DIFF' if old else 'new '}  {name}", flush=True)
        bad += not same
        fresh[name] = got
    if args.write:
        GOLDEN.parent.mkdir(exist_ok=True)
        out = {"platform": platform_fingerprint(),
               "cases": {n: fresh[n] for n in names if n in fresh}}
        GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(out['cases'])} cases to {GOLDEN}")
        return 0
    return int(bad > 0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
