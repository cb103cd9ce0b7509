"""Subscription storage in the entity store's PostgreSQL schema, through the schema's shared pool (storage.database).

Documents are JSONB (orjson codec, as in the entity store). Tables are
created under a transaction-scoped advisory lock, so several broker
processes opening together do not race on CREATE TABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from broker.subscriptions.storage import Outcome, QueueItem, StoredSubscription, SubscriptionStorage, apply_stats
from storage.database import PostgresDatabase
from storage.migrate import Schema
from storage.urls import DatabaseUrl

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS subscriptions (
        tenant TEXT NOT NULL, id TEXT NOT NULL, doc JSONB NOT NULL, context JSONB NOT NULL,
        created_seq BIGINT NOT NULL, stats JSONB NOT NULL, next_periodic DOUBLE PRECISION,
        PRIMARY KEY (tenant, id))""",
    """CREATE TABLE IF NOT EXISTS sub_queue (
        qid BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, sub_id TEXT NOT NULL, body BYTEA NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS sub_queue_sub ON sub_queue (tenant, sub_id, qid)",
    "CREATE TABLE IF NOT EXISTS sub_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sub_lease (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)",
    "INSERT INTO sub_meta (name, value) VALUES ('version', 0) ON CONFLICT DO NOTHING",
]
_LOCK = 0x5B5C21  # advisory lock key of the schema setup
_COLS = "tenant, doc, context, created_seq, stats"


async def _migrate(conn: asyncpg.Connection) -> None:
    """The tables, in one transaction of the migration runner (storage.migrate)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
    for statement in SCHEMA:
        await conn.execute(statement)


def _sub(row: asyncpg.Record) -> StoredSubscription:
    # the @context value may be JSON null, which asyncpg would bind as SQL NULL: kept wrapped
    return StoredSubscription(row[0], row[1], row[2]["@context"], int(row[3]), row[4])


class PostgresSubscriptionStorage(SubscriptionStorage):
    """Subscriptions, queue and cursor in a PostgreSQL schema."""

    tables = Schema("subscriptions", postgres=_migrate)

    def __init__(self, dsn: str, schema: str = "public", *, db: PostgresDatabase | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        # documents are jsonb through the database's orjson codec (storage.database)
        self._db = db if db is not None else PostgresDatabase(DatabaseUrl.postgresql(dsn, schema),
                                                               min_size=1, max_size=4)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._pool = self._db.pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool = None
            await self._db.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "subscription storage is not open"
        return self._pool

    _BUMP = "UPDATE sub_meta SET value = value + 1 WHERE name = 'version'"

    # ---------------------------------------------------------------- subscriptions

    async def create(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO subscriptions (tenant, id, doc, context, created_seq, stats, next_periodic)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                sub.tenant, sub.id, sub.doc, {"@context": sub.context}, sub.created_seq, sub.stats, next_periodic)
            if status.endswith(" 0"):
                return False
            await conn.execute(self._BUMP)
            return True

    async def get(self, tenant: str, sub_id: str) -> StoredSubscription | None:
        row = await self.pool.fetchrow(f"SELECT {_COLS} FROM subscriptions WHERE tenant = $1 AND id = $2",
                                       tenant, sub_id)
        return _sub(row) if row else None

    async def page(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            rows = await conn.fetch(f"SELECT {_COLS} FROM subscriptions WHERE tenant = $1 ORDER BY id"
                                    " LIMIT $2 OFFSET $3", tenant, limit, offset)
            total = await conn.fetchval("SELECT count(*) FROM subscriptions WHERE tenant = $1", tenant)
        return [_sub(r) for r in rows], int(total)

    async def replace(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE subscriptions SET doc = $3, context = $4, next_periodic = $5 WHERE tenant = $1 AND id = $2",
                sub.tenant, sub.id, sub.doc, {"@context": sub.context}, next_periodic)
            await conn.execute(self._BUMP)
            return not status.endswith(" 0")

    async def delete(self, tenant: str, sub_id: str) -> bool:
        # Queue rows first, then the subscription: the order `record` takes its locks in (delivered rows,
        # then the subscription's stats). The other order deadlocked with a delivery being recorded
        # (PostgreSQL aborted one: a 500 on DELETE /subscriptions/{id}, seen in the ETSI suite's runs).
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM sub_queue WHERE tenant = $1 AND sub_id = $2", tenant, sub_id)
            status = await conn.execute("DELETE FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, sub_id)
            await conn.execute(self._BUMP)
            return not status.endswith(" 0")

    async def all(self) -> list[StoredSubscription]:
        return [_sub(r) for r in await self.pool.fetch(f"SELECT {_COLS} FROM subscriptions")]

    async def version(self) -> int:
        return int(await self.pool.fetchval("SELECT value FROM sub_meta WHERE name = 'version'"))

    async def due_periodic(self, now: float) -> list[tuple[str, str]]:
        rows = await self.pool.fetch("SELECT tenant, id FROM subscriptions WHERE next_periodic <= $1", now)
        return [(r[0], r[1]) for r in rows]

    async def set_next_periodic(self, tenant: str, sub_id: str, when: float) -> None:
        await self.pool.execute("UPDATE subscriptions SET next_periodic = $3 WHERE tenant = $1 AND id = $2",
                                tenant, sub_id, when)

    # ---------------------------------------------------------------- queue and cursor

    async def cursor(self) -> int | None:
        value = await self.pool.fetchval("SELECT value FROM sub_meta WHERE name = 'cursor'")
        return None if value is None else int(value)

    async def enqueue(self, items: Sequence[tuple[str, str, bytes]], cursor: int | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if items:
                await conn.execute(
                    "INSERT INTO sub_queue (tenant, sub_id, body)"
                    " SELECT t, s, b FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS u(t, s, b, n)"
                    " ORDER BY n",
                    [i[0] for i in items], [i[1] for i in items], [i[2] for i in items])
            if cursor is not None:
                await conn.execute("INSERT INTO sub_meta (name, value) VALUES ('cursor', $1)"
                                   " ON CONFLICT (name) DO UPDATE SET value = excluded.value", cursor)

    async def pending(self) -> list[tuple[str, str]]:
        rows = await self.pool.fetch("SELECT DISTINCT tenant, sub_id FROM sub_queue")
        return [(r[0], r[1]) for r in rows]

    async def head(self, tenant: str, sub_id: str, limit: int) -> list[QueueItem]:
        rows = await self.pool.fetch("SELECT qid, tenant, sub_id, body, attempts, next_attempt FROM sub_queue"
                                     " WHERE tenant = $1 AND sub_id = $2 ORDER BY qid LIMIT $3", tenant, sub_id, limit)
        return [QueueItem(int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in rows]

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            done = [o.qid for o in outcomes if o.ok]
            if done:
                await conn.execute("DELETE FROM sub_queue WHERE qid = ANY($1::bigint[])", done)
            failed = [(o.attempts, o.next_attempt, o.qid) for o in outcomes if not o.ok]
            if failed:
                await conn.executemany("UPDATE sub_queue SET attempts = $1, next_attempt = $2 WHERE qid = $3", failed)
            by_sub: dict[tuple[str, str], list[Outcome]] = {}
            for o in outcomes:
                by_sub.setdefault((o.tenant, o.sub_id), []).append(o)
            for (tenant, sub_id), outs in sorted(by_sub.items()):
                stats: Any = await conn.fetchval(
                    "SELECT stats FROM subscriptions WHERE tenant = $1 AND id = $2 FOR UPDATE", tenant, sub_id)
                if stats is None:
                    continue
                for o in outs:
                    stats = apply_stats(stats, o)
                await conn.execute("UPDATE subscriptions SET stats = $3 WHERE tenant = $1 AND id = $2",
                                   tenant, sub_id, stats)

    async def queue_size(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM sub_queue"))

    # ---------------------------------------------------------------- lease

    async def acquire_lease(self, owner: str, now: float, ttl: float) -> bool:
        holder = await self.pool.fetchval(
            "INSERT INTO sub_lease AS l (name, owner, expires) VALUES ('dispatcher', $1, $2)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
            " WHERE l.owner = excluded.owner OR l.expires < $3 RETURNING owner", owner, now + ttl, now)
        return bool(holder == owner)

    async def release_lease(self, owner: str) -> None:
        await self.pool.execute("DELETE FROM sub_lease WHERE name = 'dispatcher' AND owner = $1", owner)
