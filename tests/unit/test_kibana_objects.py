"""kibana/saved_objects.ndjson against the Kibana 8.x saved-objects format, and against our own mappings.

No Kibana can run here, so the file is checked against what Kibana documents and validates:
- the import/export format: one JSON object per line with type, id, attributes and references
  (https://www.elastic.co/guide/en/kibana/current/saved-objects-api-import.html); a reference is
  {name, type, id} and must resolve, or the import answers `missing_references`;
- the attribute keys Kibana's saved-object schemas accept (`unknowns: 'forbid'`): data views
  (title, name, timeFieldName, fields, fieldAttrs, sourceFilters, fieldFormatMap, runtimeFieldMap, ...;
  the structured ones stored as JSON strings), dashboards (panelsJSON, optionsJSON, timeRestore, ...),
  Lens (title, description, visualizationType, state), saved searches (columns, sort, grid, ...);
- the dashboard panel convention of 8.x exports: panelsJSON panels carry panelRefName `panel_<i>`,
  resolved through a reference named `<panelIndex>:panel_<i>`; a Lens layer's data view is the
  reference `indexpattern-datasource-layer-<layerId>`; a saved search's data view is the reference
  named by indexRefName in searchSourceJSON;
- the `url` field format with params {type: a|img|audio, urlTemplate, labelTemplate, width, height}.
And against this project: every field a view, column, filter or query names (kibana.fields) exists in
mappings/images.json or in the run reports (RunReport.as_dict, RUNS_MAPPINGS) with a type that fits its
use, and no object needs a script: no runtime field, no scripted field (the local integ-test
Elasticsearch has no Painless, and the reports carry explicit counts). tests/integration/
test_kibana_fields.py checks the same names against `_field_caps` of a real index and runs index.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from imgsearch.errors import SUCCESS_STATUSES, RowStatus
from indexer.report import ROW_COUNTS, RunReport
from indexer.state import RUNS_MAPPINGS
from kibana import fields as kibana_fields
from kibana import setup

REPO = Path(__file__).resolve().parents[2]
NDJSON = REPO / "kibana" / "saved_objects.ndjson"
ALLOWED_TYPES = {"index-pattern", "search", "lens", "dashboard"}
# References to objects that are not in the file (none: the file is self-contained).
EXTERNAL_REFERENCES: set[tuple[str, str]] = set()
ATTRIBUTES = {
    "index-pattern": {
        "title", "name", "timeFieldName", "fields", "fieldAttrs", "sourceFilters", "fieldFormatMap",
        "type", "typeMeta", "allowNoIndex", "runtimeFieldMap", "allowHidden",
    },
    "dashboard": {
        "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
        "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
    },
    "lens": {
        "title", "description", "visualizationType", "state", "uiStateJSON", "visState", "savedSearchRefName",
    },
    "search": {
        "title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart",
        "breakdownField", "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView", "timeRestore",
        "timeRange", "refreshInterval", "viewMode", "hideAggregatedPreview", "hits", "version",
    },
}  # fmt: skip
DATA_VIEW_JSON_STRINGS = (
    "fields",
    "fieldAttrs",
    "sourceFilters",
    "fieldFormatMap",
    "runtimeFieldMap",
    "typeMeta",
)
FIELD_FORMATS = {"url", "number", "bytes", "percent", "duration", "date", "string", "boolean", "color"}
NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
# Types each use accepts (kibana.fields); None: a field of the report no mapping names (dynamic).
ACCEPTS = {
    kibana_fields.DATE: {"date", "date_nanos"},
    kibana_fields.NUMBER: NUMERIC_TYPES,
    kibana_fields.KEYWORD: {"keyword", "constant_keyword"},
    kibana_fields.AGGREGATABLE: {"keyword", "date", "boolean", *NUMERIC_TYPES},
}
LENS_OPERATIONS = {"date_histogram", "terms", "count", "sum", "average", "min", "max", "unique_count"}
LENS_VISUALIZATIONS = {"lnsXY", "lnsMetric", "lnsDatatable", "lnsPie"}
XY_SERIES = {
    "bar", "bar_stacked", "bar_horizontal", "bar_horizontal_stacked", "line", "area", "area_stacked",
    "bar_percentage_stacked", "bar_horizontal_percentage_stacked", "area_percentage_stacked",
}  # fmt: skip
GRID_COLUMNS = 48


def load(path: Path = NDJSON) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load()


def by_type(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["type"] == kind]


def one(objects: list[dict[str, Any]], object_id: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["id"] == object_id]
    return found


def mapped_types(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field name -> mapping type, objects and multi-fields included."""
    types: dict[str, str] = {}
    for name, spec in properties.items():
        path = prefix + name
        types[path] = spec.get("type", "object")
        types |= mapped_types(spec.get("properties", {}), f"{path}.")
        types |= {f"{path}.{sub}": sub_spec["type"] for sub, sub_spec in spec.get("fields", {}).items()}
    return types


def report_keys(document: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of a run report, nested objects included."""
    keys = set()
    for key, value in document.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= report_keys(value, f"{prefix}{key}.")
    return keys


def image_field_types() -> dict[str, str | None]:
    properties = json.loads((REPO / "mappings" / "images.json").read_text())["mappings"]["properties"]
    return dict(mapped_types(properties))


def run_field_types() -> dict[str, str | None]:
    """Fields of <alias>-runs: the explicit mappings, statuses.* (dynamic template, long), and the
    report's other keys (mapped dynamically: type None)."""
    types: dict[str, str | None] = {key: None for key in report_keys(RunReport("full", "images").as_dict())}
    types |= {f"statuses.{status.value}": "long" for status in RowStatus}
    return types | mapped_types(RUNS_MAPPINGS["properties"])


def field_types(objects: list[dict[str, Any]], data_view_id: str) -> dict[str, str | None]:
    view = one(objects, data_view_id)
    return image_field_types() if view["attributes"]["title"] == "images" else run_field_types()


def fields_of(objects: list[dict[str, Any]], data_view_id: str) -> set[str]:
    return set(field_types(objects, data_view_id))


kql_fields = kibana_fields.kql_fields


def reference_for(obj: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [ref for ref in obj["references"] if ref["name"] == name]
    assert len(matches) == 1, f"{obj['id']}: {len(matches)} references named {name}"
    return matches[0]


# --- the file format -------------------------------------------------------------------------------


def test_every_line_is_one_json_saved_object():
    lines = NDJSON.read_text().split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    for number, line in enumerate(lines[:-1], start=1):
        obj = json.loads(line)
        assert isinstance(obj, dict), number
        assert {"type", "id", "attributes", "references"} <= set(obj), number
        assert obj["type"] in ALLOWED_TYPES, number
        assert isinstance(obj["id"], str) and obj["id"].startswith("imgsearch-images-"), number
        assert isinstance(obj["attributes"], dict) and isinstance(obj["references"], list), number
        assert re.fullmatch(r"\d+\.\d+\.\d+", obj["coreMigrationVersion"]), number
        assert re.fullmatch(r"\d+\.\d+\.\d+", obj["typeMigrationVersion"]), number
        for reference in obj["references"]:
            assert set(reference) == {"name", "type", "id"}, number
            assert all(isinstance(value, str) and value for value in reference.values()), number


def test_ids_are_unique(objects):
    ids = [obj["id"] for obj in objects]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves_inside_the_file(objects):
    present = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        for reference in obj["references"]:
            key = (reference["type"], reference["id"])
            assert key in present or key in EXTERNAL_REFERENCES, f"{obj['id']} -> missing {key}"
        names = [reference["name"] for reference in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']} repeats a reference name"


def test_attributes_are_the_ones_kibana_accepts(objects):
    for obj in objects:
        unknown = set(obj["attributes"]) - ATTRIBUTES[obj["type"]]
        assert not unknown, f"{obj['type']} {obj['id']} has attributes Kibana rejects: {unknown}"
        assert obj["attributes"]["title"]


def test_expected_objects_are_there(objects):
    kinds = sorted(obj["type"] for obj in objects)
    assert kinds.count("index-pattern") == 2 and kinds.count("dashboard") == 1
    titles = {obj["attributes"]["title"] for obj in by_type(objects, "index-pattern")}
    assert titles == {"images", "images-runs"}


# --- data views ------------------------------------------------------------------------------------


def test_data_view_structured_attributes_are_json_strings(objects):
    for view in by_type(objects, "index-pattern"):
        for key in DATA_VIEW_JSON_STRINGS:
            value = view["attributes"].get(key)
            assert isinstance(value, str), f"{view['id']}.{key} must be a JSON string"
            json.loads(value)


def test_image_data_view_shows_image_url_as_an_image_and_hides_the_vector(objects):
    view = one(objects, "imgsearch-images-dv-images")["attributes"]
    assert view["timeFieldName"] == "indexed_at"
    formats = json.loads(view["fieldFormatMap"])
    assert formats["image_url"]["id"] == "url"
    params = formats["image_url"]["params"]
    assert params["type"] == "img"
    assert set(params) == {"type", "urlTemplate", "labelTemplate", "width", "height"}
    assert {"value": "feature"} in json.loads(view["sourceFilters"])


def test_time_fields_are_date_fields(objects):
    mapping = json.loads((REPO / "mappings" / "images.json").read_text())["mappings"]["properties"]
    images = one(objects, "imgsearch-images-dv-images")["attributes"]["timeFieldName"]
    assert mapping[images]["type"] == "date" and mapping["updated_at"]["type"] == "date"
    runs = one(objects, "imgsearch-images-dv-runs")["attributes"]["timeFieldName"]
    assert RUNS_MAPPINGS["properties"][runs]["type"] == "date"


def test_field_formats_attrs_and_filters_name_real_fields(objects):
    for view in by_type(objects, "index-pattern"):
        fields = fields_of(objects, view["id"])
        attributes = view["attributes"]
        for field, spec in json.loads(attributes["fieldFormatMap"]).items():
            assert field in fields, f"{view['id']}: format for unknown field {field}"
            assert spec["id"] in FIELD_FORMATS
        for field in json.loads(attributes["fieldAttrs"]):
            assert field in fields, f"{view['id']}: attributes for unknown field {field}"
        for source_filter in json.loads(attributes["sourceFilters"]):
            assert source_filter["value"] in fields


def test_no_object_uses_a_script_or_a_runtime_field(objects):
    assert kibana_fields.scripted_parts(objects) == []
    for view in by_type(objects, "index-pattern"):
        assert json.loads(view["attributes"]["runtimeFieldMap"]) == {}, view["id"]
        assert json.loads(view["attributes"]["fields"]) == [], view["id"]
    for lens in by_type(objects, "lens"):
        assert lens["attributes"]["state"]["adHocDataViews"] == {}, lens["id"]
    text = NDJSON.read_text()
    assert "emit(" not in text and "doc[" not in text and "painless" not in text.lower()


def test_the_script_check_finds_runtime_and_scripted_fields(objects):
    """What the test above would catch: the runtime field the runs view used to define, and a scripted
    field in `fields`, both inside the JSON strings of a data view."""
    changed = json.loads(json.dumps(objects))
    view = one(changed, "imgsearch-images-dv-runs")["attributes"]
    view["runtimeFieldMap"] = json.dumps(
        {"rows_failed": {"type": "long", "script": {"source": "emit(doc['statuses.decode_failed'].value)"}}}
    )
    view["fields"] = json.dumps([{"name": "x", "type": "number", "scripted": True, "script": "1"}])
    found = kibana_fields.scripted_parts(changed)
    assert found == ["[1].attributes.fields[0].script", "[1].attributes.runtimeFieldMap"]


def test_every_referenced_field_has_a_type_that_fits_its_use(objects):
    uses = kibana_fields.referenced_fields(objects)
    assert {use.field for use in uses} >= {"started_at", "indexed_at", "rows.failed", "outcome", "status"}
    for use in uses:
        types = field_types(objects, use.data_view)
        assert use.field in types, f"{use.where}: unknown field {use.field}"
        if use.needs in ACCEPTS:
            assert types[use.field] in ACCEPTS[use.needs], f"{use.where}: {use.field} is {types[use.field]}"


def test_run_reports_map_every_row_count_as_long():
    rows = RUNS_MAPPINGS["properties"]["rows"]["properties"]
    assert set(rows) == set(ROW_COUNTS) == {status.value for status in RowStatus} | {"failed", "succeeded"}
    assert {spec["type"] for spec in rows.values()} == {"long"}
    assert set(RunReport("full", "images").as_dict()["rows"]) == set(ROW_COUNTS)


def test_rows_per_status_sums_the_count_of_every_status(objects):
    lens = one(objects, "imgsearch-images-lens-rows-per-status")["attributes"]["state"]
    (layer,) = lens["datasourceStates"]["formBased"]["layers"].values()
    sums = {column["sourceField"] for column in layer["columns"].values() if column["operationType"] == "sum"}
    assert sums == {f"rows.{status.value}" for status in RowStatus}


def test_runs_search_shows_the_succeeded_and_failed_totals(objects):
    columns = one(objects, "imgsearch-images-search-runs")["attributes"]["columns"]
    assert {"rows.succeeded", "rows.failed"} <= set(columns)


# --- Lens ------------------------------------------------------------------------------------------


def test_lens_layers_columns_and_references_agree(objects):
    for lens in by_type(objects, "lens"):
        attributes = lens["attributes"]
        assert attributes["visualizationType"] in LENS_VISUALIZATIONS
        state = attributes["state"]
        assert state["query"]["language"] == "kuery" and state["filters"] == []
        layers = state["datasourceStates"]["formBased"]["layers"]
        assert layers
        for layer_id, layer in layers.items():
            reference = reference_for(lens, f"indexpattern-datasource-layer-{layer_id}")
            assert reference["type"] == "index-pattern"
            fields = fields_of(objects, reference["id"])
            columns = layer["columns"]
            assert sorted(layer["columnOrder"]) == sorted(columns)
            for column_id, column in columns.items():
                assert column["operationType"] in LENS_OPERATIONS, column_id
                if column["operationType"] == "count":
                    assert column["sourceField"] == "___records___"
                else:
                    assert column["sourceField"] in fields, (
                        f"{lens['id']}: unknown field {column['sourceField']}"
                    )
                if column["operationType"] == "terms":
                    assert column["params"]["orderBy"]["columnId"] in columns
                assert column["isBucketed"] == (column["operationType"] in ("date_histogram", "terms"))
                if "filter" in column:
                    assert kql_fields(column["filter"]["query"]) <= fields
            assert kql_fields(state["query"]["query"]) <= fields
        check_visualization(lens["id"], attributes["visualizationType"], state["visualization"], layers)


def check_visualization(lens_id: str, kind: str, visualization: dict, layers: dict) -> None:
    if kind == "lnsMetric":
        columns = layers[visualization["layerId"]]["columns"]
        assert visualization["metricAccessor"] in columns, lens_id
        return
    assert kind == "lnsXY"
    assert visualization["preferredSeriesType"] in XY_SERIES
    for layer in visualization["layers"]:
        columns = layers[layer["layerId"]]["columns"]
        assert layer["seriesType"] in XY_SERIES and layer["layerType"] == "data"
        used = [
            layer["xAccessor"],
            *layer["accessors"],
            *([layer["splitAccessor"]] if "splitAccessor" in layer else []),
        ]
        assert set(used) <= set(columns), lens_id
        assert all(not columns[accessor]["isBucketed"] for accessor in layer["accessors"])
        assert set(used) == set(columns), f"{lens_id}: columns not shown"


# --- saved searches --------------------------------------------------------------------------------


def test_saved_searches_point_at_a_data_view_and_real_fields(objects):
    for search in by_type(objects, "search"):
        attributes = search["attributes"]
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        reference = reference_for(search, source["indexRefName"])
        assert reference["type"] == "index-pattern"
        fields = fields_of(objects, reference["id"])
        assert set(attributes["columns"]) <= fields, search["id"]
        for field, direction in attributes["sort"]:
            assert field in fields and direction in ("asc", "desc")
        assert source["query"]["language"] == "kuery"
        assert kql_fields(source["query"]["query"]) <= fields


def test_failed_rows_search_excludes_exactly_the_searchable_statuses(objects):
    search = one(objects, "imgsearch-images-search-failed-rows")["attributes"]
    query = json.loads(search["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
    match = re.fullmatch(r"not status:\((\w+) or (\w+)\)", query)
    assert match and set(match.groups()) == {status.value for status in SUCCESS_STATUSES}
    assert {"image_url", "status", "error_reason", "error_message"} <= set(search["columns"])


# --- the dashboard ---------------------------------------------------------------------------------


def test_dashboard_panels_parse_and_reference_their_objects(objects):
    dashboard = by_type(objects, "dashboard")[0]
    attributes = dashboard["attributes"]
    json.loads(attributes["optionsJSON"])
    json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    panels = json.loads(attributes["panelsJSON"])
    assert isinstance(panels, list) and panels
    indexes = [panel["panelIndex"] for panel in panels]
    assert len(indexes) == len(set(indexes))
    used = set()
    for panel in panels:
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS and grid["y"] >= 0 and grid["h"] > 0
        name = f"{panel['panelIndex']}:{panel['panelRefName']}"
        reference = reference_for(dashboard, name)
        assert reference["type"] == panel["type"]
        target = one(objects, reference["id"])
        assert target["type"] == panel["type"]
        used.add(name)
    assert used == {reference["name"] for reference in dashboard["references"]}, "unused references"
    assert_no_overlap([panel["gridData"] for panel in panels])


def assert_no_overlap(grids: list[dict[str, int]]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for grid in grids:
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {grid['i']} overlap"
                cells[(x, y)] = grid["i"]


def test_dashboard_covers_the_runs_story(objects):
    dashboard = by_type(objects, "dashboard")[0]
    titles = {one(objects, reference["id"])["attributes"]["title"] for reference in dashboard["references"]}
    for expected in (
        "Rows per status",
        "Failure reasons",
        "New vectors per second",
        "Alias history",
        "Failed rows",
    ):
        assert any(expected in title for title in titles), expected


# --- alias substitution (kibana.setup.for_alias) ----------------------------------------------------


def test_for_alias_rewrites_patterns_ids_and_titles_consistently(objects, tmp_path):
    rewritten = setup.for_alias(objects, "shop-img")
    path = tmp_path / "rewritten.ndjson"
    path.write_bytes(setup.to_ndjson(rewritten))
    text = path.read_text()
    assert "imgsearch-images-" not in text and '"images"' not in text and "images-runs" not in text
    assert {obj["attributes"]["title"] for obj in by_type(rewritten, "index-pattern")} == {
        "shop-img",
        "shop-img-runs",
    }
    assert all(obj["id"].startswith("imgsearch-shop-img-") for obj in rewritten)
    present = {(obj["type"], obj["id"]) for obj in rewritten}
    assert all((ref["type"], ref["id"]) in present for obj in rewritten for ref in obj["references"])
    assert (
        one(rewritten, "imgsearch-shop-img-dashboard-runs")["attributes"]["title"]
        == "[shop-img] Indexing runs"
    )
    assert objects == load(), "the template itself is left untouched"


def test_for_alias_with_the_default_alias_is_the_file_itself(objects):
    assert setup.for_alias(objects, "images") == objects


def test_for_alias_refuses_bad_aliases_and_unknown_patterns(objects):
    with pytest.raises(setup.SetupError, match="ES_INDEX"):
        setup.for_alias(objects, "Images!")
    changed = json.loads(json.dumps(objects))
    by_type(changed, "index-pattern")[0]["attributes"]["title"] = "logs-*"
    with pytest.raises(setup.SetupError, match="logs-"):
        setup.for_alias(changed, "shop")
