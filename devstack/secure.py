"""The second, security-on node for the security tests: TLS on HTTP, `elastic` superuser, file realm.

Same unpacked distribution as the plain node, with its own config folder (ES_PATH_CONF), data, logs,
pid file and ports. It runs from its own home: bin, lib and modules are symlinks into the distribution,
plugins is its own folder holding the analysis shim. bin/elasticsearch derives ES_HOME from its own
path (`cd bin; pwd`, which keeps the symlinked name), so this node loads its own plugins while the
plain nodes keep loading the distribution's empty plugins folder. The `elastic` password is the
keystore's bootstrap.password; file-realm users take their roles from roles.yml and users_roles in its
config folder, which the tests write (Elasticsearch reloads both within seconds).
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import host, probe, shim
from devstack.certs import ensure_certs, fingerprint
from devstack.elasticsearch import adopt_folder, prepare_runtime
from devstack.host import StackError, log, read_pid, run
from devstack.node import (
    Runtime,
    launch,
    launched,
    log_tail,
    stop_processes,
    write_config_folder,
)
from devstack.settings import Settings

CLUSTER = "imgsearch-secure"
FILE_USERS = ("imgsearch_indexer", "imgsearch_api_read", "imgsearch_api_write")
REJECTION_SECONDS = 30


@dataclass(frozen=True)
class SecureNode:
    """The secure node's folders (per port off 9201; data per version) and how to reach it."""

    root: Path
    version: str
    endpoint: probe.Endpoint

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def conf(self) -> Path:
        return self.root / "config"

    @property
    def certs(self) -> Path:
        return self.conf / "certs"

    @property
    def data(self) -> Path:
        return self.root / f"data-{self.version}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "elasticsearch.pid"


def secure_node(settings: Settings) -> SecureNode:
    root = settings.stack_home / f"es-secure{settings.secure.port_tag}"
    cafile = root / "config" / "certs" / "ca.crt"
    endpoint = probe.Endpoint(settings.secure.url, cafile, "elastic", settings.secure.password)
    return SecureNode(root, settings.es_version, endpoint)


def render_config(settings: Settings, node: SecureNode) -> str:
    secure = settings.secure
    return f"""# Written by devstack (scripts/stack.sh up-secure) - local security-test node, do not expose.
cluster.name: {CLUSTER}
node.name: imgsearch-secure-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: {secure.port}
transport.port: {secure.transport_port}
path.data: {node.data}
path.logs: {node.logs}
xpack.security.enabled: true
xpack.security.authc.api_key.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: certs/http.key
xpack.security.http.ssl.certificate: certs/http.crt
# One node: the transport layer only listens on 127.0.0.1 and joins nobody.
xpack.security.transport.ssl.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
"""


def answers(node: SecureNode) -> bool:
    return (node.certs / "ca.crt").is_file() and probe.answers(node.endpoint)


def plugins(node: SecureNode) -> str | None:
    """The running node's plugin descriptions (None when they cannot be read)."""
    answer = probe.fetch(node.endpoint, "/_nodes/_local/plugins?filter_path=nodes.*.plugins.description", 10)
    return answer[1] if answer is not None and 200 <= answer[0] < 300 else None


def lists_shim(plugin_descriptions: str, source_hash: str = "") -> bool:
    """The node's plugin descriptions name the analysis shim (of that source build, when given)."""
    return f"analysis shim, source {source_hash}" in plugin_descriptions


def shim_loaded(node: SecureNode, source_hash: str = "") -> bool:
    text = plugins(node)
    return text is not None and lists_shim(text, source_hash)


def ensure_home(node: SecureNode, es_home: Path, built: shim.Shim) -> None:
    """Symlinks to the distribution's bin, lib and modules; its own plugins folder with the shim only."""
    node.home.mkdir(parents=True, exist_ok=True)
    for name in ("bin", "lib", "modules"):
        link = node.home / name
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        link.unlink(missing_ok=True)
        link.symlink_to(es_home / name)
    shutil.rmtree(node.home / "plugins", ignore_errors=True)
    (node.home / "plugins").mkdir()
    shutil.copytree(built.folder, node.home / "plugins" / shim.NAME)


def es_tool(runtime: Runtime, node: SecureNode, tool: str, *args: str, stdin: str | None = None) -> None:
    """One of the distribution's CLI tools on this node's config folder, as the Elasticsearch user."""
    environment = [f"ES_JAVA_HOME={runtime.java_home}", f"ES_PATH_CONF={node.conf}"]
    command = host.as_user(runtime.user, ["env", *environment, str(runtime.es_home / "bin" / tool), *args])
    done = run(command, input=stdin, capture_output=True)
    if done.returncode != 0:
        raise StackError(f"{tool} {' '.join(args[:1])} failed: {done.stderr.strip() or done.stdout.strip()}")


def write_keystore(settings: Settings, runtime: Runtime, node: SecureNode) -> None:
    """A fresh keystore holding bootstrap.password: `elastic`'s password until changed by API."""
    (node.conf / "elasticsearch.keystore").unlink(missing_ok=True)
    es_tool(runtime, node, "elasticsearch-keystore", "create")
    password = settings.secure.password
    es_tool(runtime, node, "elasticsearch-keystore", "add", "-x", "-f", "bootstrap.password", stdin=password)


def ensure_file_users(settings: Settings, runtime: Runtime, node: SecureNode) -> None:
    users = node.conf / "users"
    known = {line.split(":")[0] for line in users.read_text().splitlines()} if users.is_file() else set()
    for user in FILE_USERS:
        action = "passwd" if user in known else "useradd"
        es_tool(runtime, node, "elasticsearch-users", action, user, "-p", settings.secure.users_password)


def configure(settings: Settings, runtime: Runtime, node: SecureNode, built: shim.Shim) -> None:
    """Certificates, config folder, home, ownership, keystore and file users, before a start."""
    ensure_certs(node.certs)
    write_config_folder(node.conf, runtime, render_config(settings, node), settings.secure.heap)
    for name in ("users", "users_roles", "roles.yml"):
        (node.conf / name).touch()
    ensure_home(node, runtime.es_home, built)
    host.give_to(runtime.user, runtime.es_home, node.root)
    host.ensure_traversable(runtime.user, settings.stack_home)
    write_keystore(settings, runtime, node)
    ensure_file_users(settings, runtime, node)


def rejected_too_long(body: str, since: float | None) -> tuple[bool, float | None]:
    """Right after .security is created its shard is briefly unavailable and the reserved realm rejects
    `elastic`; a rejection that lasts 30 s is a wrong password. Returns (give up, rejected since)."""
    if "security_exception" not in body:
        return False, None
    since = since if since is not None else time.monotonic()
    return time.monotonic() - since >= REJECTION_SECONDS, since


def wait_healthy(node: SecureNode, timeout: int) -> bool:
    deadline, rejected_since = time.monotonic() + timeout, None
    while True:
        answer = probe.fetch(node.endpoint, "/_cluster/health?wait_for_status=yellow&timeout=5s", 10)
        body = answer[1] if answer else ""
        if '"timed_out":false' in body:
            return True
        give_up, rejected_since = rejected_too_long(body, rejected_since)
        if give_up:
            log(f"the secure node answers but rejects elastic:$ES_SECURE_PASSWORD: {body}")
            return False
        if read_pid(node.pidfile) is None:
            time.sleep(2)
            if read_pid(node.pidfile) is None and not answers(node):
                log("secure Elasticsearch process is not running")
                return False
        if time.monotonic() > deadline:
            log(f"timed out after {timeout}s")
            return False
        time.sleep(2)


def reuse_or_replace(node: SecureNode, built: shim.Shim) -> bool:
    """True when a node answering there is reused or left alone; one of ours without the current shim
    (of another version or source) is stopped."""
    if not answers(node):
        return False
    text = plugins(node)
    if text is None:
        url = node.endpoint.url
        log(f"WARNING: the secure node answers on {url} but its plugins could not be read; leaving it as is")
        return True
    if lists_shim(text, built.source_hash):
        url, digest = node.endpoint.url, built.source_hash
        log(f"reusing secure Elasticsearch already answering on {url} (analysis shim {digest} loaded)")
        return True
    if read_pid(node.pidfile) is None:
        raise StackError(
            f"a secure Elasticsearch answers on {node.endpoint.url} without the analysis shim "
            f"{built.source_hash} and was not started by this script; stop it"
        )
    version = probe.version(node.endpoint) or "?"
    log(
        f"the secure node ({version}) runs without the current analysis shim "
        f"({built.source_hash}, {node.version}); restarting it"
    )
    down(node)
    return False


def up(settings: Settings) -> None:
    """Start (or reuse) the secure node and wait until `elastic` gets a yellow cluster."""
    node = secure_node(settings)
    runtime = prepare_runtime(settings)
    built = shim.build(settings, runtime.java_home)
    if reuse_or_replace(node, built):
        return
    adopt_folder(settings, node.root / "data", node.data, settings.secure.port_tag)
    for folder in (node.data, node.logs, node.pidfile.parent):
        folder.mkdir(parents=True, exist_ok=True)
    pid = read_pid(node.pidfile)
    if pid is not None:
        log(f"secure Elasticsearch pid {pid} exists but does not answer yet; waiting")
    else:
        configure(settings, runtime, node, built)
        log(
            f"starting secure Elasticsearch {settings.es_version} on {node.endpoint.url} (transport "
            f"{settings.secure.transport_port}, heap {settings.secure.heap}, home {node.home}, "
            f"analysis shim {built.source_hash})"
        )
        launcher = launch(node.home / "bin" / "elasticsearch", node.conf, node.pidfile, node.logs, runtime)
        if not launched(launcher, settings.es_start_timeout):
            log("secure Elasticsearch launcher failed")
            log_tail(node.logs, CLUSTER)
            raise StackError("secure Elasticsearch launcher failed")
    if not wait_healthy(node, settings.es_start_timeout):
        log_tail(node.logs, CLUSTER)
        raise StackError(f"secure Elasticsearch did not become healthy on {node.endpoint.url}")
    if not shim_loaded(node, built.source_hash):
        raise StackError(f"the secure node did not load the analysis shim {built.source_hash} ({node.logs})")
    shown, url = read_pid(node.pidfile) or "?", node.endpoint.url
    log(f'secure Elasticsearch is up on {url} (pid {shown}); use: eval "$(scripts/stack.sh env-secure)"')


def down(node: SecureNode) -> None:
    pid = read_pid(node.pidfile)
    if pid is None:
        node.pidfile.unlink(missing_ok=True)
        log("secure Elasticsearch is not running")
        return
    stop_processes([("secure Elasticsearch", pid, node.pidfile)])


def status_line(settings: Settings) -> str:
    node = secure_node(settings)
    pid = read_pid(node.pidfile)
    if answers(node):
        loaded = "analysis shim loaded" if shim_loaded(node) else "analysis shim NOT loaded"
        version = probe.version(node.endpoint, timeout=5) or "?"
        return (
            f"elasticsearch (secure): running on {node.endpoint.url} "
            f"(version {version}, pid {pid or '?'}, {loaded})"
        )
    if pid is not None:
        url = node.endpoint.url
        return f"elasticsearch (secure): process {pid} alive but not answering on {url} (starting?)"
    return "elasticsearch (secure): stopped"


def env_lines(settings: Settings) -> list[str]:
    """`export ES_SECURE_*=...` lines: URL, CA file and fingerprints, passwords, config folder."""
    node = secure_node(settings)
    values = {"ES_SECURE_URL": node.endpoint.url, "ES_SECURE_CA_CERTS": str(node.certs / "ca.crt")}
    if (node.certs / "http-leaf.crt").is_file() and (node.certs / "ca.crt").is_file():
        values["ES_SECURE_FINGERPRINT"] = fingerprint(node.certs / "http-leaf.crt")
        values["ES_SECURE_CA_FINGERPRINT"] = fingerprint(node.certs / "ca.crt")
    values |= {
        "ES_SECURE_USERNAME": "elastic",
        "ES_SECURE_PASSWORD": settings.secure.password,
        "ES_SECURE_CONFIG_DIR": str(node.conf),
        "ES_SECURE_FILE_USERS": " ".join(FILE_USERS),
        "ES_SECURE_USERS_PASSWORD": settings.secure.users_password,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
