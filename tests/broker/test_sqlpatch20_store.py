"""The SQLite store's one-entity rewrite (issue 16, sqlpatch20): the index check that passes over shared
attributes, and the UPDATE of the one row a PATCH rewrites."""

from __future__ import annotations

import asyncio
import copy
import random
import sqlite3
from pathlib import Path
from typing import Any

from broker.store import Change, StoredEntity
from broker.store.migrations import index_rows, same_index
from broker.store.sqlite import SQLiteStore
from tests.broker.test_same_index import GEO, _instance, doc, mutate

NS = "https://smartdatamodels.org/dataModel.Environment/"
NO2 = NS + "no2"
WIND = NS + "windDirection"
T0, T1, T2 = "2026-11-26T06:00:00Z", "2026-11-26T07:00:00Z", "2026-11-26T08:00:00Z"


def _sharing(rnd: random.Random, before: dict[str, Any]) -> dict[str, Any]:
    """What an fn that leaves its document intact returns: a shallow copy, some attributes replaced by new
    lists (which may keep some of the old instances), some dropped or added; the rest shared."""
    after = dict(before)
    for _ in range(rnd.randrange(0, 3)):
        names = [k for k in after if k not in ("id", "type")]
        choice = rnd.randrange(6)
        if choice == 0:
            after["type"] = rnd.choice([["T"], ["U"], list(before["type"])])
        elif choice == 1 and len(names) > 1:
            del after[rnd.choice(names)]
        elif choice == 2 and names:
            name = rnd.choice(names)
            kinds = ["GeoProperty"] if name == GEO else ["Property", "Relationship", "GeoProperty"]
            after[name] = [*after[name][:-1], _instance(rnd, rnd.choice(kinds))]  # the last instance replaced
        elif choice == 3:
            after[rnd.choice(["a", "b", "c", GEO])] = [_instance(rnd, "GeoProperty")]
        elif choice == 4 and names:
            name = rnd.choice(names)
            after[name] = [{**inst, "observedAt": "2026-11-26T10:00:00Z"} for inst in after[name]]
        elif names:
            name = rnd.choice(names)
            after[name] = [*after[name], *after[name][:1]]  # one more instance, shared with the first
    return after


def test_same_index_over_shared_members_never_claims_equal_rows_that_differ_and_takes_what_unshared_copies_take() -> None:
    rnd = random.Random(20)
    kept = shared = 0
    for n in range(8000):
        a = doc(rnd)
        b = _sharing(rnd, a) if n % 2 else mutate(rnd, a)
        before = copy.deepcopy(a)
        answer = same_index(a, b)
        assert a == before  # it only looks
        if answer:
            kept += 1
            shared += n % 2
            assert index_rows(a) == index_rows(b), (a, b)
        if same_index(copy.deepcopy(a), copy.deepcopy(b)):  # the answer without shared members
            assert answer, (a, b)
    assert kept > 2000 and shared > 1000  # the common case is taken, sharing or not


def _store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "broker.db")


def _entity(n: int, lng: float, **attrs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"urn:ngsi-ld:Thing:{n}", "type": [NS + "AirQualityObserved"],
                           GEO: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lng, 43.5]}}]}
    for name, value in attrs.items():
        out[NS + name] = [{"type": "Property", "value": value}]
    return out


def _patch(iri: str, instance: dict[str, Any]) -> Any:
    """A PATCH's fn: the document copied, one attribute's list replaced, the rest shared (before_intact)."""

    def fn(entity_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        out = dict(current.doc)
        out[iri] = [instance]
        return Change(out, "patched", before_intact=True)

    return fn


def _side_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [*conn.execute("SELECT 'type', type, id FROM entity_types ORDER BY 2, 3"),
                *conn.execute("SELECT 'attr', a.attr, a.attr_type FROM entity_shapes s"
                              " JOIN attr_shape_attrs a ON a.shape = s.shape ORDER BY 2, 3"),
                *conn.execute("SELECT 'box', attr, min_lng, max_lng FROM geo_boxes ORDER BY 2, 3")]
    finally:
        conn.close()


def test_one_entity_patch_rewrites_its_row_and_reindexes_what_it_changed(tmp_path: Path) -> None:
    """A one-entity modify (the UPDATE of its row, the index check over shared attributes): the document,
    createdAt kept, modifiedAt the call's; a reading keeps the side rows, a moved location or a new
    attribute type rewrites them, as index_rows of the stored document says; the log has each change."""

    async def body() -> None:
        store = _store(tmp_path)
        await store.open()
        try:
            await store.insert("", [_entity(1, 5.0, no2=1, windDirection=90), _entity(2, 5.5, no2=2)], T0)
            one = "urn:ngsi-ld:Thing:1"
            assert await store.modify("", [one], _patch(NO2, {"type": "Property", "value": 7}), T1) == {one: "patched"}
            got = await store.get("", one)
            assert got is not None and got.doc[NO2][0]["value"] == 7 and (got.created_at, got.modified_at) == (T0, T1)
            assert _side_rows(tmp_path / "broker.db") == rows_of(got, (await store.get("", "urn:ngsi-ld:Thing:2")))
            moved = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [7.0, 43.5]}}
            await store.modify("", [one], _patch(GEO, moved), T2)
            await store.modify("", [one], _patch(WIND, {"type": "Relationship", "object": "urn:ngsi-ld:Wind:1"}), T2)
            got = await store.get("", one)
            assert got is not None and got.modified_at == T2 and got.doc[GEO][0]["value"]["coordinates"] == [7.0, 43.5]
            assert _side_rows(tmp_path / "broker.db") == rows_of(got, (await store.get("", "urn:ngsi-ld:Thing:2")))
            # an absent id: the fn sees None and creates it (the upsert, not the row UPDATE)
            created = await store.modify("", ["urn:ngsi-ld:Thing:3"],
                                         lambda i, c: Change(_entity(3, 6.0, no2=3), "created"), T2)
            assert created == {"urn:ngsi-ld:Thing:3": "created"}
            three = await store.get("", "urn:ngsi-ld:Thing:3")
            assert three is not None and (three.created_at, three.modified_at) == (T2, T2)
            records = await store.changes_after(2, 10)
            assert [(r.entity_id, r.at) for r in records] == [(one, T1), (one, T2), (one, T2), ("urn:ngsi-ld:Thing:3", T2)]
            assert records[0].before is not None and records[0].before[NO2][0]["value"] == 1
        finally:
            await store.close()

    asyncio.run(body())


def rows_of(*docs: Any) -> list[tuple[Any, ...]]:
    """The side rows index_rows gives for these documents (StoredEntity or None), as _side_rows lists them."""
    types, attrs, boxes = [], [], []
    for one in docs:
        assert isinstance(one, StoredEntity)
        rows = index_rows(one.doc)
        types += [("type", t, one.doc["id"]) for t in rows.types]
        attrs += [("attr", a, k) for a, k in rows.attrs]
        boxes += [("box", a, b[0], b[2]) for a, b in rows.boxes]
    return [*sorted(types), *sorted(attrs), *sorted(boxes)]
