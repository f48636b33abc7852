"""API key matching, CORS origin matching and the API's configuration checks."""

from __future__ import annotations

import pytest
from flask import Flask

from imgsearch.settings import ConfigError
from searchapi.auth import key_matches, presented_key
from searchapi.config import load_search_config
from searchapi.cors import allowed_origin

KEY = "k" * 32


def test_key_matching_is_exact():
    assert key_matches(KEY, ("other-key-0123456789", KEY))
    assert not key_matches(KEY[:-1], (KEY,))
    assert not key_matches(KEY + "x", (KEY,))
    assert not key_matches("", (KEY,))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"Authorization": f"bearer   {KEY} "}, KEY),
        ({"X-API-Key": KEY}, KEY),
        ({"Authorization": f"Basic {KEY}"}, None),
        ({}, None),
    ],
)
def test_key_comes_from_bearer_or_x_api_key(headers, expected):
    with Flask(__name__).test_request_context(headers=headers):
        assert presented_key() == expected


@pytest.mark.parametrize(
    ("origin", "origins", "expected"),
    [
        ("https://shop.example", ("https://shop.example",), "https://shop.example"),
        ("https://shop.example", ("https://shop.example/",), None),
        ("https://evil.example", ("https://shop.example",), None),
        ("https://shop.example.evil", ("https://shop.example",), None),
        ("https://any.example", ("*",), "*"),
        (None, ("*",), None),
        ("https://shop.example", (), None),
    ],
)
def test_cors_origin_matching(origin, origins, expected):
    assert allowed_origin(origin, origins) == expected


def test_cors_origin_config_is_normalised():
    assert load_search_config({"SEARCH_CORS_ORIGINS": "https://a.example/, *"}).cors_origins == (
        "https://a.example",
        "*",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEARCH_API_KEYS", "short"),
        ("SEARCH_CORS_ORIGINS", "shop.example.com"),
        ("SEARCH_CORS_ORIGINS", "https://shop.example.com/path"),
        ("SEARCH_FILTER_FIELDS", "relation_id,feature"),
        ("SEARCH_ES_TIMEOUT", "soon"),
        ("SEARCH_MAX_UPLOAD_BYTES", "10"),
    ],
)
def test_bad_api_configuration_names_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_search_config({variable: value})


def test_writes_are_enabled_only_with_keys():
    assert not load_search_config({}).writes_enabled
    assert load_search_config({"SEARCH_API_KEYS": f"{KEY}, {'z' * 20}"}).api_keys == (KEY, "z" * 20)


def test_allowlisted_hosts_are_canonicalised_like_url_hosts():
    hosts = load_search_config(
        {"SEARCH_URL_ALLOWED_HOSTS": "CDN.Example.com, bücher.example"}
    ).url_allowed_hosts
    assert hosts == ("cdn.example.com", "xn--bcher-kva.example")


def test_allowlisted_hosts_may_name_a_port():
    hosts = load_search_config(
        {"SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1:8001, Bücher.example:8443, [::1]:8001"}
    ).url_allowed_hosts
    assert hosts == ("127.0.0.1:8001", "xn--bcher-kva.example:8443", "[::1]:8001")


@pytest.mark.parametrize("entry", ["127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "cdn:http", "[cdn]:80"])
def test_a_malformed_allowlist_entry_is_a_configuration_error(entry):
    with pytest.raises(ConfigError, match="SEARCH_URL_ALLOWED_HOSTS"):
        load_search_config({"SEARCH_URL_ALLOWED_HOSTS": entry})
