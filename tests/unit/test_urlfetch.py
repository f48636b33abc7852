"""image_url SSRF rules as pure logic: address table, host spellings, allowlist, URLs, redirects, pinning."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import urllib3

from searchapi import urlfetch
from searchapi.errors import ApiError
from searchapi.urlcheck import (
    FetchFailure,
    Target,
    allowlist_entry,
    canonical_host,
    is_allowlisted,
    is_always_forbidden,
    is_public_address,
    parse_target,
)
from searchapi.urlfetch import (
    MAX_REDIRECTS,
    Deadline,
    Redirect,
    checked_addresses,
    fetch_image_url,
    follow_redirects,
    make_connection,
    network_failure,
)
from tests.support.fakedns import FakeDns

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700:4700::1111"


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_V4,
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",  # just below carrier-grade NAT
        "100.128.0.0",  # just above it
        "172.15.255.255",
        "172.32.0.0",
        "192.167.255.255",
        "169.253.255.255",
        PUBLIC_V6,
        "2a00:1450:4001:81b::200e",
        "::ffff:8.8.8.8",  # IPv4-mapped public
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8: the gateway delivers to a public address
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        "169.254.169.254",  # cloud metadata
        "169.254.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "100.127.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",  # broadcast
        "224.0.0.1",  # multicast (Python 3.11 calls it global)
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "192.0.0.9",
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "198.51.100.7",
        "203.0.113.7",
        "192.88.99.1",  # 6to4 relay anycast
        "::1",
        "::",
        "fc00::1",  # unique local
        "fd12:3456:789a::1",
        "fe80::1",  # link-local
        "fe80::1%eth0",  # with a zone id, as getaddrinfo writes it
        "febf::1",
        "fec0::1",  # deprecated site-local (Python 3.11 calls it global)
        "ff02::1",  # multicast
        "ff0e::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:7f00:1",  # the same, in hex
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::ffff:0.0.0.0",
        "::127.0.0.1",  # IPv4-compatible (deprecated): always refused
        "::8.8.8.8",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64 prefix: always refused
        "2002:7f00:1::",  # 6to4 of 127.0.0.1 (Python 3.11 calls it global)
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001::1",  # Teredo
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",  # documentation
        "100::1",  # discard-only
        "3fff::1",  # documentation (RFC 9637)
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    ("address", "always"),
    [
        ("0.0.0.0", True),
        ("::", True),
        ("169.254.169.254", True),
        ("::ffff:169.254.169.254", True),
        ("64:ff9b::a9fe:a9fe", True),
        ("fe80::1", True),
        ("224.0.0.1", True),
        ("ff02::1", True),
        ("255.255.255.255", True),
        ("127.0.0.1", False),  # an allowlisted host (the tests' server) may be on loopback
        ("10.1.2.3", False),  # or on the shop's private network
        ("fd00::1", False),
        (PUBLIC_V4, False),
    ],
)
def test_some_addresses_are_refused_even_for_allowlisted_hosts(address, always):
    assert is_always_forbidden(address) is always


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Example.COM", "example.com"),
        ("LOCALHOST", "localhost"),
        ("localhost.", "localhost."),  # the trailing dot is kept: it is another allowlist string
        ("bücher.example", "xn--bcher-kva.example"),
        ("\u217cocalhost", "localhost"),  # IDNA maps the Roman numeral fifty to "l"
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("cdn_1.shop-example.com", "cdn_1.shop-example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("1.2.3.4.example", "1.2.3.4.example"),  # ends in a name, so a name
        ("0x7f.example", "0x7f.example"),
    ],
)
def test_host_names_are_canonicalised(raw, canonical):
    assert canonical_host(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::FFFF:7F00:1", "::ffff:7f00:1"),
        ("2001:DB8::0:1", "2001:db8::1"),
    ],
)
def test_ipv6_literals_are_canonicalised(raw, canonical):
    assert canonical_host(raw, bracketed=True) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "2130706433",  # decimal 127.0.0.1
        "017700000001",  # octal
        "0x7f000001",  # hex
        "0X7F000001",
        "0x7f.0.0.1",
        "0x7f.0x0.0x0.0x1",
        "0177.0.0.1",
        "0177.0000.0000.0001",
        "127.000.000.001",
        "127.1",
        "127.0.1",
        "0",
        "0x",
        "0.0",
        "127.0.0.1.",  # trailing dot on a numeric host
        "1.2.3.4.5",
        "256.0.0.1",
        "3232235777",  # 192.168.1.1
        "2852039166",  # 169.254.169.254
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits: IDNA would make them 127.0.0.1
        "127\u30020\u30020\u30021",  # ideographic full stops
        "www.127.0.0.1",
        "08.8.8.8",
    ],
)
def test_non_standard_numeric_spellings_are_forbidden(raw):
    with pytest.raises(FetchFailure) as caught:
        canonical_host(raw)
    assert caught.value.code == "forbidden_image_url"
    assert "non-standard spelling" in caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        "%6c%6f%63%61%6c%68%6f%73%74",
        "%31%32%37.0.0.1",
        "exa mple.com",
        "exa..mple.com",
        ".example.com",
        "a/b",
        "a*b",
    ],
)
def test_malformed_hosts_are_bad(raw):
    with pytest.raises(FetchFailure) as caught:
        canonical_host(raw)
    assert caught.value.code == "bad_image_url"


@pytest.mark.parametrize("raw", ["fe80::1%eth0", "v1.future", "1.2.3.4", "::1::2", ""])
def test_malformed_ipv6_literals_are_bad(raw):
    with pytest.raises(FetchFailure) as caught:
        canonical_host(raw, bracketed=True)
    assert caught.value.code == "bad_image_url"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.jpg",
        "gopher://127.0.0.1:70/_GET",
        "dict://127.0.0.1:11211/stat",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "127.0.0.1/x.jpg",  # no scheme
        "example.com/x.jpg",
        "example.com:80/x.jpg",  # urlsplit reads "example.com" as the scheme
        "//example.com/x.jpg",  # scheme-relative
        "/x.jpg",
        "http:/example.com/x.jpg",
        "http:example.com",
        "http://",
        "http:///x.jpg",
        "",
        "   ",
        "http://127.0.0.1@evil.example/x.jpg",  # userinfo: never accepted, whichever side is the host
        "http://evil.example@127.0.0.1/x.jpg",
        "http://a@b@127.0.0.1/x.jpg",
        "http://user:pass@example.com/x.jpg",
        "http://:@example.com/x.jpg",
        "http://evil.example\\@127.0.0.1/x.jpg",  # backslash: browsers and Python disagree on the host
        "http://example.com\\x.jpg",
        "http://exa mple.com/x.jpg",
        "http://example.com/x y.jpg",
        "http://example.com/x\r\nHost: evil",
        "http://example.com/\tx",
        "http://example.com:0/x.jpg",
        "http://example.com:65536/x.jpg",
        "http://example.com:8o/x.jpg",
        "http://example.com:80:80/x.jpg",
        "http://[::1/x.jpg",
        "http://::1/x.jpg",  # unbracketed IPv6
        "http://[::1]x/x.jpg",
        "http://[fe80::1%25eth0]/x.jpg",  # zone id
        "http://%31%32%37.0.0.1/x.jpg",
        "http://" + "a" * 2100 + ".example/x.jpg",
    ],
)
def test_malformed_or_unsupported_urls_are_bad(url):
    with pytest.raises(FetchFailure) as caught:
        parse_target(url)
    assert caught.value.code == "bad_image_url", caught.value.reason


def test_the_host_after_the_userinfo_is_what_python_would_use_but_we_never_get_that_far():
    """urlsplit picks the part after the last '@' as the host; refusing userinfo outright means no
    parser (ours, urllib3's, a browser's) can disagree about which side is the destination."""
    from urllib.parse import urlsplit

    assert urlsplit("http://127.0.0.1@evil.example/").hostname == "evil.example"
    assert urlsplit("http://evil.example@127.0.0.1/").hostname == "127.0.0.1"
    for url in ("http://127.0.0.1@evil.example/", "http://evil.example@127.0.0.1/"):
        with pytest.raises(FetchFailure, match="credentials"):
            parse_target(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Example.COM/a.jpg", Target("http", "example.com", 80, False, "/a.jpg")),
        ("HTTPS://example.com", Target("https", "example.com", 443, False, "/")),
        ("https://example.com:8443/a.jpg?x=1#frag", Target("https", "example.com", 8443, True, "/a.jpg?x=1")),
        ("http://example.com:/a.jpg", Target("http", "example.com", 80, False, "/a.jpg")),
        ("http://[::1]:8080/a", Target("http", "::1", 8080, True, "/a")),
        ("http://bücher.example/ä.jpg", Target("http", "xn--bcher-kva.example", 80, False, "/%C3%A4.jpg")),
        ("http://example.com/a%20b.jpg", Target("http", "example.com", 80, False, "/a%20b.jpg")),
        ("  http://example.com/a.jpg\n", Target("http", "example.com", 80, False, "/a.jpg")),
    ],
)
def test_urls_parse_to_a_canonical_target(url, expected):
    assert parse_target(url) == expected


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("http://example.com/a", "example.com"),
        ("http://example.com:8080/a", "example.com:8080"),
        ("http://[::1]:8080/a", "[::1]:8080"),
        ("https://[2001:db8::1]/a", "[2001:db8::1]"),
    ],
)
def test_host_header_keeps_the_url_host(url, header):
    assert parse_target(url).host_header == header


@pytest.mark.parametrize(
    ("url", "allowlisted"),
    [
        ("http://127.0.0.1:8000/a.jpg", True),
        ("http://CDN.Shop.Example/a.jpg", True),
        ("http://cdn.shop.example./a.jpg", False),  # trailing dot: another string, checked as usual
        ("http://localhost/a.jpg", False),
        ("http://[::ffff:127.0.0.1]/a.jpg", False),
        ("http://[::1]/a.jpg", False),
        ("http://cdn.shop.example.evil.com/a.jpg", False),
        ("http://evil-cdn.shop.example/a.jpg", False),
    ],
)
def test_allowlist_compares_the_exact_canonical_host(url, allowlisted):
    assert is_allowlisted(parse_target(url), ("127.0.0.1", "cdn.shop.example")) is allowlisted


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("cdn.shop.example", ("cdn.shop.example", None)),
        ("cdn.shop.example:8443", ("cdn.shop.example", 8443)),
        ("127.0.0.1:8001", ("127.0.0.1", 8001)),
        ("::1", ("::1", None)),  # a bare IPv6 address: any port
        ("[::1]", ("::1", None)),
        ("[0:0::1]:8001", ("::1", 8001)),  # compared with the URL's RFC 5952 form
        ("[2001:db8::1]:65535", ("2001:db8::1", 65535)),
    ],
)
def test_allowlist_entries_may_name_a_port(entry, parsed):
    assert allowlist_entry(entry) == parsed


@pytest.mark.parametrize(
    "entry",
    ["cdn.example:", "cdn.example:0", "cdn.example:65536", "cdn.example:http", "a:b:c", "[x]:80", "[]"],
)
def test_malformed_allowlist_entries_are_refused(entry):
    with pytest.raises(ValueError):
        allowlist_entry(entry)


@pytest.mark.parametrize(
    ("url", "allowlisted"),
    [
        ("http://127.0.0.1:8001/a.jpg", True),
        ("http://127.0.0.1:9200/", False),  # another port of an allowlisted host: checked as usual
        ("http://127.0.0.1/a.jpg", False),
        ("http://cdn.shop.example/a.jpg", False),  # implicit :80
        ("https://cdn.shop.example/a.jpg", True),  # implicit :443
        ("http://cdn.shop.example:443/a.jpg", True),
        ("https://cdn.shop.example:8443/a.jpg", False),
        ("http://[::1]:8001/a.jpg", True),
        ("http://[::1]:8002/a.jpg", False),
        ("http://127.1:8001/a.jpg", False),  # other spellings stay refused, port or not
    ],
)
def test_an_allowlist_entry_with_a_port_allows_that_port_only(url, allowlisted):
    allowed = ("127.0.0.1:8001", "cdn.shop.example:443", "[::1]:8001")
    try:
        target = parse_target(url)
    except FetchFailure:
        assert not allowlisted
        return
    assert is_allowlisted(target, allowed) is allowlisted


def test_a_loopback_name_is_allowlisted_on_its_port_only(fake_dns):
    assert fetch_hop_checks("http://localhost:8001/", allowed_hosts=("localhost:8001",))
    with pytest.raises(FetchFailure, match="loopback name") as caught:
        fetch_hop_checks("http://localhost:9200/", allowed_hosts=("localhost:8001",))
    assert caught.value.code == "forbidden_image_url"


def test_an_ip_allowlisted_on_one_port_is_loopback_on_the_others():
    assert fetch_hop_checks("http://127.0.0.1:8001/", allowed_hosts=("127.0.0.1:8001",)) == ["127.0.0.1"]
    with pytest.raises(FetchFailure, match="not a public address") as caught:
        fetch_hop_checks("http://127.0.0.1:9200/", allowed_hosts=("127.0.0.1:8001",))
    assert caught.value.code == "forbidden_image_url"


def test_a_port_does_not_lift_the_always_forbidden_addresses():
    with pytest.raises(FetchFailure, match="not a public address"):
        fetch_hop_checks("http://169.254.169.254:80/", allowed_hosts=("169.254.169.254:80",))


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://127.1/", "http://0x7f000001/", "http://0177.0.0.1/"]
)
def test_an_allowlisted_ip_does_not_allow_its_other_spellings(url):
    with pytest.raises(FetchFailure) as caught:
        fetch_hop_checks(url, allowed_hosts=("127.0.0.1",))
    assert caught.value.code == "forbidden_image_url"


def fetch_hop_checks(url: str, allowed_hosts: tuple[str, ...]) -> list[str]:
    """Everything a hop checks before connecting: syntax, canonical host, addresses."""
    return checked_addresses(parse_target(url), allowed_hosts, wait=2.0)


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDns:
    fake = FakeDns(
        {
            "public.example": [[PUBLIC_V4, PUBLIC_V6]],
            "mixed.example": [[PUBLIC_V4, "10.0.0.5"]],
            "mixed6.example": [[PUBLIC_V4, "::ffff:127.0.0.1"]],
            "metadata.example": [["169.254.169.254"]],
            "private.example": [["10.1.2.3"]],
            "cdn.shop.example": [["10.1.2.3"]],
            "rebind.example": [[PUBLIC_V4], ["127.0.0.1"]],
            "zero.example": [["0.0.0.0"]],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def test_every_resolved_address_must_be_public(fake_dns):
    assert fetch_hop_checks("http://public.example/a.jpg", ()) == [PUBLIC_V4, PUBLIC_V6]
    for host in ("mixed.example", "mixed6.example", "metadata.example", "private.example", "zero.example"):
        with pytest.raises(FetchFailure) as caught:
            fetch_hop_checks(f"http://{host}/a.jpg", ())
        assert caught.value.code == "forbidden_image_url", host


def test_an_allowlisted_name_may_be_private_but_never_metadata_or_unspecified(fake_dns):
    allowed = ("cdn.shop.example", "metadata.example", "zero.example")
    assert fetch_hop_checks("http://cdn.shop.example/a.jpg", allowed) == ["10.1.2.3"]
    for host in ("metadata.example", "zero.example"):
        with pytest.raises(FetchFailure, match="non-public"):
            fetch_hop_checks(f"http://{host}/a.jpg", allowed)


def test_refusal_messages_name_only_what_the_client_sent(fake_dns):
    with pytest.raises(FetchFailure) as caught:
        fetch_hop_checks("http://private.example/a.jpg", ())
    first = caught.value.to_api_error(0)
    redirected = caught.value.to_api_error(2)
    assert "'private.example'" in first.message and "10.1.2.3" not in first.message
    assert redirected.code == "forbidden_image_url"
    assert "redirect 2" in redirected.message and "private.example" not in redirected.message


def test_network_errors_do_not_leak_the_pinned_address():
    error = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection to 10.9.8.7")
    error.__cause__ = ConnectionRefusedError("refused by 10.9.8.7")
    with Deadline(5) as deadline:
        failure = network_failure(error, deadline)
    failure.host = "cdn.shop.example"
    message = failure.to_api_error(0).message
    assert "refused" in message and "cdn.shop.example" in message and "10.9.8.7" not in message


def test_dns_rebinding_one_lookup_and_the_checked_address_is_the_one_connected(fake_dns, monkeypatch):
    """The fake resolver answers a public address first and a private one afterwards: the fetch must
    look the name up exactly once and hand the download that first, checked address."""
    connected: list[tuple[str, list[str]]] = []

    def fake_download(target, addresses, deadline, timeout, max_bytes):
        connected.append((target.host, addresses))
        return b"image bytes"

    monkeypatch.setattr(urlfetch, "download", fake_download)
    data = fetch_image_url("http://rebind.example/a.jpg", timeout=1, max_bytes=1000, allowed_hosts=())
    assert data == b"image bytes"
    assert fake_dns.lookups["rebind.example"] == 1
    assert connected == [("rebind.example", [PUBLIC_V4])]


def test_dns_rebinding_a_redirect_back_to_the_same_name_is_looked_up_and_checked_again(fake_dns, monkeypatch):
    answers = iter([Redirect("/next.jpg"), b"never"])
    connected: list[list[str]] = []

    def fake_download(target, addresses, deadline, timeout, max_bytes):
        connected.append(addresses)
        return next(answers)

    monkeypatch.setattr(urlfetch, "download", fake_download)
    with pytest.raises(ApiError) as caught:
        fetch_image_url("http://rebind.example/a.jpg", timeout=1, max_bytes=1000, allowed_hosts=())
    assert caught.value.code == "forbidden_image_url" and "redirect 1" in caught.value.message
    assert fake_dns.lookups["rebind.example"] == 2
    assert connected == [[PUBLIC_V4]]


def test_an_ip_literal_is_never_looked_up(fake_dns, monkeypatch):
    monkeypatch.setattr(urlfetch, "download", lambda target, addresses, *rest: b"x")
    fetch_image_url(f"http://{PUBLIC_V4}/a.jpg", timeout=1, max_bytes=1000, allowed_hosts=())
    fetch_image_url(f"http://[{PUBLIC_V6}]/a.jpg", timeout=1, max_bytes=1000, allowed_hosts=())
    assert fake_dns.passed_through == [] and sum(fake_dns.lookups.values()) == 0


def test_https_connects_to_the_pinned_address_but_verifies_the_url_host():
    with Deadline(5) as deadline:
        connection = make_connection(parse_target("https://images.example./a.jpg"), PUBLIC_V4, 1.0, deadline)
    assert connection.host == PUBLIC_V4 and connection.port == 443
    assert connection.server_hostname == "images.example"  # SNI
    assert connection.assert_hostname == "images.example"  # certificate name check
    assert connection.cert_reqs == "CERT_REQUIRED"


def test_plain_http_connects_to_the_pinned_address():
    with Deadline(5) as deadline:
        connection = make_connection(
            parse_target("http://images.example:8080/a.jpg"), "10.0.0.7", 1.0, deadline
        )
    assert (connection.host, connection.port) == ("10.0.0.7", 8080)


def redirecting(locations: list[str], final: bytes = b"image") -> tuple[list[str], object]:
    """A fake hop fetcher answering each of `locations` as a redirect, then `final`; records URLs."""
    seen: list[str] = []

    def fetch(url: str, hop: int) -> bytes | Redirect:
        assert hop == len(seen)
        seen.append(url)
        return Redirect(locations[hop]) if hop < len(locations) else final

    return seen, fetch


def test_redirects_up_to_the_cap_are_followed():
    seen, fetch = redirecting(["/1", "/2", "/3"])
    assert follow_redirects("http://a.example/0", fetch) == b"image"
    assert len(seen) == MAX_REDIRECTS + 1 == 4


def test_one_redirect_too_many_is_refused_with_a_clear_message():
    seen, fetch = redirecting(["/1", "/2", "/3", "/4"])
    with pytest.raises(ApiError) as caught:
        follow_redirects("http://a.example/0", fetch)
    assert caught.value.code == "image_url_unreachable" and "more than 3" in caught.value.message
    assert len(seen) == MAX_REDIRECTS + 1


def test_a_redirect_loop_is_capped():
    calls: list[str] = []

    def loop(url: str, hop: int) -> Redirect:
        calls.append(url)
        return Redirect(url)

    with pytest.raises(ApiError, match="more than 3"):
        follow_redirects("http://a.example/loop", loop)
    assert calls == ["http://a.example/loop"] * 4


def test_relative_redirects_resolve_against_the_url_that_sent_them():
    seen, fetch = redirecting(["../b/c.jpg", "d.jpg?x=1", "//other.example/e.jpg"])
    follow_redirects("http://a.example/p/q/r.jpg", fetch)
    assert seen == [
        "http://a.example/p/q/r.jpg",
        "http://a.example/p/b/c.jpg",
        "http://a.example/p/b/d.jpg?x=1",
        "http://other.example/e.jpg",
    ]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "file:///etc/passwd",
        "http://2130706433/",
        "//10.0.0.1/a.jpg",
        "gopher://example.com/",
        "http://user@example.com/",
        "http://[::1/",
    ],
)
def test_each_redirect_target_is_checked_like_the_first_url(location):
    """The real hop fetcher's checks (no network is reached: every target is refused before)."""

    def fetch(url: str, hop: int) -> bytes | Redirect:
        if hop == 0:
            return Redirect(location)
        fetch_hop_checks(url, allowed_hosts=("example.com",))
        return b"must not get here"

    with pytest.raises(ApiError) as caught:
        follow_redirects("http://example.com/a.jpg", fetch)
    assert caught.value.code == "forbidden_image_url"
    assert caught.value.message.startswith("image_url redirect 1 was refused")


def test_failures_after_a_redirect_say_so():
    def fetch(url: str, hop: int) -> bytes | Redirect:
        if hop < 2:
            return Redirect(f"/{hop + 1}")
        raise FetchFailure("image_url_unreachable", "the server answered HTTP 404")

    with pytest.raises(ApiError) as caught:
        follow_redirects("http://a.example/0", fetch)
    assert caught.value.code == "image_url_unreachable"
    assert (
        caught.value.message == "could not download image_url after 2 redirects: the server answered HTTP 404"
    )


def test_the_deadline_shuts_down_a_socket_stuck_in_recv():
    left, right = socket.socketpair()
    try:
        left.settimeout(10)
        started = time.monotonic()
        with Deadline(0.3) as deadline:
            deadline.watch(left)
            assert left.recv(10) == b""  # the peer never writes: only the watchdog ends this
            assert deadline.expired and deadline.is_over
        assert time.monotonic() - started < 3
        with pytest.raises(FetchFailure, match="timed out"):
            deadline.wait(1.0)
    finally:
        left.close()
        right.close()


def test_waits_are_cut_to_the_remaining_budget():
    with Deadline(0.5) as deadline:
        assert 0 < deadline.wait(10.0) <= 0.5
        assert deadline.wait(0.1) == 0.1


def test_a_slow_resolver_is_cut_off(monkeypatch):
    release = threading.Event()

    def slow_getaddrinfo(*args, **kwargs):
        release.wait(10)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()
    try:
        with pytest.raises(ApiError) as caught:
            fetch_image_url("http://slow-dns.example/a.jpg", timeout=0.3, max_bytes=1000, allowed_hosts=())
    finally:
        release.set()
    assert caught.value.code == "image_url_unreachable" and "resolving" in caught.value.message
    assert time.monotonic() - started < 0.3 * 3


def test_an_unresolvable_host_is_unreachable(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(ApiError) as caught:
        fetch_image_url("http://nx.example/a.jpg", timeout=1, max_bytes=1000, allowed_hosts=())
    assert (
        caught.value.code == "image_url_unreachable"
        and "could not resolve host 'nx.example'" in caught.value.message
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://localhost./",
        "http://LOCALHOST/",
        "http://img.localhost/",
        "http://\u217cocalhost/",
    ],
)
def test_localhost_names_are_forbidden_without_a_lookup(fake_dns, url):
    with pytest.raises(FetchFailure, match="loopback name") as caught:
        fetch_hop_checks(url, allowed_hosts=("127.0.0.1",))
    assert caught.value.code == "forbidden_image_url"
    assert fake_dns.passed_through == []


def test_an_exactly_allowlisted_localhost_is_resolved_as_usual(fake_dns):
    assert fetch_hop_checks("http://localhost/", allowed_hosts=("localhost",))
    with pytest.raises(FetchFailure):
        fetch_hop_checks("http://localhost./", allowed_hosts=("localhost",))
