"""Compact history rows (series ids, broker.temporal.model.compact_instance), on real SQLite and PostgreSQL.

- a stored instance keeps only what its columns cannot rebuild: a plain reading is a few bytes;
- the rebuilt document is byte for byte the one written (any document: a generated property);
- a database written in the former layout (text keys in every row, every instance stored whole,
  PostgreSQL's rollup without its `impure` column) opens and reads back every instance unchanged
  under its iid, its rollups unchanged, and takes new rows;
- an instance written again with another value (same key, same compact bytes) still replaces it.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker.temporal.model import (
    VALUE,
    EntityRow,
    HistoryRow,
    deletion_row,
    from_us,
    packed_created,
    packed_value_json,
    rebuild_instance,
    stored_value,
    to_us,
    value_row,
    value_text,
)
from broker.temporal.postgres import PostgresHistory
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import HistoryStorage, TimeRange
from tests import services

TENANT = "compact"
ENTITY = "urn:ngsi-ld:AirQualityObserved:c-1"
NO2 = "https://smartdatamodels.org/dataModel.Environment/no2"
T0 = to_us("2026-03-01T00:00:00Z")
MAIN_INSERT = (  # the INSERT of the former layout: the document stored whole
    "INSERT INTO temporal_instances (tenant, entity_id, attr, dataset_id, kind, key_us, observed_us,"
    " created_us, modified_us, deleted_us, value_num, value_json, instance)"
)


def _reading(second: int, value: Any, **extra: Any) -> dict[str, Any]:
    at = from_us(T0 + second * 1_000_000).replace(".000Z", "Z")  # as QuantumLeap's notify writes TimeInstant
    return {"type": "Property", "value": value, **extra, "observedAt": at,
            "createdAt": "2026-12-06T09:16:15.928Z", "modifiedAt": "2026-12-06T09:16:15.928Z"}


def _rows() -> list[HistoryRow]:
    docs = [_reading(s, 20.0 + s) for s in range(5)]
    docs.append(_reading(5, 7, unitCode="GQ", datasetId="urn:ds:1"))
    docs.append({"type": "Relationship", "object": "urn:x:1", "observedAt": "2026-03-01T00:00:06.5+01:00",
                 "modifiedAt": "2026-12-06T09:16:15.928Z", "sub": {"type": "Property", "value": {"a": [1, None]}}})
    docs.append({"type": "LanguageProperty", "languageMap": {"en": "x", "fr": "y"}, "observedAt": "2026-03-01T00:00:07Z"})
    rows = [value_row(TENANT, ENTITY, NO2, d, T0) for d in docs]
    rows.append(deletion_row(TENANT, ENTITY, NO2, {"type": "Property", "value": 1}, T0 + 9_000_000))
    return rows


async def _read_all(history: HistoryStorage) -> dict[int, bytes]:
    hits = await history.instances(TENANT, [ENTITY], None, TimeRange(), 1000, False)
    return {h.time_us: h.instance for h in hits}


def _expected(rows: list[HistoryRow]) -> dict[int, bytes]:
    return {r.key_us: r.instance for r in rows}


documents = st.dictionaries(
    st.sampled_from(["type", "value", "object", "languageMap", "observedAt", "createdAt", "modifiedAt", "datasetId",
                     "unitCode", "deletedAt", "instanceId", "sub"]),
    st.one_of(
        st.sampled_from(["Property", "Relationship", "GeoProperty", "2026-03-01T00:00:00Z", "2026-03-01T00:00:00.000Z",
                         "2026-03-01T00:00:00.250Z", "2026-03-01T00:00:00.000001Z", "2026-03-01T01:00:00+01:00",
                         "1970-01-01T00:00:00Z", "not a time"]),
        st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=5), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                     max_leaves=6),
    ),
)


@settings(max_examples=400, deadline=None)
@given(doc=documents, default_us=st.sampled_from([0, T0, T0 + 123_456, T0 + 250_000]))
def test_a_rebuilt_instance_is_the_document_written(doc: dict[str, Any], default_us: int) -> None:
    for row in (value_row(TENANT, ENTITY, NO2, doc, default_us), deletion_row(TENANT, ENTITY, NO2, doc, default_us)):
        rebuilt = rebuild_instance(row.stored, row.value_json, row.observed_us, row.created_us, row.modified_us,
                                   row.deleted_us)
        assert rebuilt == row.instance == orjson.dumps(orjson.loads(row.instance))
        # the columns as stored (a NULL where another column holds the value) and read back as the stores do
        value_json = value_text(packed_value_json(row), row.value_num)
        created = packed_created(row)
        if created is None and row.kind == VALUE:
            created = row.modified_us
        assert value_json == row.value_json and created == row.created_us
        assert rebuild_instance(row.stored, value_json, row.observed_us, created, row.modified_us,
                                row.deleted_us) == row.instance
        if row.value_num is not None and isinstance(orjson.loads(row.value_json), float) and row.value_json != "-0.0":
            assert packed_value_json(row) is None  # every JSON float but -0.0 is read from value_num


_VALUE_MEMBERS = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")


@settings(max_examples=400, deadline=None)
@given(doc=documents, default_us=st.sampled_from([0, T0, T0 + 123_456]))
def test_the_value_read_from_the_columns_is_the_documents(doc: dict[str, Any], default_us: int) -> None:
    # what the QuantumLeap Python path reads without rebuilding the document: deletedAt and the value member
    for row in (value_row(TENANT, ENTITY, NO2, doc, default_us), deletion_row(TENANT, ENTITY, NO2, doc, default_us)):
        parsed = orjson.loads(row.instance)
        expected = ("deletedAt" in parsed, next((parsed[m] for m in _VALUE_MEMBERS if m in parsed), None))
        got = stored_value(row.stored, row.value_json)
        assert got == expected and [type(x) for x in got] == [type(x) for x in expected]
    whole = orjson.dumps(doc)  # a row stored before the compact layout
    assert stored_value(whole, None) == ("deletedAt" in doc, next((doc[m] for m in _VALUE_MEMBERS if m in doc), None))


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


async def _exercise(history: HistoryStorage, stored: Any) -> None:
    rows = _rows()
    await history.write([EntityRow(TENANT, ENTITY, ["https://x/T"])], rows)
    assert await _read_all(history) == _expected(rows)
    sizes = await stored()
    assert max(sizes[:5]) <= 8, sizes  # b'TVOcm{}': the value and times are the columns'
    iid = next(h.iid for h in await history.instances(TENANT, [ENTITY], None, TimeRange(), 1000, False) if h.time_us == T0)
    assert await history.get_instance(TENANT, ENTITY, NO2, iid) == rows[0].instance
    # the same key again with another value: same compact bytes, the value column differs; it replaces
    corrected = value_row(TENANT, ENTITY, NO2, _reading(0, 99.5), T0)
    assert corrected.stored == rows[0].stored
    await history.write([], [corrected])
    got = await _read_all(history)
    assert orjson.loads(got[T0])["value"] == 99.5
    assert len(got) == len(rows)


TIME_INSTANT = "https://uri.etsi.org/ngsi-ld/default-context/TimeInstant"


def _time_instant(second: int, value_at: str | None = None) -> dict[str, Any]:
    """QuantumLeap's TimeInstant: a DateTime value, its own time the observedAt of the entity's attributes."""
    doc = _reading(second, None)
    doc["value"] = {"@type": "DateTime", "@value": value_at or doc["observedAt"]}
    return doc


async def _exercise_key_datetime(history: HistoryStorage, raw: Any) -> None:
    """A DateTime value that is the row's key in whole seconds is stored as '' (and NULL for the plain document)
    and reads back as written: the instances, their value text, instanceId, distinctCount, a replayed write."""
    docs = [_time_instant(0), _time_instant(1), _time_instant(2, "2026-03-01T00:00:02.000Z"),  # ms text: kept
            _time_instant(3, "2026-03-01T00:00:04Z"), {**_time_instant(5), "observedAt": "2026-03-01T00:00:05.250Z"},
            _time_instant(6, "2026-03-01T00:00:00Z"), _time_instant(7)]
    docs[5]["value"] = {"@value": "2026-03-01T00:00:07Z", "@type": "DateTime"}  # another member order: kept
    rows = [value_row(TENANT, ENTITY, TIME_INSTANT, d, T0) for d in docs]
    rows[6] = value_row(TENANT, ENTITY, TIME_INSTANT, {**docs[6], "value": {"@type": "DateTime", "@value": "1969-12-31T23:59:59Z"},
                                                       "observedAt": "1969-12-31T23:59:59Z"}, T0)  # before 1970: kept
    await history.write([EntityRow(TENANT, ENTITY, ["https://x/T"])], rows)
    hits = await history.instances(TENANT, [ENTITY], [TIME_INSTANT], TimeRange(), 1000, False)
    assert [h.instance for h in hits] == [r.instance for r in sorted(rows, key=lambda r: r.key_us)]
    assert [h.value_json for h in hits] == [r.value_json for r in sorted(rows, key=lambda r: r.key_us)]
    stored = {k: v for k, v in zip(sorted(r.key_us for r in rows), await raw())}
    assert stored[rows[0].key_us] == ("", None) and stored[rows[1].key_us] == ("", None)
    assert all(stored[r.key_us][0] == r.value_json for r in rows[2:])
    second = next(h.iid for h in hits if h.time_us == rows[1].key_us)
    assert await history.get_instance(TENANT, ENTITY, TIME_INSTANT, second) == rows[1].instance
    # every value differs as text (2 is 02.000Z, 6 is 00Z with another member order): distinctCount 7
    buckets = await history.aggregate(TENANT, [ENTITY], [TIME_INSTANT], TimeRange(), 0, 0)
    assert (buckets[0].total, buckets[0].distinct, buckets[0].numeric) == (7, 7, 0)
    again = value_row(TENANT, ENTITY, TIME_INSTANT, _time_instant(8, "2026-03-01T00:00:00Z"), T0)  # value of row 0's time
    await history.write([], [*rows, again])  # replayed, and one more
    buckets = await history.aggregate(TENANT, [ENTITY], [TIME_INSTANT], TimeRange(), 0, 0)
    assert (buckets[0].total, buckets[0].distinct) == (8, 7)  # its text is row 0's (stored '' there): counted once
    assert [h.instance for h in await history.instances(TENANT, [ENTITY], [TIME_INSTANT], TimeRange(), 1000, False)] == [
        r.instance for r in sorted([*rows, again], key=lambda r: r.key_us)]


def test_compact_rows_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def stored() -> list[int]:
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT length(instance) FROM temporal_instances ORDER BY iid")]

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            await _exercise(history, stored)

            async def raw() -> list[tuple[str, bytes | None]]:
                with sqlite3.connect(path) as conn:
                    return conn.execute("SELECT r.value_json, r.instance FROM temporal_rows AS r JOIN temporal_series AS s"
                                        " ON s.sid = r.sid WHERE s.attr = ? ORDER BY r.key_us", (TIME_INSTANT,)).fetchall()

            await _exercise_key_datetime(history, raw)
        finally:
            await history.close()

    asyncio.run(run())


def test_compact_rows_on_postgres(pg_dsn: str) -> None:
    schema = f"test_compact_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        history = PostgresHistory(pg_dsn, schema)

        async def stored() -> list[int]:
            return [r[0] for r in await conn.fetch("SELECT length(instance) FROM temporal_instances ORDER BY iid")]

        try:
            await history.open()
            # hist17's column order: obs_key in kind's padding, before key_us (8 bytes of each row)
            names = [r[0] for r in await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = 'temporal_rows'::regclass"
                                                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
            assert names[:5] == ["iid", "sid", "kind", "obs_key", "key_us"]
            await _exercise(history, stored)

            async def raw() -> list[tuple[str, bytes | None]]:
                return [(r[0], r[1]) for r in await conn.fetch(
                    "SELECT r.value_json, r.instance FROM temporal_rows AS r JOIN temporal_series AS s ON s.sid = r.sid"
                    " WHERE s.attr = $1 ORDER BY r.key_us", TIME_INSTANT)]

            await _exercise_key_datetime(history, raw)
        finally:
            await history.close()
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())


def _legacy_params(rows: list[HistoryRow]) -> list[tuple[Any, ...]]:
    return [(r.tenant, r.entity_id, r.attr, r.dataset_id, r.kind, r.key_us, r.observed_us, r.created_us, r.modified_us,
             r.deleted_us, r.value_num, r.value_json, r.instance) for r in rows]


# the history tables, indexes, rollup table and triggers of SQLite as main created them at 37a0dc1
# (broker.temporal.sqlite SCHEMA + ROLLUP_SCHEMA): text keys in every row, documents stored whole
FORMER_SQLITE = Path(__file__).with_name("former_history_schema_sqlite.json")


def test_a_former_layout_sqlite_file_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rows = _rows()
    others = [value_row(TENANT, f"urn:e:{n}", f"https://x/a{n % 3}", _reading(n, n), T0) for n in range(20)]
    with sqlite3.connect(path) as conn:  # the former layout, filled as the former code wrote it
        for sql in orjson.loads(FORMER_SQLITE.read_bytes()):
            conn.execute(sql)
        conn.executemany(MAIN_INSERT + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _legacy_params(rows + others))
        conn.execute("DELETE FROM temporal_instances WHERE entity_id = 'urn:e:3'")  # iids with a gap
        before = conn.execute("SELECT * FROM temporal_instances ORDER BY iid").fetchall()
        rollup_before = conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall()

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            assert await _read_all(history) == _expected(rows)
            with sqlite3.connect(path) as conn:  # every row kept under its iid, through the view; rollups as they were
                assert conn.execute("SELECT iid, tenant, entity_id, attr, dataset_id, kind, key_us, observed_us,"
                                    " created_us, modified_us, deleted_us, value_num, value_json, instance"
                                    " FROM temporal_instances ORDER BY iid").fetchall() == before
                assert conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall() == rollup_before
                assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'temporal_instances'").fetchone() == ("view",)
            newer = value_row(TENANT, ENTITY, NO2, _reading(60, 1.5), T0)
            await history.write([], [*rows, newer])  # a replayed change log, and a new reading
            assert await _read_all(history) == {**_expected(rows), newer.key_us: newer.instance}
            buckets = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0, distinct=False)
            assert buckets[0].total == 9  # the rollup counts the former rows and the new one (kind 0)
        finally:
            await history.close()
        history = SQLiteHistory(path)  # opened again: nothing more to move
        await history.open()
        try:
            assert len(await _read_all(history)) == len(rows) + 1
        finally:
            await history.close()

    asyncio.run(run())


FORMER_POSTGRES = Path(__file__).with_name("former_history_schema_postgres.json")  # likewise, SCHEMA + ROLLUP_SCHEMA


def test_a_former_layout_postgres_schema_keeps_its_history(pg_dsn: str) -> None:
    schema = f"test_compact_old_{uuid.uuid4().hex[:12]}"
    rows = _rows()
    others = [value_row(TENANT, f"urn:e:{n}", f"https://x/a{n % 3}", _reading(n, n), T0) for n in range(20)]

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        try:
            for sql in orjson.loads(FORMER_POSTGRES.read_bytes()):  # the former layout, filled as the former code did
                await conn.execute(sql)
            await conn.executemany(MAIN_INSERT + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                                   _legacy_params(rows + others))
            await conn.execute("DELETE FROM temporal_instances WHERE entity_id = 'urn:e:3'")
            before = [tuple(r) for r in await conn.fetch("SELECT * FROM temporal_instances ORDER BY iid")]
            rollup_before = [tuple(r) for r in await conn.fetch("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6")]
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                assert await _read_all(history) == _expected(rows)
                assert [tuple(r) for r in await conn.fetch(
                    "SELECT iid, tenant, entity_id, attr, dataset_id, kind, key_us, observed_us, created_us, modified_us,"
                    " deleted_us, value_num, value_json, instance FROM temporal_instances ORDER BY iid")] == before
                assert [tuple(r) for r in await conn.fetch(
                    "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max,"
                    " sumsq FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6")] == rollup_before
                newer = value_row(TENANT, ENTITY, NO2, _reading(60, 1.5), T0)
                await history.write([], [*rows, newer])  # a replayed change log, and a new reading
                got = await _read_all(history)
                assert got == {**_expected(rows), newer.key_us: newer.instance}
                assert max(r[0] for r in before) < await conn.fetchval("SELECT max(iid) FROM temporal_rows")  # no iid reused
                # the LanguageProperty's hour is impure; found through the new partial index's column
                assert await history.impure_attrs(TENANT, [ENTITY], TimeRange()) == {NO2}
                names = {r[0] for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'temporal_hourly'", schema)}
                assert "temporal_hourly_impure" in names  # the rollups under series ids since pgbytes22
            finally:
                await history.close()
            history = PostgresHistory(pg_dsn, schema)  # opened again: nothing more to move
            await history.open()
            try:
                assert len(await _read_all(history)) == len(rows) + 1
            finally:
                await history.close()
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())


def test_a_failed_write_leaves_no_series_id_behind_on_postgres(pg_dsn: str) -> None:
    """The sids of series made by a transaction that rolls back are not kept: the next write makes them anew."""
    schema = f"test_compact_tx_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            good = value_row(TENANT, ENTITY, NO2, _reading(0, 1.0), T0)
            bad = value_row(TENANT, ENTITY, "https://x/other", _reading(1, 2.0), T0)
            bad.key_us = 2**63  # out of bigint: the rows' statement fails, after the series were inserted
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OverflowError)):
                await history.write([], [good, bad])
            other = value_row(TENANT, ENTITY, "https://x/other", _reading(1, 2.0), T0)
            await history.write([], [good, other])
            hits = await history.instances(TENANT, [ENTITY], None, TimeRange(), 1000, False)
            assert sorted((h.attr, h.instance) for h in hits) == sorted([(NO2, good.instance), (other.attr, other.instance)])
        finally:
            await history.close()
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())


# --- the columns a row leaves out (histbytes16), through the real stores ------------------------------------


def _instances_of(docs: list[dict[str, Any]], entity: str) -> list[HistoryRow]:
    docs = [{k: v for k, v in d.items() if k != "datasetId"} for d in docs]  # one series: datasetId a text
    rows = [value_row(TENANT, entity, NO2, d, T0 + n * 1000) for n, d in enumerate(docs)]
    rows += [deletion_row(TENANT, entity, NO2, d, 7 + n) for n, d in enumerate(docs[:2])]
    return list({(r.key_us, r.kind): r for r in rows}.values())  # the last of a key, as the store keeps


async def _round_trip(history: HistoryStorage, entity: str, rows: list[HistoryRow]) -> None:
    await history.write([EntityRow(TENANT, entity, ["https://x/T"])], rows)
    hits = await history.instances(TENANT, [entity], None, TimeRange(), 1000, False)
    by_key = {(r.key_us, r.instance) for r in rows}
    assert {(h.time_us, h.instance) for h in hits} == by_key
    expected_values = sorted((r.key_us, orjson.dumps(stored_value(r.stored, r.value_json))) for r in rows)
    assert sorted((h.time_us, orjson.dumps(h.value())) for h in hits) == expected_values
    for h in hits[:3]:
        assert await history.get_instance(TENANT, entity, NO2, h.iid) == h.instance
    # the time columns a row may leave out, as a query on them sees them
    for column, present in (("observed_us", [r for r in rows if r.observed_us is not None]),
                            ("created_us", [r for r in rows if r.created_us is not None])):
        got = await history.instances(TENANT, [entity], None, TimeRange(column, 0, 2**62), 1000, False)
        assert len(got) == len(present), column
    values = [r for r in rows if r.kind == VALUE]
    buckets = await history.aggregate(TENANT, [entity], [NO2], TimeRange(), 0, 0)
    assert (buckets[0].total, buckets[0].distinct) == (len(values), len({r.value_json for r in values}))


def _check_round_trips(history: HistoryStorage, loop: asyncio.AbstractEventLoop, examples: int) -> None:
    numbers = itertools.count()
    # every finite float: PostgreSQL's rollup squares each value (sumsq), where float8 overflow and underflow
    # are errors, and 1e200 or 2.2e-308 once failed the whole write
    floats = st.floats(allow_nan=False, allow_infinity=False)
    extremes = st.sampled_from([1e200, -1e300, 1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, -1e-170])
    # several readings of one hour: their sum and sum of squares must not overflow either
    some_docs = st.lists(documents | st.builds(lambda v: _reading(1, v), floats | extremes), min_size=1, max_size=6)

    @settings(max_examples=examples, deadline=None)
    @given(docs=some_docs)
    @example(docs=[_reading(1, 1.7976931348623157e308), _reading(2, 1.7976931348623157e308), _reading(3, 5e-324)])
    def check(docs: list[dict[str, Any]]) -> None:
        entity = f"urn:e:rt{next(numbers)}"
        loop.run_until_complete(_round_trip(history, entity, _instances_of(docs, entity)))

    check()


def test_rows_read_back_as_written_on_sqlite(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    history = SQLiteHistory(tmp_path / "h.db")
    loop.run_until_complete(history.open())
    try:
        _check_round_trips(history, loop, 150)
    finally:
        loop.run_until_complete(history.close())
        loop.close()


def test_rows_read_back_as_written_on_postgres(pg_dsn: str) -> None:
    schema = f"test_compact_rt_{uuid.uuid4().hex[:12]}"
    loop = asyncio.new_event_loop()

    async def make() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()

    loop.run_until_complete(make())
    history = PostgresHistory(pg_dsn, schema)
    try:
        loop.run_until_complete(history.open())
        _check_round_trips(history, loop, 60)
    finally:
        loop.run_until_complete(history.close())
        loop.run_until_complete(drop())
        loop.close()


# the history tables of histcompact16 (integ at b0f14de: SCHEMA, _VIEW, ROLLUP_SCHEMA of broker.temporal.sqlite
# and .postgres): every column stored, SQLite's (sid, modified_us) index, PostgreSQL's primary key on iid
COMPACT16_SQLITE = Path(__file__).with_name("histcompact16_schema_sqlite.json")
COMPACT16_POSTGRES = Path(__file__).with_name("histcompact16_schema_postgres.json")
COMPACT16_SERIES = "INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id) VALUES "
COMPACT16_ROWS = ("INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
                  " value_json, instance) VALUES ")
VIEW_ROWS = ("SELECT iid, tenant, entity_id, attr, dataset_id, kind, key_us, observed_us, created_us, modified_us,"
             " deleted_us, value_num, value_json, instance FROM temporal_instances ORDER BY iid")


def _compact16_rows() -> tuple[list[HistoryRow], list[HistoryRow]]:
    rows = _rows()
    others = [value_row(TENANT, f"urn:e:{n}", f"https://x/a{n % 3}", _reading(n, n + 0.5), T0) for n in range(20)]
    return rows, others


async def _after_compact16(history: HistoryStorage, rows: list[HistoryRow]) -> None:
    """What a history of histcompact16 must still do once opened: read, take rows, find instances by id."""
    assert await _read_all(history) == _expected(rows)
    old = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0)
    again = value_row(TENANT, ENTITY, NO2, _reading(61, 21.0), T0)  # 21.0: a value a former row has (text there)
    newer = value_row(TENANT, ENTITY, NO2, _reading(60, 1.5), T0)
    await history.write([], [*rows, newer, again])  # a replayed change log, and new readings
    assert await _read_all(history) == {**_expected(rows), newer.key_us: newer.instance, again.key_us: again.instance}
    now = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0)
    assert (now[0].total, now[0].distinct) == (old[0].total + 2, old[0].distinct + 1)  # 21.0 counted once
    rolled = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0, distinct=False)
    assert rolled[0].total == now[0].total and rolled[0].sum == now[0].sum
    hits = {h.time_us: h for h in await history.instances(TENANT, [ENTITY], None, TimeRange(), 1000, False)}
    first = hits[T0]  # a former row, found by its instanceId
    assert await history.get_instance(TENANT, ENTITY, NO2, first.iid) == rows[0].instance
    fixed = value_row(TENANT, ENTITY, NO2, {**orjson.loads(rows[0].instance), "value": 5.25,
                                            "modifiedAt": "2026-12-07T00:00:00Z"}, T0)
    assert await history.replace_instance(TENANT, ENTITY, NO2, first.iid, fixed)
    assert await history.get_instance(TENANT, ENTITY, NO2, first.iid) == fixed.instance
    created = await history.instances(TENANT, [ENTITY], [NO2], TimeRange("created_us", T0, None), 1000, False)
    assert first.iid in {h.iid for h in created}  # its createdAt kept (2026-12-06), not its new modifiedAt
    assert await history.delete_instance(TENANT, ENTITY, NO2, hits[T0 + 1_000_000].iid)
    assert await history.get_instance(TENANT, ENTITY, NO2, hits[T0 + 1_000_000].iid) is None
    assert await history.delete_instances(TENANT, ["urn:e:4"], TimeRange()) == 1


def test_a_histcompact16_sqlite_file_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "compact16.db"
    rows, others = _compact16_rows()
    with sqlite3.connect(path) as conn:  # the layout of histcompact16, filled as its code wrote it
        for sql in orjson.loads(COMPACT16_SQLITE.read_bytes()):
            conn.execute(sql)
        keys = list(dict.fromkeys((r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows + others))
        conn.executemany(COMPACT16_SERIES + "(?, ?, ?, ?)", keys)
        sids = {k: n + 1 for n, k in enumerate(keys)}
        conn.executemany(COMPACT16_ROWS + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (sids[(r.tenant, r.entity_id, r.attr, r.dataset_id)], r.kind, r.key_us, r.observed_us, r.created_us,
             r.modified_us, r.deleted_us, r.value_num, r.value_json, r.stored) for r in rows + others])
        conn.execute("DELETE FROM temporal_rows WHERE sid = (SELECT sid FROM temporal_series WHERE entity_id = 'urn:e:3')")
        before = conn.execute(VIEW_ROWS).fetchall()
        rollup_before = conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall()

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            with sqlite3.connect(path) as conn:  # every row as it was, through the view; rollups as they were
                assert conn.execute(VIEW_ROWS).fetchall() == before
                assert conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall() == rollup_before
                _assert_clustered(conn)
            await _after_compact16(history, rows)
            with sqlite3.connect(path) as conn:  # the new rows leave out what their other columns hold
                newest = conn.execute("SELECT observed_us, created_us, value_json, obs_key, instance, iid FROM temporal_rows"
                                      " ORDER BY iid DESC LIMIT 1").fetchone()
                assert newest[:5] == (None, None, None, 1, None) and newest[5] > max(r[0] for r in before)
        finally:
            await history.close()
        history = SQLiteHistory(path)  # opened again: the same
        await history.open()
        try:
            assert len(await _read_all(history)) == len(rows) + 1
        finally:
            await history.close()

    asyncio.run(run())


def _assert_clustered(conn: sqlite3.Connection) -> None:
    """temporal_rows of hist17: one WITHOUT ROWID b-tree on (sid, key_us, kind), no other index."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'temporal_rows' AND type <> 'trigger'")}
    assert names == {"temporal_rows"}  # no (sid, modified_us), no (sid, key_us, kind) index beside the table
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'temporal_rows'").fetchone()[0]
    assert "WITHOUT ROWID" in sql and "PRIMARY KEY (sid, key_us, kind)" in sql
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'temporal_rows_rowid'").fetchone() == (0,)


# the history tables of histbytes16 (main at 706e4d8: SCHEMA, _VIEW, ROLLUP_SCHEMA of broker.temporal.sqlite): a rowid
# table with its (sid, key_us, kind) index, columns left NULL where another holds them (obs_key)
BYTES16_SQLITE = Path(__file__).with_name("histbytes16_schema_sqlite.json")
BYTES16_ROWS = ("INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
                " value_json, instance, obs_key) VALUES ")


def test_a_histbytes16_sqlite_file_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "bytes16.db"
    rows, others = _compact16_rows()
    with sqlite3.connect(path) as conn:  # the layout of histbytes16, filled as its code wrote it
        for sql in orjson.loads(BYTES16_SQLITE.read_bytes()):
            conn.execute(sql)
        keys = list(dict.fromkeys((r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows + others))
        conn.executemany(COMPACT16_SERIES + "(?, ?, ?, ?)", keys)
        sids = {k: n + 1 for n, k in enumerate(keys)}
        conn.executemany(BYTES16_ROWS + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (sids[(r.tenant, r.entity_id, r.attr, r.dataset_id)], r.kind, r.key_us,
             None if r.observed_us == r.key_us else r.observed_us, packed_created(r), r.modified_us, r.deleted_us,
             r.value_num, packed_value_json(r), r.stored, 1 if r.observed_us == r.key_us else None) for r in rows + others])
        conn.execute("DELETE FROM temporal_rows WHERE sid = (SELECT sid FROM temporal_series WHERE entity_id = 'urn:e:3')")
        conn.execute("DELETE FROM temporal_rows WHERE iid = (SELECT max(iid) FROM temporal_rows)")  # a rowid reused next
        before = conn.execute(VIEW_ROWS).fetchall()
        rollup_before = conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
        assert {r[0] for r in conn.execute("SELECT instance FROM temporal_rows")} >= {b"TVOcm{}"}

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            with sqlite3.connect(path) as conn:  # every row as it was, under its iid, through the view; rollups too
                assert conn.execute(VIEW_ROWS).fetchall() == before
                assert conn.execute("SELECT * FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6").fetchall() == rollup_before
                _assert_clustered(conn)
                assert conn.execute("SELECT next FROM temporal_next_iid").fetchone() == (max(r[0] for r in before) + 1,)
            await _after_compact16(history, rows)
            with sqlite3.connect(path) as conn:
                newest = conn.execute("SELECT observed_us, created_us, value_json, obs_key, instance, iid FROM temporal_rows"
                                      " ORDER BY iid DESC LIMIT 1").fetchone()
                assert newest[:5] == (None, None, None, 1, None) and newest[5] > max(r[0] for r in before)
                # a former row of the plain layout keeps its bytes (read the same as NULL)
                assert conn.execute("SELECT count(*) FROM temporal_rows WHERE instance = ?", (b"TVOcm{}",)).fetchone()[0] > 0
        finally:
            await history.close()
        history = SQLiteHistory(path)  # opened again: the same
        await history.open()
        try:
            assert len(await _read_all(history)) == len(rows) + 1
        finally:
            await history.close()

    asyncio.run(run())


BYTES16_POSTGRES = Path(__file__).with_name("histbytes16_schema_postgres.json")  # main at 706e4d8: instance NOT NULL


@pytest.mark.parametrize("layout", ["histcompact16", "histbytes16"])
def test_a_histcompact16_postgres_schema_keeps_its_history(pg_dsn: str, layout: str) -> None:
    """The layouts of histcompact16 (every column stored) and histbytes16 (NULL where another column holds the
    value, the iid's primary key dropped for BRIN), each filled as its code wrote it."""
    schema = f"test_compact16_{uuid.uuid4().hex[:12]}"
    rows, others = _compact16_rows()
    packed = layout == "histbytes16"

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        try:
            for sql in orjson.loads((BYTES16_POSTGRES if packed else COMPACT16_POSTGRES).read_bytes()):
                await conn.execute(sql)
            keys = list(dict.fromkeys((r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows + others))
            await conn.executemany(COMPACT16_SERIES + "($1, $2, $3, $4)", keys)
            sids = {(r[1], r[2], r[3], r[4]): r[0] for r in await conn.fetch("SELECT sid, tenant, entity_id, attr,"
                                                                              " dataset_id FROM temporal_series")}
            await conn.executemany(COMPACT16_ROWS + "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", [
                (sids[(r.tenant, r.entity_id, r.attr, r.dataset_id)], r.kind, r.key_us, r.observed_us,
                 packed_created(r) if packed else r.created_us, r.modified_us, r.deleted_us, r.value_num,
                 packed_value_json(r) if packed else r.value_json, r.stored) for r in rows + others])
            assert await conn.fetchval("SELECT count(*) FROM temporal_rows WHERE instance = $1", b"TVOcm{}") > 0
            await conn.execute("DELETE FROM temporal_rows WHERE sid = (SELECT sid FROM temporal_series"
                               " WHERE entity_id = 'urn:e:3')")
            before = [tuple(r) for r in await conn.fetch(VIEW_ROWS)]
            rollup_sql = ("SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min,"
                          " max, sumsq FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6")
            rollup_before = [tuple(r) for r in await conn.fetch(rollup_sql)]
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                assert [tuple(r) for r in await conn.fetch(VIEW_ROWS)] == before
                assert [tuple(r) for r in await conn.fetch(rollup_sql)] == rollup_before
                names = {r[0] for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'temporal_rows'", schema)}
                assert "temporal_rows_pkey" not in names and "temporal_rows_iid_brin" in names
                await _after_compact16(history, rows)
                newest = await conn.fetchrow("SELECT iid, created_us, value_json, instance, observed_us, obs_key"
                                             " FROM temporal_rows ORDER BY iid DESC LIMIT 1")
                assert newest[0] > max(r[0] for r in before) and tuple(newest[1:]) == (None, None, None, None, True)
                # obs_key added at the end of the former table (made again, it would sit after kind)
                names = [r[0] for r in await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = 'temporal_rows'::regclass"
                                                        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
                assert names[-1] == "obs_key"
                # the former rows of the plain layout keep their bytes (read the same as NULL: VIEW_ROWS above)
                assert await conn.fetchval("SELECT count(*) FROM temporal_rows WHERE instance = $1", b"TVOcm{}") > 0
            finally:
                await history.close()
            history = PostgresHistory(pg_dsn, schema)  # opened again: the same
            await history.open()
            try:
                assert len(await _read_all(history)) == len(rows) + 1
            finally:
                await history.close()
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())


async def _replace_and_add_in_one_hour(history: HistoryStorage) -> None:
    first = value_row(TENANT, ENTITY, NO2, _reading(1, 1.5), T0)
    await history.write([EntityRow(TENANT, ENTITY, ["https://x/T"])], [first])
    # one statement replaces an instance and inserts another in the same hour (PostgreSQL: its UPDATE trigger
    # recomputes the hour, the new row with it, before its INSERT trigger runs)
    await history.write([], [value_row(TENANT, ENTITY, NO2, _reading(1, 2.5), T0),
                             value_row(TENANT, ENTITY, NO2, _reading(2, 4.5), T0)])
    rows = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0)
    rolled = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0, distinct=False)
    assert (rows[0].total, rows[0].sum) == (2, 7.0)
    assert (rolled[0].total, rolled[0].sum, rolled[0].sumsq) == (2, 7.0, 2.5 * 2.5 + 4.5 * 4.5)
    await history.write([], [value_row(TENANT, ENTITY, NO2, _reading(3, 1.0), T0)])  # a later statement adds
    rolled = await history.aggregate(TENANT, [ENTITY], [NO2], TimeRange(), 0, 0, distinct=False)
    assert (rolled[0].total, rolled[0].sum) == (3, 8.0)


def test_a_replaced_and_an_added_instance_count_once_in_the_rollups_on_sqlite(tmp_path: Path) -> None:
    async def run() -> None:
        history = SQLiteHistory(tmp_path / "h.db")
        await history.open()
        try:
            await _replace_and_add_in_one_hour(history)
        finally:
            await history.close()

    asyncio.run(run())


def test_a_replaced_and_an_added_instance_count_once_in_the_rollups_on_postgres(pg_dsn: str) -> None:
    schema = f"test_compact_roll_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            await _replace_and_add_in_one_hour(history)
        finally:
            await history.close()
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())
