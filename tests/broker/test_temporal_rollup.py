"""Hourly rollups (broker.temporal.rollup) against the instances they summarise, on real SQLite and PostgreSQL.

Generated histories (several entities, attributes, datasetIds; values that are
integers, quarters, text or booleans; instances written, written again with
another value, deleted by range, by attribute, by entity) must leave:

- the rollup table equal to one recomputed from the instances;
- NGSI-LD aggregation from rollups equal to the one over the instances (distinctCount aside);
- QuantumLeap aggregation from rollups equal to the Python one over the rebuilt rows,
  page by page, whenever the rollups serve, and served whenever every value is an integer;
- lastN without a time range (one index seek per series) equal to numbering every instance.

Values are integers and quarters: their sums are exact in any order, so the
results are compared for equality (see broker.temporal.rollup on sums).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.quantumleap.errors import QLError
from broker.quantumleap.params import Params
from broker.quantumleap.series import Pick, aggregate, load_buckets, load_rows, page_buckets
from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory
from broker.temporal.rollup import HOUR_US, plan
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import HistoryStorage, TimeRange
from tests import services

T0 = to_us("2026-01-30T20:00:00Z")  # a month boundary inside the generated span
MINUTE = 60_000_000
TENANT = "rollup"
ENTITIES = ["urn:e:0", "urn:e:1", "urn:e:2"]
ATTRS = ["https://x/a", "https://x/b"]

numbers = st.one_of(st.integers(-1000, 1000), st.integers(-4000, 4000).map(lambda q: q / 4))
instance = st.tuples(
    st.sampled_from(ENTITIES), st.sampled_from(ATTRS), st.integers(0, 4 * 24 * 60),  # minute within 4 days
    st.one_of(numbers, numbers, numbers, st.sampled_from(["low", "high", True])),
    st.sampled_from(["", "", "", "", "ds1"]),
)
operation = st.one_of(
    st.tuples(st.just("write"), st.lists(instance, min_size=1, max_size=30)),
    # the same instances written again with a later modifiedAt: a replace that changes no rolled-up column
    st.tuples(st.just("touch"), st.lists(instance, min_size=1, max_size=30), st.integers(1, 10**6)),
    st.tuples(st.just("delete_range"), st.integers(0, 4 * 24 * 60), st.integers(1, 600)),
    st.tuples(st.just("delete_attr"), st.sampled_from(ENTITIES), st.sampled_from(ATTRS)),
    st.tuples(st.just("delete_entity"), st.sampled_from(ENTITIES)),
)
ranges = st.tuples(
    st.one_of(st.none(), st.integers(-60, 4 * 24 * 60)), st.one_of(st.none(), st.integers(1, 5 * 24 * 60)),
    st.booleans(),  # whole hours or anywhere
)


def _row(entity: str, attr: str, minute: int, value: Any, dataset: str, modified_us: int = 0) -> Any:
    inst: dict[str, Any] = {"type": "Property", "value": value, "observedAt": from_us(T0 + minute * MINUTE)}
    if dataset:
        inst["datasetId"] = dataset
    return value_row(TENANT, entity, attr, inst, modified_us)


async def _apply(history: HistoryStorage, ops: list[Any]) -> None:
    await history.write([EntityRow(TENANT, e, ["https://x/T"]) for e in ENTITIES], [])
    for op in ops:
        if op[0] == "write":
            await history.write([], [_row(*i) for i in op[1]])
        elif op[0] == "touch":
            await history.write([], [_row(*i, modified_us=op[2]) for i in op[1]])
        elif op[0] == "delete_range":
            start = T0 + op[1] * MINUTE
            await history.delete_instances(TENANT, ENTITIES[:2], TimeRange(None, start, start + op[2] * MINUTE))
        elif op[0] == "delete_attr":
            await history.delete_attr(TENANT, op[1], op[2], None)
        else:
            await history.delete_entity(TENANT, op[1])
            await history.write([EntityRow(TENANT, op[1], ["https://x/T"])], [])


def _range(start: int | None, end: int | None, whole: bool, column: str | None) -> TimeRange:
    def at(minute: int | None) -> int | None:
        if minute is None:
            return None
        return T0 + (minute // 60) * HOUR_US if whole else T0 + minute * MINUTE
    return TimeRange(column, at(start), at(end))


async def _check(history: HistoryStorage, rollup_rows: Any, recomputed_rows: Any, ops: list[Any],
                 rng_spec: tuple[int | None, int | None, bool]) -> None:
    await _apply(history, ops)
    assert await rollup_rows() == await recomputed_rows()

    for column in (None, "observed_us"):
        rng = _range(*rng_spec, column)
        origin = T0 if rng.start is None else rng.start
        for period in (0, HOUR_US, 3 * HOUR_US, 24 * HOUR_US):
            # every entity, and one (compared with =: query18), the rollup rows as they are or summed per hour
            for ids in (ENTITIES, ENTITIES[1:2]):
                exact = await history.aggregate(TENANT, ids, None, rng, origin, period)
                rolled = await history.aggregate(TENANT, ids, None, rng, origin, period, distinct=False)
                assert [_no_distinct(b) for b in rolled] == [_no_distinct(b) for b in exact]
                for datasets in (["ds1"], [""], ["", "ds1"]):
                    exact = await history.aggregate(TENANT, ids, ATTRS[:1], rng, origin, period, datasets=datasets)
                    rolled = await history.aggregate(TENANT, ids, ATTRS[:1], rng, origin, period, datasets=datasets,
                                                     distinct=False)
                    assert [_no_distinct(b) for b in rolled] == [_no_distinct(b) for b in exact]

    # series: the (entity, attribute) pairs of the instances in the range (PostgreSQL: one EXISTS per series, query18)
    for column in (None, "observed_us", "modified_us"):
        rng = _range(*rng_spec, column)
        selections: list[tuple[list[str], list[str] | None, list[str] | None]] = [
            (ENTITIES, None, None), (ENTITIES[1:2], ATTRS[:1], None), (ENTITIES, None, ["ds1"])]
        for ids, names, kept in selections:
            found = await history.instances(TENANT, ids, names, rng, 10_000, False, datasets=kept)
            assert await history.series(TENANT, ids, names, rng, datasets=kept) == {(h.entity_id, h.attr) for h in found}

    # lastN / firstN: one seek per series (open range) equal to numbering the instances (closed range)
    everything = TimeRange(None, -(2**62), 2**62)
    for newest in (True, False):
        for per_attr, total in ((1, None), (3, None), (3, 2), (2, 5)):
            for attrs in (None, ATTRS[1:]):
                seek = await history.instances(TENANT, ENTITIES, attrs, TimeRange(), per_attr, newest, total=total)
                scan = await history.instances(TENANT, ENTITIES, attrs, everything, per_attr, newest, total=total)
                assert seek == scan

    start, end, _ = rng_spec
    for picks, method in [([Pick(e, e, "T") for e in ENTITIES], m) for m in ("count", "sum", "avg", "min", "max")] + [
            ([Pick(ENTITIES[0], ENTITIES[0], "T")], "avg")]:  # one entity too (query18)
        for unit in ("hour", "day", "month", None):
            for offset, limit, last_n in ((0, 10_000, None), (0, 2, None), (3, 4, None), (1, 10_000, 5)):
                p = Params(aggr_method=method, aggr_period=unit, offset=offset, limit=limit, last_n=last_n)
                if start is not None:
                    p.from_us = T0 + start * MINUTE
                if end is not None:
                    p.to_us = T0 + end * MINUTE
                for show in (lambda iri: iri.rsplit("/", 1)[1], lambda iri: "a" if iri == ATTRS[0] else None):
                    fast = await load_buckets(history, TENANT, picks, show, p)
                    rows = await load_rows(history, TENANT, picks, show, p)
                    try:
                        slow = _pages([aggregate(s, p) for s in rows], p)
                    except QLError:  # cannot_aggregate: the fast path must have declined
                        assert fast is None
                        continue
                    if fast is not None:
                        assert _pages([aggregate(s, p) for s in fast], p) == slow
                    elif _integers_only(ops) and plan(p.time_range()) is not None:
                        pytest.fail(f"rollups declined integers of default datasets ({method}, {unit})")


def _pages(buckets: list[Any], p: Params) -> list[Any]:
    return [(b.series.entity_id, b.starts, b.values) for b in page_buckets(buckets, p)]


def _integers_only(ops: list[Any]) -> bool:
    """Whether every instance written is an integer of the default dataset (rollups must then serve)."""
    written = [i for op in ops if op[0] in ("write", "touch") for i in op[1]]
    return all(type(v) is int and ds == "" for _, _, _, v, ds in written)


def _no_distinct(b: Any) -> Any:
    return b._replace(distinct=0)


_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_ORDER = "ORDER BY 1, 2, 3, 4, 5, 6"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


@asynccontextmanager
async def _pg_history(pg_dsn: str, schema: str, *, max_size: int = 4,
                      admin_path: bool = False) -> AsyncIterator[tuple[Any, PostgresHistory]]:
    """A PostgresHistory opened on `schema`, made for it, and an admin connection (on that schema's
    search_path with `admin_path`); closed and the schema dropped after."""
    admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema} if admin_path else None)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    history = PostgresHistory(pg_dsn, schema, max_size=max_size)
    try:
        await history.open()
        yield admin, history
    finally:
        await history.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@_SETTINGS
@given(ops=st.lists(operation, min_size=1, max_size=8), rng_spec=ranges)
def test_rollups_equal_the_instances_on_sqlite(tmp_path: Path, ops: list[Any], rng_spec: Any) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"

    def rows(sql: str) -> Any:
        async def read() -> Any:
            with sqlite3.connect(path) as conn:
                return conn.execute(sql).fetchall()
        return read

    from broker.temporal import sqlite as sqlite_history

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            recompute = sqlite_history._ROLLUP_BACKFILL.replace("INSERT INTO temporal_rollup ", "")
            await _check(history, rows(f"SELECT * FROM temporal_rollup {_ORDER}"),
                         rows(f"SELECT * FROM ({recompute}) {_ORDER}"), ops, rng_spec)
        finally:
            await history.close()

    asyncio.run(run())


@_SETTINGS
@given(ops=st.lists(operation, min_size=1, max_size=8), rng_spec=ranges)
def test_rollups_equal_the_instances_on_postgres(pg_dsn: str, ops: list[Any], rng_spec: Any) -> None:
    from broker.temporal import postgres as pg_history

    schema = f"test_rollup_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            recompute = pg_history.ROLLUP_RECOMPUTED

            async def stored() -> Any:
                # the stored columns but `impure`, a generated one (n_pure < n) that the recomputation has not
                return [tuple(r) for r in await conn.fetch(
                    "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max,"
                    f" sumsq FROM temporal_rollup {_ORDER}")]

            async def recomputed() -> Any:
                rows = await conn.fetch(f"SELECT * FROM ({recompute}) AS r (tenant, entity_id, attr, hour_us, dataset_id,"
                                        f" observed, n, n_num, n_pure, n_int, sum, min, max, sumsq) {_ORDER}")
                return [tuple(r) for r in rows]

            await _check(history, stored, recomputed, ops, rng_spec)
        finally:
            await history.close()
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(run())


def test_postgres_recompute_reads_only_the_rewritten_hours(pg_dsn: str) -> None:
    """Rewriting an instance recomputes its hour through the indexes, not by a scan of every stored row.

    The plans of the trigger's statements come back as log messages (auto_explain in the writing
    session): the recomputation may read neither table whole (their sizes are the history's; issue 16,
    pg18: 2.6 s per 1,000 entities re-upserted at 223,000 rows) nor a series' rows outside the hour.
    The rollup stays the recomputed one.
    """
    from broker.temporal import postgres as pg_history

    schema = f"test_rollup_{uuid.uuid4().hex[:12]}"
    entities = [f"urn:e:{k}" for k in range(300)]

    def row(entity: str, attr: str, minute: int, value: int) -> Any:
        inst = {"type": "Property", "value": value, "observedAt": from_us(T0 + minute * MINUTE)}
        return value_row(TENANT, entity, attr, inst, 0)

    async def run() -> None:
        async with _pg_history(pg_dsn, schema) as (admin, history):
            # 300 entities x 2 attributes x 10 hours: 6,000 rows, of which one hour of one attribute is written again
            await history.write([EntityRow(TENANT, e, ["https://x/T"]) for e in entities],
                                [row(e, a, h * 60, h) for e in entities for a in ATTRS for h in range(10)])
            # no ANALYZE: the statistics lag behind a growing history, as in the bench
            plans: list[str] = []
            async with history.pool.acquire() as conn:
                await conn.execute("LOAD 'auto_explain'")
                await conn.execute("SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
                                   " SET client_min_messages = log")
                def listen(_conn: Any, message: Any) -> None:
                    plans.append(str(message.message))

                conn.add_log_listener(listen)
                async with conn.transaction():
                    await history._store(conn, [], [row(e, ATTRS[0], 3 * 60, 1000) for e in entities])
                conn.remove_log_listener(listen)
                await conn.execute("RESET client_min_messages; RESET auto_explain.log_min_duration")
            recomputes = [p for p in plans if "Query Text: INSERT INTO temporal_hourly (" in p]
            assert recomputes, plans  # the rewrite recomputed its hour (the plans were captured)
            for plan_text in recomputes:
                # neither table read whole, nor a series' rows whole (its key_us bound a filter after the read)
                assert "Seq Scan on temporal_rows" not in plan_text and "Seq Scan on temporal_series" not in plan_text, plan_text
                lines = plan_text.splitlines()
                reads = [lines[k + 1] for k, line in enumerate(lines[:-1]) if "on temporal_rows i" in line]
                assert reads and all("key_us >=" in r and "Index Cond" in r for r in reads), plan_text
            # nor the rollup whole to drop the rewritten hours: the planner, blind to the temp table's size,
            # hashed it with a scan of every rollup row (8-15 ms per history write of a PATCH stream at
            # 11,000 rollup rows, growing with the rollup; issue 16, pgpatch19)
            deletes = [p for p in plans if "Query Text: DELETE FROM temporal_hourly AS r" in p]
            assert deletes, plans
            assert all("Seq Scan on temporal_hourly r" not in p and "Index" in p for p in deletes), deletes
            recompute = pg_history.ROLLUP_RECOMPUTED
            stored = await admin.fetch(
                "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max,"
                f' sumsq FROM "{schema}".temporal_rollup {_ORDER}')
            await admin.execute(f'SET search_path TO "{schema}"')
            expected = await admin.fetch(f"SELECT * FROM ({recompute}) AS r {_ORDER}")
            assert [tuple(r) for r in stored] == [tuple(r) for r in expected]
            assert len([r for r in stored if r["sum"] == 1000]) == len(entities)

    asyncio.run(run())


def test_postgres_new_instances_skip_the_recomputation_and_plans_stay_cached(pg_dsn: str) -> None:
    """Writing new instances recomputes nothing; a rewrite empties the hours' table without a new file.

    An INSERT ... ON CONFLICT DO UPDATE fires the UPDATE statement trigger even when no row conflicted:
    the recomputation then returns before making its temporary table of dirty hours (issue 16, notifypg19).
    Emptying that table by TRUNCATE gave it a new file (relfilenode) on every call, which invalidated every
    cached plan reading it, both triggers' included, so each history write planned them all again; a DELETE
    keeps the file. One connection in the pool: the session checked is the writing one.
    """
    schema = f"test_rollup_{uuid.uuid4().hex[:12]}"

    def row(entity: str, minute: int, value: int) -> Any:
        inst = {"type": "Property", "value": value, "observedAt": from_us(T0 + minute * MINUTE)}
        return value_row(TENANT, entity, ATTRS[0], inst, 0)

    async def run() -> None:
        dirty = "SELECT pg_relation_filenode(to_regclass('pg_temp.temporal_rollup_dirty_sid'))"
        async with _pg_history(pg_dsn, schema, max_size=1) as (admin, history):
            await history.write([EntityRow(TENANT, "urn:e:0", ["https://x/T"])], [row("urn:e:0", m, m) for m in range(5)])
            await history.write([], [row("urn:e:0", m, m) for m in range(5, 10)])
            await admin.execute("CREATE TABLE IF NOT EXISTS " f'"{schema}".change_log (seq bigint)')
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], [row("urn:e:0", 10, 1)], {})
            assert await history.pool.fetchval(dirty) is None  # no recomputation started in this session
            await history.write([], [row("urn:e:0", 3, 100)])  # a rewrite: its hour recomputed
            first = await history.pool.fetchval(dirty)
            assert first is not None
            await history.write([], [row("urn:e:0", 4, 200)])
            assert await history.pool.fetchval(dirty) == first  # emptied in place
            assert await history.pool.fetchval("SELECT n FROM temporal_rollup") == 11
            assert await history.pool.fetchval("SELECT sum FROM temporal_rollup") == sum(range(10)) + 1 - 3 - 4 + 300

    asyncio.run(run())


def test_postgres_rollups_of_statements_sharing_their_start(pg_dsn: str) -> None:
    """A rewrite and then a new instance of the same hour in one query string (one statement_timestamp).

    The recomputation marks its hours as done for the rest of its statement (the INSERT trigger then does
    not add them again); a later statement of the same query string that rewrites nothing must not inherit
    that mark, or its new instance would be left out of the hour.
    """
    from broker.temporal import postgres as pg_history

    schema = f"test_rollup_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        async with _pg_history(pg_dsn, schema, admin_path=True) as (admin, history):
            inst = {"type": "Property", "value": 1, "observedAt": from_us(T0)}
            await history.write([EntityRow(TENANT, "urn:e:0", ["https://x/T"])], [value_row(TENANT, "urn:e:0", ATTRS[0], inst, 0)])
            upsert = ("INSERT INTO temporal_rows (sid, kind, obs_key, key_us, modified_us, value_num, value_json, instance)"
                      " SELECT sid, 0, true, {key}, 1, {v}, '{v}', '\\x7b7d'::bytea FROM temporal_series"
                      " ON CONFLICT (sid, key_us, kind) DO UPDATE SET value_num = excluded.value_num,"
                      " value_json = excluded.value_json")
            # one simple query, two statements: the first rewrites the stored instance, the second adds one
            await admin.execute(upsert.format(key=T0, v=5) + "; " + upsert.format(key=T0 + MINUTE, v=7))
            recompute = pg_history.ROLLUP_RECOMPUTED
            expected = [tuple(r) for r in await admin.fetch(f"SELECT * FROM ({recompute}) AS r {_ORDER}")]
            stored = [tuple(r) for r in await admin.fetch(
                "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max,"
                f" sumsq FROM temporal_rollup {_ORDER}")]
            assert stored == expected
            assert [(r[6], r[10]) for r in stored] == [(2, 12.0)]

    asyncio.run(run())


def test_an_update_that_changes_no_rolled_up_column_marks_no_hour_dirty_on_sqlite(tmp_path: Path) -> None:
    # batch19: the update trigger marked the row's hour dirty on any update, and the commit recomputed it
    path = tmp_path / "dirty.db"

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            await history.write([], [_row("urn:e:0", ATTRS[0], 1, 5, ""), _row("urn:e:0", ATTRS[1], 1, "low", "")])
        finally:
            await history.close()

    asyncio.run(run())
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE temporal_rows SET modified_us = modified_us + 1, created_us = 7, instance = x'00'")
        assert conn.execute("SELECT count(*) FROM temporal_rollup_dirty").fetchone() == (0,)
        conn.execute("UPDATE temporal_rows SET value_num = 6 WHERE value_num = 5")
        assert conn.execute("SELECT count(*) FROM temporal_rollup_dirty").fetchone() == (1,)
        conn.execute("UPDATE temporal_rows SET observed_us = key_us + 1, obs_key = NULL WHERE value_num IS NULL")
        assert conn.execute("SELECT count(*) FROM temporal_rollup_dirty").fetchone() == (2,)
        conn.execute("ROLLBACK")


def test_an_update_that_changes_no_rolled_up_column_recomputes_nothing_on_postgres(pg_dsn: str) -> None:
    """The same instances written again with a later modifiedAt start no recomputation; a changed value does.

    A recomputation deletes its hours' rollup rows and inserts them again, so they come back as new row
    versions (another xmin); left alone, they keep theirs (issue 16, batch19's condition on SQLite).
    """
    schema = f"test_rollup_{uuid.uuid4().hex[:12]}"
    versions = "SELECT array_agg(h.xmin::text ORDER BY s.attr) FROM temporal_hourly AS h JOIN temporal_series AS s USING (sid)"

    async def run() -> None:
        async with _pg_history(pg_dsn, schema) as (_admin, history):
            readings = [("urn:e:0", ATTRS[0], m, m, "") for m in range(5)] + [("urn:e:0", ATTRS[1], 1, "low", "")]
            await history.write([EntityRow(TENANT, "urn:e:0", ["https://x/T"])], [_row(*r) for r in readings])
            first = await history.pool.fetchval(versions)
            await history.write([], [_row(*r, modified_us=7) for r in readings])  # rewritten: another modifiedAt
            assert await history.pool.fetchval("SELECT count(*) FROM temporal_rows WHERE modified_us = 7") == 6
            assert await history.pool.fetchval(versions) == first  # no hour recomputed
            await history.write([], [_row("urn:e:0", ATTRS[0], 3, 100, "", modified_us=8)])
            after = await history.pool.fetchval(versions)
            assert after[0] != first[0] and after[1] == first[1]  # the changed attribute's hour only
            assert await history.pool.fetchval("SELECT sum FROM temporal_rollup WHERE attr = $1", ATTRS[0]) == 0 + 1 + 2 + 100 + 4

    asyncio.run(run())
