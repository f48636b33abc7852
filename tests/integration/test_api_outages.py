"""Elasticsearch stopped or hung under the API: bounded 503s with a JSON reason, then recovery."""

from __future__ import annotations

import io
import time

import pytest

from searchapi import create_app
from tests.integration.helpers import indexed_catalog, photo_entries
from tests.support import stack
from tests.support.tcpproxy import stallable_proxy

pytestmark = [pytest.mark.integration]

ES_TIMEOUT = 2.0
# A 503 must come within the client timeout, plus the one reconnect and a loaded 2-core box's slack.
BOUND_SECONDS = 2 * ES_TIMEOUT + 3


@pytest.fixture(scope="module")
def catalog(stack_urls, extractor, image_server, tmp_path_factory, es):
    reports = str(tmp_path_factory.mktemp("reports"))
    with indexed_catalog(
        stack_urls, extractor, image_server, reports, es, photo_entries(2, 2), "test-outage"
    ) as env:
        yield env


def requests_to_try(photo_folder) -> list[tuple[str, str, dict]]:
    data = (photo_folder / "p001-astronaut-front.jpg").read_bytes()
    return [
        ("post", "/search", {"data": {"image": (io.BytesIO(data), "q.jpg")}}),
        ("get", "/images/1/similar", {}),
        ("get", "/images/1", {}),
        ("get", "/stats", {}),
    ]


def assert_all_unavailable(client, photo_folder) -> None:
    """Each request answers 503 with a JSON reason, each within the bound."""
    for method, path, kwargs in requests_to_try(photo_folder):
        started = time.monotonic()
        response = getattr(client, method)(path, **kwargs)
        seconds = time.monotonic() - started
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"] == "search_backend_unavailable", path
        assert seconds < BOUND_SECONDS, f"{path} took {seconds:.1f}s to fail"
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["checks"]["elasticsearch"] == "unreachable"


def wait_until_served(client, photo_folder, seconds: float = 60.0) -> None:
    """Poll until every request is a 200 again; anything but 200/503 on the way fails the test."""
    deadline = time.monotonic() + seconds
    while True:
        statuses = [
            getattr(client, method)(path, **kwargs).status_code
            for method, path, kwargs in requests_to_try(photo_folder)
        ]
        assert set(statuses) <= {200, 503}, statuses
        if statuses == [200] * len(statuses):
            return
        assert time.monotonic() < deadline, f"not serving again after {seconds}s: {statuses}"
        time.sleep(0.5)


def test_hung_elasticsearch_is_a_bounded_503_and_recovery_needs_no_restart(catalog, extractor, photo_folder):
    with stallable_proxy(catalog["ES_URL"]) as proxy:
        app = create_app(
            {**catalog, "ES_URL": f"http://127.0.0.1:{proxy.port}", "SEARCH_ES_TIMEOUT": str(ES_TIMEOUT)},
            extractor=extractor,
        )
        client = app.test_client()
        wait_until_served(client, photo_folder, seconds=10)
        proxy.stalled.set()
        assert_all_unavailable(client, photo_folder)
        proxy.stalled.clear()
        wait_until_served(client, photo_folder)


@pytest.fixture
def stoppable(stack_urls):
    if not stack.local_stack_serves(stack_urls[0]):
        pytest.skip("stopping Elasticsearch needs the local stack of scripts/stack.sh (make test starts it)")


@pytest.mark.usefixtures("stoppable")
def test_elasticsearch_stopped_mid_test_is_a_503_then_served_again(catalog, extractor, photo_folder, es):
    app = create_app({**catalog, "SEARCH_ES_TIMEOUT": str(ES_TIMEOUT)}, extractor=extractor)
    client = app.test_client()
    wait_until_served(client, photo_folder, seconds=10)
    stack.stop_elasticsearch()
    try:
        assert_all_unavailable(client, photo_folder)
    finally:
        stack.start_elasticsearch()
    es.cluster.health(wait_for_status="yellow", timeout="60s")
    wait_until_served(client, photo_folder)
