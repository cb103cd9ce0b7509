"""Batch upsert in process, stage by stage: CPU microseconds per entity (issue 16, upsert22).

    python -m bench.upsert_stages_bench [--entities 20000] [--rounds 2] [--store sqlite|postgres]

No HTTP: the stages broker_bench's broker runs for each 1,000-entity request, timed with the process's
CPU clock (all threads: the SQLite writer's work is inside the await that waits for it), in the broker's
order: parse (orjson), limits (`check_limits`), normalization + stamps (`BatchService.upsert` less the
store), the store's write (`upsert_replace`: documents, side rows, change log), then what the recorder does
behind it: the change log read (`changes_after`), history rows (`rows_of_change`) and the history write
(`apply`: rows, change rows, rollups). Round 1 creates the entities, the next rounds replace them (new
readings, as broker_bench's re-upsert does not: its readings are the same; `--same` sends the same).
Runs the code on PYTHONPATH, so the file can time another checkout:
`cd ../before && PYTHONPATH=$PWD .venv/bin/python /path/to/bench/upsert_stages_bench.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.getcwd())

from bench.broker_bench import air_quality
from broker.http import check_limits
from broker.service.batch import BatchService
from broker.store import open_store
from broker.temporal.model import rows_of_change
from broker.temporal.runtime import open_history
from models.context import ContextResolver


async def run(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="stages-"))
    url = f"sqlite:///{data}/broker.db" if args.store == "sqlite" else args.store
    store = open_store(url)
    await store.open()
    history = open_history(store)
    await history.open()
    service = BatchService(store)
    ctx = ContextResolver().resolve(["https://smartdatamodels.org/context.jsonld"])
    try:
        n = args.entities
        cursor = 0
        for round_ in range(args.rounds):
            shift = 0 if args.same else round_
            bodies = [orjson.dumps([_moved(air_quality(i), shift) for i in range(s, min(n, s + 1000))])
                      for s in range(0, n, 1000)]
            t: dict[str, float] = dict.fromkeys(("parse", "limits", "normalize+stamps", "store write",
                                                 "log read", "history rows", "history write"), 0.0)
            gc.collect()
            for raw in bodies:
                c0 = time.process_time()
                body = orjson.loads(raw)
                c1 = time.process_time()
                check_limits(body)
                c2 = time.process_time()
                store_cpu = [0.0]
                real = store.upsert_replace

                async def timed(*a: Any, _real: Any = real, _cpu: list[float] = store_cpu, **k: Any) -> Any:
                    s0 = time.process_time()
                    try:
                        return await _real(*a, **k)
                    finally:
                        _cpu[0] += time.process_time() - s0

                store.upsert_replace = timed  # type: ignore[method-assign]
                await service.upsert("", body, ctx)
                store.upsert_replace = real  # type: ignore[method-assign]
                c3 = time.process_time()
                records = await store.changes_after(cursor, 1000)
                c4 = time.process_time()
                entities, rows = [], []
                for record in records:
                    e, r = rows_of_change(record)
                    entities.append(e)
                    rows.extend(r)
                c5 = time.process_time()
                await history.apply("temporal", records[-1].seq, entities, rows)
                c6 = time.process_time()
                cursor = records[-1].seq
                t["parse"] += c1 - c0
                t["limits"] += c2 - c1
                t["normalize+stamps"] += c3 - c2 - store_cpu[0]
                t["store write"] += store_cpu[0]
                t["log read"] += c4 - c3
                t["history rows"] += c5 - c4
                t["history write"] += c6 - c5
            total = sum(t.values())
            label = "create" if round_ == 0 else f"replace {round_}"
            print(f"{label:>10}: " + ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in t.items())
                  + f" | total {total / n * 1e6:.1f} us/entity", flush=True)
    finally:
        await history.close()
        await store.close()
        shutil.rmtree(data, ignore_errors=True)


def _moved(entity: dict[str, Any], shift: int) -> dict[str, Any]:
    """The entity `shift` hours later: new observedAt everywhere (a new reading of every attribute)."""
    if not shift:
        return entity
    text = orjson.dumps(entity).decode().replace("2026-11-26T", f"2026-11-{26 + shift:02d}T")
    return orjson.loads(text)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL (with ?schema=...)")
    parser.add_argument("--same", action="store_true", help="replace rounds send the same readings again")
    from metropole.gc_tuning import tune_for_serving

    tune_for_serving()  # as the broker runs
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
