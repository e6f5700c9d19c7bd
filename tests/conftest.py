"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_app(*args: str, cwd: Path | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` in the repo (or ``cwd``) and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
