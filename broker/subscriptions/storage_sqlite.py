"""Subscription storage in the entity store's SQLite file, on the file's one writer thread.

Every transaction here is short (a few rows): all statements, reads too,
run on the file's writer thread (storage.database.SQLiteDatabase) in
submission order, which keeps `enqueue` and `record` ordered; writes take
the file's write lock like the store's and history's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from broker.subscriptions.storage import Outcome, QueueItem, StoredSubscription, SubscriptionStorage, apply_stats
from storage.database import SQLiteDatabase
from storage.migrate import Schema
from storage.sqlite_thread import SQLiteThread
from storage.urls import DatabaseUrl

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, context BLOB NOT NULL,
    created_seq INTEGER NOT NULL, stats BLOB NOT NULL, next_periodic REAL,
    PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS sub_queue (
    qid INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, sub_id TEXT NOT NULL, body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sub_queue_sub ON sub_queue (tenant, sub_id, qid);
CREATE TABLE IF NOT EXISTS sub_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sub_lease (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


def _migrate(conn: sqlite3.Connection) -> None:
    """The tables, in one transaction of the migration runner (storage.migrate)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO sub_meta (name, value) VALUES ('version', 0)")


def _sub(row: tuple[Any, ...]) -> StoredSubscription:
    return StoredSubscription(row[0], orjson.loads(row[1]), orjson.loads(row[2]), row[3], orjson.loads(row[4]))


_COLS = "tenant, doc, context, created_seq, stats"


class SQLiteSubscriptionStorage(SubscriptionStorage):
    """Subscriptions, queue and cursor in a SQLite file (WAL, busy_timeout)."""

    tables = Schema("subscriptions", sqlite=_migrate)

    def __init__(self, path: str, *, db: SQLiteDatabase | None = None) -> None:
        self.path = path
        self._file = db if db is not None else SQLiteDatabase(DatabaseUrl.sqlite(path))
        self._open = False

    async def open(self) -> None:
        await self._file.open([self.tables])
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._file.close()

    @property
    def _db(self) -> SQLiteThread:
        """The file's writer thread: every statement here runs on it, in submission order."""
        return self._file.writer

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        # writes under the file's write lock, in turn with the store's and history's
        return await (self._file.write(fn) if write else self._db.tx(fn, write=False))

    @staticmethod
    def _bump(c: sqlite3.Connection) -> None:
        c.execute("UPDATE sub_meta SET value = value + 1 WHERE name = 'version'")

    # ---------------------------------------------------------------- subscriptions

    async def create(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            try:
                c.execute(
                    "INSERT INTO subscriptions (tenant, id, doc, context, created_seq, stats, next_periodic)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sub.tenant, sub.id, orjson.dumps(sub.doc), orjson.dumps(sub.context), sub.created_seq,
                     orjson.dumps(sub.stats), next_periodic),
                )
            except sqlite3.IntegrityError:
                return False
            self._bump(c)
            return True

        return await self._tx(run)

    async def get(self, tenant: str, sub_id: str) -> StoredSubscription | None:
        def run(c: sqlite3.Connection) -> StoredSubscription | None:
            row = c.execute(f"SELECT {_COLS} FROM subscriptions WHERE tenant = ? AND id = ?", (tenant, sub_id)).fetchone()
            return _sub(row) if row else None

        return await self._tx(run, write=False)

    async def page(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        def run(c: sqlite3.Connection) -> tuple[list[StoredSubscription], int]:
            rows = c.execute(f"SELECT {_COLS} FROM subscriptions WHERE tenant = ? ORDER BY id LIMIT ? OFFSET ?",
                             (tenant, limit, offset)).fetchall()
            total = c.execute("SELECT count(*) FROM subscriptions WHERE tenant = ?", (tenant,)).fetchone()[0]
            return [_sub(r) for r in rows], int(total)

        return await self._tx(run, write=False)

    async def replace(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("UPDATE subscriptions SET doc = ?, context = ?, next_periodic = ? WHERE tenant = ? AND id = ?",
                            (orjson.dumps(sub.doc), orjson.dumps(sub.context), next_periodic, sub.tenant, sub.id))
            self._bump(c)
            return cur.rowcount > 0

        return await self._tx(run)

    async def delete(self, tenant: str, sub_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM subscriptions WHERE tenant = ? AND id = ?", (tenant, sub_id))
            c.execute("DELETE FROM sub_queue WHERE tenant = ? AND sub_id = ?", (tenant, sub_id))
            self._bump(c)
            return cur.rowcount > 0

        return await self._tx(run)

    async def all(self) -> list[StoredSubscription]:
        return await self._tx(lambda c: [_sub(r) for r in c.execute(f"SELECT {_COLS} FROM subscriptions")],
                              write=False)

    async def version(self) -> int:
        return await self._db.run(lambda c: int(c.execute("SELECT value FROM sub_meta WHERE name = 'version'").fetchone()[0]))

    async def due_periodic(self, now: float) -> list[tuple[str, str]]:
        def run(c: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(r[0], r[1]) for r in c.execute(
                "SELECT tenant, id FROM subscriptions WHERE next_periodic IS NOT NULL AND next_periodic <= ?", (now,))]

        return await self._tx(run, write=False)

    async def set_next_periodic(self, tenant: str, sub_id: str, when: float) -> None:
        await self._tx(lambda c: c.execute("UPDATE subscriptions SET next_periodic = ? WHERE tenant = ? AND id = ?",
                                           (when, tenant, sub_id)))

    # ---------------------------------------------------------------- queue and cursor

    async def cursor(self) -> int | None:
        def run(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT value FROM sub_meta WHERE name = 'cursor'").fetchone()
            return int(row[0]) if row else None

        return await self._db.run(run)

    async def enqueue(self, items: Sequence[tuple[str, str, bytes]], cursor: int | None) -> None:
        def run(c: sqlite3.Connection) -> None:
            if items:
                c.executemany("INSERT INTO sub_queue (tenant, sub_id, body) VALUES (?, ?, ?)", items)
            if cursor is not None:
                c.execute("INSERT INTO sub_meta (name, value) VALUES ('cursor', ?)"
                          " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (cursor,))

        await self._tx(run)

    async def pending(self) -> list[tuple[str, str]]:
        return await self._tx(lambda c: [(r[0], r[1]) for r in c.execute(
            "SELECT DISTINCT tenant, sub_id FROM sub_queue")], write=False)

    async def head(self, tenant: str, sub_id: str, limit: int) -> list[QueueItem]:
        def run(c: sqlite3.Connection) -> list[QueueItem]:
            rows = c.execute("SELECT qid, tenant, sub_id, body, attempts, next_attempt FROM sub_queue"
                             " WHERE tenant = ? AND sub_id = ? ORDER BY qid LIMIT ?", (tenant, sub_id, limit))
            return [QueueItem(*r) for r in rows]

        return await self._tx(run, write=False)

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        def run(c: sqlite3.Connection) -> None:
            done = [(o.qid,) for o in outcomes if o.ok]
            if done:
                c.executemany("DELETE FROM sub_queue WHERE qid = ?", done)
            failed = [(o.attempts, o.next_attempt, o.qid) for o in outcomes if not o.ok]
            if failed:
                c.executemany("UPDATE sub_queue SET attempts = ?, next_attempt = ? WHERE qid = ?", failed)
            by_sub: dict[tuple[str, str], list[Outcome]] = {}
            for o in outcomes:
                by_sub.setdefault((o.tenant, o.sub_id), []).append(o)
            for (tenant, sub_id), outs in by_sub.items():
                row = c.execute("SELECT stats FROM subscriptions WHERE tenant = ? AND id = ?", (tenant, sub_id)).fetchone()
                if row is None:
                    continue
                stats = orjson.loads(row[0])
                for o in outs:
                    stats = apply_stats(stats, o)
                c.execute("UPDATE subscriptions SET stats = ? WHERE tenant = ? AND id = ?",
                          (orjson.dumps(stats), tenant, sub_id))

        await self._tx(run)

    async def queue_size(self) -> int:
        return await self._tx(lambda c: int(c.execute("SELECT count(*) FROM sub_queue").fetchone()[0]), write=False)

    # ---------------------------------------------------------------- lease

    async def acquire_lease(self, owner: str, now: float, ttl: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("INSERT INTO sub_lease (name, owner, expires) VALUES ('dispatcher', ?, ?)"
                      " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
                      " WHERE sub_lease.owner = excluded.owner OR sub_lease.expires < ?", (owner, now + ttl, now))
            row = c.execute("SELECT owner FROM sub_lease WHERE name = 'dispatcher'").fetchone()
            return bool(row and row[0] == owner)

        return await self._tx(run)

    async def release_lease(self, owner: str) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM sub_lease WHERE name = 'dispatcher' AND owner = ?", (owner,)))
