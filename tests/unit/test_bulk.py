"""The bulk writer accounts every action exactly once, through outages, with streaming_bulk stood in for."""

from __future__ import annotations

import threading
import time

import elastic_transport
import pytest
from elasticsearch.helpers import BULK_FLUSH

from imgsearch.documents import delete_action, index_action
from indexer import bulk
from indexer.bulk import BulkWriter


class FakeStreamingBulk:
    """Chunks the feed like streaming_bulk (by count, or at a flush marker) and answers each action;
    the first `outages` chunk requests fail as a whole with a connection error; `rejected` ids fail."""

    def __init__(self, outages: int = 0, chunk: int = 3, rejected: frozenset[str] = frozenset()) -> None:
        self.outages = outages
        self.chunk = chunk
        self.rejected = rejected
        self.requests: list[list[str]] = []
        self.options: dict = {}

    def __call__(self, client, actions, **options):
        self.options = options
        chunk: list[dict] = []
        for action in actions:
            if action is not BULK_FLUSH:
                chunk.append(action)
            if chunk and (action is BULK_FLUSH or len(chunk) >= self.chunk):
                yield from self._send(chunk)
                chunk = []
        if chunk:
            yield from self._send(chunk)

    def _send(self, chunk: list[dict]):
        self.requests.append([action["_id"] for action in chunk])
        if self.outages:
            self.outages -= 1
            raise elastic_transport.ConnectionError("connection refused")
        for action in chunk:
            operation, doc_id = action["_op_type"], action["_id"]
            if doc_id in self.rejected:
                error = {"type": "x", "reason": "bad"}
                yield False, {operation: {"_id": doc_id, "status": 400, "error": error}}
            elif operation == "delete" and doc_id == "404":
                yield False, {operation: {"_id": doc_id, "status": 404, "result": "not_found"}}
            else:
                yield True, {operation: {"_id": doc_id, "status": 201}}


@pytest.fixture
def results() -> list[tuple[str, bool, str | None]]:
    return []


def write(
    fake: FakeStreamingBulk, monkeypatch, results, actions, retry_seconds: float = 60.0, streams: int = 1
) -> BulkWriter:
    monkeypatch.setattr(bulk, "streaming_bulk", fake)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    lock = threading.Lock()

    def record(doc_id: str, ok: bool, error: str | None) -> None:
        with lock:
            results.append((doc_id, ok, error))

    writer = BulkWriter(None, record, retry_seconds, flush_seconds=0.05, streams=streams).start()
    for action in actions:
        writer.put(action)
    return writer


def actions(count: int) -> list[dict]:
    return [index_action("idx", row_id, {"n": row_id}) for row_id in range(1, count + 1)]


def test_every_action_is_answered_once_in_order_with_the_client_options(monkeypatch, results):
    fake = FakeStreamingBulk()
    write(fake, monkeypatch, results, actions(7)).close()
    assert results == [(str(n), True, None) for n in range(1, 8)]
    assert fake.options["raise_on_error"] is False and fake.options["yield_ok"] is True
    assert fake.options["max_retries"] > 0 and fake.options["chunk_size"] == bulk.BULK_CHUNK_DOCS


def test_an_unreachable_cluster_is_waited_out_and_nothing_is_counted_twice(monkeypatch, results):
    fake = FakeStreamingBulk(outages=2)
    write(fake, monkeypatch, results, actions(7)).close()
    assert sorted(int(doc_id) for doc_id, ok, _ in results if ok) == list(range(1, 8))
    assert len(results) == 7
    assert fake.requests[0] == fake.requests[1] == fake.requests[2] == ["1", "2", "3"]  # sent again


def test_an_outage_after_progress_resends_only_what_was_not_answered(monkeypatch, results):
    fake = FakeStreamingBulk()
    writer = write(fake, monkeypatch, results, actions(3))
    deadline = time.monotonic() + 5
    while len(results) < 3 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    fake.outages = 1
    for action in actions(6)[3:]:
        writer.put(action)
    writer.close()
    assert [doc_id for doc_id, _, _ in results] == [str(n) for n in range(1, 7)]
    assert fake.requests[1] == fake.requests[2] == ["4", "5", "6"]


def test_a_lone_action_is_flushed_without_waiting_for_a_full_chunk(monkeypatch, results):
    writer = write(FakeStreamingBulk(chunk=100), monkeypatch, results, actions(1))
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert results == [("1", True, None)]  # answered before close()
    writer.close()


def test_failed_items_carry_their_reason_and_an_absent_delete_is_done(monkeypatch, results):
    fake = FakeStreamingBulk(rejected=frozenset({"2"}))
    work = [*actions(2), delete_action("idx", 404)]
    write(fake, monkeypatch, results, work).close()
    assert results == [("1", True, None), ("2", False, "x: bad"), ("404", True, None)]


def test_an_outage_past_the_deadline_fails_the_writer_without_counting_the_chunk(monkeypatch, results):
    writer = write(FakeStreamingBulk(outages=100), monkeypatch, results, actions(2), retry_seconds=0.0)
    with pytest.raises(RuntimeError, match="bulk writer failed: Connection error"):
        writer.close()
    assert results == []
    with pytest.raises(RuntimeError, match="bulk writer stopped"):
        writer.put(actions(1)[0])


def test_several_streams_answer_every_action_once_one_result_at_a_time(monkeypatch, results):
    inside = threading.Lock()

    def one_at_a_time(doc_id: str, ok: bool, error: str | None) -> None:
        assert inside.acquire(blocking=False), "on_result called by two streams at once"
        threading.Event().wait(0.0005)  # a window in which a second, unlocked stream would enter
        results.append((doc_id, ok, error))
        inside.release()

    fake = FakeStreamingBulk(outages=3)
    monkeypatch.setattr(bulk, "streaming_bulk", fake)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    writer = BulkWriter(None, one_at_a_time, retry_seconds=60, flush_seconds=0.05, streams=3).start()
    for action in actions(500):
        writer.put(action)
    writer.close()
    assert sorted(int(doc_id) for doc_id, ok, _ in results if ok) == list(range(1, 501))
    assert len(results) == 500
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("bulk-writer")]


def test_a_fatal_error_in_one_of_several_streams_fails_the_writer_without_hanging(monkeypatch, results):
    writer = write(FakeStreamingBulk(outages=1000), monkeypatch, results, actions(50), 0.0, streams=3)
    closing = threading.Thread(target=lambda: pytest.raises(RuntimeError, writer.close))
    closing.start()
    closing.join(timeout=10)
    assert not closing.is_alive(), "close() hung after a stream failed"
    assert results == []
    with pytest.raises(RuntimeError, match="bulk writer stopped"):
        writer.put(actions(1)[0])
