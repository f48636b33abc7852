"""`full`: build a new versioned index (resumable, shareable by partitions), validate, swap the alias."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from imgsearch import indices
from imgsearch.documents import iso
from imgsearch.errors import FAILURE_STATUSES, SUCCESS_STATUSES, RowStatus
from indexer import reuse, versions
from indexer.lockedrun import LockedRun, ValidationFailed
from indexer.pipeline import CompletionTracker
from indexer.report import RunReport, Stopwatch
from indexer.state import StateConflict, Versioned

log = logging.getLogger(__name__)

BUILD_KIND = "build"
FULL_CHECKPOINT_KIND = "full-checkpoint"
INCREMENTAL_CHECKPOINT_KIND = "incremental-checkpoint"
INCREMENTAL_BASE_ID = "incremental-base"


class FullRebuild(LockedRun):
    """Builds a new versioned index from every catalog row and swaps the alias to it.

    The build is recorded in the state index (`build:<N>`), so a killed run, or the other N-1
    partitions, continue in the same index; each partition checkpoints the last id it has fully
    written. The partition that completes the set validates and swaps.
    """

    mode = "full"

    def _start_state(self) -> None:
        self.build_id = f"build:{self.partition.count}"
        self.checkpoint_id = f"checkpoint:full:{self.partition.key}"
        self.carried: Counter = Counter()
        self.carried_rows = 0
        self.start_after = 0

    def _run_locked(self) -> RunReport:
        build = self._open_build()
        index = build.source["index"]
        self.report.index = index
        self._resume_point(index)
        rows = reuse.with_stored_vectors(
            self.source.iter_rows(after_id=self.start_after, limit=self.options.limit),
            self.es,
            self.reuse_index(),
            chunk_rows=min(self.source.page_size, reuse.LOOKUP_CHUNK_ROWS),
        )
        self.rows.index(rows, index, checkpoint=self._save_checkpoint)
        done = self._mark_partition_done()
        if len(done) < self.partition.count:
            waiting = sorted(set(range(self.partition.count)) - {int(key) for key in done})
            self.report.finish("partition_done", f"partition {self.partition} written; waiting for {waiting}")
            return self.report
        self._finalize(self.store.get(self.build_id) or build, done)
        return self.report

    # --- the shared build -------------------------------------------------------------------------

    def _open_build(self) -> Versioned:
        """The unfinished build of this partition layout, or a new one."""
        current = self.store.get(self.build_id)
        if current is not None and self._usable(current):
            log.info("continuing the unfinished build %s", current.source["index"])
            self._ensure_index(current.source["index"])
            return current
        if current is not None:
            self.store.delete(self.build_id, current)
        now = datetime.now(UTC)
        body = {
            "kind": BUILD_KIND,
            "index": indices.version_name(self.alias, now),
            "partitions": self.partition.count,
            "db_started_at": iso(self.source.now()),
            "run_id": self.report.run_id,
            "fingerprint": self.extractor.info.fingerprint,
            "done": {},
        }
        build = self.store.create(self.build_id, body) or self.store.get(self.build_id)
        if build is None:
            raise StateConflict("the build document vanished while it was being created")
        self._ensure_index(build.source["index"])
        return build

    def _usable(self, build: Versioned) -> bool:
        """Same weights, and its index still exists (or it was only just claimed)."""
        if build.source.get("fingerprint") != self.extractor.info.fingerprint:
            log.warning("discarding unfinished build %s: other model weights", build.source["index"])
            return False
        if self.es.indices.exists(index=build.source["index"]):
            return True
        return not build.source.get("done")

    def _ensure_index(self, index: str) -> None:
        if self.es.indices.exists(index=index):
            return
        try:
            versions.create_build_index(self.es, index, self._definition())
        except Exception:
            if not self.es.indices.exists(index=index):  # another partition created it first: fine
                raise

    def _definition(self) -> dict[str, Any]:
        meta = {
            "model": self.extractor.info.as_meta(),
            "compute": self.report.compute,
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": "indexer full",
            "run_id": self.report.run_id,
        }
        return indices.load_index_definition(self.config.elastic, meta)

    def reuse_index(self) -> str | None:
        if self.options.recompute:
            log.info("--recompute: every vector is computed again")
            return None
        return reuse.reuse_source(self.es, self.alias, self.extractor.info.fingerprint)

    # --- checkpoints ------------------------------------------------------------------------------

    def _resume_point(self, index: str) -> None:
        """Continue after this partition's checkpoint; drop documents written past it."""
        checkpoint = self.store.get(self.checkpoint_id)
        if checkpoint is not None and checkpoint.source.get("index") == index:
            self.start_after = int(checkpoint.source["after_id"])
            self.carried = Counter(checkpoint.source.get("statuses", {}))
            self.carried_rows = int(checkpoint.source.get("rows_seen", 0))
        removed = self._remove_documents_after(index, self.start_after)
        if self.start_after or removed:
            self.report.resumed_from = {
                "after_id": self.start_after,
                "rows_done": self.carried_rows,
                "stray_documents_removed": removed,
            }
            log.info("resuming %s after id %s (%d stray documents removed)", index, self.start_after, removed)

    def _remove_documents_after(self, index: str, after_id: int) -> int:
        """Documents of this partition beyond the checkpoint were written by a killed run: start clean."""
        self.es.indices.refresh(index=index)
        query = {"range": {"source_id": {"gt": after_id}}}
        stray = list(self.owned_ids(index, query))
        if stray:
            actions = ({"_op_type": "delete", "_index": index, "_id": str(doc_id)} for doc_id in stray)
            bulk(self.es, actions, raise_on_error=False, refresh=True)
        return len(stray)

    def _totals(self, tracker: CompletionTracker) -> tuple[Counter, int]:
        return self.carried + tracker.prefix_statuses, self.carried_rows + tracker.prefix_rows

    def _save_checkpoint(self, tracker: CompletionTracker) -> None:
        statuses, rows = self._totals(tracker)
        self.store.put(
            self.checkpoint_id,
            {
                "kind": FULL_CHECKPOINT_KIND,
                "index": self.report.index,
                "after_id": tracker.position if tracker.position is not None else self.start_after,
                "statuses": dict(statuses),
                "rows_seen": rows,
                "run_id": self.report.run_id,
                "saved_at": datetime.now(UTC).isoformat(),
            },
        )

    def _mark_partition_done(self) -> dict[str, Any]:
        """Record this partition's totals in the build document; return every finished partition."""
        checkpoint = self.store.get(self.checkpoint_id)
        totals = {"statuses": checkpoint.source["statuses"], "rows_seen": checkpoint.source["rows_seen"]}
        for _ in range(20):
            build = self.store.get(self.build_id)
            if build is None:
                raise StateConflict("the build document disappeared (another run finished or reset it)")
            done = {**build.source.get("done", {}), str(self.partition.index): totals}
            try:
                self.store.replace(self.build_id, {**build.source, "done": done}, build)
                return done
            except StateConflict:
                continue
        raise StateConflict("could not record the partition as done: too much contention")

    # --- validate and swap ------------------------------------------------------------------------

    def _finalize(self, build: Versioned, done: dict[str, Any]) -> None:
        index = build.source["index"]
        statuses = sum((Counter(part["statuses"]) for part in done.values()), Counter())
        rows_seen = sum(int(part["rows_seen"]) for part in done.values())
        with Stopwatch(self.report, "finalize"):
            versions.finish_build_index(self.es, index, self._definition())
            try:
                validate_build(self.es, index, statuses, rows_seen, self.options.max_failure_ratio)
            except ValidationFailed:
                self._forget_build(build)
                raise
            self.report.previous_indices = versions.swap_alias(self.es, self.alias, index)
            self._rebase_incremental(build)
            self._forget_build(build)
            self.report.deleted_indices = versions.delete_old_versions(
                self.es, self.alias, self.config.keep_versions
            )
        self.report.finish("succeeded", f"alias {self.alias} now points to {index}")

    def _rebase_incremental(self, build: Versioned) -> None:
        """Incremental runs restart from this build's start (minus the lag): nothing changed since is lost."""
        for doc_id in self.store.ids_of_kind(INCREMENTAL_CHECKPOINT_KIND):
            self.store.delete(doc_id)
        started = datetime.fromisoformat(build.source["db_started_at"])
        since = started - timedelta(seconds=self.config.run.change_lag_seconds)
        self.store.put(INCREMENTAL_BASE_ID, {"kind": "incremental-base", "updated_at": iso(since)})

    def _forget_build(self, build: Versioned) -> None:
        """The build is over (swapped, or kept only for inspection): the next `full` starts afresh."""
        for doc_id in self.store.ids_of_kind(FULL_CHECKPOINT_KIND):
            self.store.delete(doc_id)
        self.store.delete(self.build_id)


def validate_build(
    es: Elasticsearch, index: str, statuses: Counter, rows_seen: int, max_failure_ratio: float
) -> None:
    """Refuse to swap an index that is empty, incomplete, too failed, or unsearchable."""
    processed = sum(statuses.values())
    if processed != rows_seen:
        raise ValidationFailed(f"{rows_seen} rows read but {processed} accounted")
    eligible = processed - statuses[RowStatus.DELETED.value]
    if eligible == 0:
        raise ValidationFailed("the catalog returned no rows; refusing to serve an empty index")
    stored = es.count(index=index)["count"]
    expected = eligible - statuses[RowStatus.INDEX_FAILED.value]
    if stored != expected:
        raise ValidationFailed(f"index holds {stored} documents, expected {expected}")
    failed = sum(statuses[status.value] for status in FAILURE_STATUSES)
    if failed / eligible > max_failure_ratio:
        raise ValidationFailed(
            f"{failed} of {eligible} rows failed ({failed / eligible:.1%}), "
            f"above --max-failure-ratio {max_failure_ratio:.1%}"
        )
    check_mapping(es, index)
    check_sample_query(es, index)


def check_mapping(es: Elasticsearch, index: str) -> None:
    """The index has the vector field and the `_meta` the API checks before serving it."""
    mapping = es.indices.get_mapping(index=index).body[index]["mappings"]
    feature = mapping.get("properties", {}).get("feature", {})
    if feature.get("type") != "dense_vector" or feature.get("dims") != 512:
        raise ValidationFailed(f"unexpected mapping of `feature` in {index}: {feature}")
    if not mapping.get("_meta", {}).get("model", {}).get("fingerprint"):
        raise ValidationFailed(f"{index} has no model fingerprint in its _meta")


def check_sample_query(es: Elasticsearch, index: str) -> None:
    searchable = {"terms": {"status": sorted(status.value for status in SUCCESS_STATUSES)}}
    sample = es.search(index=index, size=1, query=searchable, source=["feature"])
    hits = sample["hits"]["hits"]
    if not hits:
        raise ValidationFailed("no searchable document in the new index")
    vector = hits[0]["_source"]["feature"]
    knn = {"field": "feature", "query_vector": vector, "k": 1, "num_candidates": 10}
    if not es.search(index=index, knn=knn, size=1)["hits"]["hits"]:
        raise ValidationFailed("a sample kNN query on the new index returned no hit")
