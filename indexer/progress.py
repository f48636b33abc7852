"""Progress reporting: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Progress(Protocol):
    def update(self, count: int = 1) -> None: ...
    def close(self) -> None: ...


class LogProgress:
    """Logs `done/total` and the rate every `interval` seconds (for cron and container logs)."""

    def __init__(self, total: int | None, interval: float = 15.0) -> None:
        self.total = total
        self.interval = interval
        self.done = 0
        self.started = time.monotonic()
        self.last = self.started

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._log(now)

    def close(self) -> None:
        self._log(time.monotonic())

    def _log(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        total = "?" if self.total is None else str(self.total)
        log.info("progress: %d/%s rows, %.2f rows/s", self.done, total, rate)


class NoProgress:
    def update(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(total: int | None, enabled: bool = True) -> Progress:
    """A tqdm bar when stderr is a terminal, else periodic log lines."""
    if not enabled:
        return NoProgress()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="img", desc="indexing", dynamic_ncols=True)
    return LogProgress(total)
