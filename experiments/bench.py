"""Simulation speed, measured in one run and reported as ratios so the numbers hold anywhere.

    python -m experiments.bench                       # bench.csv, bench.md, bench_scaling.png
    python -m experiments.bench repeats=5 baselines.queries=100000 out_dir=/tmp/b
    python -m experiments.bench profile.env=ldsgym/ShardRouting-v0   # profile.html/.txt only

Seven measurements, each against a reference timed in the same process where one applies:

1. **Env steps**: ``action_masks()`` + ``step()`` per second for every registered environment
   (unwrapped, a cheap round-robin action, resets included), over ``CartPole-v1``'s raw step.
2. **Baselines without RL**: simulated queries per second of each heuristic over a long trace
   through the fast path (:mod:`agents.fast_eval`, what ``experiments.evaluate`` uses), the
   ordinary ``reset``/``step`` loop for comparison, and a plain ``heapq`` M/M/c event loop
   (:func:`mmc_reference`) as the yardstick of "what Python can do".
3. **Scaling**: cost per query (fast path) and per env step along the axes of
   :data:`SCALING_AXES` (MIG slices 1 -> 7, offered load 0.5 -> 1.2, nodes 4 -> 64, tables
   8 -> 512, ClusterRouting devices 8 -> 1,024), as a table and a PNG.
4. **Memory**: peak memory of a 100k- and a 1M-query episode, each in a fresh subprocess
   (``tracemalloc`` and the process's peak RSS), split into the trace's arrays (the input, which
   grows with the episode) and what the simulation adds (which must not).
5. **Traces**: arrivals generated per second per synthetic preset, and a cold CSV replay.
6. **Where a step's time goes** (the sharded-serving envs, whose steps cost most): drawing
   the request's embedding lookups, the rest of the simulation, and the Gymnasium adapter,
   beside the numpy floor of the lookup draws alone, the time inside compiled code
   (:func:`compiled_us`) and the Gymnasium API's own cost with the same observation
   (:func:`api_floor_us`): together the least a step can cost (:func:`step_breakdown`).
7. **A Repartition episode** (issue 16): ``Repartition-v0``'s intervals as one compiled loop
   each (:mod:`envs.sim.device.compiled_shared`) and through the Python loop, the reference,
   on MIG and on MPS shares with interference: drawing the trace (``reset``) and the steps
   timed apart, scaled to an hour of simulated time, and checked equal
   (:func:`bench_repartition`).

With ``profile.env`` set it measures nothing of the above: it profiles that environment's step
loop with pyinstrument instead (:func:`profile_env`), to find what to make faster.

Timings are best-of-``repeats`` with the candidates interleaved, because the machine may be
shared, and read this process's CPU time by default (``clock=wall`` for wall time: on a busy
machine the time spent waiting for a core would count); ``bench.md`` records the clock and the
load average before and after.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments.common import UserError, hydra_app, write_atomic

REPO = Path(__file__).resolve().parent.parent

Clock = Callable[[], float]
#: How the timings read time (``clock=`` in ``conf/bench.yaml``): the CPU time of this process
#: (the default: on a shared machine, time spent waiting for a core is not counted, so the
#: ratios to CartPole and to the M/M/c loop, timed the same way, hold under load) or wall time.
CLOCKS: dict[str, Clock] = {"cpu": time.process_time, "wall": time.perf_counter}


# ---------------------------------------------------------------------------------- references
def mmc_reference(n: int, servers: int = 4, load: float = 0.8,
                  seed: int = 0) -> tuple[int, float]:
    """A plain ``heapq`` M/M/c event loop: the yardstick for simulated queries per second.

    Poisson arrivals at rate ``load * servers`` (service rate 1 per server), exponential
    service, ``servers`` servers, one FIFO queue; arrivals and departures are events in one
    heap of ``(time, seq, kind, query)`` tuples. Random numbers are drawn up front with numpy
    (as the environments draw their traces).

    Args:
        n: Queries to simulate (all of them complete).
        servers: Servers (``c``).
        load: Utilisation ``rho = lambda / (c mu)``, below 1.
        seed: Seed of the numpy generator.

    Returns:
        ``(completed, mean time in system)`` in units of the mean service time.
    """
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / (load * servers), n).tolist()
    service = rng.exponential(1.0, n).tolist()
    arrived_at = [0.0] * n
    heap: list[tuple[float, int, int, int]] = [(gaps[0], 0, 0, 0)]
    push, pop = heapq.heappush, heapq.heappop
    queue: deque[int] = deque()
    free = servers
    seq = 1
    nxt = 1
    done = 0
    total = 0.0
    while heap:
        now, _, kind, i = pop(heap)
        if kind == 0:  # arrival
            arrived_at[i] = now
            if nxt < n:
                push(heap, (now + gaps[nxt], seq, 0, nxt))
                seq += 1
                nxt += 1
            if free:
                free -= 1
                push(heap, (now + service[i], seq, 1, i))
                seq += 1
            else:
                queue.append(i)
        else:  # departure
            done += 1
            total += now - arrived_at[i]
            if queue:
                j = queue.popleft()
                push(heap, (now + service[j], seq, 1, j))
                seq += 1
            else:
                free += 1
    return done, total / done


def erlang_c_sojourn(servers: int, load: float) -> float:
    """Mean time in an M/M/c system (service rate 1) from the Erlang-C formula."""
    a = load * servers  # offered traffic in Erlangs
    top = a ** servers / math.factorial(servers) / (1.0 - load)
    wait_prob = top / (sum(a ** k / math.factorial(k) for k in range(servers)) + top)
    return wait_prob / (servers - a) + 1.0


def time_cartpole(steps: int, clock: Clock = time.process_time) -> float:
    """Raw ``step()`` calls per second of ``CartPole-v1`` (unwrapped, resets included), in
    ``clock``'s seconds."""
    env: Any = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    step = env.step
    t0 = clock()
    for i in range(steps):
        _, _, term, trunc, _ = step(i & 1)
        if term or trunc:
            env.reset()
    return steps / (clock() - t0)


# ---------------------------------------------------------------------------------- env steps
def time_env(env_id: str, steps: int, budget_s: float = math.inf, seed: int = 0,
             clock: Clock = time.process_time, **kwargs: Any) -> tuple[float, float]:
    """(steps/s with ``action_masks()``, steps/s of ``step()`` alone) for one environment.

    The actions cycle through the valid ones (round robin over the mask); the second pass
    replays the same actions from the same seed without asking for masks. Each pass stops
    after ``steps`` steps or ``budget_s`` seconds of ``clock``, whichever comes first (slow
    environments still get a rate without holding the whole bench up). ``seed`` seeds both
    passes.
    """
    import envs  # noqa: F401  (registers the ldsgym/ ids)

    env: Any = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=seed)
    n = env.action_space.n
    masks, step = env.action_masks, env.step
    actions: list[int] = []
    k = 0
    t0 = clock()
    deadline = t0 + budget_s
    for i in range(steps):
        mask = masks()
        k = (k + 1) % n
        while not mask[k]:
            k = (k + 1) % n
        _, _, term, trunc, _ = step(k)
        actions.append(k)
        if term or trunc:
            env.reset()
        if i & 255 == 255 and clock() > deadline:
            break
    with_masks = len(actions) / (clock() - t0)
    env.reset(seed=seed)
    t0 = clock()
    for a in actions:
        _, _, term, trunc, _ = step(a)
        if term or trunc:
            env.reset()
    alone = len(actions) / (clock() - t0)
    return with_masks, alone


def cycle_steps(env: Any, steps: int) -> Iterator[tuple[int, dict[str, Any], bool]]:
    """Step an (unwrapped, reset) env ``steps`` times with :func:`time_env`'s actions: the
    next valid one after the last, round robin over ``action_masks()``; resets at an
    episode's end. Yields ``(action, info, ended)`` per step (``info`` of that step, before
    any reset)."""
    n = env.action_space.n
    k = 0
    for _ in range(steps):
        mask = env.action_masks()
        k = (k + 1) % n
        while not mask[k]:
            k = (k + 1) % n
        _, _, term, trunc, info = env.step(k)
        ended = bool(term or trunc)
        yield k, info, ended
        if ended:
            env.reset()


def arrivals_per_step(env_id: str, steps: int = 20, **kwargs: Any) -> float:
    """Mean requests arriving per ``step()`` (``info["arrived"]``; ``info["sub_arrived"]``
    where the env has it, so that a ShardPlacement step, one request, counts its
    sub-requests as ShardRouting's do), with the actions of :func:`time_env`: 1 where a step
    decides one arrival, many where a step is a control interval (Repartition) or a whole
    request, ``nan`` where ``info`` has no ``arrived``. Arrivals up to the first decision
    (``reset``) count towards the first step."""
    import envs  # noqa: F401

    env: Any = gym.make(env_id, **kwargs).unwrapped
    _, info = env.reset(seed=0)
    key = "sub_arrived" if "sub_arrived" in info else "arrived"
    if key not in info:
        return math.nan
    before = 0
    total = 0
    for _, info, ended in cycle_steps(env, steps):
        total += info[key] - before
        before = info[key]
        if ended:  # the next episode counts its arrivals from zero again
            before = 0
    return total / steps


def bench_env_steps(env_ids: Sequence[str], steps: int, repeats: int,
                    budget_s: float = math.inf,
                    clock: Clock = time.process_time) -> list[dict[str, Any]]:
    """Best-of-``repeats`` step rates; CartPole is timed in the same rounds. Also the cost
    per arriving request, for environments whose step simulates many (an interval).

    Round ``k`` runs seed ``k``: a new env each round, on a new trace, so what envs of one
    setup share within a process (the slowdown caches of the shared-GPU variants) carries
    over only as far as different episodes meet the same co-runner mixes, as in a long
    training run, not because the same episode is replayed.
    """
    rows = []
    for env_id in env_ids:
        cart, rate, alone = 0.0, 0.0, 0.0
        for k in range(repeats):
            cart = max(cart, time_cartpole(steps, clock))
            r, a = time_env(env_id, steps, budget_s, seed=k, clock=clock)
            rate, alone = max(rate, r), max(alone, a)
        per_step = arrivals_per_step(env_id, 20 if rate < 1000 else 2000)
        rows.append({"env": env_id, "steps_per_s": rate, "step_only_per_s": alone,
                     "cartpole_steps_per_s": cart, "cost_vs_cartpole": cart / rate,
                     "arrivals_per_step": per_step,
                     "cost_per_arrival_vs_cartpole": cart / rate / per_step
                     if per_step and per_step > 0 else math.nan})
    return rows


# ------------------------------------------------------------------------------ step breakdown
def lookup_floor_us(env_id: str, requests: int = 200, seed: int = 0,
                    clock: Clock = time.process_time, **kwargs: Any) -> float:
    """Microseconds per request of the numpy primitives a request's embedding lookups need
    and nothing else: the binomial split of each cached table's lookups, their float32
    uniforms, the power that maps them to Zipf ranks, and the sort of their keys (an ideal
    implementation of the lookup model in numpy still pays these)."""
    import envs  # noqa: F401

    env: Any = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=seed)
    lay = env.layout
    rng = np.random.default_rng(seed)
    t0 = clock()
    for _ in range(requests):
        m = rng.binomial(lay.c_n, lay.c_ptracked)
        u = rng.random(int(m.sum()), dtype=lay.c_norm_d.dtype)
        u += 1.0  # the power's argument lies in [1, ...)
        if lay.c_power is None:
            np.exp(u, out=u)
        else:
            np.power(u, lay.c_power, out=u)
        u.view(np.int32 if u.dtype == np.float32 else np.int64).sort()
    return (clock() - t0) / requests * 1e6


def step_breakdown(env_id: str, steps: int, seed: int = 0, clock: Clock = time.process_time,
                   **kwargs: Any) -> dict[str, Any]:
    """Where one ``action_masks()`` + ``step()`` of a sharded-serving env spends its time.

    Times ``steps`` steps (the actions of :func:`time_env`) with timers around the
    simulator's ``_make_subrequests`` (drawing a request's lookups and splitting them into
    sub-requests) and its decision calls ``route``, ``shed`` and ``advance`` (everything the
    simulator does for a decision and up to the next one), restored afterwards; the adapter
    is the rest. The timers add two clock reads per call, so the parts sum to a little more
    than :func:`time_env`'s step. Also the numpy floor of the lookup draws
    (:func:`lookup_floor_us`) per sub-request, and, in passes of their own, the time inside
    compiled code (:func:`compiled_us`) and the API floor (:func:`api_floor_us`) per step.
    """
    import envs  # noqa: F401

    acc = {"lookups": 0.0, "simulation": 0.0}
    timed = {"_make_subrequests": "lookups", "route": "simulation", "shed": "simulation",
             "advance": "simulation"}

    def timer(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapped(*a: Any) -> Any:
            t = clock()
            out = fn(*a)
            acc[key] += clock() - t
            return out
        return wrapped

    env: Any = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=seed)
    # The simulator's class (ShardSim, or its compiled subclass) is the same every episode
    # of the env; its methods are timed as attributes of that class, removed afterwards.
    cls = type(env.sim)
    own = {name for name in timed if name in vars(cls)}
    originals = {name: getattr(cls, name) for name in timed}
    try:
        for name, key in timed.items():
            setattr(cls, name, timer(originals[name], key))
        t0 = clock()
        for _ in cycle_steps(env, steps):
            pass
        total = clock() - t0
    finally:
        for name, fn in originals.items():
            if name in own:
                setattr(cls, name, fn)
            else:
                delattr(cls, name)
    subs = arrivals_per_step(env_id, min(steps, 2000), **kwargs)
    fanout = int(env.n_shards)
    us = 1e6 / steps
    return {"env": env_id, "step_us": total * us, "lookups_us": acc["lookups"] * us,
            "simulation_us": (acc["simulation"] - acc["lookups"]) * us,
            "adapter_us": (total - acc["simulation"]) * us,
            "lookup_floor_us": lookup_floor_us(env_id, seed=seed, clock=clock, **kwargs)
            / fanout * subs,
            "sub_requests_per_step": subs,
            "compiled_us": compiled_us(env_id, steps, seed=seed, clock=clock, **kwargs)[0],
            "api_floor_us": api_floor_us(env_id, steps, clock=clock, **kwargs)}


#: The modules whose compiled kernels :func:`compiled_us` times where Python calls them (a
#: kernel called from another kernel runs inside its caller's time).
KERNEL_MODULES = ("envs.sim.dlrm.segment", "envs.sim.dlrm.kernels", "envs.sim.dlrm.pcg",
                  "envs.sim.dlrm.compiled", "envs.sim.dlrm.cluster", "envs.sim.dlrm.rowcache",
                  "envs.shard", "envs.shard_placement")


def compiled_us(env_id: str, steps: int, seed: int = 0, clock: Clock = time.process_time,
                **kwargs: Any) -> tuple[float, float]:
    """(µs per step inside compiled code, µs per step of that loop) over ``steps`` steps (the
    actions of :func:`time_env`): every numba kernel of :data:`KERNEL_MODULES` that Python
    calls, with numba's call overhead, and numpy's ``power`` (the lookups' Zipf ranks are
    numpy's float32 power, kept numpy's for its bits), each call timed and restored after.
    What is left when every line of Python around them costs nothing: with the same random
    streams and the same kernels, a step cannot cost less. Each timer's own cost (two clock
    reads and a Python call, measured on an empty function) is taken off per call."""
    import importlib

    import envs  # noqa: F401

    acc = [0.0, 0]

    def timer(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*a: Any, **k: Any) -> Any:
            t = clock()
            out = fn(*a, **k)
            acc[0] += clock() - t
            acc[1] += 1
            return out
        wrapped.py_func = getattr(fn, "py_func", fn)  # type: ignore[attr-defined]
        return wrapped  # (the plain Python of a kernel, .py_func, is not timed)

    empty = timer(lambda: None)
    for _ in range(2000):
        empty()
    own = acc[0] / acc[1]
    acc[:] = [0.0, 0]
    env: Any = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=seed)
    for _ in cycle_steps(env, min(steps, 500)):  # (numba loads its cached kernels)
        pass
    patched: list[tuple[Any, str, Any]] = [(np, "power", np.power)]
    for name in KERNEL_MODULES:
        mod = importlib.import_module(name)
        patched += [(mod, k, v) for k, v in vars(mod).items()
                    if hasattr(v, "py_func") and hasattr(v, "signatures")]
    try:
        for mod, k, v in patched:
            setattr(mod, k, timer(v))
        t0 = clock()
        for _ in cycle_steps(env, steps):
            pass
        total = clock() - t0
    finally:
        for mod, k, v in patched:
            setattr(mod, k, v)
    inside = max(acc[0] - acc[1] * own, 0.0)
    return inside / steps * 1e6, total / steps * 1e6


class ApiFloorEnv:
    """The least a Python Gymnasium env with ``env_id``'s observation and info can do per
    step: ``action_masks()`` returns a copy of a mask, ``step()`` a new dict of the
    observation's keys (views of one float32 buffer, as ShardRouting's are) and a copy of an
    info dict with the same keys; no simulation at all. :func:`api_floor_us` times it."""

    def __init__(self, obs: Mapping[str, np.ndarray], info: Mapping[str, Any],
                 actions: int) -> None:
        sizes = [int(np.asarray(v).size) for v in obs.values()]
        edges = np.cumsum([0, *sizes]).tolist()
        self._buf = np.zeros(edges[-1], dtype=np.float32)
        self._slices = [(k, slice(a, b)) for k, a, b in zip(obs, edges, edges[1:], strict=False)]
        self._info = dict(info)
        self._mask = np.ones(actions, dtype=bool)

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool,
                                         dict[str, Any]]:
        buf = self._buf
        return ({k: buf[s] for k, s in self._slices}, 0.0, False, False, self._info.copy())


def api_floor_us(env_id: str, steps: int, clock: Clock = time.process_time,
                 **kwargs: Any) -> float:
    """µs per ``action_masks()`` + ``step()`` of :class:`ApiFloorEnv` for ``env_id`` (its
    observation's keys and sizes and its info's keys, from a reset), in :func:`time_env`'s
    loop: what the Gymnasium API with this observation costs in Python by itself."""
    import envs  # noqa: F401

    env: Any = gym.make(env_id, **kwargs).unwrapped
    obs, info = env.reset(seed=0)
    if not isinstance(obs, Mapping):
        obs = {"obs": obs}
    floor = ApiFloorEnv(obs, info, int(env.action_space.n))
    masks, step = floor.action_masks, floor.step
    k = 0
    t0 = clock()
    for _ in range(steps):
        mask = masks()
        k = (k + 1) % len(mask)
        while not mask[k]:
            k = (k + 1) % len(mask)
        _, _, term, trunc, _ = step(k)
        if term or trunc:  # (never: kept as time_env's loop has it)
            break
    return (clock() - t0) / steps * 1e6


def bench_breakdown(env_ids: Sequence[str], steps: int, repeats: int,
                    clock: Clock = time.process_time) -> list[dict[str, Any]]:
    """:func:`step_breakdown` per env, the round with the fastest step, and CartPole's step
    timed in the same rounds."""
    rows = []
    for env_id in env_ids:
        best: dict[str, Any] | None = None
        cart = 0.0
        for k in range(repeats):
            cart = max(cart, time_cartpole(20000, clock))
            row = step_breakdown(env_id, steps, seed=k, clock=clock)
            if best is None or row["step_us"] < best["step_us"]:
                best = row
        assert best is not None
        best["cartpole_us"] = 1e6 / cart
        rows.append(best)
    return rows


# ------------------------------------------------------------------------------------- profile
def profile_env(env_id: str, steps: int, out: Path, seed: int = 0, warmup: int = 500,
                interval_s: float = 1e-3) -> Path:
    """Profile ``steps`` steps of ``env_id`` (the actions of :func:`time_env`) with pyinstrument
    after ``warmup`` unprofiled ones (numba compiles, caches fill): writes ``profile.html``
    (the call tree to explore in a browser) and ``profile.txt`` (the call tree, then the
    functions by their own time: the hot spots) into ``out``. Returns the text file."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise UserError("profile: pyinstrument is not installed (pip install pyinstrument)"
                        ) from None
    import envs  # noqa: F401

    env: Any = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    for _ in cycle_steps(env, warmup):
        pass
    profiler = Profiler(interval=interval_s)
    profiler.start()
    t0 = time.perf_counter()
    for _ in cycle_steps(env, steps):
        pass
    took = time.perf_counter() - t0
    profiler.stop()
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "profile.html", profiler.output_html())
    head = (f"{env_id}: {steps:,} steps (action_masks + step) in {took:.2f} s under the "
            f"profiler, {took / steps * 1e6:.1f} µs/step\n\n")
    text = (head + profiler.output_text(unicode=True, color=False)
            + "\nBy own time (hot spots):\n\n" + profiler.output_text(
                unicode=True, color=False, flat=True))
    write_atomic(out / "profile.txt", text)
    return out / "profile.txt"


# ---------------------------------------------------------------------------------- baselines
def _timed(clock: Clock, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    t0 = clock()
    fn(*args, **kwargs)
    return clock() - t0


def _replayer(actions: Sequence[int]) -> Callable[[int, tuple[float, ...]], int]:
    nxt = iter(actions).__next__
    return lambda k, x: nxt()


def bench_baselines(env_id: str, policies: Sequence[str], queries: int, slow_queries: int,
                    repeats: int, servers: int = 4, load: float = 0.8,
                    clock: Clock = time.process_time) -> list[dict[str, Any]]:
    """Queries/s of each heuristic: the fast path, the Python kernels, the ordinary loop, and
    the M/M/c reference.

    The fast path is what ``experiments.evaluate`` runs: a compiled episode
    (:mod:`envs.sim.device.compiled`) where the env and policy allow it, else the Python kernels of
    :mod:`agents.fast_eval`. Every round times the M/M/c loop and each policy's paths once
    (interleaved, so a burst of load on a shared machine hits all of them); the best round
    counts. The ordinary ``reset``/``step`` loop is timed on ``slow_queries`` (it is many
    times slower). A "replayed" row times the simulator alone: the last policy's recorded
    decisions fed back without features.
    """
    import envs  # noqa: F401
    from agents import fast_eval
    from agents.baselines import make_baseline
    from agents.evaluation import run_episode

    env = gym.make(env_id, episode_queries=queries)
    slow_env = gym.make(env_id, episode_queries=slow_queries)
    inner = fast_eval.rollout_env(env)
    replay: list[int] = []
    can_compile = False
    if inner is not None and policies:
        policy = make_baseline(policies[-1], env_id)
        can_compile = fast_eval.compiled_rule(inner, policy) is not None
        policy.reset(0)
        kernel = fast_eval.kernel_for(inner, policy)

        def record(k: int, x: tuple[float, ...]) -> int:
            replay.append(kernel.decide(k, x))
            return replay[-1]

        inner.rollout(record, kernel.features, seed=0)
        for name in policies:  # compile (or load the compiled code) outside the timings
            run_episode(env, make_baseline(name, env_id), 0)
    actions = np.array(replay, dtype=np.int64)
    keys = ["mmc", "replay", "replay_jit", *policies, *(f"py:{p}" for p in policies)]
    best = dict.fromkeys(keys, math.inf)

    def python_path(name: str) -> float:
        policy = make_baseline(name, env_id)
        return _timed(clock, fast_eval.run_fast, env, policy, 0, compiled=False)

    for _ in range(repeats):
        best["mmc"] = min(best["mmc"], _timed(clock, mmc_reference, queries, servers, load))
        for name in policies:
            policy = make_baseline(name, env_id)
            best[name] = min(best[name], _timed(clock, run_episode, env, policy, 0))
            if inner is not None and fast_eval.supports(env, policy):
                best[f"py:{name}"] = min(best[f"py:{name}"], python_path(name))
        if inner is not None and replay:
            best["replay"] = min(best["replay"],
                                 _timed(clock, inner.rollout, _replayer(replay), (), seed=0))
            if can_compile:
                best["replay_jit"] = min(best["replay_jit"], _timed(
                    clock, fast_eval.run_compiled, inner, None, 0, actions=actions))
    mmc_rate = queries / best["mmc"]
    rows: list[dict[str, Any]] = []

    def rate(key: str) -> float:
        return queries / best[key] if math.isfinite(best[key]) else math.nan

    if replay:
        fast = rate("replay_jit") if can_compile else rate("replay")
        rows.append({"env": env_id, "policy": f"{policies[-1]} replayed (simulator only)",
                     "fast_queries_per_s": fast, "compiled": can_compile,
                     "python_queries_per_s": rate("replay"),
                     "mmc_queries_per_s": mmc_rate, "ratio_vs_mmc": fast / mmc_rate})
    for name in policies:
        policy = make_baseline(name, env_id)
        slow = min(_timed(clock, run_episode, slow_env, policy, 0, fast=False)
                   for _ in range(max(1, repeats // 2)))
        fast_rate = rate(name)
        rows.append({"env": env_id, "policy": name, "fast_queries_per_s": fast_rate,
                     "compiled": inner is not None
                     and fast_eval.compiled_rule(inner, policy) is not None,
                     "python_queries_per_s": rate(f"py:{name}"),
                     "step_loop_queries_per_s": slow_queries / slow,
                     "speedup": fast_rate * slow / slow_queries,
                     "mmc_queries_per_s": mmc_rate, "ratio_vs_mmc": fast_rate / mmc_rate})
    return rows


# ---------------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class ScalingAxis:
    """One axis of the scaling table: an env id and the kwargs that move along the axis.

    Adding an axis (for this env or another, e.g. ``nodes`` of a ShardRouting env) is one
    entry in :data:`SCALING_AXES`; axes of environments that are not registered are skipped.

    Attributes:
        name: Axis label (table column, plot title).
        env_id: Registered environment id.
        points: Point label -> env kwargs at that point.
        policy: Baseline (of the env's registry) that drives the per-query measurement; it
            goes through the fast path where the env offers one, else through the step loop.
        scale: Fraction of the configured queries and steps to run per point (slower envs).
    """

    name: str
    env_id: str
    points: Mapping[str, Mapping[str, Any]]
    policy: str = "shortest_finish"
    scale: float = 1.0


_A100_LAYOUTS = {
    "1": ["7g"], "2": ["4g", "3g"], "3": ["4g", "2g", "1g"], "4": ["3g", "2g", "1g", "1g"],
    "5": ["2g", "2g", "1g", "1g", "1g"], "6": ["2g", "1g", "1g", "1g", "1g", "1g"],
    "7": ["1g"] * 7,
}

#: The scaling axes measured by default.
SCALING_AXES: tuple[ScalingAxis, ...] = (
    ScalingAxis("MIG slices", "ldsgym/PartitionPlacement-v0",
                {k: {"layout": v} for k, v in _A100_LAYOUTS.items()}),
    ScalingAxis("offered load", "ldsgym/PartitionPlacement-v0",
                {f"{x:.1f}": {"load": x} for x in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)}),
    ScalingAxis("nodes", "ldsgym/ShardRouting-v0",
                {str(n): {"nodes": n} for n in (4, 8, 16, 32, 64)},
                policy="least_outstanding", scale=0.1),
    ScalingAxis("tables", "ldsgym/ShardRouting-v0",
                {str(n): {"tables": n} for n in (8, 32, 128, 512)},
                policy="least_outstanding", scale=0.1),
    ScalingAxis("devices", "ldsgym/ClusterRouting-v0",
                {n: {"cluster": n} for n in ("8", "16", "64", "1024")},
                policy="least_loaded", scale=0.1),
)


def bench_scaling(axes: Sequence[ScalingAxis], queries: int, steps: int,
                  repeats: int, clock: Clock = time.process_time) -> list[dict[str, Any]]:
    """Microseconds per query (fast path) and per env step at every point of every axis."""
    import envs
    from agents.baselines import make_baseline
    from agents.evaluation import run_episode

    rows: list[dict[str, Any]] = []
    for axis in axes:
        if axis.env_id not in envs.registered_ids():
            continue
        first: dict[str, float] = {}
        n_q, n_s = max(int(queries * axis.scale), 10), max(int(steps * axis.scale), 10)
        for point, kwargs in axis.points.items():
            env = gym.make(axis.env_id, episode_queries=n_q, **kwargs)
            policy = make_baseline(axis.policy, axis.env_id)
            episode = min(_timed(clock, run_episode, env, policy, 0) for _ in range(repeats))
            step_rate = max(time_env(axis.env_id, n_s, clock=clock, **kwargs)[0]
                            for _ in range(repeats))
            query_us, step_us = episode / n_q * 1e6, 1e6 / step_rate
            first = first or {"query": query_us, "step": step_us}
            rows.append({"axis": axis.name, "env": axis.env_id, "point": point,
                         "policy": axis.policy, "us_per_query": query_us,
                         "query_rel": query_us / first["query"], "step_us": step_us,
                         "step_rel": step_us / first["step"]})
    return rows


def plot_scaling(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One panel per axis: microseconds per query (fast path) and per env step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["axis"] for r in rows))
    cols = min(max(len(names), 1), 2)
    nrows = max(math.ceil(len(names) / cols), 1)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        sel = [r for r in rows if r["axis"] == name]
        x = [r["point"] for r in sel]
        ax.plot(x, [r["us_per_query"] for r in sel], "o-",
                label=f"per query ({sel[0]['policy']}, whole episodes)")
        ax.plot(x, [r["step_us"] for r in sel], "s-", label="env step (masks + step)")
        ax.set_title(f"{name} — {sel[0]['env']}")
        ax.set_xlabel(name)
        ax.set_ylabel("microseconds")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- memory
def _proc_status_mb(key: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process from ``/proc/self/status`` (Linux), in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Make the peak-RSS mark the current RSS (Linux >= 4.0: ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_probe(env_id: str, queries: int, policy_name: str, seed: int = 0,
                 traced: bool = False, compiled: bool = False) -> dict[str, Any]:
    """Peak memory of one fast-path episode in *this* process (run it in a fresh one):
    the Python rollout (the simulator the RL step loop runs) or, with ``compiled``, the
    compiled episode (:func:`agents.fast_eval.run_compiled`).

    Reports the trace's own arrays, the peak while the trace is drawn (``reset``) and what
    the simulation of the episode adds on top of where it started. By default from the
    process's resident set (``/proc/self/status``; the peak mark is reset between the two
    phases, so Linux only, else ``nan``); with ``traced=True`` from ``tracemalloc`` (exact
    Python and numpy allocations, but about ten times slower).
    """
    import tracemalloc

    import envs  # noqa: F401
    from agents import fast_eval
    from agents.baselines import make_baseline

    env: Any = gym.make(env_id, episode_queries=queries).unwrapped
    policy = make_baseline(policy_name, env_id)
    policy.reset(seed)
    kernel = fast_eval.kernel_for(env, policy)
    if compiled:  # compile (or load) the code before measuring
        fast_eval.run_compiled(gym.make(env_id, episode_queries=100).unwrapped, policy, seed)
        policy.reset(seed)
    nan = float("nan")
    rss_start = _proc_status_mb("VmRSS") or nan
    if traced:
        tracemalloc.start()
    env.reset(seed=seed)
    if traced:
        at_start, peak_reset = (x / 2**20 for x in tracemalloc.get_traced_memory())
        tracemalloc.reset_peak()
    else:
        at_start = _proc_status_mb("VmRSS") or nan
        peak_reset = (_proc_status_mb("VmHWM") or nan) - rss_start
        if not _reset_peak_rss():
            at_start = nan
    trace_bytes = env.sim.trace_nbytes
    t0 = time.perf_counter()
    if compiled:
        result = fast_eval.run_compiled(env, policy, None, reset=False)
    else:
        result = env.rollout(kernel.decide, kernel.features, reset=False)
    wall = time.perf_counter() - t0
    if traced:
        peak_run = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        peak_run = _proc_status_mb("VmHWM") or nan
    return {"queries": queries, "completed": result["completed"],
            "path": "compiled" if compiled else "Python",
            "method": "tracemalloc" if traced else "rss",
            "queries_per_s": queries / wall, "trace_mb": trace_bytes / 2**20,
            "reset_peak_mb": peak_reset, "sim_growth_mb": peak_run - at_start,
            "rss_start_mb": rss_start, "rss_peak_mb": _proc_status_mb("VmHWM") or nan}


def bench_memory(env_id: str, sizes: Sequence[int], policy: str,
                 traced: bool = False) -> list[dict[str, Any]]:
    """:func:`memory_probe` for every size and both paths (the Python simulator, and the
    compiled episode where numba is installed), each in a fresh Python process."""
    from envs.sim.device import compiled as gpu_jit

    rows = []
    for compiled, n in [(c, n) for c in (False, True)[:1 + gpu_jit.AVAILABLE] for n in sizes]:
        code = ("import json, sys; from experiments.bench import memory_probe; "
                f"print(json.dumps(memory_probe({env_id!r}, {int(n)}, {policy!r}, "
                f"traced={bool(traced)}, compiled={compiled})))")
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"memory probe ({n} queries) failed: {out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"env": env_id, "policy": policy, "probe": f"{env_id} ({row['path']})",
                     **row})
    return rows


# ---------------------------------------------------------------------------------- report
@dataclass
class BenchResults:
    """Everything one bench run measured, plus when and where."""

    env_steps: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    repartition: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


_SECTION_KEYS = {
    "env_step": ("env_steps", "env", None),
    "baseline": ("baselines", "policy", None),
    "scaling": ("scaling", "axis", "point"),
    "memory": ("memory", "probe", "queries"),
    "traces": ("traces", "what", None),
    "breakdown": ("breakdown", "env", None),
    "repartition": ("repartition", "path", "sharing"),
}


def bench_traces(generated: int, replay_rows: int, repeats: int) -> list[dict[str, Any]]:
    """Arrival generation per synthetic preset (arrivals/s) and a cold CSV replay (seconds)."""
    import tempfile

    from traces.bench import bench_generation_by_preset, bench_replay

    rows: list[dict[str, Any]] = [
        {"what": f"generate `{name}`", "value": rate, "unit": "arrivals/s",
         "goal": 10e6, "met": rate >= 10e6}
        for name, rate in bench_generation_by_preset(generated, repeats).items()
    ]
    if replay_rows:
        with tempfile.TemporaryDirectory() as tmp:
            secs = bench_replay(tmp, replay_rows, repeats)
        rows.append({"what": f"replay a {replay_rows:,}-row CSV", "value": secs, "unit": "s",
                     "goal": 2.0 * replay_rows / 1e6, "met": secs <= 2.0 * replay_rows / 1e6})
    return rows


#: The sharing modes of section 7 and their starting layouts: ``Repartition-v0``'s MIG layout
#: and ``Repartition-MPS-v0``'s shares (with interference, the default for MPS).
REPARTITION_SHARINGS = {"mig": ("3g", "2g", "1g", "1g"),
                        "mps": ("mps:40", "mps:30", "mps:15", "mps:15")}
#: Issue 16's goal per sharing mode: an hour-long episode in at most this many seconds.
REPARTITION_GOAL_S = {"mig": 10.0, "mps": 30.0}


def repartition_episode(compiled: bool, episode_s: float, interval_s: float, trace: str,
                        load: float, seed: int = 0, sharing: str = "mig",
                        clock: Clock = time.process_time) -> dict[str, Any]:
    """One ``Repartition-v0`` episode (the starting layout of ``sharing`` in
    :data:`REPARTITION_SHARINGS`, the default candidates) with a fixed schedule: keep, and
    every sixth interval switch to the next candidate (the one after it where that is the
    layout held; when allowed), so that drains and downtimes are simulated too. Returns the
    seconds of ``reset`` (drawing the trace) and of the steps, and the final ``info``."""
    from envs.repartition import RepartitionEnv

    env = RepartitionEnv(layout=REPARTITION_SHARINGS[sharing], trace=trace, load=load,
                         episode_s=episode_s, interval_s=interval_s, compiled=compiled)
    t0 = clock()
    env.reset(seed=seed)
    t1 = clock()
    done = False
    step = 0
    info: dict[str, Any] = {}
    while not done:
        a = 0
        if step % 6 == 5:
            mask = env.action_masks()
            k = 1 + (step // 6) % env.n_layouts
            if env.layout_name(k - 1) == env.layout_name():  # held: the next one instead
                k = 1 + k % env.n_layouts
            a = k if mask[k] else 0
        _, _, term, trunc, info = env.step(a)
        step += 1
        done = term or trunc
    t2 = clock()
    return {"reset_s": t1 - t0, "steps_s": t2 - t1, "steps": step, "info": info}


def bench_repartition(episode_s: float, interval_s: float, trace: str, load: float,
                      repeats: int, python: bool = True,
                      sharings: Sequence[str] = ("mig",),
                      clock: Clock = time.process_time) -> list[dict[str, Any]]:
    """A ``Repartition-v0`` episode per sharing mode (:data:`REPARTITION_SHARINGS`) through the
    compiled interval and (``python``) the Python loop, best of ``repeats`` interleaved rounds
    each (a first, untimed episode warms numba's cache); the projection to an hour scales both
    parts with the simulated time. ``equal``: the final ``info`` of the two paths is the same
    (the tests check every step)."""
    from envs.sim.device import compiled_shared

    paths = ([True] if compiled_shared.AVAILABLE else []) + ([False] if python else [])
    runs = [(sh, c) for sh in sharings for c in paths]
    if compiled_shared.AVAILABLE:
        for sh in sharings:
            repartition_episode(True, min(episode_s, 2 * interval_s), interval_s, trace, load,
                                sharing=sh)
    best: dict[tuple[str, bool], dict[str, Any]] = {}
    for _ in range(repeats):
        for key in runs:
            r = repartition_episode(key[1], episode_s, interval_s, trace, load,
                                    sharing=key[0], clock=clock)
            if key not in best or r["reset_s"] + r["steps_s"] < best[key]["reset_s"] + \
                    best[key]["steps_s"]:
                best[key] = r
    rows = []
    for sh, c in runs:
        r = best[sh, c]
        infos = [best[sh, x]["info"] for x in paths]
        queries = int(r["info"]["arrived"])
        scale = 3600.0 / episode_s
        rows.append({
            "path": "compiled" if c else "Python", "sharing": sh, "episode_s": episode_s,
            "interval_s": interval_s, "queries": queries, "steps": r["steps"],
            "reconfigurations": int(r["info"]["reconfigurations"]),
            "reset_s": r["reset_s"], "steps_s": r["steps_s"],
            "queries_per_s": queries / r["steps_s"],
            "hour_s": (r["reset_s"] + r["steps_s"]) * scale,
            "hour_steps_s": r["steps_s"] * scale,
            "equal": all(i == infos[0] for i in infos) if len(infos) > 1 else None})
    return rows


def to_csv(res: BenchResults) -> str:
    """Long format: one row per measured number (``section,name,point,metric,value``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "name", "point", "metric", "value"])
    for section, (attr, name_key, point_key) in _SECTION_KEYS.items():
        for row in getattr(res, attr):
            point = row[point_key] if point_key else ""
            for metric, value in row.items():
                if metric in (name_key, point_key) or isinstance(value, str) or value is None:
                    continue
                if isinstance(value, bool):
                    value = int(value)
                w.writerow([section, row[name_key], point, metric, value])
    return buf.getvalue()


def _goal(ok: bool) -> str:
    return "met" if ok else "**not met**"


_CLOCK_WORDS = {"cpu": "this process's CPU time (sections 4 and 5: wall time)",
                "wall": "wall time"}


def to_markdown(res: BenchResults) -> str:
    """``bench.md``: the tables and the goals."""
    m = res.meta
    lines = [
        f"Measured {m.get('date', '?')} on {m.get('machine', '?')} ({m.get('cpus', '?')} CPUs), "
        f"Python {m.get('python', '?')}, numpy {m.get('numpy', '?')}; best of "
        f"{m.get('repeats', '?')} interleaved rounds, timed in "
        f"{_CLOCK_WORDS.get(m.get('clock', 'wall'), '?')}. Load average (1/5/15 min) before: "
        f"{m.get('load_before', '?')}, after: {m.get('load_after', '?')}; wall time "
        f"{m.get('wall_s', 0):.0f} s ({m.get('sections', '')}).",
        "",
    ]
    if res.env_steps:
        lines += ["### Env steps (RL loop) vs CartPole-v1", "",
                  "Arrivals/step: requests arriving per step (`info[\"arrived\"]`; "
                  "ShardRouting and ShardPlacement count sub-requests); per-arrival cost: the "
                  "step cost divided by them (a Repartition step simulates a whole interval, "
                  "a ShardPlacement step a whole request).", "",
                  "| environment | env steps/s (masks + step) | step() alone/s "
                  "| CartPole-v1 raw steps/s | step cost / CartPole step | arrivals/step "
                  "| per-arrival cost / CartPole step |",
                  "|---|---:|---:|---:|---:|---:|---:|"]

        def per(r: Mapping[str, Any], key: str, fmt: str, unit: str = "") -> str:
            v = r.get(key, math.nan)
            return "—" if v is None or math.isnan(v) else format(v, fmt) + unit

        for r in res.env_steps:
            lines.append(f"| `{r['env']}` | {r['steps_per_s']:,.0f} | {r['step_only_per_s']:,.0f}"
                         f" | {r['cartpole_steps_per_s']:,.0f} | {r['cost_vs_cartpole']:.2f}x "
                         f"| {per(r, 'arrivals_per_step', ',.1f')} "
                         f"| {per(r, 'cost_per_arrival_vs_cartpole', '.2f', 'x')} |")
        per_step = [r for r in res.env_steps if r["cost_vs_cartpole"] <= 3.0]
        per_arrival = [r for r in res.env_steps if r["cost_vs_cartpole"] > 3.0
                       and r.get("arrivals_per_step", 1.0) > 1.5
                       and r.get("cost_per_arrival_vs_cartpole", math.inf) <= 3.0]
        over = [r for r in res.env_steps if r not in per_step and r not in per_arrival]
        text = (f"Goal: env step at most 3x a CartPole step — met by {len(per_step)} of "
                f"{len(res.env_steps)} environments")
        if per_arrival:
            each = ", ".join(f"`{r['env']}` {r['cost_per_arrival_vs_cartpole']:.2f}x"
                             for r in per_arrival)
            text += (f"; by {len(per_arrival)} more per simulated arrival, whose step "
                     f"simulates many ({each})")
        if over:
            text += "; **not met** by " + ", ".join(
                f"`{r['env']}` {r['cost_vs_cartpole']:.1f}x"
                + (f" ({r['cost_per_arrival_vs_cartpole']:.1f}x per sub-request)"
                   if r.get("arrivals_per_step", 1.0) > 1.5 else "") for r in over)
        lines += ["", text + ".", ""]
    if res.baselines:
        b0 = res.baselines[0]
        lines += [f"### Baselines over a long trace, no RL (`{b0['env']}`)", "",
                  "Fast path (what `experiments.evaluate` runs for heuristics: a compiled "
                  "episode, `envs/sim/device/compiled.py`, where marked, else the Python "
                  "kernels of "
                  "`agents.fast_eval`; the same metrics as stepping, tested), the Python "
                  "kernels alone, the `reset`/`step` loop, and a plain heapq M/M/c event loop "
                  f"({m.get('mmc', '')}) timed in the same rounds. Episodes include drawing "
                  "the trace.", "",
                  "| policy | fast path queries/s | compiled | Python kernels queries/s "
                  "| step loop queries/s | fast / step loop | M/M/c queries/s | fast / M/M/c |",
                  "|---|---:|:-:|---:|---:|---:|---:|---:|"]

        def num(x: Any) -> str:
            return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.0f}"

        for r in res.baselines:
            slow = (f"{r['step_loop_queries_per_s']:,.0f} | {r['speedup']:.1f}x"
                    if "speedup" in r else "— | —")
            jit = "yes" if r.get("compiled") else "no"
            lines.append(f"| {r['policy']} | {num(r['fast_queries_per_s'])} | {jit} "
                         f"| {num(r.get('python_queries_per_s'))} | {slow} "
                         f"| {r['mmc_queries_per_s']:,.0f} | {r['ratio_vs_mmc']:.2f}x |")
        ratios = [r["ratio_vs_mmc"] for r in res.baselines if "speedup" in r]
        best, worst = max(ratios), min(ratios)
        lines += ["", f"Goal: at least 0.5x the M/M/c rate — {_goal(worst >= 0.5)} "
                  f"({worst:.2f}x to {best:.2f}x).", ""]
    if res.scaling:
        lines += ["### Cost per query along each axis", "",
                  "Per query: a whole episode of the baseline named, through the fast path "
                  "where the env has one (else the step loop); per step: `action_masks()` + "
                  "`step()`. Relative: to the axis's first point.", "",
                  "| axis | point | env (baseline) | µs/query | relative | env step µs "
                  "| relative |", "|---|---|---|---:|---:|---:|---:|"]
        for r in res.scaling:
            lines.append(f"| {r['axis']} | {r['point']} | `{r['env']}` ({r['policy']}) "
                         f"| {r['us_per_query']:.2f} | {r['query_rel']:.2f} "
                         f"| {r['step_us']:.2f} | {r['step_rel']:.2f} |")
        lines += ["", f"![scaling]({m.get('plot', 'bench_scaling.png')})", ""]
    if res.memory:
        how = ("tracemalloc" if res.memory[0]["method"] == "tracemalloc"
               else "resident set, peak mark reset between the phases")
        lines += [f"### Memory of one episode (`{res.memory[0]['env']}`, "
                  f"{res.memory[0]['policy']}, fast path, a fresh process each; {how})", "",
                  "| path | queries | trace arrays MB | drawing the trace adds (peak) MB "
                  "| the simulation adds (peak) MB | process peak RSS MB | queries/s |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in res.memory:
            lines.append(f"| {r.get('path', 'Python')} | {r['queries']:,} | {r['trace_mb']:.1f}"
                         f" | {r['reset_peak_mb']:.1f} "
                         f"| {r['sim_growth_mb']:.2f} | {r['rss_peak_mb']:.0f} "
                         f"| {r['queries_per_s']:,.0f} |")
        growth = [r["sim_growth_mb"] for r in res.memory]
        by_path: dict[str, list[float]] = {}
        for r in res.memory:
            by_path.setdefault(r.get("path", "Python"), []).append(r["sim_growth_mb"])
        flat = all(max(g) <= 2 * min(g) + 2.0 for g in by_path.values())
        per_q = (res.memory[-1]["trace_mb"] * 2**20 / res.memory[-1]["queries"]
                 if res.memory[-1]["queries"] else 0.0)
        lines += ["", f"Goal: memory flat over the episode — {_goal(flat)}: the simulation "
                  f"adds {min(growth):.2f}–{max(growth):.2f} MB whatever the length (histogram "
                  "of fixed size, lazily read quantiles, a window of the trace as Python "
                  "lists, queues bounded by their capacity). What grows is the trace itself, "
                  f"the episode's input: {per_q:.0f} bytes/query in numpy arrays, and the "
                  "transient peak of drawing it (`traces/`) at the start of the episode.", ""]
    if res.breakdown:
        lines += ["### Where a sharded-serving step's time goes", "",
                  "µs per `action_masks()` + `step()`, split by timers around the simulator's "
                  "lookup drawing (`ShardSim._make_subrequests`: a request's ~7,500 Zipf "
                  "lookups drawn, sorted, deduplicated and split into sub-requests, "
                  "amortised over its sub-requests) and the rest of the simulator's decision "
                  "calls, `route`/`shed` and `advance` (events: links, queues, row caches, "
                  "service, delivery); the adapter is the rest (masks, the observation with "
                  "its predictions, reward, info; ShardPlacement's built-in router). Numpy "
                  "floor: the binomial, uniform, power and sort calls of the lookups alone, "
                  "with nothing around them. Compiled: the time inside the compiled kernels "
                  "and numpy's power in the same loop (a second pass with a timer on each "
                  "call, its own cost taken off), the step if every line of Python around "
                  "them cost nothing; API floor: a Gymnasium env with the same observation "
                  "and info and no simulation (`ApiFloorEnv`). Bound: (compiled + API floor) "
                  "/ CartPole per sub-request, the least ratio these kernels and this "
                  "observation allow with the same random streams.", "",
                  "| environment | sub-requests/step | step µs | lookups µs | numpy floor µs "
                  "| other simulation µs | adapter µs | compiled µs | API floor µs "
                  "| CartPole step µs | floor / CartPole | bound / CartPole per sub-request |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res.breakdown:
            bound = ((r["compiled_us"] + r["api_floor_us"]) / r["cartpole_us"]
                     / max(r["sub_requests_per_step"], 1e-9))
            lines.append(f"| `{r['env']}` | {r['sub_requests_per_step']:.1f} "
                         f"| {r['step_us']:.1f} | {r['lookups_us']:.1f} "
                         f"| {r['lookup_floor_us']:.1f} | {r['simulation_us']:.1f} "
                         f"| {r['adapter_us']:.1f} | {r['compiled_us']:.1f} "
                         f"| {r['api_floor_us']:.1f} | {r['cartpole_us']:.2f} "
                         f"| {r['lookup_floor_us'] / r['cartpole_us']:.2f}x | {bound:.2f}x |")
        lines.append("")
    if res.repartition:
        r0 = res.repartition[0]
        lines += [f"### A Repartition episode (`Repartition-v0`, `{m.get('rp_trace', '')}`"
                  f", load {m.get('rp_load', '')}, {r0['episode_s']:.0f} s of simulated "
                  f"time, T = {r0['interval_s']:.0f} s)", "",
                  "Each interval through the compiled loop (`envs/sim/device/compiled_shared"
                  ".py`, the default) or the Python loop (`compiled=False`, the reference); "
                  "MIG from `3g+2g+1g+1g`, MPS from `Repartition-MPS-v0`'s shares 40/30/15/15 "
                  "with interference; a switch every sixth interval. Reset: drawing the trace "
                  "(numpy, the same for both); steps: routing and simulating every query. "
                  "The hour columns scale both to 3,600 s of simulated time.", "",
                  "| sharing | path | queries | reconfigurations | reset s | steps s "
                  "| queries/s (steps) | hour: steps s | hour: reset + steps s | equal |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|:-:|"]
        for r in res.repartition:
            lines.append(f"| {r['sharing'].upper()} | {r['path']} | {r['queries']:,} "
                         f"| {r['reconfigurations']} "
                         f"| {r['reset_s']:.2f} | {r['steps_s']:.2f} "
                         f"| {r['queries_per_s']:,.0f} | {r['hour_steps_s']:.1f} "
                         f"| {r['hour_s']:.1f} | "
                         f"{'—' if r['equal'] is None else 'yes' if r['equal'] else '**no**'} |")
        fast = [r for r in res.repartition if r["path"] == "compiled"]
        if fast:
            parts = []
            for r in fast:
                limit = REPARTITION_GOAL_S[r["sharing"]]
                parts.append(f"{r['sharing'].upper()} in at most {limit:.0f} s: steps "
                             f"{_goal(r['hour_steps_s'] <= limit)} ({r['hour_steps_s']:.1f} s), "
                             f"with the trace drawn {_goal(r['hour_s'] <= limit)} "
                             f"({r['hour_s']:.1f} s)")
            lines += ["", "Goal (issue 16): an hour-long episode on one core — "
                      + "; ".join(parts) + "."]
        lines.append("")
    if res.traces:
        lines += ["### Traces (`traces/`)", "",
                  "| what | measured | goal | |", "|---|---:|---:|---|"]
        for r in res.traces:
            fmt = (f"{r['value'] / 1e6:.1f} M {r['unit']}" if r["unit"] == "arrivals/s"
                   else f"{r['value']:.2f} {r['unit']}")
            goal = (f">= {r['goal'] / 1e6:.0f} M/s" if r["unit"] == "arrivals/s"
                    else f"<= {r['goal']:.1f} s")
            lines.append(f"| {r['what']} | {fmt} | {goal} | {_goal(bool(r['met']))} |")
        lines.append("")
    return "\n".join(lines)


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_bench(*, env_ids: Sequence[str], steps: int, repeats: int, step_budget_s: float,
              baseline_env: str,
              policies: Sequence[str], queries: int, slow_queries: int, mmc_servers: int,
              mmc_load: float, scaling_axes: Sequence[ScalingAxis], scaling_queries: int,
              scaling_steps: int, memory_sizes: Sequence[int], memory_policy: str,
              memory_traced: bool = False, trace_generated: int = 0,
              trace_replay_rows: int = 0, breakdown_envs: Sequence[str] = (),
              breakdown_steps: int = 0, repartition_episode_s: float = 0.0,
              repartition_interval_s: float = 10.0, repartition_trace: str = "mix-swing",
              repartition_load: float = 1.0,
              repartition_python: bool = True,
              repartition_sharings: Sequence[str] = ("mig",),
              clock: str = "cpu") -> BenchResults:
    """All seven measurements (a section with no size, e.g. ``memory_sizes=[]``, is
    skipped), timed with ``CLOCKS[clock]`` (the memory probes and the trace section read wall
    time: a probe's rate is a by-product, a trace's replay includes reading the file)."""
    now = CLOCKS[clock]
    t0 = time.perf_counter()
    res = BenchResults(meta={
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "repeats": repeats, "load_before": _load(), "clock": clock,
        "mmc": f"{mmc_servers} servers, utilisation {mmc_load}, {queries:,} queries",
    })
    took: dict[str, float] = {}
    t = time.perf_counter()
    if env_ids and steps:
        res.env_steps = bench_env_steps(env_ids, steps, repeats, step_budget_s, now)
        took["env steps"], t = time.perf_counter() - t, time.perf_counter()
    if policies and queries:
        res.baselines = bench_baselines(baseline_env, policies, queries, slow_queries, repeats,
                                        mmc_servers, mmc_load, now)
        took["baselines"], t = time.perf_counter() - t, time.perf_counter()
    if scaling_axes and scaling_queries:
        res.scaling = bench_scaling(scaling_axes, scaling_queries, scaling_steps, repeats, now)
        took["scaling"], t = time.perf_counter() - t, time.perf_counter()
    if memory_sizes:
        res.memory = bench_memory(baseline_env, memory_sizes, memory_policy, memory_traced)
        took["memory"], t = time.perf_counter() - t, time.perf_counter()
    if trace_generated:
        res.traces = bench_traces(trace_generated, trace_replay_rows, repeats)
        took["traces"], t = time.perf_counter() - t, time.perf_counter()
    if breakdown_envs and breakdown_steps:
        res.breakdown = bench_breakdown(breakdown_envs, breakdown_steps, repeats, now)
        took["breakdown"], t = time.perf_counter() - t, time.perf_counter()
    if repartition_episode_s > 0:
        res.repartition = bench_repartition(repartition_episode_s, repartition_interval_s,
                                            repartition_trace, repartition_load, repeats,
                                            repartition_python, repartition_sharings, now)
        res.meta.update(rp_trace=repartition_trace, rp_load=repartition_load)
        took["repartition"] = time.perf_counter() - t
    res.meta.update(load_after=_load(), wall_s=time.perf_counter() - t0,
                    sections=", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
    return res


def write_results(res: BenchResults, out: Path, plot_name: str = "bench_scaling.png") -> str:
    """Write ``bench.csv``, ``bench.md`` and (with scaling rows) the plot; returns the md."""
    write_atomic(out / "bench.csv", to_csv(res))
    if res.scaling:
        plot_scaling(res.scaling, out / plot_name)
        res.meta["plot"] = plot_name
    md = to_markdown(res)
    write_atomic(out / "bench.md", md)
    return md


@hydra_app("bench")
def main(cfg: DictConfig) -> None:
    """Measure and write bench.csv / bench.md / bench_scaling.png."""
    import envs
    from agents.baselines import baselines_for

    known = envs.registered_ids()
    if cfg.profile.env is not None:
        if str(cfg.profile.env) not in known:
            raise UserError(f"profile.env: unknown id '{cfg.profile.env}'; registered: {known}")
        if int(cfg.profile.steps) < 1:
            raise UserError("profile.steps must be >= 1")
        path = profile_env(str(cfg.profile.env), int(cfg.profile.steps), Path(str(cfg.out_dir)))
        print(path.read_text())
        print(f"wrote {path} and {path.with_suffix('.html')}")
        return
    ids = list(cfg.envs) if cfg.envs is not None else envs.registered_ids()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UserError(f"envs: unknown id(s) {unknown}; registered: {known}")
    if int(cfg.steps) < 100 or int(cfg.repeats) < 1:
        raise UserError("steps must be >= 100 and repeats >= 1")
    if str(cfg.clock) not in CLOCKS:
        raise UserError(f"clock: '{cfg.clock}' is not one of {', '.join(CLOCKS)}")
    b = cfg.baselines
    if str(b.env) not in known:
        raise UserError(f"baselines.env: unknown id '{b.env}'")
    policies = list(b.policies) if b.policies is not None else list(baselines_for(str(b.env)))
    unknown = [p for p in policies if p not in baselines_for(str(b.env))]
    if unknown:
        raise UserError(f"baselines.policies: unknown {unknown}; known: "
                        f"{list(baselines_for(str(b.env)))}")
    axes = [a for a in SCALING_AXES if cfg.scaling.axes is None or a.name in cfg.scaling.axes]
    sizes: list[int] = OmegaConf.to_object(cfg.memory.sizes)  # type: ignore[assignment]
    breakdown = [str(e) for e in cfg.breakdown.envs or ()]
    unknown = [i for i in breakdown if i not in known or "Shard" not in i]
    if unknown:
        raise UserError(f"breakdown.envs: {unknown} are not registered ShardRouting or "
                        "ShardPlacement ids")
    rp = cfg.repartition
    if float(rp.episode_s) < 0 or (float(rp.episode_s) > 0 and not (
            0 < float(rp.interval_s) <= float(rp.episode_s) and float(rp.load) > 0)):
        raise UserError("repartition: episode_s must be >= 0 (0 skips), and with an episode "
                        "0 < interval_s <= episode_s and load > 0")
    sharings = [str(x) for x in rp.sharing or ()]
    if float(rp.episode_s) > 0 and (not sharings or any(
            x not in REPARTITION_SHARINGS for x in sharings)):
        raise UserError(f"repartition.sharing: {sharings}: a non-empty list of "
                        f"{', '.join(REPARTITION_SHARINGS)}")
    res = run_bench(env_ids=ids, steps=int(cfg.steps), repeats=int(cfg.repeats),
                    step_budget_s=float(cfg.step_budget_s),
                    baseline_env=str(b.env), policies=policies, queries=int(b.queries),
                    slow_queries=int(b.step_loop_queries), mmc_servers=int(b.mmc_servers),
                    mmc_load=float(b.mmc_load), scaling_axes=axes,
                    scaling_queries=int(cfg.scaling.queries),
                    scaling_steps=int(cfg.scaling.steps), memory_sizes=[int(s) for s in sizes],
                    memory_policy=str(cfg.memory.policy),
                    memory_traced=bool(cfg.memory.traced),
                    trace_generated=int(cfg.traces.generated),
                    trace_replay_rows=int(cfg.traces.replay_rows),
                    breakdown_envs=breakdown, breakdown_steps=int(cfg.breakdown.steps),
                    repartition_episode_s=float(rp.episode_s),
                    repartition_interval_s=float(rp.interval_s),
                    repartition_trace=str(rp.trace), repartition_load=float(rp.load),
                    repartition_python=bool(rp.python), repartition_sharings=sharings,
                    clock=str(cfg.clock))
    md = write_results(res, Path(str(cfg.out_dir)))
    print(md)


if __name__ == "__main__":
    main()
