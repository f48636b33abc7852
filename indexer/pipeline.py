"""The row pipeline shared by every mode: rows → fetch → decode → features → documents → bulk, accounted."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from elasticsearch import Elasticsearch

from imgsearch.documents import CatalogRow, delete_action, failed_document, index_action, indexed_document
from imgsearch.errors import RowFailure, RowStatus
from imgsearch.features import MIN_FEATURE_NORM, FeatureExtractor
from indexer import reuse
from indexer.bulk import DEFAULT_BULK_STREAMS, BulkResultHandler, BulkWriter, Sink, SinkFactory
from indexer.config import IndexerConfig
from indexer.decoding import Decoder, auto_decode_processes
from indexer.fetch import ImageFetcher, resolve_photo
from indexer.partition import WHOLE, Partition
from indexer.progress import NoProgress, Progress
from indexer.report import RunReport, Stopwatch
from indexer.stop import StopToken

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class RunOptions:
    batch_size: int | None = None  # None: the extractor's, chosen for its device and precision
    workers: int | None = None  # fetch threads; None: 8, or twice the decode processes
    decode_processes: int | None = None  # None: one per core from 4 cores, else decode on the fetch threads
    bulk_streams: int = DEFAULT_BULK_STREAMS
    limit: int | None = None
    max_failure_ratio: float = 0.01
    recompute: bool = False
    partition: Partition = WHOLE


@dataclass
class PreparedRow:
    """A row after fetch and decode: pixels ready for the model, or the failure."""

    row: CatalogRow
    image_url: str | None
    pixels: np.ndarray | None = None
    failure: RowFailure | None = None
    reused_vector: list[float] | None = None


def timed(items: Iterable, report: RunReport, stage: str) -> Iterator:
    """Yield from `items`, adding the time spent waiting for each item to a report stage."""
    iterator = iter(items)
    while True:
        with Stopwatch(report, stage):
            item = next(iterator, _DONE)
        if item is _DONE:
            return
        yield item


def prefetch(items: Iterable, pool: ThreadPoolExecutor, work: Callable, ahead: int) -> Iterator:
    """Like pool.map, in order, but keeps at most `ahead` tasks in flight (bounded memory)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass
class CompletionTracker:
    """The stream position up to which every row is accounted: where a killed run can resume."""

    position: Hashable | None = None
    prefix_rows: int = 0
    prefix_statuses: Counter = field(default_factory=Counter)
    _order: deque = field(default_factory=deque)
    _outcomes: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, key: str, position: Hashable) -> None:
        with self._lock:
            self._order.append((key, position))

    def finished(self, key: str, status: str) -> None:
        with self._lock:
            self._outcomes[key] = status
            while self._order and self._order[0][0] in self._outcomes:
                done_key, self.position = self._order.popleft()
                self.prefix_statuses[self._outcomes.pop(done_key)] += 1
                self.prefix_rows += 1


Checkpoint = Callable[[CompletionTracker], None]


class RowIndexer:
    """Runs rows through fetch → decode → model → bulk into one index, accounting every row once."""

    def __init__(
        self,
        config: IndexerConfig,
        es: Elasticsearch,
        extractor: FeatureExtractor,
        report: RunReport,
        options: RunOptions,
        progress: Progress | None = None,
        still_allowed: Callable[[], None] = lambda: None,
        stop: StopToken | None = None,
        sink: SinkFactory | None = None,
    ) -> None:
        self.config = config
        self.es = es
        self.extractor = extractor
        self.report = report
        self.options = options
        self.progress = progress or NoProgress()
        self.still_allowed = still_allowed
        self.stop = stop or StopToken()
        self.sink = sink or self._bulk_writer
        self.batch_size = options.batch_size or extractor.compute.batch_size
        self.decode_processes = options.decode_processes
        if self.decode_processes is None:
            self.decode_processes = auto_decode_processes()
        self.workers = options.workers or max(8, 2 * self.decode_processes)
        self.fetcher = ImageFetcher(config.fetch, pool_size=self.workers)
        self.decode = Decoder(0)
        self.failed_ids: set[int] = set()
        self._pending: dict[str, RowFailure | RowStatus] = {}
        self._pending_lock = threading.Lock()
        self._tracker = CompletionTracker()

    def shape(self) -> dict[str, int]:
        """How the work is spread, for the run report."""
        return {
            "batch_size": self.batch_size,
            "fetch_threads": self.workers,
            "decode_processes": self.decode_processes,
            "bulk_streams": self.options.bulk_streams,
        }

    def index(
        self,
        rows: Iterable[tuple[CatalogRow, reuse.StoredVector | None]],
        target: str,
        position: Callable[[CatalogRow], Hashable] = lambda row: row.id,
        checkpoint: Checkpoint | None = None,
    ) -> CompletionTracker:
        """Index every row into `target`; call `checkpoint` every few seconds and once all is written."""
        self._tracker = CompletionTracker()
        writer = self.sink(self._on_bulk_result).start()
        self.decode = Decoder(self.decode_processes)
        log.info(
            "pipeline: %d fetch threads, %s, batches of %d, %d bulk streams",
            self.workers,
            f"{self.decode_processes} decode processes" if self.decode_processes else "decoding on them",
            self.batch_size,
            self.options.bulk_streams,
        )
        try:
            self._index_rows(rows, target, position, writer, checkpoint)
        finally:
            self.decode.close()
            writer.close()
        if checkpoint is not None:
            checkpoint(self._tracker)
        return self._tracker

    def _bulk_writer(self, on_result: BulkResultHandler) -> BulkWriter:
        retry_seconds = self.config.run.es_retry_seconds
        return BulkWriter(self.es, on_result, retry_seconds, streams=self.options.bulk_streams)

    def _index_rows(self, rows, target, position, writer, checkpoint) -> None:
        """Feed the model from the fetch pool; each batch's documents are written while the next one runs."""
        batch: list[PreparedRow] = []
        in_flight: Future | None = None
        ahead = max(self.workers * 4, self.batch_size * 3)
        last_checkpoint = time.monotonic()
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="fetch") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="model") as model,
        ):
            for prepared in timed(prefetch(rows, pool, self.prepare, ahead), self.report, "wait_for_rows"):
                self.stop.check()
                self.still_allowed()
                self.report.rows_seen += 1
                self._tracker.started(str(prepared.row.id), position(prepared.row))
                if prepared.pixels is None:
                    self._submit(writer, target, prepared, prepared.reused_vector)
                else:
                    batch.append(prepared)
                    if len(batch) >= self.batch_size:
                        in_flight = self._start_batch(model, in_flight, writer, target, batch)
                        batch = []
                if checkpoint and time.monotonic() - last_checkpoint >= self.config.run.checkpoint_seconds:
                    checkpoint(self._tracker)
                    last_checkpoint = time.monotonic()
            if batch:
                in_flight = self._start_batch(model, in_flight, writer, target, batch)
            self._write_batch(in_flight, writer, target)

    def _start_batch(
        self, model: ThreadPoolExecutor, in_flight: Future | None, writer: Sink, target: str, batch
    ) -> Future:
        """Queue `batch` for the model first, then write the batch before it: the model never waits."""
        started = model.submit(self._embed, batch)
        self._write_batch(in_flight, writer, target)
        return started

    def prepare(self, item: tuple[CatalogRow, reuse.StoredVector | None]) -> PreparedRow:
        """Reuse, or fetch and decode one row (on a worker thread); failures stay with the row."""
        row, stored = item
        prepared = PreparedRow(row=row, image_url=None)
        if row.deleted:
            return prepared
        stage = RowStatus.DOWNLOAD_FAILED
        try:
            if row.relation_id is None or not row.relation_id.strip():
                raise RowFailure(RowStatus.INVALID_ROW, "no_relation_id", "relation_id is NULL or empty")
            prepared.image_url = resolve_photo(row.photo or "", self.config.fetch.base_url)
            if reuse.is_unchanged(stored, prepared.image_url, row):
                prepared.reused_vector = stored.feature
                return prepared
            with Stopwatch(self.report, "fetch"):
                data = self.fetcher.fetch(prepared.image_url)
            stage = RowStatus.DECODE_FAILED
            with Stopwatch(self.report, "decode"):
                prepared.pixels = self.decode(data, self.config.fetch.max_pixels)
        except RowFailure as failure:
            prepared.failure = failure
        except Exception as exc:
            log.exception("unexpected error preparing row %s", row.id)
            prepared.failure = RowFailure(stage, "unexpected", repr(exc))
        return prepared

    def _embed(self, batch: list[PreparedRow]) -> tuple[list[PreparedRow], np.ndarray, np.ndarray]:
        """On the model thread: one model call for the batch's pixels."""
        with Stopwatch(self.report, "model"):
            vectors, norms = self.extractor.extract(np.stack([p.pixels for p in batch]))
        return batch, vectors, norms

    def _write_batch(self, in_flight: Future | None, writer: Sink, target: str) -> None:
        """Wait for a batch's vectors and hand its documents to the bulk writer (zero vectors fail)."""
        if in_flight is None:
            return
        with Stopwatch(self.report, "wait_for_model"):
            batch, vectors, norms = in_flight.result()
        for prepared, vector, norm in zip(batch, vectors, norms, strict=True):
            if norm < MIN_FEATURE_NORM:
                prepared.failure = RowFailure(
                    RowStatus.FEATURE_FAILED, "zero_vector", "the image produced an all-zero feature vector"
                )
            self._submit(writer, target, prepared, None if prepared.failure else vector)

    def _submit(
        self,
        writer: Sink,
        target: str,
        prepared: PreparedRow,
        vector: np.ndarray | list[float] | None,
    ) -> None:
        row = prepared.row
        outcome, action = self._action(target, prepared, vector)
        with self._pending_lock:
            self._pending[str(row.id)] = outcome
        writer.put(action)
        self.progress.update(1)

    def _action(
        self, target: str, prepared: PreparedRow, vector: np.ndarray | list[float] | None
    ) -> tuple[RowFailure | RowStatus, dict[str, object]]:
        row, now = prepared.row, datetime.now(UTC)
        if row.deleted:
            return RowStatus.DELETED, delete_action(target, row.id)
        if vector is not None:
            outcome = RowStatus.REUSED if prepared.reused_vector is not None else RowStatus.INDEXED
            document = indexed_document(row, prepared.image_url or "", vector, now, outcome)
            return outcome, index_action(target, row.id, document)
        log.warning("row %s failed: %s", row.id, prepared.failure)
        document = failed_document(row, prepared.image_url, prepared.failure, now)
        return prepared.failure, index_action(target, row.id, document)

    def _on_bulk_result(self, doc_id: str, ok: bool, error: str | None) -> None:
        """Account one bulk item to its row (called on the writer thread)."""
        with self._pending_lock:
            outcome = self._pending.pop(doc_id)
        row_id = int(doc_id)
        if not ok:
            outcome = RowFailure(RowStatus.INDEX_FAILED, "bulk_item", error or "")
        if isinstance(outcome, RowFailure):
            self.report.record_failure(row_id, outcome)
            self.failed_ids.add(row_id)
            status = outcome.status
        else:
            self.report.record_success(outcome)
            status = outcome
        self._tracker.finished(doc_id, status.value)
