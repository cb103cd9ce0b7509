"""Devices -> real Mosquitto / HTTP -> the agents (subprocess) -> the embedded NGSI-LD broker (subprocess).

Provisioning uses the request shapes of the FIWARE IoT Agent documentation
(`POST /iot/services`, `POST /iot/devices` with `fiware-service` headers).
The outage tests count every measure: each counted measure comes from its own
(autoprovisioned) device, so it is its own entity, and a few devices send
numbered sequences whose final value shows nothing overtook the last one,
and whose history in the broker's temporal API holds every value.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.procs import Managed, agent_process, broker_process

pytestmark = pytest.mark.mqtt

SDM = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
SERVICE = "aix"


@dataclass
class Stack:
    broker: Managed
    broker_url: str
    agent: Managed
    provisioning: str
    http: str
    mqtt: tuple[str, int]
    apikey: str
    tmp: Path

    def headers(self) -> dict[str, str]:
        return {"fiware-service": SERVICE, "fiware-servicepath": "/"}

    def ngsi(self) -> dict[str, str]:
        return {"NGSILD-Tenant": SERVICE, "Link": LINK}

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.broker_url}/ngsi-ld/v1/entities/{entity_id}", headers=self.ngsi(), timeout=5)
        return r.json() if r.status_code == 200 else None

    def count(self, entity_type: str, id_pattern: str | None = None) -> int:
        params = {"type": entity_type, "count": "true", "limit": "0"}
        if id_pattern:
            params["idPattern"] = id_pattern
        try:
            r = httpx.get(f"{self.broker_url}/ngsi-ld/v1/entities", params=params, headers=self.ngsi(), timeout=5)
        except httpx.TransportError:
            return -1
        if r.status_code != 200:
            return -1
        return int(r.headers.get("NGSILD-Results-Count", "-1"))

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.provisioning}/metrics", timeout=5).text
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0


def _publisher(host: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-sim-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    return client


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def stack(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Stack]:
    broker = broker_process(tmp_path / "broker", log=tmp_path / "broker.log")
    broker.start()
    broker_url = broker.ready_url.removesuffix("/version")
    tag = uuid.uuid4().hex[:10]
    agent, prov, http = agent_process(tmp_path / "agent", broker_url, mqtt_port=mqtt_broker[1],
                                      client_id=f"metropole-test-{tag}", log=tmp_path / "agent.log")
    agent.start()
    s = Stack(broker, broker_url, agent, f"http://127.0.0.1:{prov}", f"http://127.0.0.1:{http}", mqtt_broker,
              f"key{tag}", tmp_path)
    try:
        yield s
    finally:
        agent.stop()
        broker.stop()


def provision(s: Stack) -> None:
    """A service group for MQTT/JSON air quality, one for Ultralight noise, and two devices (FIWARE doc shapes)."""
    groups = {"services": [
        {"apikey": s.apikey, "cbroker": s.broker_url, "entity_type": "AirQualityObserved", "resource": "/iot/json"},
        {"apikey": s.apikey + "ul", "cbroker": s.broker_url, "entity_type": "NoiseLevelObserved",
         "resource": "/iot/d"},
    ]}
    r = httpx.post(f"{s.provisioning}/iot/services", json=groups, headers=s.headers(), timeout=10)
    assert r.status_code == 201, r.text
    devices = {"devices": [
        {"device_id": "aq-mirabeau", "entity_name": "urn:ngsi-ld:AirQualityObserved:Aix-Mirabeau",
         "entity_type": "AirQualityObserved", "protocol": "PDI-IoTA-JSON", "transport": "MQTT", "apikey": s.apikey,
         "attributes": [
             {"object_id": "n", "name": "no2", "type": "Number",
              "metadata": {"unitCode": {"type": "Text", "value": "GQ"}}},
             {"object_id": "p", "name": "pm10", "type": "Number",
              "metadata": {"unitCode": {"type": "Text", "value": "GQ"}}}]},
        {"device_id": "noise-cours", "entity_name": "urn:ngsi-ld:NoiseLevelObserved:Aix-Cours",
         "entity_type": "NoiseLevelObserved", "protocol": "PDI-IoTA-UltraLight", "transport": "HTTP",
         "apikey": s.apikey + "ul",
         "attributes": [{"object_id": "l", "name": "LAeq", "type": "Number",
                         "metadata": {"unitCode": {"type": "Text", "value": "2N"}}}]},
    ]}
    r = httpx.post(f"{s.provisioning}/iot/devices", json=devices, headers=s.headers(), timeout=10)
    assert r.status_code == 201, r.text


def test_mqtt_and_http_measures_become_smart_data_models_entities(stack: Stack) -> None:
    s = stack
    provision(s)
    pub = _publisher(*s.mqtt)
    try:
        pub.publish(f"/json/{s.apikey}/aq-mirabeau/attrs",
                    orjson.dumps({"n": 41.5, "p": 18, "TimeInstant": "2026-11-26T07:00:00Z"}), qos=1).wait_for_publish(5)
        # a multi-measure array: two groups, in order; the last one wins in the current state
        pub.publish(f"/{s.apikey}/aq-mirabeau/attrs",
                    orjson.dumps([{"n": 43, "TimeInstant": "2026-11-26T07:10:00Z"},
                                  {"n": 44, "TimeInstant": "2026-11-26T07:20:00Z"}]), qos=1).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    r = httpx.post(f"{s.http}/iot/d", params={"k": s.apikey + "ul", "i": "noise-cours"}, content=b"l|61.5",
                   headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{s.http}/iot/json", params={"k": s.apikey}, json={"n": 1}, timeout=10)
    assert r.status_code == 400 and r.json()["name"] == "MANDATORY_PARAMS_NOT_FOUND"

    def both() -> bool:
        aq, noise = s.entity("urn:ngsi-ld:AirQualityObserved:Aix-Mirabeau"), s.entity(
            "urn:ngsi-ld:NoiseLevelObserved:Aix-Cours")
        return bool(aq and noise and aq.get("no2", {}).get("value") == 44)

    _wait(both, 30, "both entities in the broker")
    aq = s.entity("urn:ngsi-ld:AirQualityObserved:Aix-Mirabeau")
    assert aq is not None and aq["type"] == "AirQualityObserved"
    assert aq["no2"]["unitCode"] == "GQ"
    assert aq["no2"]["observedAt"] == "2026-11-26T07:20:00Z"
    assert aq["pm10"]["value"] == 18 and aq["pm10"]["unitCode"] == "GQ"
    noise = s.entity("urn:ngsi-ld:NoiseLevelObserved:Aix-Cours")
    assert noise is not None and noise["type"] == "NoiseLevelObserved"
    assert noise["LAeq"]["value"] == 61.5 and noise["LAeq"]["unitCode"] == "2N"
    assert "observedAt" in noise["LAeq"]
    assert s.metric("metropole_agent_dead_letters_total") == 0


# -- outages ---------------------------------------------------------------------------------

class Devices:
    """Simulated devices: `unique` measures each from a fresh device; `seq` devices send 0, 1, 2 ..."""

    def __init__(self, s: Stack, seq_devices: int = 3) -> None:
        self.s = s
        self.pub = _publisher(*s.mqtt)
        self.sent_unique = 0
        self.seq_devices = seq_devices
        self.seq_next = [0] * seq_devices
        self.lock = threading.Lock()

    def send(self, n: int, pause: float = 0.0) -> None:
        for _ in range(n):
            with self.lock:
                i = self.sent_unique
                self.sent_unique += 1
            info = self.pub.publish(f"/json/{self.s.apikey}/u{i}/attrs", orjson.dumps({"no2": i}), qos=1)
            d = i % self.seq_devices
            v = self.seq_next[d]
            self.seq_next[d] += 1
            # devices time-stamp their measures: the broker's history keeps one instance per observedAt,
            # and the agent's own reception time has only millisecond resolution
            stamp = f"2026-11-26T{v // 3600:02d}:{v // 60 % 60:02d}:{v % 60:02d}Z"
            info2 = self.pub.publish(f"/json/{self.s.apikey}/seq{d}/attrs",
                                     orjson.dumps({"no2": v, "TimeInstant": stamp}), qos=1)
            info.wait_for_publish(10)
            info2.wait_for_publish(10)
            if pause:
                time.sleep(pause)

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()

    def check_all_delivered(self, timeout: float = 90) -> None:
        s = self.s
        _wait(lambda: s.count("AirQualityObserved", r"urn:ngsi-ld:AirQualityObserved:u\d+") == self.sent_unique,
              timeout, f"{self.sent_unique} unique measures in the broker")
        for d in range(self.seq_devices):
            last = self.seq_next[d] - 1
            _wait(lambda d=d, last=last: (s.entity(f"urn:ngsi-ld:AirQualityObserved:seq{d}") or {}).get("no2", {})
                  .get("value") == last,
                  timeout, f"seq{d} to end at {last}")
            history = history_values(s, f"urn:ngsi-ld:AirQualityObserved:seq{d}")
            missing = sorted(set(range(last + 1)) - set(history))
            assert not missing, f"seq{d}: values missing from the broker's history: {missing}"
        assert s.metric("metropole_agent_dead_letters_total") == 0


def history_values(s: Stack, entity_id: str) -> list[Any]:
    """The no2 values in the entity's history, oldest first (the embedded broker serves the temporal API)."""
    r = httpx.get(f"{s.broker_url}/ngsi-ld/v1/temporal/entities/{entity_id}", params={"attrs": "no2"},
                  headers=s.ngsi(), timeout=5)
    assert r.status_code == 200, f"the broker's history of {entity_id}: {r.status_code} {r.text[:300]}"
    instances = r.json().get("no2", [])
    instances = instances if isinstance(instances, list) else [instances]
    values = sorted(instances, key=lambda i: (i.get("observedAt", ""), i.get("instanceId", "")))
    return sorted({v["value"] for v in values}) if values else []


def _group(s: Stack) -> None:
    r = httpx.post(f"{s.provisioning}/iot/services", headers=s.headers(), timeout=10, json={"services": [
        {"apikey": s.apikey, "cbroker": s.broker_url, "entity_type": "AirQualityObserved", "resource": "/iot/json",
         "autoprovision": True}]})
    assert r.status_code == 201, r.text


def test_broker_outage_loses_nothing_and_keeps_device_order(stack: Stack) -> None:
    s = stack
    _group(s)
    devices = Devices(s)
    try:
        devices.send(40, pause=0.01)
        s.broker.stop()  # the NGSI-LD broker goes away; devices keep publishing
        devices.send(120, pause=0.01)
        _wait(lambda: s.metric("metropole_agent_outbox_depth") > 0, 20, "the outbox to hold measures")
        assert s.metric('metropole_agent_broker_errors_total') > 0
        s.broker.start()  # same port, same data
        devices.send(40)
    finally:
        devices.close()
    devices.check_all_delivered()
    _wait(lambda: s.metric("metropole_agent_outbox_depth") == 0, 30, "the outbox to drain")


def test_agent_sigkill_mid_stream_loses_nothing(stack: Stack) -> None:
    """kill -9 mid-stream: what the agent had committed is in its outbox, what it had not is still
    unacknowledged in Mosquitto's copy of its persistent session, and comes again on restart.

    The stream stays under Mosquitto's default `max_queued_messages` (1000) for one offline session;
    beyond that the MQTT broker itself drops (raise it in production, see the README).
    """
    s = stack
    _group(s)
    devices = Devices(s)
    total = 300  # unique measures, plus as many sequence measures: 600 messages

    def stream() -> None:
        while devices.sent_unique < total:
            devices.send(1, pause=0.01)

    t = threading.Thread(target=stream, daemon=True)
    try:
        t.start()
        _wait(lambda: devices.sent_unique > 80, 30, "devices to publish")
        s.agent.kill()  # SIGKILL mid-stream: no cleanup, unacknowledged messages stay with Mosquitto
        _wait(lambda: devices.sent_unique > 160, 30, "devices to publish while the agent is dead")
        s.agent.start()  # same client id, same outbox
        t.join(60)
    finally:
        t.join(10)
        devices.close()
    assert devices.sent_unique == total
    devices.check_all_delivered()


def test_http_measure_is_acknowledged_only_once_durable(stack: Stack) -> None:
    """HTTP 200 means in the outbox: measures sent while the broker is down still arrive."""
    s = stack
    _group(s)
    s.broker.stop()
    for i in range(20):
        r = httpx.post(f"{s.http}/iot/json", params={"k": s.apikey, "i": f"h{i}"}, json={"no2": i}, timeout=10)
        assert r.status_code == 200, r.text
    s.agent.kill()
    s.broker.start()
    s.agent.start()
    _wait(lambda: s.count("AirQualityObserved", r"urn:ngsi-ld:AirQualityObserved:h\d+") == 20, 60, "20 HTTP measures")


def test_broker_refusal_goes_to_dead_letters_with_problem_details(stack: Stack) -> None:
    """A measure the broker refuses (bad data) is dead-lettered with its ProblemDetails, the others pass;
    operators list, requeue and purge the tenant's dead letters over the outbox API."""
    s = stack
    _group(s)
    pub = _publisher(*s.mqtt)
    try:
        # "no 2" is no NGSI-LD attribute name: the broker refuses the entity (the agent passes measure keys on)
        pub.publish(f"/json/{s.apikey}/bad/attrs", orjson.dumps({"no 2": 1}), qos=1).wait_for_publish(5)
        pub.publish(f"/json/{s.apikey}/good/attrs", orjson.dumps({"no2": 2}), qos=1).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    _wait(lambda: s.entity("urn:ngsi-ld:AirQualityObserved:good") is not None, 30, "the good measure")
    _wait(lambda: s.metric("metropole_agent_dead_letters_total") >= 1, 30, "the refused measure's dead letter")
    letters = httpx.get(f"{s.provisioning}/iot/rejections", headers=s.headers(), timeout=5)
    assert "broker_rejected" in letters.text
    assert "https://uri.etsi.org/ngsi-ld/errors/" in letters.text
    dead = httpx.get(f"{s.provisioning}/iot/outbox/dead-letters", headers=s.headers(), timeout=5).json()
    assert dead["count"] == 1 and dead["deadLetters"][0]["device_id"] == "bad"
    assert dead["deadLetters"][0]["problem"]["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    other = {"fiware-service": "someoneelse", "fiware-servicepath": "/"}
    assert httpx.get(f"{s.provisioning}/iot/outbox/dead-letters", headers=other, timeout=5).json()["count"] == 0
    assert s.metric("metropole_agent_outbox_dead_letters") == 1
    requeued = httpx.post(f"{s.provisioning}/iot/outbox/dead-letters/retry", headers=s.headers(), timeout=5)
    assert requeued.json() == {"requeued": 1}
    _wait(lambda: s.metric("metropole_agent_dead_letters_total") >= 2, 30, "the requeued measure refused again")
    purged = httpx.delete(f"{s.provisioning}/iot/outbox/dead-letters", headers=s.headers(), timeout=5)
    assert purged.json() == {"purged": 1}
    assert s.metric("metropole_agent_outbox_dead_letters") == 0


