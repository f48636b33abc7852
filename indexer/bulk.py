"""Background bulk writer: `streaming_bulk` chunks, 429 retries and per-item results, accounted once."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from elasticsearch import Elasticsearch
from elasticsearch.helpers import BULK_FLUSH, streaming_bulk

from imgsearch.retry import BULK_BACKOFF, elasticsearch_retrying, is_elasticsearch_transient

log = logging.getLogger(__name__)

BULK_CHUNK_DOCS = 200
BULK_CHUNK_BYTES = 5 * 1024 * 1024
BULK_MAX_RETRIES = 5
DEFAULT_BULK_STREAMS = 2  # concurrent bulk requests: bench.ingest measures 1, 2 and 4 streams
_END = object()

BulkResultHandler = Callable[[str, bool, str | None], None]
Action = dict[str, object]


class Sink(Protocol):
    """Where the pipeline's actions go: a BulkWriter, or a bench's counting sink."""

    def start(self) -> Sink: ...

    def put(self, action: Action) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[BulkResultHandler], Sink]


def bulk_error_text(item: dict[str, object]) -> str:
    """A readable message from one failed bulk item."""
    result = next(iter(item.values())) if item else {}
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    status = result.get("status") if isinstance(result, dict) else None
    return f"bulk item failed (status {status}): {error or result}"


def bulk_item_ok(ok: bool, item: dict[str, object]) -> bool:
    """Success, counting a delete of an already absent document as done (streaming_bulk says 404)."""
    operation, result = next(iter(item.items()))
    return ok or (operation == "delete" and result.get("status") == 404)


class ActionFeed:
    """What the writer hands `streaming_bulk`: queued actions, a flush marker once the oldest unsent one
    has waited `flush_seconds`, and after an outage first the actions sent but never answered."""

    def __init__(self, source: queue.Queue, flush_seconds: float) -> None:
        self._source = source
        self._flush_seconds = flush_seconds
        self.unanswered: dict[str, Action] = {}
        self.exhausted = False

    @property
    def finished(self) -> bool:
        return self.exhausted and not self.unanswered

    def answered(self, doc_id: str) -> None:
        self.unanswered.pop(doc_id, None)

    def actions(self) -> Iterator[Action | object]:
        """The unanswered actions again (after an outage), then new ones until the end marker."""
        yield from list(self.unanswered.values())
        if not self.exhausted:
            yield from self._queued()

    def _queued(self) -> Iterator[Action | object]:
        oldest: float | None = None  # when the oldest action not yet flushed was taken
        taken = 0
        while True:
            try:
                action = self._source.get(timeout=self._until_flush(oldest))
            except queue.Empty:
                oldest, taken = None, 0
                yield BULK_FLUSH
                continue
            if action is _END:
                self.exhausted = True
                return
            if oldest is None or taken >= BULK_CHUNK_DOCS:  # a new chunk starts with this action
                oldest, taken = time.monotonic(), 0
            taken += 1
            self.unanswered[str(action["_id"])] = action
            yield action

    def drain(self) -> None:
        """After a fatal error: take queued actions until this feed's end marker (put() never blocks)."""
        while not self.exhausted and self._source.get() is not _END:
            pass
        self.exhausted = True

    def _until_flush(self, oldest: float | None) -> float | None:
        """Seconds the oldest unflushed action may still wait (None: nothing waits)."""
        return None if oldest is None else max(0.0, oldest + self._flush_seconds - time.monotonic())


class BulkWriter:
    """Streams actions to Elasticsearch on `streams` background threads and reports each item's outcome.

    Each stream is one `streaming_bulk` over the shared queue: it chunks the actions (by count and
    bytes), retries 429-rejected items with backoff and yields every item's result. Several streams
    keep a node's write threads busy where one waits for each answer (docs/benchmarks.md, ingest).
    When the cluster is unreachable or restarting, each stream sends again the actions it sent but
    got no answer for, until `retry_seconds` have passed without progress. `on_result` is called for
    one item at a time, whichever stream answered it.
    """

    def __init__(
        self,
        es: Elasticsearch,
        on_result: BulkResultHandler,
        retry_seconds: float = 300.0,
        max_pending: int = 2000,
        flush_seconds: float = 0.5,
        streams: int = 1,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._result_lock = threading.Lock()
        self._on_result = on_result
        self._streams = [
            BulkStream(es, ActionFeed(self._queue, flush_seconds), self._account, retry_seconds, number)
            for number in range(1, streams + 1)
        ]

    @property
    def error(self) -> BaseException | None:
        return next((stream.error for stream in self._streams if stream.error is not None), None)

    def start(self) -> BulkWriter:
        for stream in self._streams:
            stream.thread.start()
        return self

    def put(self, action: Action) -> None:
        if self.error is not None:
            raise RuntimeError(f"bulk writer stopped: {self.error}") from self.error
        self._queue.put(action)

    def close(self) -> None:
        """Flush everything queued and wait; re-raise a fatal writer error."""
        for _ in self._streams:
            self._queue.put(_END)
        for stream in self._streams:
            stream.thread.join()
        if self.error is not None:
            raise RuntimeError(f"bulk writer failed: {self.error}") from self.error

    def _account(self, doc_id: str, ok: bool, item: dict[str, object]) -> None:
        success = bulk_item_ok(ok, item)
        with self._result_lock:
            self._on_result(doc_id, success, None if success else bulk_error_text(item))


class BulkStream:
    """One `streaming_bulk` pass after another on its own thread, over its feed, until the feed ends."""

    def __init__(
        self,
        es: Elasticsearch,
        feed: ActionFeed,
        account: Callable[[str, bool, dict[str, object]], None],
        retry_seconds: float,
        number: int,
    ) -> None:
        self._es = es
        self._feed = feed
        self._account = account
        self._retry_seconds = retry_seconds
        self.thread = threading.Thread(target=self._run, name=f"bulk-writer-{number}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._feed.finished:
                self._wait_out_outage()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the pipeline by close()/put()
            self.error = exc
            self._feed.drain()

    def _wait_out_outage(self) -> None:
        """Stream until the feed ends or the cluster fails after progress; a failure before any
        progress is retried with backoff until `retry_seconds` have passed."""
        retrying = elasticsearch_retrying(
            "bulk", self._retry_seconds, BULK_BACKOFF, lambda: f"{len(self._feed.unanswered)} documents wait"
        )
        retrying(self._stream)

    def _stream(self) -> None:
        """One streaming_bulk pass; returns early (to start a fresh outage) when a transient failure
        follows answered items."""
        answered = 0
        try:
            for ok, item in streaming_bulk(
                self._es,
                self._feed.actions(),
                chunk_size=BULK_CHUNK_DOCS,
                max_chunk_bytes=BULK_CHUNK_BYTES,
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=BULK_MAX_RETRIES,
                initial_backoff=1,
                max_backoff=30,
                yield_ok=True,
            ):
                doc_id = str(next(iter(item.values())).get("_id"))
                self._feed.answered(doc_id)
                self._account(doc_id, ok, item)
                answered += 1
        except Exception as exc:
            if not answered or not is_elasticsearch_transient(exc):
                raise
            log.warning("bulk: Elasticsearch unavailable (%s) after %d answers; sending again", exc, answered)
            return
        if self._feed.exhausted and self._feed.unanswered:
            raise RuntimeError(f"{len(self._feed.unanswered)} bulk actions got no answer from streaming_bulk")
