"""One SQLite connection served by one worker thread.

SQLite wants one writer at a time and the event loop must never block, so a
file's writes run in order on one thread (storage.database.SQLiteDatabase.writer,
shared by every table owner in the file); the history and subscription storage
also read on a thread of their own (SQLiteDatabase.open_reader).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SQLiteThread:
    """A connection to `path` used only from one thread; `run` and `tx` hop onto it."""

    def __init__(self, path: str | Path, *, name: str, pragmas: Sequence[str] = ()) -> None:
        self.path = str(path)
        self.name = name
        self.pragmas = tuple(pragmas)
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, setup: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Connect (WAL for files, the given pragmas), then run `setup` (if any) in one write transaction."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)

        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            for pragma in self.pragmas:
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn

        await self._hop(connect)
        if setup is not None:
            await self.tx(setup, write=True)

    async def close(self) -> None:
        """Close the connection and stop the thread (idempotent)."""
        if self._pool is not None:
            conn = self._conn
            if conn is not None:
                await self._hop(conn.close)
            self._pool.shutdown(wait=True)
        self._pool = None
        self._conn = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The thread (an executor of one) the connection is used on."""
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return self._pool

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection: use it only on `executor`."""
        return self._connection()

    async def _hop(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the thread, outside any explicit transaction."""
        return await self._hop(lambda: fn(self._connection()))

    async def tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool,
                 lock: AbstractContextManager[Any] | None = None) -> T:
        """`fn(connection)` in a transaction (BEGIN IMMEDIATE when it writes), rolled back if it raises.

        `lock` is held around the whole transaction: the in-process write lock of the file
        (storage.database.write_lock) that the file's other writers take too.
        """

        def run() -> T:
            conn = self._connection()
            with lock or nullcontext():
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await self._hop(run)

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return conn
