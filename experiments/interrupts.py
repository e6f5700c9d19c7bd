"""SIGINT/SIGTERM without tracebacks: a graceful stop during training, a clean exit elsewhere.

The apps install :class:`Interrupts` for the whole task. While training runs, a signal asks the
checkpoint callback to save and stop (``on_signal``); at any other moment it raises
:class:`Interrupted`, which the app wrapper turns into one line and exit status 128 + signal
(130 for SIGINT, 143 for SIGTERM). A second signal while the first is being handled stops at
once (what has been written atomically stays whole).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(Exception):
    """The process received SIGINT or SIGTERM."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGINT`` / ``SIGTERM``."""
    return _NAMES.get(signal.Signals(signum), f"signal {signum}")


class Interrupts:
    """Routes SIGINT and SIGTERM; install once per task."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.on_signal: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> Interrupts:
        """Take over SIGINT and SIGTERM (the previous handlers are kept for :meth:`restore`)."""
        for sig in _NAMES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Give SIGINT and SIGTERM back to their previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if first and self.on_signal is not None:
            self.on_signal()  # e.g. the checkpointer stops training at the next step
            return
        raise Interrupted(signum)
