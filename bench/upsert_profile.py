"""Profile the broker's batch upsert with py-spy: per-entity microseconds by stage.

    python -m bench.upsert_profile [--store sqlite|postgres] [--entities 20000] [--rounds 2] [--out DIR]

Starts `metropole broker` (the code on PYTHONPATH) like broker_bench, attaches
`py-spy record --nonblocking -r 500 --format raw` to it, upserts N entities
(1,000 per request) `--rounds` times (the first creates, the next replace),
waits for history to settle, and prints the samples of each stage (a frame
pattern matched from the innermost frame outward) as microseconds per entity.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.broker_bench import AQO_ID, LINK, _cpu_seconds, _start_broker, air_quality

# (stage, substrings of a frame "function (file)"); the first stage in this order with a pattern matching
# any frame of the sample's stack takes it (history's statements go through broker/store/sqlite_rows.py:
# history first; a request's stack holds api, service, models and store frames: the innermost part first)
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("history (recorder, rows, rollups)", ("broker/temporal/",)),
    ("notifications", ("broker/subscriptions/",)),
    ("store write (sql, doc encode)", ("broker/store/",)),
    ("expansion / validation", ("models/",)),
    ("batch service", ("broker/service/",)),
    ("body parse / http / api", ("broker/api/", "broker/http.py", "broker/body_limits.py")),
    ("uvicorn / starlette / asyncio", ("uvicorn/", "starlette/", "fastapi/", "asyncio/", "h11")),
]


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for stage, pats in STAGES:
        if any(p in frame for frame in frames for p in pats):
            return stage
    if any("SQLiteThread._alone" in f or "SQLiteThread._group" in f for f in frames[-1:]):
        return "writer: BEGIN / COMMIT (WAL writes)"
    if any("_checkpoint" in f for f in frames[-1:]):
        return "writer: idle checkpoint"
    return "other (idle, threads, gc)"


def table(raw: Path, rate: int, n: int, cpu_us: float) -> None:
    """Samples of `raw` by stage: the share of the busy samples, and that share of the measured CPU per entity
    (py-spy's busy samples count a thread that waits for the GIL or the disk: the shares, not the sampled
    microseconds, are the figure to read on a loaded host)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        counts[stage_of(stack)] += int(count)
        total += int(count)
    print(f"{total} busy samples ({total / rate / n * 1e6:.0f} us/entity sampled, CPU measured {cpu_us:.0f})")
    for stage, c in counts.most_common():
        print(f"  {stage:<40} {100 * c / max(total, 1):5.1f} %  {cpu_us * c / max(total, 1):6.1f} us/entity of CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=tempfile.gettempdir())
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--raw", help="only tabulate this py-spy raw file (with --cpu-us, the CPU per entity measured)")
    parser.add_argument("--cpu-us", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.raw:
        table(Path(args.raw), args.rate, args.entities * args.rounds, args.cpu_us)
        return 0
    data = Path(tempfile.mkdtemp(prefix=f"prof-{args.store}-"))
    proc, base = _start_broker(args.store, data)
    out = Path(args.out) / f"upsert-{args.store}.raw"
    batches = [orjson.dumps([air_quality(i) for i in range(s, min(args.entities, s + 1000))])
               for s in range(0, args.entities, 1000)]
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "-r", str(args.rate),
                            "--format", "raw", "-o", str(out), "--pid", str(proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    try:
        with httpx.Client(base_url=base, headers={"Link": LINK}, timeout=120) as client:
            cpu, start = _cpu_seconds(proc.pid), time.perf_counter()
            for _ in range(args.rounds):
                for body in batches:
                    r = client.post("/entityOperations/upsert", content=body, headers={"Content-Type": "application/json"})
                    assert r.status_code in (201, 204), r.text[:300]
            for _ in range(20):
                r = client.get(f"/temporal/entities/{AQO_ID.format(args.entities - 1)}", params={"lastN": "1"})
                if r.status_code != 500:
                    break
            n = args.entities * args.rounds
            elapsed = time.perf_counter() - start
            cpu_s = _cpu_seconds(proc.pid) - cpu
    finally:
        spy.send_signal(2)
        spy.wait(timeout=60)
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)
        if args.store == "postgres":
            from bench.broker_bench import POSTGRES_DSN
            subprocess.run(["psql", POSTGRES_DSN, "-qc", f"DROP SCHEMA IF EXISTS bench_{os.getpid()} CASCADE"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = args.entities * args.rounds
    print(f"{args.store}: {n:,} entities, {n / elapsed:,.0f} ent/s, CPU {cpu_s / n * 1e6:.0f} us/entity; raw stacks {out}")
    table(out, args.rate, n, cpu_s / n * 1e6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
