"""devstack's behaviour beside services that already run, with nothing real reached: Elasticsearch is
played by local HTTP servers on free ports, MariaDB by a fake command runner, nodes by `sleep`.
A node that is up and healthy is reused, never restarted; one of another version or shape that we
started is replaced; one we did not start is left alone; MariaDB is restarted only when it definitely
runs on another port; the secure node the tests start is stopped after them."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack import certs, elasticsearch, layout, mariadb, secure, settings, status
from devstack.host import StackError, read_pid
from devstack.settings import pinned_versions
from tests.support import stack as stack_support
from tests.support.stack import secure_node_for_tests

PINS = pinned_versions()


class FakeNode(ThreadingHTTPServer):
    """Answers the health and version probes like a node of `version` (None: version unreadable)."""

    def __init__(self, port: int, version: str | None, cluster: str = layout.MULTI_CLUSTER) -> None:
        self.version, self.cluster, self.paths = version, cluster, []
        super().__init__(("127.0.0.1", port), FakeHandler)


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeNode

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body: dict = {"status": "green", "timed_out": False}
        if self.path.startswith("/_nodes/_local?filter_path=cluster_name"):
            body = {"cluster_name": self.server.cluster}
        elif self.path.startswith("/_nodes/_local"):
            body = {"nodes": {"x": {"version": self.server.version}}} if self.server.version else {}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def free_base_port() -> int:
    """A port P with P, P+10 and P+20 free (a cluster of three)."""
    for base in range(30000, 40000, 37):
        try:
            for offset in (0, 10, 20):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


@contextmanager
def fake_nodes(ports: list[int], version: str | None) -> Iterator[list[FakeNode]]:
    servers = [FakeNode(port, version) for port in ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def live_process() -> Iterator[subprocess.Popen]:
    """A process standing in for a node: reaped as soon as it ends, killed after the test."""
    process = subprocess.Popen(["sleep", "120"])
    threading.Thread(target=process.wait, daemon=True).start()
    try:
        yield process
    finally:
        process.kill()


def write_pid(path: Path, process: subprocess.Popen) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(process.pid))


def gone(process: subprocess.Popen) -> bool:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return True


class Started(Exception):
    """Raised where `up` would start a node: these tests start nothing."""


def refuse_to_start(_: settings.Settings) -> None:
    raise Started()


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Settings on a throwaway STACK_HOME and free ports; starting a node raises Started; waits are
    instant; the started nodes are recorded by `starts` when a test lets starting go on."""
    port = free_base_port()
    monkeypatch.setattr(elasticsearch.time, "sleep", lambda _: None)
    monkeypatch.setattr(elasticsearch, "prepare_runtime", refuse_to_start)

    def make(**env: str) -> settings.Settings:
        values = {"HOME": str(tmp_path), "STACK_HOME": str(tmp_path / "stack"), "ES_PORT": str(port)}
        return settings.load({**values, "ES_TRANSPORT_PORT": str(port + 100), **env}, PINS)

    return make, port


@pytest.fixture
def starts(monkeypatch) -> list[str]:
    """Let `up` go through its start with nothing launched; the names of the nodes it would start."""
    started: list[str] = []
    runtime = elasticsearch.Runtime(Path("/es"), Path("/jdk"), True, "imgsearch", "512m")
    monkeypatch.setattr(elasticsearch, "prepare_runtime", lambda s: runtime)
    monkeypatch.setattr(elasticsearch, "prepare_node", lambda *args: None)
    monkeypatch.setattr(elasticsearch.host, "give_to", lambda *args: None)
    monkeypatch.setattr(elasticsearch.host, "ensure_traversable", lambda *args: None)
    monkeypatch.setattr(
        elasticsearch, "start_nodes", lambda s, nodes, r: started.extend(n.name for n in nodes)
    )
    monkeypatch.setattr(elasticsearch, "wait_healthy", lambda *args: True)
    return started


def test_a_node_that_is_up_and_healthy_is_reused(machine, capsys):
    make, port = machine
    found = make()
    with fake_nodes([port], PINS["ES_VERSION"]):
        elasticsearch.up(found)
    assert f"reusing Elasticsearch already answering on http://127.0.0.1:{port}" in capsys.readouterr().err
    assert not (found.stack_home / "es-run").exists()  # nothing was started


def test_a_node_whose_version_cannot_be_read_is_not_replaced(machine, capsys):
    """A busy node that answers health but not the version query within its timeout keeps running."""
    make, port = machine
    found = make()
    with fake_nodes([port], None) as (node,), live_process() as process:
        write_pid(layout.single_node(found).pidfile, process)
        elasticsearch.up(found)
        assert process.poll() is None, "up stopped a running node"
    assert "its version could not be read; leaving it running" in capsys.readouterr().err
    assert sum(path.startswith("/_nodes/_local?") for path in node.paths) == 3  # asked three times


def test_a_node_of_another_version_that_we_started_is_replaced(machine, capsys):
    make, port = machine
    found = make()
    pidfile = layout.single_node(found).pidfile
    with fake_nodes([port], PINS["ES9_VERSION"]), live_process() as process:
        write_pid(pidfile, process)
        with pytest.raises(Started):
            elasticsearch.up(found)
        assert gone(process) and not pidfile.exists()
    assert (
        f"runs on http://127.0.0.1:{port}; replacing it with {PINS['ES_VERSION']}" in capsys.readouterr().err
    )


def test_a_node_of_another_version_that_we_did_not_start_is_left_alone(machine):
    make, port = machine
    with fake_nodes([port], PINS["ES9_VERSION"]), pytest.raises(StackError, match="was not started by this"):
        elasticsearch.up(make())


def test_a_healthy_cluster_is_reused(machine, capsys):
    make, port = machine
    with fake_nodes([port, port + 10, port + 20], PINS["ES_VERSION"]):
        elasticsearch.up(make(ES_NODES="3"))
    assert f"reusing Elasticsearch already answering on http://127.0.0.1:{port}," in capsys.readouterr().err


def test_only_the_dead_node_of_a_cluster_is_started_again(machine, starts):
    make, port = machine
    with fake_nodes([port, port + 20], PINS["ES_VERSION"]):
        elasticsearch.up(make(ES_NODES="3"))
    assert starts == ["imgsearch-node-2"]


def test_a_node_of_another_cluster_on_a_cluster_port_stops_up(machine):
    """As when a node someone else started answers on ES_PORT+10: it is not counted in."""
    make, port = machine
    with (
        fake_nodes([port, port + 20], PINS["ES_VERSION"]),
        fake_nodes([port + 10], PINS["ES_VERSION"]) as (other,),
    ):
        other.cluster = layout.SINGLE_CLUSTER
        with pytest.raises(
            StackError, match=f"cluster imgsearch-local answers on http://127.0.0.1:{port + 10}"
        ):
            elasticsearch.up(make(ES_NODES="3"))


def test_a_cluster_asked_where_our_single_node_runs_replaces_it(machine, starts, capsys):
    make, _ = machine
    found = make(ES_NODES="3")
    with live_process() as process:
        write_pid(layout.single_node(found).pidfile, process)
        elasticsearch.up(found)
        assert gone(process)
    assert "runs as one node on" in capsys.readouterr().err
    assert starts == ["imgsearch-node-1", "imgsearch-node-2", "imgsearch-node-3"]


def test_one_node_asked_where_our_cluster_runs_stops_every_cluster_node(machine, starts):
    make, _ = machine
    cluster = layout.wanted_nodes(make(ES_NODES="3"))
    with live_process() as first, live_process() as third:
        write_pid(cluster[0].pidfile, first)
        write_pid(cluster[2].pidfile, third)
        cluster[1].pidfile.write_text("999999999")  # a node killed with -9 leaves its pid file behind
        elasticsearch.up(make())
        assert gone(first) and gone(third)
    assert not any(node.pidfile.exists() for node in cluster)
    assert starts == ["imgsearch-node-1"]


def test_down_stops_every_node_of_every_shape(machine, capsys):
    make, _ = machine
    found = make()
    nodes = [layout.single_node(found), *layout.nodes_of(found, 2)]
    with live_process() as a, live_process() as b, live_process() as c:
        for node, process in zip(nodes, (a, b, c), strict=True):
            write_pid(node.pidfile, process)
        elasticsearch.down(found)
        assert gone(a) and gone(b) and gone(c)
    assert not any(read_pid(node.pidfile) for node in nodes)
    elasticsearch.down(found)
    assert capsys.readouterr().err.endswith("Elasticsearch is not running\n")


def test_down_leaves_a_node_it_did_not_start(machine, capsys):
    make, port = machine
    with fake_nodes([port], PINS["ES_VERSION"]):
        elasticsearch.down(make())
    assert "was not started by this script (no pid file); leaving it" in capsys.readouterr().err


def test_status_of_a_cluster_node_comes_from_the_cluster_else_its_pid_file(machine):
    make, _ = machine
    second = layout.wanted_nodes(make(ES_NODES="3"))[1]
    info = {
        "name": "imgsearch-node-2",
        "version": "8.19.21",
        "roles": ["data", "master"],
        "process": {"id": 12},
    }
    line = status.node_line(second, info, master="imgsearch-node-2")
    assert line.endswith(": pid 12, version 8.19.21, role elected master, data")
    assert status.node_line(second, None, master=None).endswith(f"{second.url}: stopped")


# ------------------------------------------------------------------ MariaDB beside a running server


class FakeMariaDB:
    """The mariadb, mariadb-admin, service and tee commands, as one server's state and a call log."""

    def __init__(self, app_ok: bool = False, root_port: str = "3306") -> None:
        self.app_ok, self.stopped, self.root_port, self.calls = app_ok, False, root_port, []

    def run(self, argv, stdin=None) -> subprocess.CompletedProcess:
        argv = list(argv[2:] if argv[:2] == ["sudo", "-n"] else argv)
        self.calls.append(" ".join(argv))
        rc, out = self.answer(argv, stdin)
        return subprocess.CompletedProcess(argv, rc, out, "")

    def answer(self, argv: list[str], stdin: str | None) -> tuple[int, str]:
        command, text = Path(argv[0]).name, " ".join(argv)
        if command in ("mariadb-admin", "mysqladmin"):
            self.stopped = self.stopped or "shutdown" in argv
            return (1 if self.stopped and "ping" in argv else 0), ""
        if command == "service":
            self.stopped = argv[2] == "stop"
            return 0, ""
        if "--protocol=tcp" in argv:
            return (0 if self.app_ok else 1), ""
        if "SELECT @@port" in text:
            return (1, "") if self.stopped else (0, self.root_port)
        if "SELECT VERSION()" in text:
            return 0, "10.11-fake"
        if stdin:
            self.calls.append("setup-db")
            self.app_ok = True
        return 0, ""


RESTARTS = ("service mariadb stop", "shutdown", "service mariadb start")


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setattr(mariadb, "server_installed", lambda: True)
    monkeypatch.setattr(mariadb, "can_be_root", lambda: True)
    monkeypatch.setattr(mariadb.Apt, "install", lambda *p: pytest.fail(f"apt-get install {p}"))
    monkeypatch.setattr(mariadb, "first_command", lambda *names: names[0])
    monkeypatch.setattr(mariadb, "service_command", lambda: ["service", "mariadb"])

    def make(fake: FakeMariaDB) -> mariadb.MariaDB:
        return mariadb.MariaDB(3306, tmp_path / "60-imgsearch-stack.cnf", fake.run, lambda _: None)

    return make


def test_mariadb_that_is_up_and_healthy_is_reused(server, capsys):
    fake = FakeMariaDB(app_ok=True)
    mariadb.up(server(fake))
    assert "reusing running MariaDB (10.11-fake, port 3306)" in capsys.readouterr().err
    log = "\n".join(fake.calls)
    assert "setup-db" in log  # grants refreshed
    assert not any(call in log for call in (*RESTARTS, "tee ")), log


def test_mariadb_is_not_restarted_when_its_port_cannot_be_read(server):
    """Root reaches the server but the port query fails: set up the user, never restart."""
    fake = FakeMariaDB(root_port="")
    mariadb.up(server(fake))
    log = "\n".join(fake.calls)
    assert "setup-db" in log
    assert not any(call in log for call in RESTARTS), log


def test_mariadb_on_another_port_is_moved_to_mysql_port(server, capsys):
    """The one restart left: a MariaDB of this machine that definitely runs on another port."""
    fake = FakeMariaDB(root_port="3307")
    mariadb.up(server(fake))
    assert "MariaDB runs on port 3307, want 3306; restarting" in capsys.readouterr().err
    assert "service mariadb stop" in fake.calls and "service mariadb start" in fake.calls
    assert any(call.startswith("tee ") for call in fake.calls)  # the port is written to its config


def test_the_test_kit_stops_and_starts_the_local_mariadb(monkeypatch):
    seen = []
    monkeypatch.setenv("MYSQL_PORT", "3310")
    monkeypatch.setattr(mariadb, "down", lambda db: seen.append(("down", db.port)))
    monkeypatch.setattr(mariadb, "up", lambda db: seen.append(("up", db.port)))
    stack_support.stop_mariadb()
    stack_support.start_mariadb()
    assert seen == [("down", 3310), ("up", 3310)]


# ------------------------------------------------------------------ the secure node


def test_the_secure_node_env_has_the_fingerprints_of_its_certificates(tmp_path):
    found = settings.load(
        {"HOME": str(tmp_path), "STACK_HOME": str(tmp_path), "ES_SECURE_PORT": "9261"}, PINS
    )
    node = secure.secure_node(found)
    certs.ensure_certs(node.certs)
    lines = dict(line.removeprefix("export ").split("=", 1) for line in secure.env_lines(found))
    expected = subprocess.run(
        ["openssl", "x509", "-in", str(node.certs / "http-leaf.crt"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True,
    ).stdout.split("=", 1)[1].strip().replace(":", "").lower()  # fmt: skip
    assert lines["ES_SECURE_FINGERPRINT"] == expected
    assert lines["ES_SECURE_URL"] == "https://127.0.0.1:9261"
    assert lines["ES_SECURE_FILE_USERS"] == "'imgsearch_indexer imgsearch_api_read imgsearch_api_write'"


def test_a_rejected_password_is_given_up_only_after_thirty_seconds(monkeypatch):
    clock = iter([100.0, 100.0, 131.0])
    monkeypatch.setattr(secure.time, "monotonic", lambda: next(clock))
    assert secure.rejected_too_long('{"status":"green"}', 90.0) == (False, None)
    give_up, since = secure.rejected_too_long('{"type":"security_exception"}', None)
    assert (give_up, since) == (False, 100.0)
    assert secure.rejected_too_long('{"type":"security_exception"}', since)[0]


@pytest.fixture
def stack_calls(monkeypatch):
    """Commands given to the stack (faked): status-secure prints `status`, up-secure exits `up_rc`."""
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
    "status_text",
    [
        "elasticsearch (secure): running on https://127.0.0.1:9201 (version 8.19.21, pid 1)",
        "elasticsearch (secure): process 1 alive but not answering on https://127.0.0.1:9201 (starting?)",
    ],
)
def test_a_secure_node_that_ran_before_is_left_running(stack_calls, status_text):
    calls, state = stack_calls
    state["status"] = status_text
    with secure_node_for_tests():
        pass
    assert calls == ["status-secure", "up-secure"]
