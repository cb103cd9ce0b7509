"""Benchmark of the temporal store: time-range scans, raw and aggregated per hour over a month.

    python -m bench.temporal_bench [--instances 1000000] [--entities 100] [--pg postgresql://postgres@127.0.0.1/postgres]
    python -m bench.temporal_bench --sql-load --instances 10000000 --entities 1000   # the issue's month of 10M

Writes `instances` no2 readings spread evenly over January 2026 across
`entities` AirQualityObserved entities (through HistoryStorage.write, in
batches of 10,000), then times, for one entity: the raw instances of one
day and of the month (capped at 1,000), the lastN=100, the hourly average
over the month as NGSI-LD (aggrMethods=avg, from the rollups) and QuantumLeap
(aggrMethod=avg&aggrPeriod=hour, its first page) ask it, every method with
distinctCount (from the instances); and
the hourly avg over the month for every entity at once, from the hourly
rollups and from the instances (the path before them), and the same through
the QuantumLeap read path (its first page, without HTTP). SQLite runs on a
temporary file, PostgreSQL on a throwaway schema dropped after.

`--sql-load` generates the instances inside the database (a recursive CTE on
SQLite, generate_series on PostgreSQL, one day per statement, the rollup
triggers firing as on any write) instead of through Python, so that 10M
instances load in minutes; `--ql-python-max` skips the QuantumLeap Python
path (minutes at 10M) above that many instances. Each timing is the best of
10 runs (2 or 3 for every entity): wall milliseconds, and the CPU milliseconds
of this process in that run (which holds SQLite, not the PostgreSQL server).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sized
from pathlib import Path
from typing import Any

import asyncpg

from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.storage import HistoryStorage, TimeRange

NS = "https://smartdatamodels.org/dataModel.Environment/"
NO2 = NS + "no2"
MONTH_START = to_us("2026-01-01T00:00:00Z")
MONTH_END = to_us("2026-02-01T00:00:00Z")
HOUR = 3_600_000_000


async def load(history: HistoryStorage, instances: int, entities: int) -> float:
    rng = random.Random(1)
    per_entity = instances // entities
    step = (MONTH_END - MONTH_START) // per_entity
    ids = [f"urn:ngsi-ld:AirQualityObserved:b-{n:04d}" for n in range(entities)]
    await history.write([EntityRow("bench", i, [NS + "AirQualityObserved"]) for i in ids], [])
    start = time.perf_counter()
    batch = []
    for k in range(per_entity):  # time-major, as a live feed arrives
        at = from_us(MONTH_START + k * step)
        for entity_id in ids:
            inst = {"type": "Property", "value": round(rng.uniform(0, 120), 1), "unitCode": "GQ", "observedAt": at,
                    "createdAt": at, "modifiedAt": at}
            batch.append(value_row("bench", entity_id, NO2, inst, 0))
            if len(batch) == 10_000:
                await history.write([], batch)
                batch = []
    if batch:
        await history.write([], batch)
    return per_entity * entities / (time.perf_counter() - start)


def _sql_rows(per_entity: int, entities: int, day: int) -> tuple[int, int, int]:
    step = (MONTH_END - MONTH_START) // per_entity
    first = -(-(day * 86_400_000_000) // step)
    last = min(per_entity, -(-((day + 1) * 86_400_000_000) // step))
    return step, first, last


async def sql_load(history: HistoryStorage, instances: int, entities: int) -> float:
    """The same month generated in SQL, one day per statement; instances/s."""
    from broker.temporal.postgres import PostgresHistory
    from broker.temporal.sqlite import SQLiteHistory

    per_entity = instances // entities
    ids = [f"urn:ngsi-ld:AirQualityObserved:b-{n:04d}" for n in range(entities)]
    await history.write([EntityRow("bench", i, [NS + "AirQualityObserved"]) for i in ids], [])
    start = time.perf_counter()
    for day in range(31):
        step, first, last = _sql_rows(per_entity, entities, day)
        if first >= last:
            continue
        if isinstance(history, SQLiteHistory):
            sql = (
                "WITH RECURSIVE k(k) AS (SELECT ? UNION ALL SELECT k + 1 FROM k WHERE k + 1 < ?),"
                " e(e) AS (SELECT 0 UNION ALL SELECT e + 1 FROM e WHERE e + 1 < ?),"
                " r AS (SELECT e, ? + k * ? AS t, ((k * 7919 + e * 104729) % 1201) / 10.0 AS v FROM k, e)"
                # rows under their series ids (broker.temporal.sqlite: temporal_series, temporal_rows), as the
                # broker writes them: observedAt the key (obs_key), createdAt the modifiedAt, the float's text value_num's
                # (iids from its counter, in the order written: hist17)
                " INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, value_num, value_json,"
                " instance, obs_key, iid) SELECT s.sid, 0, t, NULL, NULL, t, v, NULL,"
                " CAST('{\"type\":\"Property\",\"value\":' || v || ',\"unitCode\":\"GQ\",\"observedAt\":\"'"
                " || strftime('%Y-%m-%dT%H:%M:%fZ', t / 1000000.0, 'unixepoch') || '\"}' AS BLOB), 1,"
                " (SELECT next FROM temporal_next_iid) + row_number() OVER (ORDER BY t, e) - 1 FROM r"
                " JOIN temporal_series AS s ON s.tenant = 'bench'"
                " AND s.entity_id = printf('urn:ngsi-ld:AirQualityObserved:b-%04d', e) AND s.attr = ? AND s.dataset_id = ''"
                " ORDER BY t, e"
            )
            args = (first, last, entities, MONTH_START, step, NO2)
            series = ("WITH RECURSIVE e(e) AS (SELECT 0 UNION ALL SELECT e + 1 FROM e WHERE e + 1 < ?)"
                      " INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
                      " SELECT 'bench', printf('urn:ngsi-ld:AirQualityObserved:b-%04d', e), ?, '' FROM e WHERE true"
                      " ON CONFLICT DO NOTHING")

            def insert(c: Any, sql: str = sql, args: tuple[Any, ...] = args, series: str = series) -> None:
                c.execute(series, (entities, NO2))
                added = c.execute(sql, args).rowcount
                c.execute("UPDATE temporal_next_iid SET next = next + ?", (added,))

            await history._tx(insert, write=True)  # the bench's own load, in the history's write transaction
        elif isinstance(history, PostgresHistory):
            await history.pool.execute(
                "INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id) SELECT 'bench',"
                " 'urn:ngsi-ld:AirQualityObserved:b-' || lpad(e::text, 4, '0'), $1, '' FROM generate_series(0, $2 - 1) AS e"
                " ON CONFLICT DO NOTHING", NO2, entities)
            sql = (  # rows under their series ids (broker.temporal.postgres: temporal_series, temporal_rows), as
                # the broker writes them: createdAt the modifiedAt, the float's text value_num's, observedAt the key
                # (obs_key, hist17)
                "INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, value_num, value_json,"
                " instance, obs_key)"
                " SELECT (SELECT sid FROM temporal_series WHERE tenant = 'bench' AND attr = $1 AND dataset_id = ''"
                " AND entity_id = 'urn:ngsi-ld:AirQualityObserved:b-' || lpad(e::text, 4, '0')), 0, t, NULL, NULL, t, v, NULL,"
                " convert_to('{\"type\":\"Property\",\"value\":' || v || ',\"unitCode\":\"GQ\",\"observedAt\":\"'"
                " || to_char(to_timestamp(t / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                " || '\"}', 'UTF8'), true"
                " FROM (SELECT e, $2::int8 + k * $3::int8 AS t, ((k * 7919 + e * 104729) % 1201) / 10.0::float8 AS v"
                " FROM generate_series($4::int8, $5::int8 - 1) AS k, generate_series(0, $6 - 1) AS e) AS r ORDER BY t, e"
            )
            await history.pool.execute(sql, NO2, MONTH_START, step, first, last, entities)
        else:
            raise TypeError(type(history).__name__)
    rate = per_entity * entities / (time.perf_counter() - start)
    if isinstance(history, PostgresHistory):  # statistics, as autovacuum would gather on a live database
        await history.pool.execute("ANALYZE temporal_series; ANALYZE temporal_rows; ANALYZE temporal_rollup")
    return rate


async def timed(fn: Callable[[], Awaitable[Sized]], repeat: int = 10) -> tuple[float, int, float]:
    """Best wall milliseconds, the result's size, and the CPU-seconds of this process in that run (printed as ms)."""
    best, size, cpu = float("inf"), 0, 0.0
    for _ in range(repeat):
        start, cpu0 = time.perf_counter(), time.process_time()
        result = await fn()
        took = time.perf_counter() - start
        if took < best:
            best, cpu = took, time.process_time() - cpu0
        size = len(result)
    return best * 1000, size, cpu


async def ql_hourly(history: HistoryStorage, ids: list[str], rolled: bool) -> list[Any]:
    """QuantumLeap's hourly avg of no2 over the month for every entity (1TNE1A read path, without HTTP): its first page."""
    from broker.quantumleap.params import Params
    from broker.quantumleap.render import views
    from broker.quantumleap.series import Pick, load_buckets, load_rows

    p = Params(from_us=MONTH_START, to_us=MONTH_END - 1, aggr_method="avg", aggr_period="hour")
    picks = [Pick(i, i, "AirQualityObserved") for i in ids]

    def show(iri: str) -> str | None:
        return "no2" if iri == NO2 else None

    series = await load_buckets(history, "bench", picks, show, p) if rolled else None
    if series is None:
        if rolled:
            raise AssertionError("the rollups declined the bench's query")
        series = await load_rows(history, "bench", picks, show, p)
    return [v for s in views(series, p) for v in s.columns["no2"]]


class _Terms:
    """The reader's terms of the bench's data (a TermMapper without a @context to resolve)."""

    def expand_term(self, term: str) -> str:
        return term if ":" in term or term in ("id", "type") else NS + term

    def compact_iri(self, iri: str) -> str:
        return iri.removeprefix(NS)


async def ld_hourly(history: HistoryStorage, entity_id: str) -> list[Any]:
    """GET /ngsi-ld/v1/temporal/entities/{id}?attrs=no2&aggrMethods=avg&aggrPeriodDuration=PT1H&format=aggregatedValues
    over the month, through TemporalService.retrieve (without HTTP): its avg triples."""
    from broker.service.temporal import TemporalService
    from broker.temporal.query import TemporalQuery

    tq = TemporalQuery.from_params({"timerel": "between", "timeAt": from_us(MONTH_START), "endTimeAt": from_us(MONTH_END),
                                    "format": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT1H"},
                                   attrs_given=True)
    service = TemporalService(None, history, None)  # type: ignore[arg-type]  # a read needs no store
    result = await service.retrieve("bench", entity_id, ["no2"], _Terms(), tq)
    triples: list[Any] = result.entities[0]["no2"]["avg"]
    return triples


async def run(history: HistoryStorage, instances: int, entities: int, sql: bool,
              ql_python_max: int) -> dict[str, tuple[float, int, float]]:
    out: dict[str, tuple[float, int, float]] = {}
    rate = await (sql_load if sql else load)(history, instances, entities)
    out["write/s"] = (rate, instances, 0.0)
    one = ["urn:ngsi-ld:AirQualityObserved:b-0007"]
    every = [f"urn:ngsi-ld:AirQualityObserved:b-{n:04d}" for n in range(entities)]
    day = TimeRange("observed_us", to_us("2026-01-15T00:00:00Z"), to_us("2026-01-16T00:00:00Z"))
    month = TimeRange("observed_us", MONTH_START, MONTH_END)
    out["raw 1 day"] = await timed(lambda: history.instances("bench", one, [NO2], day, 1001, False))
    out["raw month (1000 cap)"] = await timed(lambda: history.instances("bench", one, [NO2], month, 1001, False))
    out["lastN=100"] = await timed(lambda: history.instances("bench", one, [NO2], TimeRange(), 100, True))
    # one entity's hourly average as the APIs ask it (query18): NGSI-LD aggrMethods=avg&aggrPeriodDuration=PT1H
    # (no distinctCount: the rollups), QuantumLeap aggrMethod=avg&aggrPeriod=hour; and every method with
    # distinctCount, which reads the instances
    out["hourly avg, 1 entity"] = await timed(
        lambda: history.aggregate("bench", one, [NO2], month, MONTH_START, HOUR, distinct=False))
    out["QL hourly avg, 1 entity"] = await timed(lambda: ql_hourly(history, one, True))
    out["NGSI-LD hourly avg, 1 entity"] = await timed(lambda: ld_hourly(history, one[0]))
    out["hourly aggr+distinct, 1 entity"] = await timed(
        lambda: history.aggregate("bench", one, [NO2], month, MONTH_START, HOUR))
    out["hourly aggr, all, instances"] = await timed(
        lambda: history.aggregate("bench", every, [NO2], month, MONTH_START, HOUR), repeat=2)
    out["hourly aggr, all, rollups"] = await timed(
        lambda: history.aggregate("bench", every, [NO2], month, MONTH_START, HOUR, distinct=False), repeat=3)
    out["QL hourly avg, rollups"] = await timed(lambda: ql_hourly(history, every, True), repeat=3)
    if instances <= ql_python_max:
        out["QL hourly avg, Python"] = await timed(lambda: ql_hourly(history, every, False), repeat=1)
    return out


async def main(instances: int, entities: int, pg_dsn: str, sql: bool = False, ql_python_max: int = 2_000_000,
               stores: tuple[str, ...] = ("sqlite", "postgres")) -> None:
    from broker.temporal.postgres import PostgresHistory
    from broker.temporal.sqlite import SQLiteHistory

    results: list[tuple[str, dict[str, tuple[float, int, float]]]] = []
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as folder:
            history: HistoryStorage = SQLiteHistory(Path(folder) / "bench.db")
            await history.open()
            try:
                results.append(("sqlite", await run(history, instances, entities, sql, ql_python_max)))
            finally:
                await history.close()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(pg_dsn) if "postgres" in stores else None
    except OSError as exc:
        print(f"PostgreSQL skipped: {exc}")
        conn = None
    if conn is not None:
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                results.append(("postgres", await run(history, instances, entities, sql, ql_python_max)))
            finally:
                await history.close()
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
    print(f"{instances:,} no2 instances over January 2026, {entities} entities ({instances // entities:,} each),"
          f" loaded {'in SQL' if sql else 'through HistoryStorage.write'}; ms wall (best), rows, CPU ms of this process"
          " in that run")
    names = list(dict.fromkeys(k for _, r in results for k in r))
    print(f"{'':<30}" + "".join(f"{name:>34}" for name, _ in results))
    for key in names:
        cells = []
        for _, r in results:
            if key not in r:
                cells.append(f"{'skipped':>34}")
                continue
            value, size, cpu = r[key]
            cells.append(f"{value:>26,.0f} inst/s" if key == "write/s"
                         else f"{value:>9.1f} ms {size:>7} rows {cpu * 1000:>7.1f} ms CPU")
        print(f"{key:<30}" + "".join(f"{c:>34}" for c in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sql-load", action="store_true", help="generate the instances in SQL (10M in minutes)")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--ql-python-max", type=int, default=2_000_000,
                        help="run the QuantumLeap Python aggregation only up to this many instances")
    args = parser.parse_args()
    asyncio.run(main(args.instances, args.entities, args.pg, args.sql_load, args.ql_python_max, tuple(args.stores.split(","))))
