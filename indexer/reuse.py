"""Reuse vectors already in the live index for rows whose image did not change (no model call)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from imgsearch.documents import CatalogRow, iso
from imgsearch.errors import SUCCESS_STATUSES
from imgsearch.indices import aliased_indices, index_meta

log = logging.getLogger(__name__)

LOOKUP_CHUNK_ROWS = 200
SEARCHABLE_STATUSES = frozenset(status.value for status in SUCCESS_STATUSES)


@dataclass(frozen=True)
class StoredVector:
    """What the live index holds for a row: enough to decide whether its image changed."""

    image_url: str | None
    updated_at: str | None
    feature: list[float]


def reuse_source(es: Elasticsearch, alias: str, fingerprint: str) -> str | None:
    """The live index when its vectors come from the same weights; None disables reuse."""
    live = aliased_indices(es, alias)
    if len(live) != 1:
        return None
    stored_fingerprint = index_meta(es, live[0]).get("model", {}).get("fingerprint")
    if stored_fingerprint != fingerprint:
        log.warning(
            "vector reuse disabled: live index %s was built with weights %s, this run uses %s",
            live[0],
            stored_fingerprint,
            fingerprint,
        )
        return None
    log.info("reusing unchanged vectors from live index %s", live[0])
    return live[0]


def lookup_stored(es: Elasticsearch, index: str, row_ids: list[int]) -> dict[int, StoredVector]:
    """Stored vectors of these rows (only rows that were searchable)."""
    response = es.mget(
        index=index, ids=[str(i) for i in row_ids], source=["feature", "image_url", "updated_at", "status"]
    )
    found: dict[int, StoredVector] = {}
    for doc in response["docs"]:
        source = doc.get("_source") or {}
        if doc.get("found") and source.get("status") in SEARCHABLE_STATUSES and source.get("feature"):
            found[int(doc["_id"])] = StoredVector(
                source.get("image_url"), source.get("updated_at"), source["feature"]
            )
    return found


def is_unchanged(stored: StoredVector | None, image_url: str, row: CatalogRow) -> bool:
    """Same resolved URL and same updated_at: the image is taken to be the same."""
    return (
        stored is not None
        and row.updated_at is not None
        and stored.image_url == image_url
        and stored.updated_at == iso(row.updated_at)
    )


def chunks(rows: Iterable[CatalogRow], size: int) -> Iterator[list[CatalogRow]]:
    chunk: list[CatalogRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def with_stored_vectors(
    rows: Iterable[CatalogRow], es: Elasticsearch, index: str | None, chunk_rows: int = LOOKUP_CHUNK_ROWS
) -> Iterator[tuple[CatalogRow, StoredVector | None]]:
    """Pair each row with its stored vector (one mget per chunk of rows), in order; rows stream through
    unbuffered when there is nothing to reuse from."""
    if index is None:
        yield from ((row, None) for row in rows)
        return
    for chunk in chunks(rows, chunk_rows):
        stored = lookup_stored(es, index, [row.id for row in chunk])
        for row in chunk:
            yield row, stored.get(row.id)
