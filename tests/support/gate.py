"""A local image server that holds every photo request until the test lets it through.

An outage test needs the run it disturbs to be mid-way when the outage happens, whatever the
machine's speed: a run whose photos are held cannot finish, so a fast model can no longer outrun a
restart. The test lets photos through one at a time until the run has reached the point it wants,
does the outage, and then lets the rest through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class PhotoGate(ThreadingHTTPServer):
    """Serves a folder; each request waits until `release` admits it (requests are counted). Which
    of several held requests goes first is not defined: a run held row by row fetches one at a time."""

    daemon_threads = True

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), partial(GatedHandler, directory=str(folder)))
        self._turn = threading.Condition()
        self._open = False
        self._admitted = 0
        self._allowed = 0
        self._arrived = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def admit(self) -> None:
        """Called by each request: wait until the test allows one more through."""
        with self._turn:
            self._arrived += 1
            self._turn.notify_all()
            self._turn.wait_for(lambda: self._open or self._admitted < self._allowed)
            self._admitted += 1

    def release(self, count: int = 1) -> None:
        with self._turn:
            self._allowed += count
            self._turn.notify_all()

    def open(self) -> None:
        """Let every request through, held ones and later ones, until `close`."""
        with self._turn:
            self._open = True
            self._turn.notify_all()

    def close(self) -> None:
        """Hold every request from now on (until `release` or `open`)."""
        with self._turn:
            self._open = False
            self._allowed = self._arrived = self._admitted

    @property
    def admitted(self) -> int:
        with self._turn:
            return self._admitted

    def wait_for_arrival(self, timeout: float = 120.0) -> bool:
        """Block until a request is held that no release has let through yet (False after `timeout`)."""
        with self._turn:
            return self._turn.wait_for(lambda: self._arrived > self._allowed, timeout)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up on a held request is expected here; stay quiet."""


class GatedHandler(SimpleHTTPRequestHandler):
    server: PhotoGate

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.admit()
        super().do_GET()


@contextmanager
def serve_held(folder: Path) -> Iterator[PhotoGate]:
    """A PhotoGate on a free port for the block; everything is let through before it stops."""
    gate = PhotoGate(folder)
    thread = threading.Thread(target=gate.serve_forever, daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        gate.open()
        gate.shutdown()
        gate.server_close()


def release_until(
    gate: PhotoGate, reached: Callable[[], bool], still_running: Callable[[], bool], limit: int
) -> None:
    """Let photos through one at a time, each after the run asked for it, until `reached()` holds.

    At most `limit` photos pass (fewer than the run needs, so it cannot finish); after each one the
    run gets a second to save progress before the next is let through. Raises when the run ends or
    the limit is spent before the point is reached.
    """
    first = gate.admitted
    while not reached():
        assert still_running(), "the run ended while its photos were held"
        assert gate.admitted - first < limit, f"the point was not reached after {limit} photos"
        assert gate.wait_for_arrival(), "the run asked for no photo within 120 s"
        gate.release()
        give_up = time.monotonic() + 1.0
        while time.monotonic() < give_up and not reached():
            time.sleep(0.05)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
