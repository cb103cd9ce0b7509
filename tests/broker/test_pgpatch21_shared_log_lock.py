"""PostgreSQL change-log writers share the log lock; readers read up to its settled end (issue 16, pgpatch21).

Writers used to hold the log lock alone from drawing their seqs through their commit's WAL flush, so the
groups of modify calls flushed one at a time. They now hold it shared: a writer does not wait for another's
commit, and their commits share WAL flushes. Seqs may then commit out of order, so `changes_after` reads only
up to the log's settled end (the lock taken alone: every writer that drew a seq is done): a reader never moves
its cursor past a seq that could still commit.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg

import broker.store.postgres as pg
from tests.broker.test_pgpatch20_optimistic import COUNT, increment
from tests.broker.test_store import NS, T0, T1, entity, run
from tests.pg import store_url

ONE, TWO = "urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"


async def _writer_in_flight(store: Any) -> tuple[asyncpg.Connection, Any, int]:
    """Another writer (another process, say) that drew a seq for ONE and has not committed: its connection,
    transaction and seq."""
    schema = await store.pool.fetchval("SELECT current_schema()")
    conn = await asyncpg.connect(store.dsn, server_settings={"search_path": schema})
    tx = conn.transaction()
    await tx.start()
    doc = f'{{"id": "{ONE}", "type": ["{NS}AirQualityObserved"]}}'
    seq = await conn.fetchval(pg._LOG, "", T1, [ONE], [None], [None], [None], [doc], [T1], [T1])
    return conn, tx, int(seq)


def test_a_writer_does_not_wait_for_another_writers_commit(tmp_path: Path) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(2, count=0)], T0)
        await store.modify("", [TWO], increment, T1)
        conn, tx, held = await _writer_in_flight(store)
        try:
            # with the lock held alone this waited for the other writer's commit
            assert await asyncio.wait_for(store.modify("", [TWO], increment, T1), 5) == {TWO: 2}
            assert await asyncio.wait_for(store.modify("", [TWO], increment, T1), 5) == {TWO: 3}
        finally:
            await tx.rollback()
            await conn.close()
        assert held > 0

    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        run(url, body)


def test_a_reader_does_not_pass_a_seq_drawn_and_not_yet_committed(tmp_path: Path) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(2, count=0)], T0)
        cursor = (await store.changes_after(0, 10))[-1].seq
        conn, tx, held = await _writer_in_flight(store)
        try:
            await asyncio.wait_for(store.modify("", [TWO], increment, T1), 5)  # a higher seq, committed
            store._recent.clear()  # as a consumer in another process, or one fallen behind, reads the log
            reading = asyncio.ensure_future(store.changes_after(cursor, 10))
            await asyncio.sleep(0.3)
            assert not reading.done()  # it waits for the writer in flight rather than answer past its seq
            await tx.commit()
            records = await asyncio.wait_for(reading, 5)
        finally:
            if conn.is_in_transaction():
                await tx.rollback()
            await conn.close()
        assert [r.seq for r in records][:1] == [held] and [r.entity_id for r in records] == [ONE, TWO]
        assert [r.seq for r in records] == sorted(r.seq for r in records)

    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        run(url, body)


def test_a_seq_rolled_back_is_passed_and_nothing_else(tmp_path: Path) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(2, count=0)], T0)
        cursor = (await store.changes_after(0, 10))[-1].seq
        conn, tx, held = await _writer_in_flight(store)
        try:
            await asyncio.wait_for(store.modify("", [TWO], increment, T1), 5)
            await tx.rollback()
        finally:
            await conn.close()
        store._recent.clear()
        records = await store.changes_after(cursor, 10)
        assert [r.entity_id for r in records] == [TWO] and records[0].seq > held
        assert await store.changes_after(records[-1].seq, 10) == []

    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        run(url, body)


def test_concurrent_groups_log_every_change_once_in_each_entitys_order(tmp_path: Path) -> None:
    """Many groups in flight on a few entities: every call applied once, each entity's records in seq order with
    each before its previous after, and a reader from 0 sees them all, once."""

    async def body(store: Any) -> None:
        ids = [f"urn:ngsi-ld:Thing:{n}" for n in range(1, 4)]
        await store.insert("", [entity(n, count=0) for n in range(1, 4)], T0)
        start = (await store.changes_after(0, 10))[-1].seq

        async def client(k: int) -> None:
            for j in range(30):
                await store.modify("", [ids[(k + j) % 3]], increment, T1)

        await asyncio.gather(*(client(k) for k in range(8)))
        store._recent.clear()
        records = await store.changes_after(start, 1000)
        assert len(records) == 240 and len({r.seq for r in records}) == 240
        for i in ids:
            mine = [r for r in records if r.entity_id == i]
            assert [r.after[COUNT][0]["value"] for r in mine if r.after] == list(range(1, len(mine) + 1))
            assert all(b.before == a.after for a, b in pairwise(mine))

    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        run(url, body)
