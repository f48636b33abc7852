"""Elasticsearch with security on (a second local node: TLS on HTTP, `scripts/stack.sh up-secure`):
credentials and TLS from the environment, clear errors, and the least-privilege roles of
deploy/elasticsearch/roles doing exactly the indexer's and the API's work.

The roles are tested twice. First from the file the security script writes (`roles-file`), held by the
node's file-realm users. Then for real as native roles and API keys that `python -m
deploy.elasticsearch.security` creates (setup, api-key, --rotate, invalidate, user): the node can store
them because scripts/stack.sh gives it a test-only analysis shim (deploy/elasticsearch/analysis-shim)
standing in for the analysis-common parts that the .security index's analyzer needs."""

from __future__ import annotations

import base64
import io
import json
import shlex
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch

from deploy.elasticsearch import security
from devstack.kit.catalog import catalog_environment
from imgsearch.config import load_elastic_config
from imgsearch.esclient import failure_message, make_client
from searchapi import create_app
from tests.integration.helpers import REPO, photo_entries, run_cli, seed
from tests.support.stack import secure_node_for_tests

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
def secure_node() -> Iterator[SecureNode]:
    """The security-enabled node; a node that cannot be started fails the tests (never skips them).
    A node these tests started is stopped after them, also when starting it failed; one that was
    already running is left running."""
    with secure_node_for_tests() as started:
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
        yield SecureNode(
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


# --- native roles and API keys made by the security script ---------------------------------------------


@dataclass(frozen=True)
class NativeSetup:
    alias: str
    keys: dict[str, dict[str, str]]  # component -> {"id", "name", "encoded", ...} as `--json` prints them


def security_script(node: SecureNode, alias: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
    """`python -m deploy.elasticsearch.security ARGS` logged in as `elastic`, for the alias."""
    env = {
        "PATH": "/usr/bin:/bin",
        "ES_URL": node.url,
        "ES_INDEX": alias,
        "ES_CA_CERTS": node.ca_certs,
        "ES_ADMIN_USERNAME": "elastic",
        "ES_ADMIN_PASSWORD": node.admin_password,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "deploy.elasticsearch.security", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def new_keys(node: SecureNode, alias: str, *args: str) -> dict[str, dict[str, str]]:
    done = security_script(node, alias, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def forget_alias(admin: Elasticsearch, alias: str, users: tuple[str, ...] = ()) -> None:
    """Invalidate the alias's keys, delete its roles, users and indices."""
    for component in security.COMPONENTS:
        name = security.role_name(component, alias)
        admin.options(ignore_status=404).security.invalidate_api_key(name=name)
        admin.options(ignore_status=404).security.delete_role(name=name)
    for user in users:
        admin.options(ignore_status=404).security.delete_user(username=user)
    admin.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")


NATIVE_USER = "imgsearch-native-reader"


@pytest.fixture(scope="module")
def native(secure_node, admin) -> Iterator[NativeSetup]:
    """`setup` (the three native roles, an indexer key and a read-only API key) and a write key."""
    alias = f"seckeys-{uuid.uuid4().hex[:8]}"
    keys = new_keys(secure_node, alias, "setup")
    assert set(keys) == {"indexer", "api-read"}, keys
    keys.update(new_keys(secure_node, alias, "api-key", "api-write"))
    yield NativeSetup(alias, keys)
    forget_alias(admin, alias, users=(NATIVE_USER,))


def key_env(node: SecureNode, catalog: dict[str, str], key: dict[str, str], **extra: str) -> dict[str, str]:
    return {**catalog, "ES_CA_CERTS": node.ca_certs, "ES_API_KEY": key["encoded"], **extra}


@pytest.fixture(scope="module")
def native_catalog(secure_node, native, stack_urls, image_server, tmp_path_factory) -> dict[str, str]:
    env = catalog_environment(secure_node.url, stack_urls[1], native.alias, str(tmp_path_factory.mktemp("r")))
    env["IMAGE_BASE_URL"] = image_server
    seed(env, photo_entries(4, 2))
    return env


@pytest.fixture(scope="module")
def native_indexed(secure_node, native, native_catalog) -> dict[str, str]:
    """`python -m indexer full` with the indexer API key that `setup` created."""
    done = run_cli(key_env(secure_node, native_catalog, native.keys["indexer"]), "full", "--no-progress")
    assert done.returncode == 0, done.stderr[-4000:]
    return native_catalog


def key_api(secure_node, catalog, extractor, key: dict[str, str], **extra):
    env = key_env(secure_node, catalog, key, SEARCH_URL_ALLOWED_HOSTS="127.0.0.1", **extra)
    return create_app(env, extractor=extractor).test_client()


def test_the_security_script_stores_native_roles_and_api_keys(secure_node, native, admin):
    for component in security.COMPONENTS:
        name = security.role_name(component, native.alias)
        expected = security.role_body(component, native.alias)
        role = admin.security.get_role(name=name).body[name]
        assert role["cluster"] == expected["cluster"]
        assert [(i["names"], i["privileges"]) for i in role["indices"]] == [
            (i["names"], i["privileges"]) for i in expected["indices"]
        ]
        assert role["metadata"]["imgsearch_component"] == component
        [key] = admin.security.get_api_key(name=name, active_only=True).body["api_keys"]
        assert key["id"] == native.keys[component]["id"]
        assert key["metadata"] == {"imgsearch_component": component, "imgsearch_alias": native.alias}
        descriptor = key["role_descriptors"][name]
        assert [(i["names"], i["privileges"]) for i in descriptor["indices"]] == [
            (i["names"], i["privileges"]) for i in expected["indices"]
        ]
    # Idempotent: the roles are updated in place and no second key is made without --rotate.
    again = security_script(secure_node, native.alias, "setup", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {}, again.stderr
    assert f"an active API key named {security.role_name('indexer', native.alias)} exists" in again.stderr


def test_an_indexer_api_key_runs_full_end_to_end(secure_node, native, native_indexed, admin):
    alias = native.alias
    live = live_index(admin, alias)
    assert admin.count(index=alias)["count"] == 8 and live.startswith(f"{alias}-")
    env = key_env(secure_node, native_indexed, native.keys["indexer"])
    status = run_cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr[-4000:]
    state = json.loads(status.stdout)
    assert state["live"] == [live] and state["last_runs"][0]["mode"] == "full"
    who = make_client(load_elastic_config(env), max_retries=0).security.authenticate().body
    assert who["authentication_type"] == "api_key"
    assert who["api_key"]["name"] == security.role_name("indexer", alias)


def test_the_indexer_key_adds_new_fields_to_an_older_runs_index(secure_node, native, native_indexed, admin):
    """A runs index made by an older indexer gets the explicit mappings (rows.*) with the indexer key."""
    from imgsearch.indices import runs_index
    from indexer.state import StateStore

    runs = runs_index(native.alias)
    admin.indices.delete(index=runs)
    admin.indices.create(index=runs, mappings={"properties": {"mode": {"type": "keyword"}}})
    env = key_env(secure_node, native_indexed, native.keys["indexer"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StateStore(make_client(load_elastic_config(env), max_retries=0), native.alias).ensure()
    # An explicit privilege, not `write`'s deprecated implicit one (gone in Elasticsearch 9).
    assert not [w for w in caught if "mapping" in str(w.message)], [str(w.message) for w in caught]
    properties = admin.indices.get_mapping(index=runs).body[runs]["mappings"]["properties"]
    assert properties["rows"]["properties"]["failed"] == {"type": "long"}
    assert properties["previous_indices"] == {"type": "keyword"}


def test_the_api_read_key_searches_but_cannot_write(
    secure_node, native, native_indexed, extractor, photo_folder, admin, caplog
):
    read_key = native.keys["api-read"]
    client = key_api(secure_node, native_indexed, extractor, read_key, SEARCH_API_KEYS=WRITE_KEY)
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.get_json()
    response = client.post("/search", data=upload(photo_folder))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["hits"][0]["relation_id"] == "product-003"

    posted = client.post(
        "/images",
        data={"id": "9101", "relation_id": "new", **upload(photo_folder)},
        headers={"X-API-Key": WRITE_KEY},
    )
    assert posted.status_code == 503, posted.get_json()
    assert posted.get_json()["error"]["code"] == "search_backend_forbidden"
    assert read_key["id"] not in posted.get_data(as_text=True)
    # The API's log names the action and the key; the client does not see them.
    logged = caplog.text
    assert f"is unauthorized for API key id [{read_key['id']}]" in logged and "indices:data/write/" in logged

    # A direct write with the key: a 403 naming the action, the key and the privileges that grant it.
    config = load_elastic_config(key_env(secure_node, native_indexed, read_key))
    with pytest.raises(AuthorizationException) as denied:
        make_client(config, max_retries=0).index(index=native.alias, id="9102", document={"relation_id": "x"})
    message = failure_message(denied.value, config)
    assert message.startswith(
        "Elasticsearch denied the request (403) to the credentials in ES_API_KEY: action "
        f"[indices:data/write/index] is unauthorized for API key id [{read_key['id']}]"
    ), message
    assert "this action is granted by the index privileges [create_doc,create,index,write,all]" in message
    admin.indices.refresh(index=native.alias)
    assert admin.count(index=native.alias)["count"] == 8
    assert not admin.exists(index=native.alias, id="9101") and not admin.exists(index=native.alias, id="9102")


def test_the_indexer_names_the_privilege_its_key_lacks(secure_node, native, native_indexed, admin):
    before = versions(admin, native.alias)
    read_key = native.keys["api-read"]
    result = run_cli(key_env(secure_node, native_indexed, read_key), "full", "--no-progress")
    assert result.returncode == 2, result.stderr[-4000:]
    assert (
        "Elasticsearch denied the request (403) to the credentials in ES_API_KEY: action [" in result.stderr
    )
    assert f"is unauthorized for API key id [{read_key['id']}]" in result.stderr
    assert "Traceback" not in result.stderr and read_key["encoded"] not in result.stderr
    assert versions(admin, native.alias) == before


def test_the_api_write_key_indexes_and_deletes_through_the_alias(
    secure_node, native, native_indexed, extractor, photo_folder, admin
):
    client = key_api(
        secure_node, native_indexed, extractor, native.keys["api-write"], SEARCH_API_KEYS=WRITE_KEY
    )
    auth = {"X-API-Key": WRITE_KEY}
    posted = client.post(
        "/images", data={"id": "9103", "relation_id": "new", **upload(photo_folder)}, headers=auth
    )
    assert posted.status_code == 201, posted.get_json()
    assert posted.get_json()["index"] == live_index(admin, native.alias)
    deleted = client.delete("/images/9103", headers=auth)
    assert deleted.status_code == 200, deleted.get_json()
    assert not admin.exists(index=native.alias, id="9103")


def test_a_native_user_holds_a_native_role(secure_node, native, native_indexed, extractor, photo_folder):
    password = f"native-{uuid.uuid4().hex}"
    made = security_script(
        secure_node, native.alias, "user", NATIVE_USER, "api-read", IMGSEARCH_PASSWORD=password
    )
    assert made.returncode == 0, made.stderr
    assert password not in made.stdout + made.stderr
    env = {**native_indexed, "ES_CA_CERTS": secure_node.ca_certs, "ES_USERNAME": NATIVE_USER}
    env["ES_PASSWORD"] = password
    who = make_client(load_elastic_config(env), max_retries=0).security.authenticate().body
    assert who["authentication_realm"]["type"] == "native"
    assert who["roles"] == [security.role_name("api-read", native.alias)]
    client = create_app({**env, "SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1"}, extractor=extractor).test_client()
    assert client.get("/ready").status_code == 200
    assert client.post("/search", data=upload(photo_folder)).status_code == 200


def authenticates(node: SecureNode, key: dict[str, str]) -> bool:
    client = Elasticsearch(node.url, api_key=key["encoded"], ca_certs=node.ca_certs, max_retries=0)
    try:
        return client.security.authenticate().body["api_key"]["id"] == key["id"]
    except AuthenticationException:
        return False


def test_rotation_and_invalidation_turn_old_keys_into_clear_401s(
    secure_node, native_catalog, extractor, photo_folder, admin
):
    alias = f"secrot-{uuid.uuid4().hex[:8]}"
    try:
        old = new_keys(secure_node, alias, "api-key", "indexer")["indexer"]
        assert new_keys(secure_node, alias, "api-key", "indexer") == {}  # one active key is enough
        new = new_keys(secure_node, alias, "api-key", "indexer", "--rotate")["indexer"]
        assert new["id"] != old["id"] and authenticates(secure_node, old) and authenticates(secure_node, new)

        done = security_script(secure_node, alias, "invalidate", "indexer", "--keep", new["id"], "--json")
        assert done.returncode == 0 and json.loads(done.stdout) == {"invalidated": [old["id"]]}, done.stderr
        assert not authenticates(secure_node, old) and authenticates(secure_node, new)
        result = run_cli(key_env(secure_node, native_catalog, old), "status")
        assert result.returncode == 2, result.stderr[-4000:]
        assert "Elasticsearch rejected the credentials (401): check ES_API_KEY" in result.stderr
        assert "Traceback" not in result.stderr and old["encoded"] not in result.stderr

        # The API with a key invalidated by `invalidate --all`: unready with a clear reason, 503 per request.
        read = new_keys(secure_node, alias, "api-key", "api-read")["api-read"]
        done = security_script(secure_node, alias, "invalidate", "api-read", "--all", "--json")
        assert json.loads(done.stdout) == {"invalidated": [read["id"]]}, done.stderr
        client = key_api(secure_node, native_catalog, extractor, read)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert (
            ready.get_json()["reason"]
            == "Elasticsearch rejected the API's credentials (401): check ES_API_KEY"
        )
        assert ready.get_json()["checks"]["elasticsearch"] == "credentials rejected"
        search = client.post("/search", data=upload(photo_folder))
        assert search.status_code == 503
        assert search.get_json()["error"]["code"] == "search_backend_unauthenticated"
        assert read["id"] not in search.get_data(as_text=True)
        assert "security_exception" not in search.get_data(as_text=True)

        done = security_script(secure_node, alias, "invalidate", "indexer", "--all", "--json")
        assert json.loads(done.stdout) == {"invalidated": [new["id"]]}, done.stderr
        assert not authenticates(secure_node, new)
    finally:
        forget_alias(admin, alias)
