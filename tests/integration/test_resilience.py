"""The job survives kill -9, an Elasticsearch restart and a MariaDB restart mid-run, losing nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from demo.catalog import CatalogEntry
from imgsearch import indices
from indexer.state import StateStore
from tests.integration.helpers import execute_sql, run_cli, run_full, seed, start_cli
from tests.support import stack
from tests.support.gate import PhotoGate, release_until, serve_held, wait_for

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


@pytest.fixture
def gate(photo_folder) -> Iterator[PhotoGate]:
    """The test photos behind a gate: the run under test fetches each only when the test lets it."""
    with serve_held(photo_folder) as held:
        yield held


def held_env(env: dict[str, str], gate: PhotoGate) -> dict[str, str]:
    """The run's environment with its photos behind the gate; a held download does not time out."""
    return {**env, **FAST_CHECKPOINTS, "IMAGE_BASE_URL": gate.base_url, "IMAGE_FETCH_TIMEOUT": "120"}


def run_held_at(env, gate: PhotoGate, log, reached: Callable[[], bool], *args: str):
    """Start the CLI and return it held mid-run, once `reached()` holds: photos are let through one
    at a time until then, and never all of them, so however fast the machine the run is still going
    when the test disturbs it. One fetch worker, so photos are asked for in row order."""
    process = start_cli(env, log, *args, "--workers", "1", "--batch-size", "2", "--no-progress")
    try:
        release_until(gate, reached, lambda: process.poll() is None, limit=ROWS - 4)
    except AssertionError as failure:
        process.kill()
        raise AssertionError(f"{failure}\n{log.read_text()[-3000:]}") from None
    return process


def run_held_past_checkpoint(es, env, gate: PhotoGate, log, checkpoint: tuple[str, str, int], *args: str):
    """The CLI held mid-run once the checkpoint `(doc id, field, minimum)` has been saved."""
    return run_held_at(env, gate, log, checkpoint_passed(es, env["ES_INDEX"], *checkpoint), *args)


def kill_after_checkpoint(es, env, gate, log, checkpoint: tuple[str, str, int], *args: str) -> None:
    """SIGKILL the CLI mid-run, right after a checkpoint: nothing can be cleaned up."""
    process = run_held_past_checkpoint(es, env, gate, log, checkpoint, *args)
    process.kill()
    process.wait()
    gate.open()


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
    es, extractor_in, precision, env, gate, tmp_path
):
    """Killed and resumed in `precision`; the clean run computes in the other one (another machine)."""
    seed(env, catalog())
    clean_env = {**env, "ES_INDEX": env["ES_INDEX"] + "-clean"}
    gate.open()  # the clean run is not held; image_url must be the same in both indices
    run_full({**clean_env, "IMAGE_BASE_URL": gate.base_url}, extractor_in(OTHER_PRECISION[precision]))
    gate.close()
    env = {**held_env(env, gate), "VGG16_PRECISION": precision}

    kill_after_checkpoint(
        es,
        env,
        gate,
        tmp_path / "killed.log",
        ("checkpoint:full:all", "after_id", 6),
        "full",
        "--page-size",
        "4",
    )
    assert indices.aliased_indices(es, env["ES_INDEX"]) == []  # nothing was served half-built

    resumed = run_cli(env, "full", "--batch-size", "2", "--no-progress")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    assert_same_index(es, env["ES_INDEX"], clean_env["ES_INDEX"])
    last = StateStore(es, env["ES_INDEX"]).last_runs(1)[0]
    assert last["resumed_from"]["after_id"] >= 6 and last["compute"]["precision"] == precision


def test_incremental_killed_mid_run_is_finished_by_the_next_run(
    es, extractor_per_precision, env, gate, tmp_path
):
    seed(env, catalog())
    env = {**held_env(env, gate), "VGG16_PRECISION": extractor_per_precision.compute.precision}
    gate.open()
    run_full(env, extractor_per_precision)
    gate.close()
    execute_sql(env, "UPDATE `{table}` SET updated_at = NOW()")
    time.sleep(1.1)

    checkpoint = ("checkpoint:incremental:all", "id", 6)
    log = tmp_path / "killed.log"
    kill_after_checkpoint(es, env, gate, log, checkpoint, "incremental", "--page-size", "4")
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
def test_elasticsearch_restart_mid_run_is_waited_out(es, env, gate, tmp_path):
    """Held past a checkpoint, then Elasticsearch stops; the run is let on, meets the outage, and
    only then does Elasticsearch come back."""
    seed(env, catalog())
    env = {**held_env(env, gate), "INDEXER_ES_RETRY_SECONDS": "240"}
    log = tmp_path / "run.log"

    checkpoint = ("checkpoint:full:all", "after_id", 4)
    run = run_held_past_checkpoint(es, env, gate, log, checkpoint, "full", "--page-size", "4")
    stack.stop_elasticsearch()
    try:
        gate.open()
        # the outage really happened mid-run
        wait_for(lambda: "Elasticsearch unavailable" in log.read_text(), "the run to meet the outage", 120)
    finally:
        stack.start_elasticsearch()
    code = run.wait(timeout=400)

    output = log.read_text()
    assert code == 0, output[-3000:]
    es.cluster.health(wait_for_status="yellow", timeout="60s")
    assert es.count(index=env["ES_INDEX"])["count"] == ROWS
    assert sorted(snapshot(es, env["ES_INDEX"])) == list(range(1, ROWS + 1))


@pytest.mark.usefixtures("restartable")
def test_mariadb_restart_mid_run_reconnects_at_the_keyset_position(es, env, gate, tmp_path):
    """Held after 4 photos (the pipeline reads at most a few pages ahead, so most rows are still
    unread), MariaDB restarts; the run is let on and must read the rest over a new connection."""
    seed(env, catalog())
    env = held_env(env, gate)
    log = tmp_path / "run.log"

    args = ("full", "--page-size", "2")
    run = run_held_at(env, gate, log, lambda: gate.admitted >= 4, *args)
    stack.restart("mariadb")
    gate.open()
    code = run.wait(timeout=400)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "catalog database connection lost" in output or "catalog database unavailable" in output
    documents = snapshot(es, env["ES_INDEX"])
    assert sorted(documents) == list(range(1, ROWS + 1))
    assert {doc["status"] for doc in documents.values()} == {"indexed"}
