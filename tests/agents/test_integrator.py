"""The agents as a new integrator meets them: good and bad payloads over real MQTT and HTTP, read back.

A real embedded broker and a real agent (subprocesses), Mosquitto on
127.0.0.1:1883; each test has its own apikeys, tenant and topics. Compared
with iotagent-json on the same inputs (issue 13): one bad attribute no longer
drops the message (1), HTTP answers bad input as the FIWARE agents do (2),
limits refuse oversized messages (4), the profiles' entities pass the
platform's own checker (8), DateTime values read back as plain strings (10).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.procs import Managed, agent_process, broker_process
from compliance.payload import check_entity

pytestmark = pytest.mark.mqtt

SDM = "https://smartdatamodels.org/context.jsonld"
LINK = f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
LIMIT = 64 * 1024  # the agent's METROPOLE_AGENT_MAX_MESSAGE_BYTES in these tests


@dataclass
class Agent:
    broker_url: str
    provisioning: str
    http: str
    mqtt: tuple[str, int]
    tag: str
    agent: Managed

    @property
    def service(self) -> str:
        return f"t{self.tag}"

    def headers(self, service: str | None = None) -> dict[str, str]:
        return {"fiware-service": service or self.service, "fiware-servicepath": "/"}

    def entity(self, entity_id: str, **params: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.broker_url}/ngsi-ld/v1/entities/{entity_id}", params=params,
                      headers={"NGSILD-Tenant": self.service, "Link": LINK}, timeout=5)
        return r.json() if r.status_code == 200 else None

    def rejections(self, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.provisioning}/iot/rejections", params=params, headers=self.headers(), timeout=5)
        assert r.status_code == 200, r.text
        return list(r.json()["rejections"])

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"{self.provisioning}/metrics", timeout=5).text
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$" if labels else rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def provision(self, groups: list[dict[str, Any]], devices: list[dict[str, Any]] | None = None) -> None:
        r = httpx.post(f"{self.provisioning}/iot/services", json={"services": groups}, headers=self.headers(),
                       timeout=10)
        assert r.status_code == 201, r.text
        if devices:
            r = httpx.post(f"{self.provisioning}/iot/devices", json={"devices": devices}, headers=self.headers(),
                           timeout=10)
            assert r.status_code == 201, r.text


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def publish(host: str, port: int, messages: list[tuple[str, bytes]],
            protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{uuid.uuid4().hex[:8]}", protocol=protocol)
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


@contextmanager
def running_agent(tmp_path: Path, mqtt_broker: tuple[str, int], extra_env: dict[str, str] | None = None
                  ) -> Iterator[Agent]:
    """A broker and an agent for one test (the agent with the tests' size limit)."""
    broker = broker_process(tmp_path / "broker", log=tmp_path / "broker.log")
    broker.start()
    broker_url = broker.ready_url.removesuffix("/version")
    tag = uuid.uuid4().hex[:10]
    env = {"METROPOLE_AGENT_MAX_MESSAGE_BYTES": str(LIMIT), **(extra_env or {})}
    agent, prov, http = agent_process(tmp_path / "agent", broker_url, mqtt_port=mqtt_broker[1],
                                      client_id=f"metropole-test-{tag}", log=tmp_path / "agent.log", extra_env=env)
    agent.start()
    try:
        yield Agent(broker_url, f"http://127.0.0.1:{prov}", f"http://127.0.0.1:{http}", mqtt_broker, tag, agent)
    finally:
        agent.stop()
        broker.stop()


@pytest.fixture
def stack(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Agent]:
    with running_agent(tmp_path, mqtt_broker) as agent:
        yield agent


def _weather_group(a: Agent, apikey: str, **extra: Any) -> dict[str, Any]:
    return {"apikey": apikey, "cbroker": a.broker_url, "entity_type": "WeatherObserved", "resource": "/iot/json",
            "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
            "static_attributes": [{"name": "location", "type": "geo:point", "value": "43.5265, 5.4474"}], **extra}


# -- 1: one bad attribute no longer drops the message ----------------------------------------------

def test_bad_attribute_is_refused_alone_over_mqtt_and_http(stack: Agent) -> None:
    a = stack
    key = f"k{a.tag}"
    a.provision([_weather_group(a, key)])
    publish(*a.mqtt, [(f"/{key}/wmqtt/attrs", orjson.dumps({"t": "abc", "h": "55"}))])
    r = httpx.post(f"{a.http}/iot/json", params={"k": key, "i": "whttp"}, json={"t": "abc", "h": "55"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["X-Rejected-Attributes"] == "temperature"
    for device in ("wmqtt", "whttp"):
        entity = wait_for(lambda d=device: a.entity(f"urn:ngsi-ld:WeatherObserved:{d}"), 30, f"{device}'s entity")
        assert entity["relativeHumidity"]["value"] == 0.55, "the valid attribute is kept (as iotagent-json keeps it)"
        assert "temperature" not in entity
    refused = wait_for(lambda: [r for r in a.rejections(reason="wrong_type")] if len(
        a.rejections(reason="wrong_type")) == 2 else None, 15, "two refused attributes")
    assert {(r["device_id"], r["attribute"]) for r in refused} == {("wmqtt", "temperature"), ("whttp", "temperature")}
    assert all("'abc' is not a number" in r["detail"] for r in refused)
    assert a.metric("metropole_agent_attributes_rejected_total", '{reason="wrong_type"}') == 2
    assert a.metric("metropole_agent_messages_rejected_total", '{reason="wrong_type"}') == 0, (
        "no message was rejected: both were accepted with one attribute less")


# -- 2: HTTP answers as the FIWARE agents do --------------------------------------------------------

def test_http_answers_bad_input_as_iotagent_json(stack: Agent) -> None:
    a = stack
    key = f"k{a.tag}"
    a.provision([_weather_group(a, key, autoprovision=False),
                 {**_weather_group(a, key + "ul"), "resource": "/iot/d"}],
                [{"device_id": "known", "apikey": key, "entity_type": "WeatherObserved"}])

    def post(body: bytes, *, k: str = key, i: str = "known", path: str = "/iot/json",
             media: str = "application/json") -> httpx.Response:
        return httpx.post(f"{a.http}{path}", params={"k": k, "i": i}, content=body,
                          headers={"Content-Type": media}, timeout=10)

    cases = [
        (post(b'{"t": 21'), 400, "BAD_PAYLOAD", "malformed_payload"),
        (post(b"t|21|h", k=key + "ul", path="/iot/d", media="text/plain"), 400, "BAD_PAYLOAD", "malformed_payload"),
        (post(b'{"t": "abc"}'), 400, "BAD_PAYLOAD", "wrong_type"),
        (post(b'{"t": 1}', k="nokey" + a.tag), 404, "DEVICE_GROUP_NOT_FOUND", "unknown_apikey"),
        (post(b'{"t": 1}', i="stranger"), 404, "DEVICE_NOT_FOUND", "unknown_device"),
        (post(b"t=1", media="application/x-www-form-urlencoded"), 400, "UNSUPPORTED_TYPE", "unsupported_content_type"),
    ]
    for response, status, name, _ in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"name", "message"} and body["name"] == name, body
    good = post(b'{"t": 21.5}')
    assert good.status_code == 200 and good.content == b""
    assert wait_for(lambda: a.entity("urn:ngsi-ld:WeatherObserved:known"), 30, "the good measure")["temperature"][
        "value"] == 21.5, "200 means durable: the measure reaches the broker"
    reasons = [r["reason"] for r in a.rejections()]
    for *_, reason in cases:
        if reason != "unknown_apikey":  # no tenant owns an unknown apikey: listed under the empty service
            assert reason in reasons, (reason, reasons)
    unowned = httpx.get(f"{a.provisioning}/iot/rejections", headers={"fiware-service": "", "fiware-servicepath": "/*"},
                        params={"apikey": "nokey" + a.tag}, timeout=5).json()
    assert unowned["count"] == 1


# -- 4: limits --------------------------------------------------------------------------------------

def test_limits_refuse_oversized_messages_over_http(stack: Agent) -> None:
    a = stack
    key = f"k{a.tag}"
    a.provision([_weather_group(a, key)])
    big = orjson.dumps({"t": 20, "note": "x" * (LIMIT + 10)})
    r = httpx.post(f"{a.http}/iot/json", params={"k": key, "i": "big"}, content=big,
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["name"] == "PAYLOAD_TOO_LARGE", r.text
    many = orjson.dumps({f"a{i}": i for i in range(1001)})
    r = httpx.post(f"{a.http}/iot/json", params={"k": key, "i": "many"}, content=many,
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text
    r = httpx.post(f"{a.http}/iot/json", params={"k": key, "i": "long"}, timeout=30,
                   json={"t": 19, "note": "y" * 5000})
    assert r.status_code == 200 and r.headers["X-Rejected-Attributes"] == "note"
    entity = wait_for(lambda: a.entity("urn:ngsi-ld:WeatherObserved:long"), 30, "the measure without the long value")
    assert entity["temperature"]["value"] == 19 and "note" not in entity
    reasons = {r["reason"]: r for r in a.rejections()}
    assert {"too_large", "too_many_attributes", "too_long"} <= set(reasons)
    assert reasons["too_long"]["attribute"] == "note"
    assert a.entity("urn:ngsi-ld:WeatherObserved:big") is None and a.entity("urn:ngsi-ld:WeatherObserved:many") is None


@pytest.mark.parametrize("protocol", ["5", "4"])
def test_limits_refuse_oversized_messages_over_mqtt(mqtt_broker: tuple[str, int], tmp_path: Path,
                                                    protocol: str) -> None:
    """MQTT 5: the broker drops what is over the Maximum Packet Size, we reject what is between; 3.1.1 has no such
    property: the agent discards a 20 MB message as it arrives, never holding it."""
    with running_agent(tmp_path, mqtt_broker, {"METROPOLE_AGENT_MQTT_PROTOCOL": protocol}) as a:
        key = f"k{a.tag}"
        a.provision([_weather_group(a, key)])
        wait_for(lambda: a.metric("metropole_agent_mqtt_connected") == 1, 30, "the agent's MQTT connection")
        huge = b'{"t": 1, "note": "' + b"z" * (20 * 1024 * 1024) + b'"}'
        over = orjson.dumps({"t": 2, "note": "w" * (LIMIT * 2)})
        publish(*a.mqtt, [(f"/{key}/huge/attrs", huge), (f"/{key}/over/attrs", over),
                          (f"/{key}/sentinel/attrs", orjson.dumps({"t": 3}))])
        wait_for(lambda: a.entity("urn:ngsi-ld:WeatherObserved:sentinel"), 60, "the sentinel after the large ones")
        too_large = wait_for(lambda: [r for r in a.rejections(reason="too_large")]
                             if len(a.rejections(reason="too_large")) >= (1 if protocol == "5" else 2) else None,
                             15, "the oversized messages' rejections")
        assert {r["device_id"] for r in too_large} == ({"over"} if protocol == "5" else {"huge", "over"})
        assert a.entity("urn:ngsi-ld:WeatherObserved:huge") is None
        assert a.entity("urn:ngsi-ld:WeatherObserved:over") is None
        peak = _peak_rss_mb(a.agent.pid)
        assert peak < 300, f"the agent held a 20 MB message: peak RSS {peak:.0f} MB"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


# -- 8 and 10: the platform's own entities pass its checker; DateTime values are plain strings --------

PROFILE_MEASURES = {
    "AirQualityObserved": {"no2": 41, "pm10": 18, "pm25": 9, "o3": 60, "t": 12.5, "h": 55},
    "NoiseLevelObserved": {"laeq": 63.2, "lamax": 80.1, "las": 58},
    "WeatherObserved": {"t": 12.5, "h": 55, "p": 1013, "ws": 3.2, "wd": 180, "rain": 0.2},
}


def test_every_profile_entity_passes_the_checker_and_datetimes_round_trip(stack: Agent) -> None:
    a = stack
    for model, measure in PROFILE_MEASURES.items():
        key = f"{model[:3].lower()}{a.tag}"
        a.provision([{"apikey": key, "cbroker": a.broker_url, "entity_type": model, "resource": "/iot/json",
                      "static_attributes": [{"name": "location", "type": "geo:point", "value": "43.2951, 5.3698"}]}])
        # FIWARE-style mapping of one attribute (object_id -> name, no metadata) beside the profile's own
        first = next(iter(measure))
        r = httpx.post(f"{a.provisioning}/iot/devices", headers=a.headers(), timeout=10, json={"devices": [
            {"device_id": f"{model}-1", "apikey": key, "entity_type": model,
             "attributes": [{"object_id": "x", "name": _attribute_of(model, first), "type": "Number"}]}]})
        assert r.status_code == 201, r.text
        payload = {**{k: v for k, v in measure.items() if k != first}, "x": measure[first],
                   "TimeInstant": "2026-11-26T07:00:00Z"}
        publish(*a.mqtt, [(f"/{key}/{model}-1/attrs", orjson.dumps(payload))])
        entity = wait_for(lambda m=model: a.entity(f"urn:ngsi-ld:{m}:{m}-1"), 30, f"the {model} entity")
        result = check_entity(entity, source=model)
        assert result.valid, [(f.path, f.rule, f.message) for f in result.violations]
        mapped = entity[_attribute_of(model, first)]
        assert mapped.get("unitCode"), f"the FIWARE-style mapping of {model} keeps the model's unit code"
        assert entity["dateObserved"]["value"] == "2026-11-26T07:00:00Z", "a DateTime string (clause 4.6.3)"
        if model == "NoiseLevelObserved":
            assert entity["dateObservedFrom"]["value"] == entity["dateObservedTo"]["value"] == "2026-11-26T07:00:00Z"
        device = a.entity(f"urn:ngsi-ld:Device:{model}-1")
        assert device is not None and check_entity(device, source="Device").valid
        concise = a.entity(f"urn:ngsi-ld:{model}:{model}-1", options="keyValues")
        assert concise is not None and concise["dateObserved"] == "2026-11-26T07:00:00Z"


def _attribute_of(model: str, key: str) -> str:
    from agents.profiles import profile_for

    profile = profile_for(model)
    assert profile is not None
    found = profile.lookup(key)
    assert found is not None
    return found.attribute
