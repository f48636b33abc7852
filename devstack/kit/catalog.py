"""The environment of an indexer/API run against a throwaway table and alias, and its removal."""

from __future__ import annotations

import logging
import re
import signal
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

TEST_SEED = 1234
SCRATCH_TABLE = re.compile(r"[a-z_]+_[0-9a-f]{10}")  # images_<hex>, <prefix>_<hex>: tables tests make


def stack_environment(es_url: str, mysql_url: str, alias: str, table: str, **extra: str) -> dict[str, str]:
    """Elasticsearch and MySQL variables of a run on a throwaway alias and table, no replicas."""
    return {
        "ES_URL": es_url,
        "ES_INDEX": alias,
        "ES_NUMBER_OF_REPLICAS": "0",
        "MYSQL_URL": mysql_url,
        "MYSQL_TABLE": table,
        **extra,
    }


def quick_run_variables(report_dir: str) -> dict[str, str]:
    """What a test run sets besides the stack: random seeded weights, quick checkpoints, its report folder."""
    return {
        "VGG16_WEIGHTS": "random",
        "VGG16_SEED": str(TEST_SEED),
        "INDEXER_REPORT_DIR": report_dir,
        "INDEXER_CHANGE_LAG_SECONDS": "1",
        "INDEXER_CHECKPOINT_SECONDS": "1",
    }


def catalog_environment(es_url: str, mysql_url: str, alias: str, report_dir: str) -> dict[str, str]:
    """Variables for a run on a fresh `images_<random>` table, random seeded weights, no replicas."""
    table = f"images_{uuid.uuid4().hex[:10]}"
    return stack_environment(es_url, mysql_url, alias, table, **quick_run_variables(report_dir))


def product_of(row_id: int) -> str:
    """The product of catalog row `row_id` when every product has three rows."""
    return f"product-{(row_id - 1) // 3 + 1:04d}"


@contextmanager
def throwaway_catalog(
    base: Mapping[str, str], prefix: str, rows: Iterable, cleanup: dict | None = None
) -> Iterator[dict[str, str]]:
    """`base` (ES_URL, MYSQL_URL and any other variables) on a fresh alias `<prefix>-<random>` and table
    of the same name, no replicas, the table filled with `rows` (CatalogEntry or (id, relation_id,
    photo)); every index of the alias and the table dropped afterwards (what was, into `cleanup`)."""
    from demo.catalog import CatalogEntry, load_catalog
    from indexer import load_mysql_config

    name = uuid.uuid4().hex[:10]
    alias, table = f"{prefix}-{name}", f"{prefix.replace('-', '_')}_{name}"
    env = {**base, **stack_environment(base["ES_URL"], base["MYSQL_URL"], alias, table)}
    entries = [row if isinstance(row, CatalogEntry) else CatalogEntry(*row) for row in rows]
    try:
        load_catalog(load_mysql_config(env), entries)
        yield env
    finally:
        (cleanup if cleanup is not None else {}).update(drop_catalog(env))


def drop_catalog(env: dict[str, str]) -> dict[str, Any]:
    """Delete every index of the alias (versions, runs, state, extras) and the table, Ctrl-C ignored
    meanwhile; failures are logged and recorded in the returned dict, never raised."""
    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client

    alias, table = env["ES_INDEX"], env["MYSQL_TABLE"]
    done: dict[str, Any] = {}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        with mysql_cursor(env) as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
        done["dropped_table"] = table
    except Exception as exc:
        log.exception("could not drop the table %s", table)
        done["table_error"] = str(exc)
    finally:
        signal.signal(signal.SIGINT, previous)
    return done


@contextmanager
def mysql_cursor(env: Mapping[str, str]) -> Iterator[Any]:
    """A cursor on one connection to the database of env's MYSQL_* variables, closed afterwards."""
    from indexer import connect, load_mysql_config

    connection = connect(load_mysql_config(env))
    try:
        yield connection.cursor()
    finally:
        connection.close()


def listed_scratch_tables(cursor: Any) -> set[str]:
    """The scratch tables (SCRATCH_TABLE) of the cursor's database."""
    cursor.execute("SHOW TABLES")
    return {name for (name,) in cursor.fetchall() if SCRATCH_TABLE.fullmatch(name)}


def scratch_tables(mysql_url: str) -> set[str]:
    """The tables of the MYSQL_URL database named as tests and benches name their throwaway ones."""
    with mysql_cursor({"MYSQL_URL": mysql_url}) as cursor:
        return listed_scratch_tables(cursor)


def drop_scratch_tables(mysql_url: str, keep: set[str]) -> None:
    """Drop the throwaway tables made since `keep` was listed (a test that failed may have left some)."""
    try:
        with mysql_cursor({"MYSQL_URL": mysql_url}) as cursor:
            for name in sorted(listed_scratch_tables(cursor) - keep):
                cursor.execute(f"DROP TABLE IF EXISTS `{name}`")
    except Exception:
        log.exception("could not drop the tests' throwaway tables")
