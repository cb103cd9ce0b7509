"""Benchmark of the temporal store: time-range scans, raw and aggregated per hour over a month.

    python -m bench.temporal_bench [--instances 1000000] [--entities 100] [--pg postgresql://postgres@127.0.0.1/postgres]

Writes `instances` no2 readings spread evenly over January 2026 across
`entities` AirQualityObserved entities (through HistoryStorage.write, in
batches of 10,000), then times, for one entity: the raw instances of one
day, the lastN=100, the hourly avg/min/max/totalCount over the month; and
the hourly avg over the month for every entity at once. SQLite runs on a
temporary file, PostgreSQL on a throwaway schema dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

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


async def timed(fn, repeat: int = 5) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    best, size = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        best = min(best, time.perf_counter() - start)
        size = len(result)
    return best * 1000, size


async def run(history: HistoryStorage, instances: int, entities: int) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}
    rate = await load(history, instances, entities)
    out["write/s"] = (rate, instances)
    one = ["urn:ngsi-ld:AirQualityObserved:b-0007"]
    every = [f"urn:ngsi-ld:AirQualityObserved:b-{n:04d}" for n in range(entities)]
    day = TimeRange("observed_us", to_us("2026-01-15T00:00:00Z"), to_us("2026-01-16T00:00:00Z"))
    month = TimeRange("observed_us", MONTH_START, MONTH_END)
    out["raw 1 day"] = await timed(lambda: history.instances("bench", one, [NO2], day, 1001, False))
    out["raw month (1000 cap)"] = await timed(lambda: history.instances("bench", one, [NO2], month, 1001, False))
    out["lastN=100"] = await timed(lambda: history.instances("bench", one, [NO2], TimeRange(), 100, True))
    out["hourly aggr, 1 entity"] = await timed(lambda: history.aggregate("bench", one, [NO2], month, MONTH_START, HOUR))
    out["hourly aggr, all"] = await timed(lambda: history.aggregate("bench", every, [NO2], month, MONTH_START, HOUR), repeat=2)
    return out


async def main(instances: int, entities: int, pg_dsn: str) -> None:
    from broker.temporal.postgres import PostgresHistory
    from broker.temporal.sqlite import SQLiteHistory

    results: list[tuple[str, dict[str, tuple[float, int]]]] = []
    with tempfile.TemporaryDirectory() as folder:
        history: HistoryStorage = SQLiteHistory(Path(folder) / "bench.db")
        await history.open()
        try:
            results.append(("sqlite", await run(history, instances, entities)))
        finally:
            await history.close()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(pg_dsn)
    except OSError as exc:
        print(f"PostgreSQL skipped: {exc}")
    else:
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                results.append(("postgres", await run(history, instances, entities)))
            finally:
                await history.close()
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
    print(f"{instances:,} no2 instances over January 2026, {entities} entities ({instances // entities:,} each)")
    names = list(results[0][1])
    print(f"{'':<24}" + "".join(f"{name:>22}" for name, _ in results))
    for key in names:
        cells = []
        for _, r in results:
            value, size = r[key]
            cells.append(f"{value:>14,.0f} inst/s" if key == "write/s" else f"{value:>10.1f} ms {size:>5} rows")
        print(f"{key:<24}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.instances, args.entities, args.pg))
