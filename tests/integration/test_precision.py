"""Both precisions on the real stack: an index built in one is reused and searched by the other."""

from __future__ import annotations

import time

import pytest

from searchapi import create_app
from tests.integration.helpers import (
    assert_each_photo_finds_itself,
    execute_sql,
    indexed_catalog,
    photo_entries,
    run_full,
    run_incremental,
    seed,
)

pytestmark = [pytest.mark.integration]

CROSSED = [("float32", "bfloat16"), ("bfloat16", "float32")]


@pytest.mark.parametrize(("built_in", "searched_in"), CROSSED)
def test_an_api_in_one_precision_searches_an_index_built_in_the_other(
    built_in, searched_in, stack_urls, extractor_in, image_server, photo_folder, es, tmp_path
):
    entries = photo_entries(4, 2)
    builder, searcher = extractor_in(built_in), extractor_in(searched_in)
    with indexed_catalog(stack_urls, builder, image_server, str(tmp_path), es, entries) as env:
        client = create_app(env, extractor=searcher).test_client()
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["compute"]["precision"] == searched_in
        stats = client.get("/stats").get_json()
        assert stats["model_matches"] is True and stats["compute"]["precision"] == searched_in
        assert stats["indices"][0]["compute"]["precision"] == built_in
        assert_each_photo_finds_itself(client, photo_folder, entries, 0.999)


@pytest.mark.parametrize(("first", "then"), CROSSED)
def test_vectors_are_reused_across_precisions(first, then, env, extractor_in, drop_table, es):
    """The weights fingerprint ignores precision: a machine of the other CPU type reuses every vector,
    and its incremental run recomputes only the changed row, in its own precision."""
    entries = photo_entries(4, 2)
    seed(env, entries)
    built = run_full(env, extractor_in(first))
    assert built.statuses == {"indexed": len(entries)} and built.compute["precision"] == first
    rebuilt = run_full(env, extractor_in(then))
    assert rebuilt.statuses == {"reused": len(entries)}
    assert rebuilt.compute["precision"] == then
    meta = es.indices.get_mapping(index=env["ES_INDEX"]).body
    (mapping,) = meta.values()
    assert mapping["mappings"]["_meta"]["compute"]["precision"] == then
    execute_sql(env, "UPDATE `{table}` SET updated_at = NOW() WHERE id = 3")
    time.sleep(1.1)  # past the change lag (1 s in tests)
    changed = run_incremental(env, extractor_in(then))
    assert changed.statuses == {"indexed": 1} and changed.compute["precision"] == then
