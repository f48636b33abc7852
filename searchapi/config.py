"""Search API configuration from environment variables, validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from indexer.config import ElasticConfig, ModelConfig, load_elastic_config, load_model_config
from indexer.settings import env_float, env_int, env_list


@dataclass(frozen=True)
class SearchConfig:
    """Everything `python -m searchapi` needs."""

    elastic: ElasticConfig
    model: ModelConfig
    max_upload_bytes: int
    max_pixels: int
    url_fetch_timeout: float
    url_fetch_max_bytes: int
    url_allowed_hosts: tuple[str, ...]
    es_timeout: float


def load_search_config(env: Mapping[str, str]) -> SearchConfig:
    """Read and validate every API variable; raises ConfigError naming the bad one."""
    return SearchConfig(
        elastic=load_elastic_config(env),
        model=load_model_config(env),
        max_upload_bytes=env_int(env, "SEARCH_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024),
        max_pixels=env_int(env, "IMAGE_MAX_PIXELS", 40_000_000, minimum=10_000),
        url_fetch_timeout=env_float(env, "SEARCH_URL_FETCH_TIMEOUT", 5.0, minimum=0.1),
        url_fetch_max_bytes=env_int(env, "SEARCH_URL_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
        url_allowed_hosts=tuple(h.lower() for h in env_list(env, "SEARCH_URL_ALLOWED_HOSTS")),
        es_timeout=env_float(env, "SEARCH_ES_TIMEOUT", 5.0, minimum=0.1),
    )
