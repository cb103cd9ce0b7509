"""LoRaWAN devices end to end: network server -> real Mosquitto / real HTTP socket -> the agent -> the embedded broker.

The network servers are played by this test: it publishes The Things Stack v3
and ChirpStack v4 uplink envelopes (their documented examples, carrying the
vendors' documented payloads) on the topics those network servers use, on the
real Mosquitto (127.0.0.1:1883; application ids unique per test), and POSTs
the same envelopes as a TTS webhook and a ChirpStack HTTP integration would;
it reads the downlinks the agent queues on the network servers' downlink
topics and answers with their downlink events. The agent and the embedded
NGSI-LD broker are real subprocesses; the entities are read back from the
broker and checked by the platform's Smart Data Model checker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import shutil
import socket
import threading
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

from bench.mqtt_load import MOSQUITTO, Mosquitto
from bench.procs import free_port
from compliance.payload import check_entity
from tests.agents.lorawan.test_ingest import DL_PM, EM300_TH, documented
from tests.agents.test_integrator import LINK, SDM, Agent, publish, running_agent, wait_for
from tests.services import in_ci

pytestmark = pytest.mark.mqtt

LOCATION = {"name": "location", "type": "geo:point", "value": "43.2965, 5.3698"}


@dataclass
class Lora:
    """The agent, and this test's network server applications on the shared Mosquitto."""

    a: Agent
    tts_app: str  # `app@tenant`
    cs_app: str  # a ChirpStack application UUID

    def tts_topic(self, device: str, leaf: str = "up") -> str:
        return f"v3/{self.tts_app}/devices/{device}/{leaf}"

    def cs_topic(self, eui: str, leaf: str = "event/up") -> str:
        return f"application/{self.cs_app}/device/{eui.lower()}/{leaf}"

    def provision(self, *devices: dict[str, Any], service: str | None = None) -> None:
        r = httpx.post(f"{self.a.provisioning}/iot/devices", json={"devices": list(devices)},
                       headers=self.a.headers(service), timeout=30)
        assert r.status_code == 201, r.text

    def links_up(self) -> None:
        wait_for(lambda: self.a.metric("metropole_agent_lorawan_links_connected") == 1, 30,
                 "the agent subscribed on the network server's broker")


def tts_uplink(lora: Lora, device: str, eui: str, payload_hex: str, fport: int = 1) -> bytes:
    body = documented("tts")
    app, _, _ = lora.tts_app.partition("@")
    body["end_device_ids"].update(device_id=device, dev_eui=eui, application_ids={"application_id": app})
    body["uplink_message"].update(f_port=fport, frm_payload=base64.b64encode(bytes.fromhex(payload_hex)).decode())
    return orjson.dumps(body)


def cs_uplink(lora: Lora, eui: str, payload_hex: str, fport: int = 85) -> bytes:
    body = documented("chirpstack")
    body["deviceInfo"].update(devEui=eui.lower(), applicationId=lora.cs_app)
    body.update(fPort=fport, data=base64.b64encode(bytes.fromhex(payload_hex)).decode())
    return orjson.dumps(body)


def tts_device(lora: Lora, device_id: str, eui: str, **extra: Any) -> dict[str, Any]:
    """A TTS device as IoTagent-LoRaWAN provisions one, plus its codec; the server named in the agent's settings."""
    return {"device_id": device_id, "entity_type": "AirQualityObserved", "static_attributes": [LOCATION],
            "internal_attributes": {"lorawan": {"application_server": {"name": "ns"}, "dev_eui": eui,
                                                "app_eui": "0000000000000000", "application_id": lora.tts_app,
                                                "codec": "decentlab/dl-pm"}}, **extra}


def cs_device(lora: Lora, device_id: str, eui: str, **extra: Any) -> dict[str, Any]:
    host, port = lora.a.mqtt
    return {"device_id": device_id, "transport": "LORAWAN", "dev_eui": eui, "codec": "milesight/em300-th",
            "static_attributes": [LOCATION],
            "internal_attributes": {"lorawan": {"application_server": {"provider": "chirpstack", "host": host,
                                                                       "port": port},
                                                "application_id": lora.cs_app}}, **extra}


@pytest.fixture
def lora(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Lora]:
    servers = {"ns": {"provider": "TTN", "host": mqtt_broker[0], "port": mqtt_broker[1]}}
    env = {"METROPOLE_AGENT_LORAWAN_SERVERS": json.dumps(servers), "METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT": "60"}
    with running_agent(tmp_path, mqtt_broker, env) as agent:
        yield Lora(agent, f"aix-{agent.tag}@metropole", str(uuid.uuid4()))


def checked(a: Agent, entity_id: str, what: str, **expect: Any) -> dict[str, Any]:
    """The entity once the broker has it with the expected values, checked against its Smart Data Model."""
    def ready() -> dict[str, Any] | None:
        e = a.entity(entity_id)
        return e if e and all(e.get(k, {}).get("value") == v for k, v in expect.items()) else None

    entity: dict[str, Any] = wait_for(ready, 30, what)
    # read with the Smart Data Models context in the Link header: the entity's terms are that context's
    result = check_entity({**entity, "@context": [SDM]}, source=entity_id)
    assert result.valid and not result.findings, [(f.path, f.rule, f.message) for f in result.findings]
    return entity


def test_tts_and_chirpstack_uplinks_over_mqtt_become_checked_entities(lora: Lora) -> None:
    a, tag = lora.a, lora.a.tag
    lora.provision(tts_device(lora, f"pm-{tag}", "70B3D57ED0000001"),
                   cs_device(lora, f"th-{tag}", "24E124136B502217"))
    lora.links_up()
    publish(*a.mqtt, [(lora.tts_topic("dlpm-1"), tts_uplink(lora, "dlpm-1", "70B3D57ED0000001", DL_PM)),
                      (lora.cs_topic("24E124136B502217"), cs_uplink(lora, "24E124136B502217", EM300_TH))])
    aq = checked(a, f"urn:ngsi-ld:AirQualityObserved:pm-{tag}", "the DL-PM's AirQualityObserved", pm10=3.9)
    assert aq["pm25"]["unitCode"] == "GQ" and aq["pm10"]["observedAt"] == "2020-02-12T15:15:46.014773Z"
    assert aq["location"]["value"] == {"type": "Point", "coordinates": [5.3698, 43.2965]}
    weather = checked(a, f"urn:ngsi-ld:WeatherObserved:th-{tag}", "the EM300-TH's WeatherObserved", temperature=30.8)
    assert weather["relativeHumidity"]["value"] == 0.505
    device = checked(a, f"urn:ngsi-ld:Device:th-{tag}", "the EM300-TH's Device", batteryLevel=0.92)
    assert device["rssi"]["value"] == -36 and device["rssi"]["snr"]["value"] == 10.5
    assert device["rssi"]["gatewayId"]["value"] == "0016c001f153a14c"
    checked(a, f"urn:ngsi-ld:Device:pm-{tag}", "the DL-PM's Device")
    # refused: a corrupt frame, a port the vendor does not document, a DevEUI nobody provisioned
    publish(*a.mqtt, [(lora.tts_topic("dlpm-1"), tts_uplink(lora, "dlpm-1", "70B3D57ED0000001", DL_PM[:-8])),
                      (lora.cs_topic("24E124136B502217"), cs_uplink(lora, "24E124136B502217", EM300_TH, fport=7)),
                      (lora.tts_topic("stranger"), tts_uplink(lora, "stranger", "70B3D57ED00000FF", DL_PM))])
    found = wait_for(lambda: len(a.rejections()) >= 3 and a.rejections(), 30, "three rejections")
    got = {(r["reason"], r["device_id"], r["protocol"]) for r in found}
    assert got == {("codec_error", f"pm-{tag}", "lorawan-tts"), ("codec_error", f"th-{tag}", "lorawan-chirpstack"),
                   ("unknown_device", "70B3D57ED00000FF", "lorawan-tts")}, got
    details = " | ".join(r["detail"] for r in found)
    assert "decentlab/dl-pm on FPort 1: payload too short" in details
    assert "milesight/em300-th on FPort 7: unknown FPort 7" in details
    assert "no device has DevEUI 70B3D57ED00000FF in tts application" in details
    assert a.metric("metropole_agent_messages_rejected_total", '{reason="codec_error"}') == 2
    other = httpx.get(f"{a.provisioning}/iot/rejections", headers=a.headers("someone-else"), timeout=5).json()
    assert other["count"] == 0, "rejections are the tenant's own"


def test_webhook_and_http_integration_through_a_socket(lora: Lora) -> None:
    a, tag = lora.a, lora.a.tag
    lora.provision(tts_device(lora, f"pm-{tag}", "70B3D57ED0000011"),
                   cs_device(lora, f"th-{tag}", "24E124136B502211"))
    headers = {**a.headers(), "Content-Type": "application/json"}
    r = httpx.post(f"{a.http}/iot/lorawan/tts", content=tts_uplink(lora, "dlpm-1", "70B3D57ED0000011", DL_PM),
                   headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{a.http}/iot/lorawan/chirpstack", params={"event": "up"}, headers=headers, timeout=30,
                   content=cs_uplink(lora, "24E124136B502211", EM300_TH))
    assert r.status_code == 200, r.text
    checked(a, f"urn:ngsi-ld:AirQualityObserved:pm-{tag}", "the webhook's AirQualityObserved", pm10=3.9)
    checked(a, f"urn:ngsi-ld:WeatherObserved:th-{tag}", "the HTTP integration's WeatherObserved", temperature=30.8)
    # a frame the codec refuses is taken and recorded (202), not failed: one device must not trip the webhook
    r = httpx.post(f"{a.http}/iot/lorawan/tts", content=tts_uplink(lora, "dlpm-1", "70B3D57ED0000011", "02"),
                   headers=headers, timeout=30)
    assert r.status_code == 202 and r.json()["name"] == "BAD_PAYLOAD", r.text
    r = httpx.post(f"{a.http}/iot/lorawan/chirpstack", params={"event": "up"}, headers=headers, timeout=30,
                   content=cs_uplink(lora, "AAAAAAAAAAAAAAAA", EM300_TH))
    assert r.status_code == 202 and r.json()["name"] == "DEVICE_NOT_FOUND", r.text
    r = httpx.post(f"{a.http}/iot/lorawan/tts", content=b"not json", headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["name"] == "BAD_PAYLOAD", r.text
    r = httpx.post(f"{a.http}/iot/lorawan/chirpstack", params={"event": "status"}, headers=headers, timeout=30,
                   content=b'{"deviceInfo": {}, "batteryLevel": 88.3}')
    assert r.status_code == 200, "events the agent does not use are taken"
    reasons = sorted((r["reason"], r["device_id"]) for r in a.rejections())
    assert reasons == [("codec_error", f"pm-{tag}"), ("malformed_payload", ""),
                       ("unknown_device", "AAAAAAAAAAAAAAAA")], reasons


class NetworkServer:
    """The downlink side of a network server: what the agent queues on its downlink topics."""

    def __init__(self, host: str, port: int, *topics: str) -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ns-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, orjson.loads(m.payload)))
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert subscribed.wait(10), "the network server could not subscribe"

    def next(self) -> tuple[str, dict[str, Any]]:
        return self.received.get(timeout=30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _command(a: Agent, entity_id: str, name: str, value: Any) -> None:
    r = httpx.patch(f"{a.broker_url}/ngsi-ld/v1/entities/{entity_id}/attrs/{name}", json={"value": value},
                    headers={"NGSILD-Tenant": a.service, "Link": LINK}, timeout=10)
    assert r.status_code == 204, r.text


def _status(a: Agent, entity_id: str, name: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (e := a.entity(entity_id)) and e.get(f"{name}_status", {}).get("value") == status and e,
        30, f"{name}_status {status}")
    return found


def test_downlinks_are_encoded_queued_on_the_network_server_and_followed(lora: Lora) -> None:
    a, tag = lora.a, lora.a.tag
    commands_pm = [{"name": "config", "type": "command", "lorawan": {"confirmed": True}}]
    lora.provision(tts_device(lora, f"pm-{tag}", "70B3D57ED0000021", commands=commands_pm),
                   cs_device(lora, f"th-{tag}", "24E124136B502221",
                             commands=[{"name": "report_interval", "type": "command"}]))
    ns = NetworkServer(*a.mqtt, lora.tts_topic("+", "down/push"), lora.cs_topic("+", "command/down"))
    try:
        pm, th = f"urn:ngsi-ld:AirQualityObserved:pm-{tag}", f"urn:ngsi-ld:WeatherObserved:th-{tag}"
        _status(a, pm, "config", "UNKNOWN")
        _status(a, th, "report_interval", "UNKNOWN")
        lora.links_up()
        # The Things Stack, a confirmed downlink: Decentlab's "set period" (dl_pm_vectors.json: 000102587e51, FPort 1)
        _command(a, pm, "config", {"command": "set period", "parameter": 600})
        topic, body = ns.next()
        assert topic == lora.tts_topic(f"pm-{tag}", "down/push")  # the TTS device id: the device_id by default
        (down,) = body["downlinks"]
        assert (down["f_port"], base64.b64decode(down["frm_payload"]).hex(), down["confirmed"]) == (
            1, "000102587e51", True)
        _status(a, pm, "config", "PENDING")
        ids = {"end_device_ids": {"device_id": f"pm-{tag}"}, "correlation_ids": ["as:downlink:01HX"]}
        publish(*a.mqtt, [(lora.tts_topic(f"pm-{tag}", "down/sent"), orjson.dumps(
            {**ids, "downlink_sent": {**down, "correlation_ids": down["correlation_ids"]}}))])
        _status(a, pm, "config", "DELIVERED")
        publish(*a.mqtt, [(lora.tts_topic(f"pm-{tag}", "down/ack"), orjson.dumps(
            {**ids, "downlink_ack": {**down, "correlation_ids": down["correlation_ids"]}}))])
        done = _status(a, pm, "config", "OK")
        assert done["config_info"]["value"] == "acknowledged by the device"
        # ChirpStack, unconfirmed: Milesight's report interval (em300_th_vectors.json: ff03b004, FPort 85)
        _command(a, th, "report_interval", 1200)
        topic, body = ns.next()
        assert topic == lora.cs_topic("24E124136B502221", "command/down")
        assert (body["devEui"], body["fPort"], base64.b64decode(body["data"]).hex(), body["confirmed"]) == (
            "24e124136b502221", 85, "ff03b004", False)
        publish(*a.mqtt, [(lora.cs_topic("24E124136B502221", "event/txack"), orjson.dumps(
            {"deviceInfo": {"devEui": "24e124136b502221", "applicationId": lora.cs_app},
             "queueItemId": body["id"], "fCntDown": 2, "gatewayId": "0016c001f153a14c"}))])
        sent = _status(a, th, "report_interval", "OK")
        assert sent["report_interval_info"]["value"] == "sent by the network server (unconfirmed downlink)"
        # a value the codec cannot encode: ERROR, and why
        _command(a, th, "report_interval", 99999)
        refused = _status(a, th, "report_interval", "ERROR")
        assert "report_interval must be within 1..64800" in refused["report_interval_info"]["value"]
        assert ns.received.empty(), "nothing was queued for it"
    finally:
        ns.close()


class Gate:
    """A TCP relay to a broker that opens when told to: until then nothing answers on its port.

    It lets the test's network server subscribe before the agent can reach the broker at all.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for s in [*self._sockets, *([self._server] if self._server else [])]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.mark.skipif(not shutil.which(MOSQUITTO) and not in_ci(), reason=f"needs the mosquitto binary ({MOSQUITTO})")
def test_a_downlink_waits_for_its_network_server_across_an_agent_restart(lora: Lora, tmp_path: Path) -> None:
    """The network server's broker does not answer: the command is kept (UNSENT), queued once it answers."""
    a, tag = lora.a, lora.a.tag
    server = Mosquitto(tmp_path / "ns")
    gate = Gate((server.host, server.port))  # the agent reaches the network server's broker through it
    device = cs_device(lora, f"th-{tag}", "24E124136B502231", commands=[{"name": "report_interval"}])
    device["internal_attributes"]["lorawan"]["application_server"]["port"] = gate.port
    lora.provision(device)
    th = f"urn:ngsi-ld:WeatherObserved:th-{tag}"
    _status(a, th, "report_interval", "UNKNOWN")
    _command(a, th, "report_interval", 1200)
    _status(a, th, "report_interval", "PENDING")
    a.agent.stop()  # the agent restarts meanwhile: the command waits in its registry
    a.agent.start()
    server.start()
    try:
        ns = NetworkServer(server.host, server.port, lora.cs_topic("+", "command/down"))
        try:
            gate.open()  # only now can the agent connect, and queue what waited
            topic, body = ns.next()
            assert topic == lora.cs_topic("24E124136B502231", "command/down")
            assert base64.b64decode(body["data"]).hex() == "ff03b004"
            publish(server.host, server.port, [(lora.cs_topic("24E124136B502231", "event/txack"), orjson.dumps(
                {"deviceInfo": {"devEui": "24e124136b502231"}, "queueItemId": body["id"]}))])
            _status(a, th, "report_interval", "OK")
        finally:
            ns.close()
    finally:
        gate.close()
        server.stop()
