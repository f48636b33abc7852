"""The versioned indices behind the alias: create and finish a build, swap the alias, retention, id scans."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

from elasticsearch import Elasticsearch

from imgsearch.esversion import index_settings_for, parse_version
from imgsearch.indices import aliased_indices, list_versions, server_version
from imgsearch.retry import retry_elasticsearch

log = logging.getLogger(__name__)

ID_SCAN_PAGE = 5000


def create_build_index(es: Elasticsearch, name: str, body: dict[str, object]) -> None:
    """Create the new version tuned for bulk loading (no refresh, no replicas), with the settings the
    server's version needs to behave like the others (imgsearch/esversion.py)."""
    build_body = copy.deepcopy(body)
    build_body["settings"]["index"].update(index_settings_for(parse_version(server_version(es))))
    build_body["settings"]["index"]["refresh_interval"] = "-1"
    build_body["settings"]["index"]["number_of_replicas"] = 0
    es.indices.create(index=name, settings=build_body["settings"], mappings=build_body["mappings"])
    log.info("created index %s", name)


def finish_build_index(es: Elasticsearch, name: str, body: dict[str, object]) -> None:
    """Restore the serving settings, refresh, and wait until the index can serve."""
    serving = body["settings"]["index"]
    es.indices.put_settings(
        index=name,
        settings={
            "index": {
                "refresh_interval": serving["refresh_interval"],
                "number_of_replicas": serving["number_of_replicas"],
            }
        },
    )
    es.indices.refresh(index=name)
    es.cluster.health(index=name, wait_for_status="yellow", timeout="60s")


def swap_alias(es: Elasticsearch, alias: str, new_index: str) -> list[str]:
    """Point the alias at new_index in one atomic _aliases call; return the indices it left."""
    previous = aliased_indices(es, alias)
    actions: list[dict[str, object]] = [
        {"remove": {"index": old, "alias": alias, "must_exist": True}} for old in previous
    ]
    actions.append({"add": {"index": new_index, "alias": alias, "is_write_index": True}})
    es.indices.update_aliases(actions=actions)
    log.info("alias %s -> %s (was %s)", alias, new_index, previous or "unset")
    return previous


def delete_old_versions(es: Elasticsearch, alias: str, keep: int) -> list[str]:
    """Delete versions beyond the newest `keep`, never one the alias points to."""
    live = set(aliased_indices(es, alias))
    stale = [name for name in list_versions(es, alias)[keep:] if name not in live]
    for name in stale:
        es.indices.delete(index=name)
        log.info("deleted old version %s", name)
    return stale


def iter_document_ids(
    es: Elasticsearch, index: str, query: dict[str, object] | None = None, retry_seconds: float = 300.0
) -> Iterator[int]:
    """Catalog ids (`source_id`) of the documents matching query, ascending, paged with search_after."""
    after: list[object] | None = None
    while True:
        page = retry_elasticsearch(
            lambda after=after: es.search(
                index=index,
                query=query or {"match_all": {}},
                sort=[{"source_id": "asc"}],
                size=ID_SCAN_PAGE,
                source=False,
                docvalue_fields=["source_id"],
                search_after=after,
                track_total_hits=False,
            ),
            "scan document ids",
            retry_seconds,
        )
        hits = page["hits"]["hits"]
        if not hits:
            return
        for hit in hits:
            yield int(hit["fields"]["source_id"][0])
        after = hits[-1]["sort"]
