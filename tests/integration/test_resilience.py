"""The job survives kill -9, an Elasticsearch restart and a MariaDB restart mid-run, losing nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from demo.catalog import CatalogEntry
from imgsearch import indices
from indexer.state import StateStore
from tests.integration.helpers import execute_sql, run_cli, run_full, seed, start_cli
from tests.support import stack

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_table")]

ROWS = 24
FILES = [
    f"p{p:03d}-{name}-{view}.jpg"
    for p, name in enumerate(["astronaut", "chelsea", "coffee", "rocket"], start=1)
    for view in ("front", "crop")
]
FAST_CHECKPOINTS = {"INDEXER_CHECKPOINT_SECONDS": "0"}


def catalog(rows: int = ROWS) -> list[CatalogEntry]:
    """`rows` rows, two per product, cycling through the served photos."""
    return [
        CatalogEntry(i, f"product-{(i + 1) // 2:03d}", FILES[(i - 1) % len(FILES)])
        for i in range(1, rows + 1)
    ]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


OTHER_PRECISION = {"float32": "bfloat16", "bfloat16": "float32"}


def checkpoint_passed(es, alias: str, doc_id: str, key: str, minimum: int) -> Callable[[], bool]:
    store = StateStore(es, alias)

    def passed() -> bool:
        try:
            saved = store.get(doc_id)
        except Exception:  # noqa: BLE001 - the state index may not exist yet
            return False
        return saved is not None and int(saved.source.get(key, 0)) >= minimum

    return passed


def run_until_checkpoint(es, env, log, checkpoint: tuple[str, str, int], *args: str):
    """Start the CLI and return it once the checkpoint `(doc id, field, minimum)` has been passed."""
    process = start_cli(env, log, *args, "--batch-size", "2", "--no-progress")
    wait_for(checkpoint_passed(es, env["ES_INDEX"], *checkpoint), f"checkpoint {checkpoint}")
    return process


def kill_after_checkpoint(es, env, log, checkpoint: tuple[str, str, int], *args: str) -> None:
    """SIGKILL the CLI mid-run, right after a checkpoint: nothing can be cleaned up."""
    process = run_until_checkpoint(es, env, log, checkpoint, *args)
    process.kill()
    process.wait()


def snapshot(es, alias: str) -> dict[int, dict]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=1000)["hits"]["hits"]
    return {int(hit["_id"]): hit["_source"] for hit in hits}


def assert_same_index(es, alias: str, clean_alias: str) -> None:
    """Same ids, same statuses and fields, vectors equal up to float noise: resume == clean run."""
    resumed, clean = snapshot(es, alias), snapshot(es, clean_alias)
    assert sorted(resumed) == sorted(clean) == list(range(1, ROWS + 1))
    assert es.count(index=alias)["count"] == ROWS  # no duplicates
    for row_id, document in clean.items():
        other = resumed[row_id]
        for field in ("status", "relation_id", "photo", "image_url", "updated_at"):
            assert other[field] == document[field], (row_id, field)
        dot = sum(a * b for a, b in zip(other["feature"], document["feature"], strict=True))
        assert dot > 0.9999, (row_id, dot)


def test_full_killed_mid_run_resumes_to_the_same_index_as_a_clean_run(
    es, extractor_in, precision, env, tmp_path
):
    """Killed and resumed in `precision`; the clean run computes in the other one (another machine)."""
    seed(env, catalog())
    clean_env = {**env, "ES_INDEX": env["ES_INDEX"] + "-clean"}
    run_full(clean_env, extractor_in(OTHER_PRECISION[precision]))
    env = {**env, **FAST_CHECKPOINTS, "VGG16_PRECISION": precision}

    kill_after_checkpoint(
        es, env, tmp_path / "killed.log", ("checkpoint:full:all", "after_id", 6), "full", "--page-size", "4"
    )
    assert indices.aliased_indices(es, env["ES_INDEX"]) == []  # nothing was served half-built

    resumed = run_cli(env, "full", "--batch-size", "2", "--no-progress")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    assert_same_index(es, env["ES_INDEX"], clean_env["ES_INDEX"])
    last = StateStore(es, env["ES_INDEX"]).last_runs(1)[0]
    assert last["resumed_from"]["after_id"] >= 6 and last["compute"]["precision"] == precision


def test_incremental_killed_mid_run_is_finished_by_the_next_run(es, extractor_per_precision, env, tmp_path):
    seed(env, catalog())
    run_full(env, extractor_per_precision)
    execute_sql(env, "UPDATE `{table}` SET updated_at = NOW()")
    time.sleep(1.1)
    env = {**env, **FAST_CHECKPOINTS, "VGG16_PRECISION": extractor_per_precision.compute.precision}

    checkpoint = ("checkpoint:incremental:all", "id", 6)
    kill_after_checkpoint(es, env, tmp_path / "killed.log", checkpoint, "incremental", "--page-size", "4")
    at_kill = snapshot(es, env["ES_INDEX"])
    finished = run_cli(env, "incremental", "--batch-size", "2", "--no-progress")

    assert finished.returncode == 0, finished.stderr[-3000:]
    last = StateStore(es, env["ES_INDEX"]).last_runs(1)[0]
    resumed_from = last["resumed_from"]["id"]
    assert resumed_from >= 6
    assert last["compute"]["precision"] == extractor_per_precision.compute.precision
    documents = snapshot(es, env["ES_INDEX"])
    assert len(documents) == ROWS
    (new_timestamp,) = {doc["updated_at"] for doc in documents.values()}  # all carry the new timestamp
    # Past the checkpoint, rows the killed run had already written (with the new timestamp) are reused
    # by the resumed run; the others are computed. Rows up to the checkpoint keep the killed run's work.
    ahead = {n for n in range(resumed_from + 1, ROWS + 1) if at_kill[n]["updated_at"] == new_timestamp}
    expected = {n: "reused" if n in ahead else "indexed" for n in range(1, ROWS + 1)}
    assert {n: doc["status"] for n, doc in documents.items()} == expected
    computed = ROWS - resumed_from - len(ahead)
    counts = {"indexed": computed, "reused": len(ahead)}
    assert dict(last["statuses"]) == {status: count for status, count in counts.items() if count}
    assert run_cli(env, "incremental", "--dry-run").stdout.count('"changed_rows": 0') == 1


@pytest.fixture
def restartable(stack_urls):
    if not stack.local_stack_serves(stack_urls[0]):
        pytest.skip("restarting services needs the local stack of scripts/stack.sh (make test starts it)")


@pytest.mark.usefixtures("restartable")
def test_elasticsearch_restart_mid_run_is_waited_out(es, env, tmp_path):
    seed(env, catalog())
    env = {**env, **FAST_CHECKPOINTS, "INDEXER_ES_RETRY_SECONDS": "240"}
    log = tmp_path / "run.log"

    run = run_until_checkpoint(
        es, env, log, ("checkpoint:full:all", "after_id", 4), "full", "--page-size", "4"
    )
    stack.restart("es")
    code = run.wait(timeout=400)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Elasticsearch unavailable" in output  # the outage really happened mid-run
    es.cluster.health(wait_for_status="yellow", timeout="60s")
    assert es.count(index=env["ES_INDEX"])["count"] == ROWS
    assert sorted(snapshot(es, env["ES_INDEX"])) == list(range(1, ROWS + 1))


@pytest.mark.usefixtures("restartable")
def test_mariadb_restart_mid_run_reconnects_at_the_keyset_position(es, env, tmp_path):
    seed(env, catalog())
    env = {**env, **FAST_CHECKPOINTS}
    log = tmp_path / "run.log"

    run = run_until_checkpoint(
        es, env, log, ("checkpoint:full:all", "after_id", 4), "full", "--workers", "1", "--page-size", "2"
    )
    stack.restart("mariadb")
    code = run.wait(timeout=400)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "catalog database connection lost" in output or "catalog database unavailable" in output
    documents = snapshot(es, env["ES_INDEX"])
    assert sorted(documents) == list(range(1, ROWS + 1))
    assert {doc["status"] for doc in documents.values()} == {"indexed"}
