"""Benchmark of the agent's durable outbox (adapters.outbox): what one `lease` costs on a deep outbox.

    python -m bench.outbox_bench [--rows 100000] [--due 1000] [--page 2000] [--repeat 30]

Each case fills a fresh outbox (a SQLite file in a temporary folder), then
leases one page `--repeat` times, releasing the page (delay 0) after each
lease so the next one finds the same rows, and prints the median CPU time of
one `lease` call (thread CPU, steadier than wall-clock on a shared machine)
and its wall time. The cases:

    deep, all due          --rows due rows of 50 devices; the page is the oldest rows (the usual case)
    other target's backlog --rows rows of a broker that is down (its lane backs off: its head page
                           released with a delay), --due rows of a healthy broker behind them;
                           the healthy lane leases (`target=`)
    blocked device backlog --rows rows of one gateway device whose head row backs off, --due rows of
                           50 other devices behind them, same broker
    delivered, then due    --rows rows appended, leased and acked (delivered rows are deleted),
                           then --due rows: the outbox keeps no delivered rows

It also prints the append cost (CPU-seconds per 100,000 rows appended in
transactions of 2,000; every index is written on append) and the file's
size, and the EXPLAIN QUERY PLAN of the lease statements as run (captured
with a trace callback, so it shows whatever `Outbox.lease` executes).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from adapters.outbox import Leased, Outbox, OutboxItem

CONTEXT = ("https://smartdatamodels.org/context.jsonld",)


def _item(target: str, device: str, n: int) -> OutboxItem:
    # About the size of a mapped measure: an AirQualityObserved with a few attributes.
    entity = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{device}-{n % 10}", "type": "AirQualityObserved",
        "no2": {"type": "Property", "value": n * 0.5, "unitCode": "GQ", "observedAt": "2026-12-06T06:00:00Z"},
        "pm10": {"type": "Property", "value": n * 0.25, "unitCode": "GQ", "observedAt": "2026-12-06T06:00:00Z"},
        "temperature": {"type": "Property", "value": 12.5, "unitCode": "CEL", "observedAt": "2026-12-06T06:00:00Z"},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{device}"},
    }
    return OutboxItem(target, "", CONTEXT, device, entity, time.time())


def _fill(box: Outbox, items: list[OutboxItem], chunk: int = 2000) -> float:
    """Append in transactions of `chunk`; the CPU-seconds it took."""
    start = time.thread_time()
    for i in range(0, len(items), chunk):
        box.append(items[i:i + chunk])
    return time.thread_time() - start


def _measure(box: Outbox, lease: Callable[[], list[Leased]], repeat: int) -> tuple[float, float, int]:
    """Median CPU and wall milliseconds of one lease; rows per lease."""
    cpu: list[float] = []
    wall: list[float] = []
    got = 0
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        rows = lease()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        got = len(rows)
        box.release([r.seq for r in rows])
    return statistics.median(cpu) * 1000, statistics.median(wall) * 1000, got


def _plans(box: Outbox, lease: Callable[[], list[Leased]]) -> list[str]:
    """EXPLAIN QUERY PLAN of the SELECT statements `lease` runs on the outbox's reader connection."""
    seen: list[str] = []
    reader: sqlite3.Connection = box._reader
    reader.set_trace_callback(lambda sql: seen.append(sql) if sql.lstrip().upper().startswith("SELECT") else None)
    try:
        rows = lease()
        box.release([r.seq for r in rows])
    finally:
        reader.set_trace_callback(None)
    plans = []
    db = sqlite3.connect(box.path)
    try:
        for sql in seen:
            plan = db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            parents = {r[0]: r[1] for r in plan}
            lines = []
            for _node, parent, _, detail in plan:
                depth, up = 0, parent
                while up:
                    depth, up = depth + 1, parents.get(up, 0)
                lines.append("  " * depth + detail)
            plans.append("\n".join(lines))
    finally:
        db.close()
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--page", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--plans", action="store_true", help="print EXPLAIN QUERY PLAN of each case's lease")
    args = parser.parse_args()
    n, due, page = args.rows, args.due, args.page
    devices = [f"dev{i:03d}" for i in range(50)]
    results: list[tuple[str, float, float, int]] = []
    plans: dict[str, list[str]] = {}
    append_cpu = 0.0
    size_mb = 0.0

    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        # deep, all due
        box = Outbox(Path(tmp) / "deep.db", synchronous="NORMAL")
        append_cpu = _fill(box, [_item("", devices[i % 50], i) for i in range(n)])
        size_mb = box.path.stat().st_size / 1e6
        case = "deep, all due"
        plans[case] = _plans(box, lambda: box.lease(page, target=""))
        results.append((case, *_measure(box, lambda: box.lease(page, target=""), args.repeat)))
        box.close()

        # other target's backlog: the dead broker's head page backs off, the healthy lane leases
        box = Outbox(Path(tmp) / "targets.db", synchronous="NORMAL")
        _fill(box, [_item("http://down:1026", devices[i % 50], i) for i in range(n)])
        _fill(box, [_item("http://up:1026", f"up{i % 50:03d}", i) for i in range(due)])
        head = box.lease(page, target="http://down:1026")
        box.release([r.seq for r in head], delay=3600, error="broker away")
        case = "other target's backlog"
        plans[case] = _plans(box, lambda: box.lease(page, target="http://up:1026"))
        results.append((case, *_measure(box, lambda: box.lease(page, target="http://up:1026"), args.repeat)))
        box.close()

        # blocked device backlog: one gateway's head row backs off
        box = Outbox(Path(tmp) / "gateway.db", synchronous="NORMAL")
        _fill(box, [_item("", "gateway", i) for i in range(n)])
        _fill(box, [_item("", devices[i % 50], i) for i in range(due)])
        head = box.lease(1, target="")
        box.release([r.seq for r in head], delay=3600, error="entity refused")
        case = "blocked device backlog"
        plans[case] = _plans(box, lambda: box.lease(page, target=""))
        results.append((case, *_measure(box, lambda: box.lease(page, target=""), args.repeat)))
        box.close()

        # delivered, then due
        box = Outbox(Path(tmp) / "delivered.db", synchronous="NORMAL")
        _fill(box, [_item("", devices[i % 50], i) for i in range(n)])
        while rows := box.lease(10_000, target=""):
            box.ack([r.seq for r in rows])
        _fill(box, [_item("", devices[i % 50], i) for i in range(due)])
        case = "delivered, then due"
        plans[case] = _plans(box, lambda: box.lease(page, target=""))
        results.append((case, *_measure(box, lambda: box.lease(page, target=""), args.repeat)))
        box.close()

    print(f"\noutbox lease, {n:,} rows, {due:,} due where a case says, page {page:,}, median of {args.repeat}")
    print("| case | rows per lease | lease CPU ms | lease wall ms |\n|---|---|---|---|")
    for case, cpu_ms, wall_ms, got in results:
        print(f"| {case} | {got:,} | {cpu_ms:.2f} | {wall_ms:.2f} |")
    print(f"\nappend: {append_cpu / n * 100_000:.2f} CPU-s per 100,000 rows (2,000 a transaction); "
          f"file {size_mb:.1f} MB for {n:,} rows")
    if args.plans:
        for case, texts in plans.items():
            print(f"\n-- {case}: EXPLAIN QUERY PLAN")
            for text in texts:
                print(text)


if __name__ == "__main__":
    main()
