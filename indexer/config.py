"""Indexer configuration from environment variables (catalog, fetch, runs), validated at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from imgsearch.config import ElasticConfig, ModelConfig, load_elastic_config, load_model_config
from imgsearch.settings import ConfigError, env_float, env_int, env_str

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


@dataclass(frozen=True)
class MySqlConfig:
    """Connection to the catalog database and the names of its table and columns."""

    host: str
    port: int
    user: str
    password: str
    database: str
    table: str
    id_column: str
    relation_column: str
    photo_column: str
    updated_column: str
    deleted_column: str | None = None
    reconnect_seconds: float = 120.0


@dataclass(frozen=True)
class FetchConfig:
    """How photos are located and downloaded."""

    base_url: str
    timeout: float
    max_bytes: int
    retries: int
    max_pixels: int


@dataclass(frozen=True)
class RunConfig:
    """How scheduled runs coordinate and survive outages."""

    lock_ttl: float = 600.0
    checkpoint_seconds: float = 10.0
    change_lag_seconds: float = 60.0
    es_retry_seconds: float = 300.0


@dataclass(frozen=True)
class IndexerConfig:
    """Everything `python -m indexer` needs."""

    elastic: ElasticConfig
    model: ModelConfig
    mysql: MySqlConfig
    fetch: FetchConfig
    keep_versions: int
    report_dir: str
    run: RunConfig = RunConfig()


def parse_mysql_url(url: str) -> dict[str, object]:
    """Split mysql://user:password@host:port/database into connection arguments."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
        raise ConfigError("MYSQL_URL must look like mysql://user:password@host:port/database")
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigError("MYSQL_URL must name a database: mysql://user:password@host:port/database")
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError("MYSQL_URL has an invalid port") from None
    return {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(database),
    }


def identifier(env: Mapping[str, str], name: str, default: str) -> str:
    """A table or column name, restricted so it can be quoted safely in SQL."""
    value = env_str(env, name, default)
    if not _IDENTIFIER.match(value):
        raise ConfigError(f"{name} must be a plain SQL identifier (letters, digits, _), got {value!r}")
    return value


def optional_identifier(env: Mapping[str, str], name: str) -> str | None:
    """An identifier that may be left unset (None)."""
    return identifier(env, name, "") if env.get(name, "").strip() else None


def load_mysql_config(env: Mapping[str, str]) -> MySqlConfig:
    connection = parse_mysql_url(env_str(env, "MYSQL_URL"))
    return MySqlConfig(
        **connection,  # type: ignore[arg-type]
        table=identifier(env, "MYSQL_TABLE", "images"),
        id_column=identifier(env, "MYSQL_ID_COLUMN", "id"),
        relation_column=identifier(env, "MYSQL_RELATION_COLUMN", "relation_id"),
        photo_column=identifier(env, "MYSQL_PHOTO_COLUMN", "photo"),
        updated_column=identifier(env, "MYSQL_UPDATED_COLUMN", "updated_at"),
        deleted_column=optional_identifier(env, "MYSQL_DELETED_COLUMN"),
        reconnect_seconds=env_float(env, "MYSQL_RECONNECT_SECONDS", 120.0, minimum=0.0),
    )


def load_run_config(env: Mapping[str, str]) -> RunConfig:
    return RunConfig(
        lock_ttl=env_float(env, "INDEXER_LOCK_TTL", 600.0, minimum=1.0),
        checkpoint_seconds=env_float(env, "INDEXER_CHECKPOINT_SECONDS", 10.0, minimum=0.0),
        # At least 1 s: updated_at is often a DATETIME truncated to the second, so a row changed later
        # in the current second could otherwise land behind the watermark.
        change_lag_seconds=env_float(env, "INDEXER_CHANGE_LAG_SECONDS", 60.0, minimum=1.0),
        es_retry_seconds=env_float(env, "INDEXER_ES_RETRY_SECONDS", 300.0, minimum=0.0),
    )


def load_fetch_config(env: Mapping[str, str]) -> FetchConfig:
    return FetchConfig(
        base_url=env.get("IMAGE_BASE_URL", "").strip(),
        timeout=env_float(env, "IMAGE_FETCH_TIMEOUT", 10.0, minimum=0.1),
        max_bytes=env_int(env, "IMAGE_MAX_BYTES", 20 * 1024 * 1024, minimum=1024),
        retries=env_int(env, "IMAGE_FETCH_RETRIES", 2, minimum=0, maximum=10),
        max_pixels=env_int(env, "IMAGE_MAX_PIXELS", 40_000_000, minimum=10_000),
    )


def load_indexer_config(env: Mapping[str, str]) -> IndexerConfig:
    """Read and validate every indexer variable; raises ConfigError naming the bad one."""
    return IndexerConfig(
        elastic=load_elastic_config(env),
        model=load_model_config(env),
        mysql=load_mysql_config(env),
        fetch=load_fetch_config(env),
        keep_versions=env_int(env, "INDEXER_KEEP_VERSIONS", 2, minimum=1, maximum=100),
        report_dir=env_str(env, "INDEXER_REPORT_DIR", "reports"),
        run=load_run_config(env),
    )
