"""Transports: topic parsing, the HTTP app, MQTT manual acknowledgement (real Mosquitto), the embedded broker."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.outbox import Outbox
from agents.embedded_mqtt import EmbeddedMqttBroker, topic_matches
from agents.messages import EntityUpdate, Inbound
from agents.transports.http import create_http_app
from agents.transports.intake import Intake
from agents.transports.mqtt import MqttOptions, MqttTransport, _sniff, parse_topic


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("/key/dev/attrs", ("", "key", "dev", None)),
        ("/key/dev/attrs/t", ("", "key", "dev", "t")),
        ("/json/key/dev/attrs", ("json", "key", "dev", None)),
        ("/json/key/dev/attrs/h", ("json", "key", "dev", "h")),
        ("/ul/key/dev/attrs", ("ul", "key", "dev", None)),
        ("/json/dev/attrs/x", ("", "json", "dev", "x")),  # apikey "json" on a legacy topic
        ("/key/dev/cmdexe", None),
        ("key/dev/attrs", None),
        ("/key/dev/attrs/a/b", None),
    ],
)
def test_parse_topic(topic: str, expected: Any) -> None:
    assert parse_topic(topic) == expected


def test_unprefixed_topics_tell_the_protocol_from_the_payload() -> None:
    assert _sniff(b' {"t": 1}') == "json"
    assert _sniff(b"[{}]") == "json"
    assert _sniff(b"t|21|h|40") == "ul"
    assert _sniff(b"21.5") == "json"


def test_topic_matching_of_the_embedded_broker() -> None:
    assert topic_matches("/+/+/attrs", "/k/d/attrs")
    assert not topic_matches("/+/+/attrs", "/json/k/d/attrs")
    assert topic_matches("/json/#", "/json/k/d/attrs/t")
    assert not topic_matches("#", "$SYS/x")


def _update(msg: Inbound) -> list[EntityUpdate]:
    if msg.device_id == "bad":
        return []  # rejected: the ingestor records it and returns nothing
    entity = {"id": f"urn:ngsi-ld:AirQualityObserved:{msg.device_id}", "type": "AirQualityObserved",
              "no2": {"type": "Property", "value": msg.payload.decode()}}
    return [EntityUpdate("aix", "/", None, entity, ["https://smartdatamodels.org/context.jsonld"],
                         msg.device_id, msg.apikey)]


class FailingOutbox(Outbox):
    """An outbox whose commits fail while `failing` is set (a full disk, say); `refused` holds what it refused."""

    failing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: list[str] = []  # the devices of the refused items (appended from the intake's thread)

    def append(self, items: Any) -> int:
        if self.failing:
            items = list(items)
            self.refused.extend(i.device for i in items)
            raise OSError("disk full")
        return super().append(items)


def test_http_answers_200_once_durable_and_503_when_not(tmp_path: Path) -> None:
    outbox = FailingOutbox(tmp_path / "o.db")

    async def go() -> None:
        intake = Intake(_update, outbox)
        await intake.start()
        app = create_http_app(intake)
        async with httpx.AsyncClient(app=app, base_url="http://agent") as client:
            r = await client.post("/iot/json", params={"k": "key", "i": "d1"}, content=b"41")
            assert r.status_code == 200 and "x-processing-time" in r.headers
            r = await client.post("/iot/json/attrs/no2", params={"k": "key", "i": "d2"}, content=b"7")
            assert r.status_code == 200
            r = await client.post("/iot/d", params={"k": "key", "i": "bad"}, content=b"t|1")
            assert r.status_code == 200, "an ingest function returning a list says nothing of rejections"
            r = await client.post("/iot/json", params={"i": "d1"}, content=b"{}")
            assert r.status_code == 400 and r.json() == {  # iotagent-json lib/errors.js:45-49
                "name": "MANDATORY_PARAMS_NOT_FOUND",
                "message": 'Some of the mandatory params weren\'t found in the request: ["API Key"]'}
            outbox.failing = True
            r = await client.post("/iot/json", params={"k": "key", "i": "d3"}, content=b"1")
            assert r.status_code == 503
        await intake.stop()

    asyncio.run(go())
    assert [r.item.device for r in outbox.lease(10)] == ["aix|key|d1", "aix|key|d2"]
    outbox.close()


def _run_transport(outbox: Outbox, options: MqttOptions, stop: threading.Event, ready: threading.Event) -> None:
    async def go() -> None:
        intake = Intake(_update, outbox)
        await intake.start()
        transport = MqttTransport(options, intake)
        transport.start()
        await asyncio.to_thread(transport.connected.wait, 10)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await asyncio.to_thread(transport.stop)
        await intake.stop()

    asyncio.run(go())


def _publish(host: str, port: int, topic: str, payload: bytes) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.connect(host, port)
    pub.loop_start()
    pub.publish(topic, payload, qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()


def _session(outbox: Outbox, options: MqttOptions) -> tuple[threading.Thread, threading.Event]:
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=_run_transport, args=(outbox, options, stop, ready), daemon=True)
    t.start()
    assert ready.wait(15), "the transport did not connect"
    return t, stop


def _rows_of(outbox: Outbox, key: str) -> int:
    """Rows of this test's apikey (other tests and benchmarks may publish on the same Mosquitto)."""
    with sqlite3.connect(outbox.path) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE device LIKE ?", (f"%|{key}|%",)).fetchone()[0])


def _wait_rows(outbox: Outbox, n: int, key: str = "key", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _rows_of(outbox, key) < n:
        assert time.monotonic() < deadline, f"{_rows_of(outbox, key)} rows of {key}, expected {n}"
        time.sleep(0.05)


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", [5, 4])
def test_mqtt_acknowledges_only_what_the_outbox_took(mqtt_broker: tuple[str, int], tmp_path: Path,
                                                      protocol: int) -> None:
    """A commit that fails sends no PUBACK: the broker gives the message again to the next session."""
    host, port = mqtt_broker
    key = f"k{uuid.uuid4().hex[:8]}"
    options = MqttOptions(host=host, port=port, client_id=f"metropole-test-{key}", protocol=protocol,
                          session_expiry=60)
    outbox = FailingOutbox(tmp_path / "o.db")
    outbox.failing = True
    t, stop = _session(outbox, options)
    _publish(host, port, f"/json/{key}/d1/attrs", b"41")
    # the precondition: the message reached the agent and its commit failed (so no PUBACK)
    deadline = time.monotonic() + 10
    while not any(f"|{key}|" in device for device in outbox.refused):
        assert time.monotonic() < deadline, "the message never reached the failing commit"
        time.sleep(0.05)
    assert _rows_of(outbox, key) == 0
    stop.set()
    t.join(10)
    outbox.failing = False
    _publish(host, port, f"/json/{key}/d1/attrs", b"42")  # published while the agent is away: queued for it
    t, stop = _session(outbox, options)  # same client id: the session resumes
    _wait_rows(outbox, 2, key)
    stop.set()
    t.join(10)
    rows = [r for r in outbox.lease(100_000) if f"|{key}|" in r.item.device]
    assert [r.item.entity["no2"]["value"] for r in rows] == ["41", "42"], "redelivered first, in order"
    outbox.close()


def test_transport_over_the_embedded_broker_with_a_persistent_session(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    broker = EmbeddedMqttBroker("127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(5)
    try:
        options = MqttOptions(port=broker.port, client_id="agent-embedded", protocol=4)
        t, stop = _session(outbox, options)
        _publish("127.0.0.1", broker.port, "/ul/key/noise1/attrs", b"l|61.5")
        _wait_rows(outbox, 1)
        stop.set()
        t.join(10)
        _publish("127.0.0.1", broker.port, "/key/noise1/attrs/l", b"62")
        t, stop = _session(outbox, options)
        _wait_rows(outbox, 2)
        stop.set()
        t.join(10)
    finally:
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert [r.item.entity["no2"]["value"] for r in outbox.lease(10)] == ["l|61.5", "62"]
    outbox.close()
