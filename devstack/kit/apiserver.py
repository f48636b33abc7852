"""The search API under gunicorn with searchapi/gunicorn.conf.py, as a child process for tests and benches."""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.kit.processes import child_pids, process_seconds

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "searchapi" / "gunicorn.conf.py"
SETTLED_CORES = 0.2  # a server using less than this while idle has finished loading


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, timeout: float = 10.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@dataclass(frozen=True)
class Layout:
    """gunicorn workers x threads (gthread workers)."""

    workers: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''} x {self.threads} threads"

    @classmethod
    def default(cls) -> Layout:
        """workers x threads as searchapi/gunicorn.conf.py sets them (the documented production layout)."""
        conf = runpy.run_path(str(GUNICORN_CONF))
        return cls(int(conf["workers"]), int(conf["threads"]))

    def environment(self, work_dir: Path) -> dict[str, str]:
        env = {"SEARCH_WORKERS": str(self.workers), "SEARCH_THREADS": str(self.threads)}
        if self.workers > 1:  # several processes share prometheus metrics through files
            metrics = work_dir / f"prometheus-{self.workers}x{self.threads}"
            metrics.mkdir(parents=True, exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        return env


@dataclass
class ApiServer:
    """A running gunicorn: where it listens, its master process, its log file and layout."""

    port: int
    process: subprocess.Popen
    log_path: Path
    layout: Layout | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def pids(self) -> list[int]:
        """The master and its current workers (for CPU accounting)."""
        return [self.process.pid, *child_pids(self.process.pid)]

    def cores(self, seconds: float) -> float:
        """Cores the server's processes use over the next `seconds`."""
        pids = self.pids()
        before = sum(process_seconds(pid) for pid in pids)
        time.sleep(seconds)
        return (sum(process_seconds(pid) for pid in pids) - before) / seconds

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the master (graceful), SIGKILL if it does not exit within 40 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def wait_ready(server: ApiServer, path: str, seconds: float, settle: bool) -> None:
    """GET `path` answers 200; with `settle`, the workers have also finished loading (CPU use settled)."""
    deadline = time.monotonic() + seconds
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if get_json(server.url + path, timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn: no 200 from {path} after {seconds:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)
    workers = server.layout.workers if server.layout else 1
    while settle and (len(server.pids()) < workers + 1 or server.cores(2.0) > SETTLED_CORES):
        if time.monotonic() > deadline:
            print(f"the API still busy after {seconds:.0f} s; going on", file=sys.stderr)
            return


def start_api(
    env: dict[str, str],
    log_path: Path,
    layout: Layout | None = None,
    *,
    path: str = "/ready",
    settle: bool = False,
    timeout: float = 180.0,
) -> ApiServer:
    """`gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'` on a free port with `env`, ready."""
    port = free_port()
    variables = {**env, "SEARCH_BIND": f"127.0.0.1:{port}"}
    variables |= layout.environment(log_path.parent) if layout else {}
    variables.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "searchapi:create_app()"]
    with log_path.open("wb") as log_file:
        output = {"stdout": log_file, "stderr": subprocess.STDOUT}
        process = subprocess.Popen(command, cwd=REPO, env=variables, start_new_session=True, **output)
    server = ApiServer(port, process, log_path, layout)
    try:
        wait_ready(server, path, timeout, settle)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_api(
    env: dict[str, str], work_dir: Path, layout: Layout, timeout: float = 300.0, attempts: int = 3
) -> Iterator[ApiServer]:
    """The API in `layout`, answering /health with its CPU use settled, stopped afterwards (benches).

    A start that fails (say a half-finished change in the working tree) is retried a minute later."""
    for attempt in range(1, attempts + 1):
        log_path = work_dir / f"gunicorn-{layout.workers}x{layout.threads}-{attempt}.log"
        try:
            server = start_api(env, log_path, layout, path="/health", settle=True, timeout=timeout)
            break
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"API start failed ({exc}); retrying in 60 s", file=sys.stderr)
            time.sleep(60)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def gunicorn_api(env: dict[str, str], log_path: Path, **extra: str) -> Iterator[str]:
    """The API with os.environ + `env` + `extra`, answering /ready; yields its base URL (tests)."""
    server = start_api({**os.environ, **env, **extra, "PYTHONPATH": str(REPO)}, log_path)
    try:
        yield server.url
    finally:
        server.stop()
