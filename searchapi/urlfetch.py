"""SSRF-safe download of a query image URL: http(s) only, global addresses only, pinned, capped."""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from imgsearch.download import read_capped
from imgsearch.errors import RowFailure
from searchapi.errors import ApiError

# Policy, in short (README "image_url safety" says the same for operators):
# - URL: http/https only, at most MAX_URL_LENGTH characters, no whitespace/control characters or
#   backslashes, no credentials (user@host: image URLs never need them and refusing them removes every
#   "which @ wins" parser trick), no percent-encoded host, no IPv6 zone id.
# - Host: lower-cased, IDNA-encoded to ASCII; a host whose last label is a number (WHATWG "ends in a
#   number": digits or 0x-hex) must be a plain dotted-decimal IPv4 address written in ASCII, so
#   2130706433, 0x7f000001, 0177.0.0.1, 127.1, 0, 127.0.0.1. and full-width digits are refused before
#   any lookup. Bracketed IPv6 literals are canonicalised to their RFC 5952 text.
# - "localhost" and *.localhost are loopback by definition (RFC 6761) and refused by name.
# - Allowlist (SEARCH_URL_ALLOWED_HOSTS): compared with that exact canonical host string, so an
#   allowlisted "127.0.0.1" does not allow "127.1", "2130706433" or "localhost" (a trailing dot is kept
#   too: "cdn.example." is not "cdn.example"). An entry with a port ("127.0.0.1:8001",
#   "[2001:db8::1]:8443") allows that host on that port only (an implicit :80/:443 counts); without one,
#   any port. An allowlisted host may resolve to private addresses but never to ALWAYS_FORBIDDEN ones
#   (unspecified, link-local incl. 169.254.169.254, multicast, reserved).
# - Addresses: the host is resolved once per hop and EVERY address must be public (is_public_address);
#   the connection goes to a checked address, so no second lookup can be rebound. IPv6 forms that embed
#   an IPv4 address (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that
#   IPv4 address, because a dual-stack socket, a NAT64 gateway or a 6to4 relay delivers to it; the
#   deprecated IPv4-compatible ::/96, local-use NAT64 64:ff9b:1::/48 and Teredo 2001::/32 are refused.
# - Redirects: every hop is parsed and checked like the first URL, at most MAX_REDIRECTS; HTTPS sends
#   SNI and verifies the certificate against the URL's host name, not the pinned address.
# - Limits: each wait (DNS, connect, each read) is at most `timeout`, the whole download (all hops,
#   TLS handshakes, headers and body) at most TOTAL_TIME_FACTOR x `timeout`: a watchdog shuts the socket
#   down when that runs out, so a server dripping headers or body cannot hold the request. The body is
#   capped at `max_bytes` (a larger Content-Length is refused before reading).

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
TOTAL_TIME_FACTOR = 2.0
DEADLINE_SLACK_SECONDS = 0.05
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "imgsearch-api (image_url fetch)"

BAD_URL = "bad_image_url"
FORBIDDEN = "forbidden_image_url"
UNREACHABLE = "image_url_unreachable"
TOO_LARGE = "image_url_too_large"
REFUSAL_CODES = frozenset({BAD_URL, FORBIDDEN})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Explicit, so the rule does not depend on the Python version's `is_global` table (3.11's calls
# 224.0.0.1, fec0::1 and 2002:7f00:1:: global).
NON_PUBLIC_IPV4 = networks(
    "0.0.0.0/8",  # "this network", 0.0.0.0 included
    "10.0.0.0/8",
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, 255.255.255.255 broadcast included
)
GLOBAL_UNICAST_IPV6 = ipaddress.ip_network("2000::/3")
NON_PUBLIC_IPV6 = networks("2001::/23", "2001:db8::/32", "3fff::/20")  # inside 2000::/3: Teredo, docs
NAT64_IPV6 = ipaddress.ip_network("64:ff9b::/96")
ALWAYS_FORBIDDEN = networks(
    "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128", "fe80::/10", "ff00::/8"
)

OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # decimal 0-255, no leading zero
DOTTED_QUAD = re.compile(rf"{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}")
HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
NETLOC = re.compile(r"(?:\[(?P<ipv6>[^\[\]]*)\]|(?P<name>[^\[\]:]*))(?::(?P<port>[^:]*))?")
ALLOWLIST_ENTRY = re.compile(r"(?:\[(?P<ipv6>[^\[\]]*)\]|(?P<name>[^\[\]:]+))(?::(?P<port>[0-9]{1,5}))?")
PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


class FetchFailure(Exception):
    """Why one hop failed: an API error code and a reason; `{host}` in it names the host safely."""

    def __init__(self, code: str, reason: str, host: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.host = host

    def to_api_error(self, hop: int) -> ApiError:
        """The client's message: the host is named only when the client sent it (hop 0)."""
        host = (f"host {self.host!r}"[:120] if hop == 0 else "the redirect's host") if self.host else ""
        reason = self.reason.replace("{host}", host)
        if self.code in REFUSAL_CODES:
            if hop == 0:
                return ApiError(400, self.code, f"image_url was refused: {reason}")
            return ApiError(400, FORBIDDEN, f"image_url redirect {hop} was refused: {reason}")
        after = f" after {hop} redirect{'s' if hop > 1 else ''}" if hop else ""
        return ApiError(400, self.code, f"could not download image_url{after}: {reason}")


def refused(reason: str, host: str | None = None) -> FetchFailure:
    return FetchFailure(FORBIDDEN, reason, host)


def malformed(reason: str, host: str | None = None) -> FetchFailure:
    return FetchFailure(BAD_URL, reason, host)


def unreachable(reason: str, host: str | None = None) -> FetchFailure:
    return FetchFailure(UNREACHABLE, reason, host)


# ---------------------------------------------------------------------------------------------- addresses


def parse_address(address: str) -> IPAddress:
    """An address from getaddrinfo or a URL, without any IPv6 zone id."""
    return ipaddress.ip_address(address.split("%", 1)[0])


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address delivers to, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_IPV6:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def effective_address(address: str) -> IPAddress:
    ip = parse_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return embedded_ipv4(ip) or ip
    return ip


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses; embedded IPv4 addresses are judged themselves."""
    ip = effective_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global and not any(ip in network for network in NON_PUBLIC_IPV4)
    return (
        ip in GLOBAL_UNICAST_IPV6
        and ip.is_global
        and not ip.is_multicast
        and not any(ip in network for network in NON_PUBLIC_IPV6)
    )


def is_always_forbidden(address: str) -> bool:
    """Addresses no host may use, allowlisted or not: unspecified, link-local, multicast, reserved."""
    ip = effective_address(address)
    return any(ip.version == network.version and ip in network for network in ALWAYS_FORBIDDEN)


# ---------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class Target:
    """One checked http(s) URL: canonical host, port and the request path to send."""

    scheme: str
    host: str
    port: int
    explicit_port: bool
    path: str

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"

    @property
    def literal_address(self) -> IPAddress | None:
        """The IP address when the host is an IP literal (then no DNS lookup happens)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def tls_hostname(self) -> str:
        """The name for SNI and certificate verification: the URL's host, never the pinned address."""
        return self.host.rstrip(".")


def checked_url_text(url: str) -> str:
    text = url.strip()
    if not text:
        raise malformed("the URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise malformed(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in text):
        raise malformed("the URL contains whitespace or control characters")
    if "\\" in text:
        raise malformed("the URL contains a backslash")
    return text


def ends_in_number(host: str) -> bool:
    """WHATWG's rule: a host whose last label is digits or 0x-hex is an IPv4 address in some spelling."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return NUMERIC_LABEL.fullmatch(labels[-1]) is not None


def ascii_host_name(raw: str) -> str:
    """Lower-case, IDNA-encoded host name; raises FetchFailure for anything that is not a plain name."""
    lowered = raw.lower()
    try:
        name = lowered if lowered.isascii() else lowered.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise malformed("{host} is not a valid host name", raw) from None
    if len(name) > 253 or not HOST_NAME.fullmatch(name):
        raise malformed("{host} is not a valid host name", raw)
    return name


def canonical_host(raw: str, bracketed: bool = False) -> str:
    """The exact host string that is resolved, checked and compared with the allowlist."""
    if not raw:
        raise malformed("the URL has no host")
    if "%" in raw:
        raise malformed("{host} is percent-encoded or has an IPv6 zone id", raw)
    if bracketed:
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise malformed("{host} is not a valid IPv6 address", raw) from None
    name = ascii_host_name(raw)
    if ends_in_number(name) and (name != raw.lower() or not DOTTED_QUAD.fullmatch(name)):
        raise refused(
            "{host} is a numeric IP address in a non-standard spelling "
            "(only dotted-decimal IPv4 like 192.0.2.1 is accepted)",
            raw,
        )
    return name


def split_netloc(netloc: str) -> tuple[str, bool, str | None]:
    """(host, bracketed, port text) of a netloc without userinfo."""
    match = NETLOC.fullmatch(netloc)
    if match is None:
        raise malformed("the URL's host or port is malformed")
    if match["ipv6"] is not None:
        return match["ipv6"], True, match["port"]
    return match["name"], False, match["port"]


def parse_port(text: str | None, scheme: str) -> int:
    if not text:
        return 443 if scheme == "https" else 80
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise malformed("the URL's port is not a number between 1 and 65535")
    return int(text)


def request_path(parts: SplitResult) -> str:
    """Path and query as sent on the request line; non-ASCII characters are percent-encoded."""
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return quote(path, safe=PRINTABLE_ASCII)


def parse_target(url: str) -> Target:
    """Check an image URL's syntax and canonicalise its host; raises FetchFailure."""
    text = checked_url_text(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise malformed("the URL cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise malformed("only absolute http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise malformed("credentials (user@host) are not allowed in the URL")
    raw_host, bracketed, port_text = split_netloc(parts.netloc)
    host = canonical_host(raw_host, bracketed)
    port = parse_port(port_text, parts.scheme)
    return Target(parts.scheme, host, port, bool(port_text), request_path(parts))


def allowlist_entry(entry: str) -> tuple[str, int | None]:
    """(host, port or None for any port) of one allowlist entry: "cdn.example", "cdn.example:8443",
    "[2001:db8::1]:8443" or a bare IPv6 address (any port); raises ValueError for anything else."""
    if not entry.startswith("[") and (":" not in entry or is_ipv6_text(entry)):
        return entry, None
    match = ALLOWLIST_ENTRY.fullmatch(entry)
    if match is None:
        raise ValueError("expected host, host:port or [IPv6 address]:port")
    if match["ipv6"] is not None and not is_ipv6_text(match["ipv6"]):
        raise ValueError(f"{match['ipv6']!r} is not an IPv6 address")
    host = match["name"] or str(ipaddress.IPv6Address(match["ipv6"]))
    if match["port"] is None:
        return host, None
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError("the port is not a number between 1 and 65535")
    return host, port


def is_ipv6_text(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_allowlisted(target: Target, allowed_hosts: tuple[str, ...]) -> bool:
    """Exact match of the canonical host (other spellings of an allowlisted host are checked as
    usual) and of the port where the entry names one."""
    for entry in allowed_hosts:
        host, port = allowlist_entry(entry)
        if host == target.host and port in (None, target.port):
            return True
    return False


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


def is_localhost_name(host: str) -> bool:
    """RFC 6761: "localhost" and its subdomains are loopback, whatever a resolver says ("localhost."
    does not resolve everywhere, so it is refused by name, not by luck)."""
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


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
