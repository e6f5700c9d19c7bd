"""Shared pieces of the Hydra apps: config -> environment, run folders, one-line errors.

This is the only layer that reads Hydra configs and calls ``instantiate``; everything handed
below it is plain Python (``OmegaConf.to_container``/``to_object`` at the boundary).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


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
    """Build and reset the environment once so that bad input fails before any work."""
    try:
        env = spec.make()
        env.reset(seed=0)  # draws a trace: a replayed file is read (and checked) here
        env.close()
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise UserError(f"env: {_first_line(exc)}") from None


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
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except UserError as exc:
        _die(str(exc))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _die(f"config key '{key}': {msg}" if key else f"config: {msg}")


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def precheck_overrides(config_name: str, argv: list[str]) -> None:
    """Compose the config with the command-line overrides before Hydra runs the app.

    Hydra's own report of a bad override spans several lines; this gives one line naming the
    key and exits with status 2, before anything is created or written.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("-") and a not in ("--multirun", "-m") for a in argv):
        return  # --help, --cfg, ...: leave to Hydra
    if "--multirun" in argv or "-m" in argv:
        overrides = _first_of_each_sweep(overrides)
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        text = text.replace(" To append to your config use", "; to add a key use")
        _die(text.split(" full_key:")[0].split(" Config search path:")[0])
    finally:
        GlobalHydra.instance().clear()
    job = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    missing = sorted(OmegaConf.missing_keys(job))
    if missing:
        _die(f"config key '{missing[0]}' is required: add {missing[0]}=...")


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


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorator: a Hydra main over ``conf/<config_name>.yaml`` with one-line input errors."""
    import hydra

    def wrap(fn: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(fn)
        def task(cfg: DictConfig) -> Any:
            import logging

            logging.getLogger("matplotlib").setLevel(logging.WARNING)
            with user_errors():
                return fn(cfg)

        main = hydra.main(config_path=str(CONF_DIR), config_name=config_name,
                          version_base="1.3")(task)

        def entry() -> Any:
            precheck_overrides(config_name, sys.argv[1:])
            return main()

        return entry

    return wrap
