"""Schema migrations, owned by each service: ``services/<svc>/migrations/NNN_name.sql``.

Each service records what it applied in a table of its own
(``<service>_schema_migrations``), so services never touch each other's tables.
Statements stay portable between MariaDB >= 10.11 and MySQL >= 8.0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pymysql

from .config import MySQLConfig

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def _connect(config: MySQLConfig, database: str | None) -> Any:
    return pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=database, charset="utf8mb4",
                           autocommit=True, connect_timeout=5)


def ensure_database(config: MySQLConfig) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", config.database):
        raise ValueError(f"bad database name {config.database!r}")
    conn = _connect(config, None)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{config.database}` "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()


def migrate(config: MySQLConfig, service: str, directory: Path) -> list[str]:
    """Apply the service's pending migrations in order; returns the names applied."""
    ensure_database(config)
    table = f"{service.replace('-', '_')}_schema_migrations"
    conn = _connect(config, config.database)
    applied: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{table}` (version INT PRIMARY KEY, "
                        "name VARCHAR(200) NOT NULL, applied_ts BIGINT NOT NULL)")
            cur.execute(f"SELECT version FROM `{table}`")
            done = {row[0] for row in cur.fetchall()}
            for path in sorted(directory.glob("*.sql")):
                match = _NAME.match(path.name)
                if not match or int(match.group(1)) in done:
                    continue
                for statement in _statements(path.read_text()):
                    cur.execute(statement)
                cur.execute(f"INSERT INTO `{table}` VALUES (%s, %s, UNIX_TIMESTAMP() * 1000)",
                            (int(match.group(1)), path.name))
                applied.append(path.name)
    finally:
        conn.close()
    return applied


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
