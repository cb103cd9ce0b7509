"""SQLite history: series and change keys made by one write come back from their multi-row INSERT ... RETURNING,
and nothing is looked for under what that write made (issue 16, upsert22), on real SQLite files.

These guard behaviour that must not change (they pass on the code before upsert22 too):
- a write that creates many entities at once stores every instance under its own series (the keyed RETURNING
  rows are matched by key, not by order), one series row per (entity, attribute), rollups exact;
- a second history on the same file (empty caches: another process, or a restart) writing series that exist
  and series that do not finds the former (the INSERT returns nothing for them) and makes the latter: no
  duplicate series, change key or instance, and the same write again stores nothing new.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from broker.temporal.model import HistoryRow
from broker.temporal.sqlite import SQLiteHistory
from tests.broker.test_sqlrow21_changes import ATTRS, TENANT, _all, _change, _rollup_exact, _row
from tests.broker.test_sqlunit21_units import _units

ENTITIES = [f"urn:ngsi-ld:AirQualityObserved:u22-{i:04d}" for i in range(300)]


def _batch(entities: list[str], second: int, base: float) -> list[HistoryRow]:
    """Readings as a batch upsert makes them: plain numbers, numbers with units, and a text per entity."""
    rows: list[HistoryRow] = []
    for n, entity in enumerate(entities):
        rows.extend(_change(entity, second, base + n) if n % 2 else _units(entity, second, base + n))
        rows.append(_row(entity, "https://x/name", second, f"station {n}"))
    return rows


def _series(path: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT tenant, entity_id, attr, dataset_id FROM temporal_series").fetchall()


def _keys(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT tenant, entity_id FROM temporal_change_keys").fetchall()


def _expected(rows: list[HistoryRow]) -> dict[tuple[str, str, int], bytes]:
    return {(r.entity_id, r.attr, r.key_us): r.instance for r in rows}


def test_a_write_creating_many_entities_stores_each_instance_under_its_series(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    rows = _batch(ENTITIES, 0, 10.0)

    async def go() -> dict[tuple[str, str, int], tuple[int, bytes]]:
        history = SQLiteHistory(path)
        await history.open()
        try:
            await history.write([], rows)
            return await _all(history, ENTITIES)
        finally:
            await history.close()

    got = asyncio.run(go())
    assert {k: v[1] for k, v in got.items()} == _expected(rows)
    assert len({v[0] for v in got.values()}) == len(rows)  # an iid each
    series = _series(path)
    assert len(series) == len(set(series)) == len({(r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows})
    keys = _keys(path)
    assert len(keys) == len(set(keys)) and set(keys) <= {(TENANT, e) for e in ENTITIES}
    _rollup_exact(path)


def test_a_history_with_empty_caches_finds_the_series_it_did_not_make(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    first = _batch(ENTITIES[:150], 0, 10.0)
    # the same entities at a later key time (stored series, stored change keys) and new ones
    second = _batch(ENTITIES, 60, 30.0)
    # and a reading of a known series at the first key time, replaced
    replaced = [_row(ENTITIES[1], ATTRS[0], 0, 99.5)]

    async def go() -> dict[tuple[str, str, int], tuple[int, bytes]]:
        one, two = SQLiteHistory(path), SQLiteHistory(path)
        await one.open()
        try:
            await one.write([], first)
            await two.open()  # its caches are empty: every series and key of `first` is stored, not known
            try:
                await two.write([], second + replaced)
                await two.write([], second)  # the same again: nothing new
                return await _all(two, ENTITIES)
            finally:
                await two.close()
        finally:
            await one.close()

    got = asyncio.run(go())
    expected = _expected(first) | _expected(second) | _expected(replaced)
    assert {k: v[1] for k, v in got.items()} == expected
    series = _series(path)
    assert len(series) == len(set(series))
    assert set(series) == {(r.tenant, r.entity_id, r.attr, r.dataset_id) for r in first + second}
    keys = _keys(path)
    assert len(keys) == len(set(keys))
    _rollup_exact(path)
