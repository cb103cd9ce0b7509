"""Benchmark of the broker stores: batch writes, get by id, a type + predicate query.

    python -m bench.store_bench [--entities 20000] [--batch 1000] [--pg postgresql://postgres@127.0.0.1/postgres]

Writes ~1 KB AirQualityObserved ENF documents in batches, first as inserts
then as upsert_replace of the same ids, then times single gets and a query
selecting the type with a Python predicate (no2 > 80) and a count. SQLite
runs on a temporary file; PostgreSQL on a throwaway schema dropped after
(skipped when the server does not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from broker.store import EntityFilter, Store, open_store

NS = "https://smartdatamodels.org/dataModel.Environment/"
AQO = NS + "AirQualityObserved"
NOW = "2026-11-26T06:00:00Z"
POLLUTANTS = [("no2", "GQ"), ("nox", "GQ"), ("o3", "GQ"), ("pm10", "GQ"), ("pm25", "GQ"), ("temperature", "CEL")]


def aqo(n: int, rng: random.Random) -> dict[str, Any]:
    """One AirQualityObserved entity in ENF, about 1 KB of JSON."""
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:AirQualityObserved:aix-{n:06d}",
        "type": [AQO],
        "https://uri.etsi.org/ngsi-ld/location": [
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.2 + rng.random() / 2, 43.2 + rng.random() / 2]}}
        ],
        NS + "dateObserved": [{"type": "Property", "value": {"@type": "DateTime", "@value": NOW}}],
        NS + "refDevice": [{"type": "Relationship", "object": f"urn:ngsi-ld:Device:aix-{n:06d}"}],
    }
    for name, unit in POLLUTANTS:
        doc[NS + name] = [{"type": "Property", "value": round(rng.uniform(0, 120), 1), "unitCode": unit}]
    return doc


async def bench_store(store: Store, docs: list[dict[str, Any]], batch: int) -> dict[str, float]:
    """Timings of one open store, emptied first."""
    out: dict[str, float] = {}
    for label, write in (("insert", store.insert), ("upsert_replace", store.upsert_replace)):
        start = time.perf_counter()
        for i in range(0, len(docs), batch):
            await write("bench", docs[i : i + batch], NOW)
        out[label] = len(docs) / (time.perf_counter() - start)
    rng = random.Random(7)
    latencies = []
    for _ in range(2000):
        entity_id = docs[rng.randrange(len(docs))]["id"]
        start = time.perf_counter()
        assert await store.get("bench", entity_id) is not None
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    out["get_p50_ms"] = statistics.median(latencies) * 1000
    out["get_p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1000
    no2 = NS + "no2"
    flt = EntityFilter(type_dnf=[frozenset({AQO})], predicate=lambda d: d[no2][0]["value"] > 80)
    start = time.perf_counter()
    page = await store.query("bench", flt, limit=100, offset=0, count=True)
    out["query_ms"] = (time.perf_counter() - start) * 1000
    out["query_total"] = float(page.total or 0)
    return out


async def run_one(url: str, docs: list[dict[str, Any]], batch: int) -> dict[str, float]:
    store = open_store(url)
    await store.open()
    try:
        return await bench_store(store, docs, batch)
    finally:
        await store.close()


async def main(entities: int, batch: int, pg_dsn: str) -> None:
    rng = random.Random(1)
    docs = [aqo(n, rng) for n in range(entities)]
    size = statistics.mean(len(orjson.dumps(d)) for d in docs[:100])
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("sqlite", await run_one(f"sqlite:///{Path(folder) / 'bench.db'}", docs, batch)))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(pg_dsn)
    except OSError as exc:
        print(f"PostgreSQL skipped: {exc}")
    else:
        try:
            rows.append(("postgres", await run_one(f"{pg_dsn}?schema={schema}", docs, batch)))
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
    print(f"{entities} AirQualityObserved entities of {size:.0f} bytes, batches of {batch}")
    print(f"{'store':<10}{'insert/s':>11}{'upsert/s':>11}{'get p50 ms':>12}{'get p99 ms':>12}{'query ms':>10}{'matches':>9}")
    for name, r in rows:
        print(
            f"{name:<10}{r['insert']:>11,.0f}{r['upsert_replace']:>11,.0f}{r['get_p50_ms']:>12.3f}"
            f"{r['get_p99_ms']:>12.3f}{r['query_ms']:>10.1f}{r['query_total']:>9.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.entities, args.batch, args.pg))
