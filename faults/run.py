"""The fault-injection run: start everything, load it, break one part per phase, drain, verify, report."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from adapters.temporal import TemporalClient
from faults.load import APIKEY, HttpDevices, Ledger, MqttDevices
from faults.services import Mosquitto, Postgres, Process, free_port

SDM = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
TENANT = "faults"


@dataclass
class Platform:
    pg: Postgres
    mqtt: Mosquitto
    broker: Process
    agent: Process
    receiver: Process
    broker_port: int
    agent_http: int
    agent_prov: int
    notified_file: Path

    def stop(self) -> None:
        for part in (self.agent, self.broker, self.receiver):
            part.stop()
        self.mqtt.stop()
        self.pg.stop()


def start(work: Path) -> Platform:
    pg = Postgres(work / "pg")
    pg.init()
    mqtt = Mosquitto(work / "mqtt")
    mqtt.start()
    broker_port, prov, http, receiver_port = free_port(), free_port(), free_port(), free_port()
    store = f"{pg.dsn}?schema=faults"
    quiet = {"METROPOLE_LOG_LEVEL": "WARNING"}
    broker = Process("broker", ["-m", "metropole", "broker", "--port", str(broker_port), "--data", str(work / "broker"),
                                "--store", store], work, quiet, broker_port)
    notified = work / "notified.jsonl"
    receiver = Process("receiver", ["-m", "faults.receiver", str(receiver_port), str(notified)], work, {},
                       receiver_port)
    agent = Process("agent", ["-m", "metropole", "agent", "--broker-url", f"http://127.0.0.1:{broker_port}",
                              "--data", str(work / "agent"), "--provisioning-port", str(prov), "--http-port", str(http),
                              "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt.port), "--mqtt", "external"],
                    work, {**quiet, "METROPOLE_AGENT_MQTT_CLIENT_ID": "faults-agent"}, prov)
    for part in (broker, receiver, agent):
        part.start()
    platform = Platform(pg, mqtt, broker, agent, receiver, broker_port, http, prov, notified)
    _provision(platform, receiver_port)
    return platform


def _provision(p: Platform, receiver_port: int) -> None:
    headers = {"fiware-service": TENANT, "fiware-servicepath": "/"}
    group = {"services": [{"apikey": APIKEY, "entity_type": "AirQualityObserved", "resource": "/iot/json"}]}
    r = httpx.post(f"http://127.0.0.1:{p.agent_prov}/iot/services", json=group, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    sub = {"type": "Subscription", "entities": [{"type": "AirQualityObserved"}], "watchedAttributes": ["no2"],
           "notification": {"attributes": ["no2"], "format": "keyValues",
                            "endpoint": {"uri": f"http://127.0.0.1:{receiver_port}/notify", "accept": "application/json"}}}
    r = httpx.post(f"http://127.0.0.1:{p.broker_port}/ngsi-ld/v1/subscriptions", json=sub, timeout=10,
                   headers={"NGSILD-Tenant": TENANT, "Link": LINK})
    assert r.status_code == 201, r.text


def faults(p: Platform, downtime: float) -> list[tuple[str, Callable[[], None]]]:
    """The phases: a name and the fault it injects (restarts included)."""
    def kill_and_restart(part: Process) -> Callable[[], None]:
        def run() -> None:
            part.kill9()
            time.sleep(downtime)
            part.start()
        return run

    def postgres() -> None:
        p.pg.kill9()
        time.sleep(downtime)
        p.pg.start()

    def mosquitto() -> None:
        p.mqtt.stop()
        time.sleep(downtime)
        p.mqtt.start()

    return [("warm-up", lambda: None), ("agent kill -9", kill_and_restart(p.agent)),
            ("broker kill -9", kill_and_restart(p.broker)), ("PostgreSQL kill -9", postgres),
            ("receiver kill -9", kill_and_restart(p.receiver)), ("Mosquitto restart", mosquitto),
            ("steady", lambda: None)]


def _stored(p: Platform, devices: list[str]) -> dict[str, list[int]]:
    """Every stored no2 value of every device's entity, from the temporal API."""
    out: dict[str, list[int]] = {}
    with TemporalClient(f"http://127.0.0.1:{p.broker_port}", tenant=TENANT, context=SDM, timeout=60) as client:
        for device in devices:
            out[device] = [int(v) for _, v in client.series(f"urn:ngsi-ld:AirQualityObserved:{device}", "no2")]
    return out


def _notified(p: Platform) -> Counter[tuple[str, int]]:
    seen: Counter[tuple[str, int]] = Counter()
    if p.notified_file.exists():
        for line in p.notified_file.read_text().splitlines():
            _, entity, value = json.loads(line)
            if value is not None:
                seen[(entity.rsplit(":", 1)[-1], int(value))] += 1
    return seen


def _watchdog(seconds: float, work: Path, parts: list[Platform]) -> threading.Timer:
    """Past `seconds`, print every thread's stack and the logs' tails, stop the parts and exit 2.

    A run that never ends is the worst outcome for CI (its time runs out with nothing said); this makes a
    hang a failure that names where it was."""
    def fire() -> None:
        print(f"faults: no result after {seconds:.0f}s; every thread's stack follows, then the logs' tails",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        for log in sorted(work.rglob("*.log")):
            tail = log.read_bytes()[-2000:].decode(errors="replace")
            print(f"--- {log.relative_to(work)} (tail)\n{tail}", file=sys.stderr, flush=True)
        for platform in parts:
            try:
                platform.stop()
            except Exception as exc:  # noqa: BLE001 - exiting anyway; say what could not be stopped
                print(f"faults: stopping the platform failed: {exc!r}", file=sys.stderr)
        os._exit(2)
    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def run(phase_seconds: float, downtime: float, drain_seconds: float, report_path: Path | None,
        deadline_seconds: float = 600.0) -> int:
    work = Path(tempfile.mkdtemp(prefix="metropole-faults-"))
    os.chmod(work, 0o755)  # the PostgreSQL cluster runs as the postgres user
    started = time.monotonic()
    parts: list[Platform] = []
    watchdog = _watchdog(deadline_seconds, work, parts)
    platform = start(work)
    parts.append(platform)
    ledger = Ledger()
    mqtt_devices = MqttDevices(ledger, platform.mqtt.port, devices=8, rate=60)
    http_devices = HttpDevices(ledger, platform.agent_http, devices=4, rate=15)
    timings: list[tuple[str, float]] = []
    marks: list[tuple[int | None, int]] = [(0, 0)]  # (timesSent, notifications received) at each phase's end
    try:
        mqtt_devices.start()
        http_devices.start()
        for name, inject in faults(platform, downtime):
            print(f"faults: phase {name} ({time.monotonic() - started:.0f}s)", flush=True)
            ledger.phase = name
            t0 = time.monotonic()
            inject()
            time.sleep(max(0.0, phase_seconds - (time.monotonic() - t0)))
            timings.append((name, time.monotonic() - t0))
            marks.append((_times_sent(platform), _received(platform)))
        ledger.phase = "after"
        http_devices.stop()
        mqtt_devices.stop()
        accepted = {s: m for s, m in ledger.measures.items() if m.accepted}
        devices = sorted({m.device for m in ledger.measures.values()})
        deadline = time.monotonic() + drain_seconds
        while True:  # drain: wait until history and notifications hold every accepted measure, or the deadline
            stored = _stored(platform, devices)
            notified = _notified(platform)
            stored_set = {(d, v) for d, values in stored.items() for v in values}
            complete = all((m.device, s) in stored_set and (m.device, s) in notified for s, m in accepted.items())
            if complete or time.monotonic() > deadline:
                break
            time.sleep(2)
        marks.append((_times_sent(platform), _received(platform)))
        report = _report(ledger, stored, notified, marks, timings, time.monotonic() - started, complete)
    finally:
        mqtt_devices.client.loop_stop()
        platform.stop()
        watchdog.cancel()
    print(report)
    if report_path is not None:
        report_path.write_text(report)
    ok = "FAIL" not in report
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"faults: logs kept in {work}", file=sys.stderr)
    return 0 if ok else 1


def _times_sent(p: Platform) -> int | None:
    """The subscription's timesSent (clause 5.2.14), None while the broker cannot say."""
    try:
        r = httpx.get(f"http://127.0.0.1:{p.broker_port}/ngsi-ld/v1/subscriptions", headers={"NGSILD-Tenant": TENANT},
                      timeout=10)
        return sum(int(s.get("notification", {}).get("timesSent", 0)) for s in r.json())
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _received(p: Platform) -> int:
    """Notifications' entity updates the receiver has recorded."""
    with p.notified_file.open("rb") if p.notified_file.exists() else open(os.devnull, "rb") as f:
        return sum(1 for _ in f)


def _delta(marks: list[tuple[int | None, int]], i: int, k: int) -> str:
    a, b = marks[i][k], marks[i + 1][k]
    return "?" if a is None or b is None else str(b - a)


def _report(ledger: Ledger, stored: dict[str, list[int]], notified: Counter[tuple[str, int]],
            marks: list[tuple[int | None, int]], timings: list[tuple[str, float]], elapsed: float, complete: bool) -> str:
    times_sent = marks[-1][0]
    store_count: Counter[tuple[str, int]] = Counter((d, v) for d, values in stored.items() for v in values)
    rows = []
    totals: Counter[str] = Counter()
    for index, (phase, seconds) in enumerate([*timings, ("after (drain)", 0.0)]):
        measures = [m for m in ledger.measures.values() if m.phase == phase.split(" (")[0]]
        acc = [m for m in measures if m.accepted]
        row = Counter(sent=len(measures), accepted=len(acc),
                      stored=sum(1 for m in acc if store_count[(m.device, m.seq)] >= 1),
                      duplicates=sum(max(0, store_count[(m.device, m.seq)] - 1) for m in measures),
                      lost=sum(1 for m in acc if store_count[(m.device, m.seq)] == 0),
                      notified=sum(1 for m in acc if notified[(m.device, m.seq)] >= 1),
                      redelivered=sum(max(0, notified[(m.device, m.seq)] - 1) for m in measures),
                      missing=sum(1 for m in acc if notified[(m.device, m.seq)] == 0),
                      mqtt=sum(1 for m in acc if m.via == "mqtt"), http=sum(1 for m in acc if m.via == "http"))
        totals.update(row)
        rows.append((phase, seconds, row, _delta(marks, index, 0), _delta(marks, index, 1)))
    verdict = "PASS" if totals["lost"] == 0 and totals["duplicates"] == 0 and totals["missing"] == 0 else "FAIL"
    lines = [f"# Fault injection: {verdict}", "",
             (f"{totals['sent']} measures sent ({ledger.attempts} send attempts), {totals['accepted']} accepted "
             f"({totals['mqtt']} MQTT, {totals['http']} HTTP), {totals['stored']} stored once or more, "
             f"{totals['duplicates']} duplicates, {totals['lost']} lost; notifications: {times_sent} sent by the broker "
             f"(timesSent), {sum(notified.values())} entity updates received, {totals['notified']} accepted measures "
             f"notified, {totals['missing']} never notified, {totals['redelivered']} received more than once. "
             f"{'Drained' if complete else 'NOT drained within the deadline'}; {elapsed:.0f}s in all."), "",
             ("Measures are counted by the phase they were first sent in; notifications by the phase they were sent "
             "(timesSent) or received in."), "",
             ("| phase (fault) | s | measures sent | accepted | stored | duplicates | lost | notifications sent "
             "| received | measures notified | never notified | notified twice+ |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for phase, seconds, r, sent, received in rows:
        lines.append(f"| {phase} | {seconds:.0f} | {r['sent']} | {r['accepted']} | {r['stored']} | {r['duplicates']} | "
                     f"{r['lost']} | {sent} | {received} | {r['notified']} | {r['missing']} | {r['redelivered']} |")
    lines.append(f"| **total** | | {totals['sent']} | {totals['accepted']} | {totals['stored']} | {totals['duplicates']} | "
                 f"{totals['lost']} | {times_sent} | {sum(notified.values())} | {totals['notified']} | {totals['missing']} "
                 f"| {totals['redelivered']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--phase-seconds", type=float, default=8.0, help="load time per fault (default 8)")
    parser.add_argument("--downtime", type=float, default=2.0, help="seconds a killed part stays down (default 2)")
    parser.add_argument("--drain-seconds", type=float, default=180.0, help="deadline for the backlog to drain")
    parser.add_argument("--report", type=Path, default=None, help="also write the report (Markdown) here")
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="fail (exit 2) with every thread's stack if the run has not ended after this (default 600)")
    args = parser.parse_args(argv)
    return run(args.phase_seconds, args.downtime, args.drain_seconds, args.report, args.deadline)
