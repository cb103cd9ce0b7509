"""Concurrent `modify` calls committed together (group commit, issue 16): on both stores each call stays
what it was alone: applied in call order, logged with its own records, failing only its own caller."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from broker.store import Change, Store, StoredEntity
from broker.store.postgres import PostgresStore
from tests.broker.test_store import NO2, NS, T0, T1, T2, entity, run
from tests.pg import store_url

COUNT = NS + "count"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path / "data" / "broker.db", "test_group") as url:
        yield url


def _increment(entity_id: str, current: StoredEntity | None) -> Change:
    assert current is not None
    doc = dict(current.doc)
    doc[COUNT] = [{"type": "Property", "value": doc[COUNT][0]["value"] + 1}]
    return Change(doc, result=doc[COUNT][0]["value"])


def test_calls_made_together_on_one_entity_each_apply_and_log_a_chained_record(url: str) -> None:
    async def body(store: Store) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        start = await store.last_change_seq()
        results = await asyncio.gather(*(store.modify("", ["urn:ngsi-ld:Thing:1"], _increment, T1) for _ in range(20)))
        # in call order: the n-th call saw the n-1 before it
        assert [r["urn:ngsi-ld:Thing:1"] for r in results] == list(range(1, 21))
        records = await store.changes_after(start, 100)
        assert len(records) == 20 and [r.seq for r in records] == sorted({r.seq for r in records})
        for n, record in enumerate(records):
            assert record.before is not None and record.after is not None and record.at == T1
            assert record.before[COUNT][0]["value"] == n and record.after[COUNT][0]["value"] == n + 1
            assert record.after["createdAt"] == T0 and record.after["modifiedAt"] == T1
        for earlier, later in itertools.pairwise(records):
            assert later.before == earlier.after
        stored = await store.get("", "urn:ngsi-ld:Thing:1")
        assert stored is not None and stored.doc[COUNT][0]["value"] == 20 and stored.created_at == T0

    run(url, body)


def test_a_call_that_raises_fails_alone_among_calls_made_together(url: str) -> None:
    def refuse(entity_id: str, current: StoredEntity | None) -> Change:
        _increment(entity_id, current)
        raise RuntimeError("refused")

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, count=0), entity(2, count=0)], T0)
        start = await store.last_change_seq()
        calls = [store.modify("", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"], refuse if n == 3 else _increment, T1)
                 for n in range(8)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(outcomes[3], RuntimeError)
        assert [o["urn:ngsi-ld:Thing:2"] for n, o in enumerate(outcomes) if n != 3] == list(range(1, 8))  # type: ignore[index]
        assert len(await store.changes_after(start, 100)) == 14
        for n in (1, 2):
            stored = await store.get("", f"urn:ngsi-ld:Thing:{n}")
            assert stored is not None and stored.doc[COUNT][0]["value"] == 7

    run(url, body)


def test_delete_then_create_and_create_then_delete_among_calls_made_together(url: str) -> None:
    def delete(entity_id: str, current: StoredEntity | None) -> Change:
        return Change(None)

    def create(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is None  # the call before deleted it (or it never was)
        return Change(entity(entity_id.rsplit(":", 1)[1], no2=5))

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, no2=1, lng=5.0)], T0)
        start = await store.last_change_seq()
        await asyncio.gather(
            store.modify("", ["urn:ngsi-ld:Thing:1"], delete, T1),
            store.modify("", ["urn:ngsi-ld:Thing:1"], create, T2),  # created again: a new createdAt, no location
            store.modify("", ["urn:ngsi-ld:Thing:2"], create, T1),
            store.modify("", ["urn:ngsi-ld:Thing:2"], delete, T2),  # created and deleted: two records, no row
        )
        records = await store.changes_after(start, 100)
        summary = [(r.entity_id, r.before and r.before["modifiedAt"], r.after and r.after["modifiedAt"]) for r in records]
        assert summary == [("urn:ngsi-ld:Thing:1", T0, None), ("urn:ngsi-ld:Thing:1", None, T2),
                           ("urn:ngsi-ld:Thing:2", None, T1), ("urn:ngsi-ld:Thing:2", T1, None)]
        assert records[1].after is not None and records[1].after["createdAt"] == T2
        assert records[3].before == records[2].after
        again = await store.get("", "urn:ngsi-ld:Thing:1")
        assert again is not None and again.created_at == T2 and again.doc[NO2][0]["value"] == 5
        assert await store.get("", "urn:ngsi-ld:Thing:2") is None
        # as alone: a call that created an entity made its tenant, even if a later call deleted the entity
        await asyncio.gather(store.modify("nice", ["urn:ngsi-ld:Thing:3"], create, T1),
                             store.modify("nice", ["urn:ngsi-ld:Thing:3"], delete, T2))
        assert await store.has_tenant("nice") and await store.get("nice", "urn:ngsi-ld:Thing:3") is None
        # the side rows follow the document written last: no location any more
        from broker.store import EntityFilter
        near = await store.query("", EntityFilter(geo_bbox=("https://uri.etsi.org/ngsi-ld/location", (4.0, 43.0, 6.0, 44.0))),
                                 limit=10, offset=0, count=True)
        assert near.total == 0

    run(url, body)


def test_a_database_error_fails_only_the_call_that_caused_it(url: str) -> None:
    def poisoned(entity_id: str, current: StoredEntity | None) -> Change:
        # PostgreSQL's jsonb refuses the NUL character (SQLite stores it): on PostgreSQL this call's write fails
        assert current is not None
        return Change({**current.doc, NS + "label": [{"type": "Property", "value": "a\x00b"}]})

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, count=0), entity(2, count=0)], T0)
        calls = [store.modify("", ["urn:ngsi-ld:Thing:1"], _increment, T1) for _ in range(5)]
        calls.insert(2, store.modify("", ["urn:ngsi-ld:Thing:2"], poisoned, T1))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        if isinstance(store, PostgresStore):
            assert isinstance(outcomes[2], asyncpg.PostgresError)
        else:
            assert outcomes[2] == {"urn:ngsi-ld:Thing:2": None}
        assert [o for n, o in enumerate(outcomes) if n != 2] == [{"urn:ngsi-ld:Thing:1": v} for v in range(1, 6)]
        stored = await store.get("", "urn:ngsi-ld:Thing:1")
        assert stored is not None and stored.doc[COUNT][0]["value"] == 5
        records = await store.changes_after(0, 100)
        assert [r.seq for r in records] == sorted(r.seq for r in records)

    run(url, body)


def test_postgres_calls_made_together_share_one_transaction(tmp_path: Path) -> None:
    """What the group commit is for: calls queued while one runs commit together (one WAL flush, one turn
    on the change-log lock); each in a transaction of its own, 8 clients took turns on that lock.
    PostgreSQL only: its row xmin tells the transaction."""

    async def body(store: Any) -> None:
        await store.insert("", [entity(n, count=0) for n in range(8)], T0)
        await asyncio.gather(*(store.modify("", [f"urn:ngsi-ld:Thing:{n}"], _increment, T1) for n in range(8)))
        rows = await store.pool.fetch("SELECT id, xmin::text FROM entities")
        # the first call runs as soon as it is made; the 7 made while it ran share the next transaction
        assert len({r[1] for r in rows}) <= 2, rows

    with store_url("postgres", tmp_path / "unused.db", "test_group") as url:
        run(url, body)


def test_calls_from_many_clients_apply_in_the_order_they_were_made(url: str) -> None:
    """8 clients calling in a loop: groups follow each other (PostgreSQL: two in flight at once), and still
    every call sees the calls made before it on the entity, and the log chains them in that order."""

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        start = await store.last_change_seq()
        made: list[int] = []  # the value each call returned, in the order the calls were made
        rng = random.Random(16)

        async def client() -> None:
            for _ in range(25):
                await asyncio.sleep(rng.random() * 0.002)
                slot = len(made)
                made.append(0)
                made[slot] = (await store.modify("", ["urn:ngsi-ld:Thing:1"], _increment, T1))["urn:ngsi-ld:Thing:1"]

        await asyncio.gather(*(client() for _ in range(8)))
        assert made == list(range(1, 201))
        records = await store.changes_after(start, 1000)
        assert [r.after[COUNT][0]["value"] for r in records if r.after] == list(range(1, 201))
        for earlier, later in itertools.pairwise(records):
            assert later.before == earlier.after and later.seq > earlier.seq

    run(url, body)


def test_a_call_that_changes_its_document_in_place_and_raises_leaves_the_others_as_they_were(url: str) -> None:
    """Each function gets a document of its own: one that scribbles on it in place then raises (an
    apply_fragment adds a type to the list it was given, then finds a fault) changes nothing that the
    calls after it in the group see, nor any record already made."""

    def scribble(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        current.doc[COUNT][0]["value"] = 1000
        current.doc["type"].append(NS + "Scribbled")
        raise ValueError("refused after scribbling")

    def scribble_quietly(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        current.doc[COUNT][0]["value"] = 2000  # in place, then nothing to write
        return Change(None, result="unchanged", changed=False)

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        start = await store.last_change_seq()
        calls = [_increment, scribble, _increment, scribble_quietly, _increment]
        outcomes = await asyncio.gather(*(store.modify("", ["urn:ngsi-ld:Thing:1"], fn, T1) for fn in calls),
                                        return_exceptions=True)
        assert [o if isinstance(o, Exception) else o["urn:ngsi-ld:Thing:1"] for o in outcomes][::2] == [1, 2, 3]
        assert isinstance(outcomes[1], ValueError) and outcomes[3] == {"urn:ngsi-ld:Thing:1": "unchanged"}
        records = await store.changes_after(start, 100)
        assert [(r.before[COUNT][0]["value"], r.after[COUNT][0]["value"]) for r in records if r.before and r.after] == [
            (0, 1), (1, 2), (2, 3)]
        assert all(NS + "Scribbled" not in (r.after or {}).get("type", []) for r in records)
        stored = await store.get("", "urn:ngsi-ld:Thing:1")
        assert stored is not None and stored.doc[COUNT][0]["value"] == 3 and NS + "Scribbled" not in stored.doc["type"]

    run(url, body)


@pytest.mark.timeout(60)  # before the fix every call after the refused group waited for ever, close() too
def test_postgres_calls_go_on_after_the_pool_could_not_connect(tmp_path: Path) -> None:
    """A group that found no connection (the database down, as `make faults` kills it) failed before it
    took its locks: the group after it waited for its turn for ever, and every later modify with it."""

    class Refusing:
        """The store's pool, whose next acquire fails as a pool's does when the database is down."""

        def __init__(self, pool: Any) -> None:
            self.pool, self.refusals = pool, 1

        def acquire(self, *args: Any, **kwargs: Any) -> Any:
            if self.refusals:
                self.refusals -= 1

                async def refuse() -> Any:
                    await asyncio.sleep(0.2)  # a connect attempt: the next group is taken meanwhile
                    raise ConnectionRefusedError("the database is down")
                return refuse()
            return self.pool.acquire(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pool, name)

    async def body(store: Any) -> None:
        await store.insert("", [entity(1, count=0)], T0)
        pool = store._pool
        store._pool = Refusing(pool)
        try:
            first = asyncio.ensure_future(store.modify("", ["urn:ngsi-ld:Thing:1"], _increment, T1))
            await asyncio.sleep(0.05)  # its group is taken, and waits for a connection
            outcomes = await asyncio.wait_for(asyncio.gather(
                first, *(store.modify("", ["urn:ngsi-ld:Thing:1"], _increment, T1) for _ in range(5)),
                return_exceptions=True), 20)
        finally:
            store._pool = pool
        assert isinstance(outcomes[0], ConnectionRefusedError)
        assert [o["urn:ngsi-ld:Thing:1"] for o in outcomes[1:] if isinstance(o, dict)] == [1, 2, 3, 4, 5]

    with store_url("postgres", tmp_path / "unused.db", "test_group") as url:
        run(url, body)


def test_postgres_entity_locks_taken_with_the_transaction_hold_ids_and_tenants_with_quotes(tmp_path: Path) -> None:
    """A group's BEGIN and entity locks go in one query with the keys as literals (issue 16, pgpatch19): an id
    or tenant with quotes and backslashes is locked under the same key as a parameter gives it (a transaction
    holding that lock keeps the call waiting until it commits) and the call applies as it did."""
    tenant, odd = "t'en\\ant", "urn:ngsi-ld:Thing:o'dd\\id\\'x"

    async def body(store: Any) -> None:
        doc = entity(1, count=0)
        doc["id"] = odd
        await store.insert(tenant, [doc], T0)
        holder = await asyncpg.connect(store.dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))", tenant, odd)
            call = asyncio.ensure_future(store.modify(tenant, [odd], _increment, T1))
            await asyncio.sleep(0.5)
            assert not call.done()  # waits for the lock the other transaction holds
            await tx.commit()
            assert (await call)[odd] == 1
        finally:
            await holder.close()
        stored = await store.get(tenant, odd)
        assert stored is not None and stored.doc[COUNT][0]["value"] == 1

    with store_url("postgres", tmp_path / "unused.db", "test_group") as url:
        run(url, body)
