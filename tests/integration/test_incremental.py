"""`indexer incremental` against the real MariaDB and Elasticsearch: changes, deletes, retries, watermark."""

from __future__ import annotations

import shutil
import time

import pytest

from demo.catalog import CatalogEntry
from imgsearch import esclient, indices
from indexer.incremental import IncompatibleIndex
from indexer.state import StateStore
from tests.integration.helpers import execute_sql, photo_entries, run_full, run_incremental, seed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_table")]


@pytest.fixture
def extractor(extractor_per_precision):
    """Every test here runs in both precisions (float32 and bfloat16)."""
    return extractor_per_precision


def documents(es, alias: str) -> dict[int, dict]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=1000, source_excludes=["feature"])["hits"]["hits"]
    return {int(hit["_id"]): hit["_source"] for hit in hits}


def touch(env: dict[str, str], where: str, assignments: str = "", params: tuple = ()) -> None:
    """Change rows now, then wait so the database clock has moved past the change."""
    extra = f"{assignments}, " if assignments else ""
    execute_sql(env, f"UPDATE `{{table}}` SET {extra}updated_at = NOW() WHERE {where}", params)
    time.sleep(1.1)


def test_nothing_changed_means_nothing_done(es, extractor, env):
    seed(env, photo_entries(2, 2))
    run_full(env, extractor)
    report = run_incremental(env, extractor)
    assert report.processed == 0 and report.outcome == "succeeded"
    assert "model" not in report.stage_seconds


def test_updates_inserts_and_hard_deletes_reach_the_live_index(es, extractor, env):
    seed(env, photo_entries(4, 2))
    full = run_full(env, extractor)
    touch(env, "id = 2", "photo = %s", ("p003-coffee-front.jpg",))
    execute_sql(
        env,
        "INSERT INTO `{table}` (id, relation_id, photo, updated_at) VALUES (9, 'product-009', %s, NOW())",
        ("p001-astronaut-crop.jpg",),
    )
    execute_sql(env, "DELETE FROM `{table}` WHERE id = 4")
    time.sleep(1.1)

    report = run_incremental(env, extractor)

    assert report.statuses == {"indexed": 2, "deleted": 1}
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [full.index]  # same physical index, updated
    docs = documents(es, env["ES_INDEX"])
    assert sorted(docs) == [1, 2, 3, 5, 6, 7, 8, 9]
    assert docs[2]["photo"] == "p003-coffee-front.jpg" and docs[9]["status"] == "indexed"
    assert run_incremental(env, extractor).processed == 0  # the watermark moved past them


def test_rows_sharing_a_timestamp_are_not_skipped_across_pages(es, extractor, env):
    seed(env, photo_entries(3, 2))
    run_full(env, extractor)
    execute_sql(env, "UPDATE `{table}` SET updated_at = NOW() WHERE id IN (2, 3, 4, 5)")
    time.sleep(1.1)

    report = run_incremental(env, extractor, page_size=1)

    assert report.statuses == {"indexed": 4}
    assert run_incremental(env, extractor, page_size=1).processed == 0


def test_rows_changed_within_the_lag_wait_for_a_later_run(es, extractor, env):
    seed(env, photo_entries(2, 1))
    run_full(env, extractor)
    touch(env, "id = 1")

    waiting = run_incremental({**env, "INDEXER_CHANGE_LAG_SECONDS": "3600"}, extractor)
    picked = run_incremental(env, extractor)

    assert waiting.processed == 0
    assert picked.statuses == {"indexed": 1}


def test_soft_deleted_rows_are_removed_and_never_indexed(es, extractor, env):
    seed(env, photo_entries(3, 1))
    execute_sql(env, "ALTER TABLE `{table}` ADD COLUMN is_deleted TINYINT NOT NULL DEFAULT 0")
    execute_sql(env, "UPDATE `{table}` SET is_deleted = 1, updated_at = '2026-01-01' WHERE id = 3")
    env = {**env, "MYSQL_DELETED_COLUMN": "is_deleted"}

    full = run_full(env, extractor)
    assert full.statuses == {"indexed": 2, "deleted": 1}
    touch(env, "id = 1", "is_deleted = 1")
    report = run_incremental(env, extractor)

    assert report.statuses == {"deleted": 1}
    assert sorted(documents(es, env["ES_INDEX"])) == [2]


def test_failed_rows_are_retried_by_the_next_run(es, extractor, env, photo_folder):
    late = photo_folder / "late-arrival.jpg"
    seed(env, [*photo_entries(2, 1), CatalogEntry(3, "product-late", late.name)])
    first = run_full(env, extractor, max_failure_ratio=1.0)
    assert first.statuses == {"indexed": 2, "download_failed": 1}
    shutil.copy(photo_folder / "p001-astronaut-front.jpg", late)
    try:
        report = run_incremental(env, extractor)
    finally:
        late.unlink()
    assert report.statuses == {"indexed": 1}
    assert documents(es, env["ES_INDEX"])[3]["status"] == "indexed"


def test_a_full_rebuild_rebases_the_incremental_watermark(es, extractor, env):
    seed(env, photo_entries(2, 2))
    run_full(env, extractor)
    touch(env, "id = 1")
    run_incremental(env, extractor)
    store = StateStore(es, env["ES_INDEX"])
    assert store.get("checkpoint:incremental:all") is not None

    rebuilt = run_full(env, extractor)

    assert rebuilt.statuses == {"reused": 4}
    assert store.get("checkpoint:incremental:all") is None
    assert store.get("incremental-base") is not None
    assert run_incremental(env, extractor).processed == 0


def test_partitions_share_a_full_build_and_split_incremental_work(es, extractor, env):
    from indexer.partition import Partition

    seed(env, photo_entries(3, 2))
    first = run_full(env, extractor, partition=Partition(0, 2))
    assert first.outcome == "partition_done"
    assert indices.aliased_indices(es, env["ES_INDEX"]) == []
    second = run_full(env, extractor, partition=Partition(1, 2))
    assert second.outcome == "succeeded" and second.index == first.index
    assert sorted(documents(es, env["ES_INDEX"])) == [1, 2, 3, 4, 5, 6]
    assert first.statuses == {"indexed": 3} and second.statuses == {"indexed": 3}

    touch(env, "id IN (1, 2)")
    even = run_incremental(env, extractor, partition=Partition(0, 2))
    odd = run_incremental(env, extractor, partition=Partition(1, 2))
    assert even.statuses == {"indexed": 1} and odd.statuses == {"indexed": 1}


def test_incremental_refuses_an_index_built_with_other_weights(es, extractor, env):
    from imgsearch.features import FeatureExtractor

    seed(env, photo_entries(1, 1))
    run_full(env, extractor)
    other = FeatureExtractor("random", seed=99)
    with pytest.raises(IncompatibleIndex):
        run_incremental(env, other)


def test_dry_run_plans_without_writing(es, extractor, env):
    from indexer.config import load_indexer_config
    from indexer.full import FullRebuild
    from indexer.incremental import IncrementalRun
    from indexer.plan import plan_full, plan_incremental
    from indexer.source import CatalogSource

    seed(env, photo_entries(3, 1))
    full = run_full(env, extractor)
    touch(env, "id = 1")
    execute_sql(env, "DELETE FROM `{table}` WHERE id = 3")
    config = load_indexer_config(env)
    client = esclient.make_client(config.elastic)
    source = CatalogSource(config.mysql)
    try:
        full_plan = plan_full(FullRebuild(config, client, source, extractor))
        incremental_plan = plan_incremental(IncrementalRun(config, client, source, extractor))
    finally:
        source.close()

    assert full_plan["would_reuse"] == 1 and full_plan["would_compute"] == 1 and full_plan["rows"] == 2
    assert incremental_plan["changed_rows"] == 1 and incremental_plan["would_compute"] == 1
    assert incremental_plan["documents_to_delete"] == 1
    assert indices.list_versions(es, env["ES_INDEX"]) == [full.index]
    assert sorted(documents(es, env["ES_INDEX"])) == [1, 2, 3]
