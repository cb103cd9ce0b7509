"""Benchmark of QuantumLeap-compatible history ingest: POST /v2/notify into the embedded broker.

    python -m bench.ql_notify_bench [--stores sqlite,postgres] [--instances 4000] [--port 25100] [--profile DIR]
                                    [--load python|wrk] [--seconds 4]

Starts `metropole broker` in a subprocess per store and posts Orion-style
NGSI-v2 notifications (AirQualityObserved, TimeInstant and five measured
attributes, a new TimeInstant per notification) from 1 and 8 keep-alive
clients, with 1 and 100 entities per notification, as the issue's harness
does. Prints notifications/s and instances/s (wall) and, the figure that
survives a shared machine, the broker process's CPU-milliseconds per
instance (utime + stime from /proc/<pid>/stat, PostgreSQL's own CPU not
included). `--profile DIR` records each case with py-spy (if on PATH) into
DIR as a speedscope file.

`--load wrk` sends the single-entity notifications with wrk instead (the same bodies, made by a Lua
script; C and event-driven, a few µs of CPU a request against the Python client's few hundred, on the same
2 cores) for `--seconds` a case: it shows how much of the 1-client round trip is the client's. The
100-entity cases are not run then. Issue 16's table stays on the default Python client, the harness
QuantumLeap's figures were measured with.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port(wanted: int | None) -> int:
    """The first free port from `wanted` (any free port when None)."""
    if wanted is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for port in range(wanted, wanted + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {wanted}")


def start_broker(store: str, data: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    args = [sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)]
    if store == "postgres":
        args += ["--store", POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"schema=qlbench_{os.getpid()}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "METROPOLE_LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v2/version", timeout=1).status_code < 500:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the broker on {store} did not start")


def entity(n: int, seq: int) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
    return {
        "id": f"AirQualityObserved:{n:05d}", "type": "AirQualityObserved",
        "TimeInstant": {"type": "DateTime", "value": at},
        "no2": {"type": "Number", "value": 20 + (seq * 7 + n) % 50},
        "o3": {"type": "Number", "value": 40.5 + (seq + n) % 30},
        "pm10": {"type": "Number", "value": 12 + (seq * 3 + n) % 20},
        "pm25": {"type": "Number", "value": 6.25 + (seq + 2 * n) % 10},
        "temperature": {"type": "Number", "value": 11.5 + (seq % 10)},
    }


def post_all(base: str, clients: int, per_notification: int, notifications: int, offset: int) -> float:
    """Wall seconds to post `notifications` bodies of `per_notification` entities from `clients` keep-alive clients."""
    url = httpx.URL(base)
    failures: list[str] = []

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(url.host, url.port, timeout=60)
        try:
            for j in range(k, notifications, clients):
                seq = offset + j
                body = json.dumps({"subscriptionId": "bench", "data": [
                    entity((seq * per_notification + i) % 1000 if per_notification > 1 else seq % 1000, seq)
                    for i in range(per_notification)]})
                conn.request("POST", "/v2/notify", body, {"Content-Type": "application/json", "Fiware-Service": "bench"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"{response.status}")
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} notifications failed, first {failures[0]}")
    return time.perf_counter() - start


WRK_SCRIPT = """
local seq, t0 = %(offset)d, %(t0)d
request = function()
  seq = seq + 1
  local n = seq %% 1000
  local body = string.format('{"subscriptionId":"bench","data":[{"id":"AirQualityObserved:%%05d","type":"AirQualityObserved",'
    .. '"TimeInstant":{"type":"DateTime","value":"%%s"},"no2":{"type":"Number","value":%%d},'
    .. '"o3":{"type":"Number","value":%%.1f},"pm10":{"type":"Number","value":%%d},'
    .. '"pm25":{"type":"Number","value":%%.2f},"temperature":{"type":"Number","value":%%.1f}}]}',
    n, os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", t0 + seq), 20 + (seq * 7 + n) %% 50, 40.5 + (seq + n) %% 30,
    12 + (seq * 3 + n) %% 20, 6.25 + (seq + 2 * n) %% 10, 11.5 + seq %% 10)
  return wrk.format("POST", "/v2/notify", {["Content-Type"] = "application/json", ["Fiware-Service"] = "bench"}, body)
end
"""


def wrk_all(base: str, clients: int, seconds: float, offset: int) -> tuple[int, float]:
    """Single-entity notifications (entity()'s bodies, seq from `offset`) posted by wrk with `clients` connections
    for `seconds`; the count answered and the wall seconds. Any answer but 200 is an error."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"offset": offset, "t0": int(T0.timestamp())})
    try:
        start = time.perf_counter()
        out = subprocess.run(["wrk", "-t", "1", "-c", str(clients), "-d", f"{max(1, round(seconds))}s", "-s", script.name,
                              base], capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - start
    finally:
        os.unlink(script.name)
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk: notifications failed:\n{out}")
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    if found is None:
        raise RuntimeError(f"wrk: no request count in:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[found.group(3)]
    return int(found.group(1)), min(wall, float(found.group(2)) * scale)


@contextlib.contextmanager
def broker(store: str, port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `metropole broker` on a fresh store, warmed up: its process and base URL. Stopped after, its schema
    dropped."""
    with tempfile.TemporaryDirectory() as folder:
        proc, base = start_broker(store, Path(folder), port)
        try:
            post_all(base, 1, 10, 20, 10**6)  # warm up: contexts, tenant, statements
            yield proc, base
        finally:
            proc.terminate()
            proc.wait(30)
            if store == "postgres":
                subprocess.run(["psql", POSTGRES_DSN, "-qc", f"DROP SCHEMA IF EXISTS qlbench_{os.getpid()} CASCADE"],
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_wrk(store: str, seconds: float, port: int) -> list[tuple[str, float, float, float]]:
    """The single-entity cases with wrk as the client (see the module's doc)."""
    rows = []
    with broker(store, port) as (proc, base):
        offset = 0
        for clients in (1, 8):
            cpu0 = cpu_seconds(proc.pid)
            count, wall = wrk_all(base, clients, seconds, offset)
            cpu = cpu_seconds(proc.pid) - cpu0  # wrk's start and end inside it: a few ms of idle broker
            offset += count + 1000
            rows.append((f"1 entity/notification, {clients} client{'s' * (clients > 1)} (wrk)",
                         count / wall, count / wall, cpu * 1000 / count))
    return rows


def run_store(store: str, instances: int, port: int, profile: Path | None) -> list[tuple[str, float, float, float]]:
    rows = []
    with broker(store, port) as (proc, base):
        offset = 0
        for per in (1, 100):
            for clients in (1, 8):
                notifications = max(clients, instances // per)
                spy = None
                if profile is not None and shutil.which("py-spy"):
                    out = profile / f"notify-{store}-{per}x{clients}.speedscope.json"
                    spy = subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-f", "speedscope", "-o", str(out),
                                            "-r", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)
                cpu0 = cpu_seconds(proc.pid)
                wall = post_all(base, clients, per, notifications, offset)
                cpu = cpu_seconds(proc.pid) - cpu0
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                offset += notifications
                count = notifications * per
                rows.append((f"{per} entit{'y' if per == 1 else 'ies'}/notification, {clients} client{'s' * (clients > 1)}",
                             notifications / wall, count / wall, cpu * 1000 / count))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--instances", type=int, default=4000, help="entity instances per case")
    parser.add_argument("--port", type=int, default=None, help="first port to try for the broker (default: any free one)")
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy speedscope profiles")
    parser.add_argument("--load", choices=("python", "wrk"), default="python",
                        help="the client: Python http.client threads (default: the issue's harness) or wrk (single-entity cases)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per case with --load wrk")
    args = parser.parse_args()
    if args.load == "wrk" and not shutil.which("wrk"):
        parser.error("--load wrk needs the wrk binary (apt-get install wrk)")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print("POST /v2/notify, NGSI-v2 AirQualityObserved (TimeInstant + 5 numbers); broker CPU from /proc")
    print(f"{'store':<10}{'case':<42}{'notif/s':>10}{'inst/s':>10}{'CPU ms/inst':>13}")
    for store in args.stores.split(","):
        port = _port(args.port)
        rows = run_wrk(store, args.seconds, port) if args.load == "wrk" else run_store(store, args.instances, port, args.profile)
        for case, notif, inst, cpu in rows:
            print(f"{store:<10}{case:<42}{notif:>10,.0f}{inst:>10,.0f}{cpu:>13.2f}")


if __name__ == "__main__":
    main()
