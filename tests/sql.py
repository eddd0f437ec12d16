"""Direct SQL for tests that look at what a service stored (never a service's own code path)."""

from __future__ import annotations

from typing import Any

import pymysql

from libs.config import MySQLConfig


def query(config: MySQLConfig, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection; the rows it returns."""
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=config.database,
                           charset="utf8mb4", autocommit=True, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        conn.close()
