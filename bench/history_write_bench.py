"""PostgreSQL history writes alone: the store's write of one notification's rows, without the broker or HTTP.

    python -m bench.history_write_bench [--notifications 300] [--entities 100] [--pg DSN]

Writes, through PostgresHistory.write_added (the /v2/notify path), `--notifications` notifications of
`--entities` AirQualityObserved entities (TimeInstant + 5 numbers each, one key time per notification) on a
throwaway schema, then as many single-entity notifications, one at a time; prints per case the wall time per
notification, the instances per second, and the PostgreSQL server's CPU per instance (the backend's utime +
stime from /proc of the one connection this process holds, where the server runs on this host). Run it from each
tree (alternated pairs) to compare one history layout's write cost with another's on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from bench.api_bench import cpu_seconds
from broker.temporal.model import from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory

T0 = to_us("2026-03-01T00:00:00Z")
ATTRS = [f"https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/{a}"
         for a in ("TimeInstant", "no2", "o3", "pm10", "pm25", "temperature")]


def _rows(entities: range, n: int) -> tuple[list[tuple[str, list[str]]], list]:  # type: ignore[type-arg]
    at = from_us(T0 + n * 60_000_000)
    rows = []
    for e in entities:
        eid = f"urn:ngsi-ld:AirQualityObserved:{e:05d}"
        for k, attr in enumerate(ATTRS):
            value: object = {"@type": "DateTime", "@value": at} if k == 0 else float(e % 50) + k + n * 0.25
            rows.append(value_row("bench", eid, attr, {"type": "Property", "value": value, "observedAt": at}, T0 + n))
    return [(f"urn:ngsi-ld:AirQualityObserved:{e:05d}", ["https://x/AirQualityObserved"]) for e in entities], rows


@asynccontextmanager
async def throwaway_history(dsn: str, prefix: str) -> AsyncIterator[tuple[PostgresHistory, int]]:
    """A PostgresHistory on a schema of its own (dropped after) with one pooled connection, and that
    connection's server process id (its CPU is the server's for every write made here)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".change_log (seq bigint)')  # write_added reads it
    history = PostgresHistory(dsn, schema, max_size=1)
    try:
        await history.open()
        pid = await history.pool.fetchval("SELECT pg_backend_pid()")
        print(f"history module {PostgresHistory.__module__} from {__import__('broker').__file__}")
        yield history, pid
    finally:
        await history.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def run(dsn: str, notifications: int, entities: int) -> None:
    async with throwaway_history(dsn, "wt_history_write") as (history, pid):
        for label, batch, count in (("100 entities", entities, notifications),
                                    ("1 entity", 1, notifications * 10)):
            # the series made first (a first notification of each entity), then the measured writes
            for e in range(0, 1000, entities):
                ents, rows = _rows(range(e, e + entities), 0)
                await history.write_added("bench", ents, rows, {})
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            for n in range(count):
                first = (n * batch) % 1000
                ents, rows = _rows(range(first, first + batch), 1 + n // max(1, 1000 // batch) + (0 if batch > 1 else 10**4))
                await history.write_added("bench", ents, rows, {})
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            instances = count * batch
            print(f"{label:14s} {wall / count * 1000:8.2f} ms/notification  {instances / wall:9,.0f} inst/s"
                  f"  server CPU {cpu / instances * 1000:.3f} ms/inst ({cpu:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notifications", type=int, default=300)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(run(args.pg, args.notifications, args.entities))


if __name__ == "__main__":
    main()
