"""Shared pieces of the Hydra apps: config -> environment, run folders, one-line errors.

This is the only layer that reads Hydra configs and calls ``instantiate``; everything handed
below it is plain Python (``OmegaConf.to_container``/``to_object`` at the boundary).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments import schema

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
schema.register()  # the key types of conf/train.yaml, evaluate.yaml, export.yaml


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


@dataclass(frozen=True)
class EnvSpec:
    """Everything needed to build the experiment's environment (picklable)."""

    env_id: str
    kwargs: dict[str, Any]

    def make(self, **overrides: Any) -> gym.Env[Any, Any]:
        """A fresh environment."""
        import envs  # noqa: F401  (registers the ldsgym/ namespace)

        return gym.make(self.env_id, **{**self.kwargs, **overrides})


def env_spec(cfg: DictConfig) -> EnvSpec:
    """Resolve the ``env``, ``hw``, ``workload`` and ``trace`` groups into an :class:`EnvSpec`.

    Raises:
        UserError: a group is malformed (the message names the key).
    """
    from hydra.utils import instantiate

    import envs

    env_id = str(cfg.env.id)
    if env_id not in envs.registered_ids():
        raise UserError(f"env.id: unknown environment '{env_id}'; registered: "
                        f"{', '.join(envs.registered_ids())}")
    kwargs: dict[str, Any] = OmegaConf.to_container(cfg.env.kwargs, resolve=True)  # type: ignore[assignment]
    if "hw" in cfg and cfg.hw is not None:
        kwargs["hw"] = OmegaConf.to_container(cfg.hw, resolve=True)
    if "workload" in cfg and cfg.workload is not None:
        if "models" not in cfg.workload:
            raise UserError("workload: needs a 'models' list")
        kwargs["workload"] = OmegaConf.to_container(cfg.workload.models, resolve=True)
    if "trace" in cfg and cfg.trace is not None:
        try:
            kwargs["trace"] = instantiate(cfg.trace, _convert_="all")
        except Exception as exc:  # hydra wraps constructor errors
            raise UserError(f"trace: {_first_line(exc)}") from None
    return EnvSpec(env_id, kwargs)


def check_env_builds(spec: EnvSpec) -> None:
    """Build and reset the environment once so that bad input fails before any work; print the
    replayed trace's warnings (rows out of time order, a time far beyond the rest) as
    ``traces.stats`` does, once per process."""
    try:
        env = spec.make()
        env.reset(seed=0)  # draws a trace: a replayed file is read (and checked) here
        env.close()
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise UserError(f"env: {_first_line(exc)}") from None
    trace = spec.kwargs.get("trace")
    report = getattr(trace, "report", None) if hasattr(trace, "load") else None
    for message in getattr(report, "warnings", ()):
        line = f"warning: {report.source}: {message}"  # type: ignore[union-attr]
        if line not in _WARNED:
            _WARNED.add(line)
            print(line, file=sys.stderr)


_WARNED: set[str] = set()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # Hydra's InstantiationException puts the cause after the first line.
    cause = exc.__cause__ or exc.__context__
    if cause is not None and type(exc).__name__ == "InstantiationException":
        text = str(cause).strip() or text
    return " ".join(text.split())


def run_dir() -> Path:
    """The Hydra output directory of the running app."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def git_revision() -> str:
    """The checkout's commit (``-dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def option_mapping(cfg: DictConfig, key: str, required: str, known: set[str],
                   shape: str) -> dict[Any, Any] | None:
    """A mapping option of the run config (``warm_start``, ``select``, ...): None when it is
    null or absent, else its plain dict, checked for its ``required`` key and unknown keys.

    Raises:
        UserError: one line naming ``key``: not a mapping with ``required`` (``shape`` shows the
            expected form), or keys outside ``known``.
    """
    raw = cfg.get(key)
    if raw is None:
        return None
    value = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else raw
    if not isinstance(value, dict) or required not in value:
        raise UserError(f"{key}: expected {shape} or null, got {value!r}")
    unknown = set(value) - known
    if unknown:
        raise UserError(f"{key}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return value


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that a crash never leaves it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn input errors into one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except UserError as exc:
        _die(str(exc))
    except OmegaConfBaseException as exc:
        _die(_config_message(exc))


def _config_message(exc: BaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"config key '{key}': {msg}" if key else f"config: {msg}"


def _die(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


#: An app's start-up checks: ``(cfg, command-line overrides) -> what the app needs``. They run
#: once before Hydra creates the run folder (nothing is written if they fail) and again inside
#: the task, where their result is handed to the app.
Startup = Callable[[DictConfig, list[str]], Any]

#: Folders on the way to the run folder that existed before Hydra ran (never removed).
_EXISTED: set[Path] = set()


def torch_threads(cfg: DictConfig) -> None:
    """torch's intra-op threads to the run's ``torch_threads``, for the whole app and before its
    start-up checks, which load saved models (evaluate, export, resume). The policies are small
    MLPs: with torch's default (one thread per core) SB3's weight initialisation and every
    forward pass contend with the simulator and other jobs for the cores (on a busy 2-core
    machine a ClusterRouting decision took 10 ms instead of well under 1 ms). A missing or bad
    value is left to the app's own checks."""
    n = cfg.get("torch_threads")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        import torch

        torch.set_num_threads(n)


def precheck(config_name: str, argv: list[str], startup: Startup | None = None) -> None:
    """Compose the config with the command-line overrides and run the app's start-up checks,
    all before Hydra runs the app.

    Hydra's own report of a bad override spans several lines; this gives one line naming the
    key and exits with status 2, before anything is created or written.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("-") and a not in ("--multirun", "-m") for a in argv):
        return  # --help, --cfg, ...: leave to Hydra
    multirun = "--multirun" in argv or "-m" in argv
    if multirun:
        overrides = _first_of_each_sweep(overrides)
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            try:
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            except Exception as exc:
                _die(_compose_message(exc))
            job = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
            missing = sorted(OmegaConf.missing_keys(job))
            if missing:
                _die(f"config key '{missing[0]}' is required: add {missing[0]}=...")
            with user_errors():
                out = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
                _EXISTED.update(p for p in (out, *out.parents) if p.exists())
                if startup is not None:
                    torch_threads(job)
                    startup(job, [o for o in overrides
                                  if not o.lstrip("+~").startswith("hydra.")])
    finally:
        GlobalHydra.instance().clear()


def _compose_message(exc: BaseException) -> str:
    """One line from Hydra's composition error (and the schema's type error behind it)."""
    text = " ".join(str(exc).split())
    text = text.replace(" To append to your config use", "; to add a key use")
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and text.startswith("Error merging override"):
        key = getattr(cause, "full_key", None) or text.split()[-1].split("=")[0]
        reason = " ".join(str(cause).split(" full_key:")[0].split())
        text = f"config key '{key}' ({text.split()[-1]}): {reason}"
    return text.split(" full_key:")[0].split(" Config search path:")[0]


def _first_of_each_sweep(overrides: list[str]) -> list[str]:
    """``seed=0,1,2`` -> ``seed=0``: a multirun is checked through its first job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        _die(" ".join(str(exc).split()))
    out = []
    for raw, ov in zip(overrides, parsed, strict=True):
        if ov.is_sweep_override():
            first = next(iter(ov.sweep_string_iterator()))
            out.append(f"{ov.get_key_element()}={first}")
        else:
            out.append(raw)
    return out


def _remove_debris(out: Path, job_name: str) -> None:
    """Remove a run folder that holds only what Hydra put there (``.hydra/``, ``<job>.log``),
    and the folders above it that Hydra created for it and that are now empty."""
    if not out.is_dir() or out in _EXISTED:
        return
    if not {p.name for p in out.iterdir()} <= {".hydra", f"{job_name}.log"}:
        return
    logging.shutdown()  # close the log file before removing it
    shutil.rmtree(out, ignore_errors=True)
    for parent in out.parents:
        if parent in _EXISTED or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def _log_to_file(message: str) -> None:
    """Append ``message`` to the run's log file (Hydra's file handler) only."""
    record = logging.LogRecord("experiments", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def hydra_app(config_name: str, startup: Startup | None = None,
              expand_argv: Callable[[list[str]], list[str]] | None = None,
              ) -> Callable[[Callable[..., Any]], Callable[[], Any]]:
    """Decorator: a Hydra main over ``conf/<config_name>.yaml`` with one-line input errors.

    With ``startup``, the app is called as ``fn(cfg, startup(cfg, overrides), interrupts)``
    (:class:`~experiments.interrupts.Interrupts`, to route signals while it trains): the checks run
    before Hydra creates the run folder, so bad input leaves nothing behind, and again inside
    the task (a multirun job other than the first is checked there; if that fails, the folder
    Hydra made for it is removed). A failure after the start-up checks keeps the run folder and
    writes the error into its log. SIGINT/SIGTERM end the app with one line and status 130/143.
    ``expand_argv`` rewrites the command line first (``resume=RUN_DIR`` -> the run's overrides).
    """
    import hydra

    def wrap(fn: Callable[..., Any]) -> Callable[[], Any]:
        @functools.wraps(fn)
        def task(cfg: DictConfig) -> Any:
            from experiments.interrupts import Interrupted, Interrupts

            logging.getLogger("matplotlib").setLevel(logging.WARNING)
            interrupts = Interrupts().install()
            try:
                if startup is None:
                    with user_errors():
                        return fn(cfg)
                try:
                    torch_threads(cfg)
                    ready = startup(cfg, current_overrides())
                except (UserError, OmegaConfBaseException) as exc:
                    message = str(exc) if isinstance(exc, UserError) else _config_message(exc)
                    if cfg.get("resume") is None:
                        _remove_debris(run_dir(), str(_hydra_job_name()))
                    _die(message)
                try:
                    return fn(cfg, ready, interrupts)
                except (UserError, OmegaConfBaseException) as exc:
                    message = str(exc) if isinstance(exc, UserError) else _config_message(exc)
                    _log_to_file(f"error: {message}")
                    _die(message)
            except Interrupted as exc:
                _log_to_file(str(exc))
                print(str(exc), file=sys.stderr)
                sys.exit(exc.exit_status)
            except Exception as exc:
                from agents.vec import EnvCrash

                if not isinstance(exc, EnvCrash):
                    raise
                _log_to_file(f"error: {exc}")  # the run folder keeps what was written
                print(f"error: {exc}", file=sys.stderr)
                sys.exit(1)
            finally:
                interrupts.restore()

        main = hydra.main(config_path=str(CONF_DIR), config_name=config_name,
                          version_base="1.3")(task)

        def entry() -> Any:
            try:
                if expand_argv is not None:
                    with user_errors():
                        sys.argv[1:] = expand_argv(sys.argv[1:])
                precheck(config_name, sys.argv[1:], startup)
            except KeyboardInterrupt:
                print("interrupted by SIGINT before the run started; nothing was written",
                      file=sys.stderr)
                sys.exit(130)
            return main()

        return entry

    return wrap


def _hydra_job_name() -> str:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().job.name)


def current_overrides() -> list[str]:
    """This invocation's command-line overrides."""
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task]
