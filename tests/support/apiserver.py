"""The search API under gunicorn with searchapi/gunicorn.conf.py, as a child process for tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def wait_ready(base_url: str, process: subprocess.Popen, log_path: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if get_json(base_url + "/ready", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"gunicorn not ready after {seconds}s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def gunicorn_api(env: dict[str, str], log_path: Path, **extra: str) -> Iterator[str]:
    """Start `gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'`; yield its base URL."""
    port = free_port()
    variables = {**os.environ, **env, **extra, "SEARCH_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "gunicorn", "-c", "searchapi/gunicorn.conf.py", "searchapi:create_app()"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, env=variables, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", process, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
