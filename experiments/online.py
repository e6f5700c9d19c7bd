"""The online-learning study of the main job (``experiment=online``, issue [N]).

After the usual training, export and evaluation, one long episode whose workload shifts
(``online.trace``, by default the model mix rotating twice) is served three ways on the same
arrivals: the trained policy frozen, the same policy learning online with PPO (an update every
``online.update_every`` decisions; by default it serves with its greedy actions while PPO
explores on a twin of the env that replays the same arrivals, ``online.serving``), and the best
heuristic on that episode. Writes
``online.csv`` (goodput and good fraction per time window and arm), ``online_timelines.npz``
(every decision's clock and counts per arm), ``online_summary.csv``,
``plots/online_goodput.png`` and an "Online learning" section of ``report.md``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments.common import EnvSpec, UserError, write_atomic
from experiments.report import print_table

#: ``online.serving``: how the learning arm serves, and its name in the tables.
SERVING = {"greedy": "online (greedy; PPO on a twin)",
           "sampled": "online (PPO's sampled actions)"}


def online_settings(cfg: DictConfig) -> dict[str, Any] | None:
    """``online.*`` checked (None when the study is off).

    Raises:
        UserError: a value out of range, an unknown trace preset, or normalised observations.
    """
    if "online" not in cfg or cfg.online is None:
        return None
    raw = OmegaConf.to_container(cfg.online, resolve=True)
    if not isinstance(raw, dict):
        raise UserError(f"online: expected a mapping, got {raw!r}")
    known = {"trace", "episode_queries", "load", "update_every", "windows", "seed",
             "recover_fraction", "recover_hold", "learning_rate", "serving"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"online.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    s = {"trace": "mix-shift", "episode_queries": 150_000, "load": None, "update_every": 1024,
         "windows": 60, "seed": 30_000, "recover_fraction": 0.95, "recover_hold": 5,
         "learning_rate": None, "serving": "greedy", **raw}
    s["source"] = _trace(s["trace"])
    for key, low in (("episode_queries", 100), ("update_every", 8), ("windows", 4),
                     ("recover_hold", 1)):
        if not isinstance(s[key], int) or s[key] < low:
            raise UserError(f"online.{key}: must be an integer >= {low}, got {s[key]!r}")
    if s["serving"] not in SERVING:
        raise UserError(f"online.serving: expected one of {', '.join(SERVING)}, "
                        f"got {s['serving']!r}")
    if s["load"] is not None and not float(s["load"]) > 0:
        raise UserError(f"online.load: must be > 0, got {s['load']}")
    if not 0 < float(s["recover_fraction"]) <= 1:
        raise UserError(f"online.recover_fraction: must be in (0, 1], got {s['recover_fraction']}")
    if int(s["seed"]) in {int(x) for x in cfg.eval.seeds} or int(s["seed"]) < 10_000:
        raise UserError(f"online.seed: {s['seed']} must be >= 10000 (apart from training seeds) "
                        "and not one of eval.seeds")
    if "vec_env" in cfg and cfg.vec_env is not None and cfg.vec_env.get("normalize", False):
        raise UserError("online: vec_env.normalize=true is not supported by the online study "
                        "(the learner would need the frozen statistics)")
    return s


def _trace(spec: Any) -> Any:
    """``online.trace``: a preset name or a trace config (``_target_`` and parameters)."""
    from traces import TRACE_PRESETS, get_trace

    if isinstance(spec, str):
        if spec not in TRACE_PRESETS:
            raise UserError(f"online.trace: unknown trace preset {spec!r}; known: "
                            f"{', '.join(sorted(TRACE_PRESETS))}")
        return get_trace(spec)
    if isinstance(spec, dict) and "_target_" in spec:
        from hydra.utils import instantiate

        try:
            return instantiate(spec, _convert_="all")
        except Exception as exc:  # hydra wraps constructor errors
            cause = exc.__cause__ or exc
            raise UserError(f"online.trace: {' '.join(str(cause).split())}") from None
    raise UserError(f"online.trace: expected a trace preset name or a mapping with _target_, "
                    f"got {spec!r}")


def run_online(cfg: DictConfig, spec: EnvSpec, model: Any, baselines: list[str],
               out: Path) -> str:
    """Serve the online episode three ways; write the files; return the report section."""
    import functools

    from hydra.utils import instantiate

    from agents.evaluation import run_episode
    from agents.online import recovery_times, serve, serve_learning
    from agents.policy import SB3Policy
    from experiments.pipeline import make_policies

    s = online_settings(cfg)
    assert s is not None
    over: dict[str, Any] = {"trace": s["source"], "episode_queries": int(s["episode_queries"])}
    if s["load"] is not None:
        over["load"] = float(s["load"])
    make = functools.partial(spec.make, **over)
    seed = int(s["seed"])

    print(f"online study: {s['episode_queries']:,} queries on {_name(s)}, seed {seed}")
    heuristics = make_policies(baselines, None, spec.env_id)
    scores = {}
    for name, pol in heuristics.items():
        env = make()
        scores[name] = float(run_episode(env, pol, seed)["goodput"])
        env.close()
    best = max(scores, key=lambda n: scores[n])
    arms = [serve(make, heuristics[best], seed, f"best heuristic ({best})"),
            serve(make, SB3Policy(model), seed, "frozen")]

    def new_model(venv: Any) -> Any:
        kw: dict[str, Any] = {"n_steps": int(s["update_every"]),
                              "batch_size": min(int(s["update_every"]),
                                                int(cfg.agent.get("batch_size", 64)))}
        if s["learning_rate"] is not None:
            kw["learning_rate"] = float(s["learning_rate"])
        return instantiate(cfg.agent, _convert_="all", **kw)(env=venv, seed=seed)

    online, _, _ = serve_learning(make, new_model, model, seed, SERVING[s["serving"]],
                                  progress=bool(cfg.progress), serving=str(s["serving"]))
    arms.append(online)

    end_s = max(a.time_s[-1] for a in arms)
    edges = np.linspace(0.0, end_s, int(s["windows"]) + 1)
    shifts = _shift_times(make, s, end_s)
    width = end_s / int(s["windows"])
    rec = recovery_times(arms, shifts, end_s, width, float(s["recover_fraction"]),
                         int(s["recover_hold"]))

    rows = []
    for a in arms:
        goodput, frac = a.windows(edges)
        rows += [{"arm": a.name, "start_s": lo, "end_s": hi, "goodput": g, "good_fraction": f}
                 for lo, hi, g, f in zip(edges[:-1], edges[1:], goodput, frac, strict=True)]
    write_atomic(out / "online.csv", _csv(rows))
    _save_timelines(arms, out / "online_timelines.npz")
    summary = []
    for a in arms:
        goodput, _ = a.windows(edges)
        n = len(goodput)
        thirds = [goodput[: n // 3], goodput[n // 3: n * 2 // 3], goodput[n * 2 // 3:]]
        summary.append({"arm": a.name, "goodput": float(a.final.get("goodput", math.nan)),
                        "sla_attainment": float(a.final.get("sla_attainment", math.nan)),
                        "first_third_goodput": float(np.mean(thirds[0])),
                        "middle_third_goodput": float(np.mean(thirds[1])),
                        "last_third_goodput": float(np.mean(thirds[2])),
                        **{f"recover_s_shift{k + 1}": v for k, v in enumerate(rec[a.name])}})
    write_atomic(out / "online_summary.csv", _csv(summary))
    plot = _plot(arms, edges, shifts, out / "plots")
    print_table([{"policy": r["arm"], "goodput": r["goodput"], "goodput_std": 0.0,
                  "sla_attainment": r["sla_attainment"], "sla_attainment_std": 0.0}
                 for r in summary], "online episode: whole-episode results")
    return _section(s, summary, shifts, width, best, scores, plot)


def _save_timelines(arms: list[Any], path: Path) -> None:
    """Every arm's per-decision clock and cumulative arrived / good counts (``arm{i}_time_s``,
    ``arm{i}_arrived``, ``arm{i}_good``; ``names``), for re-analysis without re-serving."""
    data: dict[str, np.ndarray] = {"names": np.array([a.name for a in arms])}
    for i, a in enumerate(arms):
        data[f"arm{i}_time_s"] = np.asarray(a.time_s)
        data[f"arm{i}_arrived"] = np.asarray(a.arrived, dtype=np.int64)
        data[f"arm{i}_good"] = np.asarray(a.good, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **data)  # type: ignore[arg-type]
    write_atomic(path, buf.getvalue())


def _shift_times(make: Any, s: dict[str, Any], end_s: float) -> list[float]:
    """When the workload shifts: the phase starts of a :class:`traces.MixShift` (or
    :class:`traces.PiecewiseRate`) trace at the env's rate; none for other traces."""
    trace = s["source"]
    edges_of = getattr(trace, "phase_edges_s", None)
    if edges_of is None:
        return []
    env = make()
    u = env.unwrapped
    rate = float(u.load) * float(u.capacity_qps)
    env.close()
    edges = edges_of(int(s["episode_queries"]), rate)
    return [float(x) for x in edges[1:-1] if x < end_s]


def _name(s: dict[str, Any]) -> str:
    spec = s["trace"]
    return spec if isinstance(spec, str) else f"{type(s['source']).__name__} (online.trace)"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _plot(arms: list[Any], edges: np.ndarray, shifts: list[float], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    mid = (edges[:-1] + edges[1:]) / 2
    for a in arms:
        goodput, _ = a.windows(edges)
        ax.plot(mid, goodput, marker=".", label=a.name)
    for k, t in enumerate(shifts):
        ax.axvline(t, color="grey", linestyle="--", alpha=0.7,
                   label="workload shift" if k == 0 else None)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("goodput (in-SLA queries/s)")
    ax.set_title("Online learning: goodput over one drifting episode")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "online_goodput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _section(s: dict[str, Any], summary: list[dict[str, Any]], shifts: list[float],
             width: float, best: str, scores: dict[str, float], plot: Path) -> str:
    head = "| arm | goodput q/s | SLA | thirds q/s | " + " | ".join(
        f"recover after shift {k + 1} (s)" for k in range(len(shifts))) + " |"
    lines = ["## Online learning (one drifting episode, the same arrivals for every arm)", "",
             f"Trace `{_name(s)}`, {s['episode_queries']:,} queries, seed {s['seed']}; the "
             f"online arm updates with PPO every {s['update_every']} decisions"
             + (" and serves with its greedy actions while PPO explores on a twin of the env "
                "that replays the same arrivals" if s["serving"] == "greedy" else
                " and serves with PPO's sampled actions") + ". Shifts at "
             + (", ".join(f"{t:.2f} s" for t in shifts) or "none known") + f"; windows of "
             f"{width:.3f} s; goodput per third of the windows. Recovered: the end of the first "
             f"window after the shift whose in-SLA fraction reaches "
             f"{float(s['recover_fraction']):.0%} of the best arm's level over the second half "
             f"of the phase and holds it over the next {int(s['recover_hold'])} window(s) "
             "counted together (blank: not recovered within the phase).", "", head,
             "|---|---:|---:|---:|" + "---:|" * len(shifts)]
    for r in summary:
        rec = [r[f"recover_s_shift{k + 1}"] for k in range(len(shifts))]
        lines.append(f"| {r['arm']} | {r['goodput']:.1f} | {r['sla_attainment']:.3f} | "
                     f"{r['first_third_goodput']:.0f} / {r['middle_third_goodput']:.0f} / "
                     f"{r['last_third_goodput']:.0f} | "
                     + " | ".join("" if math.isnan(x) else f"{x:.3f}" for x in rec) + " |")
    lines += ["", "Heuristics on this episode (goodput q/s): "
              + ", ".join(f"{n} {v:.1f}" for n, v in sorted(scores.items(), key=lambda x: -x[1]))
              + f"; the best, `{best}`, is the heuristic arm.", "",
              f"![online goodput](plots/{plot.name})", ""]
    return "\n".join(lines)
