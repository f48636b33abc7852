"""`python -m indexer` with Elasticsearch down: one clear line and exit 1; tracebacks only when debugging."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.stop import Interrupted, StopToken, stop_on_signals

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_indexer(*args: str, mysql: bool = False) -> tuple[subprocess.CompletedProcess, str]:
    url = f"http://127.0.0.1:{closed_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ES_", "MYSQL_"))}
    env |= {"ES_URL": url, "PYTHONPATH": str(REPO), "VGG16_WEIGHTS": "random"}
    if mysql:
        env["MYSQL_URL"] = f"mysql://user:secret@127.0.0.1:{closed_port()}/catalog"
    command = [sys.executable, "-m", "indexer", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120), url


@pytest.mark.parametrize(
    ("args", "mysql"),
    [(["status"], False), (["status", "--json"], True), (["rollback"], False), (["full"], True)],
)
def test_elasticsearch_down_is_one_clear_line_without_traceback(args, mysql):
    result, url = run_indexer(*args, mysql=mysql)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) <= 2, result.stderr
    assert f"Elasticsearch at {url} is not reachable (" in lines[-1]
    assert "check ES_URL" in lines[-1] and result.stdout == ""


def test_debug_logging_shows_the_traceback():
    result, url = run_indexer("--log-level", "DEBUG", "status")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and f"Elasticsearch at {url} is not reachable (" in result.stderr


def test_a_stop_token_raises_interrupted_naming_who_asked():
    token = StopToken()
    token.check()
    token.request("SIGTERM")
    assert token.requested
    with pytest.raises(Interrupted, match="SIGTERM"):
        token.check()


def test_sigterm_sets_the_token_once_then_the_default_action_is_back():
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    token = StopToken()
    try:
        stop_on_signals(token)
        os.kill(os.getpid(), signal.SIGTERM)
        assert token.requested and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
