"""The one retry policy: what each service counts as transient, deadlines, backoff, Retry-After, log lines."""

from __future__ import annotations

import logging
import time

import elastic_transport
import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, BadRequestError, NotFoundError

from imgsearch import retry
from imgsearch.download import download_failure
from imgsearch.retry import (
    Backoff,
    NotReady,
    download_retrying,
    elasticsearch_retrying,
    is_elasticsearch_transient,
    kibana_retrying,
    retry_elasticsearch,
)


def api_error(status: int, kind: type[ApiError] = ApiError) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "h", 1),
    )
    return kind(message=f"status {status}", meta=meta, body={"error": {"reason": "x"}, "status": status})


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Waits are recorded, not slept; jitter always stretches to its maximum (deterministic)."""
    recorded: list[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    return recorded


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_overloaded_or_restarting_elasticsearch_is_transient(status):
    assert is_elasticsearch_transient(api_error(status))


def test_unreachable_elasticsearch_is_transient_but_request_errors_are_not():
    assert is_elasticsearch_transient(elastic_transport.ConnectionError("refused"))
    assert is_elasticsearch_transient(elastic_transport.ConnectionTimeout("timed out"))
    permanent = [api_error(400, BadRequestError), api_error(404, NotFoundError), api_error(500), ValueError()]
    assert not any(is_elasticsearch_transient(error) for error in permanent)


def test_elasticsearch_errors_are_waited_out_with_doubling_logged_waits(sleeps, caplog):
    call = Flaky(elastic_transport.ConnectionError("refused"), api_error(503), api_error(429))
    with caplog.at_level(logging.WARNING, logger="imgsearch.retry"):
        assert retry_elasticsearch(call, "read state", 60.0) == "done"
    assert call.calls == 4 and sleeps == [0.75, 1.5, 3.0]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "read state: Elasticsearch unavailable (Connection error); retrying in 0.8 s"
    assert all("Elasticsearch unavailable" in line for line in lines) and len(lines) == 3


def test_a_request_error_is_raised_at_once(sleeps):
    call = Flaky(api_error(400, BadRequestError))
    with pytest.raises(BadRequestError):
        retry_elasticsearch(call, "save", 60.0)
    assert call.calls == 1 and sleeps == []


def test_the_deadline_stops_before_a_wait_that_would_end_past_it(sleeps):
    call = Flaky(*[elastic_transport.ConnectionError("refused")] * 10)
    with pytest.raises(elastic_transport.ConnectionError):
        retry_elasticsearch(call, "scan", 2.0)
    assert sleeps == [0.75, 1.5] and call.calls == 3  # the next wait (3 s) would pass the 2 s deadline


def test_the_backoff_is_capped_and_the_log_line_can_say_what_waits(sleeps, caplog):
    call = Flaky(*[api_error(503)] * 4)
    retrying = elasticsearch_retrying("bulk", 300.0, Backoff(1.0, 2.5), lambda: "7 documents wait")
    with caplog.at_level(logging.WARNING, logger="imgsearch.retry"):
        assert retrying(call) == "done"
    assert sleeps == [1.5, 2.5, 2.5, 2.5]
    assert "bulk: Elasticsearch unavailable (" in caplog.records[0].getMessage()
    assert caplog.records[0].getMessage().endswith("; 7 documents wait; retrying in 1.5 s")


def test_jitter_stretches_each_wait_by_at_most_half():
    for _ in range(200):
        assert 1.0 <= Backoff(1.0, 100.0).delay(0) <= 1.5
        assert 4.0 <= Backoff(1.0, 100.0).delay(2) <= 6.0
    assert Backoff(1.0, 5.0).delay(10) == 5.0


def test_downloads_honour_retry_after_and_the_attempt_limit(sleeps):
    throttled = download_failure("http_429", "GET x answered HTTP 429", retry_after=4.0)
    call = Flaky(throttled, download_failure("timeout", "slow"))
    assert download_retrying(2, Backoff(0.25, 8.0), time.monotonic() + 60)(call) == "done"
    assert sleeps == [4.0, 0.75]  # Retry-After, longer than the backoff; then the backoff
    never = Flaky(*[download_failure("http_503", "busy")] * 5)
    with pytest.raises(type(throttled)):
        download_retrying(2, Backoff(0.25, 8.0), time.monotonic() + 60)(never)
    assert never.calls == 3


def test_downloads_stop_when_a_wait_would_end_past_the_deadline(sleeps):
    call = Flaky(download_failure("http_429", "throttled", retry_after=3600.0))
    with pytest.raises(type(call.errors[0])):
        download_retrying(5, Backoff(0.25, 8.0), time.monotonic() + 10)(call)
    assert call.calls == 1 and sleeps == []


def test_permanent_download_failures_are_not_retried(sleeps):
    call = Flaky(download_failure("http_404", "missing"))
    with pytest.raises(type(call.errors[0])):
        download_retrying(5, Backoff(0.25, 8.0), time.monotonic() + 60)(call)
    assert call.calls == 1


def test_kibana_without_wait_is_tried_once_and_with_wait_until_it_is_ready(sleeps):
    said: list[str] = []
    once = Flaky(NotReady("HTTP 503: not ready yet", "answer"))
    with pytest.raises(NotReady):
        kibana_retrying(0.0, 5.0, said.append)(once)
    assert once.calls == 1 and said == []
    starting = Flaky(ConnectionRefusedError("refused"), NotReady("HTTP 503: not ready yet", "answer"))
    assert kibana_retrying(30.0, 5.0, said.append)(starting) == "done"
    assert said == [
        "Kibana not ready (refused); retrying in 1.5 s",
        "Kibana not ready (HTTP 503: not ready yet); retrying in 3.0 s",
    ]
