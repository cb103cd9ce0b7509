"""CPU per one-entity `SQLiteStore.modify` with a single-attribute PATCH's fn: the store alone, no HTTP, no history.

    python -m bench.store_modify_bench [--calls 8000] [--rounds 3] [--tasks 8] [--entities 1000]

Opens a SQLite store in a temporary folder, writes --entities AirQualityObserved
documents (the bench's entity in expanded form), then --tasks tasks each call
`modify` on one entity at a time, ids in turn, with the fn a PATCH of `no2`
gives the store (the document copied, one instance replaced by
`patch_instance`, `Change.before_intact`). Printed per round: process CPU
microseconds per call over every thread (the event loop's hand-over and the
writer thread's transaction, group commit included). It isolates the store's
share of a PATCH (issue 16, sqlpatch20): compare before/after runs alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.broker_bench import AQO_ID, air_quality
from broker.service.patch import find_instance, patch_instance, utc_now
from broker.store.base import Change, ModifyFn, StoredEntity
from broker.store.sqlite import SQLiteStore

NS = "https://smartdatamodels.org/dataModel.Environment/"
NO2 = NS + "no2"


def expanded(i: int) -> dict[str, Any]:
    """The bench's AirQualityObserved in expanded normalized form (terms under one namespace)."""
    out: dict[str, Any] = {}
    for name, value in air_quality(i).items():
        if name == "id":
            out[name] = value
        elif name == "type":
            out[name] = [NS + value]
        else:
            out[NS + name] = [dict(value)]
    return out


def patch_fn(value: float) -> ModifyFn:
    """What EntityService.patch_attr hands the store for `PATCH .../attrs/no2` with a new value."""

    def fn(_id: str, current: StoredEntity | None) -> Change:
        assert current is not None
        doc = dict(current.doc)
        instances = list(doc.get(NO2, ()))
        i = find_instance(instances, None)
        instances[i] = patch_instance(instances[i], {"type": "Property", "value": value}, utc_now())
        doc[NO2] = instances
        return Change(doc, None, before_intact=True)

    return fn


async def measure(calls: int, rounds: int, tasks: int, entities: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="store-modify-bench-"))
    store = SQLiteStore(folder / "broker.db")
    await store.open()
    try:
        await store.upsert_replace("", [expanded(i) for i in range(entities)], utc_now())

        async def client(k: int, count: int) -> None:
            for j in range(count):
                entity_id = AQO_ID.format((k + tasks * j) % entities)
                await store.modify("", [entity_id], patch_fn(round(j * 0.1 % 100, 1)), utc_now())

        await asyncio.gather(*(client(k, 200) for k in range(tasks)))  # warm-up
        out = []
        for _ in range(rounds):
            cpu = time.process_time()
            await asyncio.gather(*(client(k, calls // tasks) for k in range(tasks)))
            out.append((time.process_time() - cpu) / (calls // tasks * tasks) * 1e6)
        return out
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--entities", type=int, default=1000)
    args = parser.parse_args()
    rounds = asyncio.run(measure(args.calls, args.rounds, args.tasks, args.entities))
    print("CPU us per modify, each round (all threads):", " ".join(f"{r:.1f}" for r in rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
