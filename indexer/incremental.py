"""`incremental`: apply catalog changes since the last checkpoint to the live index (the cron job)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from elasticsearch import Elasticsearch

from imgsearch import indices
from imgsearch.documents import CatalogRow, iso
from imgsearch.errors import FAILURE_STATUSES
from indexer import reuse
from indexer.full import INCREMENTAL_BASE_ID, INCREMENTAL_CHECKPOINT_KIND
from indexer.lockedrun import LockedRun, ValidationFailed
from indexer.pipeline import CompletionTracker
from indexer.report import RunReport, Stopwatch
from indexer.source import ChangePosition
from indexer.state import Versioned

log = logging.getLogger(__name__)

FAILED_QUERY = {"terms": {"status": sorted(status.value for status in FAILURE_STATUSES)}}


class NoLiveIndex(RuntimeError):
    """The alias does not point to exactly one index: there is nothing to update incrementally."""


class IncompatibleIndex(RuntimeError):
    """The live index was built with other weights; mixing vectors would corrupt it. Run `full`."""


class IncrementalRun(LockedRun):
    """Upserts changed rows, retries failed ones and removes deleted ones, in the live index.

    Phase 1 reads rows ordered by (updated_at, id) after the checkpoint and up to `now - lag`
    (so rows committed late with an older timestamp are still ahead of the watermark), saving the
    watermark as rows are written. Phase 2 retries rows whose documents record a failure. Phase 3
    deletes documents whose rows are gone (hard delete) or flagged by MYSQL_DELETED_COLUMN.
    """

    mode = "incremental"

    def _start_state(self) -> None:
        self.checkpoint_id = f"checkpoint:incremental:{self.partition.key}"
        self._checkpoint: Versioned | None = None

    def _run_locked(self) -> RunReport:
        live = live_index(self.es, self.alias, self.extractor.info.fingerprint)
        self.report.index = live
        until = self.changes_until()
        start = self.start_position()
        self.report.resumed_from = {"updated_at": iso(start.updated_at), "id": start.id} if start else None
        with Stopwatch(self.report, "changes"):
            changed = self.source.iter_changes(start, until, limit=self.options.limit)
            seen = self._index(changed, live)
        self.es.indices.refresh(index=self.alias)
        with Stopwatch(self.report, "retry_failed"):
            self._retry_failed(seen)
        self.es.indices.refresh(index=self.alias)
        with Stopwatch(self.report, "sweep_deleted"):
            self._sweep_deleted()
        self._check_failure_ratio()
        self.report.finish("succeeded", f"{self.report.processed} changes applied to {live}")
        return self.report

    def changes_until(self) -> datetime:
        """The newest updated_at this run takes: the database clock minus the change lag."""
        return self.source.now() - timedelta(seconds=self.config.run.change_lag_seconds)

    def start_position(self) -> ChangePosition | None:
        """Our checkpoint; else where the last full rebuild started; else the beginning."""
        self._checkpoint = self.store.get(self.checkpoint_id)
        if self._checkpoint is not None:
            saved = self._checkpoint.source
            return ChangePosition(datetime.fromisoformat(saved["updated_at"]), int(saved["id"]))
        base = self.store.get(INCREMENTAL_BASE_ID)
        if base is not None:
            return ChangePosition(datetime.fromisoformat(base.source["updated_at"]), 0)
        log.info("no checkpoint yet: checking every row (unchanged vectors are reused)")
        return None

    def _index(self, rows: Iterable[CatalogRow], live: str) -> set[int]:
        seen: set[int] = set()

        def remember(stream: Iterable[CatalogRow]) -> Iterator[CatalogRow]:
            for row in stream:
                seen.add(row.id)
                yield row

        reuse_from = None if self.options.recompute else live
        pairs = reuse.with_stored_vectors(
            remember(rows), self.es, reuse_from, min(self.source.page_size, reuse.LOOKUP_CHUNK_ROWS)
        )
        self.rows.index(pairs, self.alias, position=change_position, checkpoint=self._save_watermark)
        return seen

    def _save_watermark(self, tracker: CompletionTracker) -> None:
        """Compare-and-set, so a full rebuild that rebased the watermark meanwhile stops this run."""
        position = tracker.position
        if position is None:
            return
        body = {
            "kind": INCREMENTAL_CHECKPOINT_KIND,
            "updated_at": iso(position.updated_at),
            "id": position.id,
            "run_id": self.report.run_id,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        saved = self._checkpoint.source if self._checkpoint is not None else {}
        if (saved.get("updated_at"), saved.get("id")) == (body["updated_at"], body["id"]):
            return
        self._checkpoint = self.store.replace(self.checkpoint_id, body, self._checkpoint)

    def _retry_failed(self, seen: set[int]) -> None:
        """Rows whose documents record a failure get another chance (unless phase 1 just tried them)."""
        ids = [doc_id for doc_id in self.owned_ids(self.alias, FAILED_QUERY) if doc_id not in seen]
        if not ids:
            return
        found = {row.id: row for row in self.source.rows_by_ids(ids)}
        log.info("retrying %d failed rows (%d no longer in the catalog)", len(found), len(ids) - len(found))
        rows = [found.get(doc_id) or gone(doc_id) for doc_id in sorted(ids)]
        self.rows.index(((row, None) for row in rows), self.alias)

    def _sweep_deleted(self) -> None:
        """Delete documents whose rows are gone or soft-deleted: a merge of two sorted id lists."""
        orphans = list(missing_ids(self.owned_ids(self.alias), self.source.iter_live_ids()))
        if orphans:
            log.info("removing %d documents whose rows left the catalog", len(orphans))
            self.rows.index(((gone(doc_id), None) for doc_id in orphans), self.alias)

    def _check_failure_ratio(self) -> None:
        eligible = self.report.processed - self.report.deleted
        if eligible and self.report.failed / eligible > self.options.max_failure_ratio:
            raise ValidationFailed(
                f"{self.report.failed} of {eligible} changed rows failed, above --max-failure-ratio "
                f"{self.options.max_failure_ratio:.1%}; they stay recorded and are retried next run"
            )


def change_position(row: CatalogRow) -> ChangePosition:
    return ChangePosition(row.updated_at, row.id)  # type: ignore[arg-type]


def gone(row_id: int) -> CatalogRow:
    """A row that left the catalog: its document is deleted."""
    return CatalogRow(id=row_id, relation_id=None, photo=None, updated_at=None, deleted=True)


def missing_ids(indexed: Iterable[int], catalog: Iterable[int]) -> Iterator[int]:
    """Ids in `indexed` but not in `catalog`; both ascending, consumed once (constant memory)."""
    catalog_iter = iter(catalog)
    current = next(catalog_iter, None)
    for doc_id in indexed:
        while current is not None and current < doc_id:
            current = next(catalog_iter, None)
        if current != doc_id:
            yield doc_id


def live_index(es: Elasticsearch, alias: str, fingerprint: str) -> str:
    """The one index the alias serves, if it was built with these weights."""
    live = indices.aliased_indices(es, alias)
    if len(live) != 1:
        raise NoLiveIndex(f"alias {alias} points to {live or 'nothing'}; run `python -m indexer full` first")
    stored = indices.index_meta(es, live[0]).get("model", {}).get("fingerprint")
    if stored != fingerprint:
        raise IncompatibleIndex(
            f"{live[0]} was built with weights {stored}, this run has {fingerprint}: "
            "run `python -m indexer full` to rebuild with the new weights"
        )
    return live[0]
