"""Indexer settings from environment variables (catalog, fetch, runs), validated at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import field_validator

from imgsearch.config import ElasticConfig, ModelConfig
from imgsearch.settings import ConfigError, EnvSettings, env_var, help_text, integer, matches, number, read

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
# A table or column name, restricted so it can be quoted safely in SQL.
Identifier = Annotated[
    str, matches(_IDENTIFIER, "must be a plain SQL identifier (letters, digits, _), got {!r}")
]


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


class MySqlSettings(EnvSettings):
    """The catalog variables (MYSQL_*); `connection()` is the MySqlConfig the source connects with."""

    url: str = env_var(
        "MYSQL_URL",
        description="mysql://user:password@host:port/database (own user, never root)",
        secret=True,
    )
    table: Identifier = env_var("MYSQL_TABLE", "images", "catalog table")
    id_column: Identifier = env_var("MYSQL_ID_COLUMN", "id", "primary key column")
    relation_column: Identifier = env_var(
        "MYSQL_RELATION_COLUMN", "relation_id", "product (results collapse on it)"
    )
    photo_column: Identifier = env_var("MYSQL_PHOTO_COLUMN", "photo", "image URL or path")
    updated_column: Identifier = env_var(
        "MYSQL_UPDATED_COLUMN", "updated_at", "last change (incremental runs)"
    )
    deleted_column: Identifier | None = env_var(
        "MYSQL_DELETED_COLUMN", None, "optional soft-delete column: rows where it is set leave the index"
    )
    reconnect_seconds: Annotated[float, number(0.0)] = env_var(
        "MYSQL_RECONNECT_SECONDS", 120.0, "seconds an unreachable database is waited out before a run fails"
    )

    @field_validator("url")
    @classmethod
    def check_url(cls, url: str) -> str:
        parse_mysql_url(url)
        return url

    def connection(self) -> MySqlConfig:
        return MySqlConfig(
            **parse_mysql_url(self.url),  # type: ignore[arg-type]
            table=self.table,
            id_column=self.id_column,
            relation_column=self.relation_column,
            photo_column=self.photo_column,
            updated_column=self.updated_column,
            deleted_column=self.deleted_column,
            reconnect_seconds=self.reconnect_seconds,
        )


class FetchConfig(EnvSettings):
    """How photos are located and downloaded (IMAGE_*)."""

    base_url: str = env_var(
        "IMAGE_BASE_URL", "", "http(s) URL or folder that relative `photo` values are resolved against"
    )
    timeout: Annotated[float, number(0.1)] = env_var("IMAGE_FETCH_TIMEOUT", 10.0, "seconds per download")
    max_bytes: Annotated[int, integer(1024)] = env_var(
        "IMAGE_MAX_BYTES", 20 * 1024 * 1024, "largest download in bytes"
    )
    retries: Annotated[int, integer(0, 10)] = env_var(
        "IMAGE_FETCH_RETRIES", 2, "retries of a failed download"
    )
    max_pixels: Annotated[int, integer(10_000)] = env_var(
        "IMAGE_MAX_PIXELS", 40_000_000, "pixel cap against decompression bombs (indexer and API)"
    )


class RunConfig(EnvSettings):
    """How scheduled runs coordinate and survive outages (INDEXER_*)."""

    lock_ttl: Annotated[float, number(1.0)] = env_var(
        "INDEXER_LOCK_TTL",
        600.0,
        "seconds a dead run's lock blocks others (a live run renews it every TTL/3)",
    )
    checkpoint_seconds: Annotated[float, number(0.0)] = env_var(
        "INDEXER_CHECKPOINT_SECONDS", 10.0, "how often progress is checkpointed"
    )
    # At least 1 s: updated_at is often a DATETIME truncated to the second, so a row changed later
    # in the current second could otherwise land behind the watermark.
    change_lag_seconds: Annotated[float, number(1.0)] = env_var(
        "INDEXER_CHANGE_LAG_SECONDS",
        60.0,
        "incremental leaves rows changed in the last N seconds to the next run",
    )
    es_retry_seconds: Annotated[float, number(0.0)] = env_var(
        "INDEXER_ES_RETRY_SECONDS",
        300.0,
        "seconds an unreachable Elasticsearch is waited out before a run fails",
    )


class IndexerConfig(EnvSettings):
    """Everything `python -m indexer` needs."""

    elastic: ElasticConfig
    model: ModelConfig
    mysql_settings: MySqlSettings
    fetch: FetchConfig
    run: RunConfig
    keep_versions: Annotated[int, integer(1, 100)] = env_var(
        "INDEXER_KEEP_VERSIONS", 2, "index versions kept (the live one included) so rollback has a target"
    )
    report_dir: str = env_var(
        "INDEXER_REPORT_DIR", "reports", "where run reports are also written as JSON (must be writable)"
    )

    @property
    def mysql(self) -> MySqlConfig:
        return self.mysql_settings.connection()


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


def environment_help() -> str:
    """The indexer's variables for --help, generated from the settings models."""
    return help_text(IndexerConfig, "configuration (environment variables, see env.example):")


def load_mysql_config(env: Mapping[str, str]) -> MySqlConfig:
    return read(MySqlSettings, env).connection()


def load_run_config(env: Mapping[str, str]) -> RunConfig:
    return read(RunConfig, env)


def load_fetch_config(env: Mapping[str, str]) -> FetchConfig:
    return read(FetchConfig, env)


def load_indexer_config(env: Mapping[str, str]) -> IndexerConfig:
    """Read and validate every indexer variable; raises ConfigError naming the bad ones."""
    return read(IndexerConfig, env)
