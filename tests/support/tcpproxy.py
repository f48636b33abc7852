"""A real TCP proxy in front of a service whose traffic can be stalled (a slow or hung server)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class StallableProxy:
    """Forwards 127.0.0.1:<port> to an upstream; while stalled, requests are swallowed unanswered."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stalled = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False

    def start(self) -> StallableProxy:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, is_request: bool) -> None:
        """Copy bytes one way; requests arriving while stalled are dropped, so no answer ever comes."""
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if is_request and self.stalled.is_set():
                    continue
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def stallable_proxy(upstream_url: str) -> Iterator[StallableProxy]:
    """A proxy for an http://host:port URL; yields it (its URL is http://127.0.0.1:<proxy.port>)."""
    from urllib.parse import urlsplit

    parts = urlsplit(upstream_url)
    proxy = StallableProxy(parts.hostname or "127.0.0.1", parts.port or 80).start()
    try:
        yield proxy
    finally:
        proxy.close()
