"""Where each plain node lives: name, ports, config, data, logs and pid file (pure, no I/O).

One node (ES_NODES=1, the default) keeps the names earlier releases used: data `es-data-<version>`,
logs `es-logs`, pid file `es-run/elasticsearch.pid`, each with `-<port>` appended off port 9200; its
config folder is `es-config[-<port>]`. A cluster of N nodes lives in `es-cluster-<N>[-<port>]/node-<k>/`
(config, logs, data-<version>) with pid files `es-run/elasticsearch[-<port>]-node<k>-of<N>.pid`.

Node k of a cluster listens on HTTP port ES_PORT + 10·(k-1) and transport port T + 10·(k-1), where T
is ES_TRANSPORT_PORT or ES_PORT + 100: a cluster of 3 on 9200 takes 9200/9210/9220 and
9300/9310/9320, clear of the secure node's 9201/9301 and make test-es9's 9202/9203/9302/9303 (whose own
clusters would take 9212/9222).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from devstack.probe import Endpoint
from devstack.settings import Settings, SettingsError

PORT_STEP = 10
SINGLE_CLUSTER = "imgsearch-local"
MULTI_CLUSTER = "imgsearch-cluster"


@dataclass(frozen=True)
class Node:
    """One plain Elasticsearch node of the stack."""

    name: str
    cluster: str
    http_port: int
    transport_port: int | None
    conf: Path
    data: Path
    logs: Path
    pidfile: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.url)

    @property
    def transport_address(self) -> str:
        return f"127.0.0.1:{self.transport_port}"


def run_folder(settings: Settings) -> Path:
    return settings.stack_home / "es-run"


def single_node(settings: Settings) -> Node:
    tag, home = settings.port_tag, settings.stack_home
    return Node(
        name="imgsearch-node-1",
        cluster=SINGLE_CLUSTER,
        http_port=settings.es_port,
        transport_port=settings.es_transport_port,
        conf=home / f"es-config{tag}",
        data=home / f"es-data-{settings.es_version}{tag}",
        logs=home / f"es-logs{tag}",
        pidfile=run_folder(settings) / f"elasticsearch{tag}.pid",
    )


def transport_base(settings: Settings) -> int:
    return settings.es_transport_port or settings.es_port + 100


def cluster_node(settings: Settings, index: int, count: int) -> Node:
    """Node `index` (1-based) of a cluster of `count` nodes."""
    tag = settings.port_tag
    root = settings.stack_home / f"es-cluster-{count}{tag}" / f"node-{index}"
    offset = PORT_STEP * (index - 1)
    return Node(
        name=f"imgsearch-node-{index}",
        cluster=MULTI_CLUSTER,
        http_port=settings.es_port + offset,
        transport_port=transport_base(settings) + offset,
        conf=root / "config",
        data=root / f"data-{settings.es_version}",
        logs=root / "logs",
        pidfile=run_folder(settings) / f"elasticsearch{tag}-node{index}-of{count}.pid",
    )


def nodes_of(settings: Settings, count: int) -> tuple[Node, ...]:
    """The nodes of a stack of `count` nodes on ES_PORT (one: the single node)."""
    if count == 1:
        return (single_node(settings),)
    highest = max(settings.es_port, transport_base(settings)) + PORT_STEP * (count - 1)
    if highest > 65535:
        raise SettingsError(f"ES_NODES={count} on ES_PORT={settings.es_port} needs ports above 65535")
    return tuple(cluster_node(settings, index, count) for index in range(1, count + 1))


def wanted_nodes(settings: Settings) -> tuple[Node, ...]:
    return nodes_of(settings, settings.es_nodes)


def es_url(nodes: tuple[Node, ...]) -> str:
    """ES_URL: every node, comma separated."""
    return ",".join(node.url for node in nodes)


def cluster_sizes_on_disk(settings: Settings) -> list[int]:
    """The cluster sizes that have pid files on this port (whether alive or not), largest first."""
    pattern = re.compile(rf"^elasticsearch{re.escape(settings.port_tag)}-node\d+-of(\d+)\.pid$")
    folder = run_folder(settings)
    if not folder.is_dir():
        return []
    sizes = {int(match.group(1)) for path in folder.iterdir() if (match := pattern.match(path.name))}
    return sorted(sizes, reverse=True)


def seed_hosts(nodes: tuple[Node, ...]) -> list[str]:
    return [node.transport_address for node in nodes]
