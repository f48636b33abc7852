"""`--dry-run`: what a run would do, read from the catalog and the index, changing nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from imgsearch import indices
from imgsearch.documents import CatalogRow
from indexer import reuse
from indexer.fetch import resolve_photo
from indexer.full import FullRebuild
from indexer.incremental import FAILED_QUERY, IncrementalRun, live_index, missing_ids


def classify(rows: Iterable[tuple[CatalogRow, reuse.StoredVector | None]], base_url: str) -> Counter:
    """Count what would happen to each row: reuse, compute, delete, or fail before download."""
    plan: Counter = Counter()
    for row, stored in rows:
        if row.deleted:
            plan["would_delete"] += 1
        elif not (row.relation_id or "").strip():
            plan["would_fail_invalid_row"] += 1
        else:
            try:
                url = resolve_photo(row.photo or "", base_url)
            except Exception:  # noqa: BLE001 - any unresolvable photo fails its row
                plan["would_fail_invalid_row"] += 1
                continue
            plan["would_reuse" if reuse.is_unchanged(stored, url, row) else "would_compute"] += 1
    return plan


def plan_full(run: FullRebuild) -> dict[str, object]:
    build = run.store.get(run.build_id) if run.es.indices.exists(index=run.store.index) else None
    rows = reuse.with_stored_vectors(run.source.iter_rows(limit=run.options.limit), run.es, run.reuse_index())
    plan = classify(rows, run.config.fetch.base_url)
    return {
        **plan,
        "rows": sum(plan.values()),
        "unfinished_build": build.source["index"] if build else None,
        "alias_now": indices.aliased_indices(run.es, run.alias),
    }


def plan_incremental(run: IncrementalRun) -> dict[str, object]:
    live = live_index(run.es, run.alias, run.extractor.info.fingerprint)
    has_state = run.es.indices.exists(index=run.store.index)
    start = run.start_position() if has_state else None
    until = run.changes_until()
    changed = run.source.iter_changes(start, until, limit=run.options.limit)
    reuse_from = None if run.options.recompute else live
    plan = classify(reuse.with_stored_vectors(changed, run.es, reuse_from), run.config.fetch.base_url)
    failed = sum(1 for _ in run.owned_ids(live, FAILED_QUERY))
    orphans = sum(1 for _ in missing_ids(run.owned_ids(live), run.source.iter_live_ids()))
    return {
        **plan,
        "changed_rows": sum(plan.values()),
        "changes_after": {"updated_at": str(start.updated_at), "id": start.id} if start else None,
        "changes_until": str(until),
        "failed_rows_to_retry": failed,
        "documents_to_delete": orphans,
        "live_index": live,
    }
