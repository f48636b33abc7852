"""Which fields the saved objects name, and what each use needs of the field's type.

Used by the tests: tests/unit/test_kibana_objects.py checks the names against the mappings in this
repository, tests/integration/test_kibana_fields.py against `_field_caps` of a real index and runs
index written by the indexer. Every field is a real mapped field: the objects define no runtime field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# What a use needs: a date (time field, date histogram), a number (sum, average, number format),
# an aggregatable keyword (terms), an aggregatable field (sort, unique count), just the field, or
# a path of the documents' _source (a source filter: mapped, perhaps not indexed, like `failures`).
DATE, NUMBER, KEYWORD, AGGREGATABLE, ANY, SOURCE = (
    "date",
    "number",
    "keyword",
    "aggregatable",
    "any",
    "source",
)
NUMBER_FORMATS = {"number", "bytes", "percent", "duration"}
LENS_NEEDS = {
    "date_histogram": DATE,
    "terms": KEYWORD,
    "sum": NUMBER,
    "average": NUMBER,
    "min": NUMBER,
    "max": NUMBER,
    "median": NUMBER,
    "unique_count": AGGREGATABLE,
}
RECORDS = "___records___"  # Lens' document count: no field
KQL_FIELD = re.compile(r"([A-Za-z_][\w.]*)\s*(?::|<=|>=|<|>)")


@dataclass(frozen=True)
class FieldUse:
    """One place a saved object names a field of a data view."""

    data_view: str  # the data view's id
    field: str
    needs: str  # DATE, NUMBER, KEYWORD, AGGREGATABLE, ANY or SOURCE
    where: str  # e.g. "lens imgsearch-images-lens-rows-per-status col-indexed (sum)"


def kql_fields(query: str) -> set[str]:
    """Field names of a KQL query (`field:value`, `field > n`)."""
    return set(KQL_FIELD.findall(query))


def data_view_for(obj: dict[str, Any], reference_name: str) -> str:
    matches = [ref["id"] for ref in obj["references"] if ref["name"] == reference_name]
    if len(matches) != 1:
        raise ValueError(f"{obj['id']}: {len(matches)} references named {reference_name}")
    return matches[0]


def referenced_fields(objects: list[dict[str, Any]]) -> list[FieldUse]:
    """Every field named by the data views, Lens layers and saved searches (dashboards name none)."""
    uses: list[FieldUse] = []
    for obj in objects:
        kind = obj["type"]
        if kind == "index-pattern":
            uses += data_view_fields(obj)
        elif kind == "lens":
            uses += lens_fields(obj)
        elif kind == "search":
            uses += search_fields(obj)
    return uses


def data_view_fields(view: dict[str, Any]) -> list[FieldUse]:
    attributes, view_id = view["attributes"], view["id"]
    uses = []
    if attributes.get("timeFieldName"):
        uses.append(FieldUse(view_id, attributes["timeFieldName"], DATE, f"{view_id} timeFieldName"))
    for field, spec in json.loads(attributes.get("fieldFormatMap") or "{}").items():
        needs = NUMBER if spec["id"] in NUMBER_FORMATS else DATE if spec["id"] == "date" else ANY
        uses.append(FieldUse(view_id, field, needs, f"{view_id} fieldFormatMap ({spec['id']})"))
    for field in json.loads(attributes.get("fieldAttrs") or "{}"):
        uses.append(FieldUse(view_id, field, ANY, f"{view_id} fieldAttrs"))
    for source_filter in json.loads(attributes.get("sourceFilters") or "[]"):
        uses.append(FieldUse(view_id, source_filter["value"], SOURCE, f"{view_id} sourceFilters"))
    return uses


def lens_fields(lens: dict[str, Any]) -> list[FieldUse]:
    state = lens["attributes"]["state"]
    uses = []
    for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
        view_id = data_view_for(lens, f"indexpattern-datasource-layer-{layer_id}")
        for column_id, column in layer["columns"].items():
            operation = column["operationType"]
            where = f"lens {lens['id']} {column_id} ({operation})"
            if column.get("sourceField", RECORDS) != RECORDS:
                needs = LENS_NEEDS.get(operation, ANY)
                uses.append(FieldUse(view_id, column["sourceField"], needs, where))
            if "filter" in column:
                for field in kql_fields(column["filter"]["query"]):
                    uses.append(FieldUse(view_id, field, ANY, f"{where} filter"))
        for field in kql_fields(state["query"]["query"]):
            uses.append(FieldUse(view_id, field, ANY, f"lens {lens['id']} query"))
    return uses


def search_fields(search: dict[str, Any]) -> list[FieldUse]:
    attributes = search["attributes"]
    source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    view_id = data_view_for(search, source["indexRefName"])
    where = f"search {search['id']}"
    uses = [FieldUse(view_id, field, ANY, f"{where} columns") for field in attributes.get("columns", [])]
    uses += [
        FieldUse(view_id, field, AGGREGATABLE, f"{where} sort") for field, _ in attributes.get("sort", [])
    ]
    uses += [
        FieldUse(view_id, field, ANY, f"{where} query") for field in kql_fields(source["query"]["query"])
    ]
    return uses


def scripted_parts(value: Any, path: str = "") -> list[str]:
    """Paths of anything that needs a script (Painless): a non-empty runtimeFieldMap (data views, ad hoc
    data views), runtime_mappings, a `script` (a scripted field in `fields`). JSON strings are looked
    into."""
    found: list[str] = []
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return found
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            runtime = key in ("runtimeFieldMap", "runtime_mappings") and scripted_map(item)
            if runtime or (key == "script" and item):
                found.append(here)
            else:
                found += scripted_parts(item, here)
    elif isinstance(value, list):
        for number, item in enumerate(value):
            found += scripted_parts(item, f"{path}[{number}]")
    return found


def scripted_map(value: Any) -> bool:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return bool(value)
