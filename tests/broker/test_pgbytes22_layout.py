"""PostgreSQL history's smaller layout (issue 16, pgbytes22), on a real PostgreSQL.

- the hourly rollups are kept under the series id (temporal_hourly) with temporal_rollup a view of them:
  a rollup row no longer carries the series' text keys, in the row and in its primary key;
- the unique b-tree of temporal_rows is (sid, kind, key_us): 24-byte entries where (sid, key_us, kind)
  took 32;
- a schema made by the code before (main at issue 16's round 7: text-keyed rollup table, the index on
  (sid, key_us, kind)) opens: its rollups move under series ids unchanged, its index is built again, every
  instance reads back the same, and new writes add to its rollups;
- reads in key order across kinds (a value and a deletion at the same key time) keep their order through
  both read paths (a few series one by one, more through LATERAL): behaviour that must not change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from broker.temporal import postgres as pg_history
from broker.temporal.model import EntityRow, HistoryRow, deletion_row, from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory
from broker.temporal.storage import TimeRange
from tests import services

TENANT = "pgbytes22"
T0 = to_us("2026-03-01T00:00:00Z")
# an attribute's expanded name as long as the smart data models' ones (the rollups' text keys)
ATTR = "https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/no2"
FORMER = Path(__file__).with_name("pgbytes22_former_schema_postgres.json")  # SCHEMA, _VIEW, ROLLUP_SCHEMA at 23e1167
_ROLLUP_COLUMNS = ("SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min,"
                   " max, sumsq FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6")


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _reading(entity: str, second: int, value: Any, attr: str = ATTR, **extra: Any) -> HistoryRow:
    inst = {"type": "Property", "value": value, **extra, "observedAt": from_us(T0 + second * 1_000_000)}
    return value_row(TENANT, entity, attr, inst, T0 + 10**9)


def _rows(entity: str) -> list[HistoryRow]:
    rows = [_reading(entity, s * 600, 20.0 + s) for s in range(12)]  # two hours of readings
    rows.append(_reading(entity, 7, 5, datasetId="urn:ds:1"))
    rows.append(_reading(entity, 7200 + 3, "low"))  # an impure hour
    rows.append(_reading(entity, 7200 + 9, 9.5))
    # a deletion at the key time of the value before it: a tie of key_us, the value first
    rows.append(deletion_row(TENANT, entity, ATTR, {"type": "Property", "value": 1}, T0 + (7200 + 9) * 1_000_000))
    return rows


@asynccontextmanager
async def _schema(dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    schema = f"wt_pgbytes22_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    try:
        yield conn, schema
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def _former_write(conn: asyncpg.Connection, rows: list[HistoryRow]) -> None:
    """Rows written as the code before wrote them (its series insert and row upsert, which are unchanged)."""
    keys = list(dict.fromkeys((r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows))
    await conn.execute(pg_history._SERIES, *[list(c) for c in zip(*keys, strict=True)])
    sids = {(r[0], r[1], r[2], r[3]): r[4] for r in await conn.fetch(
        "SELECT tenant, entity_id, attr, dataset_id, sid FROM temporal_series")}
    # the rows' INSERT as the code before sent it, an array per column (its schema has no temporal_row_in, pghist23)
    recs = pg_history._columns(pg_history.unique_rows(rows), sids)[0]
    await conn.execute(
        "INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
        " value_json, instance, obs_key) SELECT * FROM unnest($1::int4[], $2::int2[], $3::int8[], $4::int8[],"
        " $5::int8[], $6::int8[], $7::int8[], $8::float8[], $9::text[], $10::bytea[], $11::bool[])",
        *[list(c) for c in zip(*recs, strict=True)],
    )


async def _recomputed(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch(f"SELECT * FROM ({pg_history.ROLLUP_RECOMPUTED}) AS r ORDER BY 1, 2, 3, 4, 5, 6")]


def test_a_schema_of_the_code_before_opens_with_its_rollups_and_index_moved(pg_dsn: str) -> None:
    async def run() -> None:
        async with _schema(pg_dsn) as (conn, schema):
            for sql in orjson.loads(FORMER.read_bytes()):
                await conn.execute(sql)
            rows = _rows("urn:e:0") + _rows("urn:e:1")
            await _former_write(conn, rows)
            await conn.execute("DELETE FROM temporal_rows WHERE value_num = 21")  # a recomputed hour, the former way
            instances = [tuple(r) for r in await conn.fetch("SELECT * FROM temporal_instances ORDER BY iid")]
            rollups = [tuple(r) for r in await conn.fetch(_ROLLUP_COLUMNS)]
            assert rollups == await _recomputed(conn) and len(rollups) > 4
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                kinds = dict(await conn.fetch("SELECT relname, relkind::text FROM pg_class WHERE relnamespace ="
                                              " $1::regnamespace AND relname LIKE 'temporal_r%'", schema))
                assert kinds["temporal_rollup"] == "v" and "temporal_rows_series" not in kinds
                assert kinds["temporal_rows_kind"] == "i"
                assert [tuple(r) for r in await conn.fetch(_ROLLUP_COLUMNS)] == rollups
                assert await history.impure_attrs(TENANT, ["urn:e:0"], TimeRange()) == {ATTR}
                assert [tuple(r) for r in await conn.fetch("SELECT * FROM temporal_instances ORDER BY iid")] == instances
                last = await history.instances(TENANT, ["urn:e:0"], [ATTR], TimeRange(), 3, True)
                assert [(h.time_us, h.deleted_us is not None) for h in last] == [
                    (T0 + 7203 * 10**6, False), (T0 + 7209 * 10**6, False), (T0 + 7209 * 10**6, True)]
                await history.write([EntityRow(TENANT, "urn:e:0", ["https://x/T"])],
                                    [_reading("urn:e:0", 60, 100), _reading("urn:e:0", 1, 99.0)])
                await history.write([], [_reading("urn:e:0", 60, 101)])  # a rewrite: its hour recomputed
                assert [tuple(r) for r in await conn.fetch(_ROLLUP_COLUMNS)] == await _recomputed(conn)
            finally:
                await history.close()
            history = PostgresHistory(pg_dsn, schema)  # opened again: nothing more to move
            await history.open()
            try:
                assert [tuple(r) for r in await conn.fetch(_ROLLUP_COLUMNS)] == await _recomputed(conn)
            finally:
                await history.close()

    asyncio.run(run())


def test_rollup_rows_and_index_entries_are_smaller(pg_dsn: str) -> None:
    """Bytes of a rollup row and of an index entry, as pg_column_size and the index's pages give them."""
    async def run() -> None:
        async with _schema(pg_dsn) as (conn, schema):
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                entities = [f"urn:ngsi-ld:AirQualityObserved:{n:05d}" for n in range(40)]
                for second in range(0, 3600 * 4, 60):  # 4 hours of a reading a minute, each write every entity
                    await history.write([], [_reading(e, second, float(second % 97)) for e in entities])
                rollup_row = await conn.fetchval("SELECT avg(pg_column_size(h.*)) FROM temporal_hourly AS h")
                # 104 (a 32-byte header, 72 of columns); the former table's text keys took ~170 bytes more
                assert rollup_row < 120, rollup_row
                key = await conn.fetchval("SELECT pg_get_indexdef('temporal_rows_kind'::regclass)")
                assert key.endswith("(sid, kind, key_us)"), key
                await conn.execute("REINDEX INDEX temporal_rows_kind")  # packed, then measured per entry
                per_row = await conn.fetchval(
                    "SELECT pg_relation_size('temporal_rows_kind')::float8 / (SELECT count(*) FROM temporal_rows)")
                assert per_row < 36, per_row  # 28 bytes an entry with its line pointer, 90 % full (33 here): 40 before
            finally:
                await history.close()

    asyncio.run(run())


@pytest.mark.parametrize("entities", [1, 12])  # one series a time, and the LATERAL read of more than 8
def test_reads_in_key_order_merge_values_and_deletions(pg_dsn: str, entities: int) -> None:
    async def run() -> None:
        async with _schema(pg_dsn) as (_conn, schema):
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                ids = [f"urn:e:{n}" for n in range(entities)]
                rows: list[HistoryRow] = []
                for e in ids:
                    for s in range(10):
                        rows.append(_reading(e, s * 10, s))
                        if s % 3 == 0:  # a deletion at the value's key time, and one between two values
                            at = T0 + s * 10 * 1_000_000
                            rows.append(deletion_row(TENANT, e, ATTR, {"type": "Property", "value": 1}, at))
                            rows.append(deletion_row(TENANT, e, ATTR, {"type": "Property", "value": 1}, at + 5_000_000))
                await history.write([], rows)
                for newest in (True, False):
                    for rng in (TimeRange(), TimeRange(start=T0 + 15_000_000, end=T0 + 75_000_000)):
                        got = await history.instances(TENANT, ids, [ATTR], rng, 5, newest)
                        for e in ids:
                            mine = sorted(((r.key_us, r.kind) for r in rows if r.entity_id == e
                                           and (rng.start is None or rng.start <= r.key_us)
                                           and (rng.end is None or r.key_us < rng.end)), reverse=newest)[:5]
                            assert [(h.time_us, int(h.deleted_us is not None)) for h in got if h.entity_id == e] \
                                == sorted(mine), (e, newest, rng)
                total = await history.instances(TENANT, ids, [ATTR], TimeRange(), 5, True, total=7)
                assert len(total) == min(7, 5 * entities)
            finally:
                await history.close()

    asyncio.run(run())
