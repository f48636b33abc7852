"""image_url policy without network: URL syntax, canonical hosts, the allowlist, public addresses."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit

from searchapi.errors import ApiError

# Policy, in short (docs/api.md "image_url safety" says the same for operators). This module decides what
# may be fetched and touches no network; searchapi/urlfetch.py resolves, connects and reads.
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
# - Addresses: EVERY address a host resolves to must be public (is_public_address). IPv6 forms that
#   embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by
#   that IPv4 address, because a dual-stack socket, a NAT64 gateway or a 6to4 relay delivers to it; the
#   deprecated IPv4-compatible ::/96, local-use NAT64 64:ff9b:1::/48 and Teredo 2001::/32 are refused.

MAX_URL_LENGTH = 2048

BAD_URL = "bad_image_url"
FORBIDDEN = "forbidden_image_url"
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


def is_localhost_name(host: str) -> bool:
    """RFC 6761: "localhost" and its subdomains are loopback, whatever a resolver says ("localhost."
    does not resolve everywhere, so it is refused by name, not by luck)."""
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")
