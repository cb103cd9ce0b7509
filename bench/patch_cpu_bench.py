"""CPU per single-attribute PATCH inside the broker process, without sockets: the steadier figure on a shared machine.

    python -m bench.patch_cpu_bench [--requests 8000] [--clients 8] [--entities 1000] [--store sqlite|postgres]

Builds the broker app (`broker.app.create_app`, a SQLite store in a temporary
folder or a fresh schema of METROPOLE_BENCH_PG_DSN, its lifespan run: history
recorder, dispatcher and all), upserts
--entities AirQualityObserved entities, then --clients tasks send PATCH
/ngsi-ld/v1/entities/{id}/attrs/no2 (one Property, 204) as ASGI calls
straight into the app, ids in turn. Printed: CPU-microseconds per request
of the whole process (every thread: the event loop, the SQLite writer, the
history recorder's work, measured with time.process_time) and of the event
loop's thread alone (time.thread_time), and the requests/s.

No HTTP parsing or socket writes are counted (`bench.api_bench` has them),
and no load generator shares the process's CPU accounting, so on a machine
whose load comes and goes the figures move much less than api_bench's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.broker_bench import air_quality
from broker.app import create_app
from broker.settings import BrokerSettings

API = "/ngsi-ld/v1"
POSTGRES_DSN = os.environ.get("METROPOLE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
JSON_HEADERS = [(b"content-type", b"application/json")]


async def call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One HTTP request as an ASGI call; its status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-length", str(len(body)).encode()), *headers],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the app answers
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def measure(requests: int, clients: int, entities: int, store: str) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="patch-cpu-bench-"))
    schema = f"patch_cpu_bench_{os.getpid()}"
    try:
        url = f"sqlite:///{data / 'broker.db'}"
        if store == "postgres":
            url = POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"schema={schema}"
        settings = BrokerSettings(host="127.0.0.1", port=1, data_dir=data, store_url=url)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            for start in range(0, entities, 500):
                batch = [air_quality(i) for i in range(start, min(entities, start + 500))]
                status = await call(app, "POST", f"{API}/entityOperations/upsert", orjson.dumps(batch), JSON_HEADERS)
                assert status in (201, 204), status

            async def client(first: int, count: int) -> None:
                i = first
                for _ in range(count):
                    body = orjson.dumps({"type": "Property", "value": round(i * 0.1 % 100, 1)})
                    path = f"{API}/entities/urn:ngsi-ld:AirQualityObserved:bench-{i % entities:06d}/attrs/no2"
                    status = await call(app, "PATCH", path, body, JSON_HEADERS)
                    assert status == 204, status
                    i += clients

            await asyncio.gather(*(client(k, 200) for k in range(clients)))  # warm-up
            await asyncio.sleep(0.5)
            per_client = requests // clients
            cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
            await asyncio.gather(*(client(k, per_client) for k in range(clients)))
            await asyncio.sleep(0.3)  # the history recorder's next step (its CPU is the writes')
            cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
            wall = time.perf_counter() - wall
        done = per_client * clients
        return {"requests": done, "cpu_us": cpu / done * 1e6, "loop_us": loop_cpu / done * 1e6, "rps": done / wall}
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if store == "postgres":
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    r = asyncio.run(measure(args.requests, args.clients, args.entities, args.store))
    print(f"{'store':<8} {'requests':>8} {'clients':>7} {'CPU us/req':>11} {'loop thread us/req':>19} {'req/s':>7}")
    print(f"{args.store:<8} {r['requests']:>8,.0f} {args.clients:>7} {r['cpu_us']:>11.0f} {r['loop_us']:>19.0f} {r['rps']:>7,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
