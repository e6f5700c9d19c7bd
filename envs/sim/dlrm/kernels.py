"""Compiled (numba) kernels of the sharded-serving simulator's hot spots.

Each kernel does what a few numpy calls in :mod:`envs.sim.dlrm.cluster`,
:mod:`envs.sim.dlrm.rowcache` and :mod:`envs.shard` do, in one pass and with the same results to
the bit: integer work (row-cache probes, rank clipping, key building, dedup of sorted keys) is
exact; the float arithmetic is the same IEEE operations in the same order, element by element (no
reductions, no fast-math, so no contraction into fused multiply-adds; numpy's error model, so a
division by zero gives inf or NaN as numpy's does instead of raising). The random draws are
numpy's ``Generator``'s stream (its float32 uniforms may be drawn by :mod:`envs.sim.dlrm.pcg`,
bit for bit), and the float32 ``power``/``exp`` of the rank sampling stay numpy's (its SIMD
versions; ``libm``'s could round differently). The sort of a request's keys is a radix sort
(:func:`radix_sort`) or, for nearly sorted keys, an insertion sort
(:func:`nearly_sorted_split`): integers have one sorted order.

numba is optional: :data:`AVAILABLE` is False without it (or with ``LDSGYM_NO_JIT=1`` in the
environment) and callers use their numpy path, which ``tests/test_shard_fastpath.py`` checks
against these kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.sim.jit import AVAILABLE, NO_NRT, njit

try:
    from llvmlite import binding as _llvm
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.core import types as _nt
    from numba.core.extending import intrinsic as _intrinsic

    #: LLVM's name of its prefetch intrinsic (overloaded on the pointer type: opaque
    #: pointers from LLVM 15).
    _PREFETCH = ("llvm.prefetch.p0" if _llvm.llvm_version_info >= (15,)
                 else "llvm.prefetch.p0i8")

    def _prefetch_typer(typingctx: Any, arr: Any, idx: Any) -> Any:
        """A hint that ``arr[idx]`` will be read soon (a prefetch into every cache level:
        ``llvm.prefetch``, read, locality 3); no effect on any value, and none on memory
        (a prefetch never faults)."""
        sig = _nt.void(arr, idx)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                            wraparound=False, boundscheck=False)
            i8p = _ir.IntType(8).as_pointer()
            i32 = _ir.IntType(32)
            fn = _cgutils.get_or_insert_function(
                builder.module, _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32]),
                _PREFETCH)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()
        return sig, codegen

    _prefetch: Any = _intrinsic(_prefetch_typer)
except ImportError:  # pragma: no cover - without numba (the kernels then run as Python)
    def _prefetch(arr: np.ndarray, idx: int) -> None:
        """Nothing (a cache hint only)."""


# ------------------------------------------------------------------------------ row caches
#: How many keys ahead :func:`lru_access` prefetches.
_LRU_AHEAD = 48


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def lru_access(last1: np.ndarray, alive: np.ndarray, keys: np.ndarray, offset: int,
               oldest: int, base: int, t: int, cap: int, size: int) -> tuple[int, int, int]:
    """The array part of :meth:`envs.sim.dlrm.rowcache.LruRowCache.access` (``n > 0``, ``cap > 0``,
    ``alive`` already compacted so that ``t - base < len(alive)``).

    Returns:
        ``(misses, oldest, size)`` after the batch.
    """
    n = keys.shape[0]
    misses = 0
    # The keys are sorted distinct keys of one sub-request spread over a large array (most
    # of each load misses the caches): the load of key i + _LRU_AHEAD is prefetched, and the
    # indices are unsigned (keys and ticks of kept entries are >= 0; no wraparound code).
    # A branch on the hit stays: a select instead (the decrement of a miss moved to an entry
    # that is set below) chains those read-modify-writes and measured slower.
    l1 = last1[offset:]
    o32 = np.int32(oldest)
    t32 = np.int32(t)
    ahead = n - _LRU_AHEAD
    for i in range(n):
        if i < ahead:
            _prefetch(l1, np.uint64(keys[i + _LRU_AHEAD]))
        j = np.uint64(keys[i])
        p = l1[j]
        if p >= o32:
            alive[np.uint64(p - base)] -= 1
        else:
            misses += 1
        l1[j] = t32
    alive[t - base] = n
    size += misses
    o = oldest
    while size > cap:
        size -= alive[o - base]
        alive[o - base] = 0
        o += 1
    return misses, o, size


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def lfu_top(count: np.ndarray, keys: np.ndarray, counts: np.ndarray, offset: int) -> int:
    """``int((count[offset + keys] + counts.astype(int32)).max())`` (int32 arithmetic)."""
    top = -(2**31)
    for i in range(keys.shape[0]):
        v = int(np.int32(count[offset + keys[i]] + np.int32(counts[i])))
        if v > top:
            top = v
    return top


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def lfu_access(count: np.ndarray, hist: np.ndarray, keys: np.ndarray, counts: np.ndarray,
               offset: int, theta: int, cap: int, size: int) -> tuple[int, int, int]:
    """The array part of :meth:`envs.sim.dlrm.rowcache.LfuRowCache.access` (``n > 0``,
    ``cap > 0``, ``hist`` long enough for every new count).

    Returns:
        ``(misses, theta, size)`` after the batch.
    """
    misses = 0
    for i in range(keys.shape[0]):
        j = offset + keys[i]
        old = count[j]
        new = np.int32(old + np.int32(counts[i]))
        if old < theta:
            misses += 1
            if new >= theta:
                size += 1
        if old > 0:
            hist[old] -= 1
        hist[new] += 1
        count[j] = new
    while size > cap:
        size -= hist[theta]
        theta += 1
    return misses, theta, size


# ------------------------------------------------------------------------------ lookups
@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def scale_draws(u: np.ndarray, m: np.ndarray, norm: np.ndarray) -> None:
    """``u = u * norm.repeat(m) + 1`` in place, in ``u``'s dtype (the argument of the power
    in :meth:`envs.sim.dlrm.cluster.ShardSim._sample_ranks`).

    Each table's run is a view indexed from 0 (here and in the key kernels): numba then knows
    the index is not negative, and the loop compiles to vector code."""
    one = u.dtype.type(1.0)
    i = 0
    for t in range(m.shape[0]):
        c = norm[t]
        v = u[i:i + m[t]]
        for j in range(v.shape[0]):
            v[j] = v[j] * c + one
        i += m[t]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _table_keys_of(xt: np.ndarray, kt: np.ndarray, off: int, top: float, one: float) -> None:
    """One table's keys: ``kt[j] = off + rank(xt[j])`` (``top``: its ``ub + 1``, in the
    draws' dtype), the rank by :func:`_rank32` when ``top < 2**31``, else :func:`_rank`."""
    if top < 2147483648.0:
        for j in range(xt.shape[0]):
            kt[j] = off + _rank32(xt[j], one, top)
    else:
        for j in range(xt.shape[0]):
            kt[j] = off + _rank(xt[j], one, top)


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def table_keys(x: np.ndarray, m: np.ndarray, ub: np.ndarray, keyoff: np.ndarray,
               key: np.ndarray) -> None:
    """Table-wise request keys: ``keyoff.repeat(m) + clip(int64(x) - 1, 0, ub.repeat(m))``
    into ``key`` (whose dtype is the key dtype); the rank clipping is :func:`_rank`'s."""
    i = 0
    one = x.dtype.type(1.0)
    for t in range(m.shape[0]):
        _table_keys_of(x[i:i + m[t]], key[i:i + m[t]], keyoff[t], x.dtype.type(ub[t] + 1), one)
        i += m[t]


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def row_keys(x: np.ndarray, m: np.ndarray, ub: np.ndarray, gseg: np.ndarray, n_shards: int,
             shift: int, key: np.ndarray) -> None:
    """Row-wise request keys: rank ``k`` (as :func:`table_keys`) of cached table ``t`` is
    key ``gseg[t * S + k % S] + k // S`` (``shift >= 0``: ``S == 2**shift``, so the shard and
    the local rank of a rank, which is >= 0, are its low bits and the rest)."""
    i = 0
    S = n_shards
    low = S - 1
    one = x.dtype.type(1.0)
    for t in range(m.shape[0]):
        top = x.dtype.type(ub[t] + 1)
        gt = gseg[t * S:(t + 1) * S]
        xt = x[i:i + m[t]]
        kt = key[i:i + m[t]]
        if shift >= 0 and top < 2147483648.0:
            for j in range(xt.shape[0]):
                k = _rank32(xt[j], one, top)
                kt[j] = gt[k & low] + (k >> shift)
        else:
            for j in range(xt.shape[0]):
                r = _rank(xt[j], one, top)
                kt[j] = gt[r % S] + r // S
        i += m[t]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _rank(x: float, one: float, top: float) -> np.int64:
    """``clip(int64(x) - 1, 0, top - 1)`` for ``x >= 0`` (a power or an exponential) and an
    integral ``top`` (``ub + 1``, exact in ``x``'s dtype). Clipping in floats first, to
    ``[1, top]``, truncates to the same integer; a NaN or an infinity becomes ``top`` (its
    int64 conversion is the least int64, which ``- 1`` wraps to the largest)."""
    y = one if x < one else x
    y = y if y < top else top
    return np.int64(y) - 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _rank32(x: float, one: float, top: float) -> np.int32:
    """:func:`_rank` for ``top < 2**31``: the clipped value converts exactly to int32, which
    compiles to the vector conversion (about twice as fast as the int64 one)."""
    y = one if x < one else x
    y = y if y < top else top
    return np.int32(y) - np.int32(1)


@njit(cache=True, nogil=True, error_model="numpy")
def radix_sort(key: np.ndarray, tmp: np.ndarray) -> bool:
    """Sort non-negative integer ``key`` in place (``tmp``: scratch of at least its length):
    an LSD radix sort, 11-bit digits, as many passes as its largest key needs. Integers
    sort to one order whatever the algorithm, so this is ``key.sort()`` to the bit (about
    3x faster than numpy 2.4's sort on the ~7.5k keys of a ShardRouting-v0 request, measured
    on the project's 2-core AMD EPYC machine: 26-31 us against 90-98 us).

    Returns:
        False (``key`` untouched) when a key is negative: the caller sorts it instead.
    """
    n = key.shape[0]
    if n < 2:
        return True
    lo = key[0]
    hi = key[0]
    for i in range(n):
        k = key[i]
        if k < lo:
            lo = k
        if k > hi:
            hi = k
    if lo < 0:
        return False
    bits = 0
    while hi >> bits:
        bits += 1
    passes = max(1, (bits + 10) // 11)
    width = (bits + passes - 1) // passes
    mask = (1 << width) - 1
    cnt = np.empty(mask + 2, dtype=np.int64)
    src = key
    dst = tmp[:n]
    for p in range(passes):
        shift = p * width
        cnt[:] = 0
        for i in range(n):
            cnt[((src[i] >> shift) & mask) + 1] += 1
        for b in range(mask + 1):
            cnt[b + 1] += cnt[b]
        for i in range(n):
            k = src[i]
            b = (k >> shift) & mask
            dst[cnt[b]] = k
            cnt[b] += 1
        src, dst = dst, src
    if passes & 1:
        key[:] = src
    return True


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def split_sorted(key: np.ndarray, base: np.ndarray, rel: np.ndarray, counts: np.ndarray,
                 out: np.ndarray, look: np.ndarray, sign: int) -> int:
    """``np.unique(key, return_counts=True)`` of sorted ``key`` split at ``base`` (shard
    ``s``'s keys are ``base[s] <= key < base[s + 1]``): ``rel`` gets each distinct key minus
    its shard's base, ``counts`` its lookups; ``out`` ((3, len(base)) int64) gets in row 0 the
    first distinct key of each shard and in row 1 its first lookup (both
    ``searchsorted(base)``), and in row 2 ``look[s] + sign * (its lookups)`` per shard
    (``out[2, -1]`` is 0).

    Returns:
        The number of distinct keys.
    """
    n = key.shape[0]
    nb = base.shape[0]
    if n == 0:
        for s in range(nb):
            out[0, s] = 0
            out[1, s] = 0
            out[2, s] = look[s] if s < nb - 1 else 0
        return 0
    # The distinct keys and where each one's lookups end, in one pass without
    # data-dependent branches (random keys would mispredict them: every lookup writes its
    # key's slots, a new key moves on) and without the shard boundaries (checking for them
    # on every lookup cost as much as the rest); then the boundaries by binary searches of
    # the distinct keys (searchsorted(side="left"): the first distinct key and the first
    # lookup >= base[s]), each key's shard base subtracted (s - 1 with base[s - 1] <= key <
    # base[s], for 1 <= s < nb; keys below base[0] or from base[-1] on keep theirs) and the
    # counts as differences of the ends, each in a loop of its own (vector code).
    prev = key[0]
    u = 0
    rel[0] = prev
    counts[0] = 0
    for i in range(1, n):
        k = key[i]
        u += k != prev
        rel[u] = k
        counts[u] = i  # (the last lookup of distinct key u so far)
        prev = k
    u += 1
    for s in range(nb):
        b = base[s]
        lo = 0
        hi = u
        while lo < hi:
            mid = (lo + hi) >> 1
            if rel[mid] < b:
                lo = mid + 1
            else:
                hi = mid
        out[0, s] = lo
        out[1, s] = counts[lo - 1] + 1 if lo > 0 else 0
    for s in range(1, nb):
        sub = base[s - 1]
        r = rel[out[0, s - 1]:out[0, s]]
        for j in range(r.shape[0]):
            r[j] -= sub
    for j in range(u - 1, 0, -1):
        counts[j] -= counts[j - 1]
    counts[0] += 1
    for s in range(nb - 1):
        out[2, s] = look[s] + sign * (out[1, s + 1] - out[1, s])
    out[2, nb - 1] = 0
    return u


@njit(cache=True, nogil=True, error_model="numpy")
def nearly_sorted_split(x: np.ndarray, m: np.ndarray, ub: np.ndarray, keyoff: np.ndarray,
                        order: np.ndarray, base: np.ndarray, key: np.ndarray, tmp: np.ndarray,
                        rel: np.ndarray, counts: np.ndarray, out: np.ndarray,
                        look: np.ndarray) -> int:
    """:func:`table_keys`, the sort and :func:`split_sorted` (``sign=-1``) of a table-wise
    request whose draws ``x`` are placed table by table in the order ``order`` (table
    ``order[0]``'s ``m[order[0]]`` first, ...) instead of in table order, each table's
    roughly sorted (:func:`envs.sim.dlrm.pcg.uniform_bucketed`): an insertion sort finishes
    the sort in about one pass, or, past ``4 n + 64`` moves (the draws were not as sorted as
    that), :func:`radix_sort` does (``tmp``: its scratch). Keys of one request sort to one
    order, so ``rel``, ``counts``, ``out`` and the result are :func:`split_sorted`'s."""
    one = x.dtype.type(1.0)
    i = 0
    for oi in range(m.shape[0]):
        t = order[oi]
        _table_keys_of(x[i:i + m[t]], key[i:i + m[t]], keyoff[t], x.dtype.type(ub[t] + 1), one)
        i += m[t]
    n = key.shape[0]
    if n >= 2:
        # key[:j] sorted, a = key[j - 2] (key[0] at first), b = key[j - 1]. A key that goes
        # at j - 1 or j (most of them: the draws are bucketed finely) takes a
        # compare-exchange with b, without a branch (an inversion is as likely as not within
        # a bucket, so a branch on it mispredicts); one that goes before j - 1 (rare) an
        # insertion, whose moves count against the budget.
        budget = 4 * n + 64
        b = key[0]
        a = b
        j = 1
        while j < n:
            k = key[j]
            if k < a:
                p = j
                while p > 0 and key[p - 1] > k:
                    key[p] = key[p - 1]
                    p -= 1
                key[p] = k
                budget -= j - p
                if budget < 0:
                    if not radix_sort(key, tmp):
                        key.sort()
                    break
                a = key[j - 1]
                b = key[j]
            else:
                lo = k if k < b else b
                hi = k if k > b else b
                key[j - 1] = lo
                key[j] = hi
                a = lo
                b = hi
            j += 1
    return split_sorted(key, base, rel, counts, out, look, -1)


# ------------------------------------------------------------------------------ observation
@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def routing_obs(now: float, s: int, d_tracked: int, d_untracked: int, lookups: int,
                req_bytes: float, resp_bytes: float, inv_sla: float, left: int,
                req_pred: float, req_rate: float, row_hit: np.ndarray, state: np.ndarray,
                outstanding: np.ndarray, consts: np.ndarray, req_node: np.ndarray,
                fin: np.ndarray, out: np.ndarray) -> None:
    """The predicted finish of every node (into ``fin``) and the ``ShardRouting``
    observation's entries, clipped to [0, 10], into ``out`` (float32, ``10 N + S + 5``, and
    ``4 N`` more when ``req_node`` is not empty): the formulas of
    :meth:`envs.shard.ShardRoutingEnv._predict_finish`, ``_obs`` and ``_request_obs``.

    ``state`` is :attr:`envs.sim.dlrm.cluster.ShardSim.node_state`. ``consts`` rows: the per-node
    fixed link cost; ``(overhead, mean lookups, mean response bytes, capacity)``; the link
    payload rate now per node; the per-node seconds per fast-tier read, then per slow-tier
    read; then, per shard, whether each node holds it (1.0 or 0.0). ``out`` gets the ten
    node rows (row ``r`` at ``r * N``), then the one-hot shard and the clipped ``size``,
    ``request`` and ``rates`` entries (``left``: sub-requests of the request still to route,
    this one too; ``req_rate``: the recent request rate). With the request-aware entries
    (``req_node``: per node the latest predicted finish of the request's sub-requests routed
    there, 0.0 where none; empty: no such entries), four node rows follow: ``req_routed``,
    ``slack``, ``link_depth`` and ``ssd_depth`` (messages in flight per link direction are
    ``state`` rows 13-14).
    """
    N = fin.shape[0]
    overhead = consts[1, 0]
    req_aware = req_node.shape[0] > 0
    S = out.shape[0] - 10 * N - 5 - (4 * N if req_aware else 0)
    x1 = 10 * N + S + 5  # the request-aware rows
    x0 = 10 * N
    for j in range(S):
        out[x0 + j] = 0.0
    out[x0 + s] = 1.0
    x0 += S
    _put1(out, x0, lookups / consts[1, 1])
    _put1(out, x0 + 1, resp_bytes / consts[1, 2])
    _put1(out, x0 + 2, left / S)
    _put1(out, x0 + 3, req_pred * inv_sla)
    _put1(out, x0 + 4, req_rate / consts[1, 3])
    dt = np.float64(d_tracked)
    du = np.float64(d_untracked)
    lk = np.float64(lookups)
    for n in range(N):
        # link bytes in flight (np.maximum(x, 0.0): x if x > 0 or x is NaN, else 0.0)
        x = state[0, n] - (now - state[2, n]) * state[4, n]
        down = x if x > 0.0 or x != x else 0.0
        x = state[1, n] - (now - state[3, n]) * state[5, n]
        up = x if x > 0.0 or x != x else 0.0
        x = state[6, n] - now
        rw = (x if x > 0.0 or x != x else 0.0) + state[7, n]
        rh = row_hit[n, s]
        miss = (1.0 - rh) * dt + du
        fast = (lk - miss) * consts[3, n]
        slow_ = miss * consts[4, n]
        svc = (fast if fast > slow_ or fast != fast else slow_) + overhead
        r = consts[2, n]
        fixed = consts[0, n]
        t_down = (down + req_bytes) / r + fixed
        t_up = resp_bytes / r + fixed
        ms = state[10, n]
        f = t_down + (svc + rw) * ms
        f = f + t_up
        fin[n] = f
        h = consts[5 + s, n]
        _put1(out, n, outstanding[n] / 8.0)
        _put1(out, N + n, rw * ms * inv_sla)
        _put1(out, 2 * N + n, (down + up) / r * inv_sla)
        _put1(out, 3 * N + n, state[8, n])
        _put1(out, 4 * N + n, rh * h)
        _put1(out, 5 * N + n, state[9, n])
        _put1(out, 6 * N + n, ms)
        _put1(out, 7 * N + n, state[11, n])
        _put1(out, 8 * N + n, h)
        _put1(out, 9 * N + n, f * inv_sla)
        if req_aware:
            _put1(out, x1 + n, req_node[n] * inv_sla)
            x = req_pred - f
            _put1(out, x1 + N + n, (x if x > 0.0 or x != x else 0.0) * inv_sla)
            _put1(out, x1 + 2 * N + n, (state[13, n] + state[14, n]) / 8.0)
            _put1(out, x1 + 3 * N + n, (1.0 - state[8, n]) * outstanding[n] / 8.0)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _put1(out: np.ndarray, i: int, x: float) -> None:
    """``out[i] = float32(np.clip(x, 0, 10))`` (NaN and -0.0 pass through)."""
    out[i] = np.float32(0.0 if x < 0.0 else (10.0 if x > 10.0 else x))


# ------------------------------------------------------------------------------ placement
@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def placement_topology(holds: np.ndarray, loading: np.ndarray, up: np.ndarray,
                       max_shards: int, min_replicas: int, mask: np.ndarray,
                       holds_f: np.ndarray, loading_f: np.ndarray, replicas_f: np.ndarray,
                       slots_f: np.ndarray, up_f: np.ndarray, live: np.ndarray) -> None:
    """``ShardPlacement``'s action mask and the topology parts of its observation (see
    ``ShardPlacementEnv._placement_mask`` and ``_topology_obs``) from ``holds`` and
    ``loading`` ``(N, S)`` and ``up`` ``(N,)``; counts are integers, so exact."""
    N, S = holds.shape
    mask[0] = True
    for n in range(N):
        used = 0
        for s in range(S):
            used += holds[n, s] + loading[n, s]
        ok = up[n] and used < max_shards
        x = used / max_shards
        slots_f[n] = np.float32(0.0 if x < 0.0 else (1.0 if x > 1.0 else x))
        up_f[n] = np.float32(1.0 if up[n] else 0.0)
        for s in range(S):
            mask[1 + s * N + n] = ok and not holds[n, s] and not loading[n, s]
    for s in range(S):
        total = 0
        lv = 0
        for n in range(N):
            h = holds[n, s]
            total += h
            lv += h and up[n]
            holds_f[s * N + n] = np.float32(1.0 if h else 0.0)
            loading_f[s * N + n] = np.float32(1.0 if loading[n, s] else 0.0)
        x = total / N
        replicas_f[s] = np.float32(0.0 if x < 0.0 else (1.0 if x > 1.0 else x))
        live[s] = lv if lv > 1 else 1
        if total - 1 >= min_replicas:
            for n in range(N):
                if holds[n, s] and lv - (1 if up[n] else 0) >= 1:
                    mask[1 + s * N + n] = True


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def earliest_replica(now: float, s: int, d_tracked: int, d_untracked: int, lookups: int,
                     req_bytes: float, resp_bytes: float, holds: np.ndarray,
                     row_hit: np.ndarray, state: np.ndarray, fixed: np.ndarray,
                     bps: np.ndarray, c_fast: np.ndarray, c_slow: np.ndarray,
                     overhead: float) -> int:
    """:meth:`envs.sim.dlrm.cluster.ShardSim.earliest_replica` (the same float operations in the
    same order) over the live replicas: the nodes ``k`` with ``holds[k, s]`` that are up
    (``state`` is :attr:`envs.sim.dlrm.cluster.ShardSim.node_state`, whose up row is 1.0 exactly
    for them; ``c_fast`` and ``c_slow`` are the per-node seconds per read), in increasing
    order (the least ``(t, k)`` does not depend on the order); -1 when there is none."""
    best = -1
    best_t = 0.0
    for k in range(holds.shape[0]):
        if not (holds[k, s] and state[11, k] != 0.0):
            continue
        miss = d_tracked * (1.0 - row_hit[k, s]) + d_untracked
        fast = c_fast[k] * (lookups - miss)
        slow_ = c_slow[k] * miss
        svc = overhead + (fast if fast > slow_ or fast != fast else slow_)
        rate = bps[k] * state[12, k]
        left = state[0, k] - (now - state[2, k]) * state[4, k]
        t_down = fixed[k] + ((left if left > 0.0 or left != left else 0.0) + req_bytes) / rate
        t_up = fixed[k] + resp_bytes / rate
        x = state[6, k] - now
        rw = (x if x > 0.0 or x != x else 0.0) + state[7, k]
        t = t_down + (rw + svc) * state[10, k] + t_up
        if best < 0 or t < best_t or (t == best_t and k < best):
            best = k
            best_t = t
    return best


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def placement_obs(demand: np.ndarray, live: np.ndarray, outstanding: np.ndarray,
                  service_end: np.ndarray, work_s: np.ndarray, now: float, inv_sla: float,
                  util: np.ndarray, out: np.ndarray) -> None:
    """``ShardPlacement``'s ``demand`` (S), ``queue``, ``work`` and ``util`` (N each) entries,
    clipped and float32, into ``out`` in that order (see ``ShardPlacementEnv._obs``)."""
    S = demand.shape[0]
    N = outstanding.shape[0]
    for s in range(S):
        _put1(out, s, demand[s] / live[s])
    for n in range(N):
        _put1(out, S + n, outstanding[n] / 8.0)
        x = service_end[n] - now
        _put1(out, S + N + n, ((x if x > 0.0 or x != x else 0.0) + work_s[n]) * inv_sla)
        u = util[n]
        out[S + 2 * N + n] = np.float32(0.0 if u < 0.0 else (1.0 if u > 1.0 else u))


_WARM = False


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels that a shard env first calls inside
    ``step`` (the others run in ``reset``), once per process, so that no step pays for it."""
    global _WARM
    if _WARM or not AVAILABLE:
        return
    _WARM = True
    i64, f64 = np.ones(2, dtype=np.int64), np.ones(2)
    keys, counts = np.arange(2, dtype=np.int64), np.ones(2, dtype=np.intp)
    lru_access(np.zeros(4, dtype=np.int32), np.zeros(8, dtype=np.int64), keys, 0, 1, 1, 1,
               4, 0)
    count = np.zeros(4, dtype=np.int32)
    lfu_top(count, keys, counts, 0)
    lfu_access(count, np.zeros(8, dtype=np.int64), keys, counts, 0, 1, 4, 0)
    holds, up = np.ones((2, 2), dtype=bool), np.ones(2, dtype=bool)
    f32 = np.zeros(2, dtype=np.float32)
    placement_topology(holds, holds.copy(), up, 2, 1, np.zeros(5, dtype=bool), f32, f32, f32,
                       f32, f32, i64)
    state = np.ones((13, 2))
    for req_bytes in (0, 0.0):
        earliest_replica(0.0, 0, 1, 1, 1, req_bytes, 1.0, holds, np.zeros((2, 2)), state, f64,
                         f64, f64, f64, 1.0)
