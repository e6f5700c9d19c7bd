"""Replay of recorded traces: load, clean, cut a window, rescale to the asked rate.

A replay source is a frozen dataclass that reads its file lazily (and caches the cleaned table
per process, keyed by path, modification time and cleaning options). ``sample(rng, mix, n,
rate_qps)`` then

1. picks the rows of the configured **split**: the trace's time range is cut into
   ``split_blocks`` equal blocks and the last ``test_fraction`` of every block is *test*, the
   rest *train* (``all``: everything). Train and test rows never overlap, and an episode's
   window lies inside one contiguous train (or test) segment;
2. draws a **window** of ``n`` consecutive requests with ``rng``: its start time is uniform over
   the segment's admissible starts (when the segment holds fewer than ``n`` requests and
   ``loop=True`` it repeats, otherwise it is an error);
3. sets the **rate**: ``compress`` rescales time so the window's mean rate
   ``(n - 1) / duration`` is exactly the target (``rate_reference="trace"``: the same factor for
   every window, the split's mean rate -> target, so busy windows stay busy); ``thin`` keeps
   time as recorded and keeps each request with probability target / split rate (falls back to
   ``compress`` when that is >= 1); ``native`` replays at the recorded rate;
4. labels the requests: models from the trace's ``model`` column (names must be in the mix),
   else tenants mapped to the mix's models (``tenant_mapping``), else drawn from the mix; sizes,
   SLAs and priorities from the trace where it has them, else from the mix.

The arrivals' ``start_s`` is where the window starts on the trace's clock (its time column, s),
so ``start_s + time_s`` is the trace's time (with ``compress`` the trace's clock runs faster
than the episode's, by the compression factor).

Hygiene on load (reported in the source's ``report``, a :class:`~traces.report.TraceReport`;
never silent): rows out of time order are counted and sorted; zero-size rows are counted and
skipped (``zero_size="keep"`` keeps them); timestamps quantised to a coarse resolution are
detected (``spread_quantized=True`` spreads each request uniformly inside its slot, with the
episode's rng); leading/trailing periods whose rate is below ``ramp_threshold`` x the steady
rate are detected (``trim_ramp=True`` drops them); rows outside ``[start_s, end_s)`` are cut.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from traces.arrivals import Arrivals, WorkloadMix
from traces.formats import Categorical, RawTrace, read_azure_llm, read_generic_csv, read_jsonl
from traces.paths import shared_file
from traces.report import TraceFormatError, TraceReport

Split = Literal["train", "test", "all"]
RateMode = Literal["compress", "thin", "native", "scale"]
TenantMapping = Literal["weighted", "round_robin", "mix"]

_QUANTA = (60.0, 10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6)


# --------------------------------------------------------------------------------------------
# Hygiene
# --------------------------------------------------------------------------------------------


def detect_quantum(t: np.ndarray, min_share: float = 0.99) -> float | None:
    """The coarsest of 60 s, 10 s, 1 s, ..., 1 us that at least ``min_share`` of ``t`` are
    multiples of, or None (e.g. for nanosecond-resolution timestamps)."""
    if len(t) < 2:
        return None
    step = max(1, len(t) // 200_000)
    x = np.asarray(t[::step], dtype=np.float64)
    big = float(np.abs(x).max())
    for q in _QUANTA:
        r = x / q
        tol = 1e-6 + 8 * np.finfo(np.float64).eps * big / q
        if tol > 0.01:
            continue
        if np.mean(np.abs(r - np.rint(r)) <= tol) >= min_share:
            return q
    return None


def detect_ramps(t: np.ndarray, threshold: float = 0.1) -> tuple[float, int, float, int]:
    """Leading and trailing periods whose rate is below ``threshold`` x the steady rate.

    The trace (sorted ``t``) is cut into equal bins (60 s when it lasts an hour or more, else
    1/60 of its duration); the steady rate is the median bin rate; the ramp-up is the run of
    leading bins below the threshold, the ramp-down the trailing run.

    Returns:
        ``(ramp_up_s, ramp_up_rows, ramp_down_s, ramp_down_rows)``: lengths measured from the
        first (to the last) arrival and the rows inside them.
    """
    n = len(t)
    if n < 100:
        return 0.0, 0, 0.0, 0
    t0, dur = float(t[0]), float(t[-1] - t[0])
    if not dur > 0:
        return 0.0, 0, 0.0, 0
    nb = max(1, round(dur / 60.0)) if dur >= 3600 else 60
    w = dur / nb
    b = np.minimum(((t - t0) / w).astype(np.int64), nb - 1)
    counts = np.bincount(b, minlength=nb)
    steady = float(np.median(counts))
    if steady <= 0:
        return 0.0, 0, 0.0, 0
    low = counts < threshold * steady
    lead = int(np.argmin(low)) if not low.all() else 0
    trail = int(np.argmin(low[::-1])) if not low.all() else 0
    up_s = lead * w
    down_s = trail * w
    up_rows = int(np.searchsorted(t, t0 + up_s, side="left")) if lead else 0
    down_rows = n - int(np.searchsorted(t, t0 + (nb - trail) * w, side="left")) if trail else 0
    return up_s, up_rows, down_s, down_rows


@dataclass(frozen=True)
class TraceTable:
    """A cleaned trace: rows sorted by time plus what loading found.

    Attributes:
        source: The file(s).
        time_s: Sorted arrival times (s), read-only.
        model: Model codes into ``model_names`` (or None).
        model_names: Distinct model names of the trace.
        model_first_line: File line where each model name first appears.
        tenant: Tenant codes into ``tenant_names`` (or None).
        tenant_names: Distinct tenant names.
        size: Request sizes (or None).
        output_size: Output sizes (or None).
        priority: Priorities (or None).
        sla_ms: Absolute SLAs (or None).
        quantum_s: Timestamp quantum when quantised (see :class:`TraceReport`).
        report: What loading found and skipped.
    """

    source: str
    time_s: np.ndarray
    model: np.ndarray | None
    model_names: tuple[str, ...]
    model_first_line: tuple[int, ...]
    tenant: np.ndarray | None
    tenant_names: tuple[str, ...]
    size: np.ndarray | None
    output_size: np.ndarray | None
    priority: np.ndarray | None
    sla_ms: np.ndarray | None
    quantum_s: float | None
    report: TraceReport

    def __len__(self) -> int:
        return len(self.time_s)


#: A gap this many times the median gap is reported as an outlier (a time far beyond the rest).
GAP_OUTLIER_RATIO = 1000.0


def gap_outlier(ts: np.ndarray) -> str | None:
    """A warning when the largest gap between sorted times is at least
    :data:`GAP_OUTLIER_RATIO` times the median positive gap and over half the trace's span
    (one stray time, e.g. ``1e9`` among seconds, or a hole that is most of the trace)."""
    if len(ts) < 3:
        return None
    gaps = np.diff(ts)
    positive = gaps[gaps > 0]
    if len(positive) == 0:
        return None
    median = float(np.median(positive))
    i = int(np.argmax(gaps))
    big = float(gaps[i])
    span = float(ts[-1] - ts[0])
    if big < GAP_OUTLIER_RATIO * median or big <= 0.5 * span:
        return None
    return (f"a gap of {big:.6g} s after t = {float(ts[i]):.6g} s is {big / median:.3g} x the "
            f"median gap ({median:.3g} s) and {big / span:.0%} of the trace's span: a time far "
            "beyond the rest? (kept as it is)")


def clean(raw: RawTrace, *, start_s: float | None = None, end_s: float | None = None,
          zero_size: Literal["skip", "keep"] = "skip", trim_ramp: bool = False,
          ramp_threshold: float = 0.1, source: str | None = None) -> TraceTable:
    """Cut, de-zero, sort and inspect a raw trace (see the module docstring)."""
    n0 = len(raw)
    t = raw.time_s
    msgs: list[str] = []
    if raw.ignored_columns:
        msgs.append(f"ignored column(s): {', '.join(raw.ignored_columns)}")
    unsorted = int(np.count_nonzero(np.diff(t) < 0)) if n0 > 1 else 0
    keep = np.ones(n0, dtype=bool)
    if start_s is not None:
        keep &= t >= start_s
    if end_s is not None:
        keep &= t < end_s
    cut = n0 - int(keep.sum())
    if cut:
        msgs.append(f"{cut} rows outside the cut window [{start_s}, {end_s}) dropped")
    zero_rows = skipped_zero = 0
    if raw.size is not None:
        zero = (raw.size == 0) & keep
        zero_rows = int(zero.sum())
        if zero_rows and zero_size == "skip":
            keep &= ~zero
            skipped_zero = zero_rows
            msgs.append(f"{zero_rows} rows with size 0 skipped (zero_size='keep' keeps them)")
        elif zero_rows:
            msgs.append(f"{zero_rows} rows with size 0 kept")
    warns: list[str] = []
    if unsorted:
        warns.append(f"{unsorted} rows earlier than the row before them (rows sorted by time)")
        msgs.append(warns[-1])
    idx = np.flatnonzero(keep)
    if unsorted:
        idx = idx[np.argsort(t[idx], kind="stable")]
    ts = t[idx]

    ramp_up_s, ramp_up_rows, ramp_down_s, ramp_down_rows = detect_ramps(ts, ramp_threshold)
    skipped_ramp = 0
    for what, secs, rows in (("ramp-up: first", ramp_up_s, ramp_up_rows),
                             ("ramp-down: last", ramp_down_s, ramp_down_rows)):
        if secs > 0:
            msgs.append(f"{what} {secs:.1f} s ({rows} rows) below {ramp_threshold:g} x the "
                        f"steady rate" + (" dropped" if trim_ramp else
                                          " (trim_ramp=True drops them)"))
    if trim_ramp and (ramp_up_rows or ramp_down_rows):
        lo, hi = ramp_up_rows, len(idx) - ramp_down_rows
        skipped_ramp = len(idx) - (hi - lo)
        idx, ts = idx[lo:hi], ts[lo:hi]

    outlier = gap_outlier(ts)
    if outlier:
        warns.append(outlier)
        msgs.append(outlier)
    tied = int(np.count_nonzero(np.diff(ts) == 0)) if len(ts) > 1 else 0
    quantum = detect_quantum(ts)
    quantized = False
    if quantum is not None and len(ts) > 1:
        mean_gap = float(ts[-1] - ts[0]) / (len(ts) - 1)
        quantized = quantum >= 0.01 * mean_gap
        if quantized:
            msgs.append(f"timestamps quantised to {quantum:g} s ({tied} rows share the "
                        f"previous row's time; spread_quantized=True spreads them in their slot)")
    if tied and not quantized:
        msgs.append(f"{tied} rows share the previous row's time")

    def sub(col: np.ndarray | None) -> np.ndarray | None:
        if col is None:
            return None
        out = np.ascontiguousarray(col[idx])
        out.flags.writeable = False
        return out

    def cat(c: Categorical | None) -> tuple[np.ndarray | None, tuple[str, ...], tuple[int, ...]]:
        if c is None:
            return None, (), ()
        return sub(c.codes), c.names, c.first_line

    model, model_names, model_first = cat(raw.model)
    tenant, tenant_names, _ = cat(raw.tenant)
    ts = np.ascontiguousarray(ts)
    ts.flags.writeable = False
    name = source or raw.path
    report = TraceReport(
        source=name, rows_read=n0, rows_kept=len(ts), zero_size_rows=zero_rows,
        skipped_zero_size=skipped_zero, unsorted_rows=unsorted, tied_rows=tied,
        quantum_s=quantum, quantized=quantized, ramp_up_s=ramp_up_s, ramp_up_rows=ramp_up_rows,
        ramp_down_s=ramp_down_s, ramp_down_rows=ramp_down_rows, skipped_ramp=skipped_ramp,
        cut_rows=cut, messages=tuple(msgs), warnings=tuple(warns))
    return TraceTable(
        source=name, time_s=ts, model=model, model_names=model_names,
        model_first_line=model_first, tenant=tenant, tenant_names=tenant_names,
        size=sub(raw.size), output_size=sub(raw.output_size), priority=sub(raw.priority),
        sla_ms=sub(raw.sla_ms), quantum_s=quantum if quantized else None, report=report)


# --------------------------------------------------------------------------------------------
# Windows, splits, rates, labels (shared with the ServeGen replay)
# --------------------------------------------------------------------------------------------


def split_ranges(t_lo: float, t_hi: float, split: Split, test_fraction: float,
                 blocks: int) -> list[tuple[float, float]]:
    """Time ranges ``[a, b)`` of a split of ``[t_lo, t_hi]`` (the last one includes ``t_hi``).

    The range is cut into ``blocks`` equal blocks; the last ``test_fraction`` of each block is
    test, the rest train. ``all`` is the whole range.
    """
    if split == "all":
        return [(t_lo, t_hi)]
    edges = t_lo + (t_hi - t_lo) * np.arange(blocks + 1) / blocks
    edges[-1] = t_hi
    cuts = edges[:-1] + (1.0 - test_fraction) * np.diff(edges)
    if split == "train":
        return [(float(a), float(b)) for a, b in zip(edges[:-1], cuts, strict=True)]
    return [(float(a), float(b)) for a, b in zip(cuts, edges[1:], strict=True)]


def tenant_model_map(volume: np.ndarray, mix: WorkloadMix,
                     mode: TenantMapping) -> np.ndarray:
    """Which mix model each tenant's requests go to (int32 per tenant).

    Args:
        volume: Requests per tenant over the whole trace (fixes the mapping for all episodes).
        mix: The workload mix.
        mode: ``weighted``: tenants, largest first, go to the model furthest below its share
            of the mix's popularity (so model shares follow the mix while each tenant keeps its
            own burst pattern); ``round_robin``: tenant of volume rank ``r`` -> model
            ``r mod M``.
    """
    order = np.argsort(-np.asarray(volume, dtype=np.float64), kind="stable")
    lut = np.zeros(len(volume), dtype=np.int32)
    m = len(mix.models)
    if mode == "round_robin":
        lut[order] = np.arange(len(order)) % m
        return lut
    p = mix.probabilities
    assigned = np.zeros(m)
    for i in order.tolist():
        v = float(volume[i])
        k = int(np.argmax(p * (assigned.sum() + v) - assigned))
        lut[i] = k
        assigned[k] += v
    return lut


@dataclass(frozen=True, kw_only=True)
class WindowOptions:
    """Options every replay shares (see the :mod:`traces.replay` docstring).

    Attributes:
        split: ``train``, ``test`` or ``all``.
        test_fraction: Share of each block's time that is test.
        split_blocks: Number of equal blocks the time range is cut into before splitting.
        rate_mode: ``compress``, ``thin``, ``native`` or ``scale`` (keeps the trace's clock).
        rate_reference: ``window`` (every episode exactly at the target rate; with ``scale``
            a window that falls in a gap of the trace starts where requests resume) or
            ``trace``.
        rate_scale: Multiplies the target rate.
        loop: Repeat a segment that is shorter than an episode instead of failing.
        tenant_mapping: ``weighted``, ``round_robin``, or ``mix`` (ignore tenants, draw models
            from the mix).
        tenant_models: Explicit tenant -> model (mix) name map (e.g. ``{code: bert-base,
            conv: resnet50}``); tenants not listed follow ``tenant_mapping``.
        scale_window_s: Bin of trace time within which ``rate_mode="scale"`` regenerates
            arrivals (row replays; ServeGen uses its fitted windows).
    """

    split: Split = "all"
    test_fraction: float = 0.2
    split_blocks: int = 1
    rate_mode: RateMode = "compress"
    rate_reference: Literal["window", "trace"] = "window"
    rate_scale: float = 1.0
    loop: bool = True
    tenant_mapping: TenantMapping = "weighted"
    tenant_models: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None
    scale_window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.tenant_models is not None:
            pairs = dict(self.tenant_models)  # stored as sorted pairs: hashable, comparable
            object.__setattr__(self, "tenant_models",
                               tuple(sorted((str(k), str(v)) for k, v in pairs.items())))
        if not self.scale_window_s > 0:
            raise ValueError(f"replay: scale_window_s must be > 0, got {self.scale_window_s}")
        if self.split not in ("train", "test", "all"):
            raise ValueError(f"replay: split must be train|test|all, got '{self.split}'")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"replay: test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.split_blocks < 1:
            raise ValueError(f"replay: split_blocks must be >= 1, got {self.split_blocks}")
        if self.rate_mode not in ("compress", "thin", "native", "scale"):
            raise ValueError(f"replay: rate_mode must be compress|thin|native|scale, got "
                             f"'{self.rate_mode}'")
        if self.rate_reference not in ("window", "trace"):
            raise ValueError(f"replay: rate_reference must be window|trace, got "
                             f"'{self.rate_reference}'")
        if self.tenant_mapping not in ("weighted", "round_robin", "mix"):
            raise ValueError(f"replay: tenant_mapping must be weighted|round_robin|mix, got "
                             f"'{self.tenant_mapping}'")
        if not self.rate_scale > 0:
            raise ValueError(f"replay: rate_scale must be > 0, got {self.rate_scale}")

    def tenant_lut(self, volume: np.ndarray, names: tuple[str, ...],
                   mix: WorkloadMix) -> np.ndarray:
        """Tenant code -> model index: :func:`tenant_model_map` by ``tenant_mapping``, then
        the explicit ``tenant_models`` entries.

        Raises:
            ValueError: a ``tenant_models`` tenant not in the trace or model not in the mix.
        """
        lut = tenant_model_map(volume, mix, "weighted" if self.tenant_mapping == "mix"
                               else self.tenant_mapping)
        for tenant, model in dict(self.tenant_models or ()).items():
            if tenant not in names:
                raise ValueError(f"replay: tenant_models names tenant '{tenant}'; the trace has "
                                 f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
            lut[names.index(tenant)] = mix.index(model)
        return lut

    def _target(self, rate_qps: float) -> float:
        if self.rate_mode == "native":
            return math.nan
        rate = float(rate_qps) * self.rate_scale
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"trace: arrival rate must be > 0 and finite, got {rate}")
        return rate


def stochastic_round(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """``floor(x)`` plus one with probability ``x - floor(x)`` (unbiased integer counts)."""
    lo = np.floor(x)
    return (lo + (rng.random(len(x)) < x - lo)).astype(np.int64)


def renewal_fill(rng: np.random.Generator, start: np.ndarray, width: np.ndarray,
                 k: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``k[g]`` arrivals inside ``[start[g], start[g] + width[g])`` for every group ``g``: the
    normalised partial sums of ``k + 1`` Gamma(``shape[g]``) gaps (so the gaps have CV
    ``1 / sqrt(shape)`` and the count is exactly ``k``), as ServeGen's regeneration.

    Returns:
        ``(times, group)``, grouped (not sorted across groups).
    """
    k = np.asarray(k, dtype=np.int64)
    pos_k = np.flatnonzero(k > 0)
    if len(pos_k) == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    kk = k[pos_k]
    g_len = kk + 1
    seg_start = np.concatenate(([0], np.cumsum(g_len)[:-1]))
    gaps = rng.standard_gamma(np.repeat(shape[pos_k], g_len))
    tot = np.add.reduceat(gaps, seg_start)
    flat = ~(tot > 0) | ~np.isfinite(tot)
    if flat.any():  # every gap underflowed: spread evenly
        gaps[np.repeat(flat, g_len)] = 1.0
        tot = np.add.reduceat(gaps, seg_start)
    gaps /= np.repeat(tot, g_len)
    cs = np.cumsum(gaps)
    before = np.concatenate(([0.0], cs[seg_start[1:] - 1]))
    pos = cs - np.repeat(before, g_len)
    keep = np.ones(len(cs), dtype=bool)
    keep[seg_start + kk] = False  # the (k+1)-th partial sum is the window's end
    group = np.repeat(pos_k, kk)
    times = start[group] + width[group] * np.clip(pos[keep], 0.0, 1.0 - 1e-12)
    return times, group


def _cv_shape(t: np.ndarray, tenant: np.ndarray, n_tenants: int) -> np.ndarray:
    """Per tenant, the Gamma shape ``1 / cv^2`` of its inter-arrival times (cv clipped to
    [0.2, 5]; 1 for a tenant with fewer than 3 requests)."""
    out = np.ones(n_tenants)
    for c in range(n_tenants):
        tc = t[tenant == c]
        if len(tc) >= 3:
            g = np.diff(tc)
            mu = float(g.mean())
            if mu > 0:
                cv = min(max(float(g.std()) / mu, 0.2), 5.0)
                out[c] = 1.0 / (cv * cv)
    return out


#: Most (bin, tenant) groups ``rate_mode="scale"`` builds for a split: about 3.8 years of trace
#: time in 60 s bins for one tenant (each group costs a few numbers; a time far beyond the
#: rest would otherwise ask for memory without bound).
MAX_SCALE_BINS = 2_000_000

#: Most arrivals ``rate_mode="scale"`` draws at once beyond 100x what an episode still needs:
#: a bin is filled whole, so a sparse bin much longer than the window (or a factor blown up by
#: an outlier) would ask for arrivals without bound (1e11 for a 1e9-s outlier in 2e5-s bins).
MAX_SCALE_DRAWS = 20_000_000


def scale_rows(rng: np.random.Generator, t: np.ndarray, tenant: np.ndarray | None, i0: int,
               i1: int, n: int, target: float, reference: str, bin_s: float, loop: bool,
               name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """``rate_mode="scale"`` for rows ``[i0, i1)`` of sorted times ``t``: ``n`` arrivals on the
    trace's clock from a uniformly drawn start, at the rate multiplied (see the module doc).

    Returns:
        ``(rows, times, start)``: per arrival the recorded row whose attributes it copies, and
        its time from the window's start (sorted); the window's start on the trace's clock.
    """
    seg = t[i0:i1]
    cnt = i1 - i0
    base = float(seg[0])
    span = float(seg[-1]) - base
    period = span + span / (cnt - 1) if span > 0 else 1.0
    nb = max(1, math.ceil(period / bin_s))
    tc = (np.zeros(cnt, dtype=np.int64) if tenant is None
          else np.asarray(tenant[i0:i1], dtype=np.int64))
    T = int(tc.max()) + 1
    if nb * T > MAX_SCALE_BINS:
        raise ValueError(
            f"{name}: rate_mode='scale' would cut {span:.4g} s of trace into {nb:,} bins of "
            f"{bin_s:g} s x {T} tenant(s), over the limit of {MAX_SCALE_BINS:,} (a time far "
            "beyond the rest?); check the trace's times or raise scale_window_s")
    b = np.minimum(((seg - base) // bin_s).astype(np.int64), nb - 1)
    grp = b * T + tc
    order = np.argsort(grp, kind="stable")
    gcount = np.bincount(grp, minlength=nb * T)
    gstart = np.concatenate(([0], np.cumsum(gcount)[:-1]))
    shape = np.tile(_cv_shape(seg - base, tc, T), nb)
    bstart = np.repeat(np.arange(nb) * bin_s, T)
    bwidth = np.repeat(np.minimum(bin_s, period - np.arange(nb) * bin_s), T)
    per_bin = gcount.reshape(nb, T).sum(axis=1).astype(np.float64)
    t0 = float(rng.random()) * period
    b0 = min(int(t0 // bin_s), nb - 1)
    if reference == "window":  # the trace's count over n / target seconds from t0
        dur = n / target
        cum = np.concatenate(([0.0], np.cumsum(per_bin)))
        edges = np.minimum(np.arange(nb + 1) * bin_s, period)

        def count_to(x: float) -> float:
            wraps, r = divmod(x, period)
            return wraps * cum[-1] + float(np.interp(r, edges, cum))

        c = count_to(t0 + dur) - count_to(t0)
        if c < 1:  # the window falls in a gap of the trace: it starts where requests resume
            nz = np.flatnonzero(per_bin)
            later = nz[nz > b0]
            if len(later) or loop:
                b0 = int(later[0]) if len(later) else int(nz[0])
                t0 = b0 * bin_s
                c = count_to(t0 + dur) - count_to(t0)
        factor = n / c if c >= 1 else target / (cnt / period)
    else:
        factor = target / (cnt / period)
    parts_t: list[np.ndarray] = []
    parts_r: list[np.ndarray] = []
    have = 0
    off = b0
    first = True
    while have < n:
        need = (n - have) + 10 * math.sqrt(n - have) + 10
        offs: list[int] = []
        acc = 0.0
        while acc < need or not offs:
            if off >= nb and not loop:
                raise ValueError(f"{name}: the split holds too few requests for {n} at this "
                                 "rate; use loop=True, a larger split or fewer requests")
            offs.append(off)
            acc += per_bin[off % nb] * factor
            off += 1
            if len(offs) > 4 * nb and acc == 0:
                raise ValueError(f"{name}: the window holds no requests")
        if acc > max(100.0 * need, MAX_SCALE_DRAWS):
            raise ValueError(
                f"{name}: rate_mode='scale' would draw {acc:.3g} arrivals in {len(offs)} bin(s) "
                f"of {bin_s:g} s to give the {n - have:,} still needed (the rate multiplied by "
                f"{factor:.3g}: requests too sparse for bins this long, or a time far beyond "
                "the rest?); lower scale_window_s or check the trace's times")
        o = np.asarray(offs)
        groups = ((o % nb)[:, None] * T + np.arange(T)[None, :]).ravel()
        shift = np.repeat((o // nb) * period, T)
        k = stochastic_round(rng, gcount[groups] * factor)
        times, g = renewal_fill(rng, bstart[groups] + shift, bwidth[groups], k, shape[groups])
        gg = groups[g]
        src = order[gstart[gg] + (rng.random(len(gg)) * gcount[gg]).astype(np.int64)
                    .clip(0, np.maximum(gcount[gg] - 1, 0))]
        srt = np.argsort(times, kind="stable")
        times, src = times[srt], src[srt]
        if first:
            sel = times >= t0
            times, src = times[sel], src[sel]
            first = False
        parts_t.append(times)
        parts_r.append(src)
        have += len(times)
    times = np.concatenate(parts_t)[:n] - t0
    rows = np.concatenate(parts_r)[:n] + i0
    return rows, times, base + t0


def _choose_segment(rng: np.random.Generator, counts: np.ndarray) -> int:
    if len(counts) == 1:
        return 0
    p = counts / counts.sum()
    return int(np.searchsorted(np.cumsum(p), rng.random() * (1 - 1e-12), side="right"))


def window_positions(rng: np.random.Generator, t: np.ndarray, i0: int, i1: int, m: int,
                     loop: bool, name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows of a window of ``m`` requests inside rows ``[i0, i1)`` of sorted times ``t``.

    Returns:
        ``(rows, times, t0)``: row indices, their times (shifted by whole segment periods when
        the segment repeats) and the window's start time ``t0 <= times[0]``.
    """
    cnt = i1 - i0
    if m <= cnt:
        lo, hi = float(t[i0]), float(t[i1 - m])
        t0 = lo + float(rng.random()) * (hi - lo)
        s = int(np.clip(np.searchsorted(t, t0, side="left"), i0, i1 - m))
        t0 = min(t0, float(t[s]))
        rows = np.arange(s, s + m)
        return rows, t[rows].astype(np.float64), t0
    if not loop:
        raise ValueError(f"{name}: the split holds {cnt} requests but the episode needs {m}; "
                         f"use loop=True, a larger split or fewer requests")
    s = i0 + int(rng.integers(cnt))
    k = (s - i0) + np.arange(m)
    rows = i0 + k % cnt
    span = float(t[i1 - 1] - t[i0])
    period = span + span / (cnt - 1)
    return rows, t[rows] + (k // cnt) * period, float(t[s])


@dataclass(frozen=True, kw_only=True)
class RowOptions(WindowOptions):
    """Options of row-per-request replays (CSV, JSON Lines, Azure).

    Attributes:
        start_s: Drop rows before this time (a cut window), or None.
        end_s: Drop rows at or after this time, or None.
        zero_size: ``skip`` (default) or ``keep`` rows whose size is 0.
        spread_quantized: Spread requests uniformly inside their timestamp slot when the trace
            is quantised (drawn with the episode's rng).
        trim_ramp: Drop detected ramp-up/ramp-down periods.
        ramp_threshold: A ramp's rate is below this fraction of the steady rate.
        relabel: Ignore the trace's ``model`` column and draw models from the mix.
    """

    start_s: float | None = None
    end_s: float | None = None
    zero_size: Literal["skip", "keep"] = "skip"
    spread_quantized: bool = False
    trim_ramp: bool = False
    ramp_threshold: float = 0.1
    relabel: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.zero_size not in ("skip", "keep"):
            raise ValueError(f"replay: zero_size must be skip|keep, got '{self.zero_size}'")
        if not 0 < self.ramp_threshold < 1:
            raise ValueError(f"replay: ramp_threshold must be in (0, 1), got "
                             f"{self.ramp_threshold}")


@lru_cache(maxsize=16)
def _cached_table(kind: str, paths: tuple[str, ...], stamp: tuple[tuple[int, int], ...],
                  start_s: float | None, end_s: float | None, zero_size: str, trim_ramp: bool,
                  ramp_threshold: float) -> TraceTable:
    del stamp  # part of the cache key only
    if kind == "csv":
        raw = read_generic_csv(paths[0])
    elif kind == "jsonl":
        raw = read_jsonl(paths[0])
    elif kind == "azure":
        raw = _merge_azure(paths)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return clean(raw, start_s=start_s, end_s=end_s, zero_size=zero_size,  # type: ignore[arg-type]
                 trim_ramp=trim_ramp, ramp_threshold=ramp_threshold,
                 source=" + ".join(paths))


def clear_cache() -> None:
    """Forget every cached trace table (e.g. to time a cold load)."""
    _cached_table.cache_clear()


def _merge_azure(paths: tuple[str, ...]) -> RawTrace:
    raws = [read_azure_llm(p) for p in paths]
    if len(raws) == 1:
        return raws[0]
    origin = min(r.epoch_s for r in raws)
    times = np.concatenate([r.time_s + (r.epoch_s - origin) for r in raws])
    names = tuple(Path(p).stem.rsplit("_", 1)[-1] for p in paths)
    codes = np.concatenate([np.full(len(r), i, dtype=np.int32) for i, r in enumerate(raws)])
    line = np.concatenate([r.line for r in raws])
    first_line = tuple(int(r.line[0]) if len(r) else 0 for r in raws)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in raws])

    order = np.argsort(times, kind="stable")  # merging two sorted files is not "unsorted"
    return RawTrace(path=" + ".join(paths), format="azure", time_s=times[order],
                    line=line[order], tenant=Categorical(codes[order], names, first_line),
                    size=cat("size")[order], output_size=cat("output_size")[order],
                    epoch_s=origin)


class _TableReplay(RowOptions, ABC):
    """Shared behaviour of row-per-request replays; subclasses say which files to read."""

    _kind = "csv"

    @abstractmethod
    def _paths(self) -> tuple[str, ...]:
        """The files to read."""

    def load(self) -> TraceTable:
        """The cleaned trace (read once per process and options, then cached).

        Raises:
            TraceFormatError: a malformed file.
            FileNotFoundError: a missing file.
        """
        paths = tuple(str(Path(p).resolve()) for p in self._paths())
        stamp = []
        for p in paths:
            st = os.stat(p)
            stamp.append((st.st_mtime_ns, st.st_size))
        return _cached_table(self._kind, paths, tuple(stamp), self.start_s, self.end_s,
                             self.zero_size, self.trim_ramp, self.ramp_threshold)

    @property
    def report(self) -> TraceReport:
        """What loading found (counts and messages)."""
        return self.load().report

    def segments(self, split: Split | None = None) -> list[tuple[float, float]]:
        """Time ranges (trace time, s) that ``split`` (default: this replay's) may use."""
        t = self.load().time_s
        if len(t) == 0:
            return []
        return split_ranges(float(t[0]), float(t[-1]), split or self.split, self.test_fraction,
                            self.split_blocks)

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` consecutive requests of a window of the trace at (about) ``rate_qps``."""
        table = self.load()
        name = table.source
        target = self._target(rate_qps)
        t = table.time_s
        if n <= 0:
            return Arrivals.from_mix(np.empty(0), mix, rng)
        if len(t) < 2:
            raise ValueError(f"{name}: a replay needs at least 2 requests, the trace has "
                             f"{len(t)}")
        model_lut = self._model_lut(table, mix)
        bounds = []
        for a, b in self.segments():
            i0 = int(np.searchsorted(t, a, side="left"))
            i1 = len(t) if b >= t[-1] else int(np.searchsorted(t, b, side="left"))
            if i1 - i0 >= 2:
                bounds.append((i0, i1))
        if not bounds:
            raise ValueError(f"{name}: split '{self.split}' holds fewer than 2 requests")
        counts = np.array([i1 - i0 for i0, i1 in bounds], dtype=np.float64)
        i0, i1 = bounds[_choose_segment(rng, counts)]
        seg_rate = (i1 - i0 - 1) / max(float(t[i1 - 1] - t[i0]), 1e-12)

        mode = self.rate_mode
        p = target / seg_rate if mode == "thin" else 1.0
        if mode == "thin" and p >= 1.0:
            mode = "compress"
        if mode == "scale":
            rows, times, t0 = scale_rows(rng, t, table.tenant, i0, i1, n, target,
                                         self.rate_reference, self.scale_window_s, self.loop,
                                         name)
        elif mode == "thin":
            m = math.ceil(n / p + 8 * math.sqrt(n / p) + 32)
            while True:
                rows, times, t0 = window_positions(rng, t, i0, i1, m, self.loop, name)
                kept = np.flatnonzero(rng.random(m) < p)
                if len(kept) >= n:
                    break
                m = int(m * 1.5) + 1
            rows, times = rows[kept[:n]], times[kept[:n]]
        else:
            rows, times, t0 = window_positions(rng, t, i0, i1, n, self.loop, name)
        if mode != "scale":
            times = times - t0
        q = table.quantum_s
        if self.spread_quantized and q and mode != "scale":
            times = times + rng.random(len(times)) * q
            order = np.argsort(times, kind="stable")
            rows, times = rows[order], times[order]
        if mode == "compress":
            if self.rate_reference == "window":
                span = float(times[-1] - times[0])
                if not span > 0:
                    raise ValueError(f"{name}: the window has zero duration; cannot rescale "
                                     "(try spread_quantized=True)")
                native = (n - 1) / span
            else:
                native = seg_rate
            times = times * (native / target)

        model = None
        if model_lut is not None:
            model = model_lut[table.model[rows]]  # type: ignore[index]
        elif table.tenant is not None and self.tenant_mapping != "mix":
            volume = np.bincount(table.tenant, minlength=len(table.tenant_names))
            model = self.tenant_lut(volume, tuple(table.tenant_names), mix)[table.tenant[rows]]

        def col(c: np.ndarray | None) -> np.ndarray | None:
            return None if c is None else c[rows]

        return Arrivals.from_mix(
            times, mix, rng, model=model, size=col(table.size),
            output_size=col(table.output_size), sla_ms=col(table.sla_ms),
            priority=col(table.priority), tenant=col(table.tenant),
            tenants=table.tenant_names, start_s=t0)

    def _model_lut(self, table: TraceTable, mix: WorkloadMix) -> np.ndarray | None:
        if table.model is None or self.relabel:
            return None
        lut = np.empty(len(table.model_names), dtype=np.int32)
        known = {nm: i for i, nm in enumerate(mix.names)}
        for code, nm in enumerate(table.model_names):
            if nm not in known:
                path = table.source.split(" + ")[0]
                raise TraceFormatError(
                    path, table.model_first_line[code],
                    f"unknown model '{nm}' (workload mix has: {', '.join(mix.names)}; "
                    f"relabel=True draws models from the mix instead)")
            lut[code] = known[nm]
        return lut


@dataclass(frozen=True)
class CsvReplay(_TableReplay):
    """Replay of a generic CSV trace (format: :func:`traces.formats.read_generic_csv`).

    Args:
        path: The CSV file.
        **options: :class:`RowOptions` (keyword only).
    """

    path: str = ""
    _kind = "csv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ValueError("CsvReplay: 'path' is required")

    def _paths(self) -> tuple[str, ...]:
        return (str(self.path),)


@dataclass(frozen=True)
class JsonlReplay(_TableReplay):
    """Replay of a JSON Lines trace (format: :func:`traces.formats.read_jsonl`).

    Args:
        path: The ``.jsonl`` file.
        **options: :class:`RowOptions` (keyword only).
    """

    path: str = ""
    _kind = "jsonl"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ValueError("JsonlReplay: 'path' is required")

    def _paths(self) -> tuple[str, ...]:
        return (str(self.path),)


AZURE_FILES = {"code": "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
               "conv": "azure-llm-2023/AzureLLMInferenceTrace_conv.csv"}


@dataclass(frozen=True)
class AzureLLMReplay(_TableReplay):
    """Replay of the Azure LLM inference trace 2023 (format:
    :func:`traces.formats.read_azure_llm`; data in ``<shared>/traces/azure-llm-2023/``).

    Sizes are the prompt (``ContextTokens``) and output (``GeneratedTokens``) token counts.
    ``service="both"`` merges the two services on their common clock with the service as the
    tenant, mapped to the mix's models by ``tenant_mapping``; a single service draws its model
    labels from the mix.

    Args:
        service: ``code``, ``conv`` or ``both``.
        path: Explicit file (single service only); None finds it in the shared directory.
        **options: :class:`RowOptions` (keyword only).
    """

    service: Literal["code", "conv", "both"] = "code"
    path: str | None = None
    _kind = "azure"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.service not in ("code", "conv", "both"):
            raise ValueError(f"AzureLLMReplay: service must be code|conv|both, got "
                             f"'{self.service}'")

    def _paths(self) -> tuple[str, ...]:
        if self.path:
            return (str(self.path),)
        names = ("code", "conv") if self.service == "both" else (self.service,)
        return tuple(str(shared_file("traces/" + AZURE_FILES[s])) for s in names)


def with_split(source: _TableReplay, split: Split) -> _TableReplay:
    """The same replay on another split (e.g. the test twin of a training trace)."""
    return replace(source, split=split)
