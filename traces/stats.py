"""Trace statistics: ``python -m traces.stats SOURCE [--plot PATH]``.

``SOURCE`` is a trace file (generic CSV, JSON Lines, Azure LLM CSV, or a ServeGen
``*_rates.csv``) or a preset name from :data:`traces.TRACE_PRESETS`. Files and row-based replay
presets are described as recorded (the whole file, native rate); synthetic and ServeGen sources
are sampled (``--n`` requests at ``--rate`` qps, seed ``--seed``; ServeGen at its native rate).

Printed: requests, duration, mean rate, CV of inter-arrival times, index of dispersion of
counts (variance / mean of per-bin counts) at 1, 10 and 60 s, peak/mean of per-minute counts,
per-model (and per-tenant) shares, and the load report (its warnings, such as rows out of time
order or a time far beyond the rest, are also printed to stderr as ``warning:`` lines). A PNG of
the rate over time is written only where ``--plot PATH`` asks; nothing is written by default.

Malformed input prints one line ``<file>:<line>: <problem>`` to stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from traces.arrivals import Arrivals, ModelClass, WorkloadMix
from traces.formats import sniff_format
from traces.presets import TRACE_PRESETS, get_trace
from traces.replay import CsvReplay, JsonlReplay, TraceTable, _TableReplay
from traces.report import TraceFormatError, TraceReport
from traces.servegen import ServeGenReplay


def index_of_dispersion(t: np.ndarray, bin_s: float) -> float:
    """Variance / mean of arrival counts in consecutive ``bin_s`` bins (full bins only).

    1 for Poisson, > 1 for bursty traffic. NaN when the trace spans less than two bins.
    """
    if len(t) < 2:
        return math.nan
    t0 = float(t[0])
    nb = int((float(t[-1]) - t0) // bin_s)
    if nb < 2:
        return math.nan
    counts = np.bincount(((t - t0) // bin_s).astype(np.int64), minlength=nb + 1)[:nb]
    mean = counts.mean()
    return float(counts.var() / mean) if mean > 0 else math.nan


def trace_stats(t: np.ndarray, labels: dict[str, tuple[np.ndarray, Sequence[str]]] | None = None
                ) -> dict[str, object]:
    """Statistics of sorted arrival times ``t`` (see the module docstring).

    Args:
        t: Sorted arrival times (s).
        labels: Optional ``{"model": (codes, names), "tenant": (codes, names)}`` for shares.

    Returns:
        A dict: ``requests``, ``duration_s``, ``mean_rate_qps`` ((n - 1) / duration),
        ``cv`` (std / mean of the gaps, population std), ``idc_1s``, ``idc_10s``, ``idc_60s``,
        ``peak_to_mean_per_min`` and ``<label>_shares`` dicts.
    """
    n = len(t)
    dur = float(t[-1] - t[0]) if n > 1 else 0.0
    gaps = np.diff(t)
    out: dict[str, object] = {
        "requests": n,
        "duration_s": dur,
        "mean_rate_qps": (n - 1) / dur if dur > 0 else math.nan,
        "cv": float(gaps.std() / gaps.mean()) if n > 2 and gaps.mean() > 0 else math.nan,
        "idc_1s": index_of_dispersion(t, 1.0),
        "idc_10s": index_of_dispersion(t, 10.0),
        "idc_60s": index_of_dispersion(t, 60.0),
    }
    if n > 1:
        per_min = np.bincount(((t - t[0]) // 60.0).astype(np.int64))
        out["peak_to_mean_per_min"] = float(per_min.max() / per_min.mean())
    else:
        out["peak_to_mean_per_min"] = math.nan
    for key, (codes, names) in (labels or {}).items():
        c = np.bincount(np.asarray(codes)[np.asarray(codes) >= 0], minlength=len(names))
        total = max(int(c.sum()), 1)
        order = np.argsort(-c, kind="stable")
        out[f"{key}_shares"] = {str(names[i]): float(c[i] / total) for i in order.tolist()}
    return out


def format_stats(name: str, stats: dict[str, object], report: TraceReport | None = None,
                 top: int = 10) -> str:
    """Human-readable lines for :func:`trace_stats`'s dict."""
    def num(x: object, fmt: str) -> str:
        return "n/a" if isinstance(x, float) and math.isnan(x) else format(x, fmt)

    lines = [
        f"trace: {name}",
        f"requests: {stats['requests']}",
        f"duration: {num(stats['duration_s'], '.3f')} s",
        f"mean rate: {num(stats['mean_rate_qps'], '.4f')} qps",
        f"CV of inter-arrival times: {num(stats['cv'], '.4f')}",
        "index of dispersion of counts: "
        + ", ".join(f"{b}: {num(stats[f'idc_{b}'], '.3f')}" for b in ("1s", "10s", "60s")),
        f"peak/mean per minute: {num(stats['peak_to_mean_per_min'], '.3f')}",
    ]
    for key in ("model", "tenant"):
        shares = stats.get(f"{key}_shares")
        if isinstance(shares, dict) and shares:
            items = list(shares.items())
            text = ", ".join(f"{k} {v:.1%}" for k, v in items[:top])
            more = f" (+{len(items) - top} more)" if len(items) > top else ""
            lines.append(f"{key} shares: {text}{more}")
    if report is not None:
        lines.append(f"load report: {report.rows_read} rows read, {report.rows_kept} kept, "
                     f"{report.skipped} skipped")
        lines.extend(f"  - {m}" for m in report.messages)
    return "\n".join(lines)


def plot_rate(t: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG of the arrival rate over time (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dur = float(t[-1] - t[0]) if len(t) > 1 else 1.0
    bin_s = 60.0 if dur >= 3600 else max(dur / 200.0, 1e-6)
    counts = np.bincount(((t - t[0]) // bin_s).astype(np.int64)) if len(t) else np.zeros(1)
    x = np.arange(len(counts)) * bin_s
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    ax.step(x, counts / bin_s, where="post", lw=0.9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"rate (qps, {bin_s:.3g} s bins)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _default_mix(names: Sequence[str] = ("model",)) -> WorkloadMix:
    return WorkloadMix(tuple(ModelClass(str(nm)) for nm in names))


def _from_table(table: TraceTable) -> tuple[np.ndarray, dict[str, tuple[np.ndarray,
                                                                        Sequence[str]]]]:
    labels: dict[str, tuple[np.ndarray, Sequence[str]]] = {}
    if table.model is not None:
        labels["model"] = (table.model, table.model_names)
    if table.tenant is not None:
        labels["tenant"] = (table.tenant, table.tenant_names)
    return np.asarray(table.time_s), labels


def _from_arrivals(a: Arrivals) -> tuple[np.ndarray, dict[str, tuple[np.ndarray,
                                                                     Sequence[str]]]]:
    labels: dict[str, tuple[np.ndarray, Sequence[str]]] = {"model": (a.model, a.models)}
    if a.tenants:
        labels["tenant"] = (a.tenant, a.tenants)
    return a.time_s, labels


def describe(source: str, n: int = 100_000, rate: float = 100.0, seed: int = 0
             ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, Sequence[str]]],
                        TraceReport | None]:
    """Times, labels and load report of a file or preset (see the module docstring).

    Raises:
        TraceFormatError: a malformed file.
        FileNotFoundError: neither a file nor a preset, or missing data.
    """
    path = Path(source)
    if path.is_file():
        fmt = sniff_format(path)
        if fmt == "servegen":
            replay: object = ServeGenReplay(rates_path=str(path), rate_mode="native")
        elif fmt == "azure":
            from traces.replay import AzureLLMReplay

            replay = AzureLLMReplay(path=str(path))
        elif fmt == "jsonl":
            replay = JsonlReplay(path=str(path))
        else:
            replay = CsvReplay(path=str(path))
    elif source in TRACE_PRESETS:
        replay = get_trace(source)
    else:
        raise FileNotFoundError(f"{source}: no such file or trace preset (presets: "
                                f"{', '.join(sorted(TRACE_PRESETS))})")
    if isinstance(replay, _TableReplay):
        table = replay.load()
        t, labels = _from_table(table)
        return t, labels, table.report
    rng = np.random.default_rng(seed)
    if isinstance(replay, ServeGenReplay):
        replay = dataclasses.replace(replay, rate_mode="native", split="all")
        a = replay.sample(rng, _default_mix(), n, rate)
        return (*_from_arrivals(a), replay.report)
    a = get_trace(replay).sample(rng, _default_mix(), n, rate)  # type: ignore[arg-type]
    return (*_from_arrivals(a), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m traces.stats",
                                 description="Statistics and a rate plot of an arrival trace.")
    ap.add_argument("source", help="trace file (csv, jsonl, Azure csv, ServeGen rates csv) or "
                                   "preset name")
    ap.add_argument("--plot", default=None, metavar="PATH",
                    help="write a PNG of the rate over time to PATH (default: no plot)")
    ap.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)  # the default
    ap.add_argument("--n", type=int, default=100_000,
                    help="requests to sample from generative sources (default 100000)")
    ap.add_argument("--rate", type=float, default=100.0,
                    help="target rate (qps) for synthetic sources (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="seed for generative sources")
    args = ap.parse_args(argv)
    try:
        t, labels, report = describe(args.source, args.n, args.rate, args.seed)
    except (TraceFormatError, FileNotFoundError, ValueError) as exc:
        print(" ".join(str(exc).split()) or type(exc).__name__, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stats = trace_stats(t, labels)
    print(format_stats(args.source, stats, report))
    for message in report.warnings if report is not None else ():
        print(f"warning: {report.source}: {message}", file=sys.stderr)  # type: ignore[union-attr]
    if args.plot and not args.no_plot and len(t) > 1:
        out = plot_rate(t, args.plot, title=args.source)
        print(f"rate plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
