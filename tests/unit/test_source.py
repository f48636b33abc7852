"""Pure parts of the catalog source: SQL building, soft-delete flags, reconnectable errors."""

import datetime

import pytest
from mysql.connector import errors

from imgsearch.retry import is_mysql_reconnectable as is_reconnectable
from indexer.config import MySqlConfig
from indexer.partition import Partition
from indexer.source import SqlBuilder, is_deleted_flag, to_row

CONFIG = MySqlConfig("h", 3306, "u", "p", "db", "images", "id", "relation_id", "photo", "updated_at")


def test_change_query_orders_by_timestamp_then_id_and_filters_the_partition():
    sql = SqlBuilder(CONFIG, Partition(1, 4)).changes_page(first=False)
    assert "(`updated_at` > %s OR (`updated_at` = %s AND `id` > %s)) AND `updated_at` <= %s" in sql
    assert "AND MOD(`id`, 4) = 1" in sql and sql.endswith("ORDER BY `updated_at`, `id` LIMIT %s")


def test_soft_delete_column_is_selected_when_configured():
    config = MySqlConfig(**{**CONFIG.__dict__, "deleted_column": "deleted_at"})
    assert "`deleted_at`" in SqlBuilder(config).page_by_id()
    row = to_row((5, b"p-1", "a.jpg", datetime.datetime(2026, 1, 1), datetime.datetime(2026, 2, 1)))
    assert row.deleted and row.relation_id == "p-1"


@pytest.mark.parametrize(
    ("value", "deleted"),
    [(None, False), (0, False), (1, True), ("0", False), ("", False), ("yes", True), (b"1", True)],
)
def test_deleted_flag_values(value, deleted):
    assert is_deleted_flag(value) is deleted


def test_lost_connections_are_reconnectable_but_sql_errors_are_not():
    assert is_reconnectable(errors.DatabaseError(msg="Can't connect", errno=2003))
    assert is_reconnectable(errors.OperationalError(msg="gone away", errno=2006))
    assert not is_reconnectable(errors.ProgrammingError(msg="no such table", errno=1146))
    assert not is_reconnectable(errors.DatabaseError(msg="access denied", errno=1045))
