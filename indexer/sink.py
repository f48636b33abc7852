"""Elasticsearch side of a run: versioned index, background bulk writer, alias swap, retention."""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import elastic_transport
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.helpers import streaming_bulk

from imgsearch.esversion import index_settings_for, parse_version
from imgsearch.indices import aliased_indices, list_versions, server_version

log = logging.getLogger(__name__)

BULK_CHUNK_DOCS = 200
BULK_CHUNK_BYTES = 5 * 1024 * 1024
BULK_MAX_RETRIES = 5
_END = object()
T = TypeVar("T")


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


ID_SCAN_PAGE = 5000


def iter_document_ids(
    es: Elasticsearch, index: str, query: dict[str, object] | None = None, retry_seconds: float = 300.0
) -> Iterator[int]:
    """Catalog ids (`source_id`) of the documents matching query, ascending, paged with search_after."""
    after: list[object] | None = None
    while True:
        page = retrying(
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


BulkResultHandler = Callable[[str, bool, str | None], None]
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """An Elasticsearch error worth waiting out: unreachable, timed out, overloaded, restarting."""
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in TRANSIENT_STATUSES


def retrying(call: Callable[[], T], what: str, deadline_seconds: float) -> T:
    """Run call(), retrying transient Elasticsearch errors with backoff for up to deadline_seconds."""
    give_up = time.monotonic() + deadline_seconds
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > give_up:
                raise
            log.warning("%s: Elasticsearch unavailable (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def bulk_error_text(item: dict[str, object]) -> str:
    """A readable message from one failed bulk item."""
    result = next(iter(item.values())) if item else {}
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    status = result.get("status") if isinstance(result, dict) else None
    return f"bulk item failed (status {status}): {error or result}"


def bulk_item_ok(ok: bool, item: dict[str, object]) -> bool:
    """Success, counting a delete of an already absent document as done."""
    operation, result = next(iter(item.items()))
    return ok or (operation == "delete" and result.get("status") == 404)


class BulkWriter:
    """Streams actions to Elasticsearch on a background thread and reports each item's outcome.

    Actions are grouped into chunks; each chunk goes through `streaming_bulk` (per-item results,
    429s retried with backoff). A chunk that fails as a whole because Elasticsearch is unreachable or
    restarting is sent again, its not-yet-accounted items only, until `retry_seconds` have passed.
    """

    def __init__(
        self,
        es: Elasticsearch,
        on_result: BulkResultHandler,
        retry_seconds: float = 300.0,
        max_pending: int = 2000,
        flush_seconds: float = 0.5,
    ) -> None:
        self._es = es
        self._on_result = on_result
        self._retry_seconds = retry_seconds
        self._flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="bulk-writer", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> BulkWriter:
        self._thread.start()
        return self

    def put(self, action: dict[str, object]) -> None:
        if self.error is not None:
            raise RuntimeError(f"bulk writer stopped: {self.error}") from self.error
        self._queue.put(action)

    def close(self) -> None:
        """Flush everything queued and wait; re-raise a fatal writer error."""
        self._queue.put(_END)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"bulk writer failed: {self.error}") from self.error

    def _chunks(self) -> Iterator[list[dict[str, object]]]:
        """Chunks of up to BULK_CHUNK_DOCS actions; none waits longer than flush_seconds to be sent."""
        chunk: list[dict[str, object]] = []
        deadline = 0.0
        while True:
            try:
                timeout = max(0.0, deadline - time.monotonic()) if chunk else None
                action = self._queue.get(timeout=timeout)
            except queue.Empty:
                yield chunk
                chunk = []
                continue
            if action is _END:
                if chunk:
                    yield chunk
                return
            if not chunk:
                deadline = time.monotonic() + self._flush_seconds
            chunk.append(action)
            if len(chunk) >= BULK_CHUNK_DOCS:
                yield chunk
                chunk = []

    def _run(self) -> None:
        try:
            for chunk in self._chunks():
                self._send(chunk)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the pipeline by close()/put()
            self.error = exc
            while self._queue.get() is not _END:
                pass

    def _send(self, chunk: list[dict[str, object]]) -> None:
        """Send one chunk, accounting every item exactly once; wait out an unreachable cluster."""
        remaining = {str(action["_id"]): action for action in chunk}
        give_up = time.monotonic() + self._retry_seconds
        delay = 1.0
        while remaining:
            try:
                self._stream(list(remaining.values()), remaining)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "bulk: Elasticsearch unavailable (%s); %d documents wait, retry in %.0f s",
                    exc,
                    len(remaining),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    def _stream(self, actions: list[dict[str, object]], remaining: dict[str, dict[str, object]]) -> None:
        for ok, item in streaming_bulk(
            self._es,
            actions,
            chunk_size=BULK_CHUNK_DOCS,
            max_chunk_bytes=BULK_CHUNK_BYTES,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=BULK_MAX_RETRIES,
            initial_backoff=1,
            max_backoff=30,
        ):
            doc_id = str(next(iter(item.values())).get("_id"))
            success = bulk_item_ok(ok, item)
            remaining.pop(doc_id, None)
            self._on_result(doc_id, success, None if success else bulk_error_text(item))
