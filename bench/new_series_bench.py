"""PostgreSQL history: single-entity /v2/notify writes of new entities (their series made by the write) and of known ones.

    python -m bench.new_series_bench [--seed 200] [--batch 10] [--notifications 800] [--pg DSN]

On a throwaway schema, PostgresHistory.write_added (the /v2/notify path, one statement per notification) first
writes `--seed` entities in `--batch`-entity notifications (as ql_notify_bench's warm-up: its statement's
generic plan is then made while temporal_series is small, and kept until the table is analysed), then `--notifications` single-entity
notifications each of an entity never seen (its 6 series made by the statement: _ADDED_SERIES), then as many of
known entities (_ADDED). Prints per case the wall time per notification and the PostgreSQL server backend's CPU
per notification (utime + stime from /proc of the pool's one connection; the server runs on this host).
To measure another tree's code with this file: `cd <tree> && PYTHONPATH=. .venv/bin/python <this file>` (it
prints which broker package it imported).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.api_bench import cpu_seconds
from bench.history_write_bench import _rows, throwaway_history


async def run(dsn: str, seed: int, batch: int, notifications: int) -> None:
    async with throwaway_history(dsn, "wt_new_series") as (history, pid):
        for e in range(0, seed, batch):
            await history.write_added("bench", *_rows(range(e, min(seed, e + batch)), 0), {})
        for label, first in (("new entity", seed), ("known entity", seed)):
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            for n in range(notifications):
                await history.write_added("bench", *_rows(range(first + n, first + n + 1), 1 + (label == "known entity")), {})
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            print(f"{label:13s} {wall / notifications * 1000:6.3f} ms/notification wall"
                  f"  server CPU {cpu / notifications * 1000:.3f} ms/notification ({cpu:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--notifications", type=int, default=800)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(run(args.pg, args.seed, args.batch, args.notifications))


if __name__ == "__main__":
    main()
