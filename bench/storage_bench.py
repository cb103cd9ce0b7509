"""History storage per instance: bytes on disk and the broker's peak RSS while ingesting, per store.

    python -m bench.storage_bench [--stores sqlite,postgres] [--instances 50000] [--no-quantumleap] [--keep DIR]

Starts `metropole broker` in a subprocess per store and ingests `--instances`
entity instances through the QuantumLeap-compatible `POST /v2/notify` (the
harness of bench.ql_notify_bench: NGSI-v2 AirQualityObserved, TimeInstant
and five numbers, 100 entities per notification, 4 keep-alive clients), then
prints, per store:

    history MB           the history tables (temporal_*: instances, their indexes, entities, rollups)
    whole store MB       everything the store holds (entities, change log, history...)
    B/instance           history bytes per instance (an instance = one entity notified: 5 numbers)
    MB per 1M measures   history bytes per million measured values (5 per instance)
    broker peak RSS      VmHWM of the broker process at the end of the ingest; RSS after warm-up
    CPU ms/instance      the broker process's CPU (PostgreSQL's server processes not included)

`--keep DIR` keeps the SQLite file (DIR/broker.db) and the PostgreSQL schema
(qlbench_<pid>, to drop by hand) for a look at their columns.

SQLite sizes come from the `dbstat` table of the broker's file (after a WAL
checkpoint), PostgreSQL's from pg_total_relation_size (tables with their
indexes and TOAST) in the bench's own schema, without VACUUM.

QuantumLeap is not run: its layout is rebuilt here and loaded with the
same instances, to estimate its size. QuantumLeap keeps one row per
notified entity in a table per entity type (`etairqualityobserved`), with
entity_id, entity_type, time_index, fiware_servicepath,
__original_ngsi_entity__ (NULL unless the raw entity is kept) and one column
per attribute (Number -> float, DateTime -> timestamptz). The estimate is
that table in this PostgreSQL (plain heap, not a Timescale hypertable, no
compression) with an index on time_index (a hypertable's default) and one
on entity_id. On CrateDB (columnar Lucene segments, compressed) it differs
and is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

from bench.ql_notify_bench import POSTGRES_DSN, T0, _port, cpu_seconds, entity, post_all, start_broker

PER_NOTIFICATION = 100
CLIENTS = 4
VALUES_PER_INSTANCE = 5
ENTITIES = 1000  # post_all's entity numbers: (notification * 100 + i) % 1000


def _status(pid: int, key: str) -> float:
    """A /proc/<pid>/status figure in MB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sqlite_sizes(path: Path) -> tuple[int, int, dict[str, int]]:
    """History bytes, whole-file bytes and bytes per table or index of a SQLite store (dbstat, after a checkpoint)."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema").fetchall())
    finally:
        db.close()
    history = sum(size for name, size in sizes.items() if str(owner.get(name, name)).startswith("temporal_"))
    return history, path.stat().st_size, {str(k): int(v) for k, v in sizes.items()}


async def _pg_sizes(schema: str) -> tuple[int, int, dict[str, int]]:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')", schema)
        parts = await conn.fetch(  # each table's heap (with TOAST) and each index on its own
            "SELECT c.relname, CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) ELSE pg_table_size(c.oid) END"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1"
            " AND c.relkind IN ('r', 'i')", schema)
    finally:
        await conn.close()
    history = sum(int(r[1]) for r in rows if r[0].startswith("temporal_"))
    return history, sum(int(r[1]) for r in rows), {str(r[0]): int(r[1]) for r in parts}


async def _quantumleap_layout(instances: int, entities: int) -> int:
    """Bytes of QuantumLeap's table layout holding the same instances, in a scratch schema of this PostgreSQL."""
    schema = f"qlbench_layout_{os.getpid()}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        await conn.execute(
            f"""CREATE TABLE {schema}.etairqualityobserved (entity_id text, entity_type text,
                time_index timestamp with time zone NOT NULL, fiware_servicepath text, __original_ngsi_entity__ text,
                timeinstant timestamp with time zone, no2 float, o3 float, pm10 float, pm25 float, temperature float);
                CREATE INDEX ON {schema}.etairqualityobserved (time_index DESC);
                CREATE INDEX ON {schema}.etairqualityobserved (entity_id)""")
        records = []
        notifications = instances // PER_NOTIFICATION
        for seq in range(notifications):
            for i in range(PER_NOTIFICATION):
                e = entity((seq * PER_NOTIFICATION + i) % entities, seq)
                at = T0 + timedelta(seconds=seq)
                records.append((e["id"], "AirQualityObserved", at, "/", None, at,
                                float(e["no2"]["value"]), float(e["o3"]["value"]), float(e["pm10"]["value"]),
                                float(e["pm25"]["value"]), float(e["temperature"]["value"])))
        await conn.copy_records_to_table("etairqualityobserved", schema_name=schema, records=records)
        return int(await conn.fetchval(f"SELECT pg_total_relation_size('{schema}.etairqualityobserved')"))
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def run_store(store: str, instances: int, keep: Path | None = None) -> tuple[dict[str, float], dict[str, int]]:
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as folder:
        proc, base = start_broker(store, Path(folder), _port(None))
        schema = f"qlbench_{os.getpid()}"
        try:
            post_all(base, 1, 10, 20, 10**6)  # warm up: contexts, tenant, statements
            rss_warm = _status(proc.pid, "VmRSS")
            cpu0 = cpu_seconds(proc.pid)
            start = time.perf_counter()
            notifications = instances // PER_NOTIFICATION
            post_all(base, CLIENTS, PER_NOTIFICATION, notifications, 0)
            wall = time.perf_counter() - start
            cpu = cpu_seconds(proc.pid) - cpu0
            peak = _status(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(30)
        try:
            if store == "postgres":
                history, whole, parts = asyncio.run(_pg_sizes(schema))
            else:
                history, whole, parts = _sqlite_sizes(Path(folder) / "broker.db")
                if keep is not None:  # the file itself, for a look at its layout (after the checkpoint)
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(folder) / "broker.db", keep / "broker.db")
        finally:
            if store == "postgres" and keep is None:
                subprocess.run(["psql", POSTGRES_DSN, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    count = notifications * PER_NOTIFICATION
    return ({"history": history, "whole": whole, "count": count, "rss_warm": rss_warm, "peak": peak,
             "cpu_ms": cpu * 1000 / count, "rate": count / wall}, parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--instances", type=int, default=50_000, help="entity instances to ingest per store")
    parser.add_argument("--keep", type=Path, help="keep the SQLite file in this folder and the PostgreSQL schema"
                        " (qlbench_<pid>) instead of dropping them")
    parser.add_argument("--no-quantumleap", action="store_true", help="skip the QuantumLeap layout estimate")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    details: dict[str, dict[str, int]] = {}
    for store in args.stores.split(","):
        results[store], details[store] = run_store(store, args.instances, args.keep)
    if not args.no_quantumleap:
        ql = asyncio.run(_quantumleap_layout(args.instances, ENTITIES))
        results["QuantumLeap layout (estimate, PostgreSQL heap)"] = {"history": ql, "whole": ql,
                                                                     "count": args.instances}
    print(f"\nhistory storage, {args.instances:,} instances of AirQualityObserved (TimeInstant + 5 numbers) "
          f"over {ENTITIES:,} entities, /v2/notify, {PER_NOTIFICATION} per notification, {CLIENTS} clients")
    print("| store | history MB | whole store MB | B/instance | MB per 1M measures | broker RSS warm / peak MB"
          " | CPU ms/instance | instances/s |")
    print("|---|---|---|---|---|---|---|---|")
    for store, r in results.items():
        per = r["history"] / r["count"]
        rss = f"{r['rss_warm']:.0f} / {r['peak']:.0f}" if "peak" in r else "-"
        cpu = f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "-"
        rate = f"{r['rate']:,.0f}" if "rate" in r else "-"
        print(f"| {store} | {r['history'] / 1e6:.1f} | {r['whole'] / 1e6:.1f} | {per:,.0f} | "
              f"{per * 1e6 / VALUES_PER_INSTANCE / 1e6:,.0f} | {rss} | {cpu} | {rate} |")
    for store, parts in details.items():
        count = results[store]["count"]
        print(f"\n{store}: bytes per instance by table and index (the largest)")
        for name, size in sorted(parts.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {name:<40} {size / count:>8,.0f}")


if __name__ == "__main__":
    main()
