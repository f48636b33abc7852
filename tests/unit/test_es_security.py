"""Secured Elasticsearch without a cluster: client options, failure messages, the roles and the
security script's requests (against a recording fake; the real cluster is in test_security.py)."""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import stat
from argparse import Namespace

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig, TlsError
from elasticsearch import ApiError, AuthenticationException, AuthorizationException

from deploy.elasticsearch import security
from imgsearch.config import load_elastic_config
from imgsearch.esclient import connection_options, failure_message, make_client
from searchapi import make_search_client
from searchapi.config import load_search_config

HTTPS = {"ES_URL": "https://es.example:9200"}
KEY = base64.b64encode(b"key-id:key-secret").decode()


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return str(path)


def error(kind, status: int, reason: str | None = None):
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("https", "h", 1),
    )
    body = {"error": {"type": "security_exception", "reason": reason}, "status": status} if reason else None
    return kind(message="security_exception", meta=meta, body=body)


def test_credentials_become_client_options():
    assert connection_options(load_elastic_config({"ES_API_KEY": "key-id:key-secret"})) == {"api_key": KEY}
    options = connection_options(load_elastic_config({"ES_USERNAME": "u", "ES_PASSWORD": "p"}))
    assert options == {"basic_auth": ("u", "p")}
    assert connection_options(load_elastic_config({})) == {}


def test_tls_modes_become_client_options(ca_file, caplog):
    assert connection_options(load_elastic_config({**HTTPS, "ES_CA_CERTS": ca_file})) == {"ca_certs": ca_file}
    pinned = connection_options(load_elastic_config({**HTTPS, "ES_SSL_FINGERPRINT": "AB" * 32}))
    assert pinned == {"ssl_assert_fingerprint": "ab" * 32}
    system = connection_options(load_elastic_config(HTTPS))
    assert isinstance(system["ssl_context"], ssl.SSLContext)
    assert system["ssl_context"].verify_mode == ssl.CERT_REQUIRED and system["ssl_context"].check_hostname
    with caplog.at_level(logging.WARNING):
        unverified = connection_options(load_elastic_config({**HTTPS, "ES_VERIFY_CERTS": "false"}))
    assert unverified == {"verify_certs": False, "ssl_show_warn": False}
    assert "ES_VERIFY_CERTS=false" in caplog.text and "NOT verified" in caplog.text


def test_credentials_over_plain_http_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        connection_options(load_elastic_config({"ES_API_KEY": KEY}))
    assert "over plain http" in caplog.text and "key-secret" not in caplog.text and KEY not in caplog.text


def test_the_api_client_keeps_its_bounded_timeouts_and_gets_the_credentials(ca_file):
    env = {**HTTPS, "ES_CA_CERTS": ca_file, "ES_API_KEY": KEY, "SEARCH_ES_TIMEOUT": "2.5"}
    client = make_search_client(load_search_config(env))
    assert (client._request_timeout, client._max_retries, client._retry_on_timeout) == (2.5, 1, False)
    node = client.transport.node_pool.all()[0].config
    assert node.ca_certs == ca_file and node.verify_certs
    assert client._headers["authorization"] == f"ApiKey {KEY}"


def test_the_indexer_client_gets_the_same_options(ca_file):
    config = load_elastic_config(
        {**HTTPS, "ES_SSL_FINGERPRINT": "ab" * 32, "ES_USERNAME": "u", "ES_PASSWORD": "p"}
    )
    client = make_client(config)
    assert client.transport.node_pool.all()[0].config.ssl_assert_fingerprint == "ab" * 32
    assert client._headers["authorization"].startswith("Basic ")


def test_failure_messages_name_the_variables_to_fix():
    with_key = load_elastic_config({"ES_API_KEY": KEY})
    assert (
        failure_message(error(AuthenticationException, 401), with_key)
        == "Elasticsearch rejected the credentials (401): check ES_API_KEY"
    )
    assert "no credentials are configured" in failure_message(
        error(AuthenticationException, 401), load_elastic_config({})
    )
    denied = failure_message(
        error(AuthorizationException, 403, "action [indices:admin/create] is unauthorized for user [u]"),
        with_key,
    )
    assert denied.startswith("Elasticsearch denied the request (403) to the credentials in ES_API_KEY")
    assert "indices:admin/create" in denied and "deploy/elasticsearch" in denied
    pinned = load_elastic_config({**HTTPS, "ES_SSL_FINGERPRINT": "ab" * 32})
    tls = failure_message(TlsError("TLS error", errors=(ValueError("Fingerprints did not match"),)), pinned)
    assert "Fingerprints did not match" in tls and tls.endswith("check ES_SSL_FINGERPRINT")
    assert failure_message(ValueError("x"), with_key) is None


# --- roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("component", list(security.COMPONENTS))
def test_every_role_file_is_a_role_for_the_alias(component):
    body = security.role_body(component, "shop.images")
    assert set(body) == {"description", "cluster", "indices", "metadata"}
    assert "{{" not in json.dumps(body)
    names = {name for entry in body["indices"] for name in entry["names"]}
    assert "shop.images" in names and "/shop\\.images-[0-9]{8}t[0-9]{9}z/" in names
    assert not any(name.endswith("*") for name in names), "no wildcard: nothing else named shop.images-..."
    assert all(entry["allow_restricted_indices"] is False for entry in body["indices"])
    assert security.role_name(component, "shop.images").endswith("_shop.images")


def test_the_version_pattern_matches_exactly_the_indexer_s_version_names():
    from datetime import UTC, datetime

    from imgsearch.indices import version_name

    pattern = security.role_body("indexer", "images")["indices"][0]["names"][1].strip("/")
    assert re.fullmatch(pattern, version_name("images", datetime(2026, 11, 21, 3, 4, 5, 123000, UTC)))
    for other in ("images-runs", "images-indexer-state", "images-archive", "imagesx-20261121t030405123z"):
        assert not re.fullmatch(pattern, other)


def test_the_api_roles_read_only_or_write_only_the_alias():
    read = security.role_body("api-read", "images")
    assert read["cluster"] == []
    assert {p for entry in read["indices"] for p in entry["privileges"]} == {"read", "view_index_metadata"}
    write = security.role_body("api-write", "images")
    writable = [entry["names"] for entry in write["indices"] if "write" in entry["privileges"]]
    assert writable == [["images"]]
    indexer = security.role_body("indexer", "images")
    granted = {p for entry in indexer["indices"] for p in entry["privileges"]}
    assert "manage" not in granted and "all" not in granted
    assert "images-indexer-state" not in {n for entry in read["indices"] for n in entry["names"]}


def test_the_indexer_may_put_mappings_only_on_its_state_and_runs_indices():
    indexer = security.role_body("indexer", "images")
    mapping = [
        entry["names"] for entry in indexer["indices"] if "indices:admin/mapping/put" in entry["privileges"]
    ]
    assert mapping == [["images-indexer-state", "images-runs"]]


def test_the_roles_file_holds_one_json_role_per_line():
    lines = security.roles_file_text("images").splitlines()
    assert lines[0].startswith("#")
    roles = dict(line.split(": ", 1) for line in lines[1:])
    assert set(roles) == {
        "imgsearch_indexer_images",
        "imgsearch_api_read_images",
        "imgsearch_api_write_images",
    }
    assert json.loads(roles["imgsearch_api_read_images"]) == security.role_body("api-read", "images")


# --- the script against a recording fake -------------------------------------------------------------


class FakeSecurity:
    def __init__(self, keys=None):
        self.calls: list[tuple[str, dict]] = []
        self.keys = keys or []

    def __getattr__(self, name):
        def record(**kwargs):
            self.calls.append((name, kwargs))
            if name == "get_api_key":
                return Namespace(body={"api_keys": [k for k in self.keys if k["name"] == kwargs["name"]]})
            if name == "create_api_key":
                return Namespace(
                    body={"id": "new-id", "name": kwargs["name"], "encoded": "bmV3LWlkOnNlY3JldA=="}
                )
            return Namespace(body={})

        return record


class FakeEs:
    def __init__(self, keys=None):
        self.security = FakeSecurity(keys)

    def options(self, **_):
        return self


def calls(es, name):
    return [kwargs for call, kwargs in es.security.calls if call == name]


def test_roles_are_put_and_the_admin_s_keys_get_the_new_definition():
    es = FakeEs(keys=[{"id": "old", "name": "imgsearch_indexer_images", "creation": 1}])
    assert security.put_roles(es, "images") == [
        "imgsearch_indexer_images",
        "imgsearch_api_read_images",
        "imgsearch_api_write_images",
    ]
    put = calls(es, "put_role")
    assert (
        put[0]["name"] == "imgsearch_indexer_images"
        and put[0]["cluster"] == security.role_body("indexer", "images")["cluster"]
    )
    updated = calls(es, "bulk_update_api_keys")
    assert updated == [
        {
            "ids": ["old"],
            "role_descriptors": {
                "imgsearch_indexer_images": security.key_role_descriptor("indexer", "images")
            },
        }
    ]
    assert "description" not in security.key_role_descriptor("indexer", "images")


def test_a_key_is_created_once_unless_rotated():
    es = FakeEs()
    key = security.create_key(es, "api-read", "images", expiration="90d")
    assert key == {
        "component": "api-read",
        "name": "imgsearch_api_read_images",
        "id": "new-id",
        "encoded": "bmV3LWlkOnNlY3JldA==",
    }
    created = calls(es, "create_api_key")[0]
    assert created["expiration"] == "90d" and list(created["role_descriptors"]) == [
        "imgsearch_api_read_images"
    ]
    existing = FakeEs(keys=[{"id": "old", "name": "imgsearch_api_read_images"}])
    assert security.create_key(existing, "api-read", "images") is None
    assert calls(existing, "create_api_key") == []
    assert security.create_key(existing, "api-read", "images", rotate=True)["id"] == "new-id"


def test_invalidate_keeps_the_new_key():
    es = FakeEs(
        keys=[
            {"id": "old", "name": "imgsearch_indexer_images"},
            {"id": "new", "name": "imgsearch_indexer_images"},
        ]
    )
    assert security.invalidate_keys(es, "indexer", "images", keep="new") == ["old"]
    assert calls(es, "invalidate_api_key") == [{"ids": ["old"]}]


def test_keys_are_written_to_owner_only_files(tmp_path, capsys):
    key = {"component": "indexer", "name": "imgsearch_indexer_images", "id": "i", "encoded": "ZW5j"}
    target = tmp_path / "secrets" / "indexer.env"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o644)
    security.emit_keys([key], Namespace(json=False, output=None, output_dir=str(tmp_path / "secrets")))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text().endswith("ES_API_KEY=ZW5j\n")
    assert capsys.readouterr().out == ""
    security.emit_keys([key], Namespace(json=False, output=None, output_dir=None))
    assert "ES_API_KEY=ZW5j" in capsys.readouterr().out


def test_the_script_needs_an_admin_login(monkeypatch, capsys):
    monkeypatch.setattr("imgsearch.settings.environ", lambda: {"ES_API_KEY": KEY})
    assert security.main(["roles"]) == security.EXIT_CONFIG


def test_print_roles_needs_no_cluster(monkeypatch, capsys):
    monkeypatch.setattr("imgsearch.settings.environ", lambda: {"ES_INDEX": "shop"})
    assert security.main(["print-roles"]) == security.EXIT_OK
    assert set(json.loads(capsys.readouterr().out)) == {
        "imgsearch_indexer_shop",
        "imgsearch_api_read_shop",
        "imgsearch_api_write_shop",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "setup"],
        ["setup", "--json"],
        ["api-key", "indexer", "--json"],
        ["invalidate", "indexer", "--all", "--json"],
    ],
)
def test_json_is_accepted_before_or_after_the_command(argv):
    assert security.build_parser().parse_args(argv).json is True


def test_json_is_off_by_default():
    assert security.build_parser().parse_args(["setup"]).json is False


def test_a_cluster_that_cannot_create_the_security_index_is_explained(monkeypatch, caplog, capsys):
    """A distribution without analysis-common (the .security index's email analyzer needs its
    pattern_capture filter) answers 400 to every native-security call; the script says why."""
    reason = "Unknown filter type [pattern_capture] for [email]"
    failure = error(ApiError, 400, reason)
    failure.body["error"]["root_cause"] = [{"type": "illegal_argument_exception", "reason": reason}]

    class Refusing(FakeEs):
        def __init__(self):
            super().__init__()
            self.security.put_role = self.refuse

        def refuse(self, **_):
            raise failure

    monkeypatch.setattr(security, "admin_client", lambda env: (Refusing(), "images"))
    monkeypatch.setattr("imgsearch.settings.environ", lambda: {})
    with caplog.at_level(logging.ERROR):
        assert security.main(["setup"]) == security.EXIT_FAILED
    assert "cannot store native roles, users or API keys" in caplog.text and reason in caplog.text
    assert "ES_API_KEY=" not in capsys.readouterr().out


def test_the_client_gets_every_node_of_a_cluster_with_the_same_options():
    config = load_elastic_config(
        {"ES_URL": "https://a:9200,https://b:9204", "ES_SSL_FINGERPRINT": "ab" * 32, "ES_API_KEY": KEY}
    )
    nodes = make_client(config).transport.node_pool.all()
    assert sorted((node.config.host, node.config.port) for node in nodes) == [("a", 9200), ("b", 9204)]
    assert {node.config.ssl_assert_fingerprint for node in nodes} == {"ab" * 32}
