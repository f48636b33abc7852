"""Stopping a run cleanly: a token that the signal handler sets and the row loop checks at safe points."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT was received: the run stops at the next row, releasing its lock on the way out."""


class StopToken:
    """Set once to ask a run to stop at the next row (never inside the model or a bulk request)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "a stop request"

    def request(self, reason: str) -> None:
        self._reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Interrupted (naming what asked) once a stop was requested."""
        if self._event.is_set():
            raise Interrupted(self._reason)


def stop_on_signals(token: StopToken) -> None:
    """SIGTERM/SIGINT set `token` (lock released, report stored); a second one exits at once."""

    def interrupt(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        log.warning("%s received: stopping after the current batch", name)
        token.request(name)
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
