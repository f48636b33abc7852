"""Throwaway bench catalogs: the indexer's environment, the rows, their removal, and option defaults."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.catalog")


def fill_defaults(
    args: argparse.Namespace, smoke: dict[str, Any], full: dict[str, Any]
) -> argparse.Namespace:
    """Options left unset take the --smoke or the full-size default."""
    for key, value in (smoke if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def catalog_environment(alias: str, table: str, base_url: str, weights: str, **extra: str) -> dict[str, str]:
    """The process environment plus a throwaway alias and table, photos on a local server, no replicas."""
    missing = [name for name in ("ES_URL", "MYSQL_URL") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f'{" and ".join(missing)} not set: run eval "$(bash scripts/stack.sh env)" first')
    return {
        **os.environ,
        "ES_INDEX": alias,
        "ES_NUMBER_OF_REPLICAS": "0",
        "MYSQL_TABLE": table,
        "IMAGE_BASE_URL": base_url,
        "VGG16_WEIGHTS": weights,
        **extra,
    }


def seed_catalog(env: dict[str, str], photos: list[Path]) -> None:
    """One row per photo (ids from 1), three photos per product."""
    from demo.catalog import CatalogEntry, load_catalog
    from indexer import load_mysql_config

    entries = [
        CatalogEntry(number, f"product-{(number - 1) // 3 + 1:04d}", path.name)
        for number, path in enumerate(photos, start=1)
    ]
    load_catalog(load_mysql_config(env), entries)


@contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C while cleaning up, so a second one cannot leave indices or a table behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def drop_catalog(env: dict[str, str]) -> dict[str, Any]:
    """Delete the alias's indices (versions, runs, state, any bench extra) by name and its table.

    Failures are logged and recorded in the returned dict, never raised: clean-up must not hide
    the measurement.
    """
    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client
    from indexer import connect, load_mysql_config

    alias, table = env["ES_INDEX"], env["MYSQL_TABLE"]
    done: dict[str, Any] = {}
    with shielded():
        try:
            es = make_client(load_elastic_config(env), max_retries=1)
            names = sorted(es.indices.get(index=f"{alias}-*", expand_wildcards="all").body)
            if names:
                es.indices.delete(index=",".join(names))
            done["deleted_indices"] = names
            done["left_over"] = sorted(es.indices.get(index=f"{alias}*", expand_wildcards="all").body)
        except Exception as exc:
            log.exception("could not delete the indices of %s", alias)
            done["index_error"] = str(exc)
        try:
            connection = connect(load_mysql_config(env))
            connection.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
            connection.close()
            done["dropped_table"] = table
        except Exception as exc:
            log.exception("could not drop the table %s", table)
            done["table_error"] = str(exc)
    return done
