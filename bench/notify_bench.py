"""Benchmark of subscriptions: notifications delivered while entity updates are written at a fixed rate.

    python -m bench.notify_bench [--rate 1000] [--seconds 10] [--stores sqlite,postgres] [--subs 0,1,5]

Starts `metropole broker` in a subprocess per scenario, a local HTTP
notification receiver (a thread of this process), and a paced writer that
sends batch updates (`/entityOperations/upsert?options=update`, 20 entities
per request) from 4 threads, paced to 1,000 updates/s together. Each scenario
has N subscriptions on the updated type (every update notifies each of
them). Prints one table: updates/s actually written, write request
latency p50/p99 (the added latency is the difference to the row with 0
subscriptions), notifications and notified entities delivered per second
while writing, and how long the queue took to drain once writing stopped.
`METROPOLE_NOTIFY_MAX_BATCH` (the `batch` column) lets delivery merge a
backlog of one subscription into one notification.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 20
WRITERS = 4
ENTITIES = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Counts notifications and notified entities, with the time of each."""

    def __init__(self) -> None:
        self.notifications = 0
        self.entities = 0
        self.last = 0.0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.notifications += 1
                    owner.entities += len(body["data"])
                    owner.last = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _start_broker(store: str, data: Path, batch: int) -> tuple[subprocess.Popen[bytes], str, str | None]:
    port = _free_port()
    args = [sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)]
    schema = None
    if store == "postgres":
        schema = f"bench_notify_{os.getpid()}_{port}"
        args += ["--store", POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"schema={schema}"]
    env = {**os.environ, "METROPOLE_LOG_LEVEL": "WARNING", "METROPOLE_NOTIFY_MAX_BATCH": str(batch)}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/types", timeout=1)
            return proc, base, schema
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the broker on {store} did not start")


def _drop_schema(schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else float("nan")


def scenario(store: str, subs: int, batch: int, rate: int, seconds: float) -> dict[str, str]:
    """One broker, `subs` subscriptions, `rate` updates/s for `seconds`; the table row."""
    data = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    receiver = Receiver()
    proc, base, schema = _start_broker(store, data, batch)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            ids = [f"urn:ngsi-ld:Sensor:b{i:04d}" for i in range(ENTITIES)]
            client.post("/entityOperations/upsert", json=[
                {"id": i, "type": "Sensor", "n": {"type": "Property", "value": 0}} for i in ids])
            for _ in range(subs):
                r = client.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": "Sensor"}],
                                                        "notification": {"endpoint": {"uri": receiver.url}}})
                assert r.status_code == 201, r.text
            time.sleep(1.0)
            latencies: list[float] = []
            counts = [0] * WRITERS
            interval = BATCH * WRITERS / rate
            start = time.perf_counter()

            def writer(w: int) -> None:
                k = 0
                with httpx.Client(base_url=base, timeout=30) as conn:
                    while time.perf_counter() - start < seconds:
                        pause = start + (k + w / WRITERS) * interval - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                        first = (k * WRITERS + w) * BATCH
                        chunk = [{"id": ids[(first + j) % ENTITIES], "type": "Sensor",
                                  "n": {"type": "Property", "value": first + j + 1}} for j in range(BATCH)]
                        t0 = time.perf_counter()
                        r = conn.post("/entityOperations/upsert", params={"options": "update"}, json=chunk)
                        latencies.append(time.perf_counter() - t0)
                        assert r.status_code in (201, 204), r.text
                        counts[w] += BATCH
                        k += 1

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            written = sum(counts)
            elapsed = time.perf_counter() - start
            with receiver.lock:
                during_n, during_e = receiver.notifications, receiver.entities
            expected = written * subs
            deadline = time.perf_counter() + 120
            while receiver.entities < expected and time.perf_counter() < deadline:
                time.sleep(0.05)
            drain = max(0.0, receiver.last - (start + elapsed)) if subs else 0.0
        return {
            "store": store, "subs": str(subs), "batch": str(batch),
            "updates/s": f"{written / elapsed:,.0f}",
            "write p50 ms": f"{_pct(latencies, 0.5):.1f}", "write p99 ms": f"{_pct(latencies, 0.99):.1f}",
            "notif/s": f"{during_n / elapsed:,.0f}", "entities/s": f"{during_e / elapsed:,.0f}",
            "delivered": f"{receiver.entities:,}/{expected:,}", "drain s": f"{drain:.1f}",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        receiver.close()
        shutil.rmtree(data, ignore_errors=True)
        if schema is not None:
            _drop_schema(schema)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--subs", default="0,1,5")
    parser.add_argument("--batches", default="1,50")
    args = parser.parse_args(argv)
    rows = []
    for store in args.stores.split(","):
        for subs in (int(s) for s in args.subs.split(",")):
            for batch in (int(b) for b in args.batches.split(",")) if subs else (1,):
                rows.append(scenario(store, subs, batch, args.rate, args.seconds))
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
    headers = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r[h].rjust(w) for h, w in zip(headers, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
