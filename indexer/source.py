"""Catalog rows from MySQL/MariaDB: keyset pages by id (full) or by (updated_at, id) (incremental)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from imgsearch.documents import CatalogRow
from imgsearch.retry import mysql_retrying
from indexer.config import MySqlConfig
from indexer.partition import WHOLE, Partition

log = logging.getLogger(__name__)

ID_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class ChangePosition:
    """Where an incremental run stands: the last row accounted, ordered by (updated_at, id)."""

    updated_at: datetime
    id: int


def connect(config: MySqlConfig, timeout: float = 10.0):
    """Open a connection as the project's own user (never root). mysql.connector is imported here, not at
    the top: `import indexer` then needs no MySQL driver (bench.offline on a GPU machine carries none)."""
    import mysql.connector

    return mysql.connector.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password,
        database=config.database,
        connection_timeout=int(max(1, timeout)),
        autocommit=True,
    )


class SqlBuilder:
    """The catalog queries; identifiers were validated in config, so quoting them is safe."""

    def __init__(self, config: MySqlConfig, partition: Partition = WHOLE) -> None:
        self.config = config
        self.partition = partition

    def columns(self) -> str:
        c = self.config
        names = [c.id_column, c.relation_column, c.photo_column, c.updated_column]
        if c.deleted_column:
            names.append(c.deleted_column)
        return ", ".join(f"`{name}`" for name in names)

    def partition_filter(self) -> str:
        if self.partition.whole:
            return ""
        return f" AND MOD(`{self.config.id_column}`, {self.partition.count}) = {self.partition.index}"

    def page_by_id(self) -> str:
        c = self.config
        return (
            f"SELECT {self.columns()} FROM `{c.table}` WHERE `{c.id_column}` > %s{self.partition_filter()} "
            f"ORDER BY `{c.id_column}` LIMIT %s"
        )

    def changes_page(self, first: bool) -> str:
        """Rows changed after a position (or from the start) and at or before an upper bound."""
        c, u, i = self.config, f"`{self.config.updated_column}`", f"`{self.config.id_column}`"
        after = "" if first else f"({u} > %s OR ({u} = %s AND {i} > %s)) AND "
        return (
            f"SELECT {self.columns()} FROM `{c.table}` WHERE {after}{u} <= %s{self.partition_filter()} "
            f"ORDER BY {u}, {i} LIMIT %s"
        )

    def rows_by_ids(self, count: int) -> str:
        c = self.config
        marks = ", ".join(["%s"] * count)
        return f"SELECT {self.columns()} FROM `{c.table}` WHERE `{c.id_column}` IN ({marks})"

    def id_page(self) -> str:
        c = self.config
        deleted = f", `{c.deleted_column}`" if c.deleted_column else ""
        return (
            f"SELECT `{c.id_column}`{deleted} FROM `{c.table}` WHERE `{c.id_column}` > %s"
            f"{self.partition_filter()} ORDER BY `{c.id_column}` LIMIT %s"
        )

    def count(self) -> str:
        where = f" WHERE 1=1{self.partition_filter()}" if not self.partition.whole else ""
        return f"SELECT COUNT(*) FROM `{self.config.table}`{where}"


def is_deleted_flag(value: object) -> bool:
    """A soft-delete column marks a row deleted when it is set: non-NULL and not 0/false/''."""
    if value is None:
        return False
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "n", "no")
    return bool(value) if isinstance(value, (int, float)) else True


def to_row(record: tuple) -> CatalogRow:
    """Convert a DB tuple to a CatalogRow, decoding bytes columns."""
    row_id, relation_id, photo, updated_at, *rest = record
    return CatalogRow(
        id=int(row_id),
        relation_id=_text(relation_id),
        photo=_text(photo),
        updated_at=updated_at if isinstance(updated_at, datetime) else None,
        deleted=is_deleted_flag(rest[0]) if rest else False,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


class CatalogSource:
    """Reads the images table page by page without OFFSET; reconnects and retries a page after an outage."""

    def __init__(self, config: MySqlConfig, page_size: int = 500, partition: Partition = WHOLE) -> None:
        self.config = config
        self.page_size = page_size
        self.partition = partition
        self.sql = SqlBuilder(config, partition)
        self._connection = None

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one read query; wait out a lost connection (restart, network) up to reconnect_seconds."""
        return mysql_retrying(self.config.reconnect_seconds)(self._execute, sql, params)

    def _execute(self, sql: str, params: Sequence[object]) -> list[tuple]:
        """One attempt on the current connection (opened when needed); any database error drops it."""
        from mysql.connector import errors as mysql_errors

        if self._connection is not None and not self._connection.is_connected():
            log.warning("catalog database connection lost; reconnecting at the same keyset position")
            self._drop_connection()
        try:
            if self._connection is None:
                self._connection = connect(self.config)
            cursor = self._connection.cursor()
            try:
                cursor.execute(sql, tuple(params))
                return cursor.fetchall()
            finally:
                cursor.close()
        except mysql_errors.Error:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                self._connection.close()
            self._connection = None

    def count(self) -> int:
        return int(self._query(self.sql.count())[0][0])

    def now(self) -> datetime:
        """The database's clock (updated_at values come from it, not from ours)."""
        return self._query("SELECT NOW(6)")[0][0]

    def fetch_page(self, after_id: int) -> list[CatalogRow]:
        return [to_row(record) for record in self._query(self.sql.page_by_id(), (after_id, self.page_size))]

    def iter_rows(self, after_id: int = 0, limit: int | None = None) -> Iterator[CatalogRow]:
        """Yield rows in id order, one keyset page at a time, at most `limit` rows."""
        return _limited(self._pages_by_id(after_id), limit)

    def _pages_by_id(self, after_id: int) -> Iterator[list[CatalogRow]]:
        while page := self.fetch_page(after_id):
            yield page
            after_id = page[-1].id

    def iter_changes(
        self, after: ChangePosition | None, until: datetime, limit: int | None = None
    ) -> Iterator[CatalogRow]:
        """Rows with (updated_at, id) after `after` and updated_at <= until, in that order."""
        return _limited(self._pages_by_change(after, until), limit)

    def _pages_by_change(self, after: ChangePosition | None, until: datetime) -> Iterator[list[CatalogRow]]:
        while True:
            if after is None:
                params: tuple = (until, self.page_size)
            else:
                params = (after.updated_at, after.updated_at, after.id, until, self.page_size)
            page = [to_row(record) for record in self._query(self.sql.changes_page(after is None), params)]
            if not page:
                return
            yield page
            last = page[-1]
            after = ChangePosition(last.updated_at, last.id)  # type: ignore[arg-type]

    def rows_by_ids(self, ids: Sequence[int]) -> list[CatalogRow]:
        """The rows among `ids` that still exist (any order)."""
        rows: list[CatalogRow] = []
        for start in range(0, len(ids), self.page_size):
            chunk = list(ids[start : start + self.page_size])
            rows.extend(to_row(record) for record in self._query(self.sql.rows_by_ids(len(chunk)), chunk))
        return rows

    def iter_live_ids(self) -> Iterator[int]:
        """Every id of this partition that is not soft-deleted, ascending (for the deletion sweep)."""
        after_id = 0
        while records := self._query(self.sql.id_page(), (after_id, ID_PAGE_SIZE)):
            for record in records:
                if len(record) == 1 or not is_deleted_flag(record[1]):
                    yield int(record[0])
            after_id = int(records[-1][0])

    def close(self) -> None:
        self._drop_connection()


def _limited(pages: Iterator[list[CatalogRow]], limit: int | None) -> Iterator[CatalogRow]:
    produced = 0
    for page in pages:
        for row in page:
            if limit is not None and produced >= limit:
                return
            produced += 1
            yield row
