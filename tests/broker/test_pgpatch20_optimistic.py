"""PostgreSQL modify groups read without locks and written by one xmin-checked statement (issue 16, pgpatch20).

A PATCH-like group (it only rewrites stored rows) is two queries, its read and `_CHECKED_WRITE` in a
transaction of its own, where the locked path takes four (BEGIN with the entity locks, the read FOR UPDATE,
the write, COMMIT). A row changed between the read and the write (committed before the write, or while it
waits for the row) fails the write as a whole: the group runs again with locks, on the new version.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from broker.store import Change, StoredEntity
from broker.store.postgres import PostgresStore
from tests.broker.test_store import NS, T0, T1, entity, run
from tests.pg import store_url

COUNT = NS + "count"
ONE = "urn:ngsi-ld:Thing:1"


def increment(entity_id: str, current: StoredEntity | None) -> Change:
    """The count of `entity_id` one higher (its modify function; the pgpatch21 tests use it too)."""
    assert current is not None
    doc = dict(current.doc)
    doc[COUNT] = [{"type": "Property", "value": doc[COUNT][0]["value"] + 1}]
    return Change(doc, result=doc[COUNT][0]["value"])


def record_queries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every statement sent on any connection from now on, as (connection, query) (the pgpatch21 tests use it too)."""
    queries: list[tuple[int, str]] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        def recording(self: Any, query: str, *args: Any, _original: Any = original, **kw: Any) -> Any:
            queries.append((id(self), query))
            return _original(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, name, recording)
    return queries


def _run(tmp_path: Path, body: Any) -> None:
    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch20") as url:
        run(url, body)


def test_a_patch_group_is_its_read_and_one_write_without_begin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        assert (await store.modify("", [ONE], increment, T1))[ONE] == 1  # the first group ever goes with locks
        queries = record_queries(monkeypatch)  # the dispatcher and recorder poll meanwhile
        assert (await store.modify("", [ONE], increment, T1))[ONE] == 2
        monkeypatch.undo()
        group = [q for c, q in queries if c == next(c for c, q in queries if "xmin" in q)]
        assert len(group) == 2, queries
        assert not any("BEGIN" in q or "COMMIT" in q for _, q in queries), queries
        assert "FOR UPDATE" not in group[0] and "xmin" in group[0] and "change_log" in group[1]
        records = await store.changes_after(0, 10)
        assert [r.after[COUNT][0]["value"] for r in records if r.after][-2:] == [1, 2]
        assert records[-1].before == records[-2].after and store.stale_reads == 0

    _run(tmp_path, body)


def test_a_row_changed_after_the_read_makes_the_group_run_again_with_locks(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0), entity(2, count=0)], T0)
        await store.modify("", [ONE], increment, T1)  # the first group ever goes with locks
        original = PostgresStore._group_body
        changed: list[bool] = []

        async def meddling(self: Any, conn: Any, tenant: str, jobs: Any, keys: Any, unlocked: Any = None) -> Any:
            if unlocked is not None and not changed:  # between the lock-free read and the write: another writer
                changed.append(True)
                await self.pool.execute(
                    "UPDATE entities SET doc = jsonb_set(doc, $1::text[], '[{\"type\": \"Property\", \"value\": 100}]')"
                    " WHERE id = $2", [COUNT], ONE)
            return await original(self, conn, tenant, jobs, keys, unlocked)

        monkeypatch.setattr(PostgresStore, "_group_body", meddling)
        got = await store.modify("", [ONE, "urn:ngsi-ld:Thing:2"], increment, T1)
        assert got == {ONE: 101, "urn:ngsi-ld:Thing:2": 1}  # applied on the version written meanwhile
        assert store.stale_reads == 1
        stored = await store.get("", ONE)
        assert stored is not None and stored.doc[COUNT][0]["value"] == 101
        record = (await store.changes_after(0, 10))[-2]
        assert record.entity_id == ONE and record.before is not None and record.before[COUNT][0]["value"] == 100

    _run(tmp_path, body)


def test_a_write_waiting_for_a_row_another_transaction_changes_runs_again_with_locks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other transaction holds the row when the checked write comes, and commits a change later: the
    write waits for it, then sees the row's new version (READ COMMITTED re-reads it) and fails."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        await store.modify("", [ONE], increment, T1)
        holder = await asyncpg.connect(store.dsn)
        original = PostgresStore._group_body
        tx = holder.transaction()
        started: list[bool] = []

        async def meddling(self: Any, conn: Any, tenant: str, jobs: Any, keys: Any, unlocked: Any = None) -> Any:
            if unlocked is not None and not started:
                started.append(True)
                await tx.start()
                await holder.execute(
                    f'UPDATE "{schema}".entities SET doc = jsonb_set(doc, $1::text[],'
                    " '[{\"type\": \"Property\", \"value\": 50}]') WHERE id = $2", [COUNT], ONE)
                asyncio.get_running_loop().call_later(0.5, lambda: asyncio.ensure_future(tx.commit()))
            return await original(self, conn, tenant, jobs, keys, unlocked)

        schema = await store.pool.fetchval("SELECT current_schema()")
        monkeypatch.setattr(PostgresStore, "_group_body", meddling)
        try:
            got = await store.modify("", [ONE], increment, T1)
        finally:
            await asyncio.sleep(0.6)
            await holder.close()
        assert got == {ONE: 51} and store.stale_reads == 1
        stored = await store.get("", ONE)
        assert stored is not None and stored.doc[COUNT][0]["value"] == 51

    _run(tmp_path, body)


def test_a_group_on_other_entities_does_not_wait_for_the_group_before(tmp_path: Path) -> None:
    """Groups that name no id in common write at once, in whichever order (what a call sees does not depend
    on the other); one waiting for a row does not hold the next back (it did when every group waited for
    the one before to be done)."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0), entity(2, count=0)], T0)
        await store.modify("", [ONE], increment, T1)
        holder = await asyncpg.connect(store.dsn)
        schema = await store.pool.fetchval("SELECT current_schema()")
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute(f'SELECT 1 FROM "{schema}".entities WHERE id = $1 FOR UPDATE', ONE)
            first = asyncio.ensure_future(store.modify("", [ONE], increment, T1))
            await asyncio.sleep(0.3)  # its write waits for the row
            second = await asyncio.wait_for(store.modify("", ["urn:ngsi-ld:Thing:2"], increment, T1), 5)
            assert second == {"urn:ngsi-ld:Thing:2": 1} and not first.done()
            await tx.rollback()  # the row as it was: the write goes on (no stale read)
            assert (await first) == {ONE: 2} and store.stale_reads == 0
        finally:
            await holder.close()

    _run(tmp_path, body)
