"""What `full` and `incremental` share: the report, the state store, the run lock and the row indexer."""

from __future__ import annotations

from collections.abc import Iterator

from elasticsearch import Elasticsearch

from imgsearch.features import FeatureExtractor
from indexer.config import IndexerConfig
from indexer.pipeline import RowIndexer, RunOptions
from indexer.progress import NoProgress, Progress
from indexer.report import RunReport
from indexer.source import CatalogSource
from indexer.state import RunLock, StateStore
from indexer.stop import StopToken
from indexer.versions import iter_document_ids


class ValidationFailed(RuntimeError):
    """The run's result is not fit to serve (full: the alias was left where it was)."""


class LockedRun:
    """One run of a mode under the alias's lock for its partition; subclasses implement `_run_locked`
    (and `_start_state` for their own fields), and share this constructor."""

    mode = "run"

    def __init__(
        self,
        config: IndexerConfig,
        es: Elasticsearch,
        source: CatalogSource,
        extractor: FeatureExtractor,
        options: RunOptions = RunOptions(),
        progress: Progress | None = None,
        stop: StopToken | None = None,
    ) -> None:
        self.config = config
        self.es = es
        self.source = source
        self.extractor = extractor
        self.options = options
        self.partition = options.partition
        self.progress = progress or NoProgress()
        self.alias = config.elastic.alias
        self.report = RunReport(mode=self.mode, alias=self.alias, partition=str(self.partition))
        self.report.model = extractor.info.as_meta()
        self.store = StateStore(es, self.alias, config.run.es_retry_seconds)
        self.lock = RunLock(self.store, self.partition, self.report.run_id, self.mode, config.run.lock_ttl)
        self.rows = RowIndexer(
            config, es, extractor, self.report, options, self.progress, self.lock.ensure_held, stop
        )
        self.report.compute = extractor.compute.as_meta() | self.rows.shape()
        self._start_state()

    def _start_state(self) -> None:
        """The mode's own starting state (checkpoint ids, counters), set once the shared parts exist."""

    def run(self) -> RunReport:
        """Run to the end under the lock; raises on a run-level failure (the alias is then untouched)."""
        self.store.ensure()
        with self.lock:
            try:
                return self._run_locked()
            finally:
                self.progress.close()

    def _run_locked(self) -> RunReport:
        raise NotImplementedError

    def owned_ids(self, index: str, query: dict[str, object] | None = None) -> Iterator[int]:
        """Ids of documents matching query that belong to this run's partition, ascending."""
        ids = iter_document_ids(self.es, index, query, self.config.run.es_retry_seconds)
        return (doc_id for doc_id in ids if self.partition.owns(doc_id))
