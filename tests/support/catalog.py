"""The environment of an indexer/API run against a throwaway table and alias, and its removal."""

from __future__ import annotations

import logging
import signal
import uuid
from typing import Any

log = logging.getLogger(__name__)

TEST_SEED = 1234


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


def catalog_environment(es_url: str, mysql_url: str, alias: str, report_dir: str) -> dict[str, str]:
    """Variables for a run on a fresh `images_<random>` table, random seeded weights, no replicas."""
    return stack_environment(
        es_url,
        mysql_url,
        alias,
        f"images_{uuid.uuid4().hex[:10]}",
        VGG16_WEIGHTS="random",
        VGG16_SEED=str(TEST_SEED),
        INDEXER_REPORT_DIR=report_dir,
        INDEXER_CHANGE_LAG_SECONDS="1",
        INDEXER_CHECKPOINT_SECONDS="1",
    )


def drop_catalog(env: dict[str, str]) -> dict[str, Any]:
    """Delete every index of the alias (versions, runs, state, extras) and the table, Ctrl-C ignored
    meanwhile; failures are logged and recorded in the returned dict, never raised."""
    from imgsearch.config import load_elastic_config
    from imgsearch.esclient import make_client
    from indexer import connect, load_mysql_config

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
        connection = connect(load_mysql_config(env))
        connection.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
        connection.close()
        done["dropped_table"] = table
    except Exception as exc:
        log.exception("could not drop the table %s", table)
        done["table_error"] = str(exc)
    finally:
        signal.signal(signal.SIGINT, previous)
    return done
