"""The full-rebuild run: rows → fetch → decode → features → documents → bulk → validate → alias swap."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from elasticsearch import Elasticsearch

from indexer import reuse, sink
from indexer.config import IndexerConfig
from indexer.documents import failed_document, index_action, indexed_document
from indexer.errors import SUCCESS_STATUSES, RowFailure, RowStatus
from indexer.features import MIN_FEATURE_NORM, FeatureExtractor
from indexer.fetch import ImageFetcher, resolve_photo
from indexer.imaging import decode_image
from indexer.progress import NoProgress, Progress
from indexer.report import RunReport, Stopwatch
from indexer.source import CatalogRow, CatalogSource

log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """The new index is not fit to serve; the alias was left where it was."""


@dataclass(frozen=True)
class RunOptions:
    batch_size: int = 8
    workers: int = 8
    limit: int | None = None
    max_failure_ratio: float = 0.01
    recompute: bool = False


@dataclass
class PreparedRow:
    """A row after fetch and decode: pixels ready for the model, or the failure."""

    row: CatalogRow
    image_url: str | None
    pixels: np.ndarray | None = None
    failure: RowFailure | None = None
    reused_vector: list[float] | None = None


def prefetch(items: Iterable, pool: ThreadPoolExecutor, work: Callable, ahead: int) -> Iterator:
    """Like pool.map, in order, but keeps at most `ahead` tasks in flight (bounded memory)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class FullRebuild:
    """Builds a new versioned index from every catalog row and swaps the alias to it."""

    def __init__(
        self,
        config: IndexerConfig,
        es: Elasticsearch,
        source: CatalogSource,
        extractor: FeatureExtractor,
        options: RunOptions = RunOptions(),
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.es = es
        self.source = source
        self.extractor = extractor
        self.options = options
        self.progress = progress or NoProgress()
        self.fetcher = ImageFetcher(config.fetch, pool_size=options.workers)
        self.report = RunReport(mode="full", alias=config.elastic.alias)
        self.report.model = extractor.info.as_meta()
        self._pending: dict[str, RowFailure | RowStatus] = {}
        self._pending_lock = threading.Lock()

    def run(self) -> RunReport:
        """Run to the end; raises on a run-level failure (the alias is then untouched)."""
        now = datetime.now(UTC)
        index = sink.version_name(self.config.elastic.alias, now)
        body = sink.load_index_definition(self.config.elastic, self._meta(now))
        sink.create_build_index(self.es, index, body)
        self.report.index = index
        writer = sink.BulkWriter(self.es, self._on_bulk_result).start()
        try:
            self._index_rows(index, writer)
        finally:
            writer.close()
            self.progress.close()
        with Stopwatch(self.report, "finalize"):
            sink.finish_build_index(self.es, index, body)
            self.validate(index)
            self.report.previous_indices = sink.swap_alias(self.es, self.config.elastic.alias, index)
            self.report.deleted_indices = sink.delete_old_versions(
                self.es, self.config.elastic.alias, self.config.keep_versions
            )
        self.report.finish("succeeded", f"alias {self.config.elastic.alias} now points to {index}")
        return self.report

    def _meta(self, now: datetime) -> dict[str, object]:
        return {
            "model": self.extractor.info.as_meta(),
            "created_at": now.isoformat(),
            "created_by": "indexer full",
            "run_id": self.report.run_id,
        }

    def _index_rows(self, index: str, writer: sink.BulkWriter) -> None:
        batch: list[PreparedRow] = []
        ahead = max(self.options.workers * 4, self.options.batch_size * 2)
        rows = reuse.with_stored_vectors(
            self.source.iter_rows(limit=self.options.limit), self.es, self._reuse_index()
        )
        with ThreadPoolExecutor(self.options.workers, thread_name_prefix="fetch") as pool:
            for prepared in prefetch(rows, pool, self.prepare, ahead):
                self.report.rows_seen += 1
                if prepared.failure is not None or prepared.reused_vector is not None:
                    self._submit(writer, index, prepared, prepared.reused_vector)
                    continue
                batch.append(prepared)
                if len(batch) >= self.options.batch_size:
                    self._embed_and_submit(writer, index, batch)
                    batch = []
        if batch:
            self._embed_and_submit(writer, index, batch)

    def _reuse_index(self) -> str | None:
        if self.options.recompute:
            log.info("--recompute: every vector is computed again")
            return None
        return reuse.reuse_source(self.es, self.config.elastic.alias, self.extractor.info.fingerprint)

    def prepare(self, item: tuple[CatalogRow, reuse.StoredVector | None]) -> PreparedRow:
        """Reuse, or fetch and decode one row (on a worker thread); failures stay with the row."""
        row, stored = item
        prepared = PreparedRow(row=row, image_url=None)
        try:
            if row.relation_id is None or not row.relation_id.strip():
                raise RowFailure(RowStatus.INVALID_ROW, "no_relation_id", "relation_id is NULL or empty")
            prepared.image_url = resolve_photo(row.photo or "", self.config.fetch.base_url)
            if reuse.is_unchanged(stored, prepared.image_url, row):
                prepared.reused_vector = stored.feature
                return prepared
            with Stopwatch(self.report, "fetch"):
                data = self.fetcher.fetch(prepared.image_url)
            with Stopwatch(self.report, "decode"):
                prepared.pixels = decode_image(data, self.config.fetch.max_pixels)
        except RowFailure as failure:
            prepared.failure = failure
        except Exception as exc:
            log.exception("unexpected error preparing row %s", row.id)
            prepared.failure = RowFailure(RowStatus.DOWNLOAD_FAILED, "unexpected", repr(exc))
        return prepared

    def _embed_and_submit(self, writer: sink.BulkWriter, index: str, batch: list[PreparedRow]) -> None:
        with Stopwatch(self.report, "model"):
            vectors, norms = self.extractor.extract(np.stack([p.pixels for p in batch]))
        for prepared, vector, norm in zip(batch, vectors, norms, strict=True):
            if norm < MIN_FEATURE_NORM:
                prepared.failure = RowFailure(
                    RowStatus.FEATURE_FAILED, "zero_vector", "the image produced an all-zero feature vector"
                )
            self._submit(writer, index, prepared, None if prepared.failure else vector)

    def _submit(
        self,
        writer: sink.BulkWriter,
        index: str,
        prepared: PreparedRow,
        vector: np.ndarray | list[float] | None,
    ) -> None:
        now = datetime.now(UTC)
        row = prepared.row
        outcome: RowFailure | RowStatus
        if vector is not None:
            outcome = RowStatus.REUSED if prepared.reused_vector is not None else RowStatus.INDEXED
            document = indexed_document(row, prepared.image_url or "", vector, now, outcome)
        else:
            log.warning("row %s failed: %s", row.id, prepared.failure)
            outcome = prepared.failure
            document = failed_document(row, prepared.image_url, prepared.failure, now)
        with self._pending_lock:
            self._pending[str(row.id)] = outcome
        writer.put(index_action(index, row.id, document))
        self.progress.update(1)

    def _on_bulk_result(self, doc_id: str, ok: bool, error: str | None) -> None:
        """Account one bulk item to its row (called on the writer thread)."""
        with self._pending_lock:
            outcome = self._pending.pop(doc_id)
        row_id = int(doc_id)
        if not ok:
            self.report.record_failure(row_id, RowFailure(RowStatus.INDEX_FAILED, "bulk_item", error or ""))
        elif isinstance(outcome, RowFailure):
            self.report.record_failure(row_id, outcome)
        else:
            self.report.record_success(outcome)

    def validate(self, index: str) -> None:
        """Refuse to swap an index that is empty, incomplete, too failed, or unsearchable."""
        processed = self.report.processed
        if processed != self.report.rows_seen:
            raise ValidationFailed(f"{self.report.rows_seen} rows read but {processed} accounted")
        if processed == 0:
            raise ValidationFailed("the catalog returned no rows; refusing to serve an empty index")
        stored = self.es.count(index=index)["count"]
        if stored != processed - self.report.statuses[RowStatus.INDEX_FAILED.value]:
            raise ValidationFailed(f"index holds {stored} documents, expected {processed}")
        ratio = self.report.failed / processed
        if ratio > self.options.max_failure_ratio:
            raise ValidationFailed(
                f"{self.report.failed} of {processed} rows failed ({ratio:.1%}), "
                f"above --max-failure-ratio {self.options.max_failure_ratio:.1%}"
            )
        self._check_sample_query(index)

    def _check_sample_query(self, index: str) -> None:
        searchable = {"terms": {"status": sorted(status.value for status in SUCCESS_STATUSES)}}
        sample = self.es.search(index=index, size=1, query=searchable, source=["feature"])
        hits = sample["hits"]["hits"]
        if not hits:
            raise ValidationFailed("no searchable document in the new index")
        vector = hits[0]["_source"]["feature"]
        knn = {"field": "feature", "query_vector": vector, "k": 1, "num_candidates": 10}
        if not self.es.search(index=index, knn=knn, size=1)["hits"]["hits"]:
            raise ValidationFailed("a sample kNN query on the new index returned no hit")
