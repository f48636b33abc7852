"""Elasticsearch with security on (a second local node: TLS on HTTP, `scripts/stack.sh up-secure`):
credentials and TLS from the environment, clear errors, and the least-privilege roles of
deploy/elasticsearch/roles doing exactly the indexer's and the API's work.

This minimal distribution cannot store native users, roles or API keys (its .security index needs the
analysis-common module), so the roles are loaded from the file the security script writes
(`roles-file`) and given to the node's file-realm users; an API key is only tested for its rejection."""

from __future__ import annotations

import base64
import io
import json
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from indexer.config import load_elastic_config
from indexer.sink import make_client
from searchapi import create_app
from tests.integration.helpers import REPO, photo_entries, run_cli, seed
from tests.support.catalog import catalog_environment

pytestmark = [pytest.mark.integration]

STACK = REPO / "scripts" / "stack.sh"
WRITE_KEY = "security-test-write-key-0123456789"
USERS = {"indexer": "imgsearch_indexer", "api-read": "imgsearch_api_read", "api-write": "imgsearch_api_write"}


@dataclass(frozen=True)
class SecureNode:
    url: str
    ca_certs: str
    fingerprint: str
    ca_fingerprint: str
    admin_password: str
    config_dir: Path
    users_password: str


def stack(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def secure_node() -> SecureNode:
    """The security-enabled node; a node that cannot be started fails the tests (never skips them)."""
    started = stack("up-secure")
    if started.returncode != 0:
        pytest.fail(
            "scripts/stack.sh up-secure could not start the security-enabled Elasticsearch:\n"
            + started.stderr[-4000:],
            pytrace=False,
        )
    values = {}
    for line in stack("env-secure").stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    return SecureNode(
        url=values["ES_SECURE_URL"],
        ca_certs=values["ES_SECURE_CA_CERTS"],
        fingerprint=values["ES_SECURE_FINGERPRINT"],
        ca_fingerprint=values["ES_SECURE_CA_FINGERPRINT"],
        admin_password=values["ES_SECURE_PASSWORD"],
        config_dir=Path(values["ES_SECURE_CONFIG_DIR"]),
        users_password=values["ES_SECURE_USERS_PASSWORD"],
    )


@pytest.fixture(scope="module")
def admin(secure_node) -> Elasticsearch:
    client = Elasticsearch(
        secure_node.url,
        basic_auth=("elastic", secure_node.admin_password),
        ca_certs=secure_node.ca_certs,
        request_timeout=30,
    )
    client.cluster.health(wait_for_status="yellow", timeout="30s")
    return client


def authenticated_roles(node: SecureNode, user: str) -> list[str]:
    client = Elasticsearch(node.url, basic_auth=(user, node.users_password), ca_certs=node.ca_certs)
    try:
        return client.security.authenticate().body["roles"]
    except AuthorizationException:
        return []


@pytest.fixture(scope="module")
def secure_alias(secure_node, admin):
    """A fresh alias whose three roles (written by the security script) the file-realm users hold."""
    alias = f"sectest-{uuid.uuid4().hex[:8]}"
    roles_file = secure_node.config_dir / "roles.yml"
    written = subprocess.run(
        [sys.executable, "-m", "deploy.elasticsearch.security", "roles-file", "--output", str(roles_file)],
        cwd=REPO,
        env={"ES_INDEX": alias, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    roles_file.chmod(0o644)
    mapping = "".join(f"imgsearch_{c.replace('-', '_')}_{alias}:{user}\n" for c, user in USERS.items())
    users_roles = secure_node.config_dir / "users_roles"
    users_roles.write_text(mapping)
    users_roles.chmod(0o644)
    deadline = time.monotonic() + 60
    while any(
        authenticated_roles(secure_node, user) != [f"imgsearch_{c.replace('-', '_')}_{alias}"]
        for c, user in USERS.items()
    ):
        assert time.monotonic() < deadline, "the node did not load roles.yml/users_roles within 60 s"
        time.sleep(1)
    yield alias
    admin.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")


def tls_variables(node: SecureNode, mode: str) -> dict[str, str]:
    return {
        "ca": {"ES_CA_CERTS": node.ca_certs},
        "fingerprint": {"ES_SSL_FINGERPRINT": node.fingerprint},
        "ca-fingerprint": {"ES_SSL_FINGERPRINT": node.ca_fingerprint},
        "system": {},
    }[mode]


def login(node: SecureNode, component: str, password: str | None = None) -> dict[str, str]:
    return {"ES_USERNAME": USERS[component], "ES_PASSWORD": password or node.users_password}


@pytest.fixture(scope="module")
def catalog(secure_node, secure_alias, stack_urls, image_server, tmp_path_factory) -> dict[str, str]:
    """A catalog of 4 products x 2 views pointing at the secure node (no credentials, no TLS yet)."""
    env = catalog_environment(
        secure_node.url, stack_urls[1], secure_alias, str(tmp_path_factory.mktemp("reports"))
    )
    env["IMAGE_BASE_URL"] = image_server
    seed(env, photo_entries(4, 2))
    return env


def env_for(node: SecureNode, catalog: dict[str, str], component: str, tls: str = "ca", **extra) -> dict:
    return {**catalog, **tls_variables(node, tls), **login(node, component), **extra}


@pytest.fixture(scope="module")
def indexed(secure_node, catalog, admin) -> dict[str, str]:
    """`python -m indexer full` with the indexer role, over TLS verified with the CA file."""
    done = run_cli(env_for(secure_node, catalog, "indexer"), "full", "--no-progress")
    assert done.returncode == 0, done.stderr[-4000:]
    return catalog


def live_index(admin: Elasticsearch, alias: str) -> str:
    return next(iter(admin.indices.get_alias(name=alias).body))


def versions(admin: Elasticsearch, alias: str) -> list[str]:
    names = admin.indices.get(index=f"{alias}-2*", expand_wildcards="all").body
    return sorted(names)


def test_the_indexer_role_runs_full_incremental_status_and_rollback(secure_node, indexed, admin):
    alias = indexed["ES_INDEX"]
    first = live_index(admin, alias)
    assert admin.count(index=alias)["count"] == 8

    incremental = run_cli(env_for(secure_node, indexed, "indexer", "ca-fingerprint"), "incremental")
    assert incremental.returncode == 0, incremental.stderr[-4000:]

    status = run_cli(env_for(secure_node, indexed, "indexer", "fingerprint"), "status", "--json")
    assert status.returncode == 0, status.stderr[-4000:]
    state = json.loads(status.stdout)
    assert state["live"] == [first] and [run["mode"] for run in state["last_runs"]][:2] == [
        "incremental",
        "full",
    ]

    again = run_cli(env_for(secure_node, indexed, "indexer"), "full", "--no-progress")
    assert again.returncode == 0, again.stderr[-4000:]
    second = live_index(admin, alias)
    assert second != first and versions(admin, alias) == [first, second]

    back = run_cli(env_for(secure_node, indexed, "indexer", "fingerprint"), "rollback")
    assert back.returncode == 0, back.stderr[-4000:]
    assert live_index(admin, alias) == first and f"{second} -> {first}" in back.stdout

    # Retention deletes old versions (delete_index); the API tests then serve the newest build.
    third = run_cli(
        env_for(secure_node, indexed, "indexer", INDEXER_KEEP_VERSIONS="1"), "full", "--no-progress"
    )
    assert third.returncode == 0, third.stderr[-4000:]
    assert versions(admin, alias) == [live_index(admin, alias)] and first not in versions(admin, alias)


def test_the_roles_grant_nothing_beyond_their_alias(secure_node, indexed):
    alias = indexed["ES_INDEX"]
    indexer = make_client(load_elastic_config(env_for(secure_node, indexed, "indexer")), max_retries=0)
    for name in (f"other-{uuid.uuid4().hex[:8]}", f"{alias}-other"):
        with pytest.raises(AuthorizationException, match="indices:admin/create"):
            indexer.indices.create(index=name)
    reader = make_client(load_elastic_config(env_for(secure_node, indexed, "api-read")), max_retries=0)
    assert reader.count(index=alias)["count"] == 8
    with pytest.raises(AuthorizationException):
        reader.search(index=f"{alias}-indexer-state")
    with pytest.raises(AuthorizationException):
        reader.index(index=alias, id="999", document={"relation_id": "x"})
    with pytest.raises(AuthorizationException):
        reader.cluster.health()


def test_a_wrong_password_stops_the_indexer_with_a_clear_error(secure_node, indexed, admin):
    before = versions(admin, indexed["ES_INDEX"])
    env = {**env_for(secure_node, indexed, "indexer"), "ES_PASSWORD": "not-the-password"}
    result = run_cli(env, "full", "--no-progress")
    assert result.returncode == 2, result.stderr[-4000:]
    assert "Elasticsearch rejected the credentials (401): check ES_USERNAME/ES_PASSWORD" in result.stderr
    assert "not-the-password" not in result.stderr and "Traceback" not in result.stderr
    assert versions(admin, indexed["ES_INDEX"]) == before


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"ES_API_KEY": base64.b64encode(b"no-such-id:no-such-key").decode()},
            "Elasticsearch rejected the credentials (401): check ES_API_KEY",
        ),
        ({}, "Elasticsearch requires authentication (401) and no credentials are configured"),
    ],
    ids=["unknown-api-key", "no-credentials"],
)
def test_rejected_or_missing_credentials_are_named(secure_node, catalog, variables, message):
    result = run_cli({**catalog, **tls_variables(secure_node, "ca"), **variables}, "status")
    assert result.returncode == 2 and message in result.stderr, result.stderr[-4000:]


@pytest.mark.parametrize(
    ("tls", "variables", "hint"),
    [
        ("fingerprint", {"ES_SSL_FINGERPRINT": "ab" * 32}, "check ES_SSL_FINGERPRINT"),
        ("system", {}, "check the system trust store"),
        ("ca", {"ES_CA_CERTS": certifi.where()}, "check ES_CA_CERTS"),
    ],
    ids=["wrong-fingerprint", "untrusted-by-the-system", "other-cas"],
)
def test_tls_verification_failures_are_named(secure_node, catalog, tls, variables, hint):
    env = {**catalog, **login(secure_node, "indexer"), **tls_variables(secure_node, tls), **variables}
    result = run_cli(env, "status")
    assert result.returncode == 2, result.stderr[-4000:]
    assert f"TLS connection to {secure_node.url} failed" in result.stderr and hint in result.stderr


def test_the_system_trust_store_is_used_without_a_ca_file_or_fingerprint(secure_node, indexed):
    env = {**indexed, **login(secure_node, "indexer"), "SSL_CERT_FILE": secure_node.ca_certs}
    result = run_cli(env, "status")
    assert result.returncode == 0, result.stderr[-4000:]


def test_unverified_tls_works_but_warns_loudly(secure_node, indexed):
    env = {**indexed, **login(secure_node, "indexer"), "ES_VERIFY_CERTS": "false"}
    result = run_cli(env, "status")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ES_VERIFY_CERTS=false" in result.stderr and "NOT verified" in result.stderr


def api(secure_node, catalog, extractor, component: str, tls: str = "ca", **extra):
    env = env_for(secure_node, catalog, component, tls, SEARCH_URL_ALLOWED_HOSTS="127.0.0.1", **extra)
    return create_app(env, extractor=extractor).test_client()


def upload(photo_folder, name: str = "p003-coffee-front.jpg") -> dict:
    return {"image": (io.BytesIO((photo_folder / name).read_bytes()), "q.jpg")}


@pytest.mark.parametrize("tls", ["ca", "fingerprint", "ca-fingerprint"])
def test_the_read_role_serves_searches_over_tls(secure_node, indexed, extractor, photo_folder, tls):
    client = api(secure_node, indexed, extractor, "api-read", tls)
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.get_json()
    response = client.post("/search", data=upload(photo_folder))
    assert response.status_code == 200, response.get_json()
    hits = response.get_json()["hits"]
    assert hits[0]["relation_id"] == "product-003" and len(hits) == 4
    assert client.get("/images/1").status_code == 200
    stats = client.get("/stats")
    assert stats.status_code == 200 and stats.get_json()["documents"] == 8, stats.get_json()


def test_a_wrong_password_makes_the_api_unready_with_a_clear_reason(
    secure_node, indexed, extractor, photo_folder
):
    client = api(secure_node, indexed, extractor, "api-read", ES_PASSWORD="not-the-password")
    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["reason"] == (
        "Elasticsearch rejected the API's credentials (401): check ES_USERNAME/ES_PASSWORD"
    )
    assert body["checks"]["elasticsearch"] == "credentials rejected"
    search = client.post("/search", data=upload(photo_folder))
    assert search.status_code == 503
    error = search.get_json()["error"]
    assert error["code"] == "search_backend_unauthenticated"
    assert "imgsearch_api_read" not in search.get_data(as_text=True)
    assert "security_exception" not in search.get_data(as_text=True)


def test_a_tls_failure_makes_the_api_unready_with_a_clear_reason(secure_node, indexed, extractor):
    client = api(secure_node, indexed, extractor, "api-read", "fingerprint", ES_SSL_FINGERPRINT="ab" * 32)
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["checks"]["elasticsearch"] == "tls error"
    assert "check ES_CA_CERTS/ES_SSL_FINGERPRINT" in ready.get_json()["reason"]


def test_the_read_role_cannot_write_even_with_write_endpoints_enabled(
    secure_node, indexed, extractor, photo_folder, admin
):
    client = api(secure_node, indexed, extractor, "api-read", SEARCH_API_KEYS=WRITE_KEY)
    auth = {"X-API-Key": WRITE_KEY}
    posted = client.post(
        "/images", data={"id": "9001", "relation_id": "new", **upload(photo_folder)}, headers=auth
    )
    assert posted.status_code == 503, posted.get_json()
    assert posted.get_json()["error"]["code"] == "search_backend_forbidden"
    assert "indices:data/write" not in posted.get_data(as_text=True)
    deleted = client.delete("/images/1", headers=auth)
    assert deleted.status_code == 503 and deleted.get_json()["error"]["code"] == "search_backend_forbidden"
    alias = indexed["ES_INDEX"]
    admin.indices.refresh(index=alias)
    assert not admin.exists(index=alias, id="9001") and admin.exists(index=alias, id="1")
    assert admin.count(index=alias)["count"] == 8


def test_the_write_role_indexes_and_deletes_through_the_alias(
    secure_node, indexed, extractor, photo_folder, admin
):
    client = api(secure_node, indexed, extractor, "api-write", "fingerprint", SEARCH_API_KEYS=WRITE_KEY)
    auth = {"X-API-Key": WRITE_KEY}
    posted = client.post(
        "/images", data={"id": "9002", "relation_id": "new", **upload(photo_folder)}, headers=auth
    )
    assert posted.status_code == 201, posted.get_json()
    assert posted.get_json()["index"] == live_index(admin, indexed["ES_INDEX"])
    deleted = client.delete("/images/9002", headers=auth)
    assert deleted.status_code == 200, deleted.get_json()
    assert not admin.exists(index=indexed["ES_INDEX"], id="9002")


def test_the_security_script_explains_a_cluster_that_cannot_store_api_keys(secure_node, catalog):
    env = {
        **{name: catalog[name] for name in ("ES_URL", "ES_INDEX")},
        "PATH": "/usr/bin:/bin",
        "ES_CA_CERTS": secure_node.ca_certs,
        "ES_ADMIN_USERNAME": "elastic",
        "ES_ADMIN_PASSWORD": secure_node.admin_password,
    }
    result = subprocess.run(
        [sys.executable, "-m", "deploy.elasticsearch.security", "setup"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot store native roles, users or API keys" in result.stderr
    assert "ES_API_KEY=" not in result.stdout
