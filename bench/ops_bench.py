"""What the operational layers cost on the broker's hot paths: GET by id and batch upsert.

    python -m bench.ops_bench [--seconds 5] [--entities 20000]

Runs the broker (SQLite, in a subprocess, as `metropole broker` runs it)
in four variants and prints one table:

- bare: no HTTP metrics, no store timings, no access log, authentication off;
- metrics: Prometheus request counters/latencies (web/metrics.py) and store timings (broker/ops.py), the default;
- metrics + access log: METROPOLE_ACCESS_LOG=on, the log written to a file;
- metrics + API key: authentication on, each request with an X-API-Key.

GET by id: 8 concurrent keep-alive clients for --seconds, requests/s and
p50/p99; batch upsert: --entities in batches of 500, entities/s. The load
generator shares the two cores with the broker, so compare the rows of one
run with each other, not with other machines.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.broker_bench import air_quality

VARIANTS = ("bare", "metrics", "metrics+accesslog", "metrics+apikey")


def _serve(variant: str, port: int, data: str) -> None:
    """The broker process of one variant (run with --serve)."""
    import logging

    import uvicorn

    import broker.ops
    from broker.app import create_app
    from broker.settings import BrokerSettings
    from web.access_log import AccessLog
    from web.metrics import HttpMetrics

    if variant == "bare":
        broker.ops.instrument_store = lambda store: None
    if variant == "metrics+accesslog":
        logging.basicConfig(filename=os.path.join(data, "access.log"), level=logging.INFO)
    app = create_app(BrokerSettings(host="127.0.0.1", port=port, data_dir=Path(data)))
    if variant == "bare":
        dropped: tuple[Any, ...] = (HttpMetrics, AccessLog)
        app.user_middleware = [m for m in app.user_middleware if m.cls not in dropped]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(variant: str, seconds: float, entities: int) -> dict[str, Any]:
    port = _free_port()
    data = tempfile.mkdtemp(prefix=f"ops-bench-{variant}-")
    env = {**os.environ, "METROPOLE_ACCESS_LOG": "on" if "accesslog" in variant else "off"}
    headers: dict[str, str] = {}
    if variant == "metrics+apikey":
        from web.auth.apikeys import key_line, new_key

        key = new_key()
        Path(data, "keys").write_text(key_line("bench", key, ["*:admin"]) + "\n")
        env["METROPOLE_AUTH_API_KEYS"] = str(Path(data, "keys"))
        headers["X-API-Key"] = key
    proc = subprocess.Popen([sys.executable, "-m", "bench.ops_bench", "--serve", variant, str(port), data], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with httpx.Client(base_url=base, headers={**headers, "Content-Type": "application/json"}, timeout=60) as c:
            started = time.perf_counter()
            for start in range(0, entities, 500):
                batch = [air_quality(i) for i in range(start, min(entities, start + 500))]
                r = c.post("/ngsi-ld/v1/entityOperations/upsert", json=batch)
                assert r.status_code in (201, 204), r.text
            upsert = entities / (time.perf_counter() - started)
        latencies: list[float] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def client(n: int) -> None:
            own: list[float] = []
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                i = n
                while time.perf_counter() < stop_at:
                    t = time.perf_counter()
                    r = c.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:bench-{i % entities:06d}")
                    own.append(time.perf_counter() - t)
                    assert r.status_code == 200
                    i += 8
            with lock:
                latencies.extend(own)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latencies.sort()
        return {"variant": variant, "upsert": upsert, "rps": len(latencies) / seconds,
                "p50": statistics.median(latencies) * 1000, "p99": latencies[int(len(latencies) * 0.99)] * 1000}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def micro(n: int = 20_000) -> list[tuple[str, float]]:
    """CPU microseconds per request each layer adds, in-process (no sockets, no other load's noise)."""
    import asyncio
    import logging

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    import broker.ops
    from web.access_log import AccessLog
    from web.auth import Authenticate, Authenticator
    from web.auth.apikeys import ApiKeys, key_line, new_key
    from web.auth.policy import BROKER
    from web.metrics import HttpMetrics

    async def entity(request: Any) -> Response:
        return Response(b"{}", media_type="application/json")

    key = new_key()
    keys = ApiKeys.parse(key_line("bench", key, ["*:admin"]))
    logging.getLogger("metropole.access").addHandler(logging.FileHandler(os.devnull))
    logging.getLogger("metropole.access").setLevel(logging.INFO)
    logging.getLogger("metropole.access").propagate = False

    def app(*layers: str) -> Any:
        inner: Any = Starlette(routes=[Route("/ngsi-ld/v1/entities/{entity_id}", entity)])
        if "auth" in layers:
            inner = Authenticate(inner, authenticator=Authenticator(True, keys), policy=BROKER)
        if "metrics" in layers:
            inner = HttpMetrics(inner, server="bench")
        if "accesslog" in layers:
            inner = AccessLog(inner, enabled=True)
        return inner

    scope = {"type": "http", "method": "GET", "path": "/ngsi-ld/v1/entities/urn:ngsi-ld:X:1", "raw_path": b"",
             "query_string": b"", "headers": [(b"x-api-key", key.encode()), (b"ngsild-tenant", b"aix")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "scheme": "http", "root_path": ""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def timed(asgi: Any) -> float:
        for _ in range(1000):
            await asgi(dict(scope), receive, send)
        started = time.process_time()
        for _ in range(n):
            await asgi(dict(scope), receive, send)
        return (time.process_time() - started) / n * 1e6

    class Store:
        async def get(self, tenant: str, entity_id: str) -> None:
            return None

    async def store_call(instrumented: bool) -> float:
        store = Store()
        if instrumented:
            broker.ops.instrument_store(store)
        started = time.process_time()
        for _ in range(n):
            await store.get("", "x")
        return (time.process_time() - started) / n * 1e6

    async def run() -> list[tuple[str, float]]:
        bare = await timed(app())
        rows = [("route alone", bare)]
        for layers in (("metrics",), ("accesslog",), ("auth",), ("metrics", "accesslog", "auth")):
            rows.append(("+ " + " + ".join(layers), await timed(app(*layers)) - bare))
        plain = await store_call(False)
        rows.append(("store call timing", await store_call(True) - plain))
        return rows

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--micro-only", action="store_true", help="only the in-process costs")
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "PORT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    print(f"{'in-process, CPU per request':<34} {'us':>8}")
    for name, us in micro():
        print(f"{name:<34} {us:>8.1f}")
    if args.micro_only:
        return 0
    rows = [_measure(v, args.seconds, args.entities) for v in args.variants.split(",")]
    print(f"\n{'variant':<20} {'batch upsert ent/s':>19} {'GET by id req/s (8 clients)':>28} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['variant']:<20} {r['upsert']:>19,.0f} {r['rps']:>28,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
