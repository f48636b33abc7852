"""`indexer status` and `indexer rollback` against the real Elasticsearch."""

from __future__ import annotations

import json

import pytest

from imgsearch import indices
from indexer.admin import RollbackImpossible, alias_status, rollback
from tests.integration.helpers import photo_entries, run_cli, run_full, seed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_table")]


def test_status_lists_versions_with_statuses_and_model(es, extractor, env):
    seed(env, photo_entries(2, 1))
    first = run_full(env, extractor)
    second = run_full(env, extractor)
    state = alias_status(es, env["ES_INDEX"])
    assert state["live"] == [second.index]
    assert [v["index"] for v in state["versions"]] == [second.index, first.index]
    assert state["versions"][0]["statuses"] == {"reused": 2} and state["versions"][0]["live"]
    assert state["versions"][1]["statuses"] == {"indexed": 2} and not state["versions"][1]["live"]
    assert state["versions"][0]["model"]["fingerprint"] == extractor.info.fingerprint


def test_rollback_goes_to_previous_version_and_refuses_past_the_oldest(es, extractor, env):
    seed(env, photo_entries(1, 1))
    first = run_full(env, extractor)
    second = run_full(env, extractor)
    assert rollback(es, env["ES_INDEX"]) == (second.index, first.index)
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [first.index]
    with pytest.raises(RollbackImpossible, match="no retained version older"):
        rollback(es, env["ES_INDEX"])
    assert rollback(es, env["ES_INDEX"], target=second.index) == (first.index, second.index)


def test_cli_status_json_and_rollback(es, extractor, env):
    seed(env, photo_entries(1, 1))
    first = run_full(env, extractor)
    second = run_full(env, extractor)
    status = run_cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert state["live"] == [second.index] and state["catalog_rows"] == 1
    result = run_cli(env, "rollback")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{second.index} -> {first.index}" in result.stdout
    assert indices.aliased_indices(es, env["ES_INDEX"]) == [first.index]
    assert run_cli(env, "rollback").returncode == 1
