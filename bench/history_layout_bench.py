"""History bytes per instance: the row per attribute instance the stores keep, against a row per entity change.

    python -m bench.history_layout_bench [--entities 1000] [--notifications 50] [--stores sqlite,postgres]

No broker runs: the instances of `bench.storage_bench` (an AirQualityObserved entity notified with
TimeInstant and five numbers; `--entities` x `--notifications` instances) are written straight into

- the row per attribute instance: the stores' own `temporal_rows` (`broker.temporal.sqlite.SCHEMA`,
  `broker.temporal.postgres.SCHEMA`), six rows per instance as the broker writes a plain reading (no stored
  document, observedAt the key, TimeInstant's DateTime the key itself: `value_json` ''). PostgreSQL keeps
  its history so; SQLite since issue 16's sqlrow21 keeps an entity change's readings as one row of
  `temporal_changes` (JSON values, the series in a shape: the "JSON array text" candidate below) and only
  what does not pack in `temporal_rows`;
- candidate layouts of one row per entity change: the entity's key, the key time, the first instanceId and
  modifiedAt once, and the five values packed (float64 or float32 bytes, JSON text, a float8 array, or a
  column per attribute as QuantumLeap keeps them), with the primary key `(entity, key time)`.

Printed: bytes per instance of each table with its indexes (SQLite: `dbstat` pages; PostgreSQL:
`pg_total_relation_size`, no VACUUM). It sizes the history rows alone, not the rollups, series and entity
tables that `bench.storage_bench` adds (which measures the layout the broker writes); it said what a row per
entity change would weigh before that layout was built (issue 16: QuantumLeap's 172 bytes per instance).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from broker.temporal import postgres as pg_history
from broker.temporal import sqlite as sqlite_history

T0 = 1_780_000_000_000_000  # microseconds
VALUES = 5
ATTRS = VALUES + 1  # TimeInstant and the five numbers
POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

Instance = tuple[int, int, int, list[float]]  # entity number, key time, modifiedAt, the five values


def instances(entities: int, notifications: int) -> Iterator[Instance]:
    """The instances in notification order; modifiedAt an hour and up to a second after the key time."""
    rnd = random.Random(1)
    for n in range(notifications):
        for e in range(entities):
            key = T0 + n * 60_000_000 + e * 1000
            yield e, key, key + 3_600_000_000 + rnd.randint(0, 10**6), [round(rnd.uniform(0, 100), 1)
                                                                         for _ in range(VALUES)]


def _per_attribute_rows(data: list[Instance]) -> Iterator[tuple[Any, ...]]:
    """temporal_rows as the broker writes plain readings: (sid, key_us, kind, iid, modified_us, value_num, value_json)."""
    iid = 0
    for e, key, modified, values in data:
        for a in range(ATTRS):
            iid += 1
            yield e * ATTRS + a + 1, key, 0, iid, modified, None if a == 0 else values[a - 1], "" if a == 0 else None


_CANDIDATES_SQLITE: dict[str, tuple[str, Callable[[list[float]], bytes | str]]] = {
    "one row per change, float64 bytes": ("BLOB", lambda v: struct.pack(f"<{VALUES}d", *v)),
    "one row per change, float32 bytes": ("BLOB", lambda v: struct.pack(f"<{VALUES}f", *v)),
    "one row per change, JSON array text": ("TEXT", lambda v: "[" + ",".join(map(repr, v)) + "]"),
}


def sqlite_sizes(data: list[Instance], folder: Path) -> dict[str, float]:
    """Bytes per instance of each layout in a SQLite file of its own (dbstat)."""
    out: dict[str, float] = {}

    def size(path: Path, table: str) -> float:
        # both tables are WITHOUT ROWID, clustered on their primary key: no other b-tree
        db = sqlite3.connect(path)
        try:
            total = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (table,)).fetchone()[0]
        finally:
            db.close()
        return float(total) / len(data)

    path = folder / "per_attribute.db"
    db = sqlite3.connect(path)
    for sql in sqlite_history.SCHEMA:
        db.execute(sql)
    db.executemany("INSERT INTO temporal_rows (sid, key_us, kind, iid, modified_us, value_num, value_json, obs_key)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 1)", _per_attribute_rows(data))
    db.commit()
    db.close()
    out["a row per attribute instance (temporal_rows)"] = size(path, "temporal_rows")
    for n, (name, (column, pack)) in enumerate(_CANDIDATES_SQLITE.items()):
        path = folder / f"candidate{n}.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (eid INTEGER NOT NULL, key_us INTEGER NOT NULL, iid0 INTEGER NOT NULL,"
                   f" modified_us INTEGER, shape INTEGER NOT NULL, vals {column}, PRIMARY KEY (eid, key_us)) WITHOUT ROWID")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, 1, ?)",
                       ((e + 1, key, i * ATTRS + 1, modified, pack(v)) for i, (e, key, modified, v) in enumerate(data)))
        db.commit()
        db.close()
        out[name] = size(path, "t")
    return out


async def postgres_sizes(data: list[Instance], dsn: str) -> dict[str, float]:
    """Bytes per instance of each layout in a PostgreSQL schema of its own (dropped at the end)."""
    schema = f"layout_bench_{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    out: dict[str, float] = {}
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
        await conn.execute(pg_history.SCHEMA)
        await conn.copy_records_to_table(
            "temporal_rows", columns=["sid", "key_us", "kind", "iid", "modified_us", "value_num", "value_json", "obs_key"],
            records=[(*r, True) for r in _per_attribute_rows(data)])
        out["a row per attribute instance (temporal_rows)"] = await conn.fetchval(
            "SELECT pg_total_relation_size('temporal_rows')") / len(data)
        head = "eid integer NOT NULL, shape smallint NOT NULL, key_us bigint NOT NULL, iid0 bigint NOT NULL, modified_us bigint"
        candidates: dict[str, tuple[str, Any]] = {
            "one row per change, float8[]": ("vals double precision[]", lambda v: (v,)),
            "one row per change, float64 bytes (bytea)": ("vals bytea", lambda v: (struct.pack(f"<{VALUES}d", *v),)),
            "one row per change, a column per attribute (QuantumLeap's)":
                (", ".join(f"v{k} double precision" for k in range(VALUES)), tuple),
            # JSON text (pgrow21): json_array_elements reads it back in SQL (a view, a trigger) with no decoding
            # in Python; a `json` column is the text as written (jsonb would be a binary form, larger here)
            "one row per change, JSON array text (json)": ("vals json", lambda v: ("[" + ",".join(map(repr, v)) + "]",)),
        }
        for n, (name, (columns, pack)) in enumerate(candidates.items()):
            await conn.execute(f"CREATE TABLE c{n} ({head}, {columns}, PRIMARY KEY (eid, key_us))")
            await conn.copy_records_to_table(f"c{n}", records=[(e + 1, 1, key, i * ATTRS + 1, modified, *pack(v))
                                                                for i, (e, key, modified, v) in enumerate(data)])
            out[name] = await conn.fetchval(f"SELECT pg_total_relation_size('c{n}')") / len(data)
        # no shape: each member's series id beside its value, [[sid, value], ...] (TimeInstant's DateTime, the key
        # time itself, as null), so that a change row needs no table of attribute sets (pgrow21)
        await conn.execute("CREATE TABLE cs (eid integer NOT NULL, key_us bigint NOT NULL, iid0 bigint NOT NULL,"
                           " modified_us bigint, vals json, PRIMARY KEY (eid, key_us))")
        await conn.copy_records_to_table("cs", records=[
            (e + 1, key, i * ATTRS + 1, modified,
             "[" + ",".join([f"[{e * ATTRS + 1},null]", *(f"[{e * ATTRS + 2 + k},{x!r}]" for k, x in enumerate(v))]) + "]")
            for i, (e, key, modified, v) in enumerate(data)])
        out["one row per change, [[sid, value], ...] JSON text (json), no shape"] = await conn.fetchval(
            "SELECT pg_total_relation_size('cs')") / len(data)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--notifications", type=int, default=50)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args(argv)
    data = list(instances(args.entities, args.notifications))
    print(f"{len(data):,} instances ({args.entities:,} entities x {args.notifications} notifications,"
          f" TimeInstant and {VALUES} numbers each); bytes per instance, history rows with their indexes")
    stores = args.stores.split(",")
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as folder:
            for name, value in sqlite_sizes(data, Path(folder)).items():
                print(f"  SQLite      {name:<62} {value:7.0f}")
    if "postgres" in stores:
        for name, value in asyncio.run(postgres_sizes(data, POSTGRES_DSN)).items():
            print(f"  PostgreSQL  {name:<62} {value:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
