"""image_url SSRF matrix through the real Flask app, real Elasticsearch and real local HTTP(S) servers."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from devstack.kit.apiserver import free_port
from devstack.kit.catalog import catalog_environment
from searchapi import create_app
from tests.integration.helpers import photo_entries, run_full, seed
from tests.support.fakedns import FakeDns
from tests.support.tlscerts import TlsFiles, make_tls_files, openssl_available
from tests.support.trickyserver import TrickyServer, serve_tricky

pytestmark = [pytest.mark.integration]

TIMEOUT = 1.0  # SEARCH_URL_FETCH_TIMEOUT: each wait; the whole download gets 2x
BOUND = TIMEOUT * 3  # what any failing download must stay under, even on a loaded 2-core box
MAX_BYTES = 200_000
ALLOWED_HOSTS = ("127.0.0.1", "images.example", "rebind.example", "cdn.shop.test")
QUERY_PHOTO = "p002-chelsea-crop.jpg"  # row id 4 of photo_entries(4, 2)
QUERY_ID = "4"


@pytest.fixture(scope="module")
def indexed(stack_urls, es, extractor, image_server, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A module-wide index of 4 products x 2 views, built by the real indexer over real HTTP."""
    alias = f"test-ssrf-{uuid.uuid4().hex[:8]}"
    env = catalog_environment(*stack_urls, alias, str(tmp_path_factory.mktemp("reports")))
    env["IMAGE_BASE_URL"] = image_server
    seed(env, photo_entries(4, 2))
    run_full(env, extractor)
    yield env
    es.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")


@pytest.fixture(scope="module")
def site_folder(photo_folder, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ssrf-site")
    shutil.copy(photo_folder / QUERY_PHOTO, folder / "photo.jpg")
    (folder / "page.html").write_bytes(b"<!doctype html><html><body>not an image</body></html>")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "big.bin").write_bytes(os.urandom(MAX_BYTES + 50_000))
    return folder


@pytest.fixture(scope="module")
def site(site_folder) -> Iterator[TrickyServer]:
    with serve_tricky(site_folder) as server:
        yield server


@pytest.fixture(scope="module")
def other_site(site_folder) -> Iterator[TrickyServer]:
    with serve_tricky(site_folder) as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, TlsFiles]:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    return {name: make_tls_files(folder / name, name) for name in ("images.example", "other.example")}


@pytest.fixture(scope="module")
def tls_site(site_folder, tls_files) -> Iterator[TrickyServer]:
    with serve_tricky(site_folder, tls_files["images.example"]) as server:
        yield server


@pytest.fixture(scope="module")
def wrong_name_tls_site(site_folder, tls_files) -> Iterator[TrickyServer]:
    """Serves a valid certificate, but for other.example."""
    with serve_tricky(site_folder, tls_files["other.example"]) as server:
        yield server


def make_client(indexed: dict[str, str], extractor, allowed_hosts: tuple[str, ...]):
    app = create_app(
        {
            **indexed,
            "SEARCH_URL_ALLOWED_HOSTS": ",".join(allowed_hosts),
            "SEARCH_URL_FETCH_TIMEOUT": str(TIMEOUT),
            "SEARCH_URL_MAX_BYTES": str(MAX_BYTES),
        },
        extractor=extractor,
    )
    return app.test_client()


@pytest.fixture(scope="module")
def client(indexed, extractor):
    """The API with the local servers' 127.0.0.1 (and a few faked names) allowlisted."""
    return make_client(indexed, extractor, ALLOWED_HOSTS)


@pytest.fixture(scope="module")
def strict_client(indexed, extractor):
    """The API with an empty allowlist: only public addresses."""
    return make_client(indexed, extractor, ())


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDns:
    fake = FakeDns(
        {
            "images.example": [["127.0.0.1"]],
            "cdn.shop.test": [["127.0.0.1"]],
            "rebind.example": [["127.0.0.1"], ["203.0.113.9"]],  # a second lookup would go nowhere
            "mixed.example": [["93.184.216.34", "10.0.0.5"]],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def fill(template: str, *servers: TrickyServer) -> str:
    """Replace {port} (and {port2}) with the servers' ports."""
    for placeholder, server in zip(("{port}", "{port2}"), servers, strict=False):
        template = template.replace(placeholder, str(server.port))
    return template


def request_count(server: TrickyServer) -> int:
    return sum(len(times) for times in server.requests.values())


def search_url(client, url: str):
    return client.post("/search", json={"image_url": url, "size": 3})


def assert_error(response, code: str) -> str:
    """The 400 JSON error with `code`; returns its message."""
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == 400 and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


def assert_hits(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    hits = response.get_json()["hits"]
    assert hits and hits[0]["id"] == QUERY_ID and hits[0]["score"] > 0.999
    return hits


# ------------------------------------------------------------------------------------ schemes, URL shape

MALFORMED_URLS = [
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("ftp://127.0.0.1:{port}/photo.jpg", id="ftp"),
    pytest.param("gopher://127.0.0.1:{port}/_GET%20/photo.jpg", id="gopher"),
    pytest.param("dict://127.0.0.1:{port}/info", id="dict"),
    pytest.param("data:image/jpeg;base64,/9j/4AAQSkZJRg==", id="data"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("127.0.0.1:{port}/photo.jpg", id="missing-scheme"),
    pytest.param("//127.0.0.1:{port}/photo.jpg", id="scheme-relative"),
    pytest.param("http:/photo.jpg", id="no-host"),
    pytest.param("http://", id="empty-host"),
    pytest.param("http://127.0.0.1:{port}@evil.example/photo.jpg", id="userinfo-allowlisted-ip-first"),
    pytest.param("http://evil.example@127.0.0.1:{port}/photo.jpg", id="userinfo-allowlisted-ip-last"),
    pytest.param("http://a@b@127.0.0.1:{port}/photo.jpg", id="userinfo-double-at"),
    pytest.param("http://evil.example\\@127.0.0.1:{port}/photo.jpg", id="backslash-at"),
    pytest.param("http://127.0.0.1:{port}/photo.jpg\r\nX-Injected: 1", id="crlf-injection"),
    pytest.param("http://[fe80::1%25eth0]:{port}/photo.jpg", id="ipv6-zone-id"),
    pytest.param("http://%6c%6f%63%61%6c%68%6f%73%74:{port}/photo.jpg", id="percent-encoded-localhost"),
    pytest.param("http://%31%32%37.0.0.1:{port}/photo.jpg", id="percent-encoded-ip"),
    pytest.param("http://127.0.0.1:0/photo.jpg", id="port-0"),
    pytest.param("http://127.0.0.1:99999/photo.jpg", id="port-out-of-range"),
]


@pytest.mark.parametrize("template", MALFORMED_URLS)
def test_unsupported_or_malformed_urls_are_bad_image_url(client, site, template):
    before = request_count(site)
    assert_error(search_url(client, fill(template, site)), "bad_image_url")
    assert request_count(site) == before  # nothing reached the (allowlisted) server


# ------------------------------------------------------------------------------------ destinations

NON_PUBLIC_DESTINATIONS = [
    pytest.param("http://127.0.0.1:{port}/photo.jpg", id="loopback-live-server"),
    pytest.param("http://localhost:{port}/photo.jpg", id="localhost"),
    pytest.param("http://10.0.0.1/photo.jpg", id="10/8"),
    pytest.param("http://172.16.0.1/photo.jpg", id="172.16/12-low"),
    pytest.param("http://172.31.255.255/photo.jpg", id="172.16/12-high"),
    pytest.param("http://192.168.1.1/photo.jpg", id="192.168/16"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
    pytest.param("http://100.64.0.1/photo.jpg", id="cgnat"),
    pytest.param("http://0.0.0.0:{port}/photo.jpg", id="unspecified-v4"),
    pytest.param("http://255.255.255.255/photo.jpg", id="broadcast"),
    pytest.param("http://224.0.0.1/photo.jpg", id="multicast-v4"),
    pytest.param("http://240.0.0.1/photo.jpg", id="reserved-v4"),
    pytest.param("http://198.18.0.1/photo.jpg", id="benchmarking"),
    pytest.param("http://[::1]:{port}/photo.jpg", id="loopback-v6"),
    pytest.param("http://[::]:{port}/photo.jpg", id="unspecified-v6"),
    pytest.param("http://[fc00::1]/photo.jpg", id="ula-fc"),
    pytest.param("http://[fd12:3456::1]/photo.jpg", id="ula-fd"),
    pytest.param("http://[fe80::1]/photo.jpg", id="link-local-v6"),
    pytest.param("http://[fec0::1]/photo.jpg", id="site-local-v6"),
    pytest.param("http://[ff02::1]/photo.jpg", id="multicast-v6"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/photo.jpg", id="v4-mapped-loopback"),
    pytest.param("http://[::ffff:7f00:1]:{port}/photo.jpg", id="v4-mapped-loopback-hex"),
    pytest.param("http://[::ffff:169.254.169.254]/latest/meta-data/", id="v4-mapped-metadata"),
    pytest.param("http://[::127.0.0.1]:{port}/photo.jpg", id="v4-compatible"),
    pytest.param("http://[64:ff9b::7f00:1]:{port}/photo.jpg", id="nat64-loopback"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", id="nat64-metadata"),
    pytest.param("http://[64:ff9b:1::1]/photo.jpg", id="nat64-local-use"),
    pytest.param("http://[2002:7f00:1::]:{port}/photo.jpg", id="6to4-loopback"),
    pytest.param("http://[2002:a9fe:a9fe::]/latest/meta-data/", id="6to4-metadata"),
    pytest.param("http://[2001::1]/photo.jpg", id="teredo"),
    pytest.param("http://[2001:db8::1]/photo.jpg", id="documentation-v6"),
]


@pytest.mark.parametrize("template", NON_PUBLIC_DESTINATIONS)
def test_non_public_destinations_are_forbidden(strict_client, site, template):
    before = request_count(site)
    message = assert_error(search_url(strict_client, fill(template, site)), "forbidden_image_url")
    assert message.startswith("image_url was refused")
    assert request_count(site) == before


def test_a_name_with_one_private_address_among_public_ones_is_forbidden(strict_client, fake_dns):
    message = assert_error(search_url(strict_client, "http://mixed.example/photo.jpg"), "forbidden_image_url")
    assert "'mixed.example' resolves to a non-public address" in message and "10.0.0.5" not in message
    assert fake_dns.lookups["mixed.example"] == 1


# With 127.0.0.1 allowlisted and a live server on it, any spelling that slipped through would answer 200.
SPELLINGS_OF_THE_ALLOWLISTED_IP = [
    pytest.param("http://2130706433:{port}/photo.jpg", id="decimal"),
    pytest.param("http://0x7f000001:{port}/photo.jpg", id="hex"),
    pytest.param("http://0X7F000001:{port}/photo.jpg", id="hex-uppercase"),
    pytest.param("http://017700000001:{port}/photo.jpg", id="octal"),
    pytest.param("http://0177.0.0.1:{port}/photo.jpg", id="octal-dotted"),
    pytest.param("http://0x7f.0.0.1:{port}/photo.jpg", id="hex-dotted"),
    pytest.param("http://0x7f.0x0.0x0.0x1:{port}/photo.jpg", id="hex-every-octet"),
    pytest.param("http://127.1:{port}/photo.jpg", id="two-part"),
    pytest.param("http://127.0.1:{port}/photo.jpg", id="three-part"),
    pytest.param("http://0177.1:{port}/photo.jpg", id="octal-two-part"),
    pytest.param("http://127.000.000.001:{port}/photo.jpg", id="zero-padded"),
    pytest.param("http://0:{port}/photo.jpg", id="zero"),
    pytest.param("http://127.0.0.1.:{port}/photo.jpg", id="trailing-dot-ip"),
    pytest.param("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/photo.jpg", id="full-width-digits"),
    pytest.param("http://127\u30020\u30020\u30021:{port}/photo.jpg", id="ideographic-dots"),
    pytest.param("http://localhost:{port}/photo.jpg", id="localhost"),
    pytest.param("http://localhost.:{port}/photo.jpg", id="localhost-trailing-dot"),
    pytest.param("http://LOCALHOST:{port}/photo.jpg", id="localhost-uppercase"),
    pytest.param("http://LocalHost.:{port}/photo.jpg", id="localhost-mixed-case-dot"),
    pytest.param("http://\u217cocalhost:{port}/photo.jpg", id="localhost-idn"),
    pytest.param(
        "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}/photo.jpg",
        id="localhost-full-width",
    ),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/photo.jpg", id="v4-mapped"),
    pytest.param("http://[::1]:{port}/photo.jpg", id="ipv6-loopback"),
]


@pytest.mark.parametrize("template", SPELLINGS_OF_THE_ALLOWLISTED_IP)
def test_other_spellings_of_an_allowlisted_ip_are_forbidden(client, site, template):
    before = request_count(site)
    assert_error(search_url(client, fill(template, site)), "forbidden_image_url")
    assert request_count(site) == before


def test_the_allowlisted_spelling_itself_is_served(client, site):
    assert_hits(search_url(client, site.url("photo.jpg")))


# ------------------------------------------------------------------------------------ redirects

REDIRECT_TARGETS = [
    pytest.param(302, "http://169.254.169.254/latest/meta-data/", id="302-metadata"),
    pytest.param(301, "http://169.254.169.254/latest/meta-data/", id="301-metadata"),
    pytest.param(303, "http://169.254.169.254/latest/meta-data/", id="303-metadata"),
    pytest.param(307, "http://169.254.169.254/latest/meta-data/", id="307-metadata"),
    pytest.param(308, "http://169.254.169.254/latest/meta-data/", id="308-metadata"),
    pytest.param(302, "http://[::1]:{port}/photo.jpg", id="ipv6-loopback"),
    pytest.param(302, "http://[::ffff:127.0.0.1]:{port}/photo.jpg", id="v4-mapped"),
    pytest.param(302, "file:///etc/passwd", id="file"),
    pytest.param(302, "gopher://127.0.0.1:{port}/_GET", id="gopher"),
    pytest.param(302, "http://2130706433:{port}/photo.jpg", id="decimal"),
    pytest.param(302, "http://0x7f000001:{port}/photo.jpg", id="hex"),
    pytest.param(302, "http://127.1:{port}/photo.jpg", id="two-part"),
    pytest.param(302, "http://localhost:{port}/photo.jpg", id="localhost"),
    pytest.param(302, "//localhost:{port}/photo.jpg", id="scheme-relative-localhost"),
    pytest.param(302, "//169.254.169.254/latest/meta-data/", id="scheme-relative-metadata"),
    pytest.param(302, "http://10.0.0.1/photo.jpg", id="private"),
    pytest.param(302, "http://evil.example@127.0.0.1:{port}/photo.jpg", id="userinfo"),
    pytest.param(302, "http://[::1/photo.jpg", id="unparseable"),
]


@pytest.mark.parametrize(("status", "template"), REDIRECT_TARGETS)
def test_each_redirect_hop_is_checked_again(client, site, status, template):
    url = site.url(f"location/{status}?to={quote(fill(template, site), safe='')}")
    message = assert_error(search_url(client, url), "forbidden_image_url")
    assert message.startswith("image_url redirect 1 was refused"), message
    assert "169.254" not in message and "[::1]" not in message  # redirect targets are not echoed


def test_a_redirect_loop_is_capped(client, site):
    before = site.hits("loop")
    message = assert_error(search_url(client, site.url("loop")), "image_url_unreachable")
    assert "redirected more than 3 times" in message
    assert site.hits("loop") - before == 4  # the first request and 3 redirects, then it stops


def test_four_redirects_are_one_too_many(client, site):
    assert "more than 3" in assert_error(
        search_url(client, site.url("chain/4/photo.jpg")), "image_url_unreachable"
    )


def test_a_redirect_without_location_is_unreachable(client, site):
    message = assert_error(search_url(client, site.url("location/302")), "image_url_unreachable")
    assert "without a Location" in message


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("redirect/photo.jpg", id="absolute-path"),
        pytest.param("location/302?to=../photo.jpg", id="dot-dot"),
        pytest.param("location/307?to=./../photo.jpg", id="dot-slash"),
        pytest.param("location/302?to=%2F%2F127.0.0.1%3A{port}%2Fphoto.jpg", id="scheme-relative"),
        pytest.param("chain/3/photo.jpg", id="exactly-three"),
    ],
)
def test_allowed_relative_redirects_are_followed(client, site, path):
    assert_hits(search_url(client, site.url(fill(path, site))))


def test_a_redirect_between_two_allowlisted_servers(client, site, other_site, fake_dns):
    target = other_site.url("redirect/photo.jpg", host="cdn.shop.test")
    before = request_count(other_site)
    assert_hits(search_url(client, site.url(f"location/302?to={quote(target, safe='')}")))
    assert request_count(other_site) - before == 2
    assert other_site.host_headers[-1] == f"cdn.shop.test:{other_site.port}"


def test_form_field_image_url_is_checked_the_same_way(client, site):
    response = client.post("/search", data={"image_url": fill("http://2130706433:{port}/photo.jpg", site)})
    assert_error(response, "forbidden_image_url")
    assert_hits(client.post("/search", data={"image_url": site.url("photo.jpg")}))


# ------------------------------------------------------------------------------------ pinning, TLS


def test_dns_rebinding_the_connection_uses_the_one_checked_lookup(client, site, fake_dns):
    """rebind.example answers 127.0.0.1 once, then an unroutable address: a second lookup (by us or by
    urllib3) would fail the download, so 200 proves the socket went to the checked address."""
    assert_hits(search_url(client, site.url("photo.jpg", host="rebind.example")))
    assert fake_dns.lookups["rebind.example"] == 1
    assert "rebind.example" not in fake_dns.passed_through
    assert site.host_headers[-1] == f"rebind.example:{site.port}"


def test_https_sends_sni_and_verifies_the_url_host_on_the_pinned_connection(
    client, tls_site, tls_files, fake_dns, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files["images.example"].ca))
    assert_hits(search_url(client, tls_site.url("photo.jpg", host="images.example")))
    assert tls_site.sni_names[-1] == "images.example"
    assert tls_site.host_headers[-1] == f"images.example:{tls_site.port}"


def test_https_with_a_certificate_for_another_name_is_unreachable(
    client, wrong_name_tls_site, tls_files, fake_dns, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files["other.example"].ca))
    url = wrong_name_tls_site.url("photo.jpg", host="images.example")
    assert "certificate" in assert_error(search_url(client, url), "image_url_unreachable")


def test_https_to_the_pinned_ip_does_not_borrow_the_certificate_name(
    client, tls_site, tls_files, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files["images.example"].ca))
    assert "certificate" in assert_error(
        search_url(client, tls_site.url("photo.jpg")), "image_url_unreachable"
    )


def test_https_with_an_untrusted_ca_is_unreachable(client, tls_site, fake_dns, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    url = tls_site.url("photo.jpg", host="images.example")
    assert "certificate" in assert_error(search_url(client, url), "image_url_unreachable")


# ------------------------------------------------------------------------------------ size and time


def timed_error(client, url: str, code: str) -> tuple[str, float]:
    started = time.monotonic()
    message = assert_error(search_url(client, url), code)
    return message, time.monotonic() - started


def test_a_too_large_content_length_is_refused_before_reading(client, site):
    """The server declares 10^12 bytes, then sends nothing: reading would wait for the timeout."""
    message, elapsed = timed_error(client, site.url(f"declared/{10**12}"), "image_url_too_large")
    assert "Content-Length" in message and elapsed < TIMEOUT


def test_an_endless_body_without_length_is_cut_at_the_cap(client, site):
    message, elapsed = timed_error(client, site.url("endless"), "image_url_too_large")
    assert f"cap of {MAX_BYTES} bytes" in message and elapsed < BOUND


def test_an_unsized_body_over_the_cap_is_cut(client, site):
    assert "cap" in timed_error(client, site.url("unsized/big.bin"), "image_url_too_large")[0]


def test_a_sized_body_over_the_cap_is_refused(client, site):
    assert "Content-Length" in timed_error(client, site.url("big.bin"), "image_url_too_large")[0]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("stall", id="headers-never-come"),
        pytest.param("drip-headers/0.1", id="headers-drip"),
        pytest.param("drip/0.1/photo.jpg", id="body-drips"),
        pytest.param("slow-loop/0.6", id="each-redirect-just-under-the-timeout"),
    ],
)
def test_slow_servers_fail_within_a_bounded_total_time(client, site, path):
    message, elapsed = timed_error(client, site.url(path), "image_url_unreachable")
    assert "timed out" in message
    assert TIMEOUT * 0.9 <= elapsed < BOUND, elapsed


def test_a_refused_connection_is_unreachable(client):
    port = free_port()
    message = assert_error(search_url(client, f"http://127.0.0.1:{port}/photo.jpg"), "image_url_unreachable")
    assert "refused" in message


@pytest.mark.parametrize("status", [404, 403, 500, 204])
def test_non_200_answers_are_unreachable(client, site, status):
    message = assert_error(search_url(client, site.url(f"status/{status}")), "image_url_unreachable")
    assert f"HTTP {status}" in message


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("page.html", "image_not_an_image"),
        ("as-jpeg/page.html", "image_not_an_image"),
        ("empty.jpg", "image_empty"),
    ],
)
def test_bodies_that_are_not_images_are_400(client, site, path, code):
    assert_error(search_url(client, site.url(path)), code)
