"""Catalog rows from MySQL/MariaDB, paged by keyset (`WHERE id > ? ORDER BY id LIMIT ?`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import mysql.connector

from indexer.config import MySqlConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogRow:
    """One image row of the shop catalog."""

    id: int
    relation_id: str | None
    photo: str | None
    updated_at: datetime | None


def connect(config: MySqlConfig, timeout: float = 10.0):
    """Open a connection as the project's own user (never root)."""
    return mysql.connector.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password,
        database=config.database,
        connection_timeout=int(max(1, timeout)),
        autocommit=True,
    )


def select_page_sql(config: MySqlConfig) -> str:
    """The keyset page query; identifiers were validated in config, so quoting is safe."""
    return (
        f"SELECT `{config.id_column}`, `{config.relation_column}`, `{config.photo_column}`, "
        f"`{config.updated_column}` FROM `{config.table}` "
        f"WHERE `{config.id_column}` > %s ORDER BY `{config.id_column}` LIMIT %s"
    )


def count_rows_sql(config: MySqlConfig) -> str:
    return f"SELECT COUNT(*) FROM `{config.table}`"


def to_row(record: tuple) -> CatalogRow:
    """Convert a DB tuple to a CatalogRow, decoding bytes columns."""
    row_id, relation_id, photo, updated_at = record
    return CatalogRow(
        id=int(row_id),
        relation_id=_text(relation_id),
        photo=_text(photo),
        updated_at=updated_at if isinstance(updated_at, datetime) else None,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


class CatalogSource:
    """Reads the images table page by page without OFFSET, so paging cost stays flat."""

    def __init__(self, config: MySqlConfig, page_size: int = 500) -> None:
        self.config = config
        self.page_size = page_size
        self._connection = None

    def _cursor(self):
        if self._connection is None or not self._connection.is_connected():
            self._connection = connect(self.config)
        return self._connection.cursor()

    def count(self) -> int:
        cursor = self._cursor()
        try:
            cursor.execute(count_rows_sql(self.config))
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def fetch_page(self, after_id: int) -> list[CatalogRow]:
        cursor = self._cursor()
        try:
            cursor.execute(select_page_sql(self.config), (after_id, self.page_size))
            return [to_row(record) for record in cursor.fetchall()]
        finally:
            cursor.close()

    def iter_rows(self, after_id: int = 0, limit: int | None = None) -> Iterator[CatalogRow]:
        """Yield rows in id order, one keyset page at a time, at most `limit` rows."""
        produced = 0
        while limit is None or produced < limit:
            page = self.fetch_page(after_id)
            if not page:
                return
            for row in page:
                if limit is not None and produced >= limit:
                    return
                produced += 1
                yield row
            after_id = page[-1].id

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
