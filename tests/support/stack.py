"""Find the real Elasticsearch and MySQL for integration tests: env vars, else testcontainers; and
stop, start or restart the local stack's services (devstack) for the outage tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from devstack import elasticsearch, mariadb, settings
from devstack.layout import es_url, wanted_nodes
from devstack.settings import REPO, SettingsError, pinned_versions

__all__ = [
    "NO_STACK_MESSAGE",
    "docker_available",
    "from_environment",
    "local_stack_serves",
    "pinned_versions",
    "restart",
    "run_stack",
    "secure_node_for_tests",
    "secure_node_stopped",
    "start_containers",
    "start_elasticsearch",
    "start_mariadb",
    "stop_elasticsearch",
    "stop_mariadb",
]

NO_STACK_MESSAGE = (
    "Integration tests need a real Elasticsearch and MySQL/MariaDB. Run `make test` (it runs "
    "`make stack-up` and exports ES_URL and MYSQL_URL), or export ES_URL and MYSQL_URL yourself, "
    "or install a Docker engine so testcontainers can start them."
)


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def from_environment() -> tuple[str, str] | None:
    es_url, mysql_url = os.environ.get("ES_URL"), os.environ.get("MYSQL_URL")
    return (es_url, mysql_url) if es_url and mysql_url else None


def start_containers():
    """Start Elasticsearch and MySQL with testcontainers; returns (es_url, mysql_url, stop)."""
    from testcontainers.elasticsearch import ElasticSearchContainer
    from testcontainers.mysql import MySqlContainer

    versions = pinned_versions()
    es = ElasticSearchContainer(
        f"docker.elastic.co/elasticsearch/elasticsearch:{versions['ES_VERSION']}", mem_limit="2g"
    ).with_env("xpack.security.enabled", "false")
    mysql = MySqlContainer(
        versions["MYSQL_IMAGE"], username="imgsearch", password="imgsearch", dbname="imgsearch"
    )
    es.start()
    mysql.start()
    es_url = es.get_url()
    host, port = mysql.get_container_host_ip(), mysql.get_exposed_port(3306)
    mysql_url = f"mysql://imgsearch:imgsearch@{host}:{port}/imgsearch"

    def stop() -> None:
        mysql.stop()
        es.stop()

    return es_url, mysql_url, stop


def local_stack_serves(es_url_value: str) -> bool:
    """True when ES_URL is the Elasticsearch of the local stack (devstack, with this process's
    environment: ports, ES_NODES, STACK_HOME), so tests may stop and restart it."""
    try:
        return es_url(wanted_nodes(settings.load())) == es_url_value
    except SettingsError:
        return False


def restart(service: str) -> None:
    """Restart one local service: 'es' or 'mariadb' (blocks until it answers again)."""
    if service not in ("es", "mariadb"):
        raise ValueError(f"unknown service {service!r}: 'es' or 'mariadb'")
    if service == "es":
        stop_elasticsearch()
        start_elasticsearch()
    else:
        mariadb.restart(local_mariadb())


def stop_elasticsearch() -> None:
    """Stop the local Elasticsearch, every node (blocks until the processes are gone)."""
    elasticsearch.down(settings.load())


def start_elasticsearch() -> None:
    """Start the local Elasticsearch again (blocks until it is healthy)."""
    elasticsearch.up(settings.load())


def local_mariadb() -> mariadb.MariaDB:
    return mariadb.MariaDB(settings.load().mysql_port)


def stop_mariadb() -> None:
    """Stop the local MariaDB (blocks until it no longer answers)."""
    mariadb.down(local_mariadb())


def start_mariadb() -> None:
    """Start the local MariaDB again (blocks until the app's login works)."""
    mariadb.up(local_mariadb())


def run_stack(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m devstack <command>` (what scripts/stack.sh runs) with this process's environment
    (ports, STACK_HOME); never raises for its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "devstack", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def secure_node_stopped() -> bool:
    """True only when `status-secure` says the security-on node is stopped (a node that answers, or
    whose process is still starting, counts as running)."""
    status = run_stack("status-secure", timeout=60)
    return status.returncode == 0 and status.stdout.strip().endswith(": stopped")


@contextmanager
def secure_node_for_tests() -> Iterator[subprocess.CompletedProcess]:
    """`up-secure` for the block, which gets its result to check. Afterwards a node that was stopped
    before is stopped again, also when starting it failed or the block raised; one that ran before is
    left running."""
    stopped_before = secure_node_stopped()
    try:
        yield run_stack("up-secure")
    finally:
        if stopped_before:
            run_stack("down-secure", timeout=180)
