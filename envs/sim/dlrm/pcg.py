"""numpy's float32 uniforms from a ``PCG64`` generator, drawn in compiled code.

``Generator.random(n, dtype=float32)`` costs ~2-3 ns a draw here (a call through the bit
generator's function pointer per draw); a ShardRouting-v0 request draws ~7,400 of them.
:func:`uniform_scaled` draws the same numbers from the same state: it reads numpy's ``PCG64``
state (``bit_generator.ctypes.state_address``: a pointer to the 128-bit ``state`` and
``inc``, then numpy's one-``uint32`` buffer ``has_uint32``/``uinteger``), steps it as numpy's
``pcg64_next32`` does (state = state * multiplier + inc in 128 bits, the XSL-RR output; the low
half first, the high half kept for the next draw) and writes the state back, so numpy's next
draw on the generator goes on from there. A float32 is ``(next32 >> 8) * 2**-24``, as numpy's
``next_float``.

This relies on numpy's memory layout, so nothing here is used until :func:`check` has shown
on probe generators that the layout reads back as ``bit_generator.state`` says and that the
draws and the state after them equal numpy's, for draws split at odd counts and interleaved
with numpy's own (binomial, float32, float64) draws on the same generator. Without numba, or
when the check fails, callers draw with numpy (:func:`views` returns None).
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from envs.sim.jit import AVAILABLE, NO_NRT, njit

try:
    from llvmlite import ir
    from numba.core import types as _nt
    from numba.core.extending import intrinsic

    def _muladd_typer(typingctx: Any, lo: Any, hi: Any, mlo: Any, mhi: Any, clo: Any,
                chi: Any) -> Any:
        """``(x * m + c) mod 2**128`` of the 128-bit numbers ``x = (hi, lo)``, ``m`` and
        ``c``, as ``(lo, hi)`` (LLVM's 128-bit multiply: numpy's ``pcg_setseq_128_step_r``
        where ``m`` is the multiplier and ``c`` the increment)."""
        u64 = _nt.uint64
        sig = _nt.UniTuple(u64, 2)(u64, u64, u64, u64, u64, u64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            i128 = ir.IntType(128)
            i64 = ir.IntType(64)
            k64 = ir.Constant(i128, 64)

            def wide(low: Any, high: Any) -> Any:
                return builder.or_(builder.zext(low, i128),
                                   builder.shl(builder.zext(high, i128), k64))

            s = builder.add(builder.mul(wide(args[0], args[1]), wide(args[2], args[3])),
                            wide(args[4], args[5]))
            return context.make_tuple(builder, signature.return_type,
                                      [builder.trunc(s, i64),
                                       builder.trunc(builder.lshr(s, k64), i64)])
        return sig, codegen

    _muladd: Any = intrinsic(_muladd_typer)
    _HAVE_INTRINSIC = AVAILABLE
except ImportError:  # pragma: no cover - without numba
    _HAVE_INTRINSIC = False

#: PCG64's 128-bit multiplier (numpy's PCG_DEFAULT_MULTIPLIER_128).
_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_M128 = (1 << 128) - 1
#: Four steps at once: state * MULT**4 + inc * (1 + MULT + MULT**2 + MULT**3).
_MULT4 = pow(_MULT, 4, 1 << 128)
_SUM4 = (1 + _MULT + _MULT**2 + _MULT**3) & _M128
_ML, _MH = _MULT & 0xFFFFFFFFFFFFFFFF, _MULT >> 64
_M4L, _M4H = _MULT4 & 0xFFFFFFFFFFFFFFFF, _MULT4 >> 64
_S4L, _S4H = _SUM4 & 0xFFFFFFFFFFFFFFFF, _SUM4 >> 64


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _out(lo: np.uint64, hi: np.uint64) -> np.uint64:
    """PCG's XSL-RR output of the state ``(hi, lo)``: ``rotr64(hi ^ lo, hi >> 58)``."""
    x = hi ^ lo
    r = hi >> np.uint64(58)
    return (x >> r) | (x << ((np.uint64(64) - r) & np.uint64(63)))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _put(w: np.ndarray, i: int, x: np.uint64) -> np.uint32:
    """The 24-bit draws of the 64-bit output ``x`` into ``w[i]`` and (if there) ``w[i + 1]``
    (low half first, as numpy's ``pcg64_next32``, each ``>> 8`` as its ``next_float``);
    returns the high half."""
    high = np.uint32(x >> np.uint64(32))
    w[i] = np.uint32(x) >> np.uint32(8)
    if i + 1 < w.shape[0]:
        w[i + 1] = high >> np.uint32(8)
    return high


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _put8(w: np.ndarray, i: np.uint64, x: np.uint64) -> np.uint32:
    """:func:`_put` where both halves fit (``i + 1 < len(w)``)."""
    high = np.uint32(x >> np.uint64(32))
    w[i] = np.uint32(x) >> np.uint32(8)
    w[i + np.uint64(1)] = high >> np.uint32(8)
    return high


@njit(cache=True, nogil=True, error_model="numpy")
def _fill24(pcg: np.ndarray, buf: np.ndarray, w: np.ndarray) -> None:
    """``w[i] = next32() >> 8`` for every ``i``: the integers of numpy's float32 draws
    (``float32(w[i]) * 2**-24`` is ``rng.random(dtype=float32)``), from the state that ``pcg``
    (uint64 ``[state_lo, state_hi, inc_lo, inc_hi]``) and ``buf`` (uint32 ``[.., ..,
    has_uint32, uinteger]``) view (:func:`views`), advanced in place as numpy would.

    The LCG's steps are a chain of 128-bit multiplies; four interleaved chains, each four
    steps at a time (``MULT**4`` and its increment), give the same states in the same order
    without waiting on each other."""
    n = w.shape[0]
    lo = pcg[0]
    hi = pcg[1]
    ilo = pcg[2]
    ihi = pcg[3]
    has = buf[2]
    keep = buf[3]
    i = 0
    if has and n:
        w[0] = keep >> np.uint32(8)
        has = 0
        i = 1
    steps = (n - i + 1) >> 1  # 64-bit outputs needed
    if steps:
        z = np.uint64(0)
        ml, mh = np.uint64(_ML), np.uint64(_MH)
        clo, chi = _muladd(ilo, ihi, np.uint64(_S4L), np.uint64(_S4H), z, z)
        m4l, m4h = np.uint64(_M4L), np.uint64(_M4H)
        a0, a1 = _muladd(lo, hi, ml, mh, ilo, ihi)
        b0, b1 = _muladd(a0, a1, ml, mh, ilo, ihi)
        c0, c1 = _muladd(b0, b1, ml, mh, ilo, ihi)
        d0, d1 = _muladd(c0, c1, ml, mh, ilo, ihi)
        # Groups of four outputs (from states a, b, c, d) whose eight draws all fit in w:
        # stores without a check, unsigned offsets.
        full = min(steps, (n - i) >> 1) >> 2
        wi = w[i:]
        for g in range(full):
            o = np.uint64(8 * g)
            _put8(wi, o, _out(a0, a1))
            _put8(wi, o + np.uint64(2), _out(b0, b1))
            _put8(wi, o + np.uint64(4), _out(c0, c1))
            keep = _put8(wi, o + np.uint64(6), _out(d0, d1))
            lo, hi = d0, d1
            a0, a1 = _muladd(a0, a1, m4l, m4h, clo, chi)
            b0, b1 = _muladd(b0, b1, m4l, m4h, clo, chi)
            c0, c1 = _muladd(c0, c1, m4l, m4h, clo, chi)
            d0, d1 = _muladd(d0, d1, m4l, m4h, clo, chi)
        k = 4 * full
        i += 8 * full
        while k < steps:  # the last few, one step at a time
            lo, hi = _muladd(lo, hi, ml, mh, ilo, ihi)
            keep = _put(w, i, _out(lo, hi))
            k += 1
            i += 2
        if i > n:  # the last output's high half waits for the next draw
            has = 1
    pcg[0] = lo
    pcg[1] = hi
    buf[2] = has
    buf[3] = keep


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def uniform_scaled(pcg: np.ndarray, buf: np.ndarray, m: np.ndarray, norm: np.ndarray,
                   u: np.ndarray) -> None:
    """``u[:] = rng.random(len(u), dtype=float32)``, then
    :func:`envs.sim.dlrm.kernels.scale_draws` of it (``u * norm.repeat(m) + 1``, ``sum(m) ==
    len(u)``), drawn by :func:`_fill24` (``pcg`` and ``buf`` as there)."""
    w = u.view(np.uint32)
    _fill24(pcg, buf, w)
    scale = np.float32(1.0 / 16777216.0)
    one = np.float32(1.0)
    j0 = 0
    for t in range(m.shape[0]):
        c = norm[t]
        v = u[j0:j0 + m[t]]
        wt = w[j0:j0 + m[t]]
        for j in range(v.shape[0]):
            v[j] = np.float32(wt[j]) * scale * c + one
        j0 += m[t]


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def uniform_bucketed(pcg: np.ndarray, buf: np.ndarray, m: np.ndarray, norm: np.ndarray,
                     order: np.ndarray, w: np.ndarray, hist: np.ndarray, start: np.ndarray,
                     u: np.ndarray) -> None:
    """:func:`uniform_scaled`'s draws (table ``t``'s ``m[t]`` in table order, from the same
    stream), placed table by table in the order ``order`` and, within a table, roughly
    sorted: a counting sort on the draws' top ``floor(log2(m[t]))`` bits (the draws are
    uniform, so one to two draws a bucket). The scaling is increasing, so the ranks that
    follow from them come out nearly sorted: most keys out of place are one place off, which
    :func:`envs.sim.dlrm.kernels.nearly_sorted_split` fixes without a branch. (Half a draw a
    bucket measured ~0.5-1 us a request slower in the loop with that sort: the histogram's
    prefix sum costs more than the extra inversions; with a branch on each inversion it was
    the other way round.) ``w``: uint32 scratch of ``len(u)``; ``hist``: int64 scratch of at
    least ``2 max(m) + 1``; ``start``: int64 scratch of ``len(m)`` (where each table's draws
    go).

    The counts are int32 (``hist`` viewed as int32: half the memory, so a large table's
    histogram stays in the first-level cache), the prefix sum runs in a register, and the
    indices are unsigned (no wraparound code)."""
    n = u.shape[0]
    _fill24(pcg, buf, w[:n])
    scale = np.float32(1.0 / 16777216.0)
    one = np.float32(1.0)
    T = m.shape[0]
    h32 = hist.view(np.int32)
    dst = 0
    for oi in range(T):  # table t goes after the tables before it in order
        t = order[oi]
        start[t] = dst
        dst += m[t]
    src = 0
    for t in range(T):
        mt = m[t]
        if mt:
            dst = start[t]
            b = 0  # 2**b <= mt < 2**(b + 1)
            while (2 << b) <= mt and b < 24:
                b += 1
            shift = np.uint32(24 - b)
            nbk = 1 << b
            h = h32[:nbk]
            h[:] = 0
            wt = w[src:src + mt]
            for j in range(mt):
                h[np.uint64(wt[j] >> shift)] += 1
            acc = np.int32(0)  # each bucket's first place
            for k in range(nbk):
                c0 = h[k]
                h[k] = acc
                acc += c0
            c = norm[t]
            ut = u[dst:dst + mt]
            for j in range(mt):
                x = wt[j]
                q = np.uint64(x >> shift)
                p = h[q]
                h[q] = p + 1
                ut[np.uint64(p)] = np.float32(x) * scale * c + one
        src += mt


#: 2**-53: numpy's ``next_double`` is ``(next64 >> 11) * 2**-53``.
_D53 = 1.0 / 9007199254740992.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _next_double(pcg: np.ndarray) -> float:
    """numpy's ``next_double`` of a ``PCG64`` (``pcg64_next64``: one step, the XSL-RR
    output; the one-``uint32`` buffer is neither read nor changed), ``pcg`` as in
    :func:`_fill24`, advanced in place."""
    lo, hi = _muladd(pcg[0], pcg[1], np.uint64(_ML), np.uint64(_MH), pcg[2], pcg[3])
    pcg[0] = lo
    pcg[1] = hi
    return float(_out(lo, hi) >> np.uint64(11)) * _D53


@njit(cache=True, nogil=True, error_model="numpy")
def _binomial_inversion(pcg: np.ndarray, n: int, p: float) -> int:
    """numpy's ``random_binomial_inversion`` (``n * p <= 30``, ``p <= 0.5``): the same
    operations in the same order on the same draws."""
    q = 1.0 - p
    qn = math.exp(n * math.log(q))
    np_ = n * p
    bound = int(min(float(n), np_ + 10.0 * math.sqrt(np_ * q + 1)))
    x = 0
    px = qn
    u = _next_double(pcg)
    while u > px:
        x += 1
        if x > bound:
            x = 0
            px = qn
            u = _next_double(pcg)
        else:
            u -= px
            px = ((n - x + 1) * p * px) / (x * q)
    return x


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _stirling(x: float) -> float:
    """The correction term of numpy's BTPE squeeze (numpy < 2.5's constants)."""
    x2 = x * x
    return (13680. - (462. - (132. - (99. - 140. / x2) / x2) / x2) / x2) / x / 166320.


@njit(cache=True, nogil=True, error_model="numpy")
def _binomial_btpe(pcg: np.ndarray, n: int, p: float) -> int:
    """numpy's ``random_binomial_btpe`` (``n * p > 30``, ``p <= 0.5``; numpy < 2.5): the
    same set-up, steps and acceptance tests on the same draws (numpy's ``goto`` steps as the
    branches of one loop)."""
    r = min(p, 1.0 - p)
    q = 1.0 - r
    fm = n * r + r
    m = math.floor(fm)
    p1 = math.floor(2.195 * math.sqrt(n * r * q) - 4.6 * q) + 0.5
    xm = m + 0.5
    xl = xm - p1
    xr = xm + p1
    c = 0.134 + 20.5 / (15.3 + m)
    a = (fm - xl) / (fm - xl * r)
    laml = a * (1.0 + a / 2.0)
    a = (xr - fm) / (xr * q)
    lamr = a * (1.0 + a / 2.0)
    p2 = p1 * (1.0 + 2.0 * c)
    p3 = p2 + c / laml
    p4 = p3 + c / lamr
    nrq = n * r * q
    while True:
        u = _next_double(pcg) * p4
        v = _next_double(pcg)
        if u <= p1:  # the triangle: accepted
            y = math.floor(xm - p1 * v + u)
            break
        if u <= p2:  # the parallelograms
            x = xl + (u - p1) / c
            v = v * c + 1.0 - abs(m - x + 0.5) / p1
            if v > 1.0:
                continue
            y = math.floor(x)
        elif u <= p3:  # the left tail
            y = math.floor(xl + math.log(v) / laml)
            if y < 0 or v == 0.0:
                continue
            v = v * (u - p2) * laml
        else:  # the right tail
            y = math.floor(xr - math.log(v) / lamr)
            if y > n or v == 0.0:
                continue
            v = v * (u - p3) * lamr
        k = abs(y - m)
        if k <= 20 or k >= nrq / 2.0 - 1:  # explicit evaluation
            s = r / q
            a = s * (n + 1)
            f = 1.0
            if m < y:
                for i in range(m + 1, y + 1):
                    f *= (a / i - s)
            elif m > y:
                for i in range(y + 1, m + 1):
                    f /= (a / i - s)
            if v > f:
                continue
            break
        # squeezing, then the final acceptance test
        rho = (k / nrq) * ((k * (k / 3.0 + 0.625) + 0.16666666666666666) / nrq + 0.5)
        t = -k * k / (2 * nrq)
        big_a = math.log(v)
        if big_a < t - rho:
            break
        if big_a > t + rho:
            continue
        x1 = float(y + 1)
        f1 = float(m + 1)
        z = float(n + 1 - m)
        w = float(n - y + 1)
        if big_a > (xm * math.log(f1 / x1) + (n - m + 0.5) * math.log(z / w)
                    + (y - m) * math.log(w * r / (x1 * q))
                    + _stirling(f1) + _stirling(z) + _stirling(x1) + _stirling(w)):
            continue
        break
    if p > 0.5:
        y = n - y
    return y


@njit(cache=True, nogil=True, error_model="numpy")
def _binomial(pcg: np.ndarray, n: int, p: float) -> int:
    """numpy's ``random_binomial`` (what ``Generator.binomial(n, p)`` draws) from the
    ``PCG64`` state that ``pcg`` views (as in :func:`_fill24`)."""
    if n == 0 or p == 0.0:
        return 0
    if p <= 0.5:
        if p * n <= 30.0:
            return _binomial_inversion(pcg, n, p)
        return _binomial_btpe(pcg, n, p)
    q = 1.0 - p
    if q * n <= 30.0:
        return n - _binomial_inversion(pcg, n, q)
    return n - _binomial_btpe(pcg, n, q)


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def binomials(pcg: np.ndarray, n: np.ndarray, p: np.ndarray, m: np.ndarray) -> int:
    """``m[:] = rng.binomial(n, p)`` (int64 ``n``, float64 ``p``, one draw each, in order,
    as numpy's array call and its scalar calls draw them); returns ``m.sum()``."""
    total = 0
    for i in range(n.shape[0]):
        m[i] = _binomial(pcg, n[i], p[i])
        total += m[i]
    return total


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def binomial_bucketed(pcg: np.ndarray, buf: np.ndarray, cn: np.ndarray, cp: np.ndarray,
                      m: np.ndarray, norm: np.ndarray, order: np.ndarray, w: np.ndarray,
                      hist: np.ndarray, start: np.ndarray, u: np.ndarray) -> int:
    """:func:`binomials` of ``(cn, cp)`` into ``m``, then :func:`uniform_bucketed` of that
    many draws into ``u[:n]`` (``len(u) >= cn.sum()``), in one call; returns ``n``."""
    n = binomials(pcg, cn, cp, m)
    uniform_bucketed(pcg, buf, m, norm, order, w, hist, start, u[:n])
    return n


@njit(cache=True, nogil=True, error_model="numpy", **NO_NRT)
def binomial_scaled(pcg: np.ndarray, buf: np.ndarray, cn: np.ndarray, cp: np.ndarray,
                    m: np.ndarray, norm: np.ndarray, u: np.ndarray) -> int:
    """:func:`binomials` of ``(cn, cp)`` into ``m``, then :func:`uniform_scaled` of that
    many draws into ``u[:n]``, in one call; returns ``n``."""
    n = binomials(pcg, cn, cp, m)
    uniform_scaled(pcg, buf, m, norm, u[:n])
    return n


def _raw(bit_generator: Any) -> tuple[np.ndarray, np.ndarray]:
    """Views of a ``PCG64``'s state: ``(pcg, buf)`` as :func:`uniform_scaled` takes them."""
    addr = int(bit_generator.ctypes.state_address)
    buf = np.ctypeslib.as_array((ctypes.c_uint32 * 4).from_address(addr))
    ptr = int(buf[0]) | (int(buf[1]) << 32)
    pcg = np.ctypeslib.as_array((ctypes.c_uint64 * 4).from_address(ptr))
    return pcg, buf


def _agrees(bit_generator: Any, pcg: np.ndarray, buf: np.ndarray) -> bool:
    """Do the views read what ``bit_generator.state`` says?"""
    st = bit_generator.state
    s = st["state"]
    return (int(pcg[0]) | (int(pcg[1]) << 64)) == s["state"] and \
        (int(pcg[2]) | (int(pcg[3]) << 64)) == s["inc"] and \
        int(buf[2]) == st["has_uint32"] and int(buf[3]) == st["uinteger"]


_CHECKED: bool | None = None


def check() -> bool:
    """Whether :func:`uniform_scaled` reproduces numpy on this installation (computed once).

    The views must read what ``bit_generator.state`` says for a few probe states (so nothing
    is written through a wrong layout); then the same sequence of draws (float32 uniforms by
    :func:`uniform_scaled` in odd and even counts, numpy's binomials, float32 and float64
    uniforms in between) on two generators of the same seed, one drawing every uniform with
    numpy, must give the same numbers and the same final state."""
    global _CHECKED
    if _CHECKED is None:
        try:
            _CHECKED = _check()
        except Exception:  # any surprise means: draw with numpy
            _CHECKED = False
    return _CHECKED


def _check() -> bool:
    if not _HAVE_INTRINSIC:
        return False
    for seed in (0, 12345, 2**63 + 7):
        bg = np.random.PCG64(seed)
        for k in range(3):
            pcg, buf = _raw(bg)
            if not _agrees(bg, pcg, buf):
                return False
            np.random.Generator(bg).random(k + 1, dtype=np.float32)
    norm = np.array([0.5, 3.0, 1.25], dtype=np.float32)
    for seed in (1, 99):
        a = np.random.Generator(np.random.PCG64(seed))
        b = np.random.Generator(np.random.PCG64(seed))
        pcg, buf = _raw(a.bit_generator)
        for step, (m0, m1, m2) in enumerate([(3, 0, 4), (1, 1, 1), (0, 0, 0), (5, 2, 0),
                                             (64, 33, 7), (2, 0, 1), (1000, 1, 999)]):
            m = np.array([m0, m1, m2], dtype=np.int64)
            n = int(m.sum())
            ua = np.empty(n, dtype=np.float32)
            uniform_scaled(pcg, buf, m, norm, ua)
            ub = b.random(n, dtype=np.float32) * norm.repeat(m) + np.float32(1.0)
            if ua.dtype != ub.dtype or not np.array_equal(ua.view(np.uint32),
                                                          ub.view(np.uint32)):
                return False
            # numpy's own draws in between: they must see (and leave) the same state.
            if _between(a, step) != _between(b, step) or \
                    a.bit_generator.state != b.bit_generator.state:
                return False
            if not _agrees(a.bit_generator, pcg, buf):
                return False
    return True


def _between(g: np.random.Generator, step: int) -> list[Any]:
    """Some of numpy's own draws on ``g`` (which depend on ``step``)."""
    if step % 3 == 0:
        return [g.binomial(50, 0.3), float(g.random(dtype=np.float32))]
    if step % 3 == 1:
        return [g.random(3, dtype=np.float32).tolist(), g.random()]
    return [g.integers(0, 1000, 2).tolist()]


_BINOMIAL_CHECKED: bool | None = None

#: (n, p) pairs of the binomial check: both of numpy's algorithms (inversion where
#: ``n * min(p, 1 - p) <= 30``, BTPE above), both sides of ``p = 0.5``, the edges (``n = 0``,
#: ``p = 0``, ``p = 1``) and the layouts' kind (a few hundred to thousands, p ~ 0.6-0.95).
_BINOMIAL_PROBES = ((0, 0.3), (5, 0.0), (7, 1.0), (1, 0.5), (10, 0.5), (60, 0.5), (61, 0.5),
                    (100, 0.05), (100, 0.31), (100, 0.69), (100, 0.95), (1000, 0.001),
                    (1000, 0.2), (1000, 0.999), (192, 0.6561), (448, 0.6561), (512, 0.9277),
                    (640, 0.8984), (6400, 0.6561), (100000, 0.4), (3, 0.9), (2**40, 0.25))


def check_binomial() -> bool:
    """Whether :func:`binomials` reproduces numpy's ``Generator.binomial`` here (computed
    once): it needs :func:`check` (the state's layout), a numpy older than 2.5 (which changed
    BTPE's final acceptance test; numpy >= 2.5 draws with numpy), and, on two generators of
    the same seed, the same numbers and the same final state over :data:`_BINOMIAL_PROBES`
    (many draws each), interleaved with float32 draws in odd counts (the one-``uint32``
    buffer held across the binomials) and numpy's own draws."""
    global _BINOMIAL_CHECKED
    if _BINOMIAL_CHECKED is None:
        try:
            _BINOMIAL_CHECKED = _check_binomial()
        except Exception:  # any surprise means: draw with numpy
            _BINOMIAL_CHECKED = False
    return _BINOMIAL_CHECKED


def _numpy_version() -> tuple[int, int]:
    major, minor = np.__version__.split(".")[:2]
    return int(major), int(minor)


def _check_binomial() -> bool:
    if not check() or _numpy_version() >= (2, 5):
        return False
    cn = np.array([n for n, _ in _BINOMIAL_PROBES], dtype=np.int64)
    cp = np.array([p for _, p in _BINOMIAL_PROBES], dtype=np.float64)
    m = np.empty(len(cn), dtype=np.int64)
    for seed in (3, 2024):
        a = np.random.Generator(np.random.PCG64(seed))
        b = np.random.Generator(np.random.PCG64(seed))
        pcg = _raw(a.bit_generator)[0]
        for step in range(40):
            if step % 2:  # an odd count: the buffer holds a half across the binomials
                if not np.array_equal(a.random(3, dtype=np.float32),
                                      b.random(3, dtype=np.float32)):
                    return False
            with a.bit_generator.lock:
                total = binomials(pcg, cn, cp, m)
            want = [int(b.binomial(n, p)) for n, p in _BINOMIAL_PROBES]
            if m.tolist() != want or total != sum(want):
                return False
            if _between(a, step) != _between(b, step) or \
                    a.bit_generator.state != b.bit_generator.state:
                return False
    return True


def views(bit_generator: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`uniform_scaled`'s views of ``bit_generator``'s state, or None (draw with numpy):
    not a ``PCG64``, or :func:`check` failed. The views point into the generator's memory:
    keep the generator alive while they are used, never pickle them, and hold
    ``bit_generator.lock`` while drawing through them (as numpy does: the kernels release the
    GIL)."""
    if type(bit_generator) is not np.random.PCG64 or not check():
        return None
    pcg, buf = _raw(bit_generator)
    if not _agrees(bit_generator, pcg, buf):
        return None
    return pcg, buf


__all__ = ["binomial_bucketed", "binomial_scaled", "binomials", "check", "check_binomial",
           "uniform_bucketed", "uniform_scaled", "views"]
