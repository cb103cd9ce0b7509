"""Batch upsert on PostgreSQL: the server backends' CPU per entity beside the broker's (issue 16, upsertpy23).

    python -m bench.pg_upsert_server_bench [--entities 10000] [--rounds 3] [--dsn DSN]

`BatchService.upsert` (normalization and the store's write, no history, no HTTP) of broker_bench's
AirQualityObserved entities, 1,000 per call, on a fresh schema of the database in --dsn (default
METROPOLE_BENCH_PG_DSN, else postgres@127.0.0.1/postgres); round 1 creates them, the next rounds replace
them with new readings. Printed per round: the CPU of the store pool's server backends (utime + stime from
/proc: the server must run on this host) and of this process, in microseconds per entity; then the average
stored size of an entity row and its document, and the document's compression. broker_bench counts the
broker alone: on PostgreSQL about as much CPU again is the server's. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import orjson

sys.path.insert(0, os.getcwd())

from bench.api_bench import cpu_seconds
from bench.broker_bench import POSTGRES_DSN, air_quality
from bench.upsert_stages_bench import _moved
from broker.service.batch import BatchService
from broker.store.postgres import PostgresStore
from models.context import ContextResolver


async def run(args: argparse.Namespace) -> None:
    store = PostgresStore(args.dsn, schema=f"upsert_server_{os.getpid()}")
    await store.open()
    service = BatchService(store)
    ctx = ContextResolver().resolve(["https://smartdatamodels.org/context.jsonld"])
    n = args.entities
    try:
        for round_ in range(args.rounds):
            bodies = [orjson.dumps([_moved(air_quality(i), round_) for i in range(s, min(n, s + 1000))])
                      for s in range(0, n, 1000)]
            pids = sorted(await _own_backends(store))  # the pool opened its connections at start
            server0 = {p: cpu_seconds(p) for p in pids}
            broker0 = time.process_time()
            for raw in bodies:
                await service.upsert("", orjson.loads(raw), ctx)
            broker = time.process_time() - broker0
            server = sum(cpu_seconds(p) - server0[p] for p in pids)
            label = "create" if round_ == 0 else f"replace {round_}"
            print(f"{label:>10}: server backends {server / n * 1e6:.1f} us/entity ({len(pids)} backends),"
                  f" this process {broker / n * 1e6:.1f} us/entity", flush=True)
        row = await store.pool.fetchrow(
            "SELECT avg(pg_column_size(e.*))::int, avg(pg_column_size(doc))::int, min(pg_column_compression(doc))"
            " FROM entities e")
        assert row is not None
        print(f"entity row {row[0]} bytes, its document {row[1]} bytes ({row[2]})")
    finally:
        await store.pool.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
        await store.close()


async def _own_backends(store: PostgresStore) -> set[int]:
    """The server pids of the pool's open connections."""
    pool = store.pool
    conns = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        return {c.get_server_pid() for c in conns}
    finally:
        for c in conns:
            await pool.release(c)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default=POSTGRES_DSN)
    from metropole.gc_tuning import tune_for_serving

    tune_for_serving()  # as the broker runs
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
