"""Run-folder outputs of an evaluation: results.csv, report.md, plots/*.png, a console table."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import REPORT_METRICS, PolicyResult, summary_rows
from envs.sim.metrics import BIN_EDGES_S
from experiments.common import write_atomic

_LABELS = {
    "sla_attainment": "SLA",
    "goodput": "goodput q/s",
    "p50_latency_ms": "p50 ms",
    "p99_latency_ms": "p99 ms",
    "dropped": "dropped",
    "utilization": "util",
    "energy_per_query_j": "J/query",
    "cost_per_query_usd": "$/query",
    "reconfigurations": "reconfig",
    "downtime_s": "down s",
    "episode_return": "return",
}


def results_csv(sweep: Sequence[tuple[float, Mapping[str, PolicyResult]]],
                traces: Sequence[str | None] | None = None) -> str:
    """Every episode of every policy at every load, one row each (with a ``trace`` column when
    ``traces`` names each entry's trace)."""
    rows = [{**({} if traces is None else {"trace": traces[i]}), "load": load, "policy": name,
             **ep}
            for i, (load, results) in enumerate(sweep)
            for name, res in results.items() for ep in res.episodes]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: float, key: str) -> str:
    if key == "sla_attainment" or key == "utilization":
        return f"{value:.3f}"
    if key == "energy_per_query_j":
        return f"{value:.4f}"
    if key == "cost_per_query_usd":
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Mean ± std per policy and metric."""
    keys = [k for k in REPORT_METRICS if rows and k in rows[0]]
    head = "| policy | " + " | ".join(_LABELS[k] for k in keys) + " |"
    sep = "|---|" + "---|" * len(keys)
    lines = [head, sep]
    for r in rows:
        cells = [f"{_fmt(r[k], k)} ± {_fmt(r[k + '_std'], k)}" for k in keys]
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(results: Mapping[str, PolicyResult], out_dir: Path) -> list[Path]:
    """``plots/metrics.png`` (bars with std) and ``plots/latency_cdf.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(results)
    names = [r["policy"] for r in rows]
    keys = ["sla_attainment", "goodput", "p99_latency_ms", "dropped"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    colors = plt.get_cmap("tab10")(np.arange(len(names)) % 10)
    for ax, key in zip(axes, keys, strict=True):
        ax.bar(names, [r[key] for r in rows], yerr=[r[key + "_std"] for r in rows],
               color=colors, capsize=3)
        ax.set_title(_LABELS[key])
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    paths = [out_dir / "metrics.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, res), color in zip(results.items(), colors, strict=True):
        if res.latency_counts is None or res.latency_counts.sum() == 0:
            continue
        c = res.latency_counts.astype(np.float64)
        nz = np.flatnonzero(c)
        lo, hi = nz[0], nz[-1] + 1
        ax.step(BIN_EDGES_S[lo:hi] * 1e3, np.cumsum(c[lo:hi]) / c.sum(), where="post",
                label=name, color=color)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of completed queries")
    ax.set_title("Latency CDF (held-out episodes)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "latency_cdf.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def comparison(rows: Sequence[Mapping[str, Any]], learned: str = "learned") -> str:
    """A sentence comparing the learned policy with the best baseline on goodput."""
    by = {r["policy"]: r for r in rows}
    if learned not in by or len(by) < 2:
        return ""
    base = max((r for r in rows if r["policy"] != learned), key=lambda r: r["goodput"])
    g, b = by[learned]["goodput"], base["goodput"]
    rel = (g - b) / b * 100 if b else float("nan")
    # Goodput divides by each episode's length, drain included; on the same arrivals the
    # count of in-SLA queries compares the policies without that (a policy whose last
    # queries end later reads lower goodput for the same count).
    good_l, good_b = by[learned].get("good"), base.get("good")
    same = (f"; in-SLA queries on the same arrivals {(good_l - good_b) / good_b * 100:+.1f}%"
            if good_l is not None and good_b else "")
    return (f"Learned goodput {g:.1f} q/s vs best baseline `{base['policy']}` {b:.1f} q/s "
            f"({rel:+.1f}%){same}; SLA attainment {by[learned]['sla_attainment']:.3f} vs "
            f"{base['sla_attainment']:.3f}.")


def plot_load_sweep(sweep: Mapping[float, Mapping[str, PolicyResult]], out_dir: Path) -> Path:
    """``plots/goodput_vs_load.png``: goodput and SLA attainment per policy over offered load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = sorted(sweep)
    names = list(next(iter(sweep.values())))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in names:
        for ax, key in zip(axes, ("goodput", "sla_attainment"), strict=True):
            ax.errorbar([lo * 100 for lo in loads], [sweep[lo][name].mean(key) for lo in loads],
                        yerr=[sweep[lo][name].std(key) for lo in loads], marker="o",
                        capsize=3, label=name)
    for ax, key in zip(axes, ("goodput", "sla_attainment"), strict=True):
        ax.set_xlabel("offered load (% of nominal capacity)")
        ax.set_title(_LABELS[key])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "goodput_vs_load.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: Path, sweep: Mapping[float, Mapping[str, PolicyResult]], header: str,
                 extra: str = "") -> str:
    """Write results.csv, report.md and plots into ``run_dir``; returns the markdown tables.

    Args:
        run_dir: The run folder.
        sweep: Results per offered load (one entry when no load sweep was asked for).
        header: Markdown that says what was run.
        extra: Markdown appended after the tables.
    """
    body = [header, ""]
    tables = []
    csv_rows = []
    plot_dir = run_dir / "plots"
    for load in sorted(sweep):
        results = sweep[load]
        rows = summary_rows(results)
        table = markdown_table(rows)
        tables.append(f"load {load:g}\n{table}")
        body += [f"## Results at {load:.0%} offered load (held-out seeds)", "", table, ""]
        cmp = comparison(rows)
        if cmp:
            body += [cmp, ""]
        csv_rows.append((load, results))
    plots = plot_results(sweep[max(sweep)], plot_dir)  # the heaviest load shows most
    if len(sweep) > 1:
        plots.append(plot_load_sweep(sweep, plot_dir))
    if extra:
        body += [extra, ""]
    body += ["## Plots", "", f"Bars and CDFs at {max(sweep):.0%} load.", ""]
    body += [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    write_atomic(run_dir / "results.csv", results_csv(csv_rows))
    write_atomic(run_dir / "report.md", "\n".join(body))
    return "\n\n".join(tables)


def _short_layout(name: str) -> str:
    """``1g.10gb+1g.10gb+1g.20gb`` -> ``2x1g.10gb+1g.20gb`` (runs of equal parts counted)."""
    parts = name.split("+")
    out: list[str] = []
    i = 0
    while i < len(parts):
        j = i
        while j < len(parts) and parts[j] == parts[i]:
            j += 1
        out.append(parts[i] if j - i == 1 else f"{j - i}x{parts[i]}")
        i = j
    return "+".join(out)


def plot_layout_timeline(times: Mapping[str, Sequence[float]],
                         layouts: Mapping[str, Sequence[int]], layout_names: Sequence[str],
                         mix_t: Sequence[float], mix: np.ndarray, model_names: Sequence[str],
                         out_dir: Path, title: str = "") -> Path:
    """``plots/layout_timeline.png``: the model mix over one episode (top: each model's share
    of the interval's arrivals) and, below, the layout each policy chose at each decision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(layouts)
    fig, axes = plt.subplots(n + 1, 1, sharex=True, figsize=(9, 1.9 + 1.25 * n),
                             gridspec_kw={"height_ratios": [2] + [1] * n})
    ax0 = axes[0]
    share = mix / np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)
    ax0.stackplot(np.asarray(mix_t), share.T, labels=list(model_names), step="pre", alpha=0.8)
    ax0.set_ylabel("mix")
    ax0.set_ylim(0, 1)
    ax0.legend(loc="upper left", fontsize=7, ncol=len(model_names))
    ax0.set_title(title or "Chosen layout over one held-out episode, against the model mix")
    used = sorted({int(x) for ls in layouts.values() for x in ls})
    row = {u: k for k, u in enumerate(used)}  # the layouts any policy held, one row each
    for ax, (name, ls) in zip(axes[1:], layouts.items(), strict=True):
        ax.step(np.asarray(times[name]), [row[int(x)] for x in ls], where="pre", color="C3")
        ax.set_yticks(range(len(used)), [_short_layout(layout_names[u]) for u in used],
                      fontsize=7)
        ax.set_title(name, fontsize=8, loc="left")
        ax.set_ylim(-0.5, len(used) - 0.5)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("simulated time (s)")
    fig.tight_layout()
    path = out_dir / "layout_timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def robustness_rows(by_trace: Mapping[str, Mapping[float, Mapping[str, PolicyResult]]],
                    learned: str = "learned") -> list[dict[str, Any]]:
    """Per trace and load: the learned policy's goodput against the best other policy.

    Each row: ``trace``, ``load``, ``learned`` (goodput, NaN without a learned policy),
    ``best`` (the best other policy's name), ``best_goodput`` and ``vs_best`` (relative
    difference, NaN without a learned policy).
    """
    rows = []
    for trace, sweep in by_trace.items():
        for load in sorted(sweep):
            results = sweep[load]
            others = {n: r.mean("goodput") for n, r in results.items() if n != learned}
            best = max(others, key=lambda n: others[n]) if others else ""
            b = others.get(best, float("nan"))
            g = results[learned].mean("goodput") if learned in results else float("nan")
            rows.append({"trace": trace, "load": load, "learned": g, "best": best,
                         "best_goodput": b, "vs_best": (g - b) / b if b else float("nan")})
    return rows


def _robustness_grid(rows: Sequence[Mapping[str, Any]], no_learned: str,
                     learned: str) -> tuple[list[float], list[tuple[str, list[str]]]]:
    """The loads (columns) and, per trace, its cells: ``no_learned`` formatted with the best
    policy's name and goodput where there is no learned policy, ``learned`` with the relative
    difference and the best policy's name, "" where the trace was not run at that load."""
    loads = sorted({r["load"] for r in rows})
    cell = {(r["trace"], r["load"]): r for r in rows}
    out = []
    for t in dict.fromkeys(r["trace"] for r in rows):
        cells = []
        for lo in loads:
            r = cell.get((t, lo))
            if r is None:
                cells.append("")
            elif np.isnan(r["vs_best"]):
                cells.append(no_learned.format(best=r["best"], goodput=r["best_goodput"]))
            else:
                cells.append(learned.format(vs=r["vs_best"], best=r["best"]))
        out.append((t, cells))
    return loads, out


def robustness_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per trace, one column per load; each cell the learned policy's goodput
    vs the best other policy (or the best policy and its goodput without a learned one)."""
    loads, grid = _robustness_grid(rows, "{best} {goodput:.0f} q/s", "{vs:+.1%} vs {best}")
    lines = ["| trace | " + " | ".join(f"{lo:.0%}" for lo in loads) + " |",
             "|---|" + "---:|" * len(loads)]
    lines += [f"| {t} | " + " | ".join(cells) + " |" for t, cells in grid]
    return "\n".join(lines)


def plot_robustness(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> Path | None:
    """``plots/robustness.png``: learned vs best baseline goodput (%) per trace and load, a
    heat map (red: the learned policy loses). None without a learned policy."""
    if not rows or all(np.isnan(r["vs_best"]) for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = sorted({r["load"] for r in rows})
    traces = list(dict.fromkeys(r["trace"] for r in rows))
    grid = np.full((len(traces), len(loads)), np.nan)
    for r in rows:
        grid[traces.index(r["trace"]), loads.index(r["load"])] = 100 * r["vs_best"]
    lim = max(5.0, float(np.nanmax(np.abs(grid))))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(loads), 1.2 + 0.55 * len(traces)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(traces)):
        for j in range(len(loads)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:+.1f}%", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(loads)), [f"{lo:.0%}" for lo in loads])
    ax.set_yticks(range(len(traces)), traces)
    ax.set_xlabel("offered load")
    ax.set_title("learned vs best baseline goodput")
    fig.colorbar(im, ax=ax, label="%")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "robustness.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_trace_report(run_dir: Path,
                       by_trace: Mapping[str, Mapping[float, Mapping[str, PolicyResult]]],
                       header: str, extra: str = "") -> str:
    """Like :func:`write_report` for an evaluation on several traces: a robustness table
    (learned vs best baseline per trace and load) and its heat map first, then each trace's
    tables; results.csv gains a ``trace`` column. Returns the robustness table."""
    rows = robustness_rows(by_trace)
    table = robustness_table(rows)
    print_robustness(rows)
    body = [header, "", "## Robustness: learned vs the best baseline, per trace and load", "",
            "Goodput of the learned policy relative to the best other policy on the same "
            "held-out episodes.", "", table, ""]
    plot_dir = run_dir / "plots"
    plots = [p for p in [plot_robustness(rows, plot_dir)] if p is not None]
    csv_entries = []
    names = []
    for trace, sweep in by_trace.items():
        for load in sorted(sweep):
            summary = summary_rows(sweep[load])
            body += [f"## {trace} at {load:.0%} offered load (held-out seeds)", "",
                     markdown_table(summary), ""]
            cmp = comparison(summary)
            if cmp:
                body += [cmp, ""]
            csv_entries.append((load, sweep[load]))
            names.append(trace)
        if len(sweep) > 1:
            path = plot_load_sweep(sweep, plot_dir)
            renamed = path.with_name(f"goodput_vs_load_{_slug(trace)}.png")
            path.replace(renamed)
            plots.append(renamed)
    if extra:
        body += [extra, ""]
    body += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    write_atomic(run_dir / "results.csv", results_csv(csv_entries, traces=names))
    write_atomic(run_dir / "report.md", "\n".join(body))
    return table


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def print_robustness(rows: Sequence[Mapping[str, Any]]) -> None:
    """The robustness table on the console."""
    from rich.console import Console
    from rich.table import Table

    loads, grid = _robustness_grid(rows, "{best} {goodput:.0f}", "{vs:+.1%} ({best})")
    table = Table(title="learned vs best baseline goodput, per trace and load")
    table.add_column("trace", no_wrap=True)
    for lo in loads:
        table.add_column(f"{lo:.0%}", justify="right")
    for t, cells in grid:
        table.add_row(t, *cells)
    Console(width=max(Console().width, 120)).print(table)


def print_table(rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """A rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    keys = [k for k in REPORT_METRICS if rows and k in rows[0]]
    table = Table(title=title)
    table.add_column("policy", no_wrap=True)
    for k in keys:
        table.add_column(_LABELS[k], justify="right")
    for r in rows:
        table.add_row(r["policy"], *[_fmt(r[k], k) for k in keys])
    Console(width=max(Console().width, 120)).print(table)
