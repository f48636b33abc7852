"""SSRF-safe download of a query image URL: global addresses only, pinned connection, capped."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import urllib3

from indexer.errors import RowFailure
from indexer.fetch import read_capped
from searchapi.errors import ApiError

MAX_REDIRECTS = 3
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def url_error(message: str, code: str = "bad_image_url") -> ApiError:
    return ApiError(400, code, message)


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses (IPv4-mapped IPv6 is unwrapped first)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified and not ip.is_reserved


def resolve_checked(host: str, port: int, allowed_hosts: tuple[str, ...]) -> str:
    """Resolve host and return one address to connect to; every address must be public
    unless the host is explicitly allowlisted (a shop's own CDN or a test server)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise url_error(f"cannot resolve host {host!r}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise url_error(f"cannot resolve host {host!r}")
    if host.lower() not in allowed_hosts:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise url_error(
                f"image_url host {host!r} resolves to a non-public address", "forbidden_image_url"
            )
    return addresses[0]


def open_pinned(url: str, timeout: float, allowed_hosts: tuple[str, ...]) -> urllib3.BaseHTTPResponse:
    """GET url on a connection to the address we checked (no second DNS lookup), no redirects."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise url_error("image_url must be an absolute http:// or https:// URL")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise url_error("image_url has an invalid port") from None
    address = resolve_checked(host, port, allowed_hosts)
    options = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False, "maxsize": 1}
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, port, server_hostname=host, assert_hostname=host, **options
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = host if parts.port is None else f"{host}:{port}"
    try:
        return pool.urlopen("GET", path, headers={"Host": host_header}, redirect=False, preload_content=False)
    except urllib3.exceptions.HTTPError as exc:
        raise url_error(f"cannot download image_url: {exc}", "image_url_unreachable") from None


def fetch_image_url(url: str, *, timeout: float, max_bytes: int, allowed_hosts: tuple[str, ...]) -> bytes:
    """Download a query image, re-checking every redirect hop; raises ApiError(400)."""
    deadline = time.monotonic() + timeout * 2
    for _ in range(MAX_REDIRECTS + 1):
        response = open_pinned(url, timeout, allowed_hosts)
        try:
            if response.status in REDIRECT_STATUSES and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise url_error(f"image_url answered HTTP {response.status}", "image_url_unreachable")
            try:
                return read_capped(response, max_bytes, deadline)
            except (RowFailure, urllib3.exceptions.HTTPError) as exc:
                raise url_error(f"cannot download image_url: {exc}", "image_url_unreachable") from None
        finally:
            response.release_conn()
    raise url_error(f"image_url redirected more than {MAX_REDIRECTS} times")
