"""The local stack for real (scripts/stack.sh -> python -m devstack), on ports and a STACK_HOME of its
own so the shared stack is never touched: one node started, reused, kept across a cluster; a cluster of
three that loses a node to kill -9 and gets it back with `up` (green, same documents); the way back to
one node, restart and stop; the security-on node up and down. ES_VERSION is the pass's (make test-es9
exports 9.x); everything started here is stopped and its folder removed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import layout, mariadb, probe, settings
from devstack.host import read_pid

pytestmark = [pytest.mark.integration]

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack.sh"
BASES = (9240, 9244, 9246, 9248)  # clear of 9200-9203 (shared stack, make test-es9) and of each other
DOCS = 20


def ports_free(base: int) -> bool:
    wanted = [base, base + 10, base + 20, base + 1, base + 100, base + 110, base + 120, base + 101]
    for port in wanted:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    """This module's stack: free ports, its own STACK_HOME; stopped and removed afterwards."""
    base = next((port for port in BASES if ports_free(port)), None)
    if base is None:
        pytest.fail(f"no free ports for the stack test among {BASES}")
    home = tempfile.mkdtemp(prefix="devstack-test-", dir="/tmp")
    values = {
        "STACK_HOME": home,
        "ES_VERSION": os.environ.get("ES_VERSION") or settings.pinned_versions()["ES_VERSION"],
        "ES_PORT": str(base),
        "ES_TRANSPORT_PORT": str(base + 100),
        "ES_SECURE_PORT": str(base + 1),
        "ES_SECURE_TRANSPORT_PORT": str(base + 101),
        "ES_START_TIMEOUT": "300",
        "ES_NODES": "1",
    }
    try:
        yield values
    finally:
        stack(values, "stop-es")
        stack(values, "down-secure")
        shutil.rmtree(home, ignore_errors=True)


def stack(env: dict[str, str], *args: str, **more: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK), *args],
        env={**os.environ, **env, **more},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    steps = [line for line in result.stderr.splitlines() if line.startswith("[stack] ")]
    assert result.returncode == 0, "\n".join(steps) + "\n" + result.stderr[-4000:]
    return result.stderr


def request(url: str, method: str = "GET", body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/x-ndjson" if isinstance(body, str) else "application/json"}
    if isinstance(body, str):
        data = body.encode()
    sent = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(sent, timeout=60) as answer:
        return json.loads(answer.read())


def nodes(env: dict[str, str], **more: str) -> tuple[layout.Node, ...]:
    return layout.wanted_nodes(settings.load({**os.environ, **env, **more}))


def pids(all_nodes: tuple[layout.Node, ...]) -> list[int | None]:
    return [read_pid(node.pidfile) for node in all_nodes]


def elected_master(status_text: str, cluster: tuple[layout.Node, ...]) -> layout.Node:
    line = next(line for line in status_text.splitlines() if "elected master" in line)
    return next(node for node in cluster if f" {node.url}: " in line)


def index_documents(url: str, index: str) -> None:
    request(f"{url}/{index}", "PUT", {"settings": {"number_of_shards": 3}})  # one replica: the default
    lines = "".join(f'{{"index":{{"_id":"{n}"}}}}\n{{"n":{n}}}\n' for n in range(DOCS))
    assert not request(f"{url}/{index}/_bulk?refresh=true", "POST", lines)["errors"]


def test_one_node_starts_and_is_then_reused(env):
    (single,) = nodes(env)
    ok(stack(env, "start-es"))
    first_pid = read_pid(single.pidfile)
    assert "reusing Elasticsearch already answering" in ok(stack(env, "start-es"))
    assert read_pid(single.pidfile) == first_pid is not None
    assert f"running on {single.url} (version {env['ES_VERSION']}" in stack(env, "status").stdout
    index_documents(single.url, "kept")


def test_a_cluster_of_three_gets_a_killed_node_back_with_up(env):
    cluster = nodes(env, ES_NODES="3")
    command = "up" if mariadb.MariaDB(3306).app_ping() else "start-es"  # MariaDB: its reuse path only
    log = ok(stack(env, command, ES_NODES="3"))
    assert "bringing it to a cluster of 3 nodes" in log
    assert stack(env, "env", ES_NODES="3").stdout.startswith(f"export ES_URL={layout.es_url(cluster)}\n")
    shown = stack(env, "status", ES_NODES="3").stdout
    assert shown.count(f"version {env['ES_VERSION']}, role ") == 3 and shown.count("elected master") == 1
    index_documents(cluster[0].url, "docs")
    assert request(f"{cluster[0].url}/_cluster/health?wait_for_status=green&timeout=60s")["status"] == "green"

    victim = elected_master(shown, cluster)  # the hardest node to lose
    before = pids(cluster)
    os.kill(read_pid(victim.pidfile), signal.SIGKILL)
    log = ok(stack(env, command, ES_NODES="3"))
    assert log.count("starting Elasticsearch") == 1 and f"{victim.name} on {victim.url}" in log
    after = pids(cluster)
    assert [a == b for a, b in zip(before, after, strict=True)] == [node != victim for node in cluster]
    survivor = next(node for node in cluster if node != victim)
    health = request(f"{survivor.url}/_cluster/health?wait_for_status=green&wait_for_nodes=3&timeout=90s")
    assert (health["status"], health["number_of_nodes"]) == ("green", 3)
    assert request(f"{victim.url}/docs/_count")["count"] == DOCS


def test_the_stack_returns_to_one_node_with_its_data_then_restarts_and_stops(env):
    cluster, (single,) = nodes(env, ES_NODES="3"), nodes(env)
    log = ok(stack(env, "start-es"))
    assert "runs as a cluster of 3 nodes" in log and "bringing it to one node" in log
    assert pids(cluster) == [None, None, None]
    assert request(f"{single.url}/kept/_count")["count"] == DOCS  # the single node's data folder stayed
    before = read_pid(single.pidfile)
    ok(stack(env, "restart-es"))
    assert read_pid(single.pidfile) not in (None, before)
    ok(stack(env, "stop-es"))
    assert read_pid(single.pidfile) is None
    assert stack(env, "status").stdout.startswith("elasticsearch: stopped\n")


def test_the_security_on_node_goes_up_and_down(env):
    ok(stack(env, "up-secure"))
    assert "analysis shim loaded" in stack(env, "status-secure").stdout
    lines = stack(env, "env-secure").stdout.splitlines()
    values = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    endpoint = probe.Endpoint(
        values["ES_SECURE_URL"], Path(values["ES_SECURE_CA_CERTS"]), "elastic", values["ES_SECURE_PASSWORD"]
    )
    assert probe.get_json(endpoint, "/_security/_authenticate", timeout=30)["username"] == "elastic"
    ok(stack(env, "down-secure"))
    assert stack(env, "status-secure").stdout.strip() == "elasticsearch (secure): stopped"
