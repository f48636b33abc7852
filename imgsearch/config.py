"""Elasticsearch and model configuration shared by the indexer and the API, validated at start-up."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from imgsearch.compute import COMPILE_MODES, PRECISIONS
from imgsearch.settings import ConfigError, env_choice, env_float, env_int, env_str

VECTOR_INDEX_TYPES = (
    "hnsw",
    "int8_hnsw",
    "int4_hnsw",
    "bbq_hnsw",
    "flat",
    "int8_flat",
    "int4_flat",
    "bbq_flat",
)
_ALIAS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ElasticConfig:
    """Where the index lives and how it is built."""

    url: str
    alias: str
    request_timeout: float
    vector_index_type: str
    replicas: int
    shards: int
    # Authentication: an API key (the base64 `encoded` form) or a username and password, never both.
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # TLS for https URLs: a CA file, or a pinned certificate fingerprint, else the system trust store.
    ca_certs: str | None = None
    ssl_fingerprint: str | None = None
    verify_certs: bool = True
    # The variables the credentials came from, for error messages ("ES_API_KEY"); empty when none.
    credentials_from: str = ""

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"


@dataclass(frozen=True)
class ModelConfig:
    """Which VGG16 weights to load, and how to compute (auto: chosen from the hardware)."""

    weights: str
    seed: int
    precision: str = "auto"
    compile_mode: str = "auto"


def load_elastic_config(env: Mapping[str, str], prefix: str = "ES_") -> ElasticConfig:
    """The Elasticsearch variables; `prefix` names the credential variables (ES_ADMIN_ for the
    security script), so errors always name the variable that was actually read."""
    url = env_str(env, "ES_URL", "http://127.0.0.1:9200")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"ES_URL must be an http(s) URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "ES_URL must not contain credentials (it is logged); use ES_API_KEY or ES_USERNAME/ES_PASSWORD"
        )
    alias = env_str(env, "ES_INDEX", "images")
    if not _ALIAS.match(alias):
        raise ConfigError(f"ES_INDEX must be a lowercase index/alias name, got {alias!r}")
    api_key, username, password, credentials_from = load_credentials(env, prefix)
    ca_certs, fingerprint, verify_certs = load_tls(env, parts.scheme)
    return ElasticConfig(
        url=url,
        alias=alias,
        request_timeout=env_float(env, "ES_REQUEST_TIMEOUT", 30.0, minimum=0.1),
        vector_index_type=env_choice(env, "ES_VECTOR_INDEX_TYPE", "int8_hnsw", VECTOR_INDEX_TYPES),
        replicas=env_int(env, "ES_NUMBER_OF_REPLICAS", 1, minimum=0, maximum=10),
        shards=env_int(env, "ES_NUMBER_OF_SHARDS", 1, minimum=1, maximum=64),
        api_key=api_key,
        username=username,
        password=password,
        ca_certs=ca_certs,
        ssl_fingerprint=fingerprint,
        verify_certs=verify_certs,
        credentials_from=credentials_from,
    )


def load_credentials(env: Mapping[str, str], prefix: str) -> tuple[str | None, str | None, str | None, str]:
    """(api_key, username, password, the variables they came from): one method or none, never both."""
    key_var, user_var, password_var = f"{prefix}API_KEY", f"{prefix}USERNAME", f"{prefix}PASSWORD"
    api_key = env.get(key_var, "").strip()
    username = env.get(user_var, "").strip()
    password = env.get(password_var, "")  # a password may legitimately start or end with spaces
    if api_key and (username or password):
        raise ConfigError(f"set either {key_var} or {user_var}/{password_var}, not both")
    if api_key:
        return normalise_api_key(api_key, key_var), None, None, key_var
    if username and not password:
        raise ConfigError(f"{user_var} is set but {password_var} is empty")
    if password and not username:
        raise ConfigError(f"{password_var} is set but {user_var} is empty")
    if username:
        return None, username, password, f"{user_var}/{password_var}"
    return None, None, None, ""


def normalise_api_key(value: str, name: str) -> str:
    """The base64 `encoded` form of an API key, given that form or `id:api_key`."""
    if ":" not in value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        value = decoded
    key_id, _, secret = value.partition(":")
    if not key_id or not secret or any(c.isspace() for c in value):
        raise ConfigError(
            f"{name} must be the `encoded` value returned when the key was created "
            "(base64 of id:api_key), or id:api_key"
        )
    return base64.b64encode(value.encode("ascii")).decode("ascii")


def load_tls(env: Mapping[str, str], scheme: str) -> tuple[str | None, str | None, bool]:
    """(ca_certs, fingerprint, verify_certs) for an https ES_URL; any TLS setting with http is an error."""
    ca_certs = env.get("ES_CA_CERTS", "").strip() or None
    raw_fingerprint = env.get("ES_SSL_FINGERPRINT", "").strip()
    verify_certs = env_flag(env, "ES_VERIFY_CERTS", True)
    given = [
        name
        for name, present in (
            ("ES_CA_CERTS", ca_certs),
            ("ES_SSL_FINGERPRINT", raw_fingerprint),
            ("ES_VERIFY_CERTS", not verify_certs),
        )
        if present
    ]
    if given and scheme != "https":
        raise ConfigError(f"{given[0]} is set but ES_URL is not https://; TLS settings need an https URL")
    if ca_certs and raw_fingerprint:
        raise ConfigError("set either ES_CA_CERTS or ES_SSL_FINGERPRINT, not both")
    if not verify_certs and (ca_certs or raw_fingerprint):
        raise ConfigError(
            f"ES_VERIFY_CERTS=false contradicts {given[0]}: a CA or fingerprint is for verifying"
        )
    if ca_certs:
        check_ca_file(ca_certs)
    fingerprint = None
    if raw_fingerprint:
        fingerprint = raw_fingerprint.replace(":", "").lower()
        if not _SHA256_HEX.match(fingerprint):
            raise ConfigError(
                "ES_SSL_FINGERPRINT must be the SHA-256 fingerprint of the server's (or its CA's) "
                "certificate: 64 hex digits, colons allowed"
            )
    return ca_certs, fingerprint, verify_certs


def check_ca_file(path: str) -> None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"ES_CA_CERTS: cannot read {path!r}: {exc.strerror or exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"ES_CA_CERTS: {path!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def load_model_config(env: Mapping[str, str]) -> ModelConfig:
    return ModelConfig(
        weights=env_str(env, "VGG16_WEIGHTS", "imagenet"),
        seed=env_int(env, "VGG16_SEED", 1234),
        precision=env_choice(env, "VGG16_PRECISION", "auto", PRECISIONS),
        compile_mode=env_choice(env, "VGG16_COMPILE", "auto", COMPILE_MODES),
    )
