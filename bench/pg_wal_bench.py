"""Where single-attribute PATCH on PostgreSQL spends its WAL and its waits (issue 16, pgwal22).

    python -m bench.pg_wal_bench [--seconds 5] [--clients 8] [--entities 1000] [--dsn DSN] [--py-spy FILE]

Starts `metropole broker` on a fresh schema of the database in --dsn (default
METROPOLE_BENCH_PG_DSN, else postgres@127.0.0.1/postgres), upserts --entities
AirQualityObserved entities (bench.broker_bench.air_quality), then sends
api_bench's PATCH requests with wrk (one attribute, 8 keep-alive connections)
for --seconds, while sampling pg_stat_activity every 10 ms. Printed:

- PATCH/s, the broker's CPU-s per 1,000 PATCHes;
- WAL bytes per PATCH from pg_current_wal_lsn() (the whole server: run it on a
  quiet server, or read the next table), and the commits per WAL flush from
  pg_stat_wal (server-wide too);
- with pg_walinspect in that database (`CREATE EXTENSION pg_walinspect`, a
  superuser's): the WAL records of this schema's relations by relation and
  record type (bytes per PATCH without full-page images, which come with the
  first change of a page after each checkpoint: their total apart), and the commit records
  of the transactions that wrote them: what each PATCH writes, without what
  other databases wrote meanwhile;
- the wait events sampled on the broker's connections (the share of samples).

The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.api_bench import _wrk_phase, cpu_seconds, seed
from bench.procs import Managed, free_port

DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _backends(conn: asyncpg.Connection) -> list[int]:
    """The server processes of the broker's connections (every other client backend of this database)."""
    return [r[0] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid() AND application_name <> 'pg_wal_bench'")]


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


async def _snapshot(conn: asyncpg.Connection) -> tuple[str, int, int, int]:
    row = await conn.fetchrow("SELECT pg_current_wal_flush_lsn()::text, wal_records, wal_sync, wal_write FROM pg_stat_wal")
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def _updates(conn: asyncpg.Connection, schema: str) -> tuple[int, int]:
    """Row updates of the schema's entities table so far, and how many of them were HOT (no new index entries)."""
    row = await conn.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = $1"
                              " AND relname = 'entities'", schema)
    return (0, 0) if row is None else (row[0], row[1])


def _sampler(dsn: str, stop: threading.Event, counts: collections.Counter[str]) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"application_name": "pg_wal_bench"})
        try:
            while not stop.is_set():
                rows = await conn.fetch(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), state FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    " AND application_name <> 'pg_wal_bench' AND state <> 'idle'")
                for r in rows:
                    counts[r[0]] += 1
                counts["_samples"] += 1
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    asyncio.run(run())


async def _wal_by_relation(dsn: str, schema: str, start: str, end: str, patches: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_walinspect'"):
            return ["(no pg_walinspect in this database: no WAL by relation)"]
        names = {r[0]: r[1] for r in await conn.fetch(
            "SELECT c.relfilenode::text, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relfilenode <> 0", schema)}
        toast = {r[0]: r[1] for r in await conn.fetch(
            "SELECT t.relfilenode::text, 'toast of ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class t ON t.oid = c.reltoastrelid WHERE n.nspname = $1"
            " UNION ALL SELECT i.relfilenode::text, 'toast index of ' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indrelid = c.reltoastrelid"
            " JOIN pg_class i ON i.oid = x.indexrelid WHERE n.nspname = $1", schema)}
        names.update(toast)
        db = str(await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()"))
        rows = await conn.fetch(
            "SELECT xid::text, resource_manager, record_type, record_length, fpi_length, block_ref"
            " FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)", start, end)
    finally:
        await conn.close()
    by: collections.Counter[tuple[str, str]] = collections.Counter()
    fpi: collections.Counter[str] = collections.Counter()
    xids: set[str] = set()
    commits = commit_bytes = 0
    pattern = re.compile(r"rel \d+/(\d+)/(\d+)")
    mine: list[Any] = []
    for r in rows:
        m = pattern.search(r[5] or "")
        if m is None or m.group(1) != db:
            mine.append(r)
            continue
        rel = names.get(m.group(2), f"other {m.group(2)}")
        by[(rel, f"{r[1]}/{r[2]}")] += r[3] - r[4]  # full-page images apart: they follow checkpoints, not PATCHes
        fpi[rel] += r[4]
        if r[0] != "0":
            xids.add(r[0])
    for r in mine:
        if r[1] == "Transaction" and r[0] in xids:
            commits += 1
            commit_bytes += r[3]
    total = sum(by.values()) + commit_bytes
    head = (f"WAL of this schema's relations: {total / patches:,.0f} bytes per PATCH without full-page images"
            f" ({commits / patches:.3f} commit records per PATCH, {commit_bytes / patches:,.0f} bytes), full-page images"
            f" {sum(fpi.values()) / patches:,.0f} bytes per PATCH")
    out = [head, f"{'relation':<34} {'record':<28} {'bytes/PATCH':>11}"]
    for (rel, kind), size in sorted(by.items(), key=lambda kv: -kv[1]):
        if size / patches >= 1:
            out.append(f"{rel:<34} {kind:<28} {size / patches:>11,.0f}")
    out.append("full-page images by relation: " + ", ".join(f"{k} {v / patches:,.0f}" for k, v in fpi.most_common() if v))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--perf", type=Path, default=None,
                        help="record the broker's server backends with `perf record -g` into this file (root)")
    parser.add_argument("--py-spy", type=Path, default=None, help="record the PATCH phase with py-spy (raw) into this file")
    args = parser.parse_args()
    schema = f"wal_bench_{os.getpid()}"
    data = Path(tempfile.mkdtemp(prefix="pg-wal-bench-"))
    port = free_port()
    store = args.dsn + ("&" if "?" in args.dsn else "?") + f"schema={schema}"
    broker = Managed([sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data),
                      "--store", store], f"http://127.0.0.1:{port}/version", log=data / "broker.log")
    broker.start()
    try:
        seed(port, args.entities)
        _wrk_phase(port, "PATCH", args.clients, 1.0, args.entities)  # warm-up
        time.sleep(0.5)  # the history recorder catches up
        loop = asyncio.new_event_loop()
        pg = loop.run_until_complete(asyncpg.connect(args.dsn, server_settings={"application_name": "pg_wal_bench"}))
        backends = loop.run_until_complete(_backends(pg))
        before = loop.run_until_complete(_snapshot(pg))
        updates = loop.run_until_complete(_updates(pg, schema))
        counts: collections.Counter[str] = collections.Counter()
        stop = threading.Event()
        sampler = threading.Thread(target=_sampler, args=(args.dsn, stop, counts))
        sampler.start()
        recorder = None
        if args.py_spy is not None and shutil.which("py-spy"):
            recorder = subprocess.Popen(["py-spy", "record", "--pid", str(broker.pid), "--format", "raw", "--rate", "250",
                                         "--output", str(args.py_spy), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        perf = None
        if args.perf is not None and shutil.which("perf"):
            perf = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o", str(args.perf), "-p",
                                     ",".join(map(str, backends))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu, server_cpu = cpu_seconds(broker.pid), _cpu(backends)
        started = time.perf_counter()
        count, (p50, p99) = _wrk_phase(port, "PATCH", args.clients, args.seconds, args.entities)
        elapsed = time.perf_counter() - started
        cpu, server_cpu = cpu_seconds(broker.pid) - cpu, _cpu(backends) - server_cpu
        time.sleep(0.5)  # the history of the last PATCHes is written (its WAL is the PATCHes' too)
        stop.set()
        sampler.join()
        if perf is not None:
            perf.send_signal(2)
            perf.wait(timeout=60)
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait(timeout=30)
        after = loop.run_until_complete(_snapshot(pg))
        time.sleep(0.6)  # the statistics collector's next report (PostgreSQL 15 reports at most each second)
        upd, hot = (b - a for a, b in zip(updates, loop.run_until_complete(_updates(pg, schema))))
        lsn_bytes = loop.run_until_complete(pg.fetchval("SELECT $2::text::pg_lsn - $1::text::pg_lsn", before[0], after[0]))
        loop.run_until_complete(pg.close())
        loop.close()
        print(f"PATCH {count / elapsed:,.0f}/s ({count} in {elapsed:.1f} s), p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms,"
              f" broker CPU-s/1k {cpu / count * 1000:.3f} ({cpu / elapsed * 100:.0f} %), its {len(backends)} server"
              f" backends' CPU-s/1k {server_cpu / count * 1000:.3f} ({server_cpu / elapsed * 100:.0f} %)")
        syncs = after[2] - before[2]
        print(f"server WAL {int(lsn_bytes) / count:,.0f} bytes per PATCH (whole server), {after[1] - before[1]} records,"
              f" {syncs} WAL syncs ({count / max(syncs, 1):.2f} PATCHes per sync, server-wide)")
        print(f"entity row updates {upd:,}, HOT {hot / max(upd, 1) * 100:.0f} %")
        for line in asyncio.run(_wal_by_relation(args.dsn, schema, before[0], after[0], count)):
            print(line)
        samples = counts.pop("_samples", 1)
        print(f"wait events on the broker's connections ({samples} samples; busy connections per sample):")
        for event, n in counts.most_common(12):
            print(f"  {event:<32} {n / samples:6.2f}")
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run(["psql", args.dsn, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
