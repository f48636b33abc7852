"""Production server under load while the indexer rebuilds and swaps the alias: zero failed queries."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections import Counter

import pytest

from tests.integration.helpers import photo_entries, run_full, seed
from tests.support.apiserver import get_json, gunicorn_api
from tests.support.catalog import catalog_environment

pytestmark = [pytest.mark.integration]


def upload_request(base_url: str, data: bytes) -> urllib.request.Request:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return urllib.request.Request(
        base_url + "/search?size=4",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )


class Load:
    """Threads querying the API until stopped; every answer (or connection error) is counted."""

    def __init__(self, base_url: str, photo: bytes) -> None:
        self.base_url = base_url
        self.photo = photo
        self.results: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def record(self, outcome: str, detail: str = "") -> None:
        with self._lock:
            self.results[outcome] += 1
            if outcome != "200" and len(self.failures) < 20:
                self.failures.append(f"{outcome} {detail}")

    def one(self, number: int) -> None:
        if number % 4 == 0:
            request = upload_request(self.base_url, self.photo)
        else:
            request = urllib.request.Request(f"{self.base_url}/images/{1 + number % 8}/similar?size=3")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                self.record(str(response.status))
        except urllib.error.HTTPError as error:
            self.record(str(error.code), error.read()[:300].decode(errors="replace"))
        except OSError as error:
            self.record("connection_error", repr(error))

    def worker(self, offset: int) -> None:
        number = offset
        while not self.stop.is_set():
            self.one(number)
            number += 1

    def run_while(self, action, threads: int = 4) -> None:
        workers = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(threads)]
        for thread in workers:
            thread.start()
        try:
            time.sleep(1.0)
            action()
            time.sleep(1.0)
        finally:
            self.stop.set()
            for thread in workers:
                thread.join(timeout=60)


def test_queries_never_fail_while_full_rebuilds_swap_the_alias_and_drop_old_versions(
    stack_urls, extractor_per_precision, image_server, photo_folder, tmp_path, es
):
    alias = f"test-swap-{uuid.uuid4().hex[:8]}"
    env = catalog_environment(*stack_urls, alias, str(tmp_path / "reports"))
    env["IMAGE_BASE_URL"] = image_server
    env["INDEXER_KEEP_VERSIONS"] = "1"  # each swap also deletes the index queries were just using
    seed(env, photo_entries(4, 2))
    extractor = extractor_per_precision  # the indexer in each precision; the API as this machine runs it
    run_full(env, extractor)
    try:
        with gunicorn_api(env, tmp_path / "gunicorn.log", SEARCH_THREADS="8") as base_url:
            before = get_json(base_url + "/stats")[1]["indices"][0]["index"]
            load = Load(base_url, (photo_folder / "p002-chelsea-front.jpg").read_bytes())
            load.run_while(lambda: [run_full(env, extractor, recompute=True) for _ in range(2)])
            after = get_json(base_url + "/stats")[1]["indices"][0]["index"]
            metrics = urllib.request.urlopen(base_url + "/metrics", timeout=10).read().decode()
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")
    assert after != before and not es.indices.exists(index=before)
    assert load.failures == [], load.failures
    assert load.results["200"] >= 20, load.results
    assert 'imgsearch_http_request_duration_seconds_count{endpoint="/images/<image_id>/similar"' in metrics
