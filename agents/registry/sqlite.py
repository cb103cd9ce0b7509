"""The registry on SQLite (the default): one connection on one thread (storage.database), WAL."""

from __future__ import annotations

import sqlite3
from typing import Any

from agents.registry.base import INDEXES, MIGRATIONS, SCHEMA, Duplicate, Registry
from storage.database import SQLiteDatabase
from storage.migrate import Schema
from storage.urls import DatabaseUrl

__all__ = ["SQLiteRegistry"]


def _migrate(conn: sqlite3.Connection) -> None:
    """The registry's tables, in one transaction of the migration runner (storage.migrate)."""
    for statement in SCHEMA:
        conn.execute(statement.format(serial="INTEGER"))
    for table, column, kind in MIGRATIONS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in INDEXES:
        conn.execute(statement)
    conn.execute(
        "CREATE TRIGGER IF NOT EXISTS agent_devices_seq AFTER INSERT ON agent_devices BEGIN "
        "UPDATE agent_devices SET created_seq = NEW.rowid WHERE rowid = NEW.rowid; END"
    )


class SQLiteRegistry(Registry):
    """Statements run one at a time, in order, on the database's one thread (autocommit, as before)."""

    tables = Schema("registry", sqlite=_migrate)

    def __init__(self, path: str, *, db: SQLiteDatabase | None = None) -> None:
        self.path = path
        # the registry's own settings: a short busy wait and SQLite's default (FULL) synchronous
        self._db = db if db is not None else SQLiteDatabase(DatabaseUrl.sqlite(path), pragmas=("busy_timeout=5000",))
        self._open = False

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._db.close()

    async def _run(self, sql: str, args: tuple[Any, ...], fetch: bool) -> Any:
        if not self._open:
            raise RuntimeError("registry is not open")

        def run(conn: sqlite3.Connection) -> Any:
            try:
                cur = conn.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise Duplicate(str(exc)) from None
            return cur.fetchall() if fetch else cur.rowcount

        return await self._db.writer.run(run)

    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._run(sql, args, True)
        return rows

    async def _execute(self, sql: str, *args: Any) -> int:
        count: int = await self._run(sql, args, False)
        return count
