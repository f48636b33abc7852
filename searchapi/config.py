"""Search API configuration from environment variables, validated at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from imgsearch.config import ElasticConfig, ModelConfig, load_elastic_config, load_model_config
from imgsearch.settings import ConfigError, env_float, env_int, env_list

MIN_API_KEY_LENGTH = 16
# Keyword fields of mappings/images.json a client may filter on (never the vector or free text).
FILTERABLE_FIELDS = ("relation_id", "status", "photo", "image_url")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?$")


@dataclass(frozen=True)
class SearchConfig:
    """Everything `python -m searchapi` and gunicorn workers need."""

    elastic: ElasticConfig
    model: ModelConfig
    max_upload_bytes: int
    max_pixels: int
    url_fetch_timeout: float
    url_fetch_max_bytes: int
    url_allowed_hosts: tuple[str, ...]
    es_timeout: float
    api_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    filter_fields: tuple[str, ...]

    @property
    def writes_enabled(self) -> bool:
        return bool(self.api_keys)


def load_api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = env_list(env, "SEARCH_API_KEYS")
    short = [key for key in keys if len(key) < MIN_API_KEY_LENGTH]
    if short:
        raise ConfigError(f"SEARCH_API_KEYS: every key must have at least {MIN_API_KEY_LENGTH} characters")
    return keys


def load_cors_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = tuple(origin.rstrip("/") for origin in env_list(env, "SEARCH_CORS_ORIGINS"))
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise ConfigError(
                f"SEARCH_CORS_ORIGINS: {origin!r} is not an origin like https://shop.example.com or *"
            )
    return origins


def load_filter_fields(env: Mapping[str, str]) -> tuple[str, ...]:
    fields = env_list(env, "SEARCH_FILTER_FIELDS") or ("relation_id",)
    unknown = [field for field in fields if field not in FILTERABLE_FIELDS]
    if unknown:
        raise ConfigError(
            f"SEARCH_FILTER_FIELDS: {', '.join(unknown)} cannot be filtered on; "
            f"choose from {', '.join(FILTERABLE_FIELDS)}"
        )
    return fields


def load_allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """SEARCH_URL_ALLOWED_HOSTS in the canonical form urlfetch compares with (lower-case, IDNA);
    an entry may name a port ("host:port", "[IPv6]:port")."""
    from searchapi.urlfetch import allowlist_entry

    hosts = []
    for host in env_list(env, "SEARCH_URL_ALLOWED_HOSTS"):
        try:
            hosts.append(host.lower().encode("idna").decode("ascii"))
        except UnicodeError:
            raise ConfigError(f"SEARCH_URL_ALLOWED_HOSTS: {host!r} is not a valid host name") from None
        try:
            allowlist_entry(hosts[-1])
        except ValueError as exc:
            raise ConfigError(f"SEARCH_URL_ALLOWED_HOSTS: {host!r}: {exc}") from None
    return tuple(hosts)


def load_search_config(env: Mapping[str, str]) -> SearchConfig:
    """Read and validate every API variable; raises ConfigError naming the bad one."""
    return SearchConfig(
        elastic=load_elastic_config(env),
        model=load_model_config(env),
        max_upload_bytes=env_int(env, "SEARCH_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024),
        max_pixels=env_int(env, "IMAGE_MAX_PIXELS", 40_000_000, minimum=10_000),
        url_fetch_timeout=env_float(env, "SEARCH_URL_FETCH_TIMEOUT", 5.0, minimum=0.1),
        url_fetch_max_bytes=env_int(env, "SEARCH_URL_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
        url_allowed_hosts=load_allowed_hosts(env),
        es_timeout=env_float(env, "SEARCH_ES_TIMEOUT", 5.0, minimum=0.1),
        api_keys=load_api_keys(env),
        cors_origins=load_cors_origins(env),
        filter_fields=load_filter_fields(env),
    )
