"""PostgreSQL modify groups on rows this process wrote last: written without reading them (issue 16, pgpatch21).

`_CHECKED_WRITE` returns its transaction's id, the xmin of the row versions it wrote; the store keeps them
(`PostgresStore._versions`) with the text and times written, so that the next PATCH-like group on those rows is
one statement, its write, with no read before it. The write's xmin check still guards every row: a kept version
that another writer replaced since (another process, a write of another kind) makes the group run again with
locks on the new version, and nothing is lost.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import broker.store.postgres as pg
from tests.broker.test_pgpatch20_optimistic import COUNT, increment, record_queries
from tests.broker.test_store import T0, T1, T2, entity, run
from tests.pg import store_url

ONE, TWO = "urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"


def _run(tmp_path: Path, body: Any) -> None:
    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        run(url, body)


async def _count(store: Any, entity_id: str) -> int:
    stored = await store.get("", entity_id)
    assert stored is not None
    return int(stored.doc[COUNT][0]["value"])



def test_a_group_on_rows_it_wrote_last_is_one_statement_without_a_read(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        await store.modify("", [ONE], increment, T1)  # the first group ever goes with locks
        await store.modify("", [ONE], increment, T1)  # read without locks, written checked: its version kept
        queries = record_queries(monkeypatch)
        assert (await store.modify("", [ONE], increment, T2))[ONE] == 3
        monkeypatch.undo()
        group = [q for c, q in queries if c == next(c for c, q in queries if "change_log" in q)]
        assert len(group) == 1 and "chk" in group[0], queries  # the checked write alone
        assert not any("xmin::text FROM entities" in q or "BEGIN" in q for _, q in queries), queries
        assert store.unread_groups == 1 and store.stale_reads == 0
        assert await _count(store, ONE) == 3
        records = await store.changes_after(0, 10)
        # the before image built from the kept version is the stored one: the previous record's after image
        assert [r.after[COUNT][0]["value"] for r in records if r.after][-3:] == [1, 2, 3]
        assert records[-1].before == records[-2].after
        stored = await store.get("", ONE)
        after = records[-1].after
        assert stored is not None and after is not None and stored.modified_at == T2
        assert {k: v for k, v in after.items() if k not in ("createdAt", "modifiedAt")} == stored.doc

    _run(tmp_path, body)


def test_a_kept_version_another_writer_replaced_runs_again_with_locks_on_the_new_one(tmp_path: Path) -> None:
    """Another process (here another connection) writes the row after this one kept its version: the group
    written from the kept version fails its check and runs again with locks; the other write is not lost."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        await store.modify("", [ONE], increment, T1)
        await store.modify("", [ONE], increment, T1)  # kept: count 2
        schema = await store.pool.fetchval("SELECT current_schema()")
        other = await asyncpg.connect(store.dsn)
        try:
            await other.execute(
                f'UPDATE "{schema}".entities SET doc = jsonb_set(doc, $1::text[],'
                " '[{\"type\": \"Property\", \"value\": 100}]') WHERE id = $2", [COUNT], ONE)
        finally:
            await other.close()
        assert (await store.modify("", [ONE], increment, T2)) == {ONE: 101}
        assert store.stale_reads == 1 and await _count(store, ONE) == 101
        record = (await store.changes_after(0, 10))[-1]
        assert record.before is not None and record.before[COUNT][0]["value"] == 100
        # the locked run forgot the kept version; the one after it reads, then keeps again
        assert (await store.modify("", [ONE], increment, T2)) == {ONE: 102}
        assert (await store.modify("", [ONE], increment, T2)) == {ONE: 103}
        assert store.stale_reads == 1 and store.unread_groups == 2  # the stale one and the last

    _run(tmp_path, body)


def test_writes_of_other_kinds_forget_the_kept_versions(tmp_path: Path) -> None:
    """upsert_replace and delete change kept rows: the next group reads them (no stale read, no lost write)."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0), entity(2, count=0)], T0)
        await store.modify("", [ONE], increment, T1)
        await store.modify("", [ONE, TWO], increment, T1)  # both kept
        assert set(store._versions) == {("", ONE), ("", TWO)}
        await store.upsert_replace("", [entity(1, count=40)], T1)
        await store.delete("", [TWO])
        assert not store._versions
        assert (await store.modify("", [ONE], increment, T2)) == {ONE: 41}
        assert store.stale_reads == 0 and await store.get("", TWO) is None

    _run(tmp_path, body)


def test_calls_on_one_entity_in_flight_together_all_apply_in_order(tmp_path: Path) -> None:
    """Groups naming an id of the group before wait for it, then write from its kept version: every call
    applies once, each record's before is the previous record's after, and no group needs the locked path."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        await store.modify("", [ONE], increment, T1)
        results: list[int] = []

        async def client() -> None:
            for _ in range(25):
                results.append((await store.modify("", [ONE], increment, T1))[ONE])

        await asyncio.gather(*(client() for _ in range(8)))
        assert sorted(results) == list(range(2, 202)) and await _count(store, ONE) == 201
        records = [r for r in await store.changes_after(0, 1000) if r.entity_id == ONE and r.before is not None]
        assert [r.after[COUNT][0]["value"] for r in records if r.after] == list(range(1, 202))
        assert all(b.before == a.after for a, b in pairwise(records))
        assert store.stale_reads == 0 and store.unread_groups > 0

    _run(tmp_path, body)


def test_kept_versions_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "VERSIONS", 2)

    async def body(store: Any) -> None:
        ids = [f"urn:ngsi-ld:Thing:{n}" for n in range(1, 5)]
        await store.insert("", [entity(n, count=0) for n in range(1, 5)], T0)
        await store.modify("", [ONE], increment, T1)
        for i in ids:
            await store.modify("", [i], increment, T1)
        assert list(store._versions) == [("", ids[2]), ("", ids[3])]  # the newest two
        for i in ids:
            assert (await store.modify("", [i], increment, T2))[i] == (3 if i == ONE else 2)
        assert store.stale_reads == 0

    _run(tmp_path, body)


def test_a_new_store_on_the_same_schema_reads_what_the_last_one_wrote(tmp_path: Path) -> None:
    """Kept versions live in the process: a broker restarted (a new store) reads the rows, nothing is lost."""
    with store_url("postgres", tmp_path / "unused.db", "test_pgpatch21") as url:
        async def first(store: Any) -> None:
            await store.insert("", [entity(1, count=0)], T0)
            for _ in range(3):
                await store.modify("", [ONE], increment, T1)
            assert store._versions

        async def second(store: Any) -> None:
            assert not store._versions
            assert (await store.modify("", [ONE], increment, T2)) == {ONE: 4}
            assert store.stale_reads == 0

        run(url, first)
        run(url, second)
