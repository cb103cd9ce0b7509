"""SQLite store: the attributes of an entity as one row naming its attribute shape (migration 10, issue 16, upsertsql23).

A database of version 8 (entity_attrs: a row per entity and attribute) upgrades on open to entity_shapes (a row
per entity) and the shapes' pairs stored once; the queries by attribute and the type summaries answer as before,
and later writes (created, reindexed, deleted entities) keep them right.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from broker.store import EntityFilter, Store
from broker.store.migrations import index_rows, migrate_sqlite
from tests.broker.test_store import run

NS = "https://smartdatamodels.org/dataModel.Environment/"
AQO = NS + "AirQualityObserved"
NLO = NS + "NoiseLevelObserved"
NO2 = NS + "no2"
NOISE = NS + "LAeq"
NAME = "https://schema.org/name"
T0, T1 = "2026-11-26T06:00:00Z", "2026-11-26T07:00:00Z"


def entity(n: int, kind: str, **attrs: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": f"urn:ngsi-ld:Thing:{n}", "type": [kind]}
    for iri, value in attrs.items():
        doc[iri] = [value]
    return doc


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


DOCS = [
    entity(1, AQO, **{NO2: prop(1), NAME: prop("a")}),
    entity(2, AQO, **{NAME: prop("b"), NO2: prop(2)}),  # the same shape, members in another order
    entity(3, NLO, **{NOISE: prop(3)}),
    entity(4, NLO, **{NOISE: rel("urn:x")}),
    entity(5, NLO),  # no attribute: no row
]


async def _answers(store: Store, tenant: str) -> tuple[Any, ...]:
    async def ids(attrs: set[str]) -> list[str]:
        page = await store.query(tenant, EntityFilter(attrs_any=frozenset(attrs)), limit=100, offset=0, count=True)
        return [e.doc["id"] for e in page.entities] + [str(page.total)]

    summaries = {s.type_iri: (s.count, s.attributes) for s in await store.type_summaries(tenant)}
    return await ids({NO2}), await ids({NOISE}), await ids({NAME, NOISE}), await ids({NS + "none"}), summaries


def _tables(path: Path) -> tuple[set[str], int, int]:
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute("SELECT count(*) FROM entity_shapes").fetchone()[0]
        shapes = conn.execute("SELECT count(*) FROM attr_shapes").fetchone()[0]
        return names, rows, shapes
    finally:
        conn.close()


EXPECTED = (
    ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "2"],
    ["urn:ngsi-ld:Thing:3", "urn:ngsi-ld:Thing:4", "2"],
    ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3", "urn:ngsi-ld:Thing:4", "4"],
    ["0"],
    {AQO: (2, {NO2: {"Property"}, NAME: {"Property"}}), NLO: (3, {NOISE: {"Property", "Relationship"}})},
)


def test_a_version_8_database_upgrades_to_entity_shapes_with_the_same_answers(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate_sqlite(conn, target=8) == 8
    for tenant in ("", "aix"):
        for doc in DOCS:  # what the version 8 code wrote
            conn.execute("INSERT INTO entities VALUES (?, ?, ?, ?, ?)", (tenant, doc["id"], orjson.dumps(doc), T0, T0))
            side = index_rows(doc)
            conn.executemany("INSERT INTO entity_types VALUES (?, ?, ?)", [(tenant, t, doc["id"]) for t in side.types])
            conn.executemany("INSERT INTO entity_attrs VALUES (?, ?, ?, ?)",
                             [(tenant, doc["id"], a, k) for a, k in side.attrs])
    conn.close()

    async def read(store: Store) -> tuple[Any, ...]:
        return await _answers(store, ""), await _answers(store, "aix")

    assert run(f"sqlite:///{path}", read) == (EXPECTED, EXPECTED)
    names, rows, shapes = _tables(path)
    assert "entity_attrs" not in names and rows == 8 and shapes == 3  # 4 entities with attributes per tenant

    async def write(store: Store) -> tuple[Any, ...]:
        await store.upsert_replace("", [entity(6, AQO, **{NO2: prop(6), NAME: prop("f")})], T1)  # a known shape
        await store.upsert_replace("", [entity(3, NLO, **{NOISE: rel("urn:y")})], T1)  # reindexed: 3 as 4 is
        await store.delete("aix", ["urn:ngsi-ld:Thing:4"])
        return await _answers(store, ""), await _answers(store, "aix")

    here, aix = run(f"sqlite:///{path}", write)
    assert here[0] == ["urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:6", "3"]
    assert here[4][NLO] == (3, {NOISE: {"Relationship"}}) and here[4][AQO][0] == 3
    assert aix[1] == ["urn:ngsi-ld:Thing:3", "1"] and aix[4][NLO] == (2, {NOISE: {"Property"}})
    names, rows, shapes = _tables(path)
    assert rows == 8 and shapes == 3


def test_a_new_database_writes_a_row_per_entity_and_a_shape_once(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"

    async def body(store: Store) -> tuple[Any, ...]:
        await store.insert("", DOCS[:3], T0)
        await store.upsert_replace("", DOCS[3:], T0)
        await store.insert("aix", DOCS, T0)
        return await _answers(store, ""), await _answers(store, "aix")

    assert run(f"sqlite:///{path}", body) == (EXPECTED, EXPECTED)
    names, rows, shapes = _tables(path)
    assert "entity_attrs" not in names and rows == 8 and shapes == 3
