"""SQLite history: the readings the platform's agents write (numbers with a unitCode) pack as members of a change
row too, their stored document kept once in the change's shape (issue 16, sqlunit21), on real SQLite files and
through the real broker's APIs (NGSI-LD temporal and QuantumLeap's /v2, both stores).

- member_of: a reading with a unit is a member, with its compact document; member_value keeps its meaning;
- readings with units (AirQualityObserved as broker_bench and the agents write it) are one change row, read
  back byte for byte by instances, get_instance, lastN; replaced, deleted by instanceId, moved out with their
  document; a unit that changes gives the member a shape of its own;
- a file of sqlrow21 (shapes without documents) is read and written;
- the rollups equal a recomputation throughout.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from broker.temporal.changes import MEMBER_DOC_MAX, group_changes, member_of, member_value
from broker.temporal.model import HistoryRow, to_us, value_row
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import KEY_DATETIME, PLAIN_INSTANCE, TimeRange
from tests.broker.test_sqlrow21_changes import (
    ATTRS,
    E1,
    E2,
    M1,
    M2,
    T0,
    TENANT,
    TI,
    _all,
    _at,
    _count,
    _doc,
    _rollup_exact,
    _row,
    _run,
)

UNITS = ["GQ", "GQ", "CEL", "P1", "GQ"]


def _units(entity: str, second: int, base: float = 20.0, modified: str = M1) -> list[HistoryRow]:
    """An AirQualityObserved as the agents write it: five numbers with a unitCode, TimeInstant at the key."""
    rows = [_row(entity, a, second, base + n + 0.5, modified, unitCode=u) for n, (a, u) in enumerate(zip(ATTRS, UNITS, strict=True))]
    rows.append(_row(entity, TI, second, {"@type": "DateTime", "@value": _at(second)}, modified))
    return rows


def test_a_reading_with_a_unit_is_a_member_with_its_document() -> None:
    unit = _row(E1, ATTRS[0], 0, 1.5, unitCode="GQ")
    assert member_value(unit) is None  # member_value: plain readings only, as before
    found = member_of(unit)
    assert found is not None and found[0] == 1.5 and found[1] == unit.packed and b"GQ" in found[1]
    assert member_of(_row(E1, ATTRS[0], 0, 1.5)) == (1.5, None)  # a plain one: no document
    assert member_of(_row(E1, TI, 0, {"@type": "DateTime", "@value": _at(0)}, unitCode="s")) == (KEY_DATETIME, _row(
        E1, TI, 0, {"@type": "DateTime", "@value": _at(0)}, unitCode="s").packed)
    assert member_of(_row(E1, ATTRS[0], 0, "text", unitCode="GQ")) is None
    assert member_of(_row(E1, ATTRS[0], 0, 1.5, unitCode="GQ", datasetId="urn:ds:1")) is None
    # createdAt older than modifiedAt (an attribute updated again): a member, the change keeps its createdAt
    older = value_row(TENANT, E1, ATTRS[0], {**_doc(0, 1.5, M2, unitCode="GQ"), "createdAt": M1}, T0)
    assert member_of(older) == (1.5, older.packed) and older.created_us != older.modified_us
    plain_older = value_row(TENANT, E1, ATTRS[1], {**_doc(0, 2.5, M2), "createdAt": M1}, T0)
    assert member_value(plain_older) is None and member_of(plain_older) == (2.5, None)
    changes, rest = group_changes([older, plain_older, _row(E1, ATTRS[2], 0, 3.5, M2)], docs=True)
    assert [len(c.rows) for c in changes] == [2] and changes[0].created_us == older.created_us and len(rest) == 1
    long = _row(E1, ATTRS[0], 0, 1.5, unitCode="GQ", description="x" * MEMBER_DOC_MAX)
    assert member_of(long) is None  # a long document stays a row (a shape per changing document would cost more)
    changes, rest = group_changes(_units(E1, 0))
    assert changes == [] and len(rest) == 6  # without docs=True: plain readings only, as sqlrow21's callers had
    changes, rest = group_changes(_units(E1, 0), docs=True)
    assert len(changes) == 1 and rest == [] and changes[0].docs[:5] == [r.packed for r in _units(E1, 0)[:5]]
    assert changes[0].docs[5] is None


def test_readings_with_units_are_one_change_row_read_back_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = [*_units(E1, 0), *_units(E1, 1, base=30.0), *_units(E2, 0)]

    async def body(history: SQLiteHistory) -> None:
        await history.write([], rows)
        got = await _all(history)
        assert {k: v[1] for k, v in got.items()} == {(r.entity_id, r.attr, r.key_us): r.instance for r in rows}
        for (entity, attr, _), (iid, instance) in got.items():
            assert await history.get_instance(TENANT, entity, attr, iid) == instance
        newest = await history.instances(TENANT, [E1], [ATTRS[2]], TimeRange(), 1, True)
        assert [h.instance for h in newest] == [rows[8].instance] and b'"unitCode":"CEL"' in newest[0].instance
        many = await history.instances(TENANT, [E1, E2, "urn:a", "urn:b", "urn:c"], None, TimeRange(), 1, True)
        assert sorted(h.instance for h in many) == sorted(r.instance for r in [*rows[6:12], *rows[12:]])
        assert _count(path, "temporal_changes") == 3 and _count(path, "temporal_rows") == 0
        with sqlite3.connect(path) as conn:
            shapes = conn.execute("SELECT docs FROM temporal_change_shapes").fetchall()
        assert len(shapes) == 2  # one per entity (its sids), shared by its changes
        assert [d if d is None else d.encode() for d in orjson.loads(shapes[0][0])] == [*(r.packed for r in rows[:5]), None]
        _rollup_exact(path)
        # replaced by instanceId (another value, with its unit): out to temporal_rows, its iid and document kept
        iid = got[(E1, ATTRS[0], T0)][0]
        fixed = value_row(TENANT, E1, ATTRS[0], {**_doc(0, 5.25, unitCode="KEL"), "modifiedAt": M2}, T0)
        assert await history.replace_instance(TENANT, E1, ATTRS[0], iid, fixed)
        assert await history.get_instance(TENANT, E1, ATTRS[0], iid) == fixed.instance
        # a member removed by instanceId, then one moved out (its reading no longer a member: a text)
        gone = got[(E1, ATTRS[1], T0)][0]
        assert await history.delete_instance(TENANT, E1, ATTRS[1], gone)
        text = _row(E1, ATTRS[2], 0, "high", unitCode="CEL")
        await history.write([], [text])
        after = await _all(history)
        assert after[(E1, ATTRS[2], T0)] == (got[(E1, ATTRS[2], T0)][0], text.instance)
        assert {k: v for k, v in after.items() if k[1] not in ATTRS[:3] or k[2] != T0 or k[0] != E1} == {
            k: v for k, v in got.items() if k[1] not in ATTRS[:3] or k[2] != T0 or k[0] != E1}
        _rollup_exact(path)
        # the change written again with another unit on one member, same modifiedAt: replaced in place, the
        # member's document in a new shape; iids kept
        again = _units(E1, 1, base=30.0)
        again[3] = _row(E1, ATTRS[3], 1, 33.5, unitCode="KEL")
        await history.write([], again)
        third = await _all(history)
        assert {k: v[1] for k, v in third.items() if k[0] == E1 and k[2] == T0 + 1_000_000} == {
            (E1, r.attr, r.key_us): r.instance for r in again}
        assert {k: v[0] for k, v in third.items()} == {k: v[0] for k, v in after.items()}
        assert _count(path, "temporal_changes") == 3
        _rollup_exact(path)

    _run(path, body)


# sqlrow21's shapes: sids alone, UNIQUE
_SQLROW21_SHAPES = "CREATE TABLE temporal_change_shapes (shape INTEGER PRIMARY KEY, sids TEXT NOT NULL UNIQUE)"


def _updated(entity: str, second: int, base: float = 20.0) -> list[HistoryRow]:
    """_units as an update writes it again: modifiedAt M2, the attributes' createdAt M1 (BATCH_MODE update)."""
    return [value_row(TENANT, entity, r.attr, {**orjson.loads(r.instance), "createdAt": M1, "modifiedAt": M2}, T0)
            for r in _units(entity, second, base)]


def test_readings_with_an_older_created_at_are_one_change_row(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = [*_units(E1, 0), *_updated(E1, 1, base=30.0), *_updated(E1, 2, base=40.0)]

    async def body(history: SQLiteHistory) -> None:
        await history.write([], rows)
        got = await _all(history, [E1])
        assert {k: v[1] for k, v in got.items()} == {(r.entity_id, r.attr, r.key_us): r.instance for r in rows}
        for (entity, attr, _), (iid, instance) in got.items():
            assert await history.get_instance(TENANT, entity, attr, iid) == instance
        assert _count(path, "temporal_changes") == 3 and _count(path, "temporal_rows") == 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT created_us FROM temporal_changes ORDER BY key_us").fetchall() == [
                (None,), (rows[6].created_us,), (rows[6].created_us,)]
        by_created = await history.instances(TENANT, [E1], [ATTRS[0]], TimeRange("created_us", to_us(M1), to_us(M1) + 1),
                                             10, False)
        assert [h.instance for h in by_created] == [rows[0].instance, rows[6].instance, rows[12].instance]  # all M1
        # the same readings again, created = modified (a replace): the change's createdAt follows, in place
        again = _units(E1, 2, base=40.0)
        await history.write([], again)
        after = await _all(history, [E1])
        assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in got.items()}
        assert {k: v[1] for k, v in after.items() if k[2] == T0 + 2_000_000} == {(E1, r.attr, r.key_us): r.instance for r in again}
        # one member with another createdAt: moved out, iid kept
        moved = value_row(TENANT, E1, ATTRS[0], {**orjson.loads(rows[6].instance), "createdAt": M2}, T0)
        await history.write([], [moved])
        assert (await _all(history, [E1]))[(E1, ATTRS[0], T0 + 1_000_000)] == (got[(E1, ATTRS[0], T0 + 1_000_000)][0], moved.instance)
        # two members written again with another createdAt, the same modifiedAt: moved out, the others keep M1
        two = [value_row(TENANT, E1, r.attr, {**orjson.loads(r.instance), "createdAt": M2}, T0) for r in rows[15:17]]
        await history.write([], two)
        now = await _all(history, [E1])
        assert {k: v for k, v in now.items() if k[2] == T0 + 2_000_000} == {
            **{k: v for k, v in after.items() if k[2] == T0 + 2_000_000},
            **{(E1, r.attr, r.key_us): (after[(E1, r.attr, r.key_us)][0], r.instance) for r in two}}
        iid = got[(E1, ATTRS[1], T0 + 1_000_000)][0]  # replaced by id: out with its createdAt
        fixed = value_row(TENANT, E1, ATTRS[1], {**_doc(1, 9.5, M2, unitCode="GQ")}, T0)
        assert await history.replace_instance(TENANT, E1, ATTRS[1], iid, fixed)
        kept = await history.instances(TENANT, [E1], [ATTRS[1]], TimeRange("created_us", to_us(M1), to_us(M1) + 1), 10, False)
        assert iid in {h.iid for h in kept}
        _rollup_exact(path)

    _run(path, body)


def test_a_file_of_sqlrow21_is_read_and_written(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    plain = [_row(E1, a, 0, n + 0.5) for n, a in enumerate(ATTRS)]

    async def first(history: SQLiteHistory) -> dict[tuple[str, str, int], tuple[int, bytes]]:
        await history.write([], plain)
        return await _all(history, [E1])

    got = _run(path, first)
    with sqlite3.connect(path) as conn:  # the shapes table as sqlrow21 made it
        shapes = conn.execute("SELECT shape, sids FROM temporal_change_shapes").fetchall()
        for name in ("temporal_instances",):
            conn.execute(f"DROP VIEW {name}")
        for trigger in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER temporal_changes_rollup_{trigger}")
        conn.execute("DROP TABLE temporal_change_shapes")
        conn.execute(_SQLROW21_SHAPES)
        conn.execute("ALTER TABLE temporal_changes DROP COLUMN created_us")  # sqlrow21's changes had none
        conn.executemany("INSERT INTO temporal_change_shapes VALUES (?, ?)", shapes)

    async def body(history: SQLiteHistory) -> None:
        assert await _all(history, [E1]) == got
        await history.write([], plain)  # replayed: nothing moves
        assert await _all(history, [E1]) == got
        units = _units(E1, 1)
        await history.write([], units)
        after = await _all(history, [E1])
        assert {k: v[1] for k, v in after.items() if k[2] == T0 + 1_000_000} == {(E1, r.attr, r.key_us): r.instance for r in units}
        assert _count(path, "temporal_changes") == 2 and _count(path, "temporal_rows") == 0
        _rollup_exact(path)

    _run(path, body)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT docs FROM temporal_change_shapes WHERE shape = ?", (shapes[0][0],)).fetchone() == ("",)


def _aqo(eid: str, k: int) -> dict[str, Any]:
    """An AirQualityObserved with units, as broker_bench and the agents write it, at its k-th observation."""
    observed = f"2026-11-2{k}T10:00:00Z"

    def prop(v: Any, unit: str) -> dict[str, Any]:
        return {"type": "Property", "value": v, "observedAt": observed, "unitCode": unit}

    return {"id": eid, "type": "AirQualityObserved", "no2": prop(20.5 + k, "GQ"), "temperature": prop(10.25 + k, "CEL"),
            "relativeHumidity": prop(0.5, "P1"), "@context": "https://smartdatamodels.org/context.jsonld"}


def test_readings_with_units_read_back_through_the_apis(client: httpx.Client, broker_url: str, tenant: str) -> None:
    eid = f"urn:ngsi-ld:AirQualityObserved:{uuid.uuid4().hex[:12]}"
    # the same entity upserted again and again as the agents do (BATCH_MODE update: the attributes keep their
    # createdAt), each a change of three members on SQLite
    for k in range(3):
        r = client.post("/entityOperations/upsert", json=[_aqo(eid, k)], params={"options": "update"},
                        headers={"Content-Type": "application/ld+json"})
        assert r.status_code in (201, 204), r.text
    link = {"Link": '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
    r = client.get(f"/temporal/entities/{eid}", params={"options": "sysAttrs"}, headers=link)
    assert r.status_code == 200, r.text
    body = r.json()
    for attr, unit, values in (("no2", "GQ", [20.5, 21.5, 22.5]), ("temperature", "CEL", [10.25, 11.25, 12.25]),
                               ("relativeHumidity", "P1", [0.5, 0.5, 0.5])):
        got = sorted(body[attr], key=lambda i: i["observedAt"])
        assert [i["value"] for i in got] == values and {i["unitCode"] for i in got} == {unit}
        assert [i["observedAt"] for i in got] == [f"2026-11-2{k}T10:00:00Z" for k in range(3)]
        assert got[0]["modifiedAt"] == got[0]["createdAt"] and all("instanceId" in i for i in got)
        assert {i["createdAt"] for i in got} == {got[0]["createdAt"]} and got[2]["modifiedAt"] > got[2]["createdAt"]
        one = client.get(f"/temporal/entities/{eid}", params={"attrs": attr, "lastN": "1", "options": "sysAttrs"}, headers=link).json()[attr]
        assert (one if isinstance(one, dict) else one[0]) == got[-1]
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant, "Fiware-ServicePath": "/"}, timeout=30) as ql:
        r = ql.get(f"/entities/{eid}/attrs/no2")
        assert r.status_code == 200, r.text
        assert r.json()["values"] == [20.5, 21.5, 22.5]


def test_the_plain_document_is_not_kept_in_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def body(history: SQLiteHistory) -> None:
        await history.write([], [_row(E1, a, 0, n + 0.5) for n, a in enumerate(ATTRS)])

    _run(path, body)
    with sqlite3.connect(path) as conn:  # sqlrow21's plain readings: docs '' (no bytes spent on them)
        assert conn.execute("SELECT docs FROM temporal_change_shapes").fetchall() == [("",)]
    assert PLAIN_INSTANCE == b"TVOcm{}"
