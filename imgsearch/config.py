"""Elasticsearch and model settings (ES_*, VGG16_*) shared by the indexer and the API."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from imgsearch.backends import DEFAULT_BACKEND, require_backend
from imgsearch.compute import COMPILE_MODES, PRECISIONS
from imgsearch.settings import (
    KEEP_SPACES,
    ConfigError,
    EnvSettings,
    choice,
    env_var,
    flag,
    integer,
    matches,
    number,
    read,
)

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
ALIAS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")
ALIAS_RULE = matches(ALIAS, "must be a lowercase index/alias name, got {!r}")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def check_node_url(url: str) -> str:
    """One node's URL of ES_URL: http(s), with a host, without credentials (ES_URL is logged)."""
    try:
        parts = urlsplit(url)
        has_credentials = parts.username is not None or parts.password is not None
    except ValueError:
        parts, has_credentials = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"ES_URL must be an http(s) URL, got {url!r}")
    if has_credentials:
        raise ConfigError(
            "ES_URL must not contain credentials (it is logged); use ES_API_KEY or ES_USERNAME/ES_PASSWORD"
        )
    return url


class ElasticConfig(EnvSettings):
    """Where the index lives and how it is built; credentials and TLS (ES_*)."""

    url: str = env_var(
        "ES_URL",
        "http://127.0.0.1:9200",
        "Elasticsearch URL, http:// or https:// (no credentials: it is logged); a cluster's nodes "
        "comma separated, so the client fails over when one dies",
    )
    alias: Annotated[str, ALIAS_RULE] = env_var(
        "ES_INDEX", "images", "alias the shop searches; versions are named <ES_INDEX>-<UTC timestamp>"
    )
    request_timeout: Annotated[float, number(0.1)] = env_var(
        "ES_REQUEST_TIMEOUT", 30.0, "seconds per Elasticsearch request (indexer)"
    )
    vector_index_type: Annotated[str, choice(*VECTOR_INDEX_TYPES)] = env_var(
        "ES_VECTOR_INDEX_TYPE", "int8_hnsw", "dense_vector index_options.type"
    )
    replicas: Annotated[int, integer(0, 10)] = env_var(
        "ES_NUMBER_OF_REPLICAS", 1, "replicas of the serving index (0 on a single node)"
    )
    shards: Annotated[int, integer(1, 64)] = env_var(
        "ES_NUMBER_OF_SHARDS", 1, "shards of a new index version"
    )
    # Authentication: an API key (the base64 `encoded` form) or a username and password, never both.
    api_key: str | None = env_var(
        "ES_API_KEY",
        None,
        "API key (the `encoded` value, or id:api_key) with the component's role",
        secret=True,
    )
    username: str | None = env_var("ES_USERNAME", None, "instead of an API key: a user, with ES_PASSWORD")
    password: Annotated[str | None, KEEP_SPACES] = env_var(
        "ES_PASSWORD", None, "password of ES_USERNAME", secret=True
    )
    # TLS for https URLs: a CA file, or a pinned certificate fingerprint, else the system trust store.
    ca_certs: str | None = env_var(
        "ES_CA_CERTS",
        None,
        "PEM file of the CA of the cluster's HTTP certificate (neither it nor ES_SSL_FINGERPRINT: the "
        "system trust store)",
    )
    ssl_fingerprint: str | None = env_var(
        "ES_SSL_FINGERPRINT",
        None,
        "instead of ES_CA_CERTS: SHA-256 of the server's (or its CA's) certificate",
    )
    verify_certs: Annotated[bool, flag()] = env_var(
        "ES_VERIFY_CERTS", True, "false: certificates are not verified (never in production); needs https"
    )

    @property
    def urls(self) -> list[str]:
        """Every node of ES_URL, in order (the validator has stripped each of them)."""
        return self.url.split(",")

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.urls[0]).scheme == "https"

    @property
    def credentials_from(self) -> str:
        """The variables the credentials came from, for error messages ("ES_API_KEY"); empty when none."""
        if self.api_key:
            return self.variable("api_key")
        if self.username:
            return f"{self.variable('username')}/{self.variable('password')}"
        return ""

    @field_validator("url")
    @classmethod
    def check_url(cls, url: str) -> str:
        nodes = [check_node_url(node.strip()) for node in url.split(",")]
        if len({urlsplit(node).scheme for node in nodes}) > 1:
            raise ConfigError(f"ES_URL mixes http and https nodes: {url!r}")
        return ",".join(nodes)

    @field_validator("api_key")
    @classmethod
    def check_api_key(cls, api_key: str) -> str:
        return normalise_api_key(api_key, cls.variable("api_key"))

    @field_validator("ssl_fingerprint")
    @classmethod
    def check_fingerprint(cls, raw: str) -> str:
        fingerprint = raw.replace(":", "").lower()
        if not _SHA256_HEX.match(fingerprint):
            raise ConfigError(
                "ES_SSL_FINGERPRINT must be the SHA-256 fingerprint of the server's (or its CA's) "
                "certificate: 64 hex digits, colons allowed"
            )
        return fingerprint

    @model_validator(mode="after")
    def check_combinations(self) -> ElasticConfig:
        check_credentials(self)
        check_tls(self)
        return self


class AdminElasticConfig(ElasticConfig):
    """The admin login of `python -m deploy.elasticsearch.security` (ES_ADMIN_*), with the ES_* connection."""

    api_key: str | None = env_var(
        "ES_ADMIN_API_KEY", None, "security script only: an admin API key (manage_security)", secret=True
    )
    username: str | None = env_var(
        "ES_ADMIN_USERNAME", None, "security script only: an admin user (manage_security), e.g. elastic"
    )
    password: Annotated[str | None, KEEP_SPACES] = env_var(
        "ES_ADMIN_PASSWORD", None, "password of ES_ADMIN_USERNAME", secret=True
    )


class ModelConfig(EnvSettings):
    """Which VGG16 weights to load, and how to compute (auto: chosen from the hardware)."""

    weights: str = env_var(
        "VGG16_WEIGHTS",
        "imagenet",
        "imagenet | random (seeded; tests, offline) | path to an .h5 file (the indexer's and the API's "
        "must match)",
    )
    seed: Annotated[int, integer(0)] = env_var("VGG16_SEED", 1234, "seed for VGG16_WEIGHTS=random")
    precision: Annotated[str, choice(*PRECISIONS)] = env_var(
        "VGG16_PRECISION",
        "auto",
        "auto: bfloat16 where the CPU (AMX; AVX512_BF16 on AMD) or GPU computes it faster, else float32; "
        "vectors stay float32 unit vectors either way",
    )
    compile_mode: Annotated[str, choice(*COMPILE_MODES)] = env_var(
        "VGG16_COMPILE",
        "auto",
        "auto: TensorFlow's graph, XLA for float32 on a CPU without AVX-512; KERAS_BACKEND=jax: xla; "
        "KERAS_BACKEND=torch: eager or inductor (torch.compile)",
    )

    backend: str = env_var(
        "KERAS_BACKEND",
        DEFAULT_BACKEND,
        "Keras's own variable, read when Keras is imported: tensorflow (fastest measured on CPUs) | jax | "
        "torch; jax and torch are extras (requirements-backends.txt)",
    )

    @model_validator(mode="after")
    def check_backend(self) -> ModelConfig:
        """KERAS_BACKEND names an installed backend: checked with the other variables, before any
        connection is made."""
        require_backend({"KERAS_BACKEND": self.backend})
        return self


def check_credentials(config: ElasticConfig) -> None:
    """One method or none: an API key, or a username with a password."""
    key_var, user_var, password_var = (config.variable(f) for f in ("api_key", "username", "password"))
    if config.api_key and (config.username or config.password):
        raise ConfigError(f"set either {key_var} or {user_var}/{password_var}, not both")
    if config.username and not config.password:
        raise ConfigError(f"{user_var} is set but {password_var} is empty")
    if config.password and not config.username:
        raise ConfigError(f"{password_var} is set but {user_var} is empty")


def check_tls(config: ElasticConfig) -> None:
    """TLS settings need an https ES_URL; a CA file or a fingerprint, not both; neither with verify off."""
    given = [
        name
        for name, present in (
            ("ES_CA_CERTS", config.ca_certs),
            ("ES_SSL_FINGERPRINT", config.ssl_fingerprint),
            ("ES_VERIFY_CERTS", not config.verify_certs),
        )
        if present
    ]
    if given and not config.uses_tls:
        raise ConfigError(f"{given[0]} is set but ES_URL is not https://; TLS settings need an https URL")
    if config.ca_certs and config.ssl_fingerprint:
        raise ConfigError("set either ES_CA_CERTS or ES_SSL_FINGERPRINT, not both")
    if not config.verify_certs and (config.ca_certs or config.ssl_fingerprint):
        raise ConfigError(
            f"ES_VERIFY_CERTS=false contradicts {given[0]}: a CA or fingerprint is for verifying"
        )
    if config.ca_certs:
        check_ca_file(config.ca_certs)


def normalise_api_key(value: str, name: str) -> str:
    """The base64 `encoded` form of an API key, given that form or `id:api_key`."""
    if ":" not in value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        value = decoded
    key_id, _, secret = value.partition(":")
    if not key_id or not secret or any(c.isspace() for c in value) or not value.isascii():
        raise ConfigError(
            f"{name} must be the `encoded` value returned when the key was created "
            "(base64 of id:api_key), or id:api_key"
        )
    return base64.b64encode(value.encode("ascii")).decode("ascii")


def check_ca_file(path: str) -> None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"ES_CA_CERTS: cannot read {path!r}: {exc.strerror or exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"ES_CA_CERTS: {path!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")


CREDENTIAL_PREFIXES: dict[str, type[ElasticConfig]] = {"ES_": ElasticConfig, "ES_ADMIN_": AdminElasticConfig}


def load_elastic_config(env: Mapping[str, str], prefix: str = "ES_") -> ElasticConfig:
    """The Elasticsearch variables; `prefix` names the credential variables (ES_ADMIN_ for the
    security script), so errors always name the variable that was actually read."""
    if prefix not in CREDENTIAL_PREFIXES:
        raise ValueError(f"credential prefix must be one of {sorted(CREDENTIAL_PREFIXES)}, got {prefix!r}")
    return read(CREDENTIAL_PREFIXES[prefix], env)


def load_model_config(env: Mapping[str, str]) -> ModelConfig:
    return read(ModelConfig, env)
