"""One backend object per database URL: the connections its table owners share, and their migrations.

    db = open_database(parse_database_url(url, "store"))     # not yet connected
    store, history, subs = STORES.open(db), HISTORIES.open(db), STORAGES.open(db)
    await db.open([store.schema, history.schema, subs.schema])   # connect once, migrate all, in one place
    await store.open(); ...                                        # each owner takes the shared connections
    ...; await store.close(); await db.close()                     # the last close disconnects

A `SQLiteDatabase` is one file: one writer thread and connection (`writer`) that every owner's writes go
through, under the file's in-process write lock. A `PostgresDatabase` is one schema: one asyncpg pool.
Opening is counted: every `open` is matched by a `close`, and the connections go with the last close, so an
owner built on its own (tests, benches: `SQLiteStore(path)`) opens a database of its own the same way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson

from storage.migrate import Schema, migrate_postgres, migrate_sqlite
from storage.sqlite_thread import SQLiteThread
from storage.urls import DatabaseUrl, Kind

__all__ = ["Database", "PostgresDatabase", "SQLiteDatabase", "open_database", "write_lock"]

T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class Database(ABC):
    """The connections of one database URL, opened once for all its table owners."""

    def __init__(self, url: DatabaseUrl) -> None:
        self.url = url
        self._users = 0
        self._applied: set[str] = set()
        self._opening = asyncio.Lock()

    @property
    def kind(self) -> Kind:
        return self.url.kind

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def dsn(self) -> str:
        return self.url.dsn

    @property
    def schema(self) -> str:
        return self.url.schema

    @property
    def is_open(self) -> bool:
        return self._users > 0

    async def open(self, schemas: Sequence[Schema] = ()) -> None:
        """Connect on the first open; then apply those of `schemas` not applied yet. Match with `close`."""
        async with self._opening:
            pending = [s for s in schemas if s.name not in self._applied]
            if self._users == 0:
                await self._connect(pending)
            elif pending:
                await self._migrate(pending)
            self._applied.update(s.name for s in pending)
            self._users += 1

    async def close(self) -> None:
        """Undo one `open`; the last one closes the connections."""
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                self._applied.clear()
                await self._disconnect()

    @abstractmethod
    async def _connect(self, schemas: Sequence[Schema]) -> None: ...

    @abstractmethod
    async def _migrate(self, schemas: Sequence[Schema]) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...


# ---------------------------------------------------------------- SQLite

_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(path: str | Path) -> threading.Lock:
    """The in-process lock this process's writers of one SQLite file take around each write transaction.

    Within one SQLiteDatabase all writes run on its one writer thread; the lock still orders them with
    the writes of any other SQLiteDatabase on the same file in this process (waiting in SQLite's busy
    handler polls with sleeps of up to 100 ms; queueing here hands the file over at once). Other
    processes still meet the busy handler.
    """
    key = str(path) if str(path) == ":memory:" else str(Path(path).resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


class SQLiteDatabase(Database):
    """A SQLite file (or ':memory:', then one database that all owners share through the writer)."""

    WRITER_PRAGMAS = ("synchronous=NORMAL", "busy_timeout=30000", "cache_size=-64000")
    """The writer's pragmas: the longest busy wait and the largest cache any owner's writer had before they
    shared one (history's), so that no write gives up on another process sooner than it did."""

    def __init__(self, url: DatabaseUrl, *, pragmas: Sequence[str] = WRITER_PRAGMAS) -> None:
        super().__init__(url)
        self.memory = url.path == ":memory:"
        self.writer = SQLiteThread(url.path, name="sqlite-writer", pragmas=pragmas)
        """The one thread and connection every write to the file runs on (use `write` or its executor)."""
        # ':memory:' is a database per connection: nothing to share a lock with
        self.write_lock = threading.Lock() if self.memory else write_lock(url.path)

    async def _connect(self, schemas: Sequence[Schema]) -> None:
        await self.writer.open()
        try:
            await self._migrate(schemas)
        except BaseException:
            await self.writer.close()
            raise

    async def _migrate(self, schemas: Sequence[Schema]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with self.write_lock:
                migrate_sqlite(conn, schemas)

        await self.writer.run(run)

    async def _disconnect(self) -> None:
        await self.writer.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, group: bool = True,
                    after: Callable[[T], None] | None = None, inline: bool = False) -> T:
        """`fn(connection)` in a BEGIN IMMEDIATE transaction on the writer, under the file's write lock.

        By default the write is group-committed with the writes queued with it (SQLiteThread.tx:
        a SAVEPOINT each, one COMMIT, answers after it). A write that ends or inspects the
        transaction itself passes `group=False` and runs alone. `after(result)` runs on the writer
        once the write is committed (for in-memory state that must follow only committed data).
        `inline=True`: run at once on the caller's thread when the writer is free (SQLiteThread.tx).
        """
        return await self.writer.tx(fn, write=True, lock=self.write_lock, group=group, after=after, inline=inline)

    async def open_reader(self, name: str, pragmas: Sequence[str] = ()) -> SQLiteThread:
        """A read connection on a thread of its own (':memory:': the writer, which is the only view of it).

        Give it back with `close_reader`.
        """
        if self.memory:
            return self.writer
        reader = SQLiteThread(self.path, name=name, pragmas=pragmas)
        await reader.open()
        return reader

    async def close_reader(self, reader: SQLiteThread) -> None:
        """Close a connection `open_reader` gave (the writer stays)."""
        if reader is not self.writer:
            await reader.close()


# ---------------------------------------------------------------- PostgreSQL


async def _setup_connection(conn: asyncpg.Connection) -> None:
    # jsonb as orjson, binary: the entity store's and the subscription storage's documents (history has none)
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=lambda v: b"\x01" + orjson.dumps(v),
                              decoder=lambda b: orjson.loads(b[1:]), format="binary")


_RESET = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;"
"""asyncpg's default reset query (its Connection.get_reset_query on PostgreSQL), for a connection whose
session state was changed (`PostgresDatabase._migrate`)."""


class _PoolConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection given back without asyncpg's reset query, a round trip on every release.

    asyncpg sends `_RESET` each time a pooled connection is released (session advisory locks, open
    cursors, LISTEN, SET): under single-attribute PATCH on PostgreSQL it was one statement in five
    (issue 16, pgpatch19). Nothing the broker does through its pools leaves such state: advisory locks are
    transaction locks, cursors live in transactions, nothing LISTENs, settings are `SET LOCAL` or
    `set_config(..., true)`; the one session setting (the migrations' search_path) is reset where it is
    made. asyncpg still rolls back a transaction left open and drops the connection's listeners.
    """

    def get_reset_query(self) -> str:
        return ""


class PostgresDatabase(Database):
    """A PostgreSQL schema (created if absent) and one connection pool that all its owners share.

    Pool size: the broker's store, history and subscription storage had pools of 8, 4 and 4; the shared
    pool keeps their sum as its ceiling (16), so no owner has less room at its peak than it had, and the
    connections one leaves idle serve another's burst (history recording behind a bulk upsert). It starts
    with 3, one each as before. At most 16 per broker process keeps six of them under PostgreSQL's default
    max_connections of 100. The agents' registry, alone on its database, keeps 1 to 4.
    """

    def __init__(self, url: DatabaseUrl, *, min_size: int = 3, max_size: int = 16) -> None:
        if not _SCHEMA_NAME.fullmatch(url.schema):
            raise ValueError(f"invalid schema name {url.schema!r}")
        super().__init__(url)
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The shared pool (the database must be open)."""
        if self._pool is None:
            raise RuntimeError(f"database schema {self.schema} is not open")
        return self._pool

    async def _connect(self, schemas: Sequence[Schema]) -> None:
        # migrations on a connection that sees the schema alone, as each owner's did before
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        try:
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except asyncpg.UniqueViolationError:
                pass  # created concurrently by another opener
            extra = await migrate_postgres(conn, schemas)
        finally:
            await conn.close()
        # a further schema (PostGIS's) after the database's own, so that its own tables are found first
        path = ", ".join(f'"{s}"' for s in [self.schema, *(e for e in extra if e != self.schema)])
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self._sizes[0], max_size=self._sizes[1],
                                               init=_setup_connection, server_settings={"search_path": path},
                                               connection_class=_PoolConnection)

    async def _migrate(self, schemas: Sequence[Schema]) -> None:
        # an owner opened after the others (its own open, outside the broker's): the pool's path is kept
        async with self.pool.acquire() as conn:
            try:
                await migrate_postgres(conn, schemas)
            finally:
                # a migration may set session state (search_path, PostGIS's): the pool does not reset it on release
                await conn.execute(_RESET)

    async def _disconnect(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


_KINDS: dict[Kind, Callable[[DatabaseUrl], Database]] = {"sqlite": SQLiteDatabase, "postgresql": PostgresDatabase}
"""The backend by database kind (the owners' implementations register in storage.backends.Backends)."""


def open_database(url: DatabaseUrl, **options: Any) -> Database:
    """The backend for `url`, not yet connected (await `open(schemas)` on it)."""
    return _KINDS[url.kind](url, **options)
