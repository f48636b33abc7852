"""The plain Elasticsearch of the stack, one node or a cluster: up (reuse, replace, reshape), down.

`up` leaves the stack on ES_PORT in the shape asked (ES_NODES nodes of ES_VERSION): a node or cluster
of that version that answers is reused as it is, never restarted, and only its dead nodes are started
again; one of another version, or of another size, that this stack started is stopped first (its data
folders stay for when it comes back); one it did not start is left alone with a message. A node that
answers but whose version cannot be read (busy, slow) is never stopped on a doubt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack import distribution, host, java, probe
from devstack.host import StackError, log, read_pid
from devstack.layout import Node, cluster_sizes_on_disk, es_url, nodes_of, run_folder, wanted_nodes
from devstack.node import (
    Runtime,
    has_data,
    launch,
    launched,
    log_tail,
    render_config,
    stop_processes,
    wait_healthy,
    write_config_folder,
)
from devstack.settings import Settings

VERSION_TRIES = 3


@dataclass(frozen=True)
class Running:
    """Nodes of one shape on this port whose pid files name a live process."""

    nodes: tuple[Node, ...]
    pids: dict[Node, int]


def describe(count: int) -> str:
    return "one node" if count == 1 else f"a cluster of {count} nodes"


def shapes_on_disk(settings: Settings) -> list[int]:
    return [1, *cluster_sizes_on_disk(settings)]


def running_stacks(settings: Settings) -> list[Running]:
    """Every shape on this port with at least one live process that this stack started."""
    found = []
    for count in shapes_on_disk(settings):
        nodes = nodes_of(settings, count)
        pids = {node: pid for node in nodes if (pid := read_pid(node.pidfile)) is not None}
        if pids:
            found.append(Running(nodes, pids))
    return found


def stop(running: Running) -> None:
    """Stop the live nodes of a shape; the pid files of its dead nodes go too."""
    label = "Elasticsearch" if len(running.nodes) == 1 else "Elasticsearch node {}"
    stop_processes([(label.format(node.name), pid, node.pidfile) for node, pid in running.pids.items()])
    for node in running.nodes:
        node.pidfile.unlink(missing_ok=True)


def running_version(endpoint: probe.Endpoint) -> str | None:
    """The version of the node answering there; None when it cannot be read after three tries."""
    for attempt in range(VERSION_TRIES):
        found = probe.version(endpoint, timeout=10)
        if found:
            return found
        if attempt < VERSION_TRIES - 1:
            time.sleep(1)
    return None


def reshape(settings: Settings) -> None:
    """Stop our nodes of another size on this port (a cluster when one node is asked, and so on)."""
    for running in running_stacks(settings):
        if len(running.nodes) != settings.es_nodes:
            log(
                f"Elasticsearch runs as {describe(len(running.nodes))} on {running.nodes[0].url}; "
                f"bringing it to {describe(settings.es_nodes)}"
            )
            stop(running)


def nodes_to_start(settings: Settings, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    """The nodes `up` must start: none when what answers is reused or left alone, those that are down
    when it runs ES_VERSION, all of them once a node of another version that we started is stopped."""
    answering = next((node for node in nodes if probe.answers(node.endpoint)), None)
    if answering is None:
        return nodes
    running = running_version(answering.endpoint)
    if running is None:
        log(
            f"WARNING: Elasticsearch answers on {answering.url} but its version could not be read; "
            "leaving it running as it is"
        )
        return ()
    if running == settings.es_version:
        return nodes_down(nodes, running)
    ours = [running for running in running_stacks(settings) if running.nodes == nodes]
    if not ours:
        raise StackError(
            f"Elasticsearch {running} answers on {answering.url} and was not started by this script; "
            "stop it or set ES_PORT"
        )
    log(f"Elasticsearch {running} runs on {answering.url}; replacing it with {settings.es_version}")
    stop(ours[0])
    return nodes


def nodes_down(nodes: tuple[Node, ...], version: str) -> tuple[Node, ...]:
    """The nodes of a stack of the right version that do not answer. A cluster's node port that answers
    for another cluster (a node someone else started there) stops `up` instead of being counted in."""
    answering = [node for node in nodes if probe.answers(node.endpoint)]
    for node in answering if len(nodes) > 1 else ():
        name = probe.cluster_name(node.endpoint)
        if name not in (None, node.cluster):
            raise StackError(
                f"Elasticsearch of the cluster {name} answers on {node.url}, a port of this stack's "
                f"{node.cluster}; stop it or set ES_PORT"
            )
    down = tuple(node for node in nodes if node not in answering)
    if not down:
        log(f"reusing Elasticsearch already answering on {es_url(nodes)} (version {version})")
    return down


def up(settings: Settings) -> None:
    """Bring the plain Elasticsearch on ES_PORT to ES_NODES nodes of ES_VERSION, healthy."""
    reshape(settings)
    nodes = wanted_nodes(settings)
    starting = nodes_to_start(settings, nodes)
    if not starting:
        return
    runtime = prepare_runtime(settings)
    if len(nodes) == 1:
        adopt_folder(settings, settings.stack_home / "es-data", nodes[0].data, settings.port_tag)
    bootstrap = not any(has_data(node) for node in nodes)
    for node in starting:
        prepare_node(node, nodes, bootstrap, runtime)
    host.give_to(runtime.user, runtime.es_home, run_folder(settings), *owned_folders(starting))
    host.ensure_traversable(runtime.user, settings.stack_home)
    start_nodes(settings, starting, runtime)
    status = "yellow" if len(nodes) == 1 else "green"
    if not wait_healthy(nodes, status, settings.es_start_timeout):
        for node in starting:
            log_tail(node.logs, node.cluster)
        raise StackError(f"Elasticsearch did not become {status} on {es_url(nodes)}")
    pids = ", ".join(str(read_pid(node.pidfile) or "?") for node in nodes)
    version = probe.version(nodes[0].endpoint) or "?"
    log(f"Elasticsearch is up on {es_url(nodes)} (version {version}, {describe(len(nodes))}, pid {pids})")


def prepare_runtime(settings: Settings) -> Runtime:
    host.ensure_user(settings.es_user)
    settings.stack_home.mkdir(parents=True, exist_ok=True)
    es_home = distribution.ensure_unpacked(settings)
    java_home = java.choose_java(settings)
    vector = java.has_vector_module(java_home)
    if not vector:
        log(f"{java_home} lacks jdk.incubator.vector: its nodes run without it (no SIMD vector code)")
    return Runtime(es_home, java_home, vector, settings.es_user, settings.es_heap)


def prepare_node(node: Node, peers: tuple[Node, ...], bootstrap: bool, runtime: Runtime) -> None:
    for folder in (node.data, node.logs, node.pidfile.parent):
        folder.mkdir(parents=True, exist_ok=True)
    write_config_folder(node.conf, runtime, render_config(node, peers, bootstrap), runtime.heap)


def owned_folders(nodes: Sequence[Node]) -> list[Path]:
    return [folder for node in nodes for folder in (node.conf, node.data, node.logs)]


def start_nodes(settings: Settings, nodes: Sequence[Node], runtime: Runtime) -> None:
    """Launch every node at once (a cluster node's launcher waits for the others to form the cluster);
    a node whose process lives but does not answer yet is waited for, not started twice."""
    launchers = []
    for node in nodes:
        pid = read_pid(node.pidfile)
        if pid is not None:
            log(f"Elasticsearch pid {pid} ({node.name}) exists but does not answer yet; waiting")
            continue
        log(
            f"starting Elasticsearch {settings.es_version} {node.name} on {node.url} "
            f"(heap {runtime.heap}, java {runtime.java_home})"
        )
        binary = runtime.es_home / "bin" / "elasticsearch"
        launchers.append((node, launch(binary, node.conf, node.pidfile, node.logs, runtime)))
    failed = [node for node, launcher in launchers if not launched(launcher, settings.es_start_timeout)]
    for node in failed:
        log(f"Elasticsearch launcher of {node.name} failed")
        log_tail(node.logs, node.cluster)
    if failed:
        raise StackError(f"Elasticsearch did not start on {', '.join(node.url for node in failed)}")


def adopt_folder(settings: Settings, legacy: Path, new: Path, port_tag: str) -> None:
    """Earlier releases kept one data folder (`es-data`, `es-secure/data`), always written by the default
    version on the default port: that version takes it over."""
    default = not port_tag and settings.es_version == settings.default_version
    if default and legacy.is_dir() and not new.exists():
        log(f"moving the data folder {legacy} (of an earlier release of this script) to {new}")
        legacy.rename(new)


def down(settings: Settings) -> None:
    """Stop every node of this stack on ES_PORT, whatever its shape (tolerant if already stopped)."""
    running = running_stacks(settings)
    if running:
        for stack in running:
            stop(stack)
        return
    for count in shapes_on_disk(settings):
        for node in nodes_of(settings, count):
            node.pidfile.unlink(missing_ok=True)
    first = wanted_nodes(settings)[0]
    if probe.answers(first.endpoint):
        log(
            f"Elasticsearch answers on {first.url} but was not started by this script (no pid file); "
            "leaving it"
        )
    else:
        log("Elasticsearch is not running")
