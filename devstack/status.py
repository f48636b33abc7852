"""What the plain Elasticsearch runs: one line per node or cluster, and per cluster node its address,
pid, version and role (elected master, master-eligible, data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devstack import probe
from devstack.elasticsearch import describe, running_stacks
from devstack.host import read_pid
from devstack.layout import Node, es_url, wanted_nodes
from devstack.settings import Settings

NODES_INFO = (
    "/_nodes/http,process?filter_path=nodes.*.name,nodes.*.version,nodes.*.roles,"
    "nodes.*.http.publish_address,nodes.*.process.id"
)
MASTER = "/_nodes/_master?filter_path=nodes.*.name"


def single_line(settings: Settings, node: Node) -> str:
    """The single node, as earlier releases printed it."""
    pid = read_pid(node.pidfile)
    if probe.answers(node.endpoint):
        version = probe.version(node.endpoint) or "?"
        health = probe.health(node.endpoint) or "?"
        if pid is None:
            return (
                f"elasticsearch: answering on {node.url} (version {version}, health {health}, "
                "not started by this script)"
            )
        return (
            f"elasticsearch: running on {node.url} (version {version}, health {health}, pid {pid}; "
            f"default {settings.default_version}, tested also {settings.es9_version})"
        )
    if pid is not None:
        return f"elasticsearch: process {pid} alive but not answering on {node.url} (starting?)"
    return "elasticsearch: stopped"


def role_text(roles: list[str], elected: bool) -> str:
    parts = []
    if "master" in roles:
        parts.append("elected master" if elected else "master-eligible")
    if "data" in roles or any(role.startswith("data_") for role in roles):
        parts.append("data")
    return ", ".join(parts) or "coordinating only"


def node_line(node: Node, info: Mapping[str, Any] | None, master: str | None) -> str:
    """One cluster node: from the cluster's node info when it has joined, else from its pid file."""
    head = f"  {node.name} {node.url}"
    if info is not None:
        pid = info.get("process", {}).get("id", "?")
        roles = role_text(info.get("roles", []), info.get("name") == master)
        return f"{head}: pid {pid}, version {info.get('version', '?')}, role {roles}"
    pid = read_pid(node.pidfile)
    if pid is not None:
        return f"{head}: pid {pid} alive but not in the cluster (starting?)"
    return f"{head}: stopped"


def cluster_view(nodes: tuple[Node, ...]) -> tuple[dict[str, Any], str | None, str | None]:
    """(node info by http port, elected master's name, health) from the first node that answers."""
    for node in nodes:
        info = probe.get_json(node.endpoint, NODES_INFO, timeout=5)
        if not isinstance(info, dict):
            continue
        by_port = {}
        for entry in info.get("nodes", {}).values():
            address = entry.get("http", {}).get("publish_address", "")
            by_port[address.rsplit(":", 1)[-1]] = entry
        master = probe.get_json(node.endpoint, MASTER, timeout=5) or {}
        names = [entry.get("name") for entry in master.get("nodes", {}).values()]
        return by_port, (names[0] if names else None), probe.health(node.endpoint)
    return {}, None, None


def cluster_lines(nodes: tuple[Node, ...]) -> list[str]:
    by_port, master, health = cluster_view(nodes)
    versions = sorted({entry.get("version", "?") for entry in by_port.values()}) or ["?"]
    head = (
        f"elasticsearch: {describe(len(nodes))} on {es_url(nodes)} "
        f"(version {', '.join(versions)}, health {health or '?'}, {len(by_port)} joined)"
    )
    return [head, *(node_line(node, by_port.get(str(node.http_port)), master) for node in nodes)]


def lines(settings: Settings) -> list[str]:
    """Every shape of ours that runs on ES_PORT, else the shape ES_NODES asks for."""
    running = [stack.nodes for stack in running_stacks(settings)]
    found = []
    for nodes in running or [wanted_nodes(settings)]:
        if len(nodes) == 1:
            found.append(single_line(settings, nodes[0]))
        elif running or any(probe.answers(node.endpoint) for node in nodes):
            found.extend(cluster_lines(nodes))
        else:
            found.append("elasticsearch: stopped")
    return found
