"""One suite run against both stores: SQLite on a temporary file, PostgreSQL on a throwaway schema."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
import pytest

from broker.query.geo import GeoQuery, bbox_for_prefilter, compile_geo, distance, parse_geoquery
from broker.store import Change, EntityFilter, Store, StoredEntity, open_store
from broker.store.base import ChangeRecord
from broker.store.migrations import (
    POSTGRES_MIGRATIONS,
    has_geometry,
    index_rows,
    migrate_postgres,
    migrate_sqlite,
    pg_box,
)
from broker.store.postgres import PostgresStore, _record
from models.errors import InvalidQuery
from tests.pg import store_url

T = TypeVar("T")
NS = "https://smartdatamodels.org/dataModel.Environment/"
AQO = NS + "AirQualityObserved"
NLO = NS + "NoiseLevelObserved"
DEVICE = "https://smartdatamodels.org/dataModel.Device/Device"
NO2 = NS + "no2"
NOISE = NS + "LAeq"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
NAME = "https://schema.org/name"
T0, T1, T2 = "2026-11-26T06:00:00Z", "2026-11-26T07:00:00Z", "2026-11-26T08:00:00Z"


def entity(n: int | str, *types: str, no2: float | None = None, lng: float | None = None, lat: float = 43.5, **attrs: Any) -> dict[str, Any]:
    """A small ENF entity; `lng` adds a Point location."""
    doc: dict[str, Any] = {"id": f"urn:ngsi-ld:Thing:{n}", "type": list(types or (AQO,))}
    if no2 is not None:
        doc[NO2] = [{"type": "Property", "value": no2, "unitCode": "GQ"}]
    if lng is not None:
        doc[LOCATION] = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lng, lat]}}]
    for name, value in attrs.items():
        doc[NS + name] = [{"type": "Property", "value": value}]
    return doc


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL naming fresh, isolated storage."""
    with store_url(request.param, tmp_path / "data" / "broker.db", "test_store") as url:
        yield url


def run(url: str, body: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store in a fresh event loop, run body, close."""

    async def main() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def ids(entities: list[StoredEntity]) -> list[str]:
    return [e.doc["id"] for e in entities]


async def query_ids(store: Store, tenant: str = "", **filters: Any) -> list[str]:
    page = await store.query(tenant, EntityFilter(**filters), limit=1000, offset=0, count=False)
    return ids(page.entities)


def test_tenants_are_created_on_first_write_and_isolated(url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.has_tenant("")
        assert not await store.has_tenant("aix")
        await store.insert("aix", [entity(1, no2=10)], T0)
        await store.insert("marseille", [entity(1, NLO)], T0)
        await store.ensure_tenant("toulon")
        assert await store.has_tenant("aix")
        assert await store.tenants() == ["aix", "marseille", "toulon"]
        aix, mrs = await store.get("aix", "urn:ngsi-ld:Thing:1"), await store.get("marseille", "urn:ngsi-ld:Thing:1")
        assert aix is not None and mrs is not None
        assert aix.doc["type"] == [AQO] and mrs.doc["type"] == [NLO]
        assert await store.get("", "urn:ngsi-ld:Thing:1") is None
        assert await query_ids(store, "marseille", type_dnf=[frozenset({AQO})]) == []
        assert await store.delete("aix", ["urn:ngsi-ld:Thing:1"]) == ["urn:ngsi-ld:Thing:1"]
        assert await store.get("marseille", "urn:ngsi-ld:Thing:1") is not None

    run(url, body)


def test_insert_reports_conflicts_and_writes_only_new(url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.insert("", [entity(1, no2=1), entity(2, no2=2)], T0) == []
        conflicts = await store.insert("", [entity(2, no2=20), entity(3, no2=3), entity(3, no2=30)], T1)
        assert conflicts == ["urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3"]
        got = await store.get_many("", ["urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3", "urn:ngsi-ld:Thing:9"])
        assert set(got) == {"urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3"}
        assert got["urn:ngsi-ld:Thing:2"].doc[NO2][0]["value"] == 2
        assert got["urn:ngsi-ld:Thing:2"].created_at == T0
        assert got["urn:ngsi-ld:Thing:3"].doc[NO2][0]["value"] == 3  # the first of two in a batch wins

    run(url, body)


def test_upsert_replace_keeps_created_at_and_reindexes(url: str) -> None:
    async def body(store: Store) -> None:
        await store.insert("", [entity(1, no2=1, lng=5.0)], T0)
        created = await store.upsert_replace("", [entity(1, DEVICE, name="x"), entity(2, no2=2)], T1)
        assert created == ["urn:ngsi-ld:Thing:2"]
        one = await store.get("", "urn:ngsi-ld:Thing:1")
        assert one is not None
        assert (one.created_at, one.modified_at) == (T0, T1)
        assert NO2 not in one.doc and one.doc["type"] == [DEVICE]
        # the side tables follow the new document: old type, attribute and location are gone
        assert await query_ids(store, type_dnf=[frozenset({AQO})]) == ["urn:ngsi-ld:Thing:2"]
        assert await query_ids(store, attrs_any=frozenset({NO2})) == ["urn:ngsi-ld:Thing:2"]
        assert await query_ids(store, geo_bbox=(LOCATION, (4.0, 43.0, 6.0, 44.0))) == []
        # system timestamps live in columns, never in the stored document
        await store.upsert_replace("", [{**entity(3), "createdAt": T0, "modifiedAt": T0}], T2)
        three = await store.get("", "urn:ngsi-ld:Thing:3")
        assert three is not None and "createdAt" not in three.doc and three.created_at == T2

    run(url, body)


def test_modify_updates_creates_deletes_and_returns_results(url: str) -> None:
    seen: dict[str, StoredEntity | None] = {}

    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        seen[entity_id] = current
        if entity_id.endswith(":1"):
            doc = dict(current.doc) if current else {}
            doc[NO2] = [{"type": "Property", "value": 99}]
            return Change(doc, result="updated")
        if entity_id.endswith(":2"):
            return Change(None, result="deleted")
        if entity_id.endswith(":3"):
            return Change(entity(3, NLO), result="created")
        return Change(None, result="untouched", changed=False)

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, no2=1), entity(2, no2=2), entity(4, no2=4)], T0)
        ids_ = ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3", "urn:ngsi-ld:Thing:4"]
        results = await store.modify("", ids_, fn, T1)
        assert results == dict(zip(ids_, ["updated", "deleted", "created", "untouched"]))
        assert seen["urn:ngsi-ld:Thing:3"] is None and seen["urn:ngsi-ld:Thing:1"] is not None
        one = await store.get("", "urn:ngsi-ld:Thing:1")
        assert one is not None and one.doc[NO2][0]["value"] == 99 and (one.created_at, one.modified_at) == (T0, T1)
        assert await store.get("", "urn:ngsi-ld:Thing:2") is None
        three = await store.get("", "urn:ngsi-ld:Thing:3")
        assert three is not None and three.created_at == T1
        four = await store.get("", "urn:ngsi-ld:Thing:4")
        assert four is not None and four.modified_at == T0
        assert await query_ids(store, type_dnf=[frozenset({NLO})]) == ["urn:ngsi-ld:Thing:3"]
        assert await query_ids(store, type_dnf=[frozenset({AQO})]) == ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:4"]

    run(url, body)


def test_modify_rolls_back_when_the_function_fails(url: str) -> None:
    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        if entity_id.endswith(":2"):
            raise RuntimeError("refused")
        return Change(entity(entity_id.rsplit(":", 1)[1], no2=50))

    async def body(store: Store) -> None:
        with pytest.raises(RuntimeError):
            await store.modify("lyon", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"], fn, T0)
        assert await store.get("lyon", "urn:ngsi-ld:Thing:1") is None
        assert not await store.has_tenant("lyon")

    run(url, body)


def test_concurrent_modify_loses_no_update(url: str) -> None:
    def increment(entity_id: str, current: StoredEntity | None) -> Change:
        doc = dict(current.doc) if current else entity(entity_id.rsplit(":", 1)[1], count=0)
        doc[NS + "count"] = [{"type": "Property", "value": doc[NS + "count"][0]["value"] + 1}]
        return Change(doc, result=doc[NS + "count"][0]["value"])

    async def body(store: Store) -> None:
        targets = ["urn:ngsi-ld:Thing:a", "urn:ngsi-ld:Thing:b"]
        # both ids in every call, in both orders: no lost update and no deadlock
        calls = [store.modify("", targets if n % 2 else targets[::-1], increment, T1) for n in range(60)]
        results = await asyncio.gather(*calls)
        assert sorted(r["urn:ngsi-ld:Thing:a"] for r in results) == list(range(1, 61))
        for target in targets:
            got = await store.get("", target)
            assert got is not None and got.doc[NS + "count"][0]["value"] == 60

    run(url, body)


def test_delete(url: str) -> None:
    async def body(store: Store) -> None:
        await store.insert("", [entity(1, lng=5.0), entity(2, lng=5.1)], T0)
        gone = await store.delete("", ["urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:9", "urn:ngsi-ld:Thing:2"])
        assert gone == ["urn:ngsi-ld:Thing:2"]
        assert await query_ids(store) == ["urn:ngsi-ld:Thing:1"]
        assert await query_ids(store, geo_bbox=(LOCATION, (4.0, 43.0, 6.0, 44.0))) == ["urn:ngsi-ld:Thing:1"]
        assert [s.count for s in await store.type_summaries("")] == [1]

    run(url, body)


def test_query_filters(url: str) -> None:
    async def body(store: Store) -> None:
        await store.insert(
            "",
            [
                entity("aix-1", AQO, no2=10, lng=5.45, lat=43.53),
                entity("aix-2", AQO, NLO, lng=5.44, lat=43.52, LAeq=55),
                entity("mrs-1", NLO, lng=5.37, lat=43.30, LAeq=60),
                entity("mrs-2", DEVICE, name="sensor"),
                {"id": "urn:ngsi-ld:Thing:area", "type": [DEVICE],
                 LOCATION: [{"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[5.0, 43.0], [5.2, 43.0], [5.2, 43.2], [5.0, 43.0]]]}}]},
            ],
            T0,
        )
        pre = "urn:ngsi-ld:Thing:"
        assert await query_ids(store, ids=[pre + "mrs-1", pre + "aix-1", pre + "none"]) == [pre + "aix-1", pre + "mrs-1"]
        assert await query_ids(store, ids=[]) == []
        assert await query_ids(store, id_pattern=r"aix-\d$") == [pre + "aix-1", pre + "aix-2"]
        assert await query_ids(store, id_pattern="^urn:ngsi-ld:Thing:mrs") == [pre + "mrs-1", pre + "mrs-2"]
        assert await query_ids(store, type_dnf=[frozenset({NLO})]) == [pre + "aix-2", pre + "mrs-1"]
        assert await query_ids(store, type_dnf=[frozenset({AQO, NLO})]) == [pre + "aix-2"]
        assert await query_ids(store, type_dnf=[frozenset({AQO, NLO}), frozenset({DEVICE})]) == [pre + "aix-2", pre + "area", pre + "mrs-2"]
        assert await query_ids(store, type_dnf=[]) == []
        assert await query_ids(store, attrs_any=frozenset({NO2, NOISE})) == [pre + "aix-1", pre + "aix-2", pre + "mrs-1"]
        assert await query_ids(store, attrs_any=frozenset({NS + "name"})) == [pre + "mrs-2"]
        aix_box = (5.40, 43.50, 5.50, 43.60)
        assert await query_ids(store, geo_bbox=(LOCATION, aix_box)) == [pre + "aix-1", pre + "aix-2"]
        assert await query_ids(store, geo_bbox=(LOCATION, (5.1, 43.1, 5.15, 43.15))) == [pre + "area"]
        assert await query_ids(store, geo_bbox=(LOCATION, (6.0, 44.0, 7.0, 45.0))) == []
        assert await query_ids(store, geo_bbox=(NAME, aix_box)) == []
        combined = {"type_dnf": [frozenset({NLO})], "geo_bbox": (LOCATION, aix_box), "id_pattern": "aix"}
        assert await query_ids(store, **combined) == [pre + "aix-2"]
        # type selection checked per candidate when ids or a geo box narrow them first
        assert await query_ids(store, type_dnf=[frozenset({AQO, NLO})], geo_bbox=(LOCATION, aix_box)) == [pre + "aix-2"]
        assert await query_ids(store, type_dnf=[frozenset({AQO}), frozenset({DEVICE})],
                               geo_bbox=(LOCATION, (5.0, 43.0, 5.5, 43.6))) == [pre + "aix-1", pre + "aix-2", pre + "area"]
        assert await query_ids(store, type_dnf=[frozenset({NLO})], ids=[pre + "aix-1", pre + "aix-2", pre + "mrs-2"]) == [pre + "aix-2"]

    run(url, body)


def test_predicate_count_and_pagination(url: str) -> None:
    async def body(store: Store) -> None:
        docs = [entity(f"{n:04d}", AQO if n % 3 else NLO, no2=float(n)) for n in range(700)]
        await store.insert("", docs, T0)
        aqo = [d["id"] for d in docs if AQO in d["type"]]
        page = await store.query("", EntityFilter(type_dnf=[frozenset({AQO})]), limit=20, offset=100, count=True)
        assert ids(page.entities) == aqo[100:120] and page.total == len(aqo)
        page = await store.query("", EntityFilter(type_dnf=[frozenset({AQO})]), limit=20, offset=100, count=False)
        assert page.total is None and ids(page.entities) == aqo[100:120]

        def even(doc: dict[str, Any]) -> bool:
            return doc[NO2][0]["value"] % 2 == 0

        wanted = [d["id"] for d in docs if AQO in d["type"] and even(d)]
        flt = EntityFilter(type_dnf=[frozenset({AQO})], predicate=even)
        walked: list[str] = []
        offset = 0
        while True:  # page through everything: no gap, no repeat
            page = await store.query("", flt, limit=50, offset=offset, count=True)
            assert page.total == len(wanted)
            if not page.entities:
                break
            walked += ids(page.entities)
            offset += 50
        assert walked == wanted
        page = await store.query("", flt, limit=0, offset=0, count=True)
        assert page.entities == [] and page.total == len(wanted)
        page = await store.query("", flt, limit=7, offset=len(wanted) - 3, count=False)
        assert ids(page.entities) == wanted[-3:] and page.total is None

    run(url, body)


def test_type_summaries(url: str) -> None:
    async def body(store: Store) -> None:
        await store.insert("", [entity(1, AQO, no2=1, lng=5.0), entity(2, AQO, NLO, LAeq=50)], T0)
        await store.insert("", [{"id": "urn:ngsi-ld:Thing:3", "type": [NLO], NOISE: [{"type": "Relationship", "object": "urn:x"}]}], T0)
        await store.insert("other", [entity(9, DEVICE)], T0)
        summaries = {s.type_iri: s for s in await store.type_summaries("")}
        assert set(summaries) == {AQO, NLO}
        assert summaries[AQO].count == 2 and summaries[NLO].count == 2
        assert summaries[AQO].attributes == {NO2: {"Property"}, LOCATION: {"GeoProperty"}, NOISE: {"Property"}}
        assert summaries[NLO].attributes == {NOISE: {"Property", "Relationship"}}

    run(url, body)


def test_contexts_persist(url: str) -> None:
    async def write(store: Store) -> None:
        await store.put_context("ctx-1", {"@context": {"no2": NO2}}, "hosted", T0)
        await store.put_context("ctx-2", {"@context": [NS]}, "cached", T1)
        await store.put_context("ctx-1", {"@context": {"no2": NO2, "x": "urn:x"}}, "hosted", T2)

    async def read(store: Store) -> list[tuple[str, Any, str, str]]:
        found = await store.get_contexts()
        assert await store.delete_context("ctx-2") and not await store.delete_context("ctx-2")
        return found

    run(url, write)
    assert run(url, read) == [
        ("ctx-1", {"@context": {"no2": NO2, "x": "urn:x"}}, "hosted", T0),
        ("ctx-2", {"@context": [NS]}, "cached", T1),
    ]
    assert [c[0] for c in run(url, lambda s: s.get_contexts())] == ["ctx-1"]


def test_reopen_finds_the_data(url: str) -> None:
    async def write(store: Store) -> None:
        await store.insert("aix", [entity(n, no2=n, lng=5 + n / 100) for n in range(50)], T0)

    async def read(store: Store) -> tuple[list[str], int | None, list[str]]:
        page = await store.query("aix", EntityFilter(geo_bbox=(LOCATION, (5.0, 43.0, 5.1, 44.0))), limit=100, offset=0, count=True)
        return await store.tenants(), page.total, [s.type_iri for s in await store.type_summaries("aix")]

    run(url, write)
    assert run(url, read) == (["aix"], 11, [AQO])


def test_migration_from_version_1_keeps_and_indexes_data(url: str) -> None:
    """A database left at version 1 (no attribute or geo side tables) upgrades on open."""
    docs = [entity(1, AQO, no2=1, lng=5.45), entity(2, NLO, LAeq=3)]
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        Path(path).parent.mkdir(parents=True)
        conn = sqlite3.connect(path, isolation_level=None)
        assert migrate_sqlite(conn, target=1) == 1
        for doc in docs:  # what the version 1 code wrote
            conn.execute("INSERT INTO entities VALUES ('', ?, ?, ?, ?)", (doc["id"], orjson.dumps(doc), T0, T0))
            conn.execute("INSERT INTO entity_types VALUES ('', ?, ?)", (doc["type"][0], doc["id"]))
        conn.close()
    else:
        dsn, schema = url.split("?schema=")

        async def version_1() -> None:
            conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
            try:
                await conn.execute(f'CREATE SCHEMA "{schema}"')
                assert await migrate_postgres(conn, target=1) == 1
                for doc in docs:
                    await conn.execute("INSERT INTO entities VALUES ('', $1, $2::jsonb, $3, $3)", doc["id"], orjson.dumps(doc).decode(), T0)
                    await conn.execute("INSERT INTO entity_types VALUES ('', $1, $2)", doc["type"][0], doc["id"])
            finally:
                await conn.close()

        asyncio.run(version_1())

    async def read(store: Store) -> None:
        one = await store.get("", "urn:ngsi-ld:Thing:1")
        assert one is not None and one.doc == docs[0] and one.created_at == T0
        assert await query_ids(store, attrs_any=frozenset({NOISE})) == ["urn:ngsi-ld:Thing:2"]
        assert await query_ids(store, geo_bbox=(LOCATION, (5.4, 43.4, 5.5, 43.6))) == ["urn:ngsi-ld:Thing:1"]
        summaries = {s.type_iri: s.attributes for s in await store.type_summaries("")}
        assert summaries == {AQO: {NO2: {"Property"}, LOCATION: {"GeoProperty"}}, NLO: {NOISE: {"Property"}}}
        await store.upsert_replace("", [entity(3, lng=5.41)], T1)  # and the upgraded schema takes writes
        assert await query_ids(store, geo_bbox=(LOCATION, (5.4, 43.4, 5.5, 43.6))) == ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:3"]
        # the change log starts empty on upgrade (existing entities are not replayed) and follows writes
        assert [(r.entity_id, r.before) for r in await store.changes_after(0, 10)] == [("urn:ngsi-ld:Thing:3", None)]

    run(url, read)


def test_open_store_urls(tmp_path: Path) -> None:
    from broker.store.postgres import PostgresStore
    from broker.store.sqlite import SQLiteStore

    memory = open_store("sqlite://:memory:")
    assert isinstance(memory, SQLiteStore) and memory.path == ":memory:"
    assert isinstance(open_store("sqlite:///data/b.db"), SQLiteStore) and open_store("sqlite:///data/b.db").path == "data/b.db"  # type: ignore[attr-defined]
    pg = open_store("postgresql://u@h:5432/db?schema=broker_1&sslmode=disable")
    assert isinstance(pg, PostgresStore) and pg.schema == "broker_1" and pg.dsn == "postgresql://u@h:5432/db?sslmode=disable"
    with pytest.raises(ValueError):
        open_store("mongodb://localhost")
    # an in-memory store is complete, reads going through the writer connection
    assert run("sqlite://:memory:", lambda s: _roundtrip(s)) == ["urn:ngsi-ld:Thing:1"]


async def _roundtrip(store: Store) -> list[str]:
    await store.insert("", [entity(1, lng=5.0)], T0)
    return await query_ids(store, geo_bbox=(LOCATION, (4.0, 43.0, 6.0, 44.0)), type_dnf=[frozenset({AQO})])


# ---------------------------------------------------------------- change log


def _with(doc: dict[str, Any], created: str, modified: str) -> dict[str, Any]:
    return {**doc, "createdAt": created, "modifiedAt": modified}


def _summary(records: list[ChangeRecord]) -> list[tuple[str, str, str | None, str | None]]:
    """(tenant, id, before modifiedAt, after modifiedAt) of each record."""
    return [(r.tenant, r.entity_id, r.before and r.before["modifiedAt"], r.after and r.after["modifiedAt"]) for r in records]


def test_change_log_follows_every_write_kind_in_order(url: str) -> None:
    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        if entity_id.endswith(":1"):
            assert current is not None
            return Change({**current.doc, NO2: [{"type": "Property", "value": 99}]})
        if entity_id.endswith(":2"):
            return Change(None)
        if entity_id.endswith(":5"):
            return Change(entity(5, NLO))
        return Change(None, changed=False)

    async def body(store: Store) -> None:
        assert await store.last_change_seq() == 0 and await store.changes_after(0, 10) == []
        one, two = entity(1, no2=1), entity(2, no2=2)
        assert await store.insert("aix", [one, two, entity(1, no2=7)], T0) == ["urn:ngsi-ld:Thing:1"]
        assert await store.insert("aix", [entity(2, no2=20)], T0) == ["urn:ngsi-ld:Thing:2"]  # nothing written, nothing logged
        inserted = await store.changes_after(0, 10)
        assert [(r.before, r.after, r.at) for r in inserted] == [(None, _with(one, T0, T0), T0), (None, _with(two, T0, T0), T0)]

        three = entity(3, DEVICE, name="x")
        replaced = {**entity(1, NLO, LAeq=50), "createdAt": T2}  # a client's createdAt is never stored
        await store.upsert_replace("aix", [replaced, three], T1)
        upserted = await store.changes_after(inserted[-1].seq, 10)
        assert [r.entity_id for r in upserted] == ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:3"]
        assert upserted[0].before == _with(one, T0, T0)
        assert upserted[0].after == _with(entity(1, NLO, LAeq=50), T0, T1)  # createdAt kept
        assert upserted[1].before is None and upserted[1].after == _with(three, T1, T1)

        await store.insert("aix", [entity(4)], T1)
        ids_ = ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:4", "urn:ngsi-ld:Thing:5", "urn:ngsi-ld:Thing:1"]
        await store.modify("aix", ids_, fn, T2)
        modified = await store.changes_after(upserted[-1].seq + 1, 10)
        # one record per entity written (Thing:1 twice in the call, once in the log), none for Thing:4
        assert _summary(modified) == [
            ("aix", "urn:ngsi-ld:Thing:1", T1, T2),
            ("aix", "urn:ngsi-ld:Thing:2", T0, None),
            ("aix", "urn:ngsi-ld:Thing:5", None, T2),
        ]
        assert modified[0].before is not None and modified[0].before["createdAt"] == T0
        assert modified[0].after is not None and modified[0].after[NO2] == [{"type": "Property", "value": 99}]
        assert modified[0].after["createdAt"] == T0 and modified[2].after == _with(entity(5, NLO), T2, T2)

        assert await store.delete("aix", ["urn:ngsi-ld:Thing:3", "urn:ngsi-ld:Thing:9"]) == ["urn:ngsi-ld:Thing:3"]
        deleted = await store.changes_after(modified[-1].seq, 10)
        assert len(deleted) == 1 and deleted[0].before == _with(three, T1, T1) and deleted[0].after is None
        assert deleted[0].at.endswith("Z") and deleted[0].at > T2[:4]

        everything = await store.changes_after(0, 100)
        seqs = [r.seq for r in everything]
        assert len(everything) == 9 and seqs == sorted(set(seqs)) and await store.last_change_seq() == seqs[-1]
        assert [r.seq for r in await store.changes_after(seqs[2], 3)] == seqs[3:6]

    run(url, body)


def test_a_rolled_back_write_logs_nothing(url: str) -> None:
    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        if entity_id.endswith(":2"):
            raise RuntimeError("refused")
        return Change(entity(entity_id.rsplit(":", 1)[1], no2=50))

    async def body(store: Store) -> None:
        await store.insert("", [entity(0)], T0)
        last = await store.last_change_seq()
        with pytest.raises(RuntimeError):
            await store.modify("", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"], fn, T1)
        with pytest.raises((TypeError, asyncpg.DataError)):  # orjson.JSONEncodeError, or asyncpg's encoder
            await store.upsert_replace("", [entity(3), {"id": "urn:ngsi-ld:Thing:4", "bad": {1, 2}}], T1)  # not serialisable
        assert await store.last_change_seq() == last and len(await store.changes_after(0, 10)) == 1
        await store.modify("", ["urn:ngsi-ld:Thing:1"], fn, T1)
        assert _summary(await store.changes_after(last, 10)) == [("", "urn:ngsi-ld:Thing:1", None, T1)]

    run(url, body)


def test_trim_changes_never_reuses_a_seq(url: str) -> None:
    async def body(store: Store) -> None:
        for n in range(5):
            await store.insert("", [entity(n)], T0)
        seqs = [r.seq for r in await store.changes_after(0, 10)]
        assert await store.trim_changes(seqs[1]) == 2
        assert [r.seq for r in await store.changes_after(0, 10)] == seqs[2:]
        assert await store.trim_changes(seqs[1]) == 0
        assert await store.trim_changes(seqs[-1]) == 3
        assert await store.changes_after(0, 10) == []
        await store.delete("", ["urn:ngsi-ld:Thing:0"])
        after = await store.changes_after(0, 10)
        assert len(after) == 1 and after[0].seq > seqs[-1] and await store.last_change_seq() == after[0].seq

    run(url, body)


def test_change_log_survives_reopen(url: str) -> None:
    async def write(store: Store) -> int:
        await store.insert("aix", [entity(1, no2=1)], T0)
        await store.upsert_replace("aix", [entity(1, no2=2)], T1)
        return await store.last_change_seq()

    last = run(url, write)
    records = run(url, lambda s: s.changes_after(0, 10))
    assert _summary(records) == [("aix", "urn:ngsi-ld:Thing:1", None, T0), ("aix", "urn:ngsi-ld:Thing:1", T0, T1)]
    assert records[-1].seq == last and records[-1].after is not None and records[-1].after[NO2][0]["value"] == 2
    assert run(url, lambda s: s.last_change_seq()) == last


def test_records_handed_over_in_process_equal_the_log(url: str) -> None:
    """A store may serve just-committed records from memory (broker.store.recent): the same ones its log holds."""

    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        return Change(None) if entity_id.endswith(":2") else Change(entity(entity_id.rsplit(":", 1)[1], no2=5))

    async def write(store: Store) -> list[ChangeRecord]:
        await store.insert("aix", [entity(1, no2=1), entity(2, no2=2)], T0)
        await store.upsert_replace("aix", [entity(1, NLO, LAeq=50), entity(3)], T1)
        await store.modify("aix", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:6"], fn, T2)
        await store.delete("aix", ["urn:ngsi-ld:Thing:3"])
        return await store.changes_after(0, 100)

    held = run(url, write)
    logged = run(url, lambda s: s.changes_after(0, 100))
    assert len(held) == 8 and held == logged


def test_before_image_is_what_was_stored_whether_or_not_fn_left_its_document_intact(url: str) -> None:
    """Change.before_intact lets a store log the document fn was given as the before image (no second decode);
    without it, an fn that changed its document in place still gets the stored one logged as before."""

    def in_place(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        current.doc[NO2][0]["value"] = 99  # in place: the before image must not show it
        return Change(dict(current.doc))

    def copying(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        doc = dict(current.doc)
        doc[NOISE] = [{"type": "Property", "value": current.doc[NOISE][0]["value"] + 1}]
        return Change(doc, before_intact=True)

    async def write(store: Store) -> list[ChangeRecord]:
        await store.insert("aix", [entity(1, no2=1, LAeq=40), entity(2, no2=2)], T0)
        await store.modify("aix", ["urn:ngsi-ld:Thing:2"], in_place, T1)
        await store.modify("aix", ["urn:ngsi-ld:Thing:1"], copying, T1)
        await store.modify("aix", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:1"], copying, T2)  # a repeated id
        return await store.changes_after(2, 100)

    held = run(url, write)
    assert [(r.entity_id, r.before is not None and r.before[NO2][0]["value"]) for r in held] == [
        ("urn:ngsi-ld:Thing:2", 2), ("urn:ngsi-ld:Thing:1", 1), ("urn:ngsi-ld:Thing:1", 1)]
    assert held[0].after is not None and held[0].after[NO2][0]["value"] == 99
    # the repeated id: one record (no steps), before it the stored document, after it the second call's
    assert [(r.before[NOISE][0]["value"], r.after[NOISE][0]["value"]) for r in held[1:] if r.before and r.after] == [
        (40, 41), (41, 43)]
    assert held == run(url, lambda s: s.changes_after(2, 100))  # as the log holds them
    # the document fn was given is the before image: untouched parts are shared (on PostgreSQL too since
    # issue 16, pgpatch19: a group's modify decoded each stored row twice and shared nothing)
    first = held[1]
    assert first.before is not None and first.after is not None and first.before[NO2] is first.after[NO2]


def test_repeated_instances_are_logged_in_order_and_read_back_from_the_log(url: str) -> None:
    """A modify with Change.steps logs one record per instance, each before the previous after; the log read
    after reopening (not the in-memory records) gives the same images, timestamps included."""

    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        if entity_id.endswith(":1"):  # existing: two earlier instances, then the final one
            return Change(entity(1, no2=12), steps=[entity(1, no2=10), entity(1, no2=11)])
        return Change(entity(2, no2=21), steps=[entity(2, no2=20)])  # created by its first instance

    async def write(store: Store) -> list[ChangeRecord]:
        await store.insert("aix", [entity(1, no2=1)], T0)
        await store.modify("aix", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"], fn, T1)
        return await store.changes_after(1, 100)

    held = run(url, write)
    logged = run(url, lambda s: s.changes_after(1, 100))
    assert held == logged
    by_entity = sorted(logged, key=lambda r: r.entity_id)  # stable: each entity's records in seq order
    assert [(r.entity_id.rsplit(":", 1)[1], r.before and r.before[NO2][0]["value"], r.after and r.after[NO2][0]["value"])
            for r in by_entity] == [("1", 1, 10), ("1", 10, 11), ("1", 11, 12), ("2", None, 20), ("2", 20, 21)]
    assert all(r.after is not None and r.after["modifiedAt"] == T1 for r in logged)
    assert [r.after["createdAt"] for r in by_entity if r.after is not None] == [T0, T0, T0, T1, T1]
    assert logged[0].before is not None and (logged[0].before["createdAt"], logged[0].before["modifiedAt"]) == (T0, T0)


def test_modify_keeps_side_rows_of_unchanged_types_and_geometry(url: str) -> None:
    """A new reading leaves the type and geometry rows alone; a moved entity or a new type is reindexed."""

    def reading(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        return Change({**current.doc, NO2: [{"type": "Property", "value": 50}]})

    def moved(entity_id: str, current: StoredEntity | None) -> Change:
        return Change(entity(entity_id.rsplit(":", 1)[1], NLO, no2=60, lng=7.0))

    async def body(store: Store) -> None:
        await store.insert("", [entity(1, no2=1, lng=5.0), entity(2, no2=2, lng=5.5)], T0)
        await store.modify("", ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"], reading, T1)
        assert await query_ids(store, type_dnf=[frozenset({AQO})]) == ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2"]
        assert await query_ids(store, geo_bbox=(LOCATION, (4.9, 43.0, 5.1, 44.0))) == ["urn:ngsi-ld:Thing:1"]
        await store.modify("", ["urn:ngsi-ld:Thing:2"], moved, T2)
        assert await query_ids(store, type_dnf=[frozenset({AQO})]) == ["urn:ngsi-ld:Thing:1"]
        assert await query_ids(store, type_dnf=[frozenset({NLO})]) == ["urn:ngsi-ld:Thing:2"]
        assert await query_ids(store, geo_bbox=(LOCATION, (5.4, 43.0, 5.6, 44.0))) == []
        assert await query_ids(store, geo_bbox=(LOCATION, (6.9, 43.0, 7.1, 44.0))) == ["urn:ngsi-ld:Thing:2"]

    run(url, body)


def test_postgres_new_readings_do_not_rewrite_side_rows(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema

    def reading(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        return Change({**current.doc, NO2: [{"type": "Property", "value": 50}]})

    async def body() -> None:
        store = _pg_store(dsn, schema)
        await store.open()
        try:
            await store.insert("", [entity(1, no2=1, lng=5.0)], T0)
            side = "SELECT array_agg(ctid::text ORDER BY ctid) FROM (SELECT ctid FROM entity_types UNION ALL SELECT ctid FROM geo_boxes) s"
            async with store.pool.acquire() as conn:
                rows = await conn.fetchval(side)
                await store.modify("", ["urn:ngsi-ld:Thing:1"], reading, T1)
                assert await conn.fetchval(side) == rows  # the same row versions: nothing deleted and rewritten
                # a client's document has its members in its own order, not jsonb's: still the same rows
                client = entity(1, no2=2, lng=5.0)
                await store.upsert_replace("", [dict(reversed(list(client.items())))], T1)
                assert await conn.fetchval(side) == rows
                await store.modify("", ["urn:ngsi-ld:Thing:1"], lambda i, c: Change(entity(1, NLO, lng=6.0)), T2)
                assert await conn.fetchval(side) != rows
                moved = await conn.fetchval(side)
                await store.upsert_replace("", [entity(1, NLO, lng=6.5)], T2)
                assert await conn.fetchval(side) != moved
                assert await query_ids(store, geo_bbox=(LOCATION, (6.4, 43.0, 6.6, 44.0))) == ["urn:ngsi-ld:Thing:1"]
        finally:
            await store.close()

    asyncio.run(body())


def test_upgrade_from_version_6_turns_the_change_log_after_images_into_text(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    doc = entity(1, no2=3)

    async def version_6() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            assert await migrate_postgres(conn, target=6) == 6
            # a record as version 6 wrote it: the after image as jsonb, not yet read by history
            await conn.execute("INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES ('', $1, $2::jsonb, $3, $3)",
                               doc["id"], orjson.dumps(doc).decode(), T0)
            await conn.execute("INSERT INTO change_log (tenant, entity_id, at, after_doc, after_created_at, after_modified_at)"
                               " VALUES ('', $1, $2, $3::jsonb, $2, $2)", doc["id"], T0, orjson.dumps(doc).decode())
        finally:
            await conn.close()

    asyncio.run(version_6())

    async def read() -> None:
        store = _pg_store(dsn, schema)
        await store.open()
        try:
            async with store.pool.acquire() as conn:
                assert await conn.fetchval("SELECT max(version) FROM schema_version") == len(POSTGRES_MIGRATIONS)
                assert await conn.fetchval("SELECT data_type FROM information_schema.columns WHERE table_schema = $1"
                                           " AND table_name = 'change_log' AND column_name = 'after_doc'", schema) == "text"
                assert await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'entities'::regclass") == ["fillfactor=70"]
            [old] = await store.changes_after(0, 10)
            assert old.before is None and old.after == _with(doc, T0, T0)
            await store.upsert_replace("", [entity(1, no2=4)], T1)
            async with store.pool.acquire() as conn:
                rows = await conn.fetch("SELECT seq, tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
                                        " after_doc, after_created_at, after_modified_at FROM change_log ORDER BY seq")
            new = _record(rows[1])
            assert new.before == _with(doc, T0, T0) and new.after == _with(entity(1, no2=4), T0, T1)
        finally:
            await store.close()

    asyncio.run(read())


def test_concurrent_writes_log_in_commit_order(url: str) -> None:
    """A reader following `seq > cursor` while writers run sees every record exactly once."""

    async def body(store: Store) -> None:
        seen: list[int] = []
        done = False

        async def follow() -> None:
            cursor = 0
            while True:
                finished = done
                batch = await store.changes_after(cursor, 50)
                seen.extend(r.seq for r in batch)
                if batch:
                    cursor = batch[-1].seq
                elif finished:
                    return
                await asyncio.sleep(0)

        reader = asyncio.create_task(follow())
        await asyncio.gather(*(store.upsert_replace("", [entity(n % 7), entity(100 + n)], T1) for n in range(80)))
        done = True
        await reader
        assert seen == sorted(seen) and len(seen) == len(set(seen)) == 160

    run(url, body)


# ---------------------------------------------------------------- PostGIS


def _random_city(seed: int, count: int = 500) -> list[dict[str, Any]]:
    """Entities around Marseille: points mostly, lines, polygons, two instances, none, one as JSON text."""
    rng = random.Random(seed)

    def position() -> list[float]:
        return [round(5.30 + rng.random() * 0.16, 6), round(43.22 + rng.random() * 0.12, 6)]

    def square(lng: float, lat: float, half: float) -> dict[str, Any]:
        ring = [[lng - half, lat - half], [lng + half, lat - half], [lng + half, lat + half], [lng - half, lat + half]]
        return {"type": "Polygon", "coordinates": [ring + ring[:1]]}

    docs = []
    for n in range(count):
        kind = rng.random()
        if kind < 0.6:
            geometries: list[Any] = [{"type": "Point", "coordinates": position()}]
        elif kind < 0.7:
            geometries = [{"type": "LineString", "coordinates": [position() for _ in range(rng.randint(2, 4))]}]
        elif kind < 0.85:
            geometries = [square(*position(), rng.choice([0.001, 0.005, 0.02, 0.06]))]
        elif kind < 0.93:
            geometries = [{"type": "Point", "coordinates": position()}, square(*position(), 0.003)]
        elif kind < 0.97:
            geometries = []
        else:
            geometries = [orjson.dumps({"type": "Point", "coordinates": position()}).decode()]
        doc = entity(f"{n:04d}")
        if geometries:
            doc[LOCATION] = [{"type": "GeoProperty", "value": g} for g in geometries]
        docs.append(doc)
    return docs


# (georel, geometry, coordinates) around the Vieux-Port; the polygon is also stored as is (equals)
_REFERENCE_POLYGON = [[[5.36, 43.28], [5.40, 43.285], [5.395, 43.31], [5.365, 43.305], [5.36, 43.28]]]
_GEO_QUERIES = [
    (rel, "Polygon", _REFERENCE_POLYGON) for rel in ("within", "contains", "intersects", "disjoint", "equals", "overlaps")
] + [
    ("contains", "Point", [5.38, 43.29]),
    ("intersects", "LineString", [[5.31, 43.23], [5.45, 43.33]]),
    ("overlaps", "LineString", [[5.31, 43.29], [5.45, 43.29]]),
    ("equals", "Point", [5.38, 43.29]),
    ("near;maxDistance==500", "Point", [5.38, 43.29]),
    ("near;maxDistance==3000", "Point", [5.35, 43.25]),
    ("near;minDistance==4000", "Point", [5.38, 43.29]),
    ("near;maxDistance==800", "Polygon", _REFERENCE_POLYGON),
    ("near;minDistance==1500", "LineString", [[5.31, 43.23], [5.45, 43.33]]),
    # a 16 km segment: on the sphere its great-circle arc strays metres from the straight lng/lat segment
    ("near;maxDistance==1200", "LineString", [[5.31, 43.23], [5.45, 43.33]]),
]


def _python_side(docs: list[dict[str, Any]], query: GeoQuery) -> tuple[set[str], set[str]]:
    """(ids the Python predicate matches, ids within 0.5 m of a near limit: left out of the comparison)."""
    predicate = compile_geo(query, lambda term: term)
    matched = {d["id"] for d in docs if predicate(d)}
    doubtful: set[str] = set()
    limit = query.max_distance or query.min_distance
    if limit is not None:
        for doc in docs:
            for instance in doc.get(LOCATION, []):
                value = instance["value"]
                geometry = orjson.loads(value) if isinstance(value, str) else value
                if abs(distance(query.geometry, geometry) - limit) < 0.5:
                    doubtful.add(doc["id"])
    return matched, doubtful


def _pg_store(dsn: str, schema: str, **options: Any) -> PostgresStore:
    return PostgresStore(dsn, schema=schema, **options)


async def _geo_ids(store: Store, query: GeoQuery) -> set[str]:
    """What the store answers for the geo-query, the way the query service asks."""
    box = bbox_for_prefilter(query)
    predicate = None if store.exact_geo else compile_geo(query, lambda term: term)
    flt = EntityFilter(geo_bbox=None if box is None else (LOCATION, box), predicate=predicate, geo=query)
    page = await store.query("", flt, limit=1000, offset=0, count=True)
    assert page.total == len(page.entities)
    return set(ids(page.entities))


@pytest.mark.parametrize("georel, geometry, coordinates", _GEO_QUERIES)
def test_postgis_relations_agree_with_the_python_predicate(
    pg_schema: tuple[str, str], georel: str, geometry: str, coordinates: Any
) -> None:
    dsn, schema = pg_schema
    docs = _random_city(seed=13)
    # exact copies of the reference polygon, one starting from another vertex: equal as point sets
    ring = _REFERENCE_POLYGON[0]
    for n, shifted in enumerate((ring, ring[2:-1] + ring[:3])):
        docs.append({**entity(f"ref-{n}"), LOCATION: [{"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [shifted]}}]})
    docs.append({**entity("ref-point"), LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.38, 43.29]}}]})
    # a line along part of the overlaps reference line and beyond it
    line = {"type": "LineString", "coordinates": [[5.40, 43.29], [5.50, 43.29]]}
    docs.append({**entity("ref-line"), LOCATION: [{"type": "GeoProperty", "value": line}]})
    query = parse_geoquery(georel, geometry, orjson.dumps(coordinates).decode(), LOCATION)
    expected, doubtful = _python_side(docs, query)

    async def body() -> tuple[set[str], set[str]]:
        exact, fallback = _pg_store(dsn, schema), _pg_store(dsn, schema, postgis=False)
        await exact.open()
        await fallback.open()
        try:
            assert exact.exact_geo and not fallback.exact_geo
            await exact.insert("", docs[: len(docs) // 2], T0)
            await fallback.insert("", docs[len(docs) // 2 :], T0)  # a schema with geometries is kept whole by every writer
            return await _geo_ids(exact, query), await _geo_ids(fallback, query)
        finally:
            await exact.close()
            await fallback.close()

    postgis, python = asyncio.run(body())
    assert python == expected  # the fallback is the Python predicate over the bbox prefilter
    assert postgis - doubtful == expected - doubtful
    assert expected, "the query should match something"


def test_postgis_disabled_falls_back_then_a_later_open_adds_geometries(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    docs = _random_city(seed=7, count=200)
    query = parse_geoquery("near;maxDistance==2000", "Point", "[5.38,43.29]", LOCATION)
    expected, doubtful = _python_side(docs, query)

    async def body() -> None:
        store = _pg_store(dsn, schema, postgis=False)
        await store.open()
        try:
            assert not store.exact_geo
            await store.insert("", docs, T0)
            assert await _geo_ids(store, query) == expected
            async with store.pool.acquire() as conn:
                assert not await has_geometry(conn)  # PostGIS untouched: no geometry column
        finally:
            await store.close()
        store = _pg_store(dsn, schema)
        await store.open()  # PostGIS is there now: the column is added and backfilled
        try:
            assert store.exact_geo
            async with store.pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FILTER (WHERE geom IS NULL) FROM geo_boxes") == 0
            assert await _geo_ids(store, query) - doubtful == expected - doubtful
        finally:
            await store.close()

    asyncio.run(body())


def test_postgis_unavailable_keeps_the_store_working(pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A server without PostGIS (CREATE EXTENSION fails): one warning, then bbox + Python."""
    from broker.store import migrations

    dsn, schema = pg_schema
    monkeypatch.setattr(migrations, "POSTGIS_EXTENSION", "postgis_not_on_this_server")
    docs = _random_city(seed=3, count=100)
    query = parse_geoquery("within", "Polygon", orjson.dumps(_REFERENCE_POLYGON).decode(), LOCATION)
    expected, _ = _python_side(docs, query)

    async def body() -> None:
        store = _pg_store(dsn, schema)
        await store.open()
        try:
            assert not store.exact_geo
            await store.insert("", docs, T0)
            assert await _geo_ids(store, query) == expected
        finally:
            await store.close()

    with caplog.at_level("WARNING", logger="broker.store.postgres"):
        asyncio.run(body())
    assert [r.levelname for r in caplog.records if "PostGIS" in r.getMessage()] == ["WARNING"]


def test_upgrade_from_version_4_backfills_geometries(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    docs = _random_city(seed=5, count=120)

    async def version_4() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            assert await migrate_postgres(conn, target=4) == 4
            for doc in docs:  # entities as version 4 wrote them, with their boxes
                await conn.execute("INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES ('', $1, $2::jsonb, $3, $3)",
                                   doc["id"], orjson.dumps(doc).decode(), T0)
                for attr, box in index_rows(doc).boxes:
                    await conn.execute("INSERT INTO geo_boxes VALUES ('', $1, $2, $3)", doc["id"], attr, pg_box(box))
        finally:
            await conn.close()

    asyncio.run(version_4())
    query = parse_geoquery("intersects", "Polygon", orjson.dumps(_REFERENCE_POLYGON).decode(), LOCATION)
    expected, _ = _python_side(docs, query)
    instances = sum(len(index_rows(d).boxes) for d in docs)

    async def read() -> None:
        store = _pg_store(dsn, schema)
        await store.open()
        try:
            assert store.exact_geo
            async with store.pool.acquire() as conn:
                assert await conn.fetchval("SELECT max(version) FROM schema_version") == len(POSTGRES_MIGRATIONS)
                assert await conn.fetchval("SELECT count(*) FROM geo_boxes WHERE geom IS NOT NULL") == instances
                assert await conn.fetchval("SELECT count(*) FROM geo_boxes") == instances
            assert await _geo_ids(store, query) == expected
        finally:
            await store.close()

    asyncio.run(read())


def test_query_spec_leaves_the_geo_relation_to_an_exact_store() -> None:
    from broker.service.queries import QuerySpec

    class Core:
        """The core @context's one term this test needs."""

        def expand_term(self, term: str) -> str:
            return LOCATION if term == "location" else term

        def compact_iri(self, iri: str) -> str:
            return "location" if iri == LOCATION else iri

    spec = QuerySpec.from_params({"georel": "near;maxDistance==500", "geometry": "Point", "coordinates": "[5.38,43.29]"})
    ctx = Core()
    exact, python = spec.to_filter(ctx, exact_geo=True), spec.to_filter(ctx)
    assert exact.predicate is None and python.predicate is not None
    assert exact.geo is not None and exact.geo.geoproperty == LOCATION and exact.geo_bbox == python.geo_bbox
    with pytest.raises(InvalidQuery):  # the reference geometry is validated whatever the store
        QuerySpec.from_params(
            {"georel": "within", "geometry": "Polygon", "coordinates": "[[[0,0],[1,1],[0,0]]]"}
        ).to_filter(ctx, exact_geo=True)


def test_sqlite_point_read_on_the_calling_thread_and_its_fallback(tmp_path: Path) -> None:
    """A get by id reads on the calling thread and sees the last write; while another thread holds that
    connection, the read goes to a reader thread and answers the same."""
    from broker.store.sqlite import SQLiteStore

    async def body(store: Store) -> None:
        assert isinstance(store, SQLiteStore)
        await store.insert("", [entity(1, no2=1.0)], T0)
        await store.modify("", [entity(1)["id"]], lambda _id, current: Change(entity(1, no2=2.0)), T1)
        got = await store.get("", entity(1)["id"])  # right after a write: that write is seen
        assert got is not None and got.doc[NO2][0]["value"] == 2.0
        with store._inline_lock:  # in use elsewhere: never waited for
            held = await store.get("", entity(1)["id"])
            assert held is not None and held.doc == got.doc and held.modified_at == T1
            assert await store.get("", "urn:ngsi-ld:Thing:none") is None
        assert await store.get("", "urn:ngsi-ld:Thing:none") is None

    run(f"sqlite:///{tmp_path / 'broker.db'}", body)
