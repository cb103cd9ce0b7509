"""SQLite history: a row per entity change for plain readings (issue 16, sqlrow21), on real SQLite files.

- the plain readings of one entity at one key time are one row of temporal_changes, read back unchanged;
- the same readings again (a replayed change log, a batch upsert with a new modifiedAt) leave one instance
  under its iid, never a duplicate; a reading that is no longer plain moves its member out, iid kept;
- mixed plain and other rows, replace and delete by instanceId of a member, deletes by entity, attribute
  and range, lastN and ranges read across both tables;
- the rollups equal a recomputation from the instances after any of these;
- a file of the former layout (plain readings as rows of temporal_rows) is read and written as before;
- a randomised sequence of writes reads back as a model of what was written says.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broker.temporal.changes import group_changes, member_value
from broker.temporal.model import EntityRow, HistoryRow, from_us, to_us, value_row
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import KEY_DATETIME, TimeRange

TENANT = "rows21"
E1 = "urn:ngsi-ld:AirQualityObserved:1"
E2 = "urn:ngsi-ld:AirQualityObserved:2"
ATTRS = [f"https://x/a{n}" for n in range(5)]
TI = "https://x/TimeInstant"
T0 = to_us("2026-03-01T00:00:00Z")
M1 = "2026-12-06T09:16:15.928Z"
M2 = "2026-12-07T10:00:00.000Z"


def _at(second: int) -> str:
    return from_us(T0 + second * 1_000_000).replace(".000Z", "Z")


def _doc(second: int, value: Any, modified: str = M1, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra, "observedAt": _at(second), "createdAt": modified,
            "modifiedAt": modified}


def _row(entity: str, attr: str, second: int, value: Any, modified: str = M1, **extra: Any) -> HistoryRow:
    return value_row(TENANT, entity, attr, _doc(second, value, modified, **extra), T0)


def _change(entity: str, second: int, base: float = 20.0, modified: str = M1) -> list[HistoryRow]:
    """An AirQualityObserved as QuantumLeap's notify writes it: five numbers and TimeInstant at the key."""
    rows = [_row(entity, a, second, base + n + 0.5, modified) for n, a in enumerate(ATTRS)]
    rows.append(_row(entity, TI, second, {"@type": "DateTime", "@value": _at(second)}, modified))
    return rows


def _run(path: Path, body: Any) -> Any:
    async def go() -> Any:
        history = SQLiteHistory(path)
        await history.open()
        try:
            return await body(history)
        finally:
            await history.close()

    return asyncio.run(go())


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def _all(history: SQLiteHistory, entities: Sequence[str] = (E1, E2)) -> dict[tuple[str, str, int], tuple[int, bytes]]:
    """The instances of the default datasetId by (entity, attribute, key time): (iid, document)."""
    hits = await history.instances(TENANT, list(entities), None, TimeRange(), 100_000, False)
    keys = {(h.entity_id, h.attr, h.time_us, orjson.loads(h.instance).get("datasetId", "")) for h in hits}
    assert len(keys) == len(hits)  # one instance per (entity, attribute, key, datasetId): no duplicate
    return {(h.entity_id, h.attr, h.time_us): (h.iid, h.instance) for h in hits if b'"datasetId"' not in h.instance}


def _rollup_exact(path: Path) -> None:
    """temporal_rollup as the triggers and recomputations left it equals a recomputation from the instances."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TEMP TABLE r AS SELECT * FROM temporal_rollup WHERE 0")
        from broker.temporal import sqlite as mod
        conn.execute(mod._ROLLUP_BACKFILL.replace("INSERT INTO temporal_rollup", "INSERT INTO temp.r"))
        stored = conn.execute("SELECT * FROM main.temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
        fresh = conn.execute("SELECT * FROM temp.r ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
        assert stored == fresh


def test_the_readings_of_a_notified_entity_are_plain() -> None:
    rows = _change(E1, 0)
    assert [member_value(r) for r in rows] == [20.5, 21.5, 22.5, 23.5, 24.5, KEY_DATETIME]
    changes, rest = group_changes(rows)
    assert len(changes) == 1 and rest == [] and changes[0].rows == rows
    assert member_value(_row(E1, ATTRS[0], 0, "text")) is None
    assert member_value(_row(E1, ATTRS[0], 0, 1.5, datasetId="urn:ds:1")) is None
    assert member_value(_row(E1, ATTRS[0], 0, 1.5, unitCode="GQ")) is None
    assert member_value(_row(E1, ATTRS[0], 0, -0.0)) is None  # SQLite may keep a REAL -0.0 as 0


def test_plain_readings_are_one_change_row(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = _change(E1, 0)

    async def body(history: SQLiteHistory) -> dict[tuple[str, str, int], tuple[int, bytes]]:
        await history.write([], rows)
        return await _all(history)

    got = _run(path, body)
    assert {k: v[1] for k, v in got.items()} == {(E1, r.attr, r.key_us): r.instance for r in rows}
    assert sorted(v[0] for v in got.values()) == list(range(min(v[0] for v in got.values()), min(v[0] for v in got.values()) + 6))
    assert _count(path, "temporal_changes") == 1 and _count(path, "temporal_rows") == 0
    with sqlite3.connect(path) as conn:
        key_us, modified_us, vals, sids = conn.execute(
            "SELECT key_us, modified_us, vals, sids FROM temporal_changes JOIN temporal_change_shapes USING (shape)").fetchone()
        series = dict(conn.execute("SELECT sid, attr FROM temporal_series"))
    assert key_us == T0 and modified_us == to_us(M1)
    assert orjson.loads(vals) == [20.5, 21.5, 22.5, 23.5, 24.5, ""]
    assert [series[sid] for sid in orjson.loads(sids)] == [*ATTRS, TI]
    _rollup_exact(path)


def test_the_same_readings_again_keep_one_instance_and_its_iid(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = _change(E1, 0)
    newer = _change(E1, 0, modified=M2)  # a batch upsert of the same readings: a new modifiedAt

    async def body(history: SQLiteHistory) -> None:
        await history.write([], rows)
        first = await _all(history)
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT * FROM temporal_changes").fetchall()
            rollup = conn.execute("SELECT * FROM temporal_rollup").fetchall()
        await history.write([], rows)  # a replayed change log: nothing written
        assert await _all(history) == first
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT * FROM temporal_changes").fetchall() == stored
            assert conn.execute("SELECT * FROM temporal_rollup").fetchall() == rollup
        await history.write([], newer)
        again = await _all(history)
        assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in first.items()}  # iids kept
        assert {k: v[1] for k, v in again.items()} == {(E1, r.attr, r.key_us): r.instance for r in newer}
        assert _count(path, "temporal_changes") == 1 and _count(path, "temporal_rows") == 0
        # one value changed, same modifiedAt: replaced in place
        changed = [*newer[:2], _row(E1, ATTRS[2], 0, 99.25, M2), *newer[3:]]
        await history.write([], changed)
        third = await _all(history)
        assert {k: v[0] for k, v in third.items()} == {k: v[0] for k, v in first.items()}
        assert third[(E1, ATTRS[2], T0)][1] == changed[2].instance
        # some members only, with another modifiedAt: they move out to temporal_rows, iids kept
        await history.write([], [_row(E1, ATTRS[0], 0, 1.25, M1), _row(E1, ATTRS[1], 0, 2.25, M1)])
        fourth = await _all(history)
        assert {k: v[0] for k, v in fourth.items()} == {k: v[0] for k, v in first.items()}
        assert fourth[(E1, ATTRS[0], T0)][1] == _row(E1, ATTRS[0], 0, 1.25, M1).instance
        assert _count(path, "temporal_changes") == 1 and _count(path, "temporal_rows") == 2
        _rollup_exact(path)

    _run(path, body)


def test_mixed_plain_and_other_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = [*_change(E1, 0)[:3], _row(E1, ATTRS[3], 0, "high"), _row(E1, ATTRS[4], 0, 7.5, datasetId="urn:ds:1"),
            _row(E1, ATTRS[4], 0, 8.5)]

    async def body(history: SQLiteHistory) -> None:
        await history.write([], rows)
        got = await history.instances(TENANT, [E1], None, TimeRange(), 1000, False)
        assert sorted(h.instance for h in got) == sorted(r.instance for r in rows)
        assert _count(path, "temporal_changes") == 1 and _count(path, "temporal_rows") == 2
        with sqlite3.connect(path) as conn:
            assert len(orjson.loads(conn.execute("SELECT vals FROM temporal_changes").fetchone()[0])) == 4
            assert _count(path, "temporal_change_shapes") == 1
        before = await _all(history, [E1])
        # a reading that is no longer plain (a unitCode) at a member's key: the member moves out, its iid kept
        unit = _row(E1, ATTRS[0], 0, 20.5, unitCode="GQ")
        await history.write([], [unit])
        after = await _all(history, [E1])
        assert after[(E1, ATTRS[0], T0)] == (before[(E1, ATTRS[0], T0)][0], unit.instance)
        assert len(after) == len(before)
        assert _count(path, "temporal_rows") == 3
        # a new attribute at the key of a stored change: a row of its own, the change untouched
        extra = _row(E1, "https://x/extra", 0, 3.5)
        await history.write([], [extra])
        assert (await _all(history, [E1]))[(E1, extra.attr, T0)][1] == extra.instance
        _rollup_exact(path)

    _run(path, body)


def test_replace_delete_and_get_a_member_by_instance_id(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def body(history: SQLiteHistory) -> None:
        await history.write([EntityRow(TENANT, e, ["AirQualityObserved"]) for e in (E1, E2)],
                            [*_change(E1, 0), *_change(E1, 1), *_change(E2, 0)])
        got = await _all(history)
        iid = got[(E1, ATTRS[1], T0)][0]
        assert await history.get_instance(TENANT, E1, ATTRS[1], iid) == got[(E1, ATTRS[1], T0)][1]
        assert await history.get_instance(TENANT, E1, ATTRS[2], iid) is None  # another attribute's id
        fixed = value_row(TENANT, E1, ATTRS[1], {**_doc(0, 5.25), "modifiedAt": M2}, T0)
        assert await history.replace_instance(TENANT, E1, ATTRS[1], iid, fixed)
        assert await history.get_instance(TENANT, E1, ATTRS[1], iid) == fixed.instance
        assert (await _all(history))[(E1, ATTRS[1], T0)] == (iid, fixed.instance)
        created = await history.instances(TENANT, [E1], [ATTRS[1]], TimeRange("created_us", to_us(M1), to_us(M1) + 1), 10, False)
        assert iid in {h.iid for h in created}  # its createdAt kept, not its new modifiedAt
        gone = got[(E1, ATTRS[2], T0)][0]
        assert await history.delete_instance(TENANT, E1, ATTRS[2], gone)
        assert not await history.delete_instance(TENANT, E1, ATTRS[2], gone)
        assert await history.get_instance(TENANT, E1, ATTRS[2], gone) is None
        assert not await history.replace_instance(TENANT, E1, ATTRS[2], gone, fixed)
        left = await _all(history)
        assert set(got) - set(left) == {(E1, ATTRS[2], T0)}
        assert {k: v for k, v in left.items() if k != (E1, ATTRS[1], T0)} == {
            k: v for k, v in got.items() if k not in ((E1, ATTRS[1], T0), (E1, ATTRS[2], T0))}
        _rollup_exact(path)
        assert await history.delete_attr(TENANT, E1, ATTRS[3], None) == 2
        assert await history.delete_instances(TENANT, [E1], TimeRange(None, T0, T0 + 1)) == 4  # 6 less 2 gone
        assert {k for k in await _all(history) if k[0] == E1} == {(E1, a, T0 + 1_000_000) for a in ATTRS + [TI] if a != ATTRS[3]}
        _rollup_exact(path)
        assert await history.delete_entity(TENANT, E2)
        assert {k[0] for k in await _all(history)} == {E1}
        _rollup_exact(path)
        # every member gone: the change row too
        for key, (i, _) in (await _all(history)).items():
            assert await history.delete_instance(TENANT, key[0], key[1], i)
        assert _count(path, "temporal_changes") == 0
        _rollup_exact(path)

    _run(path, body)


def test_last_n_and_ranges_across_both_tables(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def body(history: SQLiteHistory) -> None:
        written: list[HistoryRow] = []
        for s in range(10):  # even seconds: changes; odd: one reading at a time (rows of temporal_rows)
            rows = _change(E1, s, base=s) if s % 2 == 0 else [_row(E1, a, s, s + 0.25) for a in ATTRS]
            for r in rows:
                await history.write([], [r]) if s % 2 else None
            if s % 2 == 0:
                await history.write([], rows)
            written += rows
        assert _count(path, "temporal_changes") == 5 and _count(path, "temporal_rows") == 25
        newest = await history.instances(TENANT, [E1], [ATTRS[0]], TimeRange(), 3, True)
        assert [h.time_us for h in newest] == [T0 + s * 1_000_000 for s in (7, 8, 9)]
        oldest = await history.instances(TENANT, [E1], [ATTRS[0]], TimeRange(), 3, False)
        assert [h.time_us for h in oldest] == [T0 + s * 1_000_000 for s in (0, 1, 2)]
        rng = TimeRange(None, T0 + 3_000_000, T0 + 7_000_000)
        ranged = await history.instances(TENANT, [E1], None, rng, 100, False)
        want = sorted((r.attr, r.key_us, r.instance) for r in written if rng.start <= r.key_us < rng.end)  # type: ignore[operator]
        assert sorted((h.attr, h.time_us, h.instance) for h in ranged) == want
        by_modified = await history.instances(TENANT, [E1], [ATTRS[0]], TimeRange("modified_us", to_us(M1), None), 4, True)
        assert len(by_modified) == 4
        total = await history.instances(TENANT, [E1], None, TimeRange(), 2, True, total=5)
        assert len(total) == 5 and all(h.time_us >= T0 + 8_000_000 for h in total)
        # more than four entities: the window query over the view
        for n in range(5):
            await history.write([], _change(f"urn:e:{n}", 0, base=n))
        many = await history.instances(TENANT, [f"urn:e:{n}" for n in range(5)], [ATTRS[0]], TimeRange(None, T0, T0 + 1), 1, True)
        assert sorted((h.entity_id, h.instance) for h in many) == sorted(
            (f"urn:e:{n}", _change(f"urn:e:{n}", 0, base=n)[0].instance) for n in range(5))
        # entities without a change row (numbers with a unit) read alone (temporal_row_instances) and with others
        for n in range(3):
            await history.write([], [_row(f"urn:r:{n}", ATTRS[0], 0, n + 0.5, unitCode="GQ")])
        alone = await history.instances(TENANT, [f"urn:r:{n}" for n in range(3)], None, TimeRange(None, T0, T0 + 1), 5, True)
        assert sorted(h.entity_id for h in alone) == [f"urn:r:{n}" for n in range(3)]
        both = [*(f"urn:r:{n}" for n in range(3)), *(f"urn:e:{n}" for n in range(2))]
        mixed = await history.instances(TENANT, both, [ATTRS[0]], TimeRange(None, T0, T0 + 1), 1, True)
        assert sorted(h.entity_id for h in mixed) == sorted(both)
        sums = await history.aggregate(TENANT, both, [ATTRS[0]], TimeRange(None, T0, T0 + 1), 0, 0)
        assert sorted((b.entity_id, b.sum) for b in sums) == sorted(
            [(f"urn:r:{n}", n + 0.5) for n in range(3)] + [(f"urn:e:{n}", n + 0.5) for n in range(2)])
        hourly = await history.aggregate(TENANT, [E1], [ATTRS[0]], TimeRange(), 0, 0, distinct=False)
        assert hourly[0].total == 10 and hourly[0].sum == sum(s + (0.5 if s % 2 == 0 else 0.25) for s in range(10))
        assert await history.first_time(TENANT, [E1], None, TimeRange()) == T0
        assert await history.series(TENANT, [E1], None, TimeRange()) == {(E1, a) for a in [*ATTRS, TI]}
        _rollup_exact(path)

    _run(path, body)


# the INSERT of the layout before sqlrow21: every plain reading a row of temporal_rows
_FORMER_ROWS = ("INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
                " value_json, instance, obs_key, iid) VALUES (?, 0, ?, NULL, NULL, ?, NULL, ?, ?, NULL, 1, ?)")


def test_a_file_of_the_former_layout_is_read_and_written(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = _change(E1, 0)
    _run(path, lambda history: asyncio.sleep(0))  # the tables, empty
    with sqlite3.connect(path) as conn:  # the readings as the code before wrote them (rollups by its trigger)
        for n, r in enumerate(rows):
            conn.execute("INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id) VALUES (?, ?, ?, '')",
                         (TENANT, E1, r.attr))
            sid = conn.execute("SELECT max(sid) FROM temporal_series").fetchone()[0]
            conn.execute(_FORMER_ROWS, (sid, r.key_us, r.modified_us, r.value_num,
                                        "" if r.value_num is None else None, n + 1))
        conn.execute("UPDATE temporal_next_iid SET next = 7")

    async def body(history: SQLiteHistory) -> None:
        got = await _all(history, [E1])
        assert {k: v for k, v in got.items()} == {(E1, r.attr, r.key_us): (n + 1, r.instance) for n, r in enumerate(rows)}
        await history.write([], rows)  # replayed: stays where it is, iids kept
        await history.write([], _change(E1, 0, modified=M2))
        again = await _all(history, [E1])
        assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in got.items()}
        assert _count(path, "temporal_changes") == 0 and _count(path, "temporal_rows") == 6
        await history.write([], _change(E1, 1))  # new readings: a change row
        assert _count(path, "temporal_changes") == 1
        newest = await history.instances(TENANT, [E1], [ATTRS[0]], TimeRange(), 1, True)
        assert [h.time_us for h in newest] == [T0 + 1_000_000]
        _rollup_exact(path)

    _run(path, body)


# a small world: 2 entities, 3 attributes, 3 key times, 2 modifiedAt; a write is entity changes (some of the
# attributes of one entity at one key time, one modifiedAt), each value a plain number or another reading
# (sqlunit21) "unit"/"unit2": numbers with a unitCode (members with a document of their own, one of two units);
# "created": a createdAt older than modifiedAt (never a member)
_value = st.one_of(st.floats(-1e6, 1e6).map(lambda x: round(x, 2) + 0.5),
                   st.sampled_from(["text", "unit", "unit2", "ds", "created"]))
_change_st = st.tuples(st.sampled_from([E1, E2]), st.integers(0, 2), st.sampled_from([M1, M2]),
                       st.dictionaries(st.sampled_from(ATTRS[:3]), _value, min_size=1))
_op = st.one_of(st.lists(_change_st, min_size=1, max_size=3).map(
                    lambda cs: ("write", [(e, a, k, m, v) for e, k, m, d in cs for a, v in d.items()])),
                st.tuples(st.sampled_from([E1, E2]), st.sampled_from(ATTRS[:3]), st.integers(0, 2)).map(lambda k: ("delete", k)),
                st.tuples(st.sampled_from([E1, E2]), st.sampled_from(ATTRS[:3]), st.integers(0, 2), st.floats(0, 9),
                          st.sampled_from([None, "GQ"])).map(lambda k: ("replace", k)))


def _written(w: tuple[str, str, int, str, Any]) -> HistoryRow:
    entity, attr, second, modified, value = w
    if value == "text":
        return _row(entity, attr, second, "some text", modified)
    if value == "unit":
        return _row(entity, attr, second, 1.5, modified, unitCode="GQ")
    if value == "unit2":
        return _row(entity, attr, second, 3.25, modified, unitCode="CEL")
    if value == "created":
        return value_row(TENANT, entity, attr, {**_doc(second, 4.5, M2), "createdAt": M1}, T0)
    if value == "ds":
        return _row(entity, attr, second, 2.5, modified, datasetId="urn:ds:1")
    return _row(entity, attr, second, value, modified)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=10))
# some members of a change written again with another modifiedAt; a member met by a reading that is not plain
@example(ops=[("write", [(E1, ATTRS[0], 0, M1, 1.5), (E1, ATTRS[1], 0, M1, 2.5)]), ("write", [(E1, ATTRS[0], 0, M2, 3.5)])])
@example(ops=[("write", [(E1, ATTRS[0], 0, M1, 1.5), (E1, ATTRS[1], 0, M1, 2.5)]), ("write", [(E1, ATTRS[1], 0, M1, "unit")]),
              ("replace", (E1, ATTRS[0], 0, 4.0, None)), ("write", [(E1, ATTRS[0], 0, M1, 1.5), (E1, ATTRS[1], 0, M1, 2.5)])])
# (sqlunit21) members with units: a unit changed in place, a createdAt older than modifiedAt meeting a member,
# a member with a unit replaced by instanceId, then plain readings at its key again
@example(ops=[("write", [(E1, ATTRS[0], 0, M1, "unit"), (E1, ATTRS[1], 0, M1, "unit"), (E1, ATTRS[2], 0, M1, 2.5)]),
              ("write", [(E1, ATTRS[0], 0, M1, "unit2"), (E1, ATTRS[1], 0, M1, "unit"), (E1, ATTRS[2], 0, M1, 2.5)]),
              ("write", [(E1, ATTRS[1], 0, M2, "created")]), ("replace", (E1, ATTRS[2], 0, 4.0, "GQ")),
              ("write", [(E1, ATTRS[0], 0, M1, 1.5), (E1, ATTRS[1], 0, M1, 2.5)])])
# (sqlunit21) some members of a change written again with another createdAt, the same modifiedAt
@example(ops=[("write", [(E1, ATTRS[0], 0, M2, 1.5), (E1, ATTRS[1], 0, M2, 2.5), (E1, ATTRS[2], 0, M2, 3.5)]),
              ("write", [(E1, ATTRS[0], 0, M2, "created"), (E1, ATTRS[1], 0, M2, "created")])])
def test_randomised_writes_read_back_as_written(tmp_path: Path, ops: list[tuple[str, Any]]) -> None:
    path = tmp_path / f"h{abs(hash(repr(ops)))}.db"
    path.unlink(missing_ok=True)

    async def body(history: SQLiteHistory) -> None:
        model: dict[tuple[str, str, str, int], bytes] = {}  # (entity, attr, datasetId, key) -> instance
        iids: dict[tuple[str, str, str, int], int] = {}
        for kind, arg in ops:
            if kind == "write":
                rows = [_written(w) for w in arg]
                await history.write([], rows)
                for r in rows:
                    model[(r.entity_id, r.attr, r.dataset_id, r.key_us)] = r.instance
            else:
                entity, attr, second = arg[:3]
                key = (entity, attr, "", T0 + second * 1_000_000)
                if key in iids and key in model:
                    if kind == "delete":
                        assert await history.delete_instance(TENANT, entity, attr, iids.pop(key))
                        del model[key]
                    else:
                        unit = {} if arg[4] is None else {"unitCode": arg[4]}
                        fixed = _row(entity, attr, second, arg[3] + 0.5, M2, **unit)
                        assert await history.replace_instance(TENANT, entity, attr, iids[key], fixed)
                        model[key] = fixed.instance
            hits = await history.instances(TENANT, [E1, E2], None, TimeRange(), 100_000, False)
            got: dict[tuple[str, str, str, int], bytes] = {}
            for h in hits:
                ds = orjson.loads(h.instance).get("datasetId", "")
                key = (h.entity_id, h.attr, ds, h.time_us)
                assert key not in got  # never a duplicate
                got[key] = h.instance
                if key in iids:
                    assert iids[key] == h.iid  # an instance keeps its id
                iids[key] = h.iid
            assert got == model
            assert len({h.iid for h in hits}) == len(hits)
            for key, iid in iids.items():
                if key in model and key[2] == "":
                    assert await history.get_instance(TENANT, key[0], key[1], iid) == model[key]
            _rollup_exact(path)

    _run(path, body)
