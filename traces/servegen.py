"""ServeGen per-tenant workload windows, regenerated as arrivals (Xiang et al., arXiv:2505.09999).

Data: ``<shared>/traces/servegen/servegen_<dataset>_{rates,sizes}.csv`` (Apache-2.0, derived
from alibaba/ServeGen; see PROVENANCE.md there). Formats, as parsed by :func:`read_rates` and
:func:`read_sizes`:

- ``*_rates.csv``: ``client_id,window_start_s,rate_rps,iat_cv,iat_dist,iat_shape,iat_scale``.
  One row per (client, 600 s window) with a non-zero rate (missing rows mean rate 0).
  ``rate_rps * 600`` is the window's request count; ``iat_dist`` is ``Gamma`` or ``Weibull``
  with the fitted ``iat_shape``/``iat_scale`` of the inter-arrival times.
- ``*_sizes.csv``: ``client_id,window_start_s,field,mean,p10,p25,p50,p75,p90,p95,p99,max``.
  Per client, 6-hour window and field (``input_tokens``, ``output_tokens``, ``text_tokens``,
  ``image_tokens``, ...), a summary of the size distribution.

Regeneration (one stream per tenant): in each (client, window) with ``k`` requests, ``k + 1``
gaps are drawn from the fitted family with the fitted shape (so the burstiness, the CV, is the
data's), and the ``k`` arrivals are placed at the normalised partial sums inside the window.
The count per window is therefore exactly the data's and the gaps keep the fitted shape; the
fitted scale is only implied (the window's rate fixes it). Streams of all clients are merged.

Sizes are drawn per request from the client's 6-hour summary by the piecewise-linear inverse
CDF through (0.10, p10), (0.25, p25), ..., (0.99, p99), (1, max), flat at p10 below 0.10;
clients without a summary use the mean summary of all clients. Several ``size_fields`` are
summed using the same uniform draw (comonotone: an approximation for multimodal inputs).

Tenants (clients) are mapped to the mix's models by ``tenant_mapping`` using their volume over
the whole data set, so a tenant keeps its model across episodes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from traces.arrivals import Arrivals, WorkloadMix
from traces.csvfast import read_csv
from traces.paths import shared_file
from traces.replay import Split, WindowOptions, stochastic_round
from traces.report import TraceFormatError, TraceReport

SIZE_PROBS = np.array([0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 1.0])
SIZE_COLUMNS = ("p10", "p25", "p50", "p75", "p90", "p95", "p99", "max")
SIZE_WINDOW_S = 21600.0


@dataclass(frozen=True)
class ServeGenData:
    """Parsed ServeGen rates (and size summaries), rows sorted by (window, client).

    Attributes:
        source: The rates file.
        window_s: Window length (600 s).
        client_ids: Original client ids; ``client`` indexes them.
        window: Window index of each row.
        client: Client index of each row.
        count: Requests in each row's window.
        weibull: True where the fitted family is Weibull (else Gamma).
        shape: Fitted shape of each row.
        window_ptr: Rows of window ``w`` are ``window_ptr[w]:window_ptr[w + 1]``.
        window_count: Requests per window, all clients.
        client_volume: Requests per client over the whole data set.
        sizes: Field -> quantile matrix ``(n_clients, n_size_windows + 1, 8)`` (the last
            window slot holds the pooled fallback); NaN where a client has no summary.
        report: Load report.
    """

    source: str
    window_s: float
    client_ids: np.ndarray
    window: np.ndarray
    client: np.ndarray
    count: np.ndarray
    weibull: np.ndarray
    shape: np.ndarray
    window_ptr: np.ndarray
    window_count: np.ndarray
    client_volume: np.ndarray
    sizes: dict[str, np.ndarray]
    report: TraceReport

    @property
    def n_windows(self) -> int:
        """Windows from 0 to the last non-empty one."""
        return len(self.window_count)

    @property
    def duration_s(self) -> float:
        """Length of the data set."""
        return self.n_windows * self.window_s


def read_rates(path: str, window_s: float = 600.0,
               clients: tuple[int, ...] = ()) -> tuple[dict[str, np.ndarray], TraceReport]:
    """Parse a ServeGen ``*_rates.csv`` (format in the module docstring).

    Args:
        path: The file.
        window_s: Window length the rates refer to.
        clients: Keep only these client ids (empty: all).

    Returns:
        Row arrays ``client_id, window, count, weibull, shape`` and a report.

    Raises:
        TraceFormatError: missing column, unparsable number, negative or misaligned window,
            negative rate, unknown distribution, non-positive shape.
    """
    tb = read_csv(path, {"client_id": "int", "window_start_s": "float", "rate_rps": "float",
                         "iat_dist": "cat", "iat_shape": "float"},
                  required=("client_id", "window_start_s", "rate_rps", "iat_dist",
                            "iat_shape"))
    c = tb.columns
    ws, rate, shape = c["window_start_s"].values, c["rate_rps"].values, c["iat_shape"].values

    def fail(mask: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(mask)
        if len(bad):
            i = int(bad[0])
            raise TraceFormatError(path, tb.line_of(i), what.format(i=i))

    fail(~np.isfinite(ws) | (ws < 0), "window_start_s must be a number >= 0")
    fail(np.abs(ws / window_s - np.rint(ws / window_s)) > 1e-6,
         f"window_start_s is not a multiple of {window_s:g} s")
    fail(~np.isfinite(rate) | (rate < 0), "rate_rps must be a number >= 0")
    fail(~np.isfinite(shape) | (shape <= 0), "iat_shape must be a number > 0")
    dist = c["iat_dist"]
    lower = [nm.lower() for nm in dist.names]
    for code, nm in enumerate(lower):
        if nm not in ("gamma", "weibull"):
            fail(dist.values == code, f"unknown iat_dist '{dist.names[code]}' (Gamma|Weibull)")
    weib_code = np.array([nm == "weibull" for nm in lower], dtype=bool)
    cid = c["client_id"].values
    keep = np.ones(len(cid), dtype=bool)
    if clients:
        keep = np.isin(cid, np.asarray(clients))
    count = np.rint(rate * window_s).astype(np.int64)
    rows = {"client_id": cid[keep], "window": np.rint(ws / window_s).astype(np.int64)[keep],
            "count": count[keep], "weibull": weib_code[dist.values][keep],
            "shape": shape[keep]}
    msgs = []
    if clients:
        msgs.append(f"{int((~keep).sum())} rows of other clients than {list(clients)} dropped")
    zero = int((rows["count"] == 0).sum())
    if zero:
        msgs.append(f"{zero} windows with a rate below one request per window (0 requests)")
    report = TraceReport(source=path, rows_read=len(cid), rows_kept=int(keep.sum()),
                         cut_rows=int((~keep).sum()), messages=tuple(msgs))
    return rows, report


def read_sizes(path: str) -> dict[str, np.ndarray]:
    """Parse a ServeGen ``*_sizes.csv`` (format in the module docstring).

    Returns:
        Arrays ``client_id, window, field`` (codes), ``fields`` (names, object array) and
        ``q`` (rows, 8) quantiles p10 ... max.

    Raises:
        TraceFormatError: missing column, unparsable number.
    """
    kinds = {"client_id": "int", "window_start_s": "float", "field": "cat",
             **dict.fromkeys(SIZE_COLUMNS, "float")}
    tb = read_csv(path, kinds, required=("client_id", "window_start_s", "field",  # type: ignore[arg-type]
                                         *SIZE_COLUMNS))
    c = tb.columns
    q = np.stack([c[k].values for k in SIZE_COLUMNS], axis=1)
    bad = np.flatnonzero(~np.isfinite(q).all(axis=1) | (q < 0).any(axis=1))
    if len(bad):
        raise TraceFormatError(path, tb.line_of(int(bad[0])), "size quantiles must be >= 0")
    return {"client_id": c["client_id"].values,
            "window": np.floor(c["window_start_s"].values / SIZE_WINDOW_S).astype(np.int64),
            "field": c["field"].values, "fields": np.array(c["field"].names, dtype=object),
            "q": np.maximum.accumulate(q, axis=1)}


@lru_cache(maxsize=8)
def _load(rates: str, sizes: str | None, stamp: tuple[tuple[int, int], ...], window_s: float,
          clients: tuple[int, ...]) -> ServeGenData:
    del stamp  # cache key only
    rows, report = read_rates(rates, window_s, clients)
    cid_u, client = np.unique(rows["client_id"], return_inverse=True)
    client = client.ravel().astype(np.int32)
    order = np.lexsort((client, rows["window"]))
    window = rows["window"][order]
    n_windows = int(window.max()) + 1 if len(window) else 0
    count = rows["count"][order]
    window_ptr = np.searchsorted(window, np.arange(n_windows + 1), side="left")
    size_tab: dict[str, np.ndarray] = {}
    msgs = list(report.messages)
    if sizes is not None:
        sz = read_sizes(sizes)
        n6 = math.ceil(n_windows * window_s / SIZE_WINDOW_S) + 1
        pos = np.searchsorted(cid_u, sz["client_id"])
        known = (pos < len(cid_u)) & (cid_u[np.minimum(pos, len(cid_u) - 1)] == sz["client_id"])
        for code, field in enumerate(sz["fields"].tolist()):
            sel = known & (sz["field"] == code) & (sz["window"] < n6 - 1)
            tab = np.full((len(cid_u), n6, len(SIZE_COLUMNS)), np.nan)
            tab[pos[sel], sz["window"][sel]] = sz["q"][sel]
            pooled = sz["q"][sz["field"] == code].mean(axis=0)
            tab[:, -1] = pooled
            size_tab[str(field)] = tab
        missing = len(cid_u) - len(np.unique(sz["client_id"][known]))
        if missing:
            msgs.append(f"{missing} of {len(cid_u)} clients have no size summary (pooled sizes "
                        "used)")
    for arr in (window, count):
        arr.flags.writeable = False
    return ServeGenData(
        source=rates, window_s=window_s, client_ids=cid_u, window=window,
        client=client[order], count=count, weibull=rows["weibull"][order],
        shape=rows["shape"][order], window_ptr=window_ptr,
        window_count=np.bincount(window, weights=count, minlength=n_windows).astype(np.int64),
        client_volume=np.bincount(client, weights=rows["count"],
                                  minlength=len(cid_u)).astype(np.int64),
        sizes=size_tab, report=TraceReport(
            source=report.source, rows_read=report.rows_read, rows_kept=report.rows_kept,
            cut_rows=report.cut_rows, messages=tuple(msgs)))


def regenerate(rng: np.random.Generator, data: ServeGenData, windows: np.ndarray,
               shift: np.ndarray, factor: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals of every client in the given windows, sorted by time.

    Args:
        rng: Generator.
        data: The data set.
        windows: Window indices to generate.
        shift: Seconds added to each window's times (for a segment that repeats).
        factor: Multiply each (client, window) count by this (stochastically rounded) and
            regenerate that many arrivals in the window (``rate_mode="scale"``); None: the
            data's counts.

    Returns:
        ``(times, client, data_time)`` sorted by time; ``data_time`` is without the shift.
    """
    ptr = data.window_ptr
    lens = ptr[windows + 1] - ptr[windows]
    rows = np.concatenate([np.arange(ptr[w], ptr[w + 1]) for w in windows.tolist()]) \
        if len(windows) else np.empty(0, dtype=np.int64)
    base = np.repeat(windows * data.window_s, lens)
    sh = np.repeat(shift, lens)
    k = data.count[rows]
    if factor is not None:
        k = stochastic_round(rng, k * float(factor))
    pos_k = k > 0
    rows, base, sh, k = rows[pos_k], base[pos_k], sh[pos_k], k[pos_k]
    if len(rows) == 0:
        return np.empty(0), np.empty(0, dtype=np.int32), np.empty(0)
    g_len = k + 1
    seg_start = np.concatenate(([0], np.cumsum(g_len)[:-1]))
    shape = np.repeat(data.shape[rows], g_len)
    weib = np.repeat(data.weibull[rows], g_len)
    gaps = np.empty(int(g_len.sum()))
    gaps[~weib] = rng.standard_gamma(shape[~weib])
    gaps[weib] = rng.weibull(shape[weib])
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
    keep[seg_start + k] = False  # the (k+1)-th partial sum is the window's end
    data_time = np.repeat(base, k) + data.window_s * np.clip(pos[keep], 0.0, 1.0)
    times = data_time + np.repeat(sh, k)
    client = np.repeat(data.client[rows], k)
    order = np.argsort(times, kind="stable")
    return times[order], client[order], data_time[order]


def _sample_sizes(rng: np.random.Generator, data: ServeGenData, fields: tuple[str, ...],
                  client: np.ndarray, t_abs: np.ndarray) -> np.ndarray | None:
    tabs = [data.sizes[f] for f in fields if f in data.sizes]
    if not tabs:
        return None
    u = rng.random(len(client))
    j = np.clip(np.searchsorted(SIZE_PROBS, u, side="right") - 1, 0, len(SIZE_PROBS) - 2)
    frac = np.clip((u - SIZE_PROBS[j]) / (SIZE_PROBS[j + 1] - SIZE_PROBS[j]), 0.0, 1.0)
    w6 = np.minimum((t_abs // SIZE_WINDOW_S).astype(np.int64), tabs[0].shape[1] - 2)
    total = np.zeros(len(client))
    for tab in tabs:
        q = tab[client, w6]
        none = np.isnan(q[:, 0])
        if none.any():
            q[none] = tab[0, -1]
        rows = np.arange(len(client))
        total += q[rows, j] + frac * (q[rows, j + 1] - q[rows, j])
    return np.maximum(np.rint(total), 1).astype(np.int32)


SERVEGEN_FILES = "traces/servegen/servegen_{dataset}_{kind}.csv"


@dataclass(frozen=True)
class ServeGenReplay(WindowOptions):
    """Arrivals regenerated from ServeGen's per-tenant 600 s windows (see the module doc).

    Args:
        dataset: ``m-large``, ``mm-image`` or ``deepseek-r1`` (the files in the shared dir).
        rates_path: Explicit rates file (None: the shared directory's).
        sizes_path: Explicit sizes file (None: the shared directory's, when present).
        clients: Only these client ids (empty: all).
        size_fields: Summary fields summed into the request size; None picks
            ``input_tokens``, or the sum of the ``*_tokens`` input fields (multimodal).
        output_fields: Fields summed into the output size.
        window_s: Window length of the rates (600 s in ServeGen).
        **options: :class:`~traces.replay.WindowOptions` (keyword only). Splits are aligned
            to whole windows.
    """

    dataset: str = "m-large"
    rates_path: str | None = None
    sizes_path: str | None = None
    clients: tuple[int, ...] = ()
    size_fields: tuple[str, ...] | None = None
    output_fields: tuple[str, ...] = ("output_tokens",)
    window_s: float = 600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "clients", tuple(int(c) for c in self.clients))
        if self.size_fields is not None:
            object.__setattr__(self, "size_fields", tuple(self.size_fields))
        object.__setattr__(self, "output_fields", tuple(self.output_fields))
        if not self.window_s > 0:
            raise ValueError(f"ServeGenReplay: window_s must be > 0, got {self.window_s}")

    def _files(self) -> tuple[str, str | None]:
        rates = self.rates_path or str(shared_file(SERVEGEN_FILES.format(
            dataset=self.dataset, kind="rates")))
        if self.sizes_path:
            return rates, self.sizes_path
        if self.rates_path:
            guess = Path(self.rates_path.replace("_rates.csv", "_sizes.csv"))
            return rates, (str(guess) if guess.is_file() and guess != Path(rates) else None)
        try:
            sizes: str | None = str(shared_file(SERVEGEN_FILES.format(dataset=self.dataset,
                                                                      kind="sizes")))
        except FileNotFoundError:
            sizes = None
        return rates, sizes

    def load(self) -> ServeGenData:
        """The parsed data set (cached per process).

        Raises:
            TraceFormatError: a malformed file.
            FileNotFoundError: a missing file.
        """
        rates, sizes = self._files()
        paths = [rates] + ([sizes] if sizes else [])
        stamp = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)
        return _load(str(Path(rates).resolve()),
                     str(Path(sizes).resolve()) if sizes else None, stamp,
                     float(self.window_s), self.clients)

    @property
    def report(self) -> TraceReport:
        """What loading found."""
        return self.load().report

    def window_ranges(self, split: Split | None = None) -> list[tuple[int, int]]:
        """Window index ranges ``[w0, w1)`` that ``split`` (default: this replay's) may use."""
        n = self.load().n_windows
        split = split or self.split
        if split == "all":
            return [(0, n)]
        edges = np.rint(np.linspace(0, n, self.split_blocks + 1)).astype(int)
        out = []
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            n_test = min(b - a - 1, max(1, round(self.test_fraction * (b - a)))) \
                if b - a >= 2 else 0
            cut = b - n_test
            out.append((a, cut) if split == "train" else (cut, b))
        return [(a, b) for a, b in out if b > a]

    def segments(self, split: Split | None = None) -> list[tuple[float, float]]:
        """Time ranges (data-set time, s) that ``split`` (default: this replay's) may use."""
        w = self.window_s
        return [(a * w, b * w) for a, b in self.window_ranges(split)]

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` merged arrivals of all tenants from a window of the data set."""
        data = self.load()
        target = self._target(rate_qps)
        if n <= 0:
            return Arrivals.from_mix(np.empty(0), mix, rng)
        ranges = self.window_ranges()
        counts = np.array([data.window_count[a:b].sum() for a, b in ranges], dtype=np.float64)
        if not len(ranges) or counts.max() < 2:
            raise ValueError(f"{data.source}: split '{self.split}' holds fewer than 2 requests")
        ranges = [r for r, c in zip(ranges, counts, strict=True) if c >= 2]
        counts = counts[counts >= 2]
        k = 0 if len(ranges) == 1 else int(np.searchsorted(
            np.cumsum(counts / counts.sum()), rng.random() * (1 - 1e-12), side="right"))
        w0, w1 = ranges[k]
        seg_total = int(counts[k])
        seg_rate = seg_total / ((w1 - w0) * self.window_s)
        mode = self.rate_mode
        p = target / seg_rate if mode == "thin" else 1.0
        if mode == "thin" and p >= 1.0:
            mode = "compress"
        m = n if mode != "thin" else math.ceil(n / p + 8 * math.sqrt(n / p) + 32)
        if mode == "scale":
            times, client, t_abs, t0 = self._window(rng, data, w0, w1, n, target)
            times = times - t0
        elif m > seg_total and not self.loop:
            raise ValueError(f"{data.source}: the split holds {seg_total} requests but the "
                             f"episode needs {m}; use loop=True, a larger split or fewer "
                             "requests")
        if mode == "scale":
            pass
        elif mode == "thin":
            while True:
                times, client, t_abs, t0 = self._window(rng, data, w0, w1, m)
                kept = np.flatnonzero(rng.random(len(times)) < p)
                if len(kept) >= n:
                    break
                m = int(m * 1.5) + 1  # astronomically rare with the 8-sigma margin
            times, client, t_abs = times[kept[:n]], client[kept[:n]], t_abs[kept[:n]]
        else:
            times, client, t_abs, t0 = self._window(rng, data, w0, w1, m)
            times = times - t0
        if mode == "compress":
            if self.rate_reference == "window":
                span = float(times[-1] - times[0])
                if not span > 0:
                    raise ValueError(f"{data.source}: the window has zero duration")
                native = (n - 1) / span
            else:
                native = seg_rate
            times = times * (native / target)
        model = None
        if self.tenant_mapping != "mix":
            model = self.tenant_lut(data.client_volume, tuple(
                f"client-{c}" for c in data.client_ids.tolist()), mix)[client]
        fields = self.size_fields
        if fields is None:
            fields = ("input_tokens",) if "input_tokens" in data.sizes else tuple(
                f for f in data.sizes if f.endswith("_tokens") and f not in self.output_fields)
        return Arrivals.from_mix(
            times, mix, rng, model=model,
            size=_sample_sizes(rng, data, fields, client, t_abs),
            output_size=_sample_sizes(rng, data, self.output_fields, client, t_abs),
            tenant=client, tenants=tuple(f"client-{c}" for c in data.client_ids.tolist()),
            start_s=0.0 if mode == "thin" else t0)  # (thin keeps the data set's times)

    def _scale_factor(self, cum: np.ndarray, edges: np.ndarray, t0: float, m: int,
                      target: float) -> float:
        """The count multiplier of ``rate_mode="scale"``: ``rate_reference="window"``, ``m``
        over the data's count in the ``m / target`` seconds from ``t0``; ``"trace"``, target
        over the segment's mean rate."""
        seg_rate = float(cum[-1]) / float(edges[-1] - edges[0])
        if self.rate_reference == "window":
            c = _count_to(cum, edges, t0 + m / target) - _count_to(cum, edges, t0)
            if c >= 1:
                return m / c
        return target / seg_rate

    def _window(self, rng: np.random.Generator, data: ServeGenData, w0: int, w1: int,
                m: int, target: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``m`` arrivals from a start drawn in windows ``[w0, w1)`` (repeating past ``w1``);
        with ``target`` (``rate_mode="scale"``) every window's counts are multiplied so the
        arrivals come at ``target`` on average (see :meth:`_scale_factor`).

        Returns:
            ``(times, client, data_time, t0)``.
        """
        w = self.window_s
        span = w1 - w0
        wc = data.window_count[w0:w1].astype(np.float64)
        cum = np.concatenate(([0.0], np.cumsum(wc)))
        edges = (w0 + np.arange(span + 1)) * w
        factor: float | None = None
        if target is not None:
            t0 = float(edges[0]) + float(rng.random()) * (float(edges[-1]) - float(edges[0]))
            factor = self._scale_factor(cum, edges, t0, m, target)
            wc = wc * factor
        else:
            slack = m + 10 * math.sqrt(m) + 10
            t_max = float(np.interp(cum[-1] - slack, cum, edges)) if cum[-1] > slack else \
                float(edges[-1]) - 1e-9 * w
            t0 = float(edges[0]) + float(rng.random()) * (t_max - float(edges[0]))
        off = min(int((t0 - edges[0]) // w), span - 1)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        have = 0
        while have < m:
            need = (m - have) + 10 * math.sqrt(m - have) + 10
            offs: list[int] = []
            acc = 0.0
            while acc < need:
                offs.append(off)
                acc += wc[off % span]
                off += 1
            o = np.asarray(offs)
            if factor is not None and not self.loop and off > span:
                raise ValueError(f"{data.source}: the split is too short for {m} requests at "
                                 "this rate; use loop=True, a larger split or fewer requests")
            tt, cc, dt = regenerate(rng, data, w0 + o % span, (o // span) * span * w, factor)
            if not parts:
                sel = tt >= t0
                tt, cc, dt = tt[sel], cc[sel], dt[sel]
            parts.append((tt, cc, dt))
            have += len(tt)
        times = np.concatenate([p[0] for p in parts])[:m]
        client = np.concatenate([p[1] for p in parts])[:m]
        data_time = np.concatenate([p[2] for p in parts])[:m]
        return times, client, data_time, t0


def _count_to(cum: np.ndarray, edges: np.ndarray, x: float) -> float:
    """Requests of windows ``edges`` (cumulative ``cum``) before time ``x``, the segment
    repeating past its end."""
    period = float(edges[-1] - edges[0])
    wraps, r = divmod(x - float(edges[0]), period)
    return wraps * float(cum[-1]) + float(np.interp(float(edges[0]) + r, edges, cum))
