"""Where the shared real-data directory is: ``$LDSGYM_SHARED``, else ``<repo>/../shared``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LDSGYM_SHARED"


def shared_dir() -> Path | None:
    """The shared data directory, or None when it does not exist.

    ``$LDSGYM_SHARED`` wins when set (even if it does not exist, so a test can hide the data by
    pointing it elsewhere); otherwise ``../shared`` next to the repository root.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    p = Path(__file__).resolve().parent.parent.parent / "shared"
    return p if p.is_dir() else None


def shared_file(relative: str) -> Path:
    """A file under the shared directory.

    Raises:
        FileNotFoundError: no shared directory, or no such file in it (one-line message that
            says how to point at the data).
    """
    root = shared_dir()
    if root is None:
        raise FileNotFoundError(
            f"shared data directory not found (set ${ENV_VAR} or put it at ../shared next to "
            f"the repository); needed for {relative}")
    p = root / relative
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file in the shared data directory")
    return p
