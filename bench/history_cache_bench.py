"""History stores' key caches: RSS and entries after N distinct series, and the CPU of a write on a cache hit.

    python -m bench.history_cache_bench [--store sqlite|postgres] [--series 300000] [--attrs 6] [--hits 5]

In process (no broker): a SQLiteHistory on a temporary file (or a PostgresHistory on a schema of its own,
dropped) gets `--series` distinct series (entities x `--attrs` numbers, one reading each, 1,000 entities per
`write`, as the recorder writes a batch), then prints the process's RSS (VmRSS) before and after, each cache's
entries (series key -> sid; on SQLite also entity -> eid and shape -> id), and the CPU-seconds per row of
`--hits` writes of 2,000 entities already written (every series a cache hit, new readings). The bound is
METROPOLE_BROKER_HISTORY_CACHE_ENTRIES (issue 16, cache23; unset: 250,000). Run from /work/bench-before
(caches unbounded) with PYTHONPATH=. and this file's path, or from this tree, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

T0 = 1_772_359_200_000_000  # 2026-03-01T10:00:00Z
BATCH = 1000


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rows(first: int, count: int, attrs: int, second: int) -> tuple[list[Any], list[Any]]:
    from broker.temporal.model import EntityRow, from_us, value_row

    at = from_us(T0 + second * 1_000_000)
    entities, rows = [], []
    for n in range(first, first + count):
        eid = f"urn:ngsi-ld:AirQualityObserved:bench-{n:07d}"
        entities.append(EntityRow("bench", eid, ["https://x/AirQualityObserved"]))
        rows += [value_row("bench", eid, f"https://x/a{k}", {"type": "Property", "value": n + k + 0.5, "observedAt": at},
                           T0) for k in range(attrs)]
    return entities, rows


def cache_mb(history: Any) -> float:
    """The caches' bytes: the dicts, their key tuples and the strings they hold, each once (sys.getsizeof)."""
    import sys

    seen: set[int] = set()
    total = 0

    def add(obj: object) -> None:
        nonlocal total
        if id(obj) not in seen:  # each string once (an entity's id is in its series' keys and its eid's)
            seen.add(id(obj))
            total += sys.getsizeof(obj)

    for name in ("_series", "_entities", "_shapes"):
        cache = getattr(history, name, None)
        if cache is None:
            continue
        total += sys.getsizeof(cache)
        for key in cache:
            total += sys.getsizeof(key)
            for part in key if isinstance(key, tuple) else (key,):
                add(part)
    return total / 1e6


def _sizes(history: Any) -> dict[str, int]:
    return {name: len(getattr(history, name)) for name in ("_series", "_entities", "_shapes") if hasattr(history, name)}


async def run(store: str, series: int, attrs: int, hits: int) -> None:
    history: Any
    admin = None
    schema = f"wt_cache23_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        if store == "sqlite":
            from broker.temporal.sqlite import SQLiteHistory

            history = SQLiteHistory(Path(tmp) / "h.db")
        else:
            import asyncpg

            from broker.temporal.postgres import PostgresHistory

            dsn = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
            admin = await asyncpg.connect(dsn)
            await admin.execute(f'CREATE SCHEMA "{schema}"')
            history = PostgresHistory(dsn, schema)
        await history.open()
        try:
            entities = series // attrs
            warm_e, warm_r = _rows(0, BATCH, attrs, 0)
            await history.write(warm_e, warm_r)  # statements prepared, the tables made
            gc.collect()
            before = rss_mb()
            started = time.process_time()
            for first in range(BATCH, entities, BATCH):
                e, r = _rows(first, min(BATCH, entities - first), attrs, 0)
                await history.write(e, r)
            made = time.process_time() - started
            gc.collect()
            after = rss_mb()
            print(f"{store}: {entities * attrs:,} series ({entities:,} entities x {attrs}); bound "
                  f"{getattr(history, 'cache_entries', 'none (unbounded)')}")
            print(f"  cache entries {_sizes(history)}, ~{cache_mb(history):.0f} MB of their own (getsizeof)")
            print(f"  RSS {before:.0f} -> {after:.0f} MB (+{after - before:.0f} MB); CPU {made:.1f} s to write them")
            # cache hits: the last 2,000 entities written again with new readings, `hits` times
            first = max(BATCH, entities - 2 * BATCH)
            per_row = []
            for rep in range(hits):
                cpu = 0.0
                rows_n = 0
                for f in range(first, first + 2 * BATCH, BATCH):
                    e, r = _rows(f, BATCH, attrs, rep + 1)
                    t = time.process_time()
                    await history.write(e, r)
                    cpu += time.process_time() - t
                    rows_n += len(r)
                per_row.append(cpu / rows_n * 1e6)
            print("  hit writes, CPU us/row: " + ", ".join(f"{x:.1f}" for x in per_row)
                  + f" (min {min(per_row):.1f}); cache entries after {_sizes(history)}")
        finally:
            await history.close()
            if admin is not None:
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--series", type=int, default=300_000)
    parser.add_argument("--attrs", type=int, default=6)
    parser.add_argument("--hits", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.store, args.series, args.attrs, args.hits))


if __name__ == "__main__":
    main()
