"""Benchmark of the embedded NGSI-LD broker over HTTP, on SQLite and PostgreSQL.

    python -m bench.broker_bench [--entities 100000] [--stores sqlite,postgres] [--upsert-only] [--repeat 1] [--settle]

Starts `metropole broker` in a subprocess per store (the broker, its
database and this load generator share the machine's cores, as they would
on one small server) and prints one table:

- batch upsert of N AirQualityObserved entities (1,000 per request), entities/s, the broker's
  CPU-seconds per 1,000 entities (all its threads, from /proc: steadier than rates on a shared machine)
  and the KB it wrote per entity (`wchar` of /proc/<pid>/io: every write and pwrite call, so on SQLite
  the WAL frames and the checkpoints' copies of them, whatever the page cache later does with them; on
  PostgreSQL only the broker's own writes, not the server's);
  with `--repeat R`, R more rounds upserting the same N ids again (replacements), reported the same way;
  with `--settle`, each round ends once history holds all of it (the recorder follows the change log
  behind the writes: without it a round's figures leave out the rows still to record, and the next
  round's include them);
- GET /entities/{id}: p50/p99 latency, sequential, and requests/s with 8 concurrent clients;
- query by type + q over the N entities (latency of the first page, and with count=true);
- a `near` geo-query around Marseille's Vieux-Port.

`--upsert-only` stops after the upserts. The broker runs the code on PYTHONPATH, so a before/after
pair can run this file against another checkout:
`cd ../before && PYTHONPATH=$PWD python /path/to/bench/broker_bench.py --upsert-only`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.procs import free_port

POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
CONTEXT = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


AQO_ID = "urn:ngsi-ld:AirQualityObserved:bench-{:06d}"


def air_quality(i: int) -> dict[str, Any]:
    """One ~1 KB AirQualityObserved entity somewhere in the metropolis."""
    rnd = random.Random(i)
    lng, lat = 5.0 + rnd.random() * 0.8, 43.2 + rnd.random() * 0.5
    observed = f"2026-11-26T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z"

    def prop(v: Any, unit: str | None = None) -> dict[str, Any]:
        return {"type": "Property", "value": v, "observedAt": observed, **({"unitCode": unit} if unit else {})}

    return {
        "id": AQO_ID.format(i),
        "type": "AirQualityObserved",
        "dateObserved": {"type": "Property", "value": observed},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round(lng, 6), round(lat, 6)]}},
        "no2": prop(round(rnd.uniform(5, 120), 1), "GQ"),
        "o3": prop(round(rnd.uniform(10, 180), 1), "GQ"),
        "pm10": prop(round(rnd.uniform(2, 80), 1), "GQ"),
        "pm25": prop(round(rnd.uniform(1, 50), 1), "GQ"),
        "temperature": prop(round(rnd.uniform(-2, 38), 1), "CEL"),
        "relativeHumidity": prop(round(rnd.uniform(0.2, 0.95), 2), "P1"),
        "airQualityIndex": prop(rnd.randrange(1, 7)),
        "reliability": prop(0.9),
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:bench-{i:06d}"},
    }


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _written(pid: int) -> int:
    """Bytes a process handed to write calls so far (`wchar` of /proc/<pid>/io; 0 when not readable)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _start_broker(store: str, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)]
    if store == "postgres":
        args += ["--store", POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"schema=bench_{os.getpid()}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "METROPOLE_LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
    deadline = time.monotonic() + 120  # a loaded shared machine can take a minute to start it
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/types", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the broker on {store} did not start")


def _sequential_gets(base: str, ids: list[str], count: int) -> list[float]:
    url = httpx.URL(base)
    conn = http.client.HTTPConnection(url.host, url.port, timeout=10)
    rnd = random.Random(1)
    samples = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", f"{url.path}/entities/{rnd.choice(ids)}", headers={"Link": LINK})
            response = conn.getresponse()
            response.read()
            samples.append(time.perf_counter() - t0)
            assert response.status == 200
    finally:
        conn.close()
    return samples


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def _concurrent_gets(base: str, ids: list[str], workers: int, seconds: float) -> float:
    """Requests/s of `workers` keep-alive clients in threads, each GETting random ids for `seconds`."""
    url = httpx.URL(base)
    counts = [0] * workers
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(url.host, url.port, timeout=10)
        rnd = random.Random(k)
        try:
            while time.perf_counter() < stop:
                conn.request("GET", f"{url.path}/entities/{rnd.choice(ids)}", headers={"Link": LINK})
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                counts[k] += 1
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def run_store(store: str, n: int, *, upsert_only: bool = False, repeat: int = 0, settle: bool = False) -> dict[str, str]:
    """Load n entities into a fresh broker on `store` and measure; returns the table row."""
    data = Path(tempfile.mkdtemp(prefix=f"bench-{store}-"))
    proc, base = _start_broker(store, data)
    row: dict[str, str] = {"store": store}
    try:
        with httpx.Client(base_url=base, headers={"Link": LINK}, timeout=120) as client:
            batches = [orjson.dumps([air_quality(i) for i in range(s, min(n, s + 1000))]) for s in range(0, n, 1000)]
            for round_ in range(1 + repeat):
                cpu, written, start = _cpu_seconds(proc.pid), _written(proc.pid), time.perf_counter()
                for body in batches:
                    r = client.post("/entityOperations/upsert", content=body, headers={"Content-Type": "application/json"})
                    assert r.status_code in (201, 204), r.text[:300]
                if settle:
                    # a temporal read applies the history backlog first (read-your-writes): the CPU read
                    # after it includes every history row of the round, not only those made so far
                    for _ in range(20):  # each read gives up after 30 s of backlog (500): ask again
                        r = client.get(f"/temporal/entities/{AQO_ID.format(n - 1)}", params={"lastN": "1"})
                        if r.status_code != 500:
                            break
                    assert r.status_code == 200, r.text[:300]
                label = "upsert" if round_ == 0 else f"re-upsert {round_}"
                row[f"{label} ent/s"] = f"{n / (time.perf_counter() - start):,.0f}"
                row[f"{label} CPU-s/1k"] = f"{(_cpu_seconds(proc.pid) - cpu) / n * 1000:.3f}"
                row[f"{label} KB/ent"] = f"{(_written(proc.pid) - written) / n / 1000:.1f}"
            if upsert_only:
                return row

            ids = [AQO_ID.format(i) for i in range(n)]
            # Latency with the stdlib's keep-alive client: httpx 0.23 (pinned by
            # ngsildclient) adds about a millisecond per request of its own.
            lat = _sequential_gets(base, ids, 5000)
            row["GET p50 ms"] = f"{_pct(lat, 0.5):.2f}"
            row["GET p99 ms"] = f"{_pct(lat, 0.99):.2f}"
            row["GET req/s (8 conc)"] = f"{_concurrent_gets(base, ids, 8, 5.0):,.0f}"

            def timed(params: dict[str, str], reps: int = 5) -> float:
                samples = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    r = client.get("/entities", params=params)
                    samples.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:300]
                return statistics.median(samples) * 1000

            row["type+q ms"] = f"{timed({'type': 'AirQualityObserved', 'q': 'no2>100;pm10<40'}):.0f}"
            row["type+q+count ms"] = f"{timed({'type': 'AirQualityObserved', 'q': 'no2>100', 'count': 'true'}):.0f}"
            row["near 500 m ms"] = f"{timed({'type': 'AirQualityObserved', 'georel': 'near;maxDistance==500', 'geometry': 'Point', 'coordinates': '[5.3698,43.2951]'}):.0f}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)
        if store == "postgres":  # each run made a schema of its own: 20,000 entities and their history each
            subprocess.run(["psql", POSTGRES_DSN, "-qc", f"DROP SCHEMA IF EXISTS bench_{os.getpid()} CASCADE"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--upsert-only", action="store_true", help="stop after the upserts")
    parser.add_argument("--repeat", type=int, default=0, help="rounds upserting the same entities again")
    parser.add_argument("--settle", action="store_true",
                        help="end each round's timing once history has recorded it (a temporal read: read-your-writes)")
    args = parser.parse_args(argv)
    rows = []
    for store in args.stores.split(","):
        rows.append(run_store(store, args.entities, upsert_only=args.upsert_only, repeat=args.repeat,
                              settle=args.settle))
        print(rows[-1], file=sys.stderr, flush=True)  # each store's row as soon as it is measured
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    print(f"embedded broker, {args.entities:,} AirQualityObserved entities, {os.cpu_count()} cores shared with the client")
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r[c].rjust(w) for c, w in zip(cols, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
