"""A rebuild reuses unchanged vectors from the live index instead of downloading and running VGG16."""

from __future__ import annotations

import pytest

from demo.catalog import CatalogEntry
from indexer.config import load_indexer_config
from indexer.source import connect
from tests.integration.helpers import photo_entries, run_full, seed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_table")]


@pytest.fixture
def extractor(extractor_per_precision):
    """Every test here runs in both precisions (float32 and bfloat16)."""
    return extractor_per_precision


def vectors(es, index: str) -> dict[str, list[float]]:
    hits = es.search(index=index, size=100, source=["feature"])["hits"]["hits"]
    return {hit["_id"]: hit["_source"].get("feature") for hit in hits}


def touch_row(env: dict[str, str], row_id: int) -> None:
    config = load_indexer_config(env).mysql
    connection = connect(config)
    connection.cursor().execute(
        f"UPDATE `{config.table}` SET updated_at = '2026-06-01 12:00:00' WHERE id = %s", (row_id,)
    )
    connection.close()


def test_unchanged_rows_reuse_vectors_without_model_or_download(es, extractor, env):
    seed(env, photo_entries(3, 1))
    first = run_full(env, extractor)
    second = run_full(env, extractor)

    assert first.statuses == {"indexed": 3}
    assert second.statuses == {"reused": 3}
    assert "model" not in second.stage_seconds and "fetch" not in second.stage_seconds
    assert vectors(es, second.index) == vectors(es, first.index)


def test_changed_row_is_recomputed_and_the_rest_reused(es, extractor, env):
    seed(env, photo_entries(3, 1))
    run_full(env, extractor)
    touch_row(env, 2)
    report = run_full(env, extractor)
    assert report.statuses == {"indexed": 1, "reused": 2}
    assert es.get(index=report.index, id="2")["_source"]["status"] == "indexed"


def test_changed_photo_url_is_recomputed(es, extractor, env):
    entries = photo_entries(2, 2)
    seed(env, [entries[0], entries[2]])
    run_full(env, extractor)
    seed(env, [CatalogEntry(1, entries[0].relation_id, entries[1].photo), entries[2]])
    report = run_full(env, extractor)
    assert report.statuses == {"indexed": 1, "reused": 1}


def test_recompute_flag_forces_fresh_vectors(extractor, env):
    seed(env, photo_entries(2, 1))
    run_full(env, extractor)
    assert run_full(env, extractor, recompute=True).statuses == {"indexed": 2}


def test_other_weights_disable_reuse(extractor, env):
    from imgsearch.features import FeatureExtractor

    seed(env, photo_entries(2, 1))
    run_full(env, extractor)
    other = FeatureExtractor("random", seed=4321)
    report = run_full(env, other)
    assert report.statuses == {"indexed": 2}
    assert report.model["fingerprint"] == other.info.fingerprint


def test_failed_rows_are_retried_not_reused(extractor, env):
    entries = [*photo_entries(1, 1), CatalogEntry(2, "product-x", "no-such-photo.jpg")]
    seed(env, entries)
    run_full(env, extractor, max_failure_ratio=1.0)
    report = run_full(env, extractor, max_failure_ratio=1.0)
    assert report.statuses == {"reused": 1, "download_failed": 1}
    assert "fetch" in report.stage_seconds
