"""The demo's image_url allowlist: its own photo server only, never Elasticsearch on the same machine."""

from __future__ import annotations

import pytest

from demo.__main__ import demo_environment, photo_hosts
from demo.catalog import write_photo_files
from devstack.kit.imageserver import serve_folder
from searchapi.config import load_search_config
from searchapi.errors import ApiError
from searchapi.urlfetch import fetch_image_url

MAX_BYTES = 10 * 1024 * 1024


@pytest.fixture
def demo_photos(tmp_path, monkeypatch):
    """(base URL, file names) of a demo photo folder served on 127.0.0.1, and the demo's settings."""
    monkeypatch.delenv("SEARCH_URL_ALLOWED_HOSTS", raising=False)
    entries = write_photo_files(tmp_path, products=1, views=2)
    with serve_folder(tmp_path) as base_url:
        yield base_url, [entry.photo for entry in entries]


def allowed_hosts(base_url: str) -> tuple[str, ...]:
    return load_search_config(demo_environment(base_url, "random")).url_allowed_hosts


def test_the_allowlist_names_the_photo_servers_port():
    assert photo_hosts("http://127.0.0.1:8001/") == "127.0.0.1:8001,localhost:8001"


def test_the_demo_photo_urls_are_fetched(demo_photos, tmp_path):
    base_url, names = demo_photos
    hosts = allowed_hosts(base_url)
    for name in names:
        for url in (base_url + name, base_url.replace("127.0.0.1", "localhost") + name):
            data = fetch_image_url(url, timeout=5, max_bytes=MAX_BYTES, allowed_hosts=hosts)
            assert data == (tmp_path / name).read_bytes()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9200/", "http://localhost:9200/_cat/indices", "http://127.0.0.1/"]
)
def test_elasticsearch_and_other_local_ports_are_refused(demo_photos, url):
    with pytest.raises(ApiError) as caught:
        fetch_image_url(url, timeout=5, max_bytes=MAX_BYTES, allowed_hosts=allowed_hosts(demo_photos[0]))
    assert caught.value.code == "forbidden_image_url"


def test_an_explicit_allowlist_wins(monkeypatch):
    monkeypatch.setenv("SEARCH_URL_ALLOWED_HOSTS", "cdn.example")
    assert demo_environment("http://127.0.0.1:8001/", "random")["SEARCH_URL_ALLOWED_HOSTS"] == "cdn.example"
