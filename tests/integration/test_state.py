"""Run state in Elasticsearch: the lock (refusal, expiry, dead holder, loss), reports, the runs index's
mapping upgrade, signals."""

from __future__ import annotations

import copy
import json
import os
import signal
import time

import pytest

from imgsearch.errors import RowFailure, RowStatus
from imgsearch.indices import runs_index
from indexer.partition import Partition
from indexer.report import ROW_COUNTS, RunReport
from indexer.state import RUNS_MAPPINGS, LockHeld, LockLost, RunLock, StateStore, now_ms
from tests.integration.helpers import photo_entries, run_cli, seed, start_cli
from tests.support.gate import release_until, serve_held, wait_for

pytestmark = pytest.mark.integration


def lock(es, alias: str, run_id: str, ttl: float = 60.0, partition: Partition = Partition()) -> RunLock:
    return RunLock(StateStore(es, alias).ensure(), partition, run_id, "incremental", ttl)


def test_a_second_run_is_refused_while_the_first_holds_the_lock(es, alias):
    first = lock(es, alias, "first").acquire()
    try:
        with pytest.raises(LockHeld, match="first"):
            lock(es, alias, "second").acquire()
        lock(es, alias, "other-partition", partition=Partition(1, 2)).acquire().release()
    finally:
        first.release()
    lock(es, alias, "third").acquire().release()  # released: free again


def test_an_expired_lock_is_taken_over(es, alias):
    store = StateStore(es, alias).ensure()
    store.put(
        "lock:all", {"kind": "lock", "run_id": "dead", "host": "elsewhere", "pid": 1, "expires_at_ms": 0}
    )
    taken = lock(es, alias, "new").acquire()
    try:
        assert store.get("lock:all").source["run_id"] == "new"
    finally:
        taken.release()


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over_at_once(es, alias):
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    store = StateStore(es, alias).ensure()
    store.put(
        "lock:all",
        {
            "kind": "lock",
            "run_id": "killed",
            "host": socket.gethostname(),
            "pid": gone.pid,
            "expires_at_ms": now_ms() + 600_000,
        },
    )
    lock(es, alias, "new").acquire().release()


def test_the_heartbeat_renews_and_a_stolen_lock_is_noticed(es, alias):
    store = StateStore(es, alias).ensure()
    held = lock(es, alias, "slow", ttl=1.5).acquire()
    try:
        first_expiry = store.get("lock:all").source["expires_at_ms"]
        time.sleep(1.2)
        assert store.get("lock:all").source["expires_at_ms"] > first_expiry  # renewed
        store.put("lock:all", {"kind": "lock", "run_id": "thief", "expires_at_ms": now_ms() + 60_000})
        time.sleep(1.0)
        with pytest.raises(LockLost):
            held.ensure_held()
    finally:
        held.release()
    assert store.get("lock:all").source["run_id"] == "thief"  # a lost lock is not deleted


@pytest.mark.usefixtures("drop_table")
def test_cli_exits_4_when_locked_and_records_every_run(es, env):
    seed(env, photo_entries(1, 1))
    holder = lock(es, env["ES_INDEX"], "holder").acquire()
    try:
        refused = run_cli(env, "incremental", "--no-progress")
    finally:
        holder.release()
    assert refused.returncode == 4, refused.stderr[-2000:]
    assert "holds the lock" in refused.stderr

    built = run_cli(env, "incremental", "--no-progress")  # no alias yet: becomes a full build
    assert built.returncode == 0, built.stderr[-2000:]
    assert "running a full build instead" in built.stderr

    runs = StateStore(es, env["ES_INDEX"]).last_runs(5)
    outcomes = [(run["mode"], run["outcome"]) for run in runs]
    assert outcomes == [("full", "succeeded"), ("full", "locked")]  # no alias yet: both became full
    status = run_cli(env, "status", "--json")
    state = json.loads(status.stdout)
    assert state["last_runs"][0]["outcome"] == "succeeded" and state["catalog_rows"] == 1


@pytest.mark.usefixtures("drop_table")
def test_sigterm_stops_cleanly_releasing_the_lock(es, env, photo_folder, tmp_path):
    """SIGTERM while the run is held mid-way (its photos wait behind a gate), so it cannot finish first."""
    seed(env, [entry for _ in range(3) for entry in photo_entries(4, 2)][:8])
    log = tmp_path / "run.log"
    store = StateStore(es, env["ES_INDEX"])

    def checkpointed() -> bool:
        return es.indices.exists(index=store.index) and store.get("checkpoint:full:all") is not None

    with serve_held(photo_folder) as gate:
        held = {**env, "INDEXER_CHECKPOINT_SECONDS": "0", "IMAGE_BASE_URL": gate.base_url}
        run = start_cli(held, log, "full", "--workers", "1", "--batch-size", "2", "--no-progress")
        release_until(gate, checkpointed, lambda: run.poll() is None, limit=6)
        os.kill(run.pid, signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log.read_text(), "the run to take the signal")
        gate.open()  # the run moves on to its next row, where it stops
        code = run.wait(timeout=120)
    assert code == 1, log.read_text()[-2000:]
    assert "stopped by SIGTERM" in log.read_text()
    assert store.get("lock:all") is None
    assert store.last_runs(1)[0]["outcome"] == "interrupted"


def old_runs_index(es, alias: str) -> str:
    """`<alias>-runs` as an indexer without the row counts created it, holding one old report."""
    mappings = copy.deepcopy(RUNS_MAPPINGS)
    for name in ("rows", "previous_indices", "deleted_indices"):
        del mappings["properties"][name]
    name = runs_index(alias)
    es.indices.create(index=name, settings={"number_of_shards": 1}, mappings=mappings)
    old = {
        "run_id": "old",
        "mode": "full",
        "outcome": "succeeded",
        "started_at": "2026-01-01T00:00:00+00:00",
        "statuses": {"indexed": 5},
        "previous_indices": [f"{alias}-20251231t000000000z"],
    }
    es.index(index=name, id="old", document=old, refresh=True)
    return name


def new_report(alias: str) -> dict:
    report = RunReport(mode="incremental", alias=alias)
    report.record_success()
    report.record_failure(7, RowFailure(RowStatus.DECODE_FAILED, "truncated", "bad jpeg"))
    report.finish("succeeded")
    return report.as_dict()


def row_types(es, index: str) -> dict[str, str]:
    properties = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    return {name: spec["type"] for name, spec in properties["rows"]["properties"].items()}


def failed_and_indexed_sums(es, index: str) -> dict[str, float]:
    aggs = {name: {"sum": {"field": f"rows.{name}"}} for name in ("failed", "indexed")}
    response = es.search(index=index, size=0, aggs=aggs)
    return {name: response["aggregations"][name]["value"] for name in aggs}


def test_ensure_adds_the_row_counts_to_an_existing_runs_index(es, alias):
    name = old_runs_index(es, alias)
    StateStore(es, alias).ensure()
    assert row_types(es, name) == dict.fromkeys(ROW_COUNTS, "long")
    properties = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert properties["deleted_indices"]["type"] == "keyword"
    assert properties["previous_indices"]["type"] == "text"  # mapped dynamically before: left as it is
    before = es.indices.get_mapping(index=name).body
    StateStore(es, alias).ensure()  # nothing missing any more: no change
    assert es.indices.get_mapping(index=name).body == before

    StateStore(es, alias).record_run(new_report(alias))
    caps = es.field_caps(index=name, fields="rows.*")["fields"]
    assert {field: list(types) for field, types in caps.items() if field != "rows"} == {
        f"rows.{count}": ["long"] for count in ROW_COUNTS
    }
    # The old report has no row counts: sums (what the dashboard draws) count only the new one.
    assert failed_and_indexed_sums(es, name) == {"failed": 1.0, "indexed": 1.0}


def test_without_the_upgrade_the_counts_are_mapped_dynamically_as_long(es, alias):
    """A role that may not put a mapping (ensure only warns): the report's integer counts get the same
    type from dynamic mapping."""
    name = old_runs_index(es, alias)
    StateStore(es, alias).record_run(new_report(alias))  # no ensure(): no put_mapping
    assert row_types(es, name) == dict.fromkeys(ROW_COUNTS, "long")
    assert failed_and_indexed_sums(es, name) == {"failed": 1.0, "indexed": 1.0}


def test_a_new_runs_index_maps_the_counts_and_index_lists_explicitly(es, alias):
    StateStore(es, alias).ensure()
    name = runs_index(alias)
    assert row_types(es, name) == dict.fromkeys(ROW_COUNTS, "long")
    properties = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert properties["previous_indices"] == properties["deleted_indices"] == {"type": "keyword"}
