"""Benchmark: does one group's dead broker slow another group's delivery?

    python -m bench.isolation_bench [--rate 200] [--seconds 10] [--timeout 10]

Delivery (agents.delivery) runs in this process over a real outbox file. Two
targets: a live NGSI-LD sink (a subprocess answering 204 at once, recording
when each measure arrived) and, in the second case, a dead broker (a socket
that accepts connections and never answers, so each request waits for the
client's --timeout). Measures are appended at --rate per second, half to each
target in the second case; the table gives the live target's latency from
append to arrival.

    target            the case
    measures          live measures that arrived
    p50 / p99 ms      append -> arrival at the live sink
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from adapters.ngsild import NgsiLdClient
from adapters.outbox import Outbox, OutboxItem
from agents.delivery import Delivery, DeliveryOptions

CONTEXT = ("https://smartdatamodels.org/context.jsonld",)


def _sink(port_out: Any, arrivals: Any, stop: Any) -> None:
    """A live broker: 204 at once, each measure's arrival time recorded."""
    seen: dict[int, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            now = time.time()
            for entity in body:
                seen[int(entity["n"]["value"])] = now
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.timeout = 0.2
    while not stop.is_set():
        server.handle_request()
    arrivals.put(seen)


def _row(target: str, device: str, n: int) -> OutboxItem:
    return OutboxItem(target, "bench", CONTEXT, device,
                      {"id": f"urn:ngsi-ld:Thing:{device}", "type": "Thing", "n": {"type": "Property", "value": n}},
                      time.time())


async def _case(live: str, dead: str | None, rate: float, seconds: float, timeout: float) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="isolation-bench-"))
    outbox = Outbox(folder / "outbox.db", synchronous="NORMAL")
    delivery = Delivery(outbox, NgsiLdClient(live, timeout=timeout), options=DeliveryOptions(),
                        client_factory=lambda url: NgsiLdClient(url, timeout=timeout))
    task = asyncio.create_task(delivery.run())
    sent: dict[int, float] = {}
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        n += 1
        sent[n] = time.time()
        rows = [_row(live, f"live{n % 20}", n)]
        if dead is not None:
            rows.append(_row(dead, f"dead{n % 20}", -n))
        await asyncio.to_thread(outbox.append, rows)
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    await asyncio.sleep(2.0)  # what is in flight arrives (a bench: waiting a fixed time is fine here)
    delivery.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    outbox.close()
    return [sent[k] for k in sorted(sent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="live measures per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per NGSI-LD request (BROKER_TIMEOUT)")
    args = parser.parse_args()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
    print(f"delivery isolation: {args.rate:.0f} live measures/s for {args.seconds:.0f} s, request timeout {args.timeout} s")
    print(f"{'case':<28}{'measures':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, with_dead in (("live broker alone", False), ("live + a dead broker", True)):
        ports: Any = multiprocessing.Queue()
        arrivals: Any = multiprocessing.Queue()
        stop = multiprocessing.Event()
        sink = multiprocessing.Process(target=_sink, args=(ports, arrivals, stop), daemon=True)
        sink.start()
        live_url = f"http://127.0.0.1:{ports.get(timeout=10)}"
        sent = asyncio.run(_case(live_url, dead_url if with_dead else None, args.rate, args.seconds, args.timeout))
        stop.set()
        seen: dict[int, float] = arrivals.get(timeout=10)
        sink.join(10)
        latencies = sorted((seen[n] - at) * 1000 for n, at in enumerate(sent, 1) if n in seen)
        if latencies:
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"{name:<28}{len(latencies):>10}{statistics.median(latencies):>10.1f}{p99:>10.1f}")
        else:
            print(f"{name:<28}{0:>10}{'-':>10}{'-':>10}")
    dead.close()


if __name__ == "__main__":
    main()
