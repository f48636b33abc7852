"""Configuration: defaults, validation errors that name the variable."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgsearch.config import ElasticConfig, load_elastic_config
from imgsearch.settings import ConfigError
from indexer.config import load_indexer_config, parse_mysql_url
from searchapi.config import load_search_config, load_server_settings

BASE = {"MYSQL_URL": "mysql://u:p%40ss@db.example:3307/shop"}


def test_defaults():
    config = load_indexer_config(BASE)
    assert config.elastic.url == "http://127.0.0.1:9200"
    assert config.elastic.alias == "images"
    assert config.elastic.vector_index_type == "int8_hnsw"
    assert config.model.weights == "imagenet"
    assert (config.model.precision, config.model.compile_mode) == ("auto", "auto")
    assert config.mysql.table == "images" and config.mysql.port == 3307
    assert config.mysql.password == "p@ss"
    assert config.keep_versions == 2


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "MYSQL_URL"),
        ({**BASE, "MYSQL_URL": "postgres://x/y"}, "MYSQL_URL"),
        ({**BASE, "MYSQL_URL": "mysql://u:p@host:3306/"}, "MYSQL_URL"),
        ({**BASE, "ES_URL": "ftp://x"}, "ES_URL"),
        ({**BASE, "ES_INDEX": "Images!"}, "ES_INDEX"),
        ({**BASE, "ES_VECTOR_INDEX_TYPE": "lsh"}, "ES_VECTOR_INDEX_TYPE"),
        ({**BASE, "ES_NUMBER_OF_REPLICAS": "-1"}, "ES_NUMBER_OF_REPLICAS"),
        ({**BASE, "IMAGE_FETCH_TIMEOUT": "soon"}, "IMAGE_FETCH_TIMEOUT"),
        ({**BASE, "MYSQL_TABLE": "images; DROP TABLE x"}, "MYSQL_TABLE"),
        ({**BASE, "INDEXER_KEEP_VERSIONS": "0"}, "INDEXER_KEEP_VERSIONS"),
        ({**BASE, "VGG16_PRECISION": "fp16"}, "VGG16_PRECISION"),
        ({**BASE, "VGG16_COMPILE": "jit"}, "VGG16_COMPILE"),
    ],
)
def test_errors_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_indexer_config(env)


def test_precision_and_compile_mode_can_be_forced():
    config = load_indexer_config({**BASE, "VGG16_PRECISION": "bfloat16", "VGG16_COMPILE": "xla"})
    assert (config.model.precision, config.model.compile_mode) == ("bfloat16", "xla")


def test_mysql_url_default_port():
    assert parse_mysql_url("mysql://a:b@h/db")["port"] == 3306


def test_elastic_config_alone_needs_no_mysql():
    assert load_elastic_config({}).alias == "images"


# --- Elasticsearch credentials and TLS -------------------------------------------------------------

HTTPS = {"ES_URL": "https://es.example:9200"}
KEY = base64.b64encode(b"key-id:key-secret").decode()
FINGERPRINT = "AB:" * 31 + "AB"


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return str(path)


def test_no_credentials_and_no_tls_by_default():
    config = load_elastic_config({})
    assert (config.api_key, config.username, config.password, config.credentials_from) == (
        None,
        None,
        None,
        "",
    )
    assert (config.ca_certs, config.ssl_fingerprint, config.verify_certs) == (None, None, True)


def test_api_key_in_encoded_or_id_colon_key_form():
    assert load_elastic_config({"ES_API_KEY": KEY}).api_key == KEY
    config = load_elastic_config({"ES_API_KEY": "key-id:key-secret"})
    assert config.api_key == KEY and config.credentials_from == "ES_API_KEY"


def test_username_and_password():
    config = load_elastic_config({"ES_USERNAME": "indexer", "ES_PASSWORD": " s3cret "})
    assert (config.username, config.password) == ("indexer", " s3cret ")
    assert config.credentials_from == "ES_USERNAME/ES_PASSWORD"


def test_secrets_stay_out_of_the_repr():
    text = repr(load_elastic_config({"ES_USERNAME": "u", "ES_PASSWORD": "hunter2-password"}))
    assert "hunter2" not in text and "username='u'" in text
    assert "key-secret" not in repr(load_elastic_config({"ES_API_KEY": KEY}))


def test_tls_settings_for_https(ca_file):
    assert load_elastic_config({**HTTPS, "ES_CA_CERTS": ca_file}).ca_certs == ca_file
    fingerprint = load_elastic_config({**HTTPS, "ES_SSL_FINGERPRINT": FINGERPRINT}).ssl_fingerprint
    assert fingerprint == "ab" * 32
    assert load_elastic_config({**HTTPS, "ES_VERIFY_CERTS": "false"}).verify_certs is False
    assert load_elastic_config({**HTTPS, "ES_VERIFY_CERTS": "TRUE"}).verify_certs is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ES_API_KEY": KEY, "ES_USERNAME": "u", "ES_PASSWORD": "p"}, "either ES_API_KEY or ES_USERNAME"),
        ({"ES_API_KEY": KEY, "ES_PASSWORD": "p"}, "either ES_API_KEY or ES_USERNAME/ES_PASSWORD"),
        ({"ES_USERNAME": "u"}, "ES_USERNAME is set but ES_PASSWORD is empty"),
        ({"ES_PASSWORD": "p"}, "ES_PASSWORD is set but ES_USERNAME is empty"),
        ({"ES_API_KEY": "not base64!"}, "ES_API_KEY must be the `encoded` value"),
        ({"ES_API_KEY": base64.b64encode(b"no-colon").decode()}, "ES_API_KEY must be the `encoded` value"),
        ({"ES_API_KEY": ":secret"}, "ES_API_KEY must be the `encoded` value"),
        ({"ES_URL": "https://elastic:pw@es.example:9200"}, "ES_URL must not contain credentials"),
        ({"ES_CA_CERTS": "/etc/ssl/ca.crt"}, "ES_CA_CERTS is set but ES_URL is not https://"),
        ({"ES_SSL_FINGERPRINT": FINGERPRINT}, "ES_SSL_FINGERPRINT is set but ES_URL is not https://"),
        ({"ES_VERIFY_CERTS": "false"}, "ES_VERIFY_CERTS is set but ES_URL is not https://"),
        ({**HTTPS, "ES_CA_CERTS": "/no/such/ca.crt"}, "ES_CA_CERTS: cannot read '/no/such/ca.crt'"),
        ({**HTTPS, "ES_SSL_FINGERPRINT": "abc"}, "ES_SSL_FINGERPRINT must be the SHA-256 fingerprint"),
        ({**HTTPS, "ES_SSL_FINGERPRINT": "ab" * 20}, "ES_SSL_FINGERPRINT must be the SHA-256 fingerprint"),
        ({**HTTPS, "ES_VERIFY_CERTS": "maybe"}, "ES_VERIFY_CERTS must be true or false"),
        (
            {**HTTPS, "ES_VERIFY_CERTS": "false", "ES_SSL_FINGERPRINT": FINGERPRINT},
            "ES_VERIFY_CERTS=false contradicts ES_SSL_FINGERPRINT",
        ),
    ],
)
def test_invalid_credentials_and_tls_settings_name_the_variables(env, message):
    with pytest.raises(ConfigError) as raised:
        load_elastic_config(env)
    assert message in str(raised.value)
    assert "pw@" not in str(raised.value) and "secret" not in str(raised.value)


def test_ca_file_and_fingerprint_exclude_each_other(ca_file):
    with pytest.raises(ConfigError, match="either ES_CA_CERTS or ES_SSL_FINGERPRINT, not both"):
        load_elastic_config({**HTTPS, "ES_CA_CERTS": ca_file, "ES_SSL_FINGERPRINT": FINGERPRINT})


def test_ca_file_must_hold_a_pem_certificate(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"ES_CA_CERTS: .* holds no PEM certificate"):
        load_elastic_config({**HTTPS, "ES_CA_CERTS": str(path)})


def test_the_admin_prefix_reads_and_names_its_own_variables():
    config = load_elastic_config(
        {"ES_ADMIN_USERNAME": "elastic", "ES_ADMIN_PASSWORD": "p", "ES_API_KEY": KEY}, "ES_ADMIN_"
    )
    assert config.username == "elastic" and config.api_key is None
    assert config.credentials_from == "ES_ADMIN_USERNAME/ES_ADMIN_PASSWORD"
    with pytest.raises(ConfigError, match="ES_ADMIN_USERNAME is set but ES_ADMIN_PASSWORD is empty"):
        load_elastic_config({"ES_ADMIN_USERNAME": "elastic"}, "ES_ADMIN_")


# --- the settings models: every error at once, process environment, exit code 2 ----------------------


def test_every_invalid_variable_is_named_at_once():
    env = {**BASE, "ES_INDEX": "Bad", "VGG16_COMPILE": "jit", "IMAGE_MAX_BYTES": "12", "MYSQL_TABLE": "a b"}
    with pytest.raises(ConfigError) as raised:
        load_indexer_config(env)
    message = str(raised.value)
    for expected in (
        "ES_INDEX must be a lowercase index/alias name, got 'Bad'",
        "VGG16_COMPILE must be one of auto, graph, xla, eager, inductor; got 'jit'",
        "IMAGE_MAX_BYTES must be >= 1024, got 12",
        "MYSQL_TABLE must be a plain SQL identifier (letters, digits, _), got 'a b'",
    ):
        assert expected in message
    assert "required" not in message  # the nested models are not reported as missing fields


def test_a_missing_required_variable_is_named_once():
    with pytest.raises(ConfigError) as raised:
        load_indexer_config({})
    assert str(raised.value) == "MYSQL_URL is required but not set (see env.example)"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ES_REQUEST_TIMEOUT", "0", "ES_REQUEST_TIMEOUT must be >= 0.1, got 0.0"),
        ("ES_NUMBER_OF_SHARDS", "65", "ES_NUMBER_OF_SHARDS must be >= 1 and <= 64, got 65"),
        ("ES_NUMBER_OF_REPLICAS", "one", "ES_NUMBER_OF_REPLICAS must be an integer, got 'one'"),
        ("ES_VECTOR_INDEX_TYPE", "lsh", "ES_VECTOR_INDEX_TYPE must be one of hnsw, int8_hnsw"),
        ("VGG16_SEED", "-1", "VGG16_SEED must be >= 0, got -1"),
        ("IMAGE_FETCH_RETRIES", "11", "IMAGE_FETCH_RETRIES must be >= 0 and <= 10, got 11"),
        ("IMAGE_MAX_PIXELS", "9999", "IMAGE_MAX_PIXELS must be >= 10000, got 9999"),
        ("MYSQL_DELETED_COLUMN", "deleted-at", "MYSQL_DELETED_COLUMN must be a plain SQL identifier"),
        ("MYSQL_RECONNECT_SECONDS", "-1", "MYSQL_RECONNECT_SECONDS must be >= 0.0, got -1.0"),
        ("INDEXER_KEEP_VERSIONS", "101", "INDEXER_KEEP_VERSIONS must be >= 1 and <= 100, got 101"),
        ("INDEXER_LOCK_TTL", "0.5", "INDEXER_LOCK_TTL must be >= 1.0, got 0.5"),
        ("INDEXER_CHANGE_LAG_SECONDS", "0", "INDEXER_CHANGE_LAG_SECONDS must be >= 1.0, got 0.0"),
        ("MYSQL_URL", "mysql://u:p@h:99999/db", "MYSQL_URL has an invalid port"),
        ("MYSQL_URL", "mysql://u:p@[::1/db", "MYSQL_URL: Invalid IPv6 URL"),  # was a traceback
        ("ES_URL", "http://[::1", "ES_URL must be an http(s) URL, got 'http://[::1'"),  # was a traceback
        ("ES_API_KEY", "ключ:секрет", "ES_API_KEY must be the `encoded` value"),  # was a traceback
    ],
)
def test_each_rule_names_its_variable(variable, value, message):
    with pytest.raises(ConfigError) as raised:
        load_indexer_config({**BASE, variable: value})
    assert message in str(raised.value)


def test_blank_values_take_the_default_and_values_are_stripped():
    config = load_indexer_config(
        {**BASE, "ES_INDEX": "   ", "INDEXER_KEEP_VERSIONS": " 3 ", "MYSQL_TABLE": ""}
    )
    assert (config.elastic.alias, config.keep_versions, config.mysql.table) == ("images", 3, "images")
    assert config.mysql.deleted_column is None and config.fetch.base_url == ""


def test_lists_are_comma_separated_never_json():
    assert load_search_config({"SEARCH_FILTER_FIELDS": " status , photo ,"}).filter_fields == (
        "status",
        "photo",
    )
    assert load_search_config({"SEARCH_FILTER_FIELDS": " , "}).filter_fields == ("relation_id",)
    with pytest.raises(ConfigError, match="SEARCH_FILTER_FIELDS"):
        load_search_config({"SEARCH_FILTER_FIELDS": '["status"]'})


def test_settings_are_frozen_and_read_the_process_environment(monkeypatch):
    monkeypatch.setenv("ES_INDEX", "from-process")
    config = ElasticConfig()
    assert config.alias == "from-process"
    with pytest.raises(ValueError, match="frozen"):
        config.alias = "other"


def test_the_mysql_connection_comes_from_the_url():
    config = load_indexer_config({**BASE, "MYSQL_DELETED_COLUMN": "deleted_at"})
    assert (config.mysql.host, config.mysql.port, config.mysql.user, config.mysql.database) == (
        "db.example",
        3307,
        "u",
        "shop",
    )
    assert config.mysql.deleted_column == "deleted_at"
    assert "p%40ss" not in repr(config) and "p@ss" not in repr(config)


def test_only_the_two_credential_prefixes_exist():
    with pytest.raises(ValueError, match="ES_OTHER_"):
        load_elastic_config({}, "ES_OTHER_")


def clean_environment(**variables: str) -> dict[str, str]:
    """The test process's environment without the project's variables, plus `variables`."""
    project = re.compile(r"^(ES|SEARCH|INDEXER|IMAGE|MYSQL|VGG16|KIBANA)_")
    return {**{k: v for k, v in os.environ.items() if not project.match(k)}, **variables}


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (["indexer", "status"], {"ES_INDEX": "Bad"}, "ES_INDEX must be a lowercase index/alias name"),
        (["indexer", "full"], {}, "MYSQL_URL is required but not set"),
        (
            ["searchapi"],
            {"SEARCH_CORS_ORIGINS": "ftp://x"},
            "SEARCH_CORS_ORIGINS: 'ftp://x' is not an origin",
        ),
        (
            ["deploy.elasticsearch.security", "roles"],
            {"ES_ADMIN_USERNAME": "elastic"},
            "ES_ADMIN_USERNAME is set but ES_ADMIN_PASSWORD is empty",
        ),
        (["kibana.setup", "--print"], {"KIBANA_SPACE": "Bad Space"}, "KIBANA_SPACE must be a space id"),
    ],
)
def test_programs_exit_2_with_the_message(command, env, message):
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=clean_environment(**env),
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SEARCH_WORKERS", "two"), ("SEARCH_LOG_LEVEL", "loud"), ("SEARCH_MAX_UPLOAD_BYTES", "-1")],
)
def test_gunicorn_stops_at_once_on_a_bad_variable_naming_it(variable, value):
    """The real gunicorn with the production config: exit 2 and one line, before any worker starts."""
    env = {**os.environ, variable: value}
    started = subprocess.run(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-c",
            "searchapi/gunicorn.conf.py",
            "searchapi:create_app()",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2, started.stderr
    assert started.stderr.strip().startswith(f"configuration error: {variable}")
    assert "Traceback" not in started.stderr


def test_gunicorn_settings_defaults_and_log_level_in_any_case():
    settings = load_server_settings({"SEARCH_LOG_LEVEL": "WARNING", "SEARCH_ACCESS_LOG": "0"})
    assert (settings.bind, settings.workers, settings.threads) == ("127.0.0.1:8000", 1, 8)
    assert (settings.log_level, settings.access_log, settings.metrics_dir) == ("warning", False, None)


def test_a_cluster_is_every_node_of_es_url_comma_separated():
    nodes = "http://127.0.0.1:9200, http://127.0.0.1:9204,http://127.0.0.1:9205"
    config = load_elastic_config({"ES_URL": nodes})
    assert config.urls == ["http://127.0.0.1:9200", "http://127.0.0.1:9204", "http://127.0.0.1:9205"]
    assert load_elastic_config({}).urls == ["http://127.0.0.1:9200"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://a:9200,https://b:9200", "ES_URL mixes http and https nodes"),
        ("https://a:9200,https://elastic:pw@b:9200", "ES_URL must not contain credentials"),
        ("http://a:9200,", "ES_URL must be an http(s) URL, got ''"),
        ("http://a:9200,b:9200", "ES_URL must be an http(s) URL, got 'b:9200'"),
    ],
)
def test_every_node_of_a_cluster_url_is_checked(url, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_elastic_config({"ES_URL": url})
