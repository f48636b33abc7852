"""bench.soak's pure logic: request windows, their statistics, swap windows, alias changes, verdict."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.soak import (
    AliasEvent,
    alias_events,
    client_split,
    error_examples,
    in_window,
    nearest_swap,
    phase_windows,
    run_problems,
    swap_windows,
    swaps_under_load,
    timeline,
    verdict,
    watch_problems,
    window_stats,
)
from devstack.kit.apiserver import free_port
from devstack.kit.loadgen import HttpRequest, KeepAliveClient, id_request
from devstack.kit.loadgen import Outcome as Sample
from devstack.kit.loadgen import timed_http as timed_sample


def ok(start: float, seconds: float, kind: str = "by id", hits: int = 5) -> Sample:
    return Sample(kind, seconds, 200, hits=hits, start=start)


def failed(start: float, status: int = 503, kind: str = "by id") -> Sample:
    if status == 0:
        return Sample(kind, 0.01, 0, error="ConnectionResetError: reset", start=start)
    return Sample(kind, 0.01, status, start=start, detail='{"error": "index_missing"}')


def test_sample_end_and_failure():
    assert ok(1.0, 0.25).end == 1.25
    assert not ok(1.0, 0.25).failed
    assert failed(1.0).failed and failed(1.0, 0).failed and failed(1.0, 404).failed
    assert not Sample("by id", 0.1, 204, start=0).failed


class Answers(BaseHTTPRequestHandler):
    """/ok: a search answer with 2 hits; anything else: 503 with a JSON error body."""

    def do_GET(self) -> None:
        good = self.path == "/ok"
        body = b'{"hits": [{}, {}]}' if good else b'{"error": {"code": "index_missing"}}'
        self.send_response(200 if good else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_timed_sample_records_status_hits_and_error_bodies(answers):
    client = KeepAliveClient("127.0.0.1", answers)
    good = timed_sample(client, HttpRequest("by id", "GET", "/ok"))
    bad = timed_sample(client, id_request("1", 5))
    client.close()
    assert (
        good.status == 200 and good.hits == 2 and not good.failed and good.start > 0 and good.end > good.start
    )
    assert bad.status == 503 and bad.failed and "index_missing" in bad.detail and bad.kind == "by id"


def test_timed_sample_turns_a_refused_connection_into_a_failed_sample():
    client = KeepAliveClient("127.0.0.1", free_port())
    sample = timed_sample(client, id_request("1", 5))
    assert sample.status == 0 and sample.failed and "Connection" in sample.error


def test_window_by_start_is_half_open():
    samples = [ok(0.9, 0.2), ok(1.0, 0.1), ok(1.5, 2.0), ok(2.0, 0.1)]
    assert [s.start for s in in_window(samples, 1.0, 2.0)] == [1.0, 1.5]


def test_window_by_overlap_takes_requests_in_flight_at_any_moment():
    samples = [ok(0.0, 0.5), ok(0.5, 1.0), ok(1.2, 0.1), ok(2.9, 0.5), ok(3.0, 0.1)]
    # in flight during [1, 3): the one that started at 0.5 and ended at 1.5, 1.2, 2.9
    assert [s.start for s in in_window(samples, 1.0, 3.0, overlap=True)] == [0.5, 1.2, 2.9]


def test_window_stats_per_kind_errors_rate_and_percentiles():
    samples = [ok(float(n) / 10, 0.010 * (n + 1)) for n in range(10)]  # by id: 10..100 ms
    samples += [ok(0.05, 1.0, "upload"), failed(0.5, 503), failed(0.6, 0, "upload")]
    stats = window_stats(samples, 0.0, 1.0, page_size=5)
    assert stats["span_s"] == 1.0 and stats["selection"] == "started"
    assert stats["errors"] == 2
    assert stats["all"]["requests"] == 13 and stats["all"]["per_second"] == 13.0
    by_id = stats["by id"]
    assert by_id["requests"] == 11 and by_id["ok"] == 10 and by_id["non_2xx"] == 1
    assert by_id["p50_ms"] == pytest.approx(55.0) and by_id["max_ms"] == pytest.approx(100.0)
    assert by_id["p99_ms"] == pytest.approx(99.1)
    upload = stats["upload"]
    assert upload["requests"] == 2 and upload["connection_errors"] == 1 and upload["p50_ms"] == 1000.0


def test_window_stats_of_an_empty_or_zero_length_window():
    stats = window_stats([ok(5.0, 0.1)], 1.0, 1.0, page_size=5)
    assert stats["all"]["requests"] == 0 and stats["errors"] == 0
    assert "per_second" not in stats["all"] and "p50_ms" not in stats["by id"]


def test_short_pages_are_counted_not_failed():
    stats = window_stats([ok(0.1, 0.01, hits=2), ok(0.2, 0.01)], 0.0, 1.0, page_size=5)
    assert stats["all"]["short_pages"] == 1 and stats["errors"] == 0


def test_phase_windows_before_during_each_run_after_and_whole():
    runs = [("full (reuse)", 20.0, 30.0), ("full --recompute", 30.5, 80.0)]
    assert phase_windows(120.0, runs) == [
        ("before rebuilds", 0.0, 20.0),
        ("during rebuilds", 20.0, 80.0),
        ("during full (reuse)", 20.0, 30.0),
        ("during full --recompute", 30.5, 80.0),
        ("after rebuilds", 80.0, 120.0),
        ("whole run", 0.0, 120.0),
    ]


def test_phase_windows_are_clipped_to_the_load():
    # the load ran out of requests at 50 s, in the middle of the only rebuild
    assert phase_windows(50.0, [("full (reuse)", 20.0, 80.0)]) == [
        ("before rebuilds", 0.0, 20.0),
        ("during rebuilds", 20.0, 50.0),
        ("after rebuilds", 50.0, 50.0),
        ("whole run", 0.0, 50.0),
    ]
    assert phase_windows(10.0, [("full (reuse)", 20.0, 30.0)])[1] == ("during rebuilds", 10.0, 10.0)
    assert phase_windows(10.0, []) == [("whole run", 0.0, 10.0)]


def test_swap_windows_round_each_swap():
    assert swap_windows([14.5, 44.0], 2.0) == [("swap 1 ±2 s", 12.5, 16.5), ("swap 2 ±2 s", 42.0, 46.0)]
    assert swap_windows([], 2.0) == []


def test_swap_window_statistics_slice_only_requests_in_flight_round_the_swap():
    samples = [ok(t / 10, 0.05) for t in range(0, 300)]  # one request every 100 ms for 30 s
    samples.append(ok(9.0, 4.5, "upload"))  # started before the window, still running during it
    ((name, lo, hi),) = swap_windows([15.0], 2.0)
    stats = window_stats(samples, lo, hi, page_size=5, overlap=True)
    assert name == "swap 1 ±2 s" and stats["selection"] == "in flight"
    assert stats["by id"]["requests"] == 40  # 13.0 .. 16.9 (12.9 ended at 12.95)
    assert stats["upload"]["requests"] == 1


def test_alias_events_created_swap_deleted():
    before = {"a-1": True}
    during = {"a-1": True, "a-2": False}
    swapped = {"a-1": False, "a-2": True}
    after = {"a-2": True}
    assert alias_events(before, during, 1.0, 1.1) == [AliasEvent("created", "a-2", 1.0, 1.1)]
    assert alias_events(during, swapped, 2.0, 2.1) == [AliasEvent("swap", "a-2", 2.0, 2.1, "a-1")]
    # a swap and the old version's deletion between the same two polls
    assert alias_events(during, after, 3.0, 3.1) == [
        AliasEvent("swap", "a-2", 3.0, 3.1, "a-1"),
        AliasEvent("deleted", "a-1", 3.0, 3.1),
    ]
    assert alias_events(after, after, 4.0, 4.1) == []


def test_alias_event_time_is_the_middle_of_the_poll_interval():
    event = AliasEvent("swap", "a-2", 10.0, 10.2, "a-1")
    assert event.at == pytest.approx(10.1)
    assert event.shifted(10.0).at == pytest.approx(0.1)


def test_nearest_swap_and_error_examples():
    assert nearest_swap(12.0, [10.0, 40.0]) == 2.0
    assert nearest_swap(39.5, [10.0, 40.0]) == -0.5
    assert nearest_swap(1.0, []) is None
    samples = [ok(1.0, 0.1), failed(9.0, 503), failed(11.0, 0), failed(50.0, 502), failed(60.0)]
    examples = error_examples(samples, [10.0], limit=3)
    assert [e["start_s"] for e in examples] == [9.0, 11.0, 50.0]
    assert examples[0]["status"] == 503 and "index_missing" in examples[0]["error"]
    assert examples[1]["error"].startswith("ConnectionResetError")
    assert examples[0]["from_nearest_swap_s"] == -1.0


def test_timeline_buckets_by_start_second():
    samples = [ok(0.1, 0.010), ok(0.5, 0.030), ok(1.2, 1.0, "upload"), failed(1.5), ok(2.99, 0.02)]
    rows = timeline(samples, 3.0)
    assert [row["second"] for row in rows] == [0, 1, 2]
    assert rows[0]["by id"] == {"requests": 2, "p50_ms": 20.0, "max_ms": 30.0}
    assert (
        rows[1]["errors"] == 1 and rows[1]["upload"]["requests"] == 1 and rows[1]["by id"]["p50_ms"] is None
    )


def test_client_split():
    assert client_split(8, 0.25) == (6, 2)
    assert client_split(8, 0.2) == (6, 2)
    assert client_split(8, 0.0) == (8, 0)
    assert client_split(4, 0.01) == (3, 1)  # a share above 0 gets at least one uploader
    assert client_split(4, 1.0) == (0, 4)
    assert client_split(1, 0.5) == (1, 0)  # a single client searches by id


def test_run_problems():
    report = {"outcome": "succeeded", "statuses": {"reused": 36}}
    assert run_problems(0, report, "reused", 36) == []
    assert run_problems(1, report, "reused", 36) == ["exit code 1"]
    assert run_problems(0, None, "reused", 36) == ["no run report written"]
    wrong = run_problems(0, {"outcome": "succeeded", "statuses": {"reused": 30, "indexed": 6}}, "reused", 36)
    assert len(wrong) == 1 and "expected 36 rows reused" in wrong[0]
    failed_run = run_problems(
        3, {"outcome": "validation_failed", "message": "empty", "statuses": {}}, "indexed", 3
    )
    assert failed_run[0] == "exit code 3" and failed_run[1].startswith("outcome validation_failed")


def test_swaps_under_load_and_verdict():
    assert swaps_under_load([5.0, 50.0, 130.0], 120.0) == 2
    assert verdict(0, [True, True], 2, 2) == []
    assert verdict(3, [True, False], 1, 2) == [
        "3 requests failed",
        "1 indexer run(s) failed",
        "1 alias swap(s) under load, expected 2",
    ]


def test_watch_problems_compare_the_run_report_with_what_the_watcher_saw():
    events = [AliasEvent("swap", "a-2", 1.0, 1.1, "a-1"), AliasEvent("deleted", "a-1", 1.2, 1.3)]
    report = {"outcome": "succeeded", "index": "a-2", "deleted_indices": ["a-1"]}
    assert watch_problems(report, events) == []
    assert watch_problems(report | {"index": "a-3"}, events) == ["swap to a-3 not seen"]
    assert watch_problems(report | {"deleted_indices": ["a-0", "a-1"]}, events) == [
        "deletion of a-0 not seen"
    ]
    assert watch_problems({"outcome": "failed", "index": "a-9"}, events) == []
    assert watch_problems(None, events) == []
