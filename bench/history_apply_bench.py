"""PostgreSQL history writes of a batch upsert alone: the recorder's PostgresHistory.apply, without the broker.

    python -m bench.history_apply_bench [--entities 10000] [--batch 1000] [--rounds 3] [--pg DSN]

Writes, through PostgresHistory.apply (the change-log recorder's transaction, the path of a batch upsert's
history), `--rounds` rounds of `--entities` AirQualityObserved entities (TimeInstant + 5 numbers each, a new
reading of every attribute per round) in batches of `--batch` entities, on a throwaway schema with one pooled
connection. Prints per round the CPU per entity of this process (rows -> parameters -> asyncpg's encoding) and of
the PostgreSQL server backend (utime + stime from /proc, where the server runs on this host). Round 1 makes the
series; the later ones write known series. Run it from each tree (alternated pairs) to compare (issue 16, pghist23).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.api_bench import cpu_seconds
from bench.history_write_bench import _rows, throwaway_history


async def run(dsn: str, entities: int, batch: int, rounds: int) -> None:
    async with throwaway_history(dsn, "wt_history_apply") as (history, pid):
        seq = 0
        for round_ in range(rounds):
            batches = [_rows(range(s, min(entities, s + batch)), round_)[1] for s in range(0, entities, batch)]
            t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_seconds(pid)
            for rows in batches:
                seq += 1
                await history.apply("bench", seq, [], rows)
            wall, client, server = time.perf_counter() - t0, time.process_time() - c0, cpu_seconds(pid) - s0
            label = "new series" if round_ == 0 else f"round {round_ + 1}"
            print(
                f"{label:>10}: client {client / entities * 1e6:6.1f} us/entity  server {server / entities * 1e6:6.1f}"
                f" us/entity  wall {wall / entities * 1e6:6.1f} us/entity",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(run(args.pg, args.entities, args.batch, args.rounds))


if __name__ == "__main__":
    main()
