"""Find the real Elasticsearch and MySQL for integration tests: env vars, else testcontainers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VERSIONS_FILE = Path(__file__).resolve().parents[2] / "scripts" / "versions.env"
NO_STACK_MESSAGE = (
    "Integration tests need a real Elasticsearch and MySQL/MariaDB. Run `make test` (it runs "
    "`make stack-up` and exports ES_URL and MYSQL_URL), or export ES_URL and MYSQL_URL yourself, "
    "or install a Docker engine so testcontainers can start them."
)


def pinned_versions() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip('"')
    return values


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


STACK_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stack.sh"


def local_stack_serves(es_url: str) -> bool:
    """True when ES_URL is the Elasticsearch that scripts/stack.sh started (so tests may restart it)."""
    if not STACK_SCRIPT.exists():
        return False
    env = subprocess.run(["bash", str(STACK_SCRIPT), "env"], capture_output=True, text=True, check=False)
    return f"ES_URL={es_url}" in env.stdout


def restart(service: str) -> None:
    """Restart one local service: 'es' or 'mariadb' (blocks until it answers again)."""
    subprocess.run(["bash", str(STACK_SCRIPT), f"restart-{service}"], check=True, timeout=300)


def stop_elasticsearch() -> None:
    """Stop the local Elasticsearch (blocks until its process is gone)."""
    subprocess.run(["bash", str(STACK_SCRIPT), "stop-es"], check=True, timeout=120)


def start_elasticsearch() -> None:
    """Start the local Elasticsearch again (blocks until it answers)."""
    subprocess.run(["bash", str(STACK_SCRIPT), "start-es"], check=True, timeout=300)


def run_stack(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`scripts/stack.sh <command>` with this process's environment (ports, STACK_HOME); never raises
    for its exit status."""
    return subprocess.run(
        ["bash", str(STACK_SCRIPT), command], capture_output=True, text=True, timeout=timeout, check=False
    )


def secure_node_stopped() -> bool:
    """True only when `stack.sh status-secure` says the security-on node is stopped (a node that
    answers, or whose process is still starting, counts as running)."""
    status = run_stack("status-secure", timeout=60)
    return status.returncode == 0 and status.stdout.strip().endswith(": stopped")


@contextmanager
def secure_node_for_tests() -> Iterator[subprocess.CompletedProcess]:
    """`stack.sh up-secure` for the block, which gets its result to check. Afterwards a node that was
    stopped before is stopped again, also when starting it failed or the block raised; one that ran
    before is left running."""
    stopped_before = secure_node_stopped()
    try:
        yield run_stack("up-secure")
    finally:
        if stopped_before:
            run_stack("down-secure", timeout=180)
