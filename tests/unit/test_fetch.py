"""Photo resolution and downloads from a real local HTTP server and local files."""

from __future__ import annotations

import pytest

from indexer.config import load_fetch_config
from indexer.errors import RowFailure, RowStatus
from indexer.fetch import ImageFetcher, resolve_photo
from tests.support.imageserver import serve_folder


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
