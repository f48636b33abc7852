"""A real local HTTP server for test images, with routes that misbehave on purpose."""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DRIP_BYTES = 16
REPO = Path(__file__).resolve().parents[2]


class FaultServer(ThreadingHTTPServer):
    """A threaded server that records when each URL was requested (for 'fail n times, then serve')."""

    daemon_threads = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.requests: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def record(self, path: str) -> int:
        """Note one request for `path`; returns how many it has had, this one included."""
        with self._lock:
            self.requests[path].append(time.monotonic())
            return len(self.requests[path])

    def hits(self, path: str) -> int:
        """How many requests `path` (as requested, without the leading '/') has had."""
        with self._lock:
            return len(self.requests.get("/" + path, []))

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that time out or hang up mid-answer are expected here; stay quiet."""


class ImageHandler(SimpleHTTPRequestHandler):
    """Serves files from a folder, plus fault routes (all GET):

    - /status/<code>: answers that status with an empty body
    - /redirect/<path>: 302 to /<path>
    - /flaky/<n>/<path>: HTTP 500 for the first n requests of this URL, then the file
    - /throttle/<n>/<retry_after>/<path>: HTTP 429 with `Retry-After: <retry_after>` n times, then the file
    - /slow/<seconds>/<path>: waits, then serves the file
    - /drip/<seconds>/<path>: full headers, then the body in 16-byte pieces, one every <seconds>
    - /reset/<path>: reads the request and aborts the TCP connection (RST, no answer)
    - /cut/<n>/<path>: the first n requests get the headers and half the body, then a RST
    - /as-jpeg/<path>: any file, served as `Content-Type: image/jpeg`
    - /unsized/<path>: the file without Content-Length, the body ends when the connection closes
    """

    server: FaultServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        count = self.server.record(self.path)
        route, _, rest = self.path.lstrip("/").partition("/")
        handler = ROUTES.get(route)
        if handler is None:
            super().do_GET()
            return
        handler(self, rest, count)

    def route_status(self, rest: str, count: int) -> None:
        self.send_empty(int(rest.split("/")[0]))

    def route_redirect(self, rest: str, count: int) -> None:
        self.send_response(302)
        self.send_header("Location", "/" + rest)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_flaky(self, rest: str, count: int) -> None:
        failures, path = rest.split("/", 1)
        if count <= int(failures):
            self.send_empty(500)
            return
        self.send_file(path)

    def route_throttle(self, rest: str, count: int) -> None:
        failures, retry_after, path = rest.split("/", 2)
        if count <= int(failures):
            self.send_empty(429, {"Retry-After": retry_after})
            return
        self.send_file(path)

    def route_slow(self, rest: str, count: int) -> None:
        seconds, path = rest.split("/", 1)
        time.sleep(float(seconds))
        self.send_file(path)

    def route_drip(self, rest: str, count: int) -> None:
        seconds, path = rest.split("/", 1)
        body = self.file_bytes(path)
        self.send_headers(200, len(body))
        for start in range(0, len(body), DRIP_BYTES):
            self.wfile.write(body[start : start + DRIP_BYTES])
            self.wfile.flush()
            time.sleep(float(seconds))

    def route_reset(self, rest: str, count: int) -> None:
        self.abort_connection()

    def route_cut(self, rest: str, count: int) -> None:
        failures, path = rest.split("/", 1)
        if count > int(failures):
            self.send_file(path)
            return
        body = self.file_bytes(path)
        self.send_headers(200, len(body))
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        time.sleep(0.05)
        self.abort_connection()

    def route_as_jpeg(self, rest: str, count: int) -> None:
        self.send_file(rest, content_type="image/jpeg")

    def route_unsized(self, rest: str, count: int) -> None:
        body = self.file_bytes(rest)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def file_bytes(self, path: str) -> bytes:
        return Path(self.translate_path("/" + path)).read_bytes()

    def send_headers(self, status: int, length: int, content_type: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def send_empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_file(self, path: str, content_type: str | None = None) -> None:
        """The file under the served folder (404 if missing), with its guessed or the given type."""
        target = Path(self.translate_path("/" + path))
        if not target.is_file():
            self.send_empty(404)
            return
        self.send_headers(200, target.stat().st_size, content_type or self.guess_type(str(target)))
        with target.open("rb") as handle:
            shutil.copyfileobj(handle, self.wfile)

    def abort_connection(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends a TCP RST instead of a clean FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


ROUTES = {
    "status": ImageHandler.route_status,
    "redirect": ImageHandler.route_redirect,
    "flaky": ImageHandler.route_flaky,
    "throttle": ImageHandler.route_throttle,
    "slow": ImageHandler.route_slow,
    "drip": ImageHandler.route_drip,
    "reset": ImageHandler.route_reset,
    "cut": ImageHandler.route_cut,
    "as-jpeg": ImageHandler.route_as_jpeg,
    "unsized": ImageHandler.route_unsized,
}


@contextmanager
def serve_faults(folder: Path) -> Iterator[FaultServer]:
    """Serve `folder` on 127.0.0.1 at a free port; yields the server (base_url, hits, requests)."""
    handler = partial(ImageHandler, directory=str(folder))
    server = FaultServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 at a free port; yields the base URL ending in '/'."""
    with serve_faults(folder) as server:
        yield server.base_url


@dataclass(frozen=True)
class ServedFolder:
    """A folder served by a child process: its base URL and the process id (for CPU accounting)."""

    url: str
    pid: int


@contextmanager
def serve_folder_process(folder: Path) -> Iterator[ServedFolder]:
    """Serve `folder` as serve_faults does, from a child process: like a real image host, serving then
    costs the caller no GIL time, and its CPU can be measured apart (benches)."""
    command = [sys.executable, "-u", "-m", "devstack.kit.imageserver", str(folder)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline().strip() if server.stdout else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"the image server did not start: {line!r}")
        yield ServedFolder(line, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str]) -> None:
    """`python -m devstack.kit.imageserver FOLDER`: print the base URL, serve until terminated."""
    with serve_faults(Path(argv[0])) as server:
        print(server.base_url, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main(sys.argv[1:])
