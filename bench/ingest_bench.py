"""Benchmark of the IoT agent: devices -> real Mosquitto -> agent -> NGSI-LD broker.

    python -m bench.ingest_bench [--devices 50] [--rate 500] [--seconds 10] [--burst 20000]

Needs Mosquitto on 127.0.0.1:1883 (METROPOLE_TEST_MQTT_HOST/_PORT). Starts the
agent (`metropole agent`) in a subprocess, against two northbound targets:

- the embedded NGSI-LD broker (`metropole broker`, a subprocess);
- an instant NGSI-LD sink (a tiny HTTP server answering 204 at once), so the
  agent's own cost shows without the broker's.

For each: a fixed rate (N devices, R messages/s in all, S seconds) and flat
out (B messages as fast as paho publishes them at QoS 1). Prints messages/s
accepted (in the outbox), entity updates/s delivered, p50/p99 end-to-end
latency (publish -> entity visible in the broker, sampled by polling; the
sink has none), agent CPU (% of one core) and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.agents.procs import agent_process, broker_process, free_port  # noqa: E402

MQTT_HOST = os.environ.get("METROPOLE_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("METROPOLE_TEST_MQTT_PORT", "1883"))
SDM = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
TENANT = "bench"
CLK = os.sysconf("SC_CLK_TCK")


# -- the instant sink ---------------------------------------------------------------------

def _sink(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


# -- measuring the agent -------------------------------------------------------------------

class Agent:
    def __init__(self, proc: Any, prov: int) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{prov}"

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


def _publisher() -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    return client


class Watcher(threading.Thread):
    """Polls the broker for the devices' entities; the first time value i shows, latency = now - sent[i]."""

    def __init__(self, broker_url: str, sent: dict[tuple[str, int], float]) -> None:
        super().__init__(daemon=True)
        self.url, self.sent, self.latencies, self.stop = broker_url, sent, [], threading.Event()
        self.seen: dict[str, int] = {}

    def run(self) -> None:
        with httpx.Client(timeout=10, headers={"NGSILD-Tenant": TENANT, "Link": LINK}) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(f"{self.url}/ngsi-ld/v1/entities",
                                   params={"type": "AirQualityObserved", "options": "keyValues", "limit": "1000",
                                           "attrs": "no2"})
                except httpx.HTTPError:
                    continue
                now = time.time()
                if r.status_code == 200:
                    for e in r.json():
                        value = e.get("no2")
                        if isinstance(value, int) and self.seen.get(e["id"]) != value:
                            self.seen[e["id"]] = value
                            device = e["id"].rsplit(":", 1)[1]
                            t = self.sent.get((device, value))
                            if t is not None:
                                self.latencies.append(now - t)
                time.sleep(0.05)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def run_case(agent: Agent, apikey: str, devices: int, *, rate: float | None, total: int,
             broker_url: str | None) -> dict[str, Any]:
    sent: dict[tuple[str, int], float] = {}
    watcher = Watcher(broker_url, sent) if broker_url else None
    accepted0 = agent.metric("metropole_agent_intake_messages_total")
    delivered0 = agent.metric("metropole_agent_delivered_total")
    appended0 = agent.metric("metropole_agent_outbox_appended_total")
    cpu0 = agent.cpu_seconds()
    pub = _publisher()
    if watcher:
        watcher.start()
    t0 = time.time()
    infos = []
    for i in range(total):
        device = f"d{i % devices}"
        value = i // devices
        if rate:
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        sent[(device, value)] = time.time()
        payload = orjson.dumps({"no2": value, "TimeInstant": datetime.now(UTC).isoformat()})
        infos.append(pub.publish(f"/json/{apikey}/{device}/attrs", payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    published = time.time()
    # Wait until acceptance and delivery stop moving for 3 s; the rates use the time of the last change.
    # Mosquitto drops QoS 1 messages beyond max_queued_messages (default 1000) per client even while it is
    # connected, so a burst faster than the agent loses some at the MQTT broker, before the agent sees
    # them (the "lost" column): raise max_queued_messages in production.
    accepted = delivered = 0.0
    accepted_at = done = last_change = time.time()
    while time.time() - last_change < 3 and time.time() - t0 < 600:
        a = agent.metric("metropole_agent_intake_messages_total") - accepted0
        d = agent.metric("metropole_agent_delivered_total") - delivered0
        now = time.time()
        if a != accepted:
            accepted, accepted_at, last_change = a, now, now
        if d != delivered:
            delivered, done, last_change = d, now, now
        appended = agent.metric("metropole_agent_outbox_appended_total") - appended0
        if accepted >= total and appended and delivered >= appended:
            break
        time.sleep(0.05)
    if watcher:
        time.sleep(0.3)
        watcher.stop.set()
        watcher.join(5)
    pub.loop_stop()
    pub.disconnect()
    updates = delivered
    cpu = agent.cpu_seconds() - cpu0
    end = time.time()
    lat = watcher.latencies if watcher else []
    return {
        "published/s": total / max(1e-9, published - t0),
        "accepted/s": accepted / max(1e-9, accepted_at - t0),
        "lost": total - accepted,
        "updates delivered/s": updates / max(1e-9, done - t0),
        "msgs delivered/s": accepted / max(1e-9, done - t0),
        "p50 ms": _pct(lat, 0.5), "p99 ms": _pct(lat, 0.99), "samples": len(lat),
        "cpu %": 100 * cpu / max(1e-9, end - t0), "rss MB": agent.rss_mb(),
    }


def provision(agent: Agent, apikey: str, cbroker: str) -> None:
    r = httpx.post(f"{agent.url}/iot/services", headers={"fiware-service": TENANT, "fiware-servicepath": "/"},
                   json={"services": [{"apikey": apikey, "cbroker": cbroker, "entity_type": "AirQualityObserved",
                                       "resource": "/iot/json", "autoprovision": True}]}, timeout=10)
    r.raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=20000)
    parser.add_argument("--target", choices=("both", "broker", "sink"), default="both",
                        help="northbound targets to run: the embedded broker, the instant sink, or both (default)")
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="run the agent under pyinstrument and write its text report to FILE (one per target)")
    args = parser.parse_args()
    targets = {"both": ("embedded broker", "instant sink"), "broker": ("embedded broker",),
               "sink": ("instant sink",)}[args.target]
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    rows: list[tuple[str, str, dict[str, Any]]] = []
    try:
        for target in targets:
            sink = None
            broker = None
            if target == "embedded broker":
                broker = broker_process(tmp / "broker", log=tmp / "broker.log")
                broker.start()
                broker_url: str | None = broker.ready_url.removesuffix("/version")
                cbroker = broker_url
            else:
                port = free_port()
                sink = multiprocessing.Process(target=_sink, args=(port,), daemon=True)
                sink.start()
                broker_url, cbroker = None, f"http://127.0.0.1:{port}"
            tag = uuid.uuid4().hex[:8]
            proc, prov, _ = agent_process(tmp / f"agent-{tag}", cbroker or "", mqtt_port=MQTT_PORT,
                                          client_id=f"bench-agent-{tag}", log=tmp / f"agent-{tag}.log",
                                          extra_env={"METROPOLE_AGENT_MQTT_SESSION_EXPIRY": "60"})
            if args.profile:
                out = args.profile if len(targets) == 1 else f"{args.profile}.{target.split()[-1]}"
                proc.args[1:3] = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(Path(out).resolve()),
                                  "-m", "metropole"]
            proc.start()
            agent = Agent(proc.proc, prov)
            try:
                apikey = f"bench{tag}"
                provision(agent, apikey, cbroker)
                # warm-up: autoprovision the devices
                run_case(agent, apikey, args.devices, rate=None, total=args.devices, broker_url=None)
                fixed = int(args.rate * args.seconds)
                rows.append((target, f"{args.rate:.0f}/s x {args.seconds:.0f}s",
                             run_case(agent, apikey, args.devices, rate=args.rate, total=fixed, broker_url=broker_url)))
                rows.append((target, f"flat out {args.burst}",
                             run_case(agent, apikey, args.devices, rate=None, total=args.burst, broker_url=broker_url)))
            finally:
                proc.stop()
                if broker:
                    broker.stop()
                if sink:
                    sink.terminate()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = ["published/s", "accepted/s", "lost", "msgs delivered/s", "updates delivered/s", "p50 ms", "p99 ms", "samples", "cpu %", "rss MB"]
    print(f"\nIoT agent ingest, {args.devices} devices, MQTT QoS 1 via {MQTT_HOST}:{MQTT_PORT}"
          f" (an update per entity: AirQualityObserved + its Device)")
    print(f"{'target':<16} {'load':<16} " + " ".join(f"{c:>12}" for c in cols))
    for target, load, r in rows:
        print(f"{target:<16} {load:<16} " + " ".join(
            f"{r[c]:>12.0f}" if isinstance(r[c], (int, float)) and r[c] == r[c] else f"{'-':>12}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
