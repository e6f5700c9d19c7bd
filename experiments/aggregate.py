"""Results across runs: every training job of a multirun (or any folder of runs) in one table.

    python -m experiments.aggregate multirun_dir=multirun/2026-12-06/10-00-00
    python -m experiments.aggregate multirun_dir=runs/ confidence=0.9

Writes ``PATH/summary.csv`` (one row per environment, variant, load, policy and metric: mean and
confidence interval over training seeds; rows ``learned-vs-<best baseline>`` hold the paired
differences), ``PATH/summary.md`` (the main metrics, learned vs the
best baseline, the jobs left out) and ``PATH/summary_plots/*.png`` (goodput and SLA attainment
over offered load, with bands).

A job is a folder with ``.hydra/config.yaml`` written by ``experiments.train``; it counts when it
finished (``results.csv`` and ``meta.json`` present). Each job contributes one value per metric:
the mean over its held-out episodes. Jobs that differ only in ``seed`` (and the training load,
``env.kwargs.load``, which is the ``load`` column) are one *variant* and are pooled; the interval
is Student's t over their seeds. The learned policy is compared with the best baseline (highest
mean goodput) per job, on the same held-out episodes, so the interval of the difference is paired.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments.common import UserError, hydra_app, write_atomic

#: Overrides that do not change what is learned or measured: not part of a variant's name.
_NOT_VARIANT = ("seed", "env.kwargs.load", "progress", "torch_threads", "export.parity_samples")
#: Columns of results.csv that are not metrics.
_NOT_METRIC = ("load", "policy", "seed")
#: Metrics in the markdown tables and the learned-vs-baseline comparison, in display order.
MAIN_METRICS = ("goodput", "sla_attainment", "p99_latency_ms", "dropped", "episode_return")
LEARNED = "learned"


@dataclass
class Job:
    """One training job: where it is, what it ran, and its per-episode results."""

    path: Path
    env_id: str
    seed: int
    variant: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Skipped:
    """A job folder left out of the summary, and why."""

    path: Path
    reason: str


def find_jobs(root: Path) -> tuple[list[Job], list[Skipped]]:
    """Every training job under ``root`` (``root`` itself may be one), finished or not.

    A job's own subfolders (``eval-*``, ``tb``...) are not searched.
    """
    jobs: list[Job] = []
    skipped: list[Skipped] = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if not (here / ".hydra" / "config.yaml").is_file():
            dirnames.sort(key=_natural)
            continue
        dirnames.clear()  # a job: do not descend
        app = _job_name(here)
        if app != "train":
            skipped.append(Skipped(here, f"not a training run ({app} app)"))
            continue
        missing = [n for n in ("results.csv", "meta.json") if not (here / n).is_file()]
        if missing:
            skipped.append(Skipped(here, f"unfinished or failed (no {' or '.join(missing)})"))
            continue
        try:
            jobs.append(_load_job(here))
        except (ValueError, KeyError, OSError) as exc:
            skipped.append(Skipped(here, f"unreadable: {' '.join(str(exc).split())}"))
    return jobs, skipped


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _job_name(path: Path) -> str:
    hydra_file = path / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return "train"  # an older run folder without Hydra's own settings
    name = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.job.name", default="train")
    return str(name)


def _load_job(path: Path) -> Job:
    cfg = OmegaConf.load(path / ".hydra" / "config.yaml")
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() \
        else []
    variant = " ".join(sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~")
                              not in _NOT_VARIANT and not o.startswith("hydra")))
    with open(path / "results.csv", newline="") as fh:
        rows = [_parse_row(r) for r in csv.DictReader(fh)]
    if not rows:
        raise ValueError(f"{path / 'results.csv'}: no rows")
    return Job(path, str(cfg.env.id), int(cfg.seed), variant, rows)


def _parse_row(row: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "policy":
            out[key] = value
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Mean and half-width of Student's t interval (NaN half-width for fewer than 2 values)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, math.nan
    sem = float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sem


Key = tuple[str, str, float, str]  # env, variant, load, policy
JobKey = tuple[int, str]  # training seed, job folder
Means = Mapping[Key, Mapping[JobKey, Mapping[str, float]]]


def per_job_means(jobs: Iterable[Job]) -> dict[Key, dict[JobKey, dict[str, float]]]:
    """``{(env, variant, load, policy): {(seed, job): {metric: mean over its episodes}}}``."""
    out: dict[Key, dict[JobKey, dict[str, float]]] = defaultdict(dict)
    for job in jobs:
        groups: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
        for row in job.rows:
            groups[(float(row["load"]), str(row["policy"]))].append(row)
        for (load, policy), rows in groups.items():
            metrics = [k for k, v in rows[0].items()
                       if k not in _NOT_METRIC and isinstance(v, float)]
            key = (job.env_id, job.variant, load, policy)
            out[key][(job.seed, str(job.path))] = {
                m: float(np.mean([r[m] for r in rows])) for m in metrics}
    return dict(out)


def summary_rows(means: Means, confidence: float) -> list[dict[str, Any]]:
    """One row per (env, variant, load, policy, metric): mean and interval over seeds."""
    rows = []
    for (env_id, variant, load, policy), by_seed in sorted(means.items()):
        seeds = sorted(by_seed)
        metrics = list(by_seed[seeds[0]])
        for metric in metrics:
            mean, half = t_interval([by_seed[s][metric] for s in seeds], confidence)
            rows.append({"env": env_id, "variant": variant, "load": load, "policy": policy,
                         "metric": metric, "n_seeds": len(seeds), "mean": mean,
                         "ci_low": mean - half, "ci_high": mean + half, "ci_halfwidth": half,
                         "seeds": " ".join(str(s[0]) for s in seeds)})
    return rows


def learned_vs_best(means: Means, confidence: float) -> list[dict[str, Any]]:
    """Per (env, variant, load): the learned policy against the baseline with the highest mean
    goodput, on every :data:`MAIN_METRICS`, with the paired interval of the difference."""
    out = []
    cells = sorted({k[:3] for k in means})
    for env_id, variant, load in cells:
        learned = means.get((env_id, variant, load, LEARNED))
        baselines = {k[3]: v for k, v in means.items()
                     if k[:3] == (env_id, variant, load) and k[3] != LEARNED}
        if learned is None or not baselines:
            continue
        best = max(baselines, key=lambda name: float(np.mean(
            [m["goodput"] for m in baselines[name].values()])))
        seeds = sorted(set(learned) & set(baselines[best]))  # the same jobs: paired
        if not seeds:
            continue
        for metric in MAIN_METRICS:
            if metric not in learned[seeds[0]]:
                continue
            ours = [learned[s][metric] for s in seeds]
            theirs = [baselines[best][s][metric] for s in seeds]
            lm, lh = t_interval(ours, confidence)
            bm, bh = t_interval(theirs, confidence)
            dm, dh = t_interval(np.subtract(ours, theirs).tolist(), confidence)
            out.append({"env": env_id, "variant": variant, "load": load, "metric": metric,
                        "n_seeds": len(seeds), "learned": lm, "learned_ci": lh,
                        "best_baseline": best, "baseline": bm, "baseline_ci": bh,
                        "difference": dm, "difference_ci": dh,
                        "relative": dm / bm if bm else math.nan,
                        "seeds": " ".join(str(s[0]) for s in seeds)})
    return out


def _versus_rows(versus: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The paired differences as summary.csv rows: policy ``learned-vs-<best baseline>``."""
    return [{"env": v["env"], "variant": v["variant"], "load": v["load"],
             "policy": f"{LEARNED}-vs-{v['best_baseline']}", "metric": v["metric"],
             "n_seeds": v["n_seeds"], "mean": v["difference"],
             "ci_low": v["difference"] - v["difference_ci"],
             "ci_high": v["difference"] + v["difference_ci"], "ci_halfwidth": v["difference_ci"],
             "seeds": v["seeds"]} for v in versus]


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: ("" if isinstance(v, float) and math.isnan(v) else v)
                           for k, v in r.items()} for r in rows])
    return buf.getvalue()


def _pm(mean: float, half: float) -> str:
    def f(x: float) -> str:
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"

    return f"{f(mean)} ± {f(half)}" if not math.isnan(half) else f"{f(mean)} (1 seed)"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "default"


def plot_vs_load(means: Means, out_dir: Path, confidence: float) -> list[Path]:
    """Per (env, variant): goodput and SLA attainment over load per policy, mean with band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    panels = sorted({k[:2] for k in means})
    for i, (env_id, variant) in enumerate(panels):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        policies = sorted({k[3] for k in means if k[:2] == (env_id, variant)},
                          key=lambda p: (p != LEARNED, p))
        for policy in policies:
            loads = sorted(k[2] for k in means if k[:2] == (env_id, variant) and k[3] == policy)
            for ax, metric in zip(axes, ("goodput", "sla_attainment"), strict=True):
                stats = [t_interval([m[metric] for m in
                                     means[(env_id, variant, lo, policy)].values()], confidence)
                         for lo in loads]
                mean = np.array([s[0] for s in stats])
                half = np.nan_to_num(np.array([s[1] for s in stats]))
                x = [lo * 100 for lo in loads]
                (line,) = ax.plot(x, mean, marker="o", label=policy,
                                  linewidth=2.2 if policy == LEARNED else 1.2)
                lo_band, hi_band = mean - half, mean + half
                if metric == "sla_attainment":  # a fraction: the band is drawn inside [0, 1]
                    lo_band, hi_band = np.clip(lo_band, 0, 1), np.clip(hi_band, 0, 1)
                else:
                    lo_band = np.maximum(lo_band, 0.0)
                ax.fill_between(x, lo_band, hi_band, alpha=0.2, color=line.get_color())
        # Axes follow the means (a 2-seed interval can dwarf them; the band runs off the top).
        top = max(float(np.mean([m["goodput"] for m in means[k].values()]))
                  for k in means if k[:2] == (env_id, variant))
        axes[0].set_ylim(0, 1.3 * top if top > 0 else 1.0)
        axes[1].set_ylim(-0.02, 1.02)
        for ax, title in zip(axes, ("goodput (q/s)", "SLA attainment"), strict=True):
            ax.set_xlabel("offered load (% of nominal capacity)")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        title = f"{env_id} {variant}".strip() + f" — mean, {confidence:.0%} CI over seeds"
        fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=8)
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"vs_load_{i}_{_slug(env_id.split('/')[-1])}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def summary_markdown(root: Path, jobs: Sequence[Job], skipped: Sequence[Skipped],
                     rows: Sequence[Mapping[str, Any]], versus: Sequence[Mapping[str, Any]],
                     plots: Sequence[Path], confidence: float) -> str:
    """``summary.md``: what was pooled, the main metrics, learned vs best baseline, plots."""
    lines = [f"# Summary of `{root}`", "",
             f"{len(jobs)} finished training job(s) pooled; mean ± half-width of the "
             f"{confidence:.0%} Student-t interval over training seeds (each seed: the mean of "
             "its held-out episodes). Baselines do not depend on the training seed, so their "
             "interval is zero when every job used the same held-out episodes.", ""]
    if skipped:
        lines += [f"**Left out: {len(skipped)} job folder(s)**", ""]
        lines += [f"- `{s.path.relative_to(root) if s.path != root else '.'}`: {s.reason}"
                  for s in skipped]
        lines.append("")
    by_cell: dict[tuple[str, str, float], dict[str, dict[str, Mapping[str, Any]]]] = \
        defaultdict(lambda: defaultdict(dict))
    for r in rows:
        by_cell[(r["env"], r["variant"], r["load"])][r["policy"]][r["metric"]] = r
    for (env_id, variant, load), policies in sorted(by_cell.items()):
        any_policy = next(iter(policies.values()))
        metrics = [m for m in MAIN_METRICS if m in any_policy]
        n = next(iter(any_policy.values()))["n_seeds"]
        lines += [f"## `{env_id}` at {load:.0%} load" + (f" — `{variant}`" if variant else ""),
                  "", f"{n} seed(s): {next(iter(any_policy.values()))['seeds']}", "",
                  "| policy | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for policy in sorted(policies, key=lambda p: (p != LEARNED, p)):
            cells = [_pm(policies[policy][m]["mean"], policies[policy][m]["ci_halfwidth"])
                     for m in metrics]
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
        lines.append("")
    if versus:
        lines += ["## Learned vs best baseline (highest mean goodput), paired over seeds", "",
                  "| env | variant | load | metric | learned | best baseline | baseline | "
                  "learned − baseline | relative |", "|---|---|---|---|---|---|---|---|---|"]
        for v in versus:
            rel = "" if math.isnan(v["relative"]) else f"{v['relative']:+.1%}"
            lines.append(f"| `{v['env']}` | {v['variant'] or '-'} | {v['load']:g} | "
                         f"{v['metric']} | {_pm(v['learned'], v['learned_ci'])} | "
                         f"{v['best_baseline']} | {_pm(v['baseline'], v['baseline_ci'])} | "
                         f"{_pm(v['difference'], v['difference_ci'])} | {rel} |")
        lines.append("")
    if plots:
        lines += ["## Goodput and SLA attainment vs load", ""]
        lines += [f"![{p.stem}]({p.relative_to(root)})" for p in plots]
        lines.append("")
    lines += ["Every metric of every policy: `summary.csv`.", ""]
    return "\n".join(lines)


def aggregate(root: Path, confidence: float = 0.95) -> dict[str, Any]:
    """Summarise the jobs under ``root`` into ``summary.csv``, ``summary.md`` and plots.

    Raises:
        UserError: ``root`` is missing, holds no finished training job, or ``confidence`` is
            not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence: must be in (0, 1), got {confidence}")
    if not root.is_dir():
        raise UserError(f"multirun_dir={root}: no such directory")
    jobs, skipped = find_jobs(root)
    if not jobs:
        why = f" ({len(skipped)} left out: {skipped[0].reason}, ...)" if skipped else ""
        raise UserError(f"multirun_dir={root}: no finished training job found{why}")
    means = per_job_means(jobs)
    rows = summary_rows(means, confidence)
    versus = learned_vs_best(means, confidence)
    plots = plot_vs_load(means, root / "summary_plots", confidence)
    write_atomic(root / "summary.csv", _csv([*rows, *_versus_rows(versus)]))
    write_atomic(root / "summary.md",
                 summary_markdown(root, jobs, skipped, rows, versus, plots, confidence))
    return {"jobs": jobs, "skipped": skipped, "rows": rows, "versus": versus, "plots": plots}


@hydra_app("aggregate")
def main(cfg: DictConfig) -> None:
    """Summarise a multirun folder."""
    root = Path(str(cfg.multirun_dir)).expanduser()
    result = aggregate(root, float(cfg.confidence))
    print(f"{len(result['jobs'])} finished job(s) summarised, {len(result['skipped'])} left out")
    for s in result["skipped"]:
        print(f"  left out {s.path}: {s.reason}")
    for v in result["versus"]:
        if v["metric"] == "goodput":
            print(f"  {v['env']} {v['variant']} load {v['load']:g}: learned goodput "
                  f"{_pm(v['learned'], v['learned_ci'])} vs {v['best_baseline']} "
                  f"{_pm(v['baseline'], v['baseline_ci'])}")
    print(f"summary: {root / 'summary.md'}, {root / 'summary.csv'}")


if __name__ == "__main__":
    main()
