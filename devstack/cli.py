"""`python -m devstack <command>` (and scripts/stack.sh): the local stack's commands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from devstack.settings import Settings, SettingsError, load

ENVIRONMENT = """environment (unset or empty: the default):
  ES_VERSION         8.x or 9.x (default: ES_VERSION of scripts/versions.env; ES9_VERSION there is the
                     9.x that make test also runs); data is kept per version
  ES_NODES           plain Elasticsearch nodes on ES_PORT (default 1); node k of a cluster listens on
                     ES_PORT+10*(k-1), transport ES_TRANSPORT_PORT (default ES_PORT+100)+10*(k-1)
  STACK_HOME         cache folder (default ~/.cache/imgsearch-stack)
  ES_PORT            HTTP port (default 9200)
  ES_TRANSPORT_PORT  transport port (one node: the first free from 9300 unless set)
  ES_HEAP            heap per node, -Xms and -Xmx (default 1g for one node, 512m per cluster node)
  ES_JAVA_HOME       Java for Elasticsearch: 17+ for 8.x, 21+ with the distribution's modules for 9.x
  ES_START_TIMEOUT   seconds to wait for health (default 120)
  ES_USER            user that runs Elasticsearch when invoked as root (default imgsearch)
  MYSQL_PORT         MariaDB TCP port on 127.0.0.1 (default 3306)
  MAVEN_REPO_LOCAL   Maven local repository (default ~/.m2/repository)
  ES_SECURE_PORT, ES_SECURE_TRANSPORT_PORT, ES_SECURE_HEAP  the secure node (defaults 9201, 9301, 512m)
  ES_SECURE_PASSWORD, ES_SECURE_USERS_PASSWORD  its `elastic` and file-realm passwords (local-only defaults)
"""


def cmd_up(settings: Settings) -> None:
    from devstack import elasticsearch
    from devstack.host import log

    started = time.monotonic()
    log(f"stack home: {settings.stack_home}")
    cmd_start_mariadb(settings)
    elasticsearch.up(settings)
    log(f'stack is up in {time.monotonic() - started:.0f}s; use: eval "$(scripts/stack.sh env)"')


def cmd_down(settings: Settings) -> None:
    cmd_stop_es(settings)
    cmd_stop_mariadb(settings)


def cmd_status(settings: Settings) -> None:
    from devstack import mariadb, status

    print("\n".join(status.lines(settings)))
    print(mariadb.status_line(mariadb.MariaDB(settings.mysql_port)))


def cmd_env(settings: Settings) -> None:
    from devstack.layout import es_url, wanted_nodes

    print(f"export ES_URL={es_url(wanted_nodes(settings))}")
    print(f"export MYSQL_URL={settings.mysql_url}")


def cmd_start_es(settings: Settings) -> None:
    from devstack import elasticsearch

    elasticsearch.up(settings)


def cmd_stop_es(settings: Settings) -> None:
    from devstack import elasticsearch

    elasticsearch.down(settings)


def cmd_restart_es(settings: Settings) -> None:
    cmd_stop_es(settings)
    cmd_start_es(settings)


def cmd_start_mariadb(settings: Settings) -> None:
    from devstack import mariadb

    mariadb.up(mariadb.MariaDB(settings.mysql_port))


def cmd_stop_mariadb(settings: Settings) -> None:
    from devstack import mariadb

    mariadb.down(mariadb.MariaDB(settings.mysql_port))


def cmd_restart_mariadb(settings: Settings) -> None:
    from devstack import mariadb

    mariadb.restart(mariadb.MariaDB(settings.mysql_port))


def cmd_up_secure(settings: Settings) -> None:
    from devstack import secure

    secure.up(settings)


def cmd_down_secure(settings: Settings) -> None:
    from devstack import secure

    secure.down(secure.secure_node(settings))


def cmd_status_secure(settings: Settings) -> None:
    from devstack import secure

    print(secure.status_line(settings))


def cmd_env_secure(settings: Settings) -> None:
    from devstack import secure

    print("\n".join(secure.env_lines(settings)))


COMMANDS: dict[str, tuple[Callable[[Settings], None], str]] = {
    "up": (
        cmd_up,
        "install what is missing, start MariaDB and Elasticsearch (ES_NODES nodes), wait until they "
        "answer; what is up and healthy is reused, never restarted",
    ),
    "down": (cmd_down, "stop Elasticsearch (every node) and MariaDB (tolerant if already stopped)"),
    "status": (cmd_status, "what runs: each node's address, pid, version and role; MariaDB"),
    "env": (cmd_env, "print `export ES_URL=...` (every node, comma separated) and `export MYSQL_URL=...`"),
    "restart-es": (cmd_restart_es, "stop, then start Elasticsearch"),
    "restart-mariadb": (cmd_restart_mariadb, "stop, then start MariaDB"),
    "stop-es": (cmd_stop_es, "stop every Elasticsearch node of this stack on ES_PORT"),
    "start-es": (cmd_start_es, "start Elasticsearch (as `up` does, without MariaDB)"),
    "stop-mariadb": (cmd_stop_mariadb, "stop MariaDB"),
    "start-mariadb": (cmd_start_mariadb, "start MariaDB (as `up` does, without Elasticsearch)"),
    "up-secure": (
        cmd_up_secure,
        "the security-on node: TLS on HTTP, `elastic` superuser, file-realm users, "
        "native users/roles/API keys (test-only analysis shim)",
    ),
    "down-secure": (cmd_down_secure, "stop the security-on node"),
    "status-secure": (cmd_status_secure, "whether the security-on node runs"),
    "env-secure": (cmd_env_secure, "print `export ES_SECURE_URL=...` (+ CA file, fingerprints, passwords)"),
}


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(
        prog="scripts/stack.sh",
        description="The local stack without Docker: Elasticsearch (the official integ-test zip, fetched "
        "by Maven coordinates; one node or a cluster) and MariaDB (Debian package); a second, "
        "security-on Elasticsearch for the security tests.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = built.add_subparsers(dest="command", metavar="command", required=True)
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, description=summary)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    from devstack.host import StackError

    arguments = parser().parse_args(argv)
    try:
        COMMANDS[arguments.command][0](load())
    except (SettingsError, StackError) as error:
        print(f"[stack] ERROR: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `status | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
