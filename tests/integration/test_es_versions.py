"""Both supported majors (8.19 and 9.x, `make test` runs the suite on each): nothing degrades quietly.

On 9.2+ a new index leaves `dense_vector` values out of `_source` by default; vector reuse, search by
id, `GET /images/<id>` and the failed-row retry read `feature` back, and would silently find nothing.
"""

from __future__ import annotations

import os

import pytest
from elasticsearch.helpers import bulk, scan

from imgsearch.config import load_elastic_config
from imgsearch.esversion import VECTORS_LEFT_OUT_OF_SOURCE_FROM, parse_version
from imgsearch.indices import load_index_definition, server_version
from indexer.versions import swap_alias
from tests.integration.helpers import photo_entries, run_full, seed

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def version(es) -> tuple[int, int, int]:
    return parse_version(server_version(es))


def test_the_server_is_the_version_this_pass_expects(es):
    """make test's passes set ES_EXPECT_VERSION: a pass must not quietly run against the other node."""
    expected = os.environ.get("ES_EXPECT_VERSION")
    if not expected:
        pytest.skip("ES_EXPECT_VERSION not set (make test sets it for each pass)")
    assert server_version(es) == expected


@pytest.mark.usefixtures("drop_table")
def test_a_built_index_keeps_every_vector_in_its_source(es, extractor, env, version):
    seed(env, photo_entries(3, 1))
    report = run_full(env, extractor)

    settings = es.indices.get_settings(index=report.index, include_defaults=True).body[report.index]
    excluded = {**settings["defaults"], **settings["settings"]}.get("index", {}).get("mapping", {})
    if version >= VECTORS_LEFT_OUT_OF_SOURCE_FROM:
        assert excluded.get("exclude_source_vectors") == "false"
    docs = [es.get(index=report.index, id=str(row))["_source"] for row in (1, 2, 3)]
    assert [len(doc.get("feature") or []) for doc in docs] == [512, 512, 512]


@pytest.mark.usefixtures("drop_table")
def test_reuse_reads_vectors_from_an_index_that_leaves_them_out_of_source(es, extractor, env, version):
    """An index made with 9.2+'s default (not by this indexer) still gives its vectors to reuse."""
    if version < VECTORS_LEFT_OUT_OF_SOURCE_FROM:
        pytest.skip(f"Elasticsearch {'.'.join(map(str, version))} keeps vectors in _source")
    seed(env, photo_entries(3, 1))
    first = run_full(env, extractor)
    alias = env["ES_INDEX"]
    copy = f"{alias}-20000101t000000000z"
    body = load_index_definition(load_elastic_config(env), {})
    mapping = es.indices.get_mapping(index=first.index).body[first.index]["mappings"]
    body["mappings"]["_meta"] = mapping["_meta"]
    body["settings"]["index"]["mapping"] = {"exclude_source_vectors": True}
    es.indices.create(index=copy, settings=body["settings"], mappings=body["mappings"])
    docs = scan(es, index=first.index, query={"query": {"match_all": {}}})
    bulk(es, ({"_index": copy, "_id": d["_id"], "_source": d["_source"]} for d in docs), refresh=True)
    swap_alias(es, alias, copy)
    assert "feature" not in es.get(index=copy, id="1")["_source"]

    second = run_full(env, extractor)

    assert second.statuses == {"reused": 3}
