"""Photo resolution and downloads from a real local HTTP server and local files."""

from __future__ import annotations

import email.utils
import os
import time

import pytest

from devstack.kit.imageserver import serve_faults, serve_folder
from imgsearch.errors import RowFailure, RowStatus
from imgsearch.retry import Backoff, parse_retry_after
from indexer.config import load_fetch_config
from indexer.fetch import MAX_BACKOFF_SECONDS, ImageFetcher, resolve_photo

BODY = os.urandom(3000)


def backoff_delay(attempt: int, base: float) -> float:
    """The wait before retry `attempt` of a download whose backoff starts at `base` seconds."""
    return Backoff(base, MAX_BACKOFF_SECONDS).delay(attempt)


@pytest.mark.parametrize(
    ("photo", "base", "expected"),
    [
        ("a/b.jpg", "http://cdn.example/img", "http://cdn.example/img/a/b.jpg"),
        ("/a/b.jpg", "http://cdn.example/img/", "http://cdn.example/img/a/b.jpg"),
        ("https://other.example/x.png", "http://cdn.example/", "https://other.example/x.png"),
        ("/srv/photos/x.jpg", "", "/srv/photos/x.jpg"),
        ("file:///srv/x.jpg", "", "/srv/x.jpg"),
    ],
)
def test_resolve_photo(photo, base, expected):
    assert resolve_photo(photo, base) == expected


def test_resolve_relative_path_under_folder(tmp_path):
    assert resolve_photo("sub/x.jpg", str(tmp_path)) == str(tmp_path / "sub" / "x.jpg")


@pytest.mark.parametrize(
    ("photo", "base", "reason"), [("", "http://x/", "empty_photo"), ("a.jpg", "", "no_base_url")]
)
def test_resolve_invalid_rows(photo, base, reason):
    with pytest.raises(RowFailure) as caught:
        resolve_photo(photo, base)
    assert caught.value.status is RowStatus.INVALID_ROW and caught.value.reason == reason


def test_resolve_refuses_to_escape_base_folder(tmp_path):
    with pytest.raises(RowFailure, match="leaves IMAGE_BASE_URL"):
        resolve_photo("../../etc/passwd", str(tmp_path))


@pytest.fixture
def fetcher():
    return ImageFetcher(load_fetch_config({"IMAGE_MAX_BYTES": "2048", "IMAGE_FETCH_RETRIES": "0"}))


def test_http_download_and_failures(tmp_path, fetcher):
    (tmp_path / "ok.bin").write_bytes(b"x" * 100)
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    with serve_folder(tmp_path) as base:
        assert fetcher.fetch(base + "ok.bin") == b"x" * 100
        assert fetcher.fetch(base + "redirect/ok.bin") == b"x" * 100
        for path, reason in (
            ("missing.bin", "http_404"),
            ("status/500", "http_500"),
            ("big.bin", "too_large"),
        ):
            with pytest.raises(RowFailure) as caught:
                fetcher.fetch(base + path)
            assert caught.value.status is RowStatus.DOWNLOAD_FAILED and caught.value.reason == reason


def test_connection_refused(fetcher):
    with pytest.raises(RowFailure) as caught:
        fetcher.fetch("http://127.0.0.1:9/x.jpg")
    assert caught.value.reason == "connection_refused"


def test_local_files(tmp_path, fetcher):
    (tmp_path / "ok.bin").write_bytes(b"abc")
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    assert fetcher.fetch(str(tmp_path / "ok.bin")) == b"abc"
    for name, reason in (("big.bin", "too_large"), ("nope.bin", "not_found")):
        with pytest.raises(RowFailure) as caught:
            fetcher.fetch(str(tmp_path / name))
        assert caught.value.reason == reason


def make_fetcher(timeout: float = 0.5, retries: int = 2, backoff: float = 0.05, max_bytes: int = 2048):
    env = {"IMAGE_FETCH_TIMEOUT": str(timeout), "IMAGE_FETCH_RETRIES": str(retries)}
    return ImageFetcher(load_fetch_config({**env, "IMAGE_MAX_BYTES": str(max_bytes)}), backoff=backoff)


@pytest.fixture
def server(tmp_path):
    (tmp_path / "body.bin").write_bytes(BODY)
    with serve_faults(tmp_path) as running:
        yield running


def fetch_fails(fetcher: ImageFetcher, url: str) -> RowFailure:
    with pytest.raises(RowFailure) as caught:
        fetcher.fetch(url)
    assert caught.value.status is RowStatus.DOWNLOAD_FAILED
    return caught.value


@pytest.mark.parametrize(
    ("path", "requests"),
    [
        ("flaky/2/body.bin", 3),  # HTTP 500 twice
        ("throttle/1/0/body.bin", 2),  # HTTP 429 once
        ("cut/1/body.bin", 2),  # connection reset in the middle of the body once
    ],
)
def test_transient_failures_are_retried_until_the_file_comes(server, path, requests):
    assert make_fetcher(max_bytes=4096).fetch(server.base_url + path) == BODY
    assert server.hits(path) == requests


def test_retries_wait_with_exponential_backoff(server):
    make_fetcher(backoff=0.2, max_bytes=4096).fetch(server.base_url + "flaky/2/body.bin")
    first, second, third = server.requests["/flaky/2/body.bin"]
    assert 0.2 <= second - first < 0.5  # even the first retry waits (urllib3's backoff skips it)
    assert 0.4 <= third - second < 0.8


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("status/503", "http_503"),
        ("reset/body.bin", "connection_reset"),
        ("cut/9/body.bin", "connection_reset"),
        ("slow/2/body.bin", "timeout"),
    ],
)
def test_persistent_transient_failures_fail_after_every_retry(server, path, reason):
    failure = fetch_fails(make_fetcher(max_bytes=4096), server.base_url + path)
    assert failure.reason == reason, failure.message
    assert server.hits(path) == 3 and "after 3 attempts" in failure.message


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("missing.bin", "http_404"),
        ("body.bin", "too_large"),
        ("redirect/" * 6 + "body.bin", "too_many_redirects"),
    ],
)
def test_permanent_failures_are_not_retried(server, path, reason):
    assert fetch_fails(make_fetcher(), server.base_url + path).reason == reason
    assert server.hits(path) == 1


def test_retry_after_is_honoured(server):
    started = time.monotonic()
    assert make_fetcher(timeout=2, max_bytes=4096).fetch(server.base_url + "throttle/1/1/body.bin") == BODY
    assert time.monotonic() - started >= 1.0


def test_retry_after_past_the_deadline_fails_at_once(server):
    started = time.monotonic()
    failure = fetch_fails(make_fetcher(), server.base_url + "throttle/1/3600/body.bin")
    assert time.monotonic() - started < 1.0  # urllib3 would sleep for the full hour
    assert failure.reason == "http_429" and "Retry-After 3600" in failure.message


def test_slow_drip_is_cut_at_the_overall_deadline(server):
    started = time.monotonic()  # 3000 bytes at 16 bytes per 0.1 s would take 19 s
    failure = fetch_fails(
        make_fetcher(timeout=0.3, retries=0, max_bytes=4096), server.base_url + "drip/0.1/body.bin"
    )
    assert failure.reason == "timeout"
    assert time.monotonic() - started < 1.5


def test_body_without_content_length_is_capped(server):
    assert fetch_fails(make_fetcher(), server.base_url + "unsized/body.bin").reason == "too_large"
    assert make_fetcher(max_bytes=4096).fetch(server.base_url + "unsized/body.bin") == BODY


def test_backoff_doubles_with_jitter_and_is_capped():
    for attempt, low in enumerate((0.25, 0.5, 1.0, 2.0)):
        assert low <= backoff_delay(attempt, 0.25) <= low * 1.5
    assert backoff_delay(20, 0.25) == 8.0


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 61
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
