"""Benchmark of the IoT agent: devices -> Mosquitto -> agent -> NGSI-LD broker.

    python -m bench.ingest_bench [--devices 50] [--rate 500] [--seconds 10] [--burst 20000]
                                 [--sustain 5000 --sustain-seconds 30] [--publishers 1]
                                 [--agent-cpus 0] [--mosquitto own|system] [--lorawan] [--batch-repeats N]
                                 [--target both|broker|sink] [--sink-delay MS]

Starts the agent (`metropole agent`) in a subprocess, against two northbound targets:

- the embedded NGSI-LD broker (`metropole broker`, a subprocess);
- an instant NGSI-LD sink (a tiny HTTP server answering 204 at once), so the
  agent's own cost shows without the broker's; with --sink-delay MS it answers
  each request after MS milliseconds, as a broker across a network would.

The devices are publisher processes (bench/mqtt_load.py: raw MQTT 3.1.1 at
QoS 1, packets encoded before the clock starts), fast enough not to be the
limit: check the published/s column. They publish to a Mosquitto of the
bench's own, one per target, with unbounded queues (`--mosquitto own`, the
default), or to METROPOLE_TEST_MQTT_HOST/_PORT (`--mosquitto system`, whose
default max_queued_messages of 1000 drops what waits beyond it for the agent).

The agent runs alone on the cores of --agent-cpus (default 0); everything
else (this process, the publishers, Mosquitto, the sink or the broker) runs on
the other cores, when there are any.

For each target: a fixed rate (N devices, R messages/s in all, S seconds),
flat out (B messages as fast as the publishers go), and with --sustain a
fixed rate held for --sustain-seconds, which tells whether the agent kept up.
With --lorawan the same cases run again with LoRaWAN devices: The Things
Stack v3 uplinks (a DL-PM frame in the documented envelope) published on
`v3/<app>@<tenant>/devices/<dev>/up`, to which the agent subscribes as to a
network server's broker (a LoRaWAN group: envelope, DevEUI lookup, the
decentlab/dl-pm codec, its profile). The Things Stack's MQTT server delivers
at QoS 0 only, and so does this case: there is no PUBACK from the agent, so
`lost` then counts what Mosquitto or the agent dropped.
Columns:

    published/s      messages PUBACKed by Mosquitto per second (the publishers' own rate)
    unacked          messages Mosquitto did not PUBACK
    accepted/s       messages accepted by the agent (committed to its outbox) per second
    lost             messages PUBACKed by Mosquitto but never accepted by the agent
    backlog@end      messages PUBACKed but not yet accepted when publishing ended
                     (waiting in Mosquitto or in flight to the agent)
    outbox@end       the agent's outbox depth (updates to deliver) when publishing ended
    outbox 1st/2nd half  its mean depth over the first and the second half of the run (sampled every 2 s):
                     flat when the second is no higher; a delivery that falls behind grows it all along
    outbox max       the deepest sample
    msgs/updates delivered/s   messages, and entity updates, delivered northbound per second
    p50/p99 ms       end-to-end latency (written to the socket -> entity value visible in the
                     broker, sampled by polling; the sink has none)
    cpu %, rss MB    agent CPU (% of one core, over the case) and peak RSS
    cpu s            agent CPU-seconds over the case (on a shared machine, steadier than the rates)
    broker cpu s     the embedded broker's CPU-seconds over the case (all its threads)
    cpu s/1k msgs    agent + broker CPU-seconds per 1,000 messages accepted (embedded broker only)
    pg cpu s, pg cpu s/1k    PostgreSQL's CPU-seconds over the case, and per 1,000 messages accepted:
                     the client backends of the broker's database (PostgreSQL store only, server on
                     this machine; give the bench a database of its own)

The broker's store is METROPOLE_BROKER_STORE (default SQLite in the bench's
temporary folder; e.g. postgresql://postgres@127.0.0.1:5432/<db>, a fresh
database). The agent runs with its defaults, so the Device entity's status
is coalesced per device (METROPOLE_AGENT_DEVICE_STATUS_INTERVAL, 10 s): a
measure is one entity update, plus a Device update per device and interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.mqtt_load import Load, LoadSpec, Mosquitto
from bench.procs import Managed, agent_process, broker_process, free_port
from storage.urls import parse_database_url

MQTT_HOST = os.environ.get("METROPOLE_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("METROPOLE_TEST_MQTT_PORT", "1883"))
SDM = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
TENANT = "bench"
CLK = os.sysconf("SC_CLK_TCK")


# -- the instant sink ---------------------------------------------------------------------

def _sink(port: int, delay: float = 0.0) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                if delay:  # a broker across a network, or one slow per request with room for more at once
                    await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


# -- measuring the agent -------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class PgBackends:
    """CPU-seconds of the PostgreSQL server processes serving the broker's database (METROPOLE_BROKER_STORE).

    The client backends connected to that database (pg_stat_activity), read from /proc: PostgreSQL
    must run on this machine, and the database should be the bench's alone (other clients of it
    are counted too). Background processes (WAL writer, checkpointer, autovacuum) are not counted.
    """

    def __init__(self, url: str) -> None:
        self.dsn = parse_database_url(url).dsn

    def _pids(self) -> list[int]:
        async def query() -> list[int]:
            conn = await asyncpg.connect(self.dsn)
            try:
                rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
                return [int(r[0]) for r in rows]
            finally:
                await conn.close()

        return asyncio.run(query())

    def cpu(self) -> dict[int, float]:
        """CPU-seconds so far of each backend."""
        out: dict[int, float] = {}
        for pid in self._pids():
            with contextlib.suppress(OSError, IndexError):
                out[pid] = _cpu_seconds(pid)
        return out

    @staticmethod
    def since(start: dict[int, float], end: dict[int, float]) -> float:
        """CPU-seconds between two readings (a backend gone meanwhile is lost, a new one counts whole)."""
        return sum(v - start.get(pid, 0.0) for pid, v in end.items())


class Agent:
    def __init__(self, proc: Any, prov: int) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{prov}"

    def metric(self, name: str) -> float:
        return self.metrics(name)[0]

    def metrics(self, *names: str) -> list[float]:
        """Several metrics from one scrape (each scrape costs the agent an outbox count)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return [sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))
                for name in names]

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def pin(self, cpus: set[int]) -> None:
        """Pin every thread of the agent (sched_setaffinity acts on one thread; threads made later inherit it)."""
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                os.sched_setaffinity(int(task.name), cpus)


class DepthSampler(threading.Thread):
    """Scrapes the agent's outbox depth every `every` seconds while the load runs (`stop` ends it).

    One depth at the end says little on its own: the agent keeps up to its requests in flight (2,000
    updates each) in the outbox while they are under way. Flat means the depth of the run's second half
    is no higher than that of its first half; a delivery that falls behind grows it all along.
    """

    def __init__(self, agent: Agent, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.agent, self.every = agent, every
        self.stop = threading.Event()
        self.depths: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(self.every):
            with contextlib.suppress(httpx.HTTPError):
                self.depths.append(self.agent.metric("metropole_agent_outbox_depth"))

    def halves(self) -> tuple[float, float]:
        """The mean depth of the first and of the second half of the samples (nan without two)."""
        d = self.depths
        if len(d) < 2:
            return float("nan"), float("nan")
        h = len(d) // 2
        return sum(d[:h]) / h, sum(d[h:]) / (len(d) - h)


class Watcher(threading.Thread):
    """Polls the broker for the devices' entities, noting (device, value, time) when a new value shows.

    The publishers' send times only come back once they are done, so the
    latencies are worked out afterwards (see run_case). The value is `attr`
    times `scale` (a TTS case's pm10 is the frame's word / 10).
    """

    def __init__(self, broker_url: str, attr: str = "no2", scale: int = 1) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = broker_url, threading.Event()
        self.attr, self.scale = attr, scale
        self.seen: dict[str, int] = {}
        self.observations: list[tuple[str, int, float]] = []

    def run(self) -> None:
        with httpx.Client(timeout=10, headers={"NGSILD-Tenant": TENANT, "Link": LINK}) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(f"{self.url}/ngsi-ld/v1/entities",
                                   params={"type": "AirQualityObserved", "options": "keyValues", "limit": "1000",
                                           "attrs": self.attr})
                except httpx.HTTPError:
                    continue
                now = time.time()
                if r.status_code == 200:
                    for e in r.json():
                        raw = e.get(self.attr)
                        value = round(raw * self.scale) if isinstance(raw, (int, float)) else None
                        if value is not None and self.seen.get(e["id"]) != value:
                            self.seen[e["id"]] = value
                            self.observations.append((e["id"].rsplit(":", 1)[1], value, now))
                time.sleep(0.05)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


@dataclass(slots=True)
class Rig:
    """One target's setup: the agent, the MQTT broker the devices publish to, the device group."""

    agent: Agent
    mqtt_host: str
    mqtt_port: int
    apikey: str
    devices: int
    publishers: int
    broker_url: str | None  # where to poll for latency; None for the sink
    next_value: int = 0  # no2 values already used: each case publishes new ones
    kind: str = "json"  # or "tts": LoRaWAN uplinks of The Things Stack (mqtt_load)
    application: str = ""  # kind "tts": `app@tenant`
    broker_pid: int | None = None  # the embedded broker's process, for its CPU-seconds; None for the sink
    pg: PgBackends | None = None  # the broker's PostgreSQL backends, when its store is PostgreSQL
    same_stamp: bool = False  # every measure the same TimeInstant (mqtt_load.LoadSpec.same_stamp)

    def values(self, total: int) -> int:
        """Reserve the no2 values of a case of `total` messages; returns its first."""
        base = self.next_value
        self.next_value += -(-total // self.devices)
        return base


def run_case(rig: Rig, *, rate: float | None, total: int, latency: bool = True) -> dict[str, Any]:
    agent, devices = rig.agent, rig.devices
    base = rig.values(total)
    spec = LoadSpec(rig.mqtt_host, rig.mqtt_port, rig.apikey, devices, total, rate=rate, value_base=base,
                    timeout=(total / rate if rate else 0) + 120, kind=rig.kind, application=rig.application,
                    same_stamp=rig.same_stamp)
    load = Load(spec, rig.publishers)  # payloads built and connected before the clock starts
    attr, scale = ("pm10", 10) if rig.kind == "tts" else ("no2", 1)
    watcher = Watcher(rig.broker_url, attr, scale) if rig.broker_url and latency else None
    names = ("metropole_agent_intake_messages_total", "metropole_agent_delivered_total",
             "metropole_agent_outbox_appended_total")
    accepted0, delivered0, appended0 = agent.metrics(*names)
    cpu0 = agent.cpu_seconds()
    bcpu0 = _cpu_seconds(rig.broker_pid) if rig.broker_pid else 0.0
    pg0 = rig.pg.cpu() if rig.pg else {}
    if watcher:
        watcher.start()
    sampler = DepthSampler(agent)
    sampler.start()
    t0 = load.go()
    sent = load.wait()
    sampler.stop.set()
    sampler.join(15)
    for error in sent.errors:
        print(f"ingest_bench: {error}", file=sys.stderr)
    published = time.time()
    accepted_then, outbox_then = agent.metrics("metropole_agent_intake_messages_total", "metropole_agent_outbox_depth")
    accepted_then -= accepted0
    # Wait until acceptance and delivery stop moving for 3 s (30 s while the outbox holds rows: delivery counts
    # a page when it is settled, and one device's page is a thousand round trips); the rates use the time of
    # the last change.
    accepted = delivered = appended = 0.0
    accepted_at = done = last_change = time.time()
    depth = 0.0
    while time.time() - last_change < (30 if depth else 3) and time.time() - t0 < spec.timeout + 600:
        a, d, appended, depth = agent.metrics(*names, "metropole_agent_outbox_depth")
        a, d, appended = a - accepted0, d - delivered0, appended - appended0
        now = time.time()
        if a != accepted:
            accepted, accepted_at, last_change = a, now, now
        if d != delivered:
            delivered, done, last_change = d, now, now
        if accepted >= sent.acked and appended and delivered >= appended:
            break
        time.sleep(0.05)
    lat: list[float] = []
    if watcher:
        time.sleep(0.3)
        watcher.stop.set()
        watcher.join(5)
        for device, value, seen in watcher.observations:
            i = (value - base) * devices + int(device.lstrip("dt"))  # d<n>: JSON devices, t<n>: LoRaWAN
            if value >= base and 0 <= i < total and sent.send_times[i]:
                lat.append(seen - sent.send_times[i])
    cpu = agent.cpu_seconds() - cpu0
    bcpu = _cpu_seconds(rig.broker_pid) - bcpu0 if rig.broker_pid else float("nan")
    pgcpu = PgBackends.since(pg0, rig.pg.cpu()) if rig.pg else float("nan")
    end = time.time()
    return {
        "published/s": sent.rate,
        "unacked": total - sent.acked,
        "accepted/s": accepted / max(1e-9, accepted_at - t0),
        "lost": sent.acked - accepted,
        "backlog@end": sent.acked - accepted_then,
        "outbox@end": outbox_then,
        "outbox 1st/2nd half": "{:.0f} / {:.0f}".format(*sampler.halves()),
        "outbox halves": sampler.halves(),
        "outbox max": max(sampler.depths, default=float("nan")),
        "msgs delivered/s": accepted / max(1e-9, done - t0),
        "updates delivered/s": delivered / max(1e-9, done - t0),
        "p50 ms": _pct(lat, 0.5), "p99 ms": _pct(lat, 0.99), "samples": len(lat),
        "cpu %": 100 * cpu / max(1e-9, end - t0), "cpu s": cpu, "rss MB": agent.rss_mb(),
        "broker cpu s": bcpu,
        # agent + broker CPU-seconds per 1,000 messages accepted (the sink's own CPU is not counted)
        "cpu s/1k msgs": (cpu + bcpu) * 1000 / max(1.0, accepted) if rig.broker_pid else float("nan"),
        "pg cpu s": pgcpu,
        "pg cpu s/1k": pgcpu * 1000 / max(1.0, accepted),
        # for the sustained verdict
        "accepted during run/s": accepted_then / max(1e-9, published - t0),
        "updates/msg": appended / max(1.0, accepted),
    }


def sustain_verdict(target: str, rate: float, seconds: float, r: dict[str, Any]) -> str:
    """Whether the agent kept up with `rate` for `seconds`: at the end, at most 1 s of load behind.

    That is, at most `rate` messages waiting in Mosquitto, and at most the updates of `rate` messages
    in the outbox (whose depth counts entity updates: here two per message). The publishers fell short
    when their last message was PUBACKed more than 0.5 s after its time.
    """
    if r["unacked"] or r["published/s"] * (seconds + 0.5) < rate * seconds:
        verdict = "the publishers fell short of the rate: they, not the agent, were the limit"
    elif r["backlog@end"] > rate:
        verdict = "no: intake fell behind (more than 1 s of messages waiting in Mosquitto)"
    elif r["outbox@end"] > rate * r["updates/msg"]:
        verdict = "no: delivery fell behind (more than 1 s of load waiting in the outbox)"
    else:
        verdict = "yes"
    return (f"sustained {rate:.0f}/s x {seconds:.0f}s ({target}): publishers {r['published/s']:,.0f}/s, "
            f"agent accepted {r['accepted during run/s']:,.0f}/s during the run, {r['backlog@end']:,.0f} behind "
            f"and outbox {r['outbox@end']:,.0f} deep at its end, {r['msgs delivered/s']:,.0f} msgs/s delivered"
            f" -> kept up: {verdict}; {_trend(r['outbox halves'])}")


def _trend(halves: tuple[float, float]) -> str:
    """Whether the outbox stayed flat over the run: its second half's mean depth at most a fifth (and 500
    updates) above its first half's (DepthSampler)."""
    first, second = halves
    if math.isnan(first) or math.isnan(second):
        return "outbox trend unknown (run too short to sample)"
    word = "flat" if second <= first * 1.2 + 500 else "growing"
    return f"outbox {word} over the run (mean depth {first:,.0f} in its first half, {second:,.0f} in its second)"


def provision(agent: Agent, apikey: str, cbroker: str) -> None:
    r = httpx.post(f"{agent.url}/iot/services", headers={"fiware-service": TENANT, "fiware-servicepath": "/"},
                   json={"services": [{"apikey": apikey, "cbroker": cbroker, "entity_type": "AirQualityObserved",
                                       "resource": "/iot/json", "autoprovision": True}]}, timeout=10)
    r.raise_for_status()


def provision_lorawan(agent: Agent, application: str, cbroker: str, mqtt_host: str, mqtt_port: int) -> None:
    """A LoRaWAN group on The Things Stack application `application` (the bench's Mosquitto plays its MQTT
    server): its devices are autoprovisioned by their first uplink, decoded with decentlab/dl-pm."""
    lorawan = {"application_server": {"provider": "TTN", "host": mqtt_host, "port": mqtt_port},
               "application_id": application, "codec": "decentlab/dl-pm"}
    r = httpx.post(f"{agent.url}/iot/services", headers={"fiware-service": TENANT, "fiware-servicepath": "/"},
                   json={"services": [{"apikey": "", "resource": application, "cbroker": cbroker, "autoprovision": True,
                                       "internal_attributes": {"lorawan": lorawan}}]}, timeout=10)
    r.raise_for_status()
    deadline = time.time() + 30
    while agent.metric("metropole_agent_lorawan_links_connected") < 1:
        if time.time() > deadline:
            raise TimeoutError("the agent did not subscribe on the network server's broker")
        time.sleep(0.1)


def _cpus(spec: str) -> set[int]:
    """`--agent-cpus`: "0", "0,1", "0-1", or "none" (no pinning: the empty set)."""
    if spec.strip().lower() in ("", "none"):
        return set()
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a subprocess log, without the agent's start-up banner."""
    if not path.exists():
        return ""
    text = [line for line in path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith("metropole: ")]
    return "\n".join(text[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=500.0, help="messages/s of the fixed-rate case")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fixed-rate case")
    parser.add_argument("--burst", type=int, default=20000, help="messages of the flat-out case")
    parser.add_argument("--sustain", type=float, default=0.0, metavar="RATE",
                        help="also hold RATE messages/s for --sustain-seconds and tell whether the agent kept up")
    parser.add_argument("--sustain-seconds", type=float, default=30.0)
    parser.add_argument("--sustain-only", action="store_true",
                        help="with --sustain: skip the fixed-rate and flat-out cases")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes (default 1)")
    parser.add_argument("--agent-cpus", default="0",
                        help='cores for the agent alone, e.g. "0" (default) or "0,1"; the rest get everything '
                             'else; "none": no pinning')
    parser.add_argument("--mosquitto", choices=("own", "system"), default="own",
                        help="own: a Mosquitto with unbounded queues per target, started by the bench (default); "
                             f"system: {MQTT_HOST}:{MQTT_PORT} (METROPOLE_TEST_MQTT_HOST/_PORT)")
    parser.add_argument("--sink-delay", type=float, default=0.0, metavar="MS",
                        help="the sink answers each request after MS milliseconds (default 0: at once)")
    parser.add_argument("--target", choices=("both", "broker", "sink"), default="both",
                        help="northbound targets to run: the embedded broker, the instant sink, or both (default)")
    parser.add_argument("--lorawan", action="store_true",
                        help="also run every case with LoRaWAN devices: The Things Stack uplinks, codec decentlab/dl-pm")
    parser.add_argument("--batch-repeats", type=int, default=None, metavar="N",
                        help="METROPOLE_AGENT_BATCH_REPEATS for the agent: instances of one entity per request "
                             "(default: the agent's, the batch size; 1: one per request); with --devices 1, whether one fast device goes out in batches")
    parser.add_argument("--same-stamp", action="store_true",
                        help="every measure the same TimeInstant, the load before 2026-12-06 (default: each its own)")
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="run the agent under pyinstrument and write its text report to FILE (one per target)")
    args = parser.parse_args()
    targets = {"both": ("embedded broker", "instant sink"), "broker": ("embedded broker",),
               "sink": ("instant sink",)}[args.target]
    agent_cpus = _cpus(args.agent_cpus) & os.sched_getaffinity(0)
    others = os.sched_getaffinity(0) - agent_cpus
    if agent_cpus and others:
        # Everything this process starts from now on (publishers, Mosquitto, sink, broker) inherits this;
        # the agent alone is moved to its cores once started.
        os.sched_setaffinity(0, others)
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    rows: list[tuple[str, str, dict[str, Any]]] = []
    verdicts: list[str] = []
    try:
        for target in targets:
            sink: multiprocessing.Process | None = None
            broker: Managed | None = None
            mosquitto: Mosquitto | None = None
            proc: Managed | None = None
            tag = uuid.uuid4().hex[:8]
            agent_log = tmp / f"agent-{tag}.log"
            try:
                if target == "embedded broker":
                    broker = broker_process(tmp / "broker", log=tmp / "broker.log")
                    broker.start()
                    cbroker = broker.ready_url.removesuffix("/version")
                    broker_url: str | None = cbroker
                    store = os.environ.get("METROPOLE_BROKER_STORE", "")
                    pg = PgBackends(store) if store.startswith(("postgresql:", "postgres:")) else None
                else:
                    port = free_port()
                    sink = multiprocessing.Process(target=_sink, args=(port, args.sink_delay / 1000),
                                                   daemon=True)
                    sink.start()
                    broker_url, cbroker = None, f"http://127.0.0.1:{port}"
                    pg = None
                if args.mosquitto == "own":
                    mosquitto = Mosquitto(tmp / f"mosquitto-{tag}")
                    mosquitto.start()
                    mqtt_host, mqtt_port = mosquitto.host, mosquitto.port
                else:
                    mqtt_host, mqtt_port = MQTT_HOST, MQTT_PORT
                proc, prov, _ = agent_process(tmp / f"agent-{tag}", cbroker, mqtt_port=mqtt_port,
                                              client_id=f"bench-agent-{tag}", log=agent_log,
                                              extra_env={"METROPOLE_AGENT_MQTT_SESSION_EXPIRY": "60",
                                                         "METROPOLE_AGENT_MQTT_HOST": mqtt_host,
                                                         **({} if args.batch_repeats is None else
                                                            {"METROPOLE_AGENT_BATCH_REPEATS": str(args.batch_repeats)})})
                if args.profile:
                    out = args.profile if len(targets) == 1 else f"{args.profile}.{target.split()[-1]}"
                    proc.args[1:3] = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o",
                                      str(Path(out).resolve()), "-m", "metropole"]
                proc.start()
                agent = Agent(proc.proc, prov)
                if agent_cpus:
                    agent.pin(agent_cpus)
                apikey = f"bench{tag}"
                provision(agent, apikey, cbroker)
                rigs = [("json", Rig(agent, mqtt_host, mqtt_port, apikey, args.devices, args.publishers, broker_url,
                                     broker_pid=broker.proc.pid if broker and broker.proc else None, pg=pg,
                                     same_stamp=args.same_stamp))]
                if args.lorawan:
                    application = f"bench{tag}@bench"
                    provision_lorawan(agent, application, cbroker, mqtt_host, mqtt_port)
                    rigs.append(("tts", Rig(agent, mqtt_host, mqtt_port, "", args.devices, args.publishers, broker_url,
                                            kind="tts", application=application,
                                            broker_pid=broker.proc.pid if broker and broker.proc else None, pg=pg)))
                for kind, rig in rigs:
                    label = target if kind == "json" else f"{target}, LoRaWAN TTS"
                    # warm-up: autoprovision the devices
                    run_case(rig, rate=None, total=args.devices, latency=False)
                    if not args.sustain_only:
                        rows.append((label, f"{args.rate:.0f}/s x {args.seconds:.0f}s",
                                     run_case(rig, rate=args.rate, total=int(args.rate * args.seconds))))
                        rows.append((label, f"flat out {args.burst}", run_case(rig, rate=None, total=args.burst)))
                    if args.sustain:
                        r = run_case(rig, rate=args.sustain, total=int(args.sustain * args.sustain_seconds))
                        rows.append((label, f"sustain {args.sustain:.0f}/s x {args.sustain_seconds:.0f}s", r))
                        verdicts.append(sustain_verdict(label, args.sustain, args.sustain_seconds, r))
            finally:
                if proc:
                    proc.stop()
                if broker:
                    broker.stop()
                if sink:
                    sink.terminate()
                if mosquitto:
                    mosquitto.stop()
                logs = [("agent", agent_log), ("broker", tmp / "broker.log" if broker else None),
                        ("mosquitto", mosquitto.log if mosquitto else None)]
                for name, log in logs:
                    tail = _log_tail(log) if log else ""
                    if tail:
                        print(f"ingest_bench: {target}: {name} log (last lines):\n{tail}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = ["published/s", "unacked", "accepted/s", "lost", "backlog@end", "outbox@end", "outbox 1st/2nd half",
            "outbox max", "msgs delivered/s",
            "updates delivered/s", "p50 ms", "p99 ms", "samples", "cpu %", "cpu s", "rss MB", "broker cpu s",
            "cpu s/1k msgs", "pg cpu s", "pg cpu s/1k"]
    via = ("a Mosquitto of its own per target (unbounded queues)" if args.mosquitto == "own"
           else f"{MQTT_HOST}:{MQTT_PORT}")
    pinning = "no CPU pinning"
    if agent_cpus:
        pinning = f"agent on cpu {','.join(map(str, sorted(agent_cpus)))}, " + (
            f"the rest on cpu {','.join(map(str, sorted(others)))}" if others else "sharing it with the rest")
    repeats = "" if args.batch_repeats is None else f", up to {args.batch_repeats} instances of an entity per request"
    print(f"\nIoT agent ingest, {args.devices} devices{repeats}, MQTT QoS 1 via {via}, {args.publishers} publisher process(es),"
          f" {pinning} (an update per entity: AirQualityObserved, and its Device as the agent's"
          f" METROPOLE_AGENT_DEVICE_STATUS_INTERVAL lets it)")
    width = max(16, *(len(t) for t, _, _ in rows)) if rows else 16
    print(f"{'target':<{width}} {'load':<22} " + " ".join(f"{c:>12}" for c in cols))
    for target, load, r in rows:
        print(f"{target:<{width}} {load:<22} " + " ".join(
            f"{r[c]:>12}" if isinstance(r[c], str) else
            f"{r[c]:>12.{1 if c in ('cpu s', 'broker cpu s', 'pg cpu s') else 2 if c in ('cpu s/1k msgs', 'pg cpu s/1k') else 0}f}" if isinstance(r[c], (int, float)) and r[c] == r[c] else f"{'-':>12}"
            for c in cols))
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
