"""Search API settings from environment variables (SEARCH_*), validated at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import field_validator

from imgsearch.config import ElasticConfig, ModelConfig
from imgsearch.settings import (
    ConfigError,
    EnvSettings,
    Rule,
    choice,
    comma_list,
    env_var,
    flag,
    integer,
    number,
    read,
)

MIN_API_KEY_LENGTH = 16
# Keyword fields of mappings/images.json a client may filter on (never the vector or free text).
FILTERABLE_FIELDS = ("relation_id", "status", "photo", "image_url")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?$")
Names = Annotated[tuple[str, ...], comma_list()]


class SearchConfig(EnvSettings):
    """Everything `python -m searchapi` and gunicorn workers need."""

    elastic: ElasticConfig
    model: ModelConfig
    max_upload_bytes: Annotated[int, integer(1024)] = env_var(
        "SEARCH_MAX_UPLOAD_BYTES",
        10 * 1024 * 1024,
        "largest request body (upload or JSON) in bytes; 413 above",
    )
    max_pixels: Annotated[int, integer(10_000)] = env_var(
        "IMAGE_MAX_PIXELS", 40_000_000, "pixel cap against decompression bombs (indexer and API)"
    )
    url_fetch_timeout: Annotated[float, number(0.1)] = env_var(
        "SEARCH_URL_FETCH_TIMEOUT", 5.0, "seconds per image_url download"
    )
    url_fetch_max_bytes: Annotated[int, integer(1024)] = env_var(
        "SEARCH_URL_MAX_BYTES", 10 * 1024 * 1024, "largest image_url download in bytes"
    )
    url_allowed_hosts: Names = env_var(
        "SEARCH_URL_ALLOWED_HOSTS",
        (),
        "image_url hosts (host or host:port) allowed to resolve to private addresses (own CDN)",
    )
    es_timeout: Annotated[float, number(0.1)] = env_var(
        "SEARCH_ES_TIMEOUT", 5.0, "seconds before a slow or unreachable Elasticsearch becomes a 503"
    )
    api_keys: Names = env_var(
        "SEARCH_API_KEYS",
        (),
        f"keys (each >= {MIN_API_KEY_LENGTH} characters) for POST /images and DELETE /images/<id>, sent as "
        "`Authorization: Bearer <key>` or X-API-Key; none: writes disabled",
        secret=True,
    )
    cors_origins: Names = env_var(
        "SEARCH_CORS_ORIGINS",
        (),
        "browser origins allowed to call the API (https://shop.example.com; * = any)",
    )
    filter_fields: Names = env_var(
        "SEARCH_FILTER_FIELDS",
        ("relation_id",),
        f"fields a search may filter on: {', '.join(FILTERABLE_FIELDS)}",
    )

    @property
    def writes_enabled(self) -> bool:
        return bool(self.api_keys)

    @field_validator("api_keys")
    @classmethod
    def check_api_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < MIN_API_KEY_LENGTH for key in keys):
            raise ConfigError(
                f"SEARCH_API_KEYS: every key must have at least {MIN_API_KEY_LENGTH} characters"
            )
        return keys

    @field_validator("cors_origins")
    @classmethod
    def check_cors_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        origins = tuple(origin.rstrip("/") for origin in origins)
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ConfigError(
                    f"SEARCH_CORS_ORIGINS: {origin!r} is not an origin like https://shop.example.com or *"
                )
        return origins

    @field_validator("filter_fields")
    @classmethod
    def check_filter_fields(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [field for field in fields if field not in FILTERABLE_FIELDS]
        if unknown:
            raise ConfigError(
                f"SEARCH_FILTER_FIELDS: {', '.join(unknown)} cannot be filtered on; "
                f"choose from {', '.join(FILTERABLE_FIELDS)}"
            )
        return fields or ("relation_id",)

    @field_validator("url_allowed_hosts")
    @classmethod
    def canonical_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        """In the form urlcheck compares with (lower-case, IDNA); an entry may name a port
        ("host:port", "[IPv6]:port")."""
        from searchapi.urlcheck import allowlist_entry

        canonical = []
        for host in hosts:
            try:
                canonical.append(host.lower().encode("idna").decode("ascii"))
            except UnicodeError:
                raise ConfigError(f"SEARCH_URL_ALLOWED_HOSTS: {host!r} is not a valid host name") from None
            try:
                allowlist_entry(canonical[-1])
            except ValueError as exc:
                raise ConfigError(f"SEARCH_URL_ALLOWED_HOSTS: {host!r}: {exc}") from None
        return tuple(canonical)


def load_search_config(env: Mapping[str, str]) -> SearchConfig:
    """Read and validate every API variable; raises ConfigError naming the bad ones."""
    return read(SearchConfig, env)


_LOG_LEVELS = choice("debug", "info", "warning", "error", "critical")
LOG_LEVEL = Rule(lambda raw: _LOG_LEVELS.parse(str(raw).lower()), _LOG_LEVELS.text)  # any case, as gunicorn


class ServerSettings(EnvSettings):
    """gunicorn's layout for the API (searchapi/gunicorn.conf.py), read once in the master process."""

    bind: str = env_var("SEARCH_BIND", "127.0.0.1:8000", "address gunicorn listens on (host:port)")
    workers: Annotated[int, integer(1, 64)] = env_var(
        "SEARCH_WORKERS", 1, "worker processes, each with its own model copy (1 on a 2-core box)"
    )
    threads: Annotated[int, integer(1, 256)] = env_var("SEARCH_THREADS", 8, "threads per worker")
    worker_timeout: Annotated[int, integer(1)] = env_var(
        "SEARCH_WORKER_TIMEOUT", 120, "seconds a silent worker lives before gunicorn restarts it"
    )
    access_log: Annotated[bool, flag()] = env_var(
        "SEARCH_ACCESS_LOG", True, "gunicorn's access log on stdout"
    )
    log_level: Annotated[str, LOG_LEVEL] = env_var("SEARCH_LOG_LEVEL", "info", "gunicorn's log level")
    metrics_dir: str | None = env_var(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "with SEARCH_WORKERS > 1: an empty writable folder where the workers share /metrics",
    )


def load_server_settings(env: Mapping[str, str]) -> ServerSettings:
    """gunicorn's variables, and the workers' (SEARCH_*, ES_*, VGG16_*) checked before any worker starts."""
    load_search_config(env)
    return read(ServerSettings, env)
