"""PostgreSQL upsert_replace parses geometries only where side rows may change; entities.doc in lz4 (issue 16, upsertpy23).

`attribute_walk` gives index_rows' (attribute, type) pairs without parsing geometries; `_same_types_geo` may only
say "same side rows" when index_rows would give the same types and geo rows.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import orjson

from broker.store.migrations import POSTGRES_MIGRATIONS, attribute_walk, index_rows, migrate_postgres
from broker.store.postgres import PostgresStore, _same_side_rows, _same_types_geo
from models.vocabulary import PROPERTY
from tests.broker.test_same_index import doc, mutate
from tests.broker.test_store import T0, T1, entity


def _side_rows(d: dict[str, Any]) -> tuple[set[str], list[Any]]:
    rows = index_rows(d)
    return set(rows.types), sorted(zip(rows.boxes, rows.shapes, strict=True))


def _jsonb_order(d: dict[str, Any]) -> dict[str, Any]:
    """The document as read back from jsonb: members by key length, then bytes."""
    return {k: d[k] for k in sorted(d, key=lambda k: (len(k.encode()), k.encode()))}


def test_shape_lists_index_rows_attrs_and_every_geoproperty() -> None:
    rnd = random.Random(23)
    for _ in range(3000):
        d = mutate(rnd, doc(rnd))
        attrs, geo = attribute_walk(d)
        # each attribute's instance types in the order they first appear (index_rows walks with attribute_walk
        # since the merge: this is the reading it had before, written out)
        assert attrs == [
            (name, kind)
            for name, insts in d.items()
            if name not in ("id", "type")
            for kind in dict.fromkeys(inst.get("type", PROPERTY) for inst in insts)
        ]
        assert geo == [
            (name, inst["value"])
            for name, insts in d.items()
            if name not in ("id", "type")
            for inst in insts
            if inst.get("type") == "GeoProperty"
        ]


def test_same_types_geo_never_claims_equal_side_rows_that_differ() -> None:
    rnd = random.Random(16)
    claimed = refused = 0
    for _ in range(5000):
        a = doc(rnd)
        b = mutate(rnd, a)
        before = _jsonb_order(orjson.loads(orjson.dumps(a)))
        if _same_types_geo(before, b, attribute_walk(b)[1]):
            claimed += 1
            assert _side_rows(before) == _side_rows(b), (a, b)
            assert _same_side_rows(before, b, index_rows(b))  # the full comparison agrees
        else:
            refused += 1
    assert claimed > 1000 and refused > 500  # it takes the common case, and is not always right by accident


def test_unusual_forms_are_listed_as_index_rows_lists_them() -> None:
    geo = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}
    d = {
        "id": "urn:x",
        "type": "T",
        "a": {"type": "Relationship", "object": "urn:y"},
        "b": "not an attribute",
        "c": [geo, {"type": "GeoProperty", "value": "bad"}, 3],
        "d": [{"value": 1}, {"type": "Property", "value": 2}],
    }
    attrs, geos = attribute_walk(d)
    assert attrs == index_rows(d).attrs == [("a", "Relationship"), ("c", "GeoProperty"), ("d", "Property")]
    assert geos == [("c", geo["value"]), ("c", "bad")]
    moved = {**d, "c": [{"type": "GeoProperty", "value": "bad"}, geo, 3]}
    assert not _same_types_geo(d, moved, attribute_walk(moved)[1])  # instance order within an attribute: maybe not the same
    assert _same_side_rows(d, moved, index_rows(moved))  # which the full comparison then settles
    assert not _same_types_geo(d, {**d, "type": ["T", "U"]}, geos)
    assert _same_types_geo(d, {**d, "type": ["T", "T"]}, geos)


def test_upgrade_from_version_8_compresses_entity_documents_with_lz4(pg_schema: tuple[str, str]) -> None:
    """Fails before upsertpy23: there is no version 9, and entities.doc stays pglz."""
    dsn, schema = pg_schema
    note = "a reading of the station, " * 160  # 4 kB: past the 2 kB PostgreSQL compresses a row's values from
    old = entity(1, no2=3.0, note=note)
    new = entity(2, no2=4.0, note=note)

    async def version_8() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            assert await migrate_postgres(conn, target=8) == 8
            await conn.execute(
                "INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES ('', $1, $2::jsonb, $3, $3)",
                old["id"],
                orjson.dumps(old).decode(),
                T0,
            )
        finally:
            await conn.close()

    asyncio.run(version_8())

    async def body() -> None:
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        try:
            pool = store.pool
            assert await pool.fetchval("SELECT max(version) FROM schema_version") == len(POSTGRES_MIGRATIONS) >= 9
            lz4 = await pool.fetchval(
                "SELECT EXISTS (SELECT FROM pg_config() WHERE name = 'CONFIGURE' AND setting LIKE '%with-lz4%')"
            )
            methods = await pool.fetch(
                "SELECT attname::text, attcompression::text FROM pg_attribute WHERE attrelid = 'entities'::regclass"
                " AND attname IN ('doc', 'attrs', 'attr_types') ORDER BY attname"
            )
            assert [tuple(r) for r in methods] == [
                (name, "l" if lz4 else "") for name in ("attr_types", "attrs", "doc")
            ]
            await store.upsert_replace("", [new], T1)
            compressed = dict(await pool.fetch("SELECT id, pg_column_compression(doc) FROM entities"))
            # the row written before keeps pglz and reads back as it was; the new one (2.9 kB: compressed) is lz4
            assert compressed == {old["id"]: "pglz", new["id"]: "lz4" if lz4 else "pglz"}
            got = await store.get_many("", [old["id"], new["id"]])
            assert got[old["id"]].doc == old and got[new["id"]].doc == new
        finally:
            await store.close()

    asyncio.run(body())
