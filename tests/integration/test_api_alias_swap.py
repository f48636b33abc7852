"""Production server under load while the indexer rebuilds and swaps the alias: zero failed queries."""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from devstack.kit.apiserver import get_json, gunicorn_api
from devstack.kit.loadgen import LoadRunner, id_request, upload_request
from tests.integration.helpers import photo_entries, run_full, scratch_catalog

pytestmark = [pytest.mark.integration]


def load_on(base_url: str, photo: bytes) -> LoadRunner:
    """Four closed-loop clients on the API: three search by id (rows 1-8, 3 hits), one uploads `photo`."""
    by_id = lambda number: id_request(str(1 + number % 8), 3)  # noqa: E731
    clients = [by_id] * 3 + [lambda number: upload_request(photo, 4)]
    return LoadRunner(urlsplit(base_url).port, clients, budget=10**9)


def test_queries_never_fail_while_full_rebuilds_swap_the_alias_and_drop_old_versions(
    stack_urls, extractor_per_precision, image_server, photo_folder, tmp_path, es
):
    reports, extractor = str(tmp_path / "reports"), extractor_per_precision  # the API as this machine runs
    # each swap also deletes the index queries were just using
    extra = {"IMAGE_BASE_URL": image_server, "INDEXER_KEEP_VERSIONS": "1"}
    with scratch_catalog(stack_urls, reports, "test-swap", photo_entries(4, 2), **extra) as env:
        run_full(env, extractor)
        with gunicorn_api(env, tmp_path / "gunicorn.log", SEARCH_THREADS="8") as base_url:
            before = get_json(base_url + "/stats")[1]["indices"][0]["index"]
            load = load_on(base_url, (photo_folder / "p002-chelsea-front.jpg").read_bytes())
            load.start()
            try:
                assert load.started.wait(60), load.error
                time.sleep(1.0)
                for _ in range(2):
                    run_full(env, extractor, recompute=True)
                time.sleep(1.0)
            finally:
                load.halt()
            after = get_json(base_url + "/stats")[1]["indices"][0]["index"]
            metrics = urllib.request.urlopen(base_url + "/metrics", timeout=10).read().decode()
        assert after != before and not es.indices.exists(index=before)
    outcomes = load.result.outcomes
    assert load.error is None and not load.is_alive()
    failed = [outcome for outcome in outcomes if outcome.failed]
    assert failed == [], failed[:20]
    assert sum(outcome.ok for outcome in outcomes) >= 20, len(outcomes)
    assert {outcome.kind for outcome in outcomes} == {"by id", "upload"}
    assert 'imgsearch_http_request_duration_seconds_count{endpoint="/images/<image_id>/similar"' in metrics
