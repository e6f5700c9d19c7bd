"""``select``: keep the best checkpoint of training by a validation score, not the last one.

    python -m experiments.train \\
        select='{every: 25000, traces: [azure-conv, azure-code, servegen-m-large],
                 loads: [0.8, 1.0], episode_queries: 5000}'

Every ``every`` training steps from step ``start`` (default ``every``; at the start of the
next rollout, when the weights have just been updated) and once after the last update, the
current policy (deterministic, as evaluated) plays ``episodes`` validation episodes on each of
``traces`` at each of ``loads``; each cell's gain is the learned policy's mean ``metric`` over
the best baseline's mean (the baselines' results are computed once, on the same arrivals)
minus one, and the score is the ``score`` (``mean`` or ``min``) of the cells' gains (each less
its load's ``targets`` entry where given: with ``score: min`` the score is then the margin by
which the policy clears a per-load requirement on its worst cell, e.g. ``loads: [0.8, 1.0],
targets: [-0.02, 0.10]`` for "no worse than -2% at 80%, at least +10% at 100%"). The
exported ``model.zip`` holds the weights of the best-scoring check (the first of equal scores);
``select.json`` in the run folder lists every check (step, score, each cell's gain) and the
chosen step.

``runs: K`` (default 1) trains K runs, with seeds ``seed`` to ``seed+K-1``, each in
``runs/seed-S/`` of the run folder with its own checkpoint selection, and keeps the run whose
chosen check scored best (its ``model.zip``; ``select.json`` gains ``runs`` and
``chosen_seed``): best of K training seeds by the same validation score, K times the training
time. ``resume=`` keeps the finished runs and continues the interrupted one.
``ensemble: N`` (default 1; at most ``runs``) makes the N best-scoring runs' policies act
together instead (:class:`agents.ensemble.EnsembleModel`: the mean of their masked action
probabilities): ``ensemble.json`` lists their ``model.zip`` files, which evaluation, export (one
ONNX graph) and ``run_dir=`` apps load; ``model.zip`` stays the best run's, and ``select.json``
gains the ensemble's seeds and its own validation score.

Validation never touches what the report evaluates: a trace must be a training split (a preset
not ending in ``-test``; ``null`` is the env's own trace) and the episode seeds
(``seed``..``seed+episodes-1``, default 9000) must differ from the training and the evaluation
seeds. Not with ``vec_env.normalize`` (the statistics keep moving after the chosen check).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments.common import EnvSpec, UserError, option_mapping

_KEYS = {"every", "start", "episodes", "traces", "loads", "episode_queries", "baselines", "metric",
         "score", "seed", "targets", "runs", "ensemble"}
#: File in the run folder: every check and the chosen step.
SELECT_FILE = "select.json"
#: File in the checkpoint folder: the best weights so far (for a resumed run).
BEST_FILE = "select_best.pt"


@dataclass(frozen=True)
class Select:
    """The ``select`` settings (checked)."""

    every: int
    start: int = 0  # the first check's step (0: ``every``)
    episodes: int = 1
    traces: tuple[str | None, ...] = (None,)
    loads: tuple[float, ...] = ()  # empty: the env's own load(s)
    episode_queries: int | None = None  # None: the env's own episode length
    baselines: tuple[str, ...] = ()  # empty: eval.baselines (or every registered one)
    metric: str = "goodput"
    score: str = "mean"
    seed: int = 9000
    targets: tuple[float, ...] = ()  # per load of ``loads``: subtracted from the cell's gain
    runs: int = 1  # training runs (seeds seed..seed+runs-1); the best run's choice is kept
    ensemble: int = 1  # > 1: the policies of that many best-scoring runs act together

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.episodes))


def select_settings(cfg: DictConfig, spec: EnvSpec) -> Select | None:
    """``cfg.select`` checked (None when absent or null).

    Raises:
        UserError: unknown keys, a value out of range, a test-split or unknown trace, an
            unknown baseline, validation seeds among the training or evaluation seeds, or
            ``vec_env.normalize``.
    """
    value = option_mapping(cfg, "select", "every", _KEYS,
                           "{every: STEPS, episodes: N, traces: [...], ...}")
    if value is None:
        return None
    try:
        traces = value.get("traces")
        loads = value.get("loads")
        baselines = value.get("baselines")
        targets = value.get("targets")
        for key, seq in (("traces", traces), ("loads", loads), ("baselines", baselines),
                         ("targets", targets)):
            if seq is not None and not isinstance(seq, list):
                raise UserError(f"select.{key}: expected a list or null, got {seq!r}")
        sel = Select(
            every=int(value["every"]),
            start=int(value.get("start", 0)),
            episodes=int(value.get("episodes", 1)),
            traces=tuple(None if t is None else str(t) for t in traces) if traces else (None,),
            loads=tuple(float(x) for x in loads) if loads else (),
            episode_queries=(None if value.get("episode_queries") is None
                             else int(value["episode_queries"])),
            baselines=tuple(str(b) for b in baselines) if baselines else (),
            metric=str(value.get("metric", "goodput")),
            score=str(value.get("score", "mean")),
            seed=int(value.get("seed", 9000)),
            targets=tuple(float(x) for x in targets) if targets else (),
            runs=int(value.get("runs", 1)),
            ensemble=int(value.get("ensemble", 1)))
    except (TypeError, ValueError) as exc:
        raise UserError(f"select: {' '.join(str(exc).split())}") from None
    for key in ("every", "episodes", "runs"):
        if getattr(sel, key) < 1:
            raise UserError(f"select.{key}: must be >= 1, got {getattr(sel, key)}")
    if not 1 <= sel.ensemble <= sel.runs:
        raise UserError(f"select.ensemble: between 1 and select.runs ({sel.runs}), got "
                        f"{sel.ensemble}")
    if sel.ensemble > 1 and cfg.get("online") is not None:
        raise UserError("select.ensemble: not with the online study (online=...): an ensemble "
                        "of policies cannot keep training")
    if sel.start < 0:
        raise UserError(f"select.start: must be >= 0, got {sel.start}")
    if sel.episode_queries is not None and sel.episode_queries < 1:
        raise UserError(f"select.episode_queries: must be >= 1, got {sel.episode_queries}")
    if any(x <= 0 for x in sel.loads):
        raise UserError(f"select.loads: every load must be > 0, got {list(sel.loads)}")
    if sel.targets and len(sel.targets) != len(sel.loads):
        raise UserError(f"select.targets: one per load of select.loads ({list(sel.loads)}), "
                        f"got {list(sel.targets)}")
    if sel.score not in ("mean", "min"):
        raise UserError(f"select.score: 'mean' or 'min', got '{sel.score}'")
    from traces import TRACE_PRESETS

    for name in sel.traces:
        if name is None:
            continue
        if name not in TRACE_PRESETS:
            raise UserError(f"select.traces: unknown trace preset '{name}'; known: "
                            f"{', '.join(sorted(TRACE_PRESETS))}")
        if name.endswith("-test"):
            raise UserError(f"select.traces: '{name}' is a held-out test split; validate on "
                            f"training windows ('{name.removesuffix('-test')}')")
    from experiments.checks import training_seeds

    train = set().union(*(training_seeds(int(cfg.seed) + k, int(cfg.n_envs))
                          for k in range(sel.runs)))
    clash = sorted(set(sel.seeds) & (train | {int(s) for s in cfg.eval.seeds}))
    if clash:
        raise UserError(f"select.seed: validation seeds {clash} are training or evaluation "
                        f"seeds; pick another select.seed")
    clash = sorted(train & {int(s) for s in cfg.eval.seeds})
    if clash:
        raise UserError(f"select.runs: the runs' training seeds (seed={cfg.seed} to "
                        f"{int(cfg.seed) + sel.runs - 1}, n_envs={cfg.n_envs}) include "
                        f"evaluation seeds {clash}")
    vec = cfg.get("vec_env")
    if vec is not None and bool(vec.get("normalize", False)):
        raise UserError("select: not with vec_env.normalize=true (the statistics keep moving "
                        "after the chosen check)")
    from experiments.pipeline import make_policies

    make_policies(list(sel.baselines), None, spec.env_id)  # unknown baseline -> UserError
    return sel


class Validator:
    """Scores a model on the validation cells; the baselines' results are computed once."""

    def __init__(self, sel: Select, spec: EnvSpec, baselines: list[str]) -> None:
        from experiments.pipeline import eval_loads, make_policies

        self.sel = sel
        loads = list(sel.loads)
        if not loads:
            loads = eval_loads(OmegaConf.create({"eval": {"loads": None}}), spec)
        names = list(sel.baselines) or [b for b in baselines if b != "random"]
        self.cells: list[tuple[str | None, float]] = [(t, lo) for t in sel.traces for lo in loads]
        self.targets = dict(zip(loads, sel.targets, strict=True)) if sel.targets else {}
        self.makers: dict[tuple[str | None, float], Any] = {}
        for trace, load in self.cells:
            kw: dict[str, Any] = {"load": load}
            if trace is not None:
                kw["trace"] = trace
            if sel.episode_queries is not None:
                kw["episode_queries"] = sel.episode_queries
            self.makers[(trace, load)] = functools.partial(spec.make, **kw)
        t0 = time.perf_counter()
        self.best_baseline: dict[tuple[str | None, float], tuple[str, float]] = {}
        policies = make_policies(names, None, spec.env_id)
        for cell in self.cells:
            self.best_baseline[cell] = self._best(self._run(cell, policies))
        self.baseline_seconds = time.perf_counter() - t0

    def _run(self, cell: tuple[str | None, float], policies: Mapping[str, Any]) -> dict[str, float]:
        from agents.evaluation import evaluate

        res = evaluate(self.makers[cell], policies, self.sel.seeds, progress=False)
        out = {}
        for name, r in res.items():
            if not r.episodes or self.sel.metric not in r.episodes[0]:
                raise UserError(f"select.metric: episodes report no '{self.sel.metric}'")
            out[name] = r.mean(self.sel.metric)
        return out

    @staticmethod
    def _best(values: dict[str, float]) -> tuple[str, float]:
        name = max(values, key=lambda n: values[n])
        return name, values[name]

    def cell_name(self, cell: tuple[str | None, float]) -> str:
        trace, load = cell
        return f"{trace or 'env'}@{load:g}"

    def score(self, model: Any) -> tuple[float, dict[str, float]]:
        """``(score, gain per cell)`` of ``model`` (its deterministic actions); the score is
        over the gains less their load's target (``targets``; none: 0)."""
        from agents.policy import SB3Policy

        gains: dict[str, float] = {}
        margins = []
        for cell in self.cells:
            learned = self._run(cell, {"learned": SB3Policy(model)})["learned"]
            base = self.best_baseline[cell][1]
            gains[self.cell_name(cell)] = gain = learned / base - 1.0 if base > 0 else learned
            margins.append(gain - self.targets.get(cell[1], 0.0))
        values = np.array(margins)
        return float(values.mean() if self.sel.score == "mean" else values.min()), gains


def ensemble_members(runs: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` runs with the highest ``chosen_score`` (of equal scores, the earlier run),
    listed in the order of ``runs`` (seed order): what ``ensemble.json`` holds."""
    if not 1 <= n <= len(runs):
        raise ValueError(f"an ensemble of {n} from {len(runs)} runs")
    ranked = sorted(range(len(runs)), key=lambda i: -runs[i]["chosen_score"])  # stable
    return [runs[i] for i in sorted(ranked[:n])]


def write_select(path: Path, record: dict[str, Any]) -> None:
    from experiments.common import write_atomic

    write_atomic(path, json.dumps(record, indent=1) + "\n")
