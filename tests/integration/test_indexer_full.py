"""`indexer full` against the real MariaDB/MySQL and Elasticsearch, images over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.catalog import CatalogEntry
from imgsearch import indices
from indexer.lockedrun import ValidationFailed
from tests.integration.helpers import photo_entries, run_cli, run_full, seed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_table")]


def with_broken_rows(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    next_id = entries[-1].id + 1
    return [
        *entries,
        CatalogEntry(next_id, "product-broken", "corrupt.jpg"),
        CatalogEntry(next_id + 1, "product-missing", "no-such-photo.jpg"),
    ]


def test_full_indexes_every_row_with_a_status(es, extractor, env):
    seed(env, with_broken_rows(photo_entries()))

    report = run_full(env, extractor, batch_size=3, workers=4, page_size=3, max_failure_ratio=0.5)

    assert report.rows_seen == 10
    assert report.statuses == {"indexed": 8, "decode_failed": 1, "download_failed": 1}
    assert report.errors == {"decode_failed:truncated": 1, "download_failed:http_404": 1}
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [report.index]
    assert es.count(index=env["ES_INDEX"])["count"] == 10
    missing = es.get(index=env["ES_INDEX"], id="10")["_source"]
    assert missing["status"] == "download_failed"
    assert "404" in missing["error_message"]
    assert "feature" not in missing
    indexed = es.get(index=env["ES_INDEX"], id="3")["_source"]
    assert indexed["status"] == "indexed" and len(indexed["feature"]) == 512
    assert indexed["image_url"] == env["IMAGE_BASE_URL"] + "p002-chelsea-front.jpg"


@pytest.mark.parametrize("vector_type", ["int8_flat", "bbq_hnsw"])
def test_every_vector_type_makes_a_valid_index(es, extractor, env, vector_type):
    env = {**env, "ES_VECTOR_INDEX_TYPE": vector_type}
    seed(env, photo_entries(2, 1))
    report = run_full(env, extractor)

    assert report.outcome == "succeeded"
    feature = es.indices.get_mapping(index=report.index)[report.index]["mappings"]["properties"]["feature"]
    assert feature["index_options"]["type"] == vector_type


def test_index_carries_model_meta_and_explicit_vector_options(es, extractor, env):
    env = {**env, "ES_VECTOR_INDEX_TYPE": "hnsw"}
    seed(env, photo_entries(2, 1))
    report = run_full(env, extractor)

    mapping = es.indices.get_mapping(index=report.index)[report.index]["mappings"]
    assert mapping["_meta"]["model"]["fingerprint"] == extractor.info.fingerprint
    assert mapping["_meta"]["model"]["weights"] == "random"
    feature = mapping["properties"]["feature"]
    assert feature["similarity"] == "dot_product"
    assert feature["index_options"]["type"] == "hnsw"
    settings = es.indices.get_settings(index=report.index)[report.index]["settings"]["index"]
    assert settings["refresh_interval"] == "1s"


def test_keyset_paging_reads_every_row_once(es, extractor, env):
    entries = photo_entries(4, 2)
    seed(env, entries[:7])
    report = run_full(env, extractor, page_size=2, batch_size=4)
    assert report.rows_seen == 7 and report.statuses == {"indexed": 7}
    ids = sorted(int(hit["_id"]) for hit in es.search(index=env["ES_INDEX"], size=20)["hits"]["hits"])
    assert ids == [1, 2, 3, 4, 5, 6, 7]


def test_second_run_swaps_alias_and_applies_retention(es, extractor, env):
    env = {**env, "INDEXER_KEEP_VERSIONS": "1"}
    seed(env, photo_entries(2, 1))
    first = run_full(env, extractor)
    second = run_full(env, extractor)

    assert second.index != first.index
    assert second.previous_indices == [first.index]
    assert second.deleted_indices == [first.index]
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [second.index]
    assert not es.indices.exists(index=first.index)


def test_retention_keeps_previous_version_for_rollback(es, extractor, env):
    env = {**env, "INDEXER_KEEP_VERSIONS": "2"}
    seed(env, photo_entries(1, 1))
    first = run_full(env, extractor)
    run_full(env, extractor)
    third = run_full(env, extractor)
    versions = indices.list_versions(es, env["ES_INDEX"])
    assert versions[0] == third.index and len(versions) == 2
    assert first.index not in versions


def test_validation_failure_leaves_alias_untouched(es, extractor, env):
    seed(env, photo_entries(2, 1))
    good = run_full(env, extractor)
    seed(env, with_broken_rows(photo_entries(2, 1)))

    with pytest.raises(ValidationFailed, match="max-failure-ratio"):
        run_full(env, extractor, max_failure_ratio=0.0)
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [good.index]
    assert len(indices.list_versions(es, env["ES_INDEX"])) == 2


def test_cli_full_run_writes_report_and_exits_zero(es, env, tmp_path):
    seed(env, photo_entries(2, 1))
    result = run_cli(env, "full", "--batch-size", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "statuses: indexed=2" in result.stderr
    reports = list(Path(env["INDEXER_REPORT_DIR"]).glob("report-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["outcome"] == "succeeded" and report["statuses"] == {"indexed": 2}
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [report["index"]]


def test_cli_with_elasticsearch_unreachable_exits_one_and_changes_nothing(catalog_env):
    env = {**catalog_env, "ES_URL": "http://127.0.0.1:9", "ES_REQUEST_TIMEOUT": "2"}
    seed(env, photo_entries(1, 1))
    result = run_cli(env, "full")
    assert result.returncode == 1
    assert "Elasticsearch at http://127.0.0.1:9 is not reachable" in result.stderr


def test_cli_names_the_bad_variable(catalog_env):
    result = run_cli({**catalog_env, "MYSQL_URL": "postgres://nope"}, "full")
    assert result.returncode == 2
    assert "MYSQL_URL" in result.stderr
