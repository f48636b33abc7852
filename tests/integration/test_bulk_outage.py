"""The bulk writer, with the real streaming_bulk, waits out a cut mid-stream and counts each item once."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest

from imgsearch.config import load_elastic_config
from imgsearch.documents import index_action
from imgsearch.esclient import make_client
from indexer.bulk import BulkWriter

pytestmark = [pytest.mark.integration]


class CuttableProxy:
    """A TCP proxy to Elasticsearch of our own: cut() drops every connection and refuses new ones until
    restore() (the shared cluster itself is never touched)."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.down = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self.down.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets = []

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_a_cut_mid_stream_is_waited_out_and_every_document_counted_once(es, stack_urls, caplog):
    proxy = CuttableProxy(stack_urls[0])
    client = make_client(load_elastic_config({"ES_URL": proxy.url, "ES_REQUEST_TIMEOUT": "5"}))
    index = f"test-bulk-outage-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index)
    results: list[tuple[str, bool, str | None]] = []
    writer = BulkWriter(client, lambda *result: results.append(result), retry_seconds=60).start()
    try:
        with caplog.at_level(logging.WARNING, logger="imgsearch.retry"):
            for number in range(1, 1201):
                writer.put(index_action(index, number, {"n": number, "pad": "x" * 2000}))
                if number == 500:
                    time.sleep(1.0)  # some chunks are answered before the cut
                    proxy.cut()
                    threading.Timer(3.0, proxy.restore).start()
            writer.close()
        assert sorted(int(doc_id) for doc_id, _, _ in results) == list(range(1, 1201))
        assert all(ok for _, ok, _ in results)
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == 1200
        assert "bulk: Elasticsearch unavailable" in caplog.text
    finally:
        proxy.close()
        es.indices.delete(index=index)
