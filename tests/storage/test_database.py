"""storage.database: one backend per database URL, whose connections a broker's store, history and
subscription storage share (one PostgreSQL pool per schema, one SQLite writer thread per file), and whose
migration runner upgrades a database written by earlier code."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from pathlib import Path

import asyncpg
import orjson
import pytest

from broker.app import close_broker, open_broker
from broker.settings import BrokerSettings
from broker.state import BrokerState
from broker.store.migrations import migrate_postgres, migrate_sqlite
from broker.subscriptions.storage import StoredSubscription
from broker.temporal.storage import TimeRange
from tests.pg import throwaway_schema

T0 = "2026-01-01T00:00:00.000Z"
AQO = "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
NO2 = "https://smartdatamodels.org/dataModel.Environment/no2"


def _entity(n: int, value: float) -> dict[str, object]:
    """A small ENF entity, as the store keeps them."""
    return {"id": f"urn:ngsi-ld:AirQualityObserved:{n}", "type": [AQO], NO2: [{"type": "Property", "value": value}]}


def _settings(url: str, data: Path) -> BrokerSettings:
    return BrokerSettings(host="127.0.0.1", port=31001, data_dir=data, store_url=url)


async def _use_every_owner(state: BrokerState) -> None:
    """A write through the store, history recorded from it, a subscription stored, and reads of all three."""
    await state.store.upsert_replace("", [_entity(1, 21.0)], T0)
    await state.recorder.catch_up()
    sub = {"id": "urn:ngsi-ld:Subscription:s14", "type": "Subscription", "entities": [{"type": "urn:test:Nothing"}]}
    assert await state.subscriptions.storage.create(StoredSubscription("", sub, None, 0, {}), None)
    assert [s.id for s in await state.subscriptions.storage.all()] == ["urn:ngsi-ld:Subscription:s14"]
    assert [e.entity_id for e in await state.history.entities("")] == ["urn:ngsi-ld:AirQualityObserved:1"]
    assert (await state.store.get("", "urn:ngsi-ld:AirQualityObserved:1")) is not None


def test_one_pool_per_postgresql_schema_for_store_history_and_subscriptions(postgres_dsn: str) -> None:
    with throwaway_schema("test_s14_pool") as (dsn, schema):
        # a name of this broker's own on its connections, to count them on the server
        app_name = f"s14_{uuid.uuid4().hex[:12]}"
        url = f"{dsn}?schema={schema}&application_name={app_name}"

        async def main() -> None:
            state = await open_broker(_settings(url, Path("/nonexistent")))
            try:
                await _use_every_owner(state)
                pool = state.database.pool  # type: ignore[attr-defined]
                assert state.store.pool is pool  # type: ignore[attr-defined]
                assert state.history.pool is pool  # type: ignore[attr-defined]
                assert state.subscriptions.storage.pool is pool  # type: ignore[attr-defined]
                # every connection the broker has on the server is one of that pool's (count while it is steady)
                counter = await asyncpg.connect(dsn)
                try:
                    while True:
                        size = pool.get_size()
                        on_server = await counter.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app_name)
                        if pool.get_size() == size:
                            break
                finally:
                    await counter.close()
                assert on_server == size
                assert size <= pool.get_max_size()
            finally:
                await close_broker(state)

        asyncio.run(main())


def test_one_writer_thread_per_sqlite_file(tmp_path: Path) -> None:
    async def main() -> None:
        before = set(threading.enumerate())
        state = await open_broker(_settings(f"sqlite:///{tmp_path / 'broker.db'}", tmp_path))
        try:
            await _use_every_owner(state)
            # all three owners wrote: their writes ran on the one writer thread of the file
            writers = [t.name for t in set(threading.enumerate()) - before
                       if t.name.startswith(("sqlite-writer", "subscriptions-sqlite"))]
            assert len(writers) == 1, writers
            writer = await state.database.writer.run(lambda _: threading.current_thread().name)  # type: ignore[attr-defined]
            assert writers == [writer]
        finally:
            await close_broker(state)
        assert not {t for t in set(threading.enumerate()) - before if t.name.startswith("sqlite-")}

    asyncio.run(main())


def test_a_database_written_by_earlier_code_opens_and_upgrades(tmp_path: Path, postgres_dsn: str) -> None:
    """A store left at schema version 1, with no history or subscription tables yet, opens in a broker."""
    doc = _entity(7, 40.0)
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate_sqlite(conn, target=1) == 1
    conn.execute("INSERT INTO entities VALUES ('', ?, ?, ?, ?)", (doc["id"], orjson.dumps(doc), T0, T0))
    conn.execute("INSERT INTO entity_types VALUES ('', ?, ?)", (AQO, doc["id"]))
    conn.close()

    async def opens(url: str) -> None:
        state = await open_broker(_settings(url, tmp_path))
        try:
            one = await state.store.get("", str(doc["id"]))
            assert one is not None and one.doc == doc
            await _use_every_owner(state)
            hits = await state.history.instances("", ["urn:ngsi-ld:AirQualityObserved:1"], None, TimeRange(), 10, False)
            assert [h.entity_id for h in hits] == ["urn:ngsi-ld:AirQualityObserved:1"]
        finally:
            await close_broker(state)

    asyncio.run(opens(f"sqlite:///{path}"))
    with throwaway_schema("test_s14_old") as (dsn, schema):

        async def version_1() -> None:
            conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
            try:
                await conn.execute(f'CREATE SCHEMA "{schema}"')
                assert await migrate_postgres(conn, target=1) == 1
                await conn.execute("INSERT INTO entities VALUES ('', $1, $2::jsonb, $3, $3)", doc["id"],
                                   orjson.dumps(doc).decode(), T0)
                await conn.execute("INSERT INTO entity_types VALUES ('', $1, $2)", AQO, doc["id"])
            finally:
                await conn.close()

        asyncio.run(version_1())
        asyncio.run(opens(f"{dsn}?schema={schema}"))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_database_closes_with_its_last_user(kind: str, tmp_path: Path, postgres_dsn: str) -> None:
    from broker.store import STORES
    from broker.temporal.runtime import open_history
    from storage.database import open_database
    from storage.urls import parse_database_url

    with throwaway_schema("test_s14_close") as (dsn, schema):
        url = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else f"{dsn}?schema={schema}"

        async def main() -> None:
            db = open_database(parse_database_url(url))
            store = STORES.open(db)
            history = open_history(store)
            await store.open()
            await history.open()
            await store.close()
            assert db.is_open  # history still uses it
            assert [e.entity_id for e in await history.entities("")] == []
            await history.close()
            assert not db.is_open

        asyncio.run(main())



def test_a_released_pool_connection_is_not_sent_a_reset_query_and_a_late_migration_leaves_its_path(
        postgres_dsn: str) -> None:
    """asyncpg's pool sent a reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) on every release:
    one statement in five under PATCH (issue 16, pgpatch19). A released connection's last statement is now
    the caller's own; an owner opened after the others, whose migration sets session state on a pool
    connection, still leaves that connection as the pool made it; a transaction left open is rolled back."""
    from storage.database import PostgresDatabase
    from storage.migrate import Schema
    from storage.urls import DatabaseUrl

    async def sets_session_state(conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS late_owner (x int)")
        await conn.execute("SET statement_timeout = 4321")

    with throwaway_schema("test_pg19_reset") as (dsn, schema):

        async def main() -> None:
            db = PostgresDatabase(DatabaseUrl.postgresql(dsn, schema), min_size=1, max_size=1)  # one connection
            await db.open([])
            admin = await asyncpg.connect(dsn)
            try:
                async with db.pool.acquire() as conn:
                    pid = await conn.fetchval("SELECT pg_backend_pid() /* pgpatch19 probe */")
                last = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
                assert "pgpatch19 probe" in last, last  # no reset query after it
                await db.open([Schema("late_owner", postgres=sets_session_state)])
                async with db.pool.acquire() as conn:
                    assert await conn.fetchval("SHOW statement_timeout") == "0"
                    assert await conn.fetchval("SELECT current_schema()") == schema
                    tx = conn.transaction()
                    await tx.start()
                    await conn.execute("CREATE TABLE left_open (x int)")
                async with db.pool.acquire() as conn:  # the same connection: the transaction was rolled back
                    assert await conn.fetchval("SELECT to_regclass('left_open')") is None
            finally:
                await admin.close()
                await db.close()
                await db.close()

        asyncio.run(main())
