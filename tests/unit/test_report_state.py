"""The run report's explicit row counts, and StateStore.ensure adding new fields to existing indices.

The same against a real Elasticsearch: tests/integration/test_state.py (mapping upgrade of an old runs
index) and tests/integration/test_kibana_fields.py (the counts of a run with a failed row).
"""

from __future__ import annotations

import copy
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import AuthorizationException, BadRequestError

from imgsearch.errors import FAILURE_STATUSES, RowFailure, RowStatus
from imgsearch.indices import runs_index
from indexer.report import ROW_COUNTS, ROW_TOTALS, RunReport
from indexer.state import (
    RUNS_MAPPINGS,
    STATE_MAPPINGS,
    StateStore,
    field_paths,
    missing_properties,
    state_index,
)

ALIAS = "shop"
ROWS_MAPPING = RUNS_MAPPINGS["properties"]["rows"]


# --- RunReport.rows ----------------------------------------------------------------------------------


def test_rows_list_every_status_with_zeros_and_the_totals():
    report = RunReport(mode="full", alias=ALIAS)
    for status in (RowStatus.INDEXED, RowStatus.INDEXED, RowStatus.REUSED, RowStatus.DELETED):
        report.record_success(status)
    report.record_failure(1, RowFailure(RowStatus.DECODE_FAILED, "truncated", "bad jpeg"))
    report.record_failure(2, RowFailure(RowStatus.DOWNLOAD_FAILED, "http_404", "not found"))
    report.record_failure(3, RowFailure(RowStatus.DOWNLOAD_FAILED, "timeout", "slow"))
    data = report.as_dict()
    assert data["rows"] == {
        "indexed": 2,
        "reused": 1,
        "invalid_row": 0,
        "download_failed": 2,
        "decode_failed": 1,
        "feature_failed": 0,
        "index_failed": 0,
        "deleted": 1,
        "failed": 3,
        "succeeded": 3,
    }
    assert data["statuses"] == {
        "indexed": 2,
        "reused": 1,
        "deleted": 1,
        "decode_failed": 1,
        "download_failed": 2,
    }
    assert data["rows"]["failed"] == report.failed and data["rows"]["succeeded"] == report.succeeded
    assert "decode_failed" in report.statuses and "index_failed" not in report.statuses  # no zeros added


def test_an_empty_report_counts_zero_for_everything():
    rows = RunReport(mode="incremental", alias=ALIAS).as_dict()["rows"]
    assert list(rows) == list(ROW_COUNTS) and set(rows.values()) == {0}


def test_the_totals_are_not_status_names_and_cover_the_failures():
    assert not set(ROW_TOTALS) & {status.value for status in RowStatus}
    assert len(ROW_COUNTS) == len(set(ROW_COUNTS)) == len(RowStatus) + 2
    report = RunReport(mode="full", alias=ALIAS)
    for number, status in enumerate(FAILURE_STATUSES):
        report.record_failure(number, RowFailure(status, "x", "y"))
    assert report.as_dict()["rows"]["failed"] == len(FAILURE_STATUSES)


def test_the_json_file_carries_the_rows(tmp_path):
    report = RunReport(mode="full", alias=ALIAS)
    report.record_success()
    report.finish("succeeded")
    written = json.loads(report.write_json(str(tmp_path)).read_text())
    assert written["rows"]["indexed"] == 1 and written["rows"]["failed"] == 0


# --- mapping differences -----------------------------------------------------------------------------


def test_missing_properties_finds_new_fields_and_new_subfields_only():
    current = {
        "run_id": {"type": "keyword"},
        "previous_indices": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "rows": {"properties": {"indexed": {"type": "long"}}},
    }
    wanted = {
        "run_id": {"type": "keyword"},
        "previous_indices": {"type": "keyword"},  # a different type: left alone
        "rows": {"properties": {"indexed": {"type": "long"}, "failed": {"type": "long"}}},
        "outcome": {"type": "keyword"},
    }
    missing = missing_properties(current, wanted)
    assert missing == {"rows": {"properties": {"failed": {"type": "long"}}}, "outcome": {"type": "keyword"}}
    assert field_paths(missing) == ["rows.failed", "outcome"]
    assert missing_properties(wanted, wanted) == {}


def test_a_field_mapped_as_a_leaf_is_not_turned_into_an_object():
    assert missing_properties({"rows": {"type": "long"}}, {"rows": ROWS_MAPPING}) == {}


# --- StateStore.ensure with a recording client --------------------------------------------------------


def api_error(kind, status: int, error_type: str):
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "h", 1),
    )
    return kind(message=error_type, meta=meta, body={"error": {"type": error_type}, "status": status})


class FakeIndices:
    """The indices API over a dict of index -> mappings; records every call; put_mapping may fail."""

    def __init__(self, existing: dict[str, dict[str, Any]], refuse_put: Exception | None = None) -> None:
        self.mappings = copy.deepcopy(existing)
        self.refuse_put = refuse_put
        self.calls: list[tuple[str, str]] = []
        self.puts: dict[str, dict[str, Any]] = {}

    def exists(self, index: str) -> bool:
        self.calls.append(("exists", index))
        return index in self.mappings

    def create(self, index: str, settings: dict, mappings: dict) -> None:
        self.calls.append(("create", index))
        self.mappings[index] = copy.deepcopy(mappings)

    def get_mapping(self, index: str) -> SimpleNamespace:
        self.calls.append(("get_mapping", index))
        return SimpleNamespace(body={index: {"mappings": copy.deepcopy(self.mappings[index])}})

    def put_mapping(self, index: str, properties: dict) -> None:
        self.calls.append(("put_mapping", index))
        if self.refuse_put is not None:
            raise self.refuse_put
        self.puts[index] = properties
        merge(self.mappings[index].setdefault("properties", {}), properties)


def merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for name, spec in extra.items():
        if name in target and "properties" in spec:
            merge(target[name].setdefault("properties", {}), spec["properties"])
        else:
            target[name] = copy.deepcopy(spec)


def store_over(indices: FakeIndices) -> StateStore:
    return StateStore(SimpleNamespace(indices=indices), ALIAS)


def old_runs_mapping() -> dict[str, Any]:
    """What an index created before the row counts looks like (index lists mapped dynamically)."""
    mapping = copy.deepcopy(RUNS_MAPPINGS)
    for name in ("rows", "previous_indices", "deleted_indices"):
        del mapping["properties"][name]
    mapping["properties"]["previous_indices"] = {"type": "text", "fields": {"keyword": {"type": "keyword"}}}
    return mapping


def test_ensure_creates_missing_indices_with_the_full_mappings():
    indices = FakeIndices({})
    store_over(indices).ensure()
    assert indices.mappings == {state_index(ALIAS): STATE_MAPPINGS, runs_index(ALIAS): RUNS_MAPPINGS}
    assert not [call for call in indices.calls if call[0] in ("get_mapping", "put_mapping")]


def test_ensure_leaves_up_to_date_indices_alone():
    indices = FakeIndices({state_index(ALIAS): STATE_MAPPINGS, runs_index(ALIAS): RUNS_MAPPINGS})
    store_over(indices).ensure()
    assert [call[0] for call in indices.calls].count("put_mapping") == 0


def test_ensure_adds_the_row_counts_to_an_old_runs_index(caplog):
    indices = FakeIndices({state_index(ALIAS): STATE_MAPPINGS, runs_index(ALIAS): old_runs_mapping()})
    with caplog.at_level(logging.INFO, logger="indexer.state"):
        store_over(indices).ensure()
    assert indices.puts == {
        runs_index(ALIAS): {"rows": ROWS_MAPPING, "deleted_indices": {"type": "keyword"}},
    }
    assert "rows.failed" in caplog.text and runs_index(ALIAS) in caplog.text
    assert indices.mappings[runs_index(ALIAS)]["properties"]["previous_indices"]["type"] == "text"
    assert indices.mappings[runs_index(ALIAS)]["dynamic_templates"] == RUNS_MAPPINGS["dynamic_templates"]
    indices.calls.clear()
    store_over(indices).ensure()  # now complete: nothing more to add
    assert ("put_mapping", runs_index(ALIAS)) not in indices.calls


@pytest.mark.parametrize(
    "refusal",
    [
        api_error(AuthorizationException, 403, "security_exception"),
        api_error(BadRequestError, 400, "illegal_argument_exception"),
    ],
)
def test_a_refused_upgrade_of_the_runs_index_does_not_stop_the_run(refusal, caplog):
    """The indexer role's `write` privilege maps new fields dynamically but may not put a mapping;
    the report's integer counts are then mapped dynamically as long, like RUNS_MAPPINGS says."""
    indices = FakeIndices(
        {state_index(ALIAS): STATE_MAPPINGS, runs_index(ALIAS): old_runs_mapping()}, refuse_put=refusal
    )
    with caplog.at_level(logging.INFO, logger="indexer.state"):
        store_over(indices).ensure()
    (record,) = caplog.records
    assert "could not add rows.indexed" in record.getMessage() and refusal.error in record.getMessage()
    # Refused by the least-privilege role: expected and harmless, so no warning at every run.
    assert record.levelno == (logging.INFO if refusal.meta.status == 403 else logging.WARNING)


def test_a_refused_upgrade_of_the_state_index_fails():
    old_state = copy.deepcopy(STATE_MAPPINGS)
    del old_state["properties"]["saved_at"]
    indices = FakeIndices(
        {state_index(ALIAS): old_state, runs_index(ALIAS): RUNS_MAPPINGS},
        refuse_put=api_error(AuthorizationException, 403, "security_exception"),
    )
    with pytest.raises(AuthorizationException):
        store_over(indices).ensure()
