"""The dispatch rules of the device's baselines, each written once.

Every rule is a pure function over per-partition feature arrays and a validity row, and
returns the partition to use, or ``len(values)`` (``P``, the reject action) when no partition
is valid or the rule rejects. The same function runs everywhere a rule is applied:

- the baselines of :mod:`agents.baselines` and :mod:`agents.misd_baselines` call it on the
  observation (float32 arrays) and the action mask;
- the Python fast kernels of :mod:`agents.fast_eval` call it on the features a rollout hands
  them (Python floats equal to those float32 values);
- the compiled episode (:mod:`envs.sim.device.compiled`) calls its compiled twin (the
  ``*_jit`` names: the same source, compiled by numba);
- ``Repartition``'s placement inside an interval (:mod:`envs.repartition`) calls it on the
  simulator's state in seconds.

Ties: every rule takes the *first* best partition in index order (as ``np.argmin``, a stable
``lexsort``), unless it says otherwise. ``valid`` may be longer than the features (an action
mask with its reject entry last): only its first ``P`` entries are read.

Adding a rule: write it here (plain Python over indexable sequences, no numpy calls, so that
numba compiles it and Python runs it unchanged), add its ``*_jit`` twin at the bottom, and
call it from the baseline's ``act`` (and, for a fast path, from a kernel and the compiled
loop's rule switch).
"""

from __future__ import annotations

import struct
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.sim.jit import INSTALLED, njit

#: float32(1e-3) as a float: the weight of ``busy`` in least-loaded's key.
MILLI_F32 = 0.0010000000474974513


def earliest(values: Sequence[float], valid: Sequence[Any], reject_hopeless: bool,
             can_reject: bool, offset: float = 0.0, limit: float = 1.0) -> int:
    """Earliest finish (Clockwork): the first argmin of ``values`` over the valid partitions;
    reject when ``reject_hopeless``, rejecting is allowed and even the best misses its
    deadline: ``offset + values[best] > limit``.

    On the observation ``values`` is ``finish`` (in units of the query's SLA: ``limit=1``);
    on the simulator's state it is the finish time in seconds from now (``offset=now``,
    ``limit=deadline``).
    """
    n = len(values)
    best = -1
    low = 0.0
    for p in range(n):
        if valid[p]:
            v = values[p]
            if best < 0 or v < low:
                best = p
                low = v
    if best < 0:
        return n
    if reject_hopeless and can_reject and offset + low > limit:
        return n
    return best


def most_slack(slack: Sequence[float], valid: Sequence[Any], reject_hopeless: bool,
               can_reject: bool) -> int:
    """Interference-aware: the first argmax of ``slack`` over the valid partitions; reject
    when ``reject_hopeless``, rejecting is allowed and that slack is negative (late
    everywhere)."""
    n = len(slack)
    best = -1
    for p in range(n):
        if valid[p] and (best < 0 or slack[p] > slack[best]):
            best = p
    if best < 0:
        return n
    if reject_hopeless and can_reject and slack[best] < 0.0:
        return n
    return best


def best_fit(slack: Sequence[float], size: Sequence[float], valid: Sequence[Any],
             margin: float, reject_hopeless: bool, can_reject: bool) -> int:
    """gpulet's greedy best fit: among the valid partitions with ``slack >= margin`` the
    smallest (``size``), ties to the least slack, then to the lower index; when none leaves
    the margin, :func:`most_slack`."""
    n = len(slack)
    best = -1
    for p in range(n):
        if valid[p] and slack[p] >= margin and (
                best < 0 or size[p] < size[best] or (
                    size[p] == size[best] and slack[p] < slack[best])):
            best = p
    if best >= 0:
        return best
    return most_slack(slack, valid, reject_hopeless, can_reject)


def least_loaded(key: Sequence[float], size: Sequence[float], valid: Sequence[Any]) -> int:
    """Join the shortest queue: the first valid partition with the smallest ``key`` (the
    queue), ties to the larger ``size``, then to the lower index. Never rejects."""
    n = len(key)
    best = -1
    for p in range(n):
        if valid[p] and (best < 0 or key[p] < key[best] or (
                key[p] == key[best] and size[p] > size[best])):
            best = p
    return n if best < 0 else best


def round_robin(cursor: int, valid: Sequence[Any], n: int) -> tuple[int, int]:
    """The first valid partition of ``n`` at or after ``cursor`` in cyclic order, and the
    cursor after it; ``(n, cursor)`` when none is valid."""
    for j in range(n):
        p = (cursor + j) % n
        if valid[p]:
            return p, (p + 1) % n
    return n, cursor


def nth_valid(k: int, valid: Sequence[Any], n: int) -> int:
    """The ``k``-th valid partition of ``n`` (from 0), or ``n`` when there are not that many:
    a uniformly random one when ``k`` is drawn from ``[0, number valid)``."""
    for p in range(n):
        if valid[p]:
            if k == 0:
                return p
            k -= 1
    return n


def cheapest_within(cost: Sequence[float], values: Sequence[float], valid: Sequence[Any],
                    limit: float = 1.0) -> int:
    """INFaaS: the first valid partition with the smallest ``cost`` among those whose
    ``values`` (predicted finish, in units of the SLA) meet ``limit``; ``-1`` when none does
    (the caller falls back, e.g. to :func:`earliest`)."""
    best = -1
    for p in range(len(values)):
        if valid[p] and values[p] <= limit and (best < 0 or cost[p] < cost[best]):
            best = p
    return best


def two_choices(i: int, j: int, key: Sequence[float], valid: Sequence[Any], n: int) -> int:
    """Power of two choices: of the ``i``-th and ``j``-th valid partitions (as
    :func:`nth_valid`), the one with the smaller ``key`` (ties to the first); ``n`` when none
    is valid."""
    a, b = nth_valid(i, valid, n), nth_valid(j, valid, n)
    if a == n:
        return b
    if b == n:
        return a
    return b if key[b] < key[a] else a


def least_loaded_key(queue: float, busy: float) -> float:
    """Least-loaded's key for a partition from its ``queue`` and ``busy`` observation entries
    (float32 values): ``queue + busy * 1e-3`` in float32 arithmetic, as numpy computes it on
    the observation (``busy`` breaks ties towards the partition that frees up first)."""
    return f32(queue + f32(busy * MILLI_F32))


def least_loaded_of(queue: Sequence[Any], busy: Sequence[Any], valid: Sequence[Any]) -> int:
    """:func:`least_loaded` over :func:`least_loaded_key` of every partition with every size
    0 (ties to the lower index) in one pass: the observation's ``queue`` and ``busy`` rows
    (float32 values; each read as a float, so the key's two roundings are those of the
    float64 arithmetic numpy does on the rows)."""
    n = len(queue)
    best = -1
    best_key = 0.0
    for p in range(n):
        if valid[p]:
            k = least_loaded_key(float(queue[p]), float(busy[p]))
            if best < 0 or k < best_key:
                best = p
                best_key = k
    return n if best < 0 else best


def least_loaded_keys(queue: Sequence[float], busy: Sequence[float]) -> tuple[float, ...]:
    """:func:`least_loaded_key` of every partition at once (the same two roundings, each
    batched into one struct round trip; Python only, the compiled loop uses the scalar)."""
    milli = [b * MILLI_F32 for b in busy]
    return f32_all([q + b for q, b in zip(queue, f32_all(milli), strict=True)])


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a float."""
    return float(np.float32(x))


def f32_all(xs: Sequence[float]) -> tuple[float, ...]:
    """Every ``x`` rounded to the nearest float32 (as numpy's cast: packing a float32 rounds
    to nearest even)."""
    n = len(xs)
    codec = _CODECS.get(n)
    if codec is None:
        codec = _CODECS[n] = struct.Struct(f"<{n}f")
    return codec.unpack(codec.pack(*xs))


_CODECS: dict[int, struct.Struct] = {}


# ------------------------------------------------------------------------- compiled twins
def _compiled(fn: Any, **calls: Any) -> Any:
    """``fn`` compiled by numba, the rules it calls replaced by their compiled twins (a
    compiled function can only call compiled ones); ``fn`` itself when numba is missing."""
    if not INSTALLED:  # njit is the identity
        return fn
    scope = {**fn.__globals__, **calls}
    twin = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__)
    twin.__qualname__ = fn.__qualname__ + "_jit"
    return njit(cache=True, nogil=True)(twin)


f32_jit = _compiled(f32)
earliest_jit = _compiled(earliest)
most_slack_jit = _compiled(most_slack)
best_fit_jit = _compiled(best_fit, most_slack=most_slack_jit)
least_loaded_jit = _compiled(least_loaded)
least_loaded_key_jit = _compiled(least_loaded_key, f32=f32_jit)
least_loaded_of_jit = _compiled(least_loaded_of, least_loaded_key=least_loaded_key_jit)
round_robin_jit = _compiled(round_robin)
nth_valid_jit = _compiled(nth_valid)

__all__ = ["MILLI_F32", "best_fit", "best_fit_jit", "cheapest_within", "earliest",
           "earliest_jit", "f32", "f32_all", "f32_jit", "least_loaded", "least_loaded_jit",
           "least_loaded_key", "least_loaded_key_jit", "least_loaded_keys", "least_loaded_of",
           "least_loaded_of_jit", "most_slack",
           "most_slack_jit", "nth_valid", "nth_valid_jit", "round_robin", "round_robin_jit",
           "two_choices"]
