"""The Kibana saved objects against what the indexer really writes: every field a data view, Lens layer
or saved search names (kibana.fields) exists in `_field_caps` of the image alias or of `<alias>-runs`
with a type that fits its use, and the runs document of a run with a failed row counts it.

No Kibana runs here; Kibana builds its queries from `_field_caps` too, so a field missing there is a
panel that shows nothing (or an error) in a real Kibana. No runtime field, no script: the local
integ-test Elasticsearch has no Painless, and these checks pass on it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from demo.catalog import CatalogEntry
from imgsearch.indices import runs_index
from indexer.report import ROW_COUNTS
from kibana import fields as kibana_fields
from kibana import setup
from tests.integration.helpers import execute_sql, indexed_catalog, photo_entries

pytestmark = [pytest.mark.integration]

NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}
TYPES = {
    kibana_fields.DATE: {"date", "date_nanos"},
    kibana_fields.NUMBER: NUMERIC,
    kibana_fields.KEYWORD: {"keyword", "constant_keyword", "wildcard"},
}


@pytest.fixture(scope="module")
def catalog(stack_urls, extractor, image_server, tmp_path_factory, es):
    """Two photos and one corrupt image (decode_failed), indexed by `full`, the report recorded."""
    entries = [*photo_entries(2, 1), CatalogEntry(3, "product-003", "corrupt.jpg")]
    reports = str(tmp_path_factory.mktemp("reports"))
    with indexed_catalog(
        stack_urls,
        extractor,
        image_server,
        reports,
        es,
        entries,
        "test-kibana",
        True,
        max_failure_ratio=0.5,
    ) as env:
        try:
            yield env
        finally:
            execute_sql(env, "DROP TABLE IF EXISTS `{table}`")


def saved_objects(alias: str) -> list[dict[str, Any]]:
    """kibana/saved_objects.ndjson rewritten for the alias, as `make kibana-setup` imports it."""
    return setup.for_alias(setup.load_objects(setup.DEFAULT_FILE.read_text()), alias)


def mapped_paths(properties: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for name, spec in properties.items():
        paths.add(prefix + name)
        paths |= mapped_paths(spec.get("properties", {}), f"{prefix}{name}.")
    return paths


def problems(es, objects: list[dict[str, Any]]) -> list[str]:
    """One line per referenced field that `_field_caps` (or, for a source filter, the mapping) of the
    data view's pattern lacks or types wrongly; [] when every field fits."""
    patterns = {obj["id"]: obj["attributes"]["title"] for obj in objects if obj["type"] == "index-pattern"}
    uses_by_pattern: dict[str, list[kibana_fields.FieldUse]] = defaultdict(list)
    for use in kibana_fields.referenced_fields(objects):
        uses_by_pattern[patterns[use.data_view]].append(use)
    found = []
    for pattern, uses in uses_by_pattern.items():
        caps = es.field_caps(index=pattern, fields=sorted({use.field for use in uses}))["fields"]
        mappings = es.indices.get_mapping(index=pattern).body.values()
        source_paths = set().union(*(mapped_paths(m["mappings"].get("properties", {})) for m in mappings))
        for use in uses:
            found += misfit(use, pattern, caps.get(use.field), source_paths)
    return found


def misfit(use: kibana_fields.FieldUse, pattern: str, caps: dict | None, source_paths: set[str]) -> list[str]:
    where = f"{use.where}: {pattern} field {use.field}"
    if use.needs == kibana_fields.SOURCE:
        return [] if use.field in source_paths else [f"{where} is not in the mapping"]
    if not caps:
        return [f"{where} is missing from _field_caps"]
    types = set(caps)
    if use.needs in TYPES and not types <= TYPES[use.needs]:
        return [f"{where} is {sorted(types)}, not {use.needs}"]
    aggregating = use.needs in (kibana_fields.NUMBER, kibana_fields.KEYWORD, kibana_fields.AGGREGATABLE)
    aggregating |= use.needs == kibana_fields.DATE
    if aggregating and not all(cap["aggregatable"] for cap in caps.values()):
        return [f"{where} is not aggregatable"]
    return []


def test_every_field_the_saved_objects_name_exists_with_a_fitting_type(es, catalog):
    objects = saved_objects(catalog["ES_INDEX"])
    assert problems(es, objects) == []
    uses = kibana_fields.referenced_fields(objects)
    assert len(uses) > 40 and {use.needs for use in uses} >= {"date", "number", "keyword", "source"}
    assert {f"rows.{name}" for name in ROW_COUNTS} - {"rows.succeeded", "rows.failed"} <= {
        use.field for use in uses
    }
    assert kibana_fields.scripted_parts(objects) == []


def test_the_check_names_missing_and_mistyped_fields(es, catalog):
    """What the test above catches: a renamed field, a terms column on text, a time field that is no
    date, a sum over a keyword, a column of the image data view that is no field, a source filter on
    nothing."""
    objects = saved_objects(catalog["ES_INDEX"])
    by_title = {obj["attributes"]["title"]: obj for obj in objects}
    runs_view = next(obj for obj in objects if obj["id"].endswith("-dv-runs"))
    runs_view["attributes"]["timeFieldName"] = "run_id"
    runs_view["attributes"]["sourceFilters"] = json.dumps([{"value": "nothing_here"}])
    status_lens = by_title[f"[{catalog['ES_INDEX']}] Rows per status over time"]
    columns = status_lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer-statuses"][
        "columns"
    ]
    columns["col-decode_failed"]["sourceField"] = "rows.decode_fail"
    columns["col-indexed"]["sourceField"] = "mode"
    outcome_lens = by_title[f"[{catalog['ES_INDEX']}] Runs by outcome"]
    layer = outcome_lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer-outcomes"]
    layer["columns"]["col-outcome"]["sourceField"] = "message"
    failed_rows = by_title[f"[{catalog['ES_INDEX']}] Failed rows"]
    failed_rows["attributes"]["columns"].append("error_text")

    found = "\n".join(problems(es, objects))
    runs = runs_index(catalog["ES_INDEX"])
    assert "field rows.decode_fail is missing" in found
    assert f"{runs} field run_id is ['keyword'], not date" in found
    assert f"{runs} field mode is ['keyword'], not number" in found
    assert f"{runs} field message is ['text'], not keyword" in found
    assert f"{runs} field nothing_here is not in the mapping" in found
    assert f"{catalog['ES_INDEX']} field error_text is missing" in found
    assert len(found.splitlines()) == 6, found


def test_the_runs_document_counts_the_failed_row(es, catalog):
    runs = runs_index(catalog["ES_INDEX"])
    (hit,) = es.search(index=runs, query={"match_all": {}})["hits"]["hits"]
    report = hit["_source"]
    assert report["outcome"] == "succeeded" and report["statuses"] == {"indexed": 2, "decode_failed": 1}
    expected = dict.fromkeys(ROW_COUNTS, 0) | {"indexed": 2, "decode_failed": 1, "failed": 1, "succeeded": 2}
    assert report["rows"] == expected

    # What the panels ask of Elasticsearch: sums per date bucket of mapped long fields, no script.
    response = es.search(
        index=runs,
        size=0,
        query={"range": {"rows.indexed": {"gt": 0}}},  # the filter of "New vectors per second"
        aggs={
            "per_day": {
                "date_histogram": {"field": "started_at", "calendar_interval": "day"},
                "aggs": {name: {"sum": {"field": f"rows.{name}"}} for name in ROW_COUNTS},
            }
        },
    )
    assert response["hits"]["total"]["value"] == 1
    (bucket,) = [b for b in response["aggregations"]["per_day"]["buckets"] if b["doc_count"]]
    assert {name: bucket[name]["value"] for name in ROW_COUNTS} == expected
    mapping = es.indices.get_mapping(index=runs)[runs]["mappings"]["properties"]["rows"]["properties"]
    assert {name: spec["type"] for name, spec in mapping.items()} == dict.fromkeys(ROW_COUNTS, "long")


def test_the_failed_row_is_in_the_live_index_for_the_image_panels(es, catalog):
    alias = catalog["ES_INDEX"]
    response = es.search(
        index=alias,
        size=0,
        query={"bool": {"must_not": {"terms": {"status": ["indexed", "reused"]}}}},
        aggs={"reasons": {"terms": {"field": "error_reason"}}, "statuses": {"terms": {"field": "status"}}},
    )
    assert response["hits"]["total"]["value"] == 1
    assert [b["key"] for b in response["aggregations"]["statuses"]["buckets"]] == ["decode_failed"]
    assert len(response["aggregations"]["reasons"]["buckets"]) == 1
