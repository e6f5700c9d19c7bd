"""The main job: train an agent, export it to ONNX, evaluate it against the baselines.

    python -m experiments.train                      # MaskablePPO on PartitionPlacement-v0
    python -m experiments.train env.kwargs.load=1.0 total_timesteps=200000
    python -m experiments.train experiment=quick     # a tiny smoke run
    python -m experiments.train resume=runs/2026-11-29/10-00-00   # continue an interrupted run

Writes into the Hydra run folder: ``.hydra/``, ``tb/``, ``checkpoint/``, ``model.zip``,
``policy.onnx``, ``report.md``, ``results.csv``, ``plots/*.png``, ``meta.json``; with ``select=``
(checkpoint selection, :mod:`experiments.selection`) also ``select.json`` and, when an earlier
check was chosen, ``model_last.zip``; with ``select.runs`` the runs in ``runs/seed-S/`` and, with
``select.ensemble``, ``ensemble.json`` (the runs whose policies act together).

SIGINT or SIGTERM during training saves a checkpoint (``checkpoint/``: model, VecNormalize
statistics if any, step count, RNG states) and exits with 130/143 after one line saying how to
resume; ``checkpoint.every_steps`` also saves one periodically. ``resume=RUN_DIR`` composes the
run's config again (its own overrides, then any given now), loads the checkpoint and continues
from its step count in the same folder and TensorBoard run; a run whose training had finished
is exported, evaluated and reported again.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.checks import check_train, training_seeds
from experiments.common import (
    EnvSpec,
    UserError,
    check_env_builds,
    env_spec,
    hydra_app,
    run_dir,
    write_atomic,
)
from experiments.interrupts import Interrupted, Interrupts, signal_name

CHECKPOINT = "checkpoint"
RUNS = "runs"  # select.runs > 1: one folder per training run (runs/seed-S)


@dataclass(frozen=True)
class ResumeState:
    """What an earlier, interrupted run of this folder left."""

    num_timesteps: int  # steps in the checkpoint (0: none was saved)
    resumes: int  # how often the run has been resumed before
    train_seconds: float  # training wall time so far
    finished: bool  # model.zip is there: training is done


@dataclass(frozen=True)
class TrainStart:
    """The result of the start-up checks."""

    spec: EnvSpec
    policy_names: list[str]
    resume: ResumeState | None
    warm_start: Any = None  # experiments.warm_start.WarmStart, or None
    select: Any = None  # experiments.selection.Select, or None


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=RUN_DIR [more overrides]`` -> the run's saved overrides, the new ones,
    ``resume=RUN_DIR`` and ``hydra.run.dir=RUN_DIR`` (the run continues in its own folder)."""
    given = [a for a in argv if a.startswith(("resume=", "+resume="))]
    if not given:
        return argv
    value = given[-1].split("=", 1)[1].strip("'\"")
    if value in ("", "null"):
        return [a for a in argv if a not in given]
    if "-m" in argv or "--multirun" in argv:
        raise UserError("resume: continues one run; it cannot be combined with --multirun")
    path = Path(value)
    overrides_file = path / ".hydra" / "overrides.yaml"
    if not path.is_dir():
        raise UserError(f"resume={value}: no such directory")
    if not overrides_file.is_file():
        raise UserError(f"resume={value}: not a training run folder (no .hydra/overrides.yaml)")
    try:
        saved = [str(o) for o in OmegaConf.load(overrides_file)]
    except Exception as exc:
        raise UserError(f"{overrides_file}: not a list of overrides "
                        f"({' '.join(str(exc).split())[:120]})") from None
    saved = [o for o in saved if not o.startswith(("resume=", "+resume="))]
    rest = [a for a in argv if a not in given]
    return [*saved, *rest, f"resume={_quote(value)}", f"hydra.run.dir={_quote(value)}"]


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w./-]+", value) else "'" + value.replace("'", "\\'") + "'"


def resume_state(cfg: DictConfig) -> ResumeState | None:
    """Read what ``cfg.resume`` left (``None`` for a new run).

    Raises:
        UserError: the folder or its checkpoint is missing or unreadable (naming the file).
    """
    if cfg.get("resume") is None:
        return None
    run = Path(str(cfg.resume))
    if not (run / ".hydra" / "overrides.yaml").is_file():
        raise UserError(f"resume={cfg.resume}: not a training run folder")
    return _state_of(cfg, run)


def _state_of(cfg: DictConfig, run: Path) -> ResumeState:
    """What training left in ``run`` (its checkpoint state and ``model.zip``)."""
    state_file = run / CHECKPOINT / "state.json"
    state: dict[str, Any] = {}
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text())
            int(state["num_timesteps"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise UserError(f"{state_file}: not a checkpoint state ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:120]})") from None
    finished = (run / "model.zip").is_file()
    steps = int(state.get("num_timesteps", 0))
    if not finished and steps > 0:
        from experiments.saved import load_model_file

        load_model_file(cfg, run / CHECKPOINT / "model.zip")  # a readable checkpoint?
    if finished:
        from experiments.saved import load_model

        load_model(cfg, run)
    return ResumeState(steps, int(state.get("resumes", 0)),
                       float(state.get("train_seconds", 0.0)), finished)


def startup(cfg: DictConfig, _overrides: list[str]) -> TrainStart:
    """Every check that can fail on the user's input, before any work."""
    from experiments.pipeline import baseline_names, check_eval_traces, make_policies

    resume = resume_state(cfg)
    check_train(cfg, resumes=0 if resume is None else resume.resumes + 1)
    from experiments.sweeps import objective_metric

    objective_metric(cfg)  # a bad `objective` fails before training
    spec = env_spec(cfg)
    check_env_builds(spec)
    check_eval_traces(cfg, spec)
    from experiments.online import online_settings

    online_settings(cfg)  # experiment=online: its keys checked before any work
    names = ["learned", *baseline_names(cfg, spec.env_id)]
    make_policies([n for n in names if n != "learned"], None, spec.env_id)
    from experiments.selection import select_settings
    from experiments.warm_start import warm_start_settings

    return TrainStart(spec, names, resume, warm_start_settings(cfg, spec.env_id),
                      select_settings(cfg, spec))


@hydra_app("train", startup=startup, expand_argv=expand_resume)
def main(cfg: DictConfig, start: TrainStart, interrupts: Interrupts) -> float:
    """Train (or resume), export, evaluate, report; returns the learned policy's
    ``objective`` metric (what a sweeper such as Optuna optimises, see
    :mod:`experiments.sweeps`)."""

    from experiments.pipeline import (
        describe,
        evaluate_and_report,
        export_and_check,
        make_policies,
        write_meta,
    )

    out = run_dir()
    spec = start.spec
    resume_hint = f"resume with: python -m experiments.train resume={out}"
    try:
        model, train_s, steps = train(cfg, start, out, interrupts)
    except Interrupted as exc:
        raise Interrupted(exc.signum, f"interrupted by {signal_name(exc.signum)} (no new "
                          f"checkpoint); {resume_hint}") from None
    if model is None:  # stopped by a signal: the checkpoint is saved
        signum = interrupts.received or 2
        where = out / CHECKPOINT if start.select is None or start.select.runs == 1 else (
            out / RUNS)
        raise Interrupted(signum, f"interrupted by {signal_name(signum)}: checkpoint at step "
                          f"{steps:,} of {int(cfg.total_timesteps):,} saved in "
                          f"{where}; {resume_hint}")
    try:
        export = export_and_check(model, spec, out, int(cfg.export.parity_samples))
        print(f"policy.onnx: ONNX and torch agree on {export['parity_agreement']:.2%} of "
              f"{export['parity_samples']} held-out observations")
        t1 = time.perf_counter()
        extra = (f"Training: {steps} steps in {train_s:.0f} s. "
                 f"ONNX parity: {export['parity_agreement']:.2%} of "
                 f"{export['parity_samples']} observations.")
        if start.select is not None and (out / "select.json").is_file():
            chosen = json.loads((out / "select.json").read_text())
            extra += (f" Checkpoint selection (select): the weights of step "
                      f"{chosen['chosen_step']:,} (validation score {chosen['chosen_score']:+.4f}"
                      f", best of {len(chosen['history'])} checks; select.json).")
            if "runs" in chosen:
                extra += (f" Best of {len(chosen['runs'])} training runs by that score: seed "
                          f"{chosen['chosen_seed']} (" + ", ".join(
                              f"seed {r['seed']} {r['chosen_score']:+.4f}"
                              for r in chosen["runs"]) + f"; {RUNS}/).")
            if "ensemble" in chosen:
                ens = chosen["ensemble"]
                extra += (f" Ensemble (select.ensemble): the policies of seeds "
                          f"{', '.join(map(str, ens['seeds']))} act together by the mean of "
                          f"their masked action probabilities (validation score "
                          f"{ens['score']:+.4f}; ensemble.json); the learned policy evaluated "
                          f"and exported below is that ensemble.")
        sweep = evaluate_and_report(cfg, spec,
                                    make_policies(start.policy_names, model, spec.env_id),
                                    out, describe(cfg, spec), extra)
        if cfg.get("online") is not None:
            from experiments.online import run_online

            section = run_online(cfg, spec, model,
                                 [n for n in start.policy_names if n != "learned"], out)
            report = out / "report.md"
            write_atomic(report, report.read_text() + "\n" + section)
            print(f"online study: {out / 'online_summary.csv'}, {out / 'plots/online_goodput.png'}")
    except Interrupted as exc:
        raise Interrupted(exc.signum, f"interrupted by {signal_name(exc.signum)} after training"
                          f" (model.zip saved; finished evaluation rows in {out / 'results.csv'})"
                          f"; to export, evaluate and report again, {resume_hint}") from None
    write_meta(out, cfg, {"train_seconds": train_s, "eval_seconds": time.perf_counter() - t1,
                          "total_timesteps": steps, **export})
    print(f"run folder: {out}")
    from experiments.sweeps import objective_value

    return objective_value(cfg, sweep)


def train(cfg: DictConfig, start: TrainStart, out: Path,
          interrupts: Interrupts) -> tuple[Any | None, float, int]:
    """Train (one run, or the best of ``select.runs``); save ``model.zip``.

    Returns:
        ``(model, training seconds in all, steps)``; ``model`` is ``None`` when a signal
        stopped training (a checkpoint was saved).
    """
    if start.select is None or start.select.runs == 1:
        return _train_one(cfg, start, out, interrupts)
    return _train_best_of(cfg, start, out, interrupts)


def _train_best_of(cfg: DictConfig, start: TrainStart, out: Path,
                   interrupts: Interrupts) -> tuple[Any | None, float, int]:
    """``select.runs`` training runs with seeds ``seed``, ``seed+1``, ..., each in
    ``runs/seed-S/`` with its own checkpoint selection; the run whose chosen check scored best
    (the first of equal scores) is copied to ``model.zip`` and ``select.json`` (plus ``runs``
    and ``chosen_seed``). A resumed run keeps the finished runs and continues the others."""
    from dataclasses import replace

    from agents.callbacks import replace_file
    from experiments.saved import load_model
    from experiments.selection import SELECT_FILE, write_select

    resume = start.resume
    if resume is not None and resume.finished:
        return _train_one(cfg, start, out, interrupts)  # loads model.zip
    total_s, runs = 0.0, []
    for k in range(start.select.runs):
        seed = int(cfg.seed) + k
        sub = out / RUNS / f"seed-{seed}"
        sub_cfg = cfg.copy()
        sub_cfg.seed = seed
        sub_resume = _state_of(sub_cfg, sub) if sub.is_dir() else None
        sub.mkdir(parents=True, exist_ok=True)
        model, seconds, steps = _train_one(sub_cfg, replace(start, resume=sub_resume), sub,
                                           interrupts)
        total_s += seconds
        if model is None:
            return None, total_s, steps
        record = json.loads((sub / SELECT_FILE).read_text())
        runs.append({"seed": seed, "chosen_step": record["chosen_step"],
                     "chosen_score": record["chosen_score"]})
        print(f"select.runs: run {k + 1} of {start.select.runs} (seed {seed}) scored "
              f"{record['chosen_score']:+.4f}")
    best = max(runs, key=lambda r: r["chosen_score"])  # the first of equal scores
    best_dir = out / RUNS / f"seed-{best['seed']}"
    ensemble = None
    if start.select.ensemble > 1:  # before model.zip: a run with model.zip is finished
        ensemble = _write_ensemble(cfg, start, out, runs)
    replace_file(out / "model.zip", lambda tmp: shutil.copyfile(best_dir / "model.zip", tmp))
    record = json.loads((best_dir / SELECT_FILE).read_text())
    record.update(runs=runs, chosen_seed=best["seed"])
    if ensemble is not None:
        record.update(ensemble=ensemble)
    write_select(out / SELECT_FILE, record)
    print(f"select.runs: the run of seed {best['seed']} (score {best['chosen_score']:+.4f}, "
          f"best of {len(runs)} runs)")
    ckpt = out / CHECKPOINT
    ckpt.mkdir(exist_ok=True)
    (ckpt / "state.json").write_text(json.dumps(
        {"num_timesteps": int(cfg.total_timesteps), "resumes": 0, "train_seconds": total_s,
         "finished": True}) + "\n")
    return load_model(cfg, out), total_s, int(cfg.total_timesteps)


def _write_ensemble(cfg: DictConfig, start: TrainStart, out: Path,
                    runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``ensemble.json``: the ``select.ensemble`` best-scoring runs (the first of equal
    scores; listed in seed order); returns their seeds and the ensemble's own validation
    score and gains (for ``select.json``)."""
    from experiments.saved import ENSEMBLE_FILE, load_ensemble
    from experiments.selection import Validator, ensemble_members

    members = ensemble_members(runs, start.select.ensemble)
    write_atomic(out / ENSEMBLE_FILE, json.dumps(
        {"members": [f"{RUNS}/seed-{r['seed']}/model.zip" for r in members],
         "seeds": [r["seed"] for r in members],
         "combine": "mean of the members' masked action probabilities"}, indent=1) + "\n")
    validator = Validator(start.select, start.spec,
                          [n for n in start.policy_names if n != "learned"])
    score, gains = validator.score(load_ensemble(cfg, out))
    seeds = [r["seed"] for r in members]
    print(f"select.ensemble: the runs of seeds {', '.join(map(str, seeds))} act together "
          f"(validation score {score:+.4f}; {ENSEMBLE_FILE})")
    return {"seeds": seeds, "score": score, "gains": gains}


def _train_one(cfg: DictConfig, start: TrainStart, out: Path,
               interrupts: Interrupts) -> tuple[Any | None, float, int]:
    """Train one run from scratch or from the checkpoint; save ``model.zip``.

    Returns:
        ``(model, training seconds in all, steps)``; ``model`` is ``None`` when a signal
        stopped training (a checkpoint was saved).
    """
    from hydra.utils import instantiate
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.callbacks import Checkpointer, SchedMetricsCallback, replace_file, set_rng_state
    from agents.vec import TrainingEnvs
    from experiments.saved import algorithm, load_model
    from experiments.vecenv import (
        finish_training,
        vec_env_kind,
        vec_env_start_method,
        with_normalization,
        with_saved_normalization,
    )

    resume = start.resume
    if resume is not None and resume.finished:
        model = with_saved_normalization(load_model(cfg, out), out, start.spec)
        return model, resume.train_seconds, int(cfg.total_timesteps)
    ckpt = out / CHECKPOINT
    from_ckpt = resume is not None and resume.num_timesteps > 0
    resumes = resume.resumes + 1 if resume is not None and from_ckpt else 0
    n_envs = int(cfg.n_envs)
    seeds = training_seeds(int(cfg.seed), n_envs, resumes)
    envs = TrainingEnvs(start.spec.make, start.spec.env_id, n_envs, seeds.start,
                        subproc=vec_env_kind(cfg) == "subproc",
                        start_method=vec_env_start_method(cfg))
    vec_env: Any = envs.vec_env
    if not from_ckpt:
        vec_env = with_normalization(cfg, vec_env)  # vec_env.normalize: SB3 VecNormalize
    elif (ckpt / "vecnormalize.pkl").is_file():
        vec_env = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), vec_env)
    if from_ckpt:
        import torch

        model = algorithm(cfg).load(str(ckpt / "model.zip"), env=vec_env, device="cpu")
        set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    else:
        try:
            model = instantiate(cfg.agent, _convert_="all")(env=vec_env, seed=int(cfg.seed))
        except Exception as exc:
            raise UserError(f"agent: {' '.join(str(exc).split())}") from None
        if start.warm_start is not None:
            from experiments.warm_start import run_warm_start

            t_ws = time.perf_counter()
            record = run_warm_start(start.warm_start, start.spec, model, int(cfg.seed))
            record["seconds"] = round(time.perf_counter() - t_ws, 1)
            write_atomic(out / "warm_start.json", json.dumps(record, indent=1) + "\n")
            print(f"warm start: cloned {record['decisions']:,} {record['teacher']} decisions "
                  f"in {record['seconds']:.0f} s, NLL {record['nll'][0]:.3f} -> "
                  f"{record['nll'][-1]:.3f} (warm_start.json)")
    done_before = int(model.num_timesteps)
    # Resumed: TensorBoard drops what the interrupted run logged after the checkpoint's step.
    model.set_logger(_logger(out / "tb", done_before + 1 if from_ckpt else None))
    checkpointer = Checkpointer(int(cfg.checkpoint.every_steps) // n_envs, ckpt,
                                state={"resumes": resumes})
    callbacks: list[Any] = [SchedMetricsCallback(), checkpointer]
    selector = None
    if start.select is not None:
        selector = _selector(start, out, ckpt, from_ckpt)
        callbacks.append(selector)
    prior_s = resume.train_seconds if resume is not None else 0.0
    t0 = time.perf_counter()
    interrupts.on_signal = checkpointer.request_stop
    try:
        model.learn(total_timesteps=max(int(cfg.total_timesteps) - done_before, 0),
                    callback=callbacks,
                    progress_bar=bool(cfg.progress), reset_num_timesteps=not from_ckpt)
    except (EOFError, BrokenPipeError, ConnectionError) as exc:  # a SubprocVecEnv worker died
        raise envs.crash(exc) from None
    finally:
        interrupts.on_signal = None
        envs.close()
    train_s = prior_s + time.perf_counter() - t0
    steps = int(model.num_timesteps)
    if checkpointer.stop_requested:
        checkpointer.state["train_seconds"] = train_s
        checkpointer.save_now()  # again, with the wall time
        return None, train_s, int(checkpointer.saved_at or 0)
    if selector is not None:
        _finish_selection(selector, model, out)
        train_s = prior_s + time.perf_counter() - t0
    replace_file(out / "model.zip", lambda tmp: model.save(tmp))
    model = finish_training(model, vec_env, out)  # + vecnormalize.pkl when normalising
    # Training is done: keep only the state (for a resume that re-runs export and evaluation).
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps(
        {"num_timesteps": steps, "resumes": resumes, "train_seconds": train_s,
         "finished": True}) + "\n")
    return model, train_s, steps


def _selector(start: TrainStart, out: Path, ckpt: Path, from_ckpt: bool) -> Any:
    """The :class:`agents.callbacks.SelectBest` of ``select`` (its baselines scored now); a
    resumed run continues the interrupted part's checks and best weights."""
    import torch

    from agents.callbacks import SelectBest, replace_file
    from experiments.selection import BEST_FILE, SELECT_FILE, Validator, write_select

    validator = Validator(start.select, start.spec,
                          [n for n in start.policy_names if n != "learned"])
    print(f"select: {len(validator.cells)} validation cells x {start.select.episodes} episodes, "
          f"baselines scored in {validator.baseline_seconds:.0f} s; a check every "
          f"{start.select.every:,} steps")
    history: list[dict[str, Any]] = []
    best_state = None
    if from_ckpt and (out / SELECT_FILE).is_file() and (ckpt / BEST_FILE).is_file():
        history = json.loads((out / SELECT_FILE).read_text())["history"]
        best_state = torch.load(ckpt / BEST_FILE, weights_only=False)
    baselines = {validator.cell_name(c): {"baseline": name, "value": value}
                 for c, (name, value) in validator.best_baseline.items()}

    def on_check(record: dict[str, Any], is_best: bool) -> None:
        if is_best:
            ckpt.mkdir(parents=True, exist_ok=True)
            replace_file(ckpt / BEST_FILE, lambda tmp: torch.save(selector.best_state, tmp))
        write_select(out / SELECT_FILE, {"metric": start.select.metric,
                                         "score": start.select.score,
                                         "best_baselines": baselines,
                                         "history": selector.history})

    selector = SelectBest(start.select.every, validator.score, on_check, history, best_state,
                          start_step=start.select.start)
    return selector


def _finish_selection(selector: Any, model: Any, out: Path) -> None:
    """Score the final weights, load the best ones into ``model``, record the choice (the
    final weights stay as ``model_last.zip`` when another check was chosen)."""
    from agents.callbacks import replace_file
    from experiments.selection import SELECT_FILE, write_select

    last = out / "model_last.zip"  # the last weights too, when they were not chosen
    replace_file(last, lambda tmp: model.save(tmp))
    best = selector.finish(model)
    if best["step"] == int(model.num_timesteps):
        last.unlink()
    record = json.loads((out / SELECT_FILE).read_text())
    record.update(chosen_step=best["step"], chosen_score=best["score"])
    write_select(out / SELECT_FILE, record)
    print(f"select: the weights of step {best['step']:,} (score {best['score']:+.4f}, best of "
          f"{len(selector.history)} checks; the last: {selector.history[-1]['score']:+.4f})")


def _logger(folder: Path, purge_step: int | None) -> Any:
    """SB3 logger to TensorBoard and CSV in ``folder``. On resume, the same TensorBoard run
    (``purge_step`` drops anything logged past the checkpoint) and the CSV continued."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    class ResumedTensorBoard(TensorBoardOutputFormat):
        def __init__(self, log_dir: str, step: int) -> None:
            self.writer = SummaryWriter(log_dir=log_dir, purge_step=step)
            self._is_closed = False

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "progress.csv"
    if purge_step is not None:
        return Logger(str(folder), [ResumedTensorBoard(str(folder), purge_step),
                                    _ContinuedCSV(csv_path)])
    return Logger(str(folder), [TensorBoardOutputFormat(str(folder)),
                                CSVOutputFormat(str(csv_path))])


def _ContinuedCSV(path: Path) -> Any:
    """SB3's CSV writer appending to an existing ``progress.csv`` (its header kept)."""
    from stable_baselines3.common.logger import CSVOutputFormat

    class ContinuedCSV(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            if not Path(filename).is_file() or Path(filename).stat().st_size == 0:
                super().__init__(filename)
                return
            self.file = open(filename, "r+")
            header = self.file.readline().rstrip("\n")
            self.keys = header.split(",") if header else []
            self.file.seek(0, 2)
            self.separator = ","
            self.quotechar = '"'

    return ContinuedCSV(str(path))


if __name__ == "__main__":
    main()
