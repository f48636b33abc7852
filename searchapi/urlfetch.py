"""SSRF-safe download of a query image URL: resolved once, pinned to checked addresses, capped."""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from imgsearch.download import read_capped
from imgsearch.errors import RowFailure
from searchapi.errors import ApiError
from searchapi.urlcheck import (
    FetchFailure,
    Target,
    is_allowlisted,
    is_always_forbidden,
    is_localhost_name,
    is_public_address,
    malformed,
    parse_target,
    refused,
)

# Fetching, in short (which URLs, hosts and addresses may be fetched: searchapi/urlcheck.py):
# - Pinning: the host is resolved once per hop and EVERY address is checked; the connection goes to a
#   checked address, so no second lookup can be rebound.
# - Redirects: every hop is parsed and checked like the first URL, at most MAX_REDIRECTS; HTTPS sends
#   SNI and verifies the certificate against the URL's host name, not the pinned address.
# - Limits: each wait (DNS, connect, each read) is at most `timeout`, the whole download (all hops,
#   TLS handshakes, headers and body) at most TOTAL_TIME_FACTOR x `timeout`: a watchdog shuts the socket
#   down when that runs out, so a server dripping headers or body cannot hold the request. The body is
#   capped at `max_bytes` (a larger Content-Length is refused before reading).

MAX_REDIRECTS = 3
TOTAL_TIME_FACTOR = 2.0
DEADLINE_SLACK_SECONDS = 0.05
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "imgsearch-api (image_url fetch)"

UNREACHABLE = "image_url_unreachable"
TOO_LARGE = "image_url_too_large"


def unreachable(reason: str, host: str | None = None) -> FetchFailure:
    return FetchFailure(UNREACHABLE, reason, host)


# ---------------------------------------------------------------------------------------------- time


class Deadline:
    """The whole download's time budget; when it runs out, the socket in use is shut down."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._timer.cancel()
        self.unwatch()

    @property
    def is_over(self) -> bool:
        """Expired, or so close that a wait cut to the remaining budget has just run out."""
        return self.expired or time.monotonic() >= self.expires_at - DEADLINE_SLACK_SECONDS

    def timed_out(self) -> FetchFailure:
        return unreachable(f"timed out (the whole download must finish within {self.seconds:g} s)")

    def wait(self, longest: float) -> float:
        """How long the next single wait may take: `longest`, or less if the budget is nearly spent."""
        remaining = self.expires_at - time.monotonic()
        if self.expired or remaining <= 0:
            raise self.timed_out()
        return min(longest, remaining)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down at expiry; a duplicate descriptor survives the TLS wrap of the original."""
        with self._lock:
            self._close_watched()
            self._watched = sock.dup()
            if self.expired:
                self._shutdown_watched()

    def unwatch(self) -> None:
        with self._lock:
            self._close_watched()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown_watched()

    def _shutdown_watched(self) -> None:
        if self._watched is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                self._watched.shutdown(socket.SHUT_RDWR)

    def _close_watched(self) -> None:
        if self._watched is not None:
            self._watched.close()
            self._watched = None


# ---------------------------------------------------------------------------------------------- DNS


def lookup_addresses(host: str, port: int, wait: float) -> list[str]:
    """Every address getaddrinfo gives for `host`, within `wait` seconds (the lookup runs in a thread,
    because the system resolver has its own, longer timeouts)."""
    answer: dict[str, object] = {}

    def resolve() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            answer["error"] = exc

    thread = threading.Thread(target=resolve, name="image-url-dns", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        raise unreachable("resolving {host} timed out", host)
    infos = answer.get("infos") or []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # type: ignore[union-attr]
    if not addresses:
        raise unreachable("could not resolve {host}", host)
    return addresses


def checked_addresses(target: Target, allowed_hosts: tuple[str, ...], wait: float) -> list[str]:
    """The addresses to connect to, after checking every one of them (one lookup, then pinned)."""
    allowlisted = is_allowlisted(target, allowed_hosts)
    if is_localhost_name(target.host) and not allowlisted:
        raise refused("{host} is a loopback name", target.host)
    literal = target.literal_address
    addresses = [str(literal)] if literal is not None else lookup_addresses(target.host, target.port, wait)
    for address in addresses:
        if is_always_forbidden(address) or not (allowlisted or is_public_address(address)):
            if literal is not None:
                raise refused("{host} is not a public address", target.host)
            raise refused("{host} resolves to a non-public address", target.host)
    return addresses


# ---------------------------------------------------------------------------------------------- one hop


@dataclass(frozen=True)
class Redirect:
    """A hop's answer that points elsewhere (Location as sent, maybe relative)."""

    location: str


class WatchedConnectionMixin:
    """Registers the fresh TCP socket with the deadline before any TLS handshake or HTTP byte."""

    deadline: Deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self.deadline.watch(sock)
        return sock


class WatchedHTTPConnection(WatchedConnectionMixin, HTTPConnection):
    pass


class WatchedHTTPSConnection(WatchedConnectionMixin, HTTPSConnection):
    pass


def make_connection(target: Target, address: str, wait: float, deadline: Deadline) -> HTTPConnection:
    """A connection to the checked `address`; HTTPS verifies the certificate for the URL's host."""
    connection: HTTPConnection
    if target.is_https:
        connection = WatchedHTTPSConnection(
            address,
            target.port,
            timeout=wait,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.tls_hostname,
            assert_hostname=target.tls_hostname,
        )
    else:
        connection = WatchedHTTPConnection(address, target.port, timeout=wait)
    connection.deadline = deadline
    return connection


def connect_first(target: Target, addresses: list[str], deadline: Deadline, timeout: float) -> HTTPConnection:
    """Connect to the first checked address that accepts; other errors (TLS) are not retried."""
    failure: Exception | None = None
    for address in addresses:
        connection = make_connection(target, address, deadline.wait(timeout), deadline)
        try:
            connection.connect()
            return connection
        except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError included
            connection.close()
            failure = exc
    assert failure is not None
    raise failure


def request_headers(target: Target) -> dict[str, str]:
    return {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "image/*",
        "Accept-Encoding": "identity",
    }


def network_failure(exc: BaseException, deadline: Deadline) -> FetchFailure:
    """A fixed, address-free message for a network error (urllib3's texts name the pinned address)."""
    if deadline.is_over:
        return deadline.timed_out()
    if isinstance(exc, (ssl.SSLError, urllib3.exceptions.SSLError, CertificateError)):
        return unreachable("the TLS handshake or the certificate check for {host} failed")
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        if isinstance(exc.__cause__, ConnectionRefusedError):
            return unreachable("the connection to {host} was refused")
        return unreachable("could not connect to {host}")
    if isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)):
        return unreachable("timed out waiting for {host}")
    return unreachable("the connection to {host} failed or its answer was not valid HTTP")


def read_answer(response: urllib3.BaseHTTPResponse, max_bytes: int, deadline: Deadline) -> bytes | Redirect:
    if response.status in REDIRECT_STATUSES:
        location = response.headers.get("Location")
        if not location:
            raise unreachable(f"the server answered HTTP {response.status} without a Location header")
        return Redirect(location)
    if response.status != 200:
        raise unreachable(f"the server answered HTTP {response.status}")
    try:
        body = read_capped(response, max_bytes, deadline.expires_at)
    except RowFailure as failure:
        if failure.reason == "too_large":
            raise FetchFailure(TOO_LARGE, failure.message) from None
        raise deadline.timed_out() from None
    if deadline.expired:  # the watchdog's shutdown can look like a clean end of an unsized body
        raise deadline.timed_out()
    return body


NETWORK_ERRORS = (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError)


def download(
    target: Target, addresses: list[str], deadline: Deadline, timeout: float, max_bytes: int
) -> bytes | Redirect:
    """One GET on a connection to a checked address; no redirect is followed here."""
    connection: HTTPConnection | None = None
    try:
        connection = connect_first(target, addresses, deadline, timeout)
        connection.request("GET", target.path, headers=request_headers(target), preload_content=False)
        return read_answer(connection.getresponse(), max_bytes, deadline)
    except FetchFailure as failure:
        failure.host = failure.host or target.host
        raise
    except NETWORK_ERRORS as exc:
        failure = network_failure(exc, deadline)
        failure.host = target.host
        raise failure from None
    finally:
        if connection is not None:
            connection.close()
        deadline.unwatch()


# ---------------------------------------------------------------------------------------------- redirects

HopFetcher = Callable[[str, int], bytes | Redirect]


def follow_redirects(url: str, fetch_hop: HopFetcher) -> bytes:
    """Fetch `url`, following at most MAX_REDIRECTS redirects; each hop is checked by `fetch_hop`.

    Hop 0 is the client's URL, hop n the n-th redirect target (relative Locations resolve against the
    URL that sent them)."""
    for hop in range(MAX_REDIRECTS + 1):
        try:
            answer = fetch_hop(url, hop)
        except FetchFailure as failure:
            raise failure.to_api_error(hop) from None
        if not isinstance(answer, Redirect):
            return answer
        try:
            url = urljoin(url, answer.location)
        except ValueError:
            raise malformed("the redirect Location cannot be parsed").to_api_error(hop + 1) from None
    raise ApiError(
        400, UNREACHABLE, f"image_url redirected more than {MAX_REDIRECTS} times (a redirect loop?)"
    )


def fetch_hop(
    url: str, hop: int, *, deadline: Deadline, timeout: float, max_bytes: int, allowed_hosts: tuple[str, ...]
) -> bytes | Redirect:
    target = parse_target(url)
    addresses = checked_addresses(target, allowed_hosts, deadline.wait(timeout))
    return download(target, addresses, deadline, timeout, max_bytes)


def fetch_image_url(url: str, *, timeout: float, max_bytes: int, allowed_hosts: tuple[str, ...]) -> bytes:
    """Download a query image, checking every redirect hop; raises ApiError(400) on any failure."""
    with Deadline(timeout * TOTAL_TIME_FACTOR) as deadline:
        fetch = functools.partial(
            fetch_hop, deadline=deadline, timeout=timeout, max_bytes=max_bytes, allowed_hosts=allowed_hosts
        )
        return follow_redirects(url, fetch)
