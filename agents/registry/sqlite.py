"""The registry on SQLite (the default): stdlib sqlite3 run in a worker thread, one connection, WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from agents.registry.base import INDEXES, MIGRATIONS, SCHEMA, Duplicate, Registry

__all__ = ["SQLiteRegistry"]


class SQLiteRegistry(Registry):
    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
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
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, sql: str, args: tuple[Any, ...], fetch: bool) -> Any:
        if self._conn is None:
            raise RuntimeError("registry is not open")
        with self._lock:
            try:
                cur = self._conn.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise Duplicate(str(exc)) from None
            return cur.fetchall() if fetch else cur.rowcount

    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await asyncio.to_thread(self._run, sql, args, True)
        return rows

    async def _execute(self, sql: str, *args: Any) -> int:
        count: int = await asyncio.to_thread(self._run, sql, args, False)
        return count
