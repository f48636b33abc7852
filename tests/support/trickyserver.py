"""A real local HTTP(S) server for SSRF tests: scripted redirects, stalls, drips and endless bodies."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from devstack.kit.imageserver import FaultServer, ImageHandler
from tests.support.tlscerts import TlsFiles

ENDLESS_CHUNK = b"\0" * 65536
LONGEST_STALL_SECONDS = 10.0  # stalls and drips end by themselves: a client without a deadline fails


class TrickyServer(FaultServer):
    """A FaultServer that also records Host headers and TLS SNI names, and can wake its stalled handlers."""

    def __init__(self, *args: object, scheme: str = "http", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.scheme = scheme
        self.stopping = threading.Event()
        self.host_headers: list[str] = []
        self.sni_names: list[str | None] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """`path` (no leading '/') on this server, addressed as `host` (a name faked in DNS, or [::1])."""
        return f"{self.scheme}://{host}:{self.port}/{path}"

    def note_host(self, host: str | None) -> None:
        with self._lock:
            self.host_headers.append(host or "")

    def note_sni(self, name: str | None) -> None:
        with self._lock:
            self.sni_names.append(name)


class TrickyHandler(ImageHandler):
    """ImageHandler's routes (files, /redirect/, /status/, /drip/, /slow/, /unsized/ ...) plus (all GET):

    - /location/<status>?to=<Location>: that status with that Location header (none when `to` is absent)
    - /loop: 302 to itself, forever
    - /chain/<n>/<path>: n redirects (302 to /chain/<n-1>/<path>), then the file
    - /slow-loop/<seconds>: waits, then 302 to itself (each hop alone beats the per-read timeout)
    - /stall: reads the request and never answers
    - /drip-headers/<seconds>: a status line, then one header byte every <seconds>, never finishing
    - /declared/<length>: 200 with `Content-Length: <length>`, then no body at all
    - /endless: 200 without Content-Length, then zeros until the client hangs up
    """

    server: TrickyServer

    def do_GET(self) -> None:
        self.server.note_host(self.headers.get("Host"))
        route, _, rest = urlsplit(self.path).path.lstrip("/").partition("/")
        handler = TRICKY_ROUTES.get(route)
        if handler is None:
            super().do_GET()
            return
        self.server.record(self.path)
        handler(self, rest)

    def query(self, name: str) -> str | None:
        values = parse_qs(urlsplit(self.path).query).get(name)
        return values[0] if values else None

    def route_location(self, rest: str) -> None:
        headers = {"Location": location} if (location := self.query("to")) is not None else {}
        self.send_empty(int(rest), headers)

    def route_loop(self, rest: str) -> None:
        self.send_empty(302, {"Location": "/loop"})

    def route_chain(self, rest: str) -> None:
        count, path = rest.split("/", 1)
        if int(count) > 0:
            self.send_empty(302, {"Location": f"/chain/{int(count) - 1}/{path}"})
            return
        self.send_file(path)

    def route_slow_loop(self, rest: str) -> None:
        if not self.server.stopping.wait(float(rest)):
            self.send_empty(302, {"Location": f"/slow-loop/{rest}"})

    def route_stall(self, rest: str) -> None:
        self.server.stopping.wait(LONGEST_STALL_SECONDS)
        self.close_connection = True

    def route_drip_headers(self, rest: str) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        self.drip_until_stopped(b"a", float(rest))

    def route_declared(self, rest: str) -> None:
        self.send_headers(200, int(rest), "image/jpeg")
        self.wfile.flush()
        self.server.stopping.wait(LONGEST_STALL_SECONDS)
        self.close_connection = True

    def route_endless(self, rest: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        self.drip_until_stopped(ENDLESS_CHUNK, 0.0)

    def drip_until_stopped(self, piece: bytes, seconds: float) -> None:
        """Write `piece` every `seconds` until the client hangs up, the server stops or
        LONGEST_STALL_SECONDS pass."""
        self.close_connection = True
        give_up = time.monotonic() + LONGEST_STALL_SECONDS
        while not self.server.stopping.is_set() and time.monotonic() < give_up:
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:
                return
            if seconds:
                self.server.stopping.wait(seconds)


TRICKY_ROUTES = {
    "location": TrickyHandler.route_location,
    "loop": TrickyHandler.route_loop,
    "chain": TrickyHandler.route_chain,
    "slow-loop": TrickyHandler.route_slow_loop,
    "stall": TrickyHandler.route_stall,
    "drip-headers": TrickyHandler.route_drip_headers,
    "declared": TrickyHandler.route_declared,
    "endless": TrickyHandler.route_endless,
}


def tls_context(server: TrickyServer, tls: TlsFiles) -> ssl.SSLContext:
    """A server context with the leaf certificate that records each client's SNI name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    context.sni_callback = lambda sock, name, ctx: server.note_sni(name)
    return context


@contextmanager
def serve_tricky(folder: Path, tls: TlsFiles | None = None) -> Iterator[TrickyServer]:
    """Serve `folder` on 127.0.0.1 at a free port (HTTPS when `tls` is given); yields the server."""
    handler = partial(TrickyHandler, directory=str(folder))
    server = TrickyServer(("127.0.0.1", 0), handler, scheme="https" if tls else "http")
    if tls is not None:  # the handshake happens on the first read, in the handler's thread
        context = tls_context(server, tls)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
