"""Operator commands `status` and `rollback`, the exit codes, and one-line reports of unusable services."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping

from elastic_transport import TransportError
from elasticsearch import ApiError

from imgsearch.config import ElasticConfig, load_elastic_config
from imgsearch.esclient import error_reason, failure_message, make_client
from imgsearch.settings import environ
from indexer.admin import RollbackImpossible, alias_status, rollback
from indexer.config import load_mysql_config
from indexer.source import CatalogSource

log = logging.getLogger("indexer")

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_CONFIG = 2
EXIT_VALIDATION = 3
EXIT_LOCKED = 4

ELASTICSEARCH_ERRORS = (TransportError, ApiError)
CLIENT_LOGGERS = ("elastic_transport",)
UNREACHABLE_ADVICE = "check ES_URL and that the cluster is up, then run again; nothing was changed"


def quiet_client_retries(level: str) -> None:
    """The client logs each of its own retries with a traceback; below DEBUG our one line says it all."""
    if level != "DEBUG":
        for name in CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def root_cause(exc: BaseException, depth: int = 8) -> BaseException:
    """The innermost error a client error wraps (e.g. ConnectionRefusedError), for a short message."""
    inner = exc.errors[0] if isinstance(exc, TransportError) and exc.errors else exc.__cause__
    if inner is None or depth == 0:
        return exc
    return root_cause(inner, depth - 1)


def describe_es_failure(exc: BaseException, url: str) -> str:
    """`Elasticsearch at URL is not reachable (connection refused)` or `... answered HTTP 503 (...)`."""
    if isinstance(exc, ApiError):
        return f"Elasticsearch at {url} answered HTTP {exc.meta.status} ({error_reason(exc)})"
    return f"Elasticsearch at {url} is not reachable ({str(root_cause(exc)) or type(exc).__name__})"


def elasticsearch_failed(exc: BaseException, config: ElasticConfig, advice: str = UNREACHABLE_ADVICE) -> int:
    """Log in one line why Elasticsearch could not be used: credentials/privileges/TLS (exit 2), or
    unreachable/unavailable (exit 1). The traceback only at --log-level DEBUG."""
    message = failure_message(exc, config)
    if message:
        log.error("%s", message)
    else:
        log.error("%s: %s", describe_es_failure(exc, config.url), advice)
    log.debug("the failed Elasticsearch request", exc_info=exc)
    return EXIT_CONFIG if message else EXIT_RUN_FAILED


def run_status(args: argparse.Namespace) -> int:
    """Print the alias state; exit 1 when Elasticsearch is unreachable."""
    env = environ()
    config = load_elastic_config(env)
    try:
        state = alias_status(make_client(config), config.alias)
    except ELASTICSEARCH_ERRORS as exc:
        return elasticsearch_failed(exc, config)
    state["catalog_rows"] = catalog_rows(env)
    if args.json:
        print(json.dumps(state, indent=2, default=str))
    else:
        print(format_status(state))
    return EXIT_OK


def catalog_rows(env: Mapping[str, str]) -> int | None:
    """Rows in the catalog table, or None when MYSQL_URL is not set or unreachable."""
    if not env.get("MYSQL_URL"):
        return None
    source = CatalogSource(load_mysql_config(env))
    try:
        return source.count()
    except Exception:  # noqa: BLE001 - status is informative; a DB outage must not hide the index state
        return None
    finally:
        source.close()


def format_status(state: dict) -> str:
    lines = [f"alias {state['alias']} -> {', '.join(state['live']) or '(not set)'}"]
    if state["catalog_rows"] is not None:
        lines.append(f"catalog rows: {state['catalog_rows']}")
    for version in state["versions"]:
        marker = "*" if version["live"] else " "
        model = version["model"] or {}
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(version["statuses"].items()))
        lines.append(
            f" {marker} {version['index']}  docs={version['documents']}  {statuses}  "
            f"model={model.get('weights')} {model.get('fingerprint')}"
        )
    for entry in state["state"]:
        details = {k: v for k, v in entry.items() if k not in ("id", "kind", "statuses", "done")}
        lines.append(f"state {entry['id']}: {details}")
    for run in state["last_runs"]:
        statuses = ", ".join(f"{k}={v}" for k, v in sorted((run.get("statuses") or {}).items())) or "-"
        lines.append(
            f"run {run['run_id']} {run['mode']} [{run.get('partition', '0/1')}] {run['outcome']} "
            f"{run['started_at']} -> {run.get('finished_at')}: {statuses}; "
            f"{run.get('images_per_second')} new vectors/s"
        )
    return "\n".join(lines)


def run_rollback(args: argparse.Namespace) -> int:
    """Point the alias at the previous (or --to) version; exit 1 when impossible or unreachable."""
    config = load_elastic_config(environ())
    try:
        current, previous = rollback(make_client(config), config.alias, args.to)
    except RollbackImpossible as exc:
        log.error("rollback impossible: %s", exc)
        return EXIT_RUN_FAILED
    except ELASTICSEARCH_ERRORS as exc:
        return elasticsearch_failed(exc, config)
    print(f"alias {config.alias}: {current} -> {previous}")
    return EXIT_OK
