"""Single-request throughput of the broker's NGSI-LD API: GET by id and single-attribute PATCH, 8 keep-alive clients.

    python -m bench.api_bench [--seconds 10] [--clients 1,8] [--stores sqlite] [--entities 1000]
                              [--py-spy DIR] [--load python|wrk]

Starts `metropole broker` in a subprocess (as an operator runs it) on a fresh
store, upserts --entities AirQualityObserved entities, then for each client
count runs, for --seconds each:

- GET /ngsi-ld/v1/entities/{id} (200), ids in turn;
- PATCH /ngsi-ld/v1/entities/{id}/attrs/no2 with one Property (204), ids in turn.

Each client is a thread holding one keep-alive connection (http.client, the
lightest client the standard library has). Printed per row: requests/s, p50 and
p99 latency, and the broker process's CPU-seconds per 1,000 requests (utime +
stime from /proc, so the load generator's CPU is not counted). The generator
shares the machine's cores with the broker: compare rows of one run, or
before/after runs made back to back. Issue 16's targets are Orion-LD's
published 2-CPU figures: GET 7,700/s and PATCH 3,500/s with 8 clients.

--load wrk sends the same requests with wrk (Debian's package; one thread, one
connection per client) instead of Python threads: the Python client costs about as
much CPU per request as a cached GET costs the broker, so it takes a core from the
broker: with other work on the 2 cores it was the limit near 5,000-6,000 GET/s.
Orion-LD's figures were measured with a C load generator too.

--py-spy DIR records each phase of the broker with py-spy (raw collapsed stacks,
one file per phase) when py-spy is installed.
"""

from __future__ import annotations

import argparse
import http.client
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

import orjson

from bench.broker_bench import air_quality
from bench.procs import Managed, free_port

POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
API = "/ngsi-ld/v1"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _phase(port: int, op: str, clients: int, seconds: float, entities: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    errors: list[str] = []

    def client(n: int) -> None:
        own: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = n
        try:
            while time.perf_counter() < stop_at:
                path = f"{API}/entities/urn:ngsi-ld:AirQualityObserved:bench-{i % entities:06d}"
                t = time.perf_counter()
                if op == "GET":
                    conn.request("GET", path, headers={"Accept": "application/json"})
                    expected = 200
                else:
                    body = orjson.dumps({"type": "Property", "value": round(i * 0.1 % 100, 1)})
                    conn.request("PATCH", path + "/attrs/no2", body=body, headers={"Content-Type": "application/json"})
                    expected = 204
                r = conn.getresponse()
                r.read()
                own.append(time.perf_counter() - t)
                if r.status != expected:
                    errors.append(f"{op} {path}: {r.status}")
                    return
                i += clients
        finally:
            conn.close()
            with lock:
                latencies.extend(own)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError(errors[0])
    return len(latencies), latencies


WRK_SCRIPT = """
local n, i = %(entities)d, 0
request = function()
  i = i + 1
  local path = string.format("%(api)s/entities/urn:ngsi-ld:AirQualityObserved:bench-%%06d", i %% n)
  if "%(op)s" == "GET" then
    return wrk.format("GET", path, {["Accept"] = "application/json"})
  end
  local body = string.format('{"type":"Property","value":%%.1f}', (i * 0.1) %% 100)
  return wrk.format("PATCH", path .. "/attrs/no2", {["Content-Type"] = "application/json"}, body)
end
"""


def _wrk_phase(port: int, op: str, clients: int, seconds: float, entities: int) -> tuple[int, list[float]]:
    """The same requests sent by wrk (C, event-driven: a few µs of CPU per request against the Python
    client's ~100 µs, which under 8 threads is itself the limit near 5,000/s on 2 cores). Returns the count
    and wrk's latency percentiles (50 and 99, as a two-item list the caller indexes the same way)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"entities": entities, "api": API, "op": op})
    try:
        out = subprocess.run(["wrk", "-t", "1", "-c", str(clients), "-d", f"{max(1, round(seconds))}s", "--latency", "-s",
                              script.name, f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx or 3xx responses" in out:
        raise AssertionError(f"wrk: {op} answered other than 2xx:\n{out}")
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = {m[0]: _ms(m[1]) for m in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE)}
    return count, [pct["50"] / 1000, pct["99"] / 1000]


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)


def seed(port: int, entities: int) -> None:
    """`entities` AirQualityObserved entities upserted into the broker on `port`, 500 per request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for start in range(0, entities, 500):
        batch = [air_quality(i) for i in range(start, min(entities, start + 500))]
        conn.request("POST", f"{API}/entityOperations/upsert", body=orjson.dumps(batch),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status in (201, 204), r.status
    conn.close()


def measure(store: str, seconds: float, clients_list: list[int], entities: int, spy: Path | None,
            load: str = "python") -> list[dict[str, Any]]:
    data = Path(tempfile.mkdtemp(prefix=f"api-bench-{store}-"))
    port = free_port()
    args = [sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)]
    if store == "postgres":
        args += ["--store", POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"schema=api_bench_{os.getpid()}"]
    broker = Managed(args, f"http://127.0.0.1:{port}/version")
    broker.start()
    rows: list[dict[str, Any]] = []
    try:
        seed(port, entities)
        _phase(port, "GET", 8, 1.0, entities)  # warm-up: imports, caches, the store's pages
        _phase(port, "PATCH", 8, 1.0, entities)
        for clients in clients_list:
            for op in ("GET", "PATCH"):
                recorder = None
                if spy is not None and shutil.which("py-spy"):
                    spy.mkdir(parents=True, exist_ok=True)
                    out = spy / f"{store}-{op}-{clients}.txt"
                    recorder = subprocess.Popen(["py-spy", "record", "--pid", str(broker.pid), "--format", "raw",
                                                 "--rate", "250", "--output", str(out), "--nonblocking"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                cpu = cpu_seconds(broker.pid)
                started = time.perf_counter()
                if load == "wrk":
                    count, latencies = _wrk_phase(port, op, clients, seconds, entities)
                    p50, p99 = latencies
                else:
                    count, latencies = _phase(port, op, clients, seconds, entities)
                    latencies.sort()
                    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds(broker.pid) - cpu
                if recorder is not None:
                    recorder.send_signal(2)
                    recorder.wait(timeout=30)
                rows.append({"store": store, "op": op, "clients": clients, "rps": count / elapsed,
                             "p50": p50 * 1000, "p99": p99 * 1000,
                             "cpu_per_1k": cpu / count * 1000, "cpu_share": cpu / elapsed})
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)
        if store == "postgres":  # the run's own schema (its entities, log and history) goes with it, as broker_bench's
            subprocess.run(["psql", POSTGRES_DSN, "-qc", f"DROP SCHEMA IF EXISTS api_bench_{os.getpid()} CASCADE"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--py-spy", type=Path, default=None, help="record each phase with py-spy into this folder")
    parser.add_argument("--load", choices=("python", "wrk"), default="python",
                        help="the load generator: Python threads (default) or wrk (Debian's wrk package)")
    args = parser.parse_args()
    if args.load == "wrk" and not shutil.which("wrk"):
        parser.error("--load wrk needs the wrk binary (apt-get install wrk)")
    clients = [int(c) for c in args.clients.split(",")]
    rows = [row for store in args.stores.split(",") for row in measure(store, args.seconds, clients, args.entities,
                                                                       args.py_spy, args.load)]
    print(f"{'store':<9} {'request':<8} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'broker CPU-s/1k':>16} {'broker CPU %':>13}")
    for r in rows:
        print(f"{r['store']:<9} {r['op']:<8} {r['clients']:>7} {r['rps']:>8,.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{r['cpu_per_1k']:>16.3f} {r['cpu_share'] * 100:>12.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
