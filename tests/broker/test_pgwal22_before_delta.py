"""PostgreSQL change records whose before image is a delta to their after image (issue 16, pgwal22, migration 8).

A single-attribute PATCH logged both whole documents: about half the log's WAL and most of its compression
CPU. The before image is now what it has that the after image has not (`_before_delta`), rebuilt on read
(`_before_doc`); a deletion keeps its whole before image, and records written before migration 8 stay
readable. What every consumer reads back from the log (history, subscriptions with showChanges, federation:
they all see ChangeRecord) must be the records the writer handed over in memory (RecentChanges), value for
value, down to the JSON each value encodes to.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

import broker.store.postgres as pg
from broker.store.base import Change, ChangeRecord, StoredEntity
from broker.store.migrations import POSTGRES_MIGRATIONS, migrate_postgres
from broker.store.postgres import PostgresStore, _before_delta, _before_doc
from tests.broker.test_store import NS, T0, T1, T2, entity

ONE, TWO, THREE = "urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3"
NO2 = NS + "no2"


def _json(record: ChangeRecord) -> tuple[Any, ...]:
    """A record as the JSON its images encode to, members sorted (top-level order is no contract: see the module)."""
    def enc(doc: Any) -> Any:
        return None if doc is None else orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    return record.seq, record.tenant, record.entity_id, record.at, enc(record.before), enc(record.after)


def _patch(name: str, value: Any) -> Any:
    """A modify function as the PATCH service's: one attribute replaced, the given document left intact."""

    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        doc = dict(current.doc)
        doc[NS + name] = [{"type": "Property", "value": value}]
        return Change(doc, before_intact=True)

    return fn


def _drop(name: str) -> Any:
    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        return Change({k: v for k, v in current.doc.items() if k != NS + name})

    return fn


def _steps(entity_id: str, current: StoredEntity | None) -> Change:
    """Two instances of one id in a batch (Change.steps): one record per instance, chained."""
    assert current is not None
    first = {**current.doc, NS + "count": [{"type": "Property", "value": 1}]}
    return Change({**first, NS + "count": [{"type": "Property", "value": 2}], NS + "extra": [{"type": "Property", "value": "x"}]},
                  steps=[first])


async def _logged(store: PostgresStore) -> list[ChangeRecord]:
    """The log as a reader that has not seen the writes (another process, a restart) reads it back."""
    store._recent.clear()
    return await store.changes_after(0, 10000)


def _run(pg_schema: tuple[str, str], body: Any) -> None:
    dsn, schema = pg_schema

    async def main() -> None:
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_patch_logs_only_what_its_before_image_has_that_its_after_image_has_not(pg_schema: tuple[str, str]) -> None:
    """Fails before pgwal22: before_doc held the whole document."""

    async def body(store: PostgresStore) -> None:
        await store.insert("", [entity(1, no2=3.0, lng=5.1, pm10=20.0, pm25=9.0, temperature=14.5)], T0)
        for n in range(3):  # the first group goes with locks, the next read without, then from the kept version
            await store.modify("", [ONE], _patch("no2", 10.0 + n), T1)
        rows = await store.pool.fetch("SELECT before_doc, after_doc FROM change_log WHERE before_doc IS NOT NULL ORDER BY seq")
        assert len(rows) == 3
        for n, (before, after) in enumerate(rows):
            first = [{"type": "Property", "value": 3.0, "unitCode": "GQ"}]
            assert orjson.loads(before) == [{NO2: first if n == 0 else [{"type": "Property", "value": 9.0 + n}]}, []]
            assert len(before) < len(after) / 3
        in_memory = await store.changes_after(0, 1000)
        assert [r.before[NO2][0]["value"] for r in in_memory if r.before] == [3.0, 10.0, 11.0]
        assert list(map(_json, await _logged(store))) == list(map(_json, in_memory))

    _run(pg_schema, body)


def test_every_kind_of_write_reads_back_from_the_log_as_it_was_handed_over(pg_schema: tuple[str, str]) -> None:
    """Guards behaviour that must not change (passes before pgwal22 too): creates, PATCHes, an attribute added
    and one removed, replaces, steps of a repeated id, a deletion, values Python finds equal but JSON does not
    (1.0 and 1, true and 1), a type added: each record read back from the log is the one written."""

    async def body(store: PostgresStore) -> None:
        await store.insert("", [entity(1, no2=1.0, flag=True, lng=5.1), entity(2, no2=4.0), entity(3, no2=5.0)], T0)
        await store.modify("", [ONE], _patch("no2", 1), T1)  # 1.0 -> 1: equal in Python, not in JSON
        await store.modify("", [ONE], _patch("flag", 1), T1)  # true -> 1
        await store.modify("", [ONE], _patch("flag", 1), T1)  # the same value again: nothing but modifiedAt
        await store.modify("", [ONE, TWO], _patch("added", {"a": [1, 2.5]}), T1)  # a new attribute
        await store.modify("", [ONE], _drop("flag"), T2)  # an attribute removed
        await store.modify("", [TWO], _steps, T2)  # two records for one id, chained
        replaced = entity(3, NS + "Other", no2=5.0, lng=5.2)  # a type added, a location, the same no2
        await store.upsert_replace("", [replaced, entity(4, no2=1.0)], T2)
        await store.modify("", [THREE], lambda i, c: Change(None), T2)  # deleted: the whole before image
        await store.delete("", [TWO])
        in_memory = await store.changes_after(0, 1000)
        assert len(in_memory) == 15
        logged = await _logged(store)
        assert list(map(_json, logged)) == list(map(_json, in_memory))
        flag = [r for r in logged if r.entity_id == ONE and r.before and NS + "flag" in r.before]
        assert orjson.dumps(flag[0].before[NS + "flag"]) == b'[{"type":"Property","value":true}]'
        patched = [r for r in logged if r.entity_id == ONE and r.before is not None]
        assert orjson.dumps(patched[0].before[NO2]) == b'[{"type":"Property","value":1.0,"unitCode":"GQ"}]'
        assert orjson.dumps(patched[0].after[NO2]) == b'[{"type":"Property","value":1}]'  # type: ignore[index]
        deletions = await store.pool.fetch("SELECT before_doc FROM change_log WHERE after_doc IS NULL")
        assert len(deletions) == 2 and all(orjson.loads(r[0])["id"] in (TWO, THREE) for r in deletions)
        # a replace stamps every instance anew: its before image stays whole (a delta would be all of it)
        whole = await store.pool.fetchval("SELECT before_doc FROM change_log WHERE entity_id = $1 AND after_doc IS NOT NULL"
                                          " ORDER BY seq DESC LIMIT 1", THREE)
        assert orjson.loads(whole)["id"] == THREE

    _run(pg_schema, body)


def test_the_delta_rebuilds_the_before_document_it_was_made_from() -> None:
    """Guards behaviour that must not change: `_before_doc(_before_delta(b, a), a) == b` as JSON, members apart."""
    before = {"id": "x", "type": ["T"], "a": [{"value": 1.0}], "b": [{"value": True}], "c": [{"value": "same"}],
              "gone": [{"value": 0}], "createdAt": T0, "modifiedAt": T0}
    after = {"id": "x", "type": ["T", "U"], "a": [{"value": 1}], "b": [{"value": 1}], "c": before["c"],
             "new": [{"value": None}], "createdAt": T0, "modifiedAt": T1}
    delta = _before_delta(before, after)
    assert orjson.loads(delta) == [{"type": ["T"], "a": [{"value": 1.0}], "b": [{"value": True}], "gone": [{"value": 0}]},
                                   ["new"]]
    rebuilt = _before_doc(delta, {k: v for k, v in after.items() if k not in ("createdAt", "modifiedAt")})
    expected = {k: v for k, v in before.items() if k not in ("createdAt", "modifiedAt")}
    assert orjson.dumps(rebuilt, option=orjson.OPT_SORT_KEYS) == orjson.dumps(expected, option=orjson.OPT_SORT_KEYS)
    assert rebuilt["c"] is after["c"]  # untouched values are shared, as in the writer's records


def test_upgrade_from_version_7_keeps_whole_before_images_readable_and_compresses_the_log_with_lz4(
        pg_schema: tuple[str, str]) -> None:
    """Fails before pgwal22: there is no version 8 (and no lz4 on the log's columns)."""
    dsn, schema = pg_schema
    old = entity(1, no2=3.0, pm10=7.0)
    new = entity(1, no2=4.0, pm10=7.0)

    async def version_7() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            assert await migrate_postgres(conn, target=7) == 7
            # a PATCH's record as version 7 wrote it, not yet read by its consumers: both images whole
            await conn.execute("INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES ('', $1, $2::jsonb, $3, $4)",
                               ONE, orjson.dumps(new).decode(), T0, T1)
            await conn.execute("INSERT INTO change_log (tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
                               " after_doc, after_created_at, after_modified_at) VALUES ('', $1, $2, $3, $4, $4, $5, $4, $2)",
                               ONE, T1, orjson.dumps(old).decode(), T0, orjson.dumps(new).decode())
        finally:
            await conn.close()

    asyncio.run(version_7())

    async def body(store: PostgresStore) -> None:
        assert await store.pool.fetchval("SELECT max(version) FROM schema_version") == len(POSTGRES_MIGRATIONS) >= 8
        lz4 = await store.pool.fetchval("SELECT EXISTS (SELECT FROM pg_config() WHERE name = 'CONFIGURE'"
                                        " AND setting LIKE '%with-lz4%')")
        methods = await store.pool.fetch("SELECT attname::text, attcompression::text FROM pg_attribute WHERE attrelid = 'change_log'::regclass"
                                         " AND attname IN ('before_doc', 'after_doc') ORDER BY attname")
        assert [(r[0], r[1]) for r in methods] == [("after_doc", "l" if lz4 else ""), ("before_doc", "l" if lz4 else "")]
        [record] = await store.changes_after(0, 10)
        assert record.before == {**old, "createdAt": T0, "modifiedAt": T0}
        assert record.after == {**new, "createdAt": T0, "modifiedAt": T1}
        await store.modify("", [ONE], _patch("no2", 5.0), T2)  # written the new way, after the old one
        records = await _logged(store)
        assert [r.before[NO2][0]["value"] for r in records if r.before] == [3.0, 4.0]
        assert records[1].before == {**new, "createdAt": T0, "modifiedAt": T1}
        assert orjson.loads(await store.pool.fetchval("SELECT before_doc FROM change_log ORDER BY seq DESC LIMIT 1"))[1] == []

    _run(pg_schema, body)


def test_the_checked_write_is_planned_once_per_connection_not_once_per_group(pg_schema: tuple[str, str]) -> None:
    """Fails before pgwal22: PostgreSQL planned `_CHECKED_WRITE` afresh for every group (a custom plan each time:
    with its arrays as constants, their exact lengths made the custom plans look cheaper than the generic one),
    a quarter of the server's CPU under single-attribute PATCH (perf). Its arrays are now seen through a
    sub-select, so after PostgreSQL's five custom plans it keeps the generic one (pg_prepared_statements)."""

    async def body(store: PostgresStore) -> None:
        # a table of some size, its statistics known (autovacuum's ANALYZE): on 4 rows and no statistics,
        # PostgreSQL found the generic plan cheap enough before pgwal22 too
        await store.insert("", [entity(n, no2=1.0, lng=5.0, pm10=3.0) for n in range(1000)], T0)
        await store.pool.execute("ANALYZE entities")
        ids = [f"urn:ngsi-ld:Thing:{n}" for n in range(4)]
        loop = asyncio.get_running_loop()
        async with store.pool.acquire() as conn:
            for n in range(12):
                jobs = [pg._ModifyJob("", [i], _patch("no2", float(n)), T1) for i in ids]
                done = loop.create_future()
                done.set_result(None)
                records = await store._optimistic(conn, "", jobs, sorted(ids), done)
                assert records is not None and len(records) == 4  # written by the checked write
            plans = await conn.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                        " WHERE statement LIKE '%WITH chk AS%' AND statement NOT LIKE '%pg_prepared_statements%'")
        assert plans is not None and plans["custom_plans"] <= 5 and plans["generic_plans"] >= 7, dict(plans or {})
        assert [r.after[NO2][0]["value"] for r in (await _logged(store))[-4:] if r.after] == [11.0] * 4

    _run(pg_schema, body)
