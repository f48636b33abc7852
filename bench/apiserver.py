"""The search API under its production server (gunicorn + searchapi/gunicorn.conf.py) as a child process."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.machine import child_pids, process_seconds

log = logging.getLogger("bench.apiserver")

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "searchapi" / "gunicorn.conf.py"
APP = "searchapi:create_app()"
SETTLED_CORES = 0.2  # the server counts as warmed up once it uses less than this while idle


@dataclass(frozen=True)
class Layout:
    """gunicorn workers x threads (gthread workers)."""

    workers: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''} x {self.threads} threads"


@dataclass
class ApiServer:
    """A running gunicorn: where it listens, its master process and its log file."""

    host: str
    port: int
    layout: Layout
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def pids(self) -> list[int]:
        """The master and its current workers (for CPU accounting)."""
        return [self.process.pid, *child_pids(self.process.pid)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_environment(base: dict[str, str], layout: Layout, bind: str, work_dir: Path) -> dict[str, str]:
    """The API's variables on top of `base` (ES_URL, ES_INDEX, VGG16_*): bind and layout."""
    env = {**base, "SEARCH_BIND": bind, "SEARCH_WORKERS": str(layout.workers)}
    env["SEARCH_THREADS"] = str(layout.threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if layout.workers > 1:  # several processes share prometheus metrics through files
        metrics_dir = work_dir / f"prometheus-{layout.workers}x{layout.threads}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env


def health_ok(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def api_compute(server: ApiServer) -> dict[str, object]:
    """The `compute` block of GET /ready: the API's precision, compile mode and why."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", "/ready")
        return json.loads(connection.getresponse().read()).get("compute", {})
    finally:
        connection.close()


def server_cores(server: ApiServer, seconds: float) -> float:
    """Cores the server's processes used over the next `seconds`."""
    pids = server.pids()
    before = sum(process_seconds(pid) for pid in pids)
    time.sleep(seconds)
    return (sum(process_seconds(pid) for pid in pids) - before) / seconds


def wait_until_ready(server: ApiServer, timeout: float) -> None:
    """GET /health answers 200 and the workers have finished loading (their CPU use settled)."""
    deadline = time.monotonic() + timeout
    while not health_ok(server.host, server.port):
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not answer /health within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)
    while len(server.pids()) < server.layout.workers + 1 or server_cores(server, 2.0) > SETTLED_CORES:
        if time.monotonic() > deadline:
            log.warning("the API still busy after %.0f s; measuring anyway", timeout)
            return


def stop_server(server: ApiServer) -> None:
    """SIGTERM the master (graceful), SIGKILL if it does not exit within 40 s."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def start_server(env: dict[str, str], layout: Layout, work_dir: Path, timeout: float) -> ApiServer:
    host = "127.0.0.1"
    port = free_port(host)
    log_path = work_dir / f"gunicorn-{layout.workers}x{layout.threads}-{port}.log"
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=server_environment(env, layout, f"{host}:{port}", work_dir),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ApiServer(host, port, layout, process, log_path)
    try:
        wait_until_ready(server, timeout)
    except BaseException:
        stop_server(server)
        raise
    return server


@contextmanager
def running_api(
    env: dict[str, str],
    layout: Layout,
    work_dir: Path,
    timeout: float = 300.0,
    attempts: int = 3,
    retry_wait: float = 60.0,
) -> Iterator[ApiServer]:
    """gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()', ready, stopped afterwards.

    A start that fails (say a half-finished change in the working tree) is retried after
    `retry_wait` seconds, `attempts` times in all.
    """
    for attempt in range(1, attempts + 1):
        try:
            server = start_server(env, layout, work_dir, timeout)
            break
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"API start failed ({exc}); retrying in {retry_wait:.0f} s", file=sys.stderr)
            time.sleep(retry_wait)
    try:
        yield server
    finally:
        stop_server(server)
        log.debug("gunicorn log tail:\n%s", server.log_tail(10))
