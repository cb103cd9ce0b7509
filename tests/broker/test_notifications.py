"""Notifications end to end: a real broker, a real HTTP receiver, the real Mosquitto.

The broker of this module retries fast (METROPOLE_NOTIFY_RETRY_MAX=0.5) so
that the receiver-down tests finish quickly; the restart test runs the
broker as a separate process (`python -m metropole broker`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker.settings import BrokerSettings
from tests import services
from tests.broker.conftest import API, RunningBroker, free_port, link, new_id
from tests.pg import store_url

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """An HTTP notification receiver that can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None, status: int = 200, delay: float = 0.0) -> None:
        self.port = port or free_port()
        self.delay = delay  # seconds between taking a notification and answering it (a slow subscriber)
        self.url = f"http://127.0.0.1:{self.port}/notify"
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.status = status
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner._connections.add(self.connection)

            def finish(self) -> None:
                owner._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.status == 200:
                    owner.received.append((dict(self.headers), json.loads(body)))
                if owner.delay:
                    time.sleep(owner.delay)
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut the kept-alive connections too (else the broker would go on delivering on them)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def entities(self) -> list[dict[str, Any]]:
        return [e for _, n in self.received for e in n["data"]]

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {len(self.received)} notifications")
            time.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def notify_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module (fast retries) on one store."""
    data = tmp_path_factory.mktemp(f"notify-{request.param}")
    saved = {k: os.environ.get(k) for k in ("METROPOLE_NOTIFY_RETRY_MAX", "METROPOLE_NOTIFY_RETRY_INITIAL")}
    os.environ.update(METROPOLE_NOTIFY_RETRY_MAX="0.5", METROPOLE_NOTIFY_RETRY_INITIAL="0.1")
    try:
        with store_url(request.param, data / "broker.db", "test_notify") as url:
            settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data, store_url=url)
            with RunningBroker(settings) as broker:
                yield broker.url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def api(notify_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=notify_url + API, headers={"NGSILD-Tenant": f"n{uuid.uuid4().hex[:10]}"},
                      timeout=30) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscribe(api: httpx.Client, uri: str, headers: dict[str, str] | None = None, **members: Any) -> str:
    notification = members.pop("notification", {})
    body = {"type": "Subscription", "entities": [{"type": "Thing"}], **members,
            "notification": {**notification, "endpoint": {"uri": uri, **notification.get("endpoint", {})}}}
    r = api.post("/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def thing(eid: str, **attrs: Any) -> dict[str, Any]:
    return {"id": eid, "type": "Thing", **{k: {"type": "Property", "value": v} for k, v in attrs.items()}}


def test_create_update_delete_notify_with_changes(api: httpx.Client, receiver: Receiver) -> None:
    sid = subscribe(api, receiver.url, notificationTrigger=["entityCreated", "entityUpdated", "entityDeleted"],
                    notification={"showChanges": True})
    eid = new_id()
    assert api.post("/entities", json=thing(eid, temperature=20, humidity=50)).status_code == 201
    assert api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 21}}).status_code == 204
    assert api.delete(f"/entities/{eid}/attrs/humidity").status_code == 204
    assert api.delete(f"/entities/{eid}").status_code == 204
    receiver.wait(lambda: len(receiver.entities()) >= 4)
    headers, first = receiver.received[0]
    assert first["type"] == "Notification" and first["subscriptionId"] == sid and first["id"].startswith("urn:")
    assert headers["Content-Type"] == "application/json" and "rel=" in headers["Link"]
    assert headers["NGSILD-Tenant"] == api.headers["NGSILD-Tenant"]
    created, updated, attr_deleted, deleted = receiver.entities()[:4]  # a backlog may share a notification
    assert created["temperature"] == {"type": "Property", "value": 20}
    assert updated["temperature"] == {"type": "Property", "value": 21, "previousValue": 20}
    assert attr_deleted["humidity"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": 50}
    assert deleted["id"] == eid and "deletedAt" in deleted
    # outcomes are written in batches, a moment after delivery
    receiver.wait(lambda: api.get(f"/subscriptions/{sid}").json()["notification"].get("timesSent", 0) >= 4)
    status = api.get(f"/subscriptions/{sid}").json()["notification"]
    assert status["status"] == "ok" and "lastSuccess" in status and "lastNotification" in status


def test_status_members_show_an_answered_notification_at_once(api: httpx.Client) -> None:
    """A subscriber reading its subscription as it answers a notification sees that delivery (5.8.6)."""
    slow = Receiver(delay=0.3).start()  # the subscription is read while the answer is still to come
    try:
        sid = subscribe(api, slow.url)
        eid = new_id()
        api.post("/entities", json=thing(eid, temperature=0))
        def received(n: int) -> Callable[[], bool]:
            return lambda: len(slow.received) >= n

        for k in range(1, 4):
            slow.wait(received(k))
            note = api.get(f"/subscriptions/{sid}").json()["notification"]
            assert note["status"] == "ok" and note["timesSent"] >= k and "lastSuccess" in note
            api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": k}})
    finally:
        slow.stop()


def test_watched_attributes_q_and_default_triggers(api: httpx.Client, receiver: Receiver) -> None:
    subscribe(api, receiver.url, watchedAttributes=["temperature"], q="temperature>25")
    eid = new_id()
    api.post("/entities", json=thing(eid, temperature=20, humidity=1))
    api.patch(f"/entities/{eid}/attrs", json={"humidity": {"type": "Property", "value": 2}})      # not watched
    api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 26}})  # watched and q
    api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 24}})  # q fails
    api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 30}})
    api.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 40}})  # sentinel
    # notifications of one subscription arrive in order: once the sentinel is in, nothing before it is still to come
    receiver.wait(lambda: any(e["temperature"]["value"] == 40 for e in receiver.entities()))
    assert [e["temperature"]["value"] for e in receiver.entities()] == [26, 30, 40]
    api.delete(f"/entities/{eid}")  # entityDeleted is not a default trigger
    sentinel = new_id()
    api.post("/entities", json=thing(sentinel, temperature=50))  # entityCreated is, and q holds
    receiver.wait(lambda: any(e["id"] == sentinel for e in receiver.entities()))
    assert [(e["id"], e["temperature"]["value"]) for e in receiver.entities()][3:] == [(sentinel, 50)]


def test_format_attributes_context_and_receiver_info(api: httpx.Client, receiver: Receiver,
                                                     context_server: Any) -> None:
    url = context_server.publish({"temp": "https://example.org/ns/temperature"})
    subscribe(api, receiver.url, headers=link(url),
              notification={"format": "keyValues", "attributes": ["temp"],
                            "endpoint": {"receiverInfo": [{"key": "X-Token", "value": "abc"}]}})
    eid = new_id()
    api.post("/entities", json=thing(eid, temp=5, other=1), headers=link(url))
    receiver.wait(lambda: len(receiver.received) >= 1)
    headers, note = receiver.received[0]
    assert note["data"] == [{"id": eid, "type": "Thing", "temp": 5}]
    assert headers["X-Token"] == "abc" and url in headers["Link"]


def test_json_ld_concise_and_sys_attrs(api: httpx.Client, receiver: Receiver) -> None:
    subscribe(api, receiver.url, notification={"format": "concise", "sysAttrs": True,
                                               "endpoint": {"accept": "application/ld+json"}})
    eid = new_id()
    api.post("/entities", json=thing(eid, temperature=5))
    receiver.wait(lambda: len(receiver.received) >= 1)
    headers, note = receiver.received[0]
    assert headers["Content-Type"] == "application/ld+json" and "Link" not in headers and "@context" in note
    entity = note["data"][0]
    assert entity["temperature"]["value"] == 5 and "createdAt" in entity and "modifiedAt" in entity
    assert entity["@context"] == note["@context"]  # each entity a JSON-LD document of its own too


def test_key_values_with_sys_attrs(api: httpx.Client, receiver: Receiver) -> None:
    """Clause 5.8.6: sysAttrs gives createdAt and modifiedAt in every format, deletedAt for a deleted entity."""
    subscribe(api, receiver.url, notificationTrigger=["entityCreated", "entityDeleted"],
              notification={"format": "keyValues", "sysAttrs": True})
    eid = new_id()
    api.post("/entities", json=thing(eid, temperature=5))
    api.delete(f"/entities/{eid}")
    receiver.wait(lambda: len(receiver.entities()) >= 2)
    created, deleted = receiver.entities()[:2]
    assert created["temperature"] == 5 and {"createdAt", "modifiedAt"} <= created.keys()
    assert set(deleted) == {"id", "type", "createdAt", "modifiedAt", "deletedAt"}


def test_deleted_attribute_in_each_format(api: httpx.Client, receiver: Receiver) -> None:
    """A deleted attribute is the NGSI-LD Null: a normalized attribute keeps its type, concise is the bare URI."""
    subscribe(api, receiver.url, watchedAttributes=["humidity"], notificationTrigger=["attributeDeleted"])
    subscribe(api, receiver.url, watchedAttributes=["humidity"], notificationTrigger=["attributeDeleted"],
              notification={"format": "concise"})
    eid = new_id()
    api.post("/entities", json={**thing(eid, humidity=50), "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"}})
    assert api.delete(f"/entities/{eid}/attrs/humidity").status_code == 204
    receiver.wait(lambda: len(receiver.entities()) >= 2)
    forms = sorted((e["humidity"] for e in receiver.entities()), key=str)
    assert forms == ["urn:ngsi-ld:null", {"type": "Property", "value": "urn:ngsi-ld:null"}]


def test_deleting_one_dataset_instance_is_an_attribute_deletion(api: httpx.Client, receiver: Receiver) -> None:
    """Instances are told apart by datasetId: deleting one notifies attributeDeleted with the rest and a Null."""
    subscribe(api, receiver.url, watchedAttributes=["name"], notificationTrigger=["attributeDeleted"])
    eid = new_id()
    fr = "urn:ngsi-ld:Dataset:fr"
    api.post("/entities", json={"id": eid, "type": "Thing", "name": [
        {"type": "Property", "value": "Tower"}, {"type": "Property", "value": "Tour", "datasetId": fr},
        {"type": "Property", "value": "Turm", "datasetId": "urn:ngsi-ld:Dataset:de"}]})
    assert api.delete(f"/entities/{eid}/attrs/name", params={"datasetId": fr}).status_code == 204
    receiver.wait(lambda: len(receiver.entities()) >= 1)
    name = receiver.entities()[0]["name"]
    assert sorted(name, key=lambda i: i.get("datasetId", "")) == [
        {"type": "Property", "value": "Tower"},
        {"type": "Property", "value": "Turm", "datasetId": "urn:ngsi-ld:Dataset:de"},
        {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": fr},
    ]
    assert api.delete(f"/entities/{eid}/attrs/name", params={"deleteAll": "true"}).status_code == 204
    receiver.wait(lambda: len(receiver.entities()) >= 2)
    # every instance gone: the attribute itself is deleted, one Null
    assert receiver.entities()[1]["name"] == {"type": "Property", "value": "urn:ngsi-ld:null"}


def test_entity_deletion_is_the_deletion_of_its_watched_attributes(api: httpx.Client, receiver: Receiver) -> None:
    """Without entityDeleted, deleting an entity notifies attributeDeleted for the watched attributes."""
    subscribe(api, receiver.url, watchedAttributes=["humidity"], notificationTrigger=["attributeDeleted"],
              notification={"sysAttrs": True})
    eid = new_id()
    api.post("/entities", json=thing(eid, humidity=50, temperature=5))
    assert api.delete(f"/entities/{eid}").status_code == 204
    receiver.wait(lambda: len(receiver.entities()) >= 1)
    entity = receiver.entities()[0]
    assert {"id", "type", "deletedAt", "createdAt", "modifiedAt", "humidity"} == set(entity)
    humidity = entity["humidity"]
    assert humidity["value"] == "urn:ngsi-ld:null" and {"createdAt", "modifiedAt", "deletedAt"} <= humidity.keys()


def test_paused_subscription_does_not_notify(api: httpx.Client, receiver: Receiver) -> None:
    """Sentinels instead of waiting: an active subscription shows the change was dispatched while the other was
    paused; after resuming, the paused one's first notification is of a later entity, and nothing came before it."""
    sid = subscribe(api, receiver.url, isActive=False)
    watcher = subscribe(api, receiver.url)
    paused_eid, later_eid = new_id(), new_id()

    def notified(sub: str) -> list[str]:
        return [e["id"] for _, n in list(receiver.received) if n["subscriptionId"] == sub for e in n["data"]]

    api.post("/entities", json=thing(paused_eid, temperature=5))
    receiver.wait(lambda: paused_eid in notified(watcher))  # the change is dispatched, the paused one skipped
    assert api.patch(f"/subscriptions/{sid}", json={"isActive": True}).status_code == 204
    api.post("/entities", json=thing(later_eid, temperature=6))
    receiver.wait(lambda: later_eid in notified(sid))
    assert notified(sid) == [later_eid]  # in order per subscription: the paused change would have come first


def test_periodic_time_interval(api: httpx.Client, receiver: Receiver) -> None:
    eid = new_id()
    api.post("/entities", json=thing(eid, temperature=5))
    subscribe(api, receiver.url, timeInterval=1)
    receiver.wait(lambda: len(receiver.received) >= 2, timeout=10)
    assert all(n["data"][0]["id"] == eid for _, n in receiver.received)


def test_failed_status_then_ok(api: httpx.Client) -> None:
    down = Receiver(status=500).start()
    try:
        sid = subscribe(api, down.url)
        api.post("/entities", json=thing(new_id(), temperature=5))
        deadline = time.monotonic() + 10
        while api.get(f"/subscriptions/{sid}").json()["notification"].get("status") != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        failed = api.get(f"/subscriptions/{sid}").json()["notification"]
        assert failed["timesFailed"] >= 1 and "lastFailure" in failed
        down.status = 200
        down.wait(lambda: len(down.received) == 1)
        # outcomes are written in batches, a moment after delivery
        down.wait(lambda: api.get(f"/subscriptions/{sid}").json()["notification"]["status"] == "ok")
    finally:
        down.stop()


def test_each_instance_of_a_repeated_id_is_notified_in_order(api: httpx.Client, receiver: Receiver) -> None:
    """Clauses 5.5.11.2, 5.5.11.3: one entity 5 times in a batch upsert is 5 notifications, in array order."""
    subscribe(api, receiver.url, notificationTrigger=["entityCreated", "entityUpdated"])
    eid, sentinel = new_id(), new_id()
    body = [{"id": eid, "type": "Thing",
             "no2": {"type": "Property", "value": k, "observedAt": f"2026-03-01T08:00:0{k}.000Z"}} for k in range(5)]
    for params in ({}, {"options": "update"}):
        assert api.post("/entityOperations/upsert", params=params, json=body).status_code in (201, 204)
    # a later change of another entity: once it is notified, everything before it was
    assert api.post("/entities", json=thing(sentinel, no2=-1)).status_code == 201
    receiver.wait(lambda: any(e["id"] == sentinel for e in receiver.entities()))
    got = [(e["no2"]["value"], e["no2"]["observedAt"]) for e in receiver.entities() if e["id"] == eid]
    assert got == [(k, f"2026-03-01T08:00:0{k}.000Z") for k in range(5)] * 2
    assert api.get(f"/entities/{eid}").json()["no2"]["value"] == 4


def test_receiver_killed_during_burst_gets_everything_in_order(api: httpx.Client, receiver: Receiver) -> None:
    sid = subscribe(api, receiver.url)
    ids = [new_id() for _ in range(4)]
    for eid in ids:
        api.post("/entities", json=thing(eid, n=0))
    rounds = 60
    for i in range(1, rounds + 1):
        if i == 15:
            receiver.stop()
        for eid in ids:
            assert api.patch(f"/entities/{eid}/attrs", json={"n": {"type": "Property", "value": i}}).status_code == 204
    # the precondition, not a pause: deliveries failed while the receiver was away
    receiver.wait(lambda: api.get(f"/subscriptions/{sid}").json()["notification"].get("timesFailed", 0) >= 1)
    receiver.start()
    expected = {(eid, i) for eid in ids for i in range(rounds + 1)}
    receiver.wait(lambda: {(e["id"], e["n"]["value"]) for e in receiver.entities()} >= expected, timeout=60)
    for eid in ids:  # per-subscription order kept: each entity's values arrive in increasing order
        values = [e["n"]["value"] for e in receiver.entities() if e["id"] == eid]
        assert values == sorted(values)


def test_geojson_backlog_reaches_a_receiver_that_comes_back(api: httpx.Client, receiver: Receiver) -> None:
    """A backlog of GeoJSON notifications (data: a FeatureCollection, not an array) is delivered once the
    receiver is back; joining it as an array stopped the subscription's delivery worker at every attempt."""
    sid = subscribe(api, receiver.url, notification={"endpoint": {"accept": "application/geo+json"}})
    eid = new_id()
    api.post("/entities", json={**thing(eid, n=0), "location": {"type": "GeoProperty",
                                                               "value": {"type": "Point", "coordinates": [5.4, 43.3]}}})
    receiver.wait(lambda: len(receiver.received) >= 1)
    receiver.stop()
    for i in range(1, 6):
        assert api.patch(f"/entities/{eid}/attrs", json={"n": {"type": "Property", "value": i}}).status_code == 204
    # the precondition, not a pause: deliveries failed while the receiver was away, so a backlog exists
    receiver.wait(lambda: api.get(f"/subscriptions/{sid}").json()["notification"].get("timesFailed", 0) >= 1)
    receiver.start()

    def values() -> list[int]:
        return [f["properties"]["n"]["value"] for _, n in receiver.received
                for f in n["data"]["features"]]

    receiver.wait(lambda: values()[-1:] == [5], timeout=30)
    assert all(n["data"]["type"] == "FeatureCollection" for _, n in receiver.received)
    assert values() == sorted(values()) and set(values()) == set(range(6))


def test_mqtt_delivery_through_mosquitto(api: httpx.Client) -> None:
    host, port = services.require_mqtt()
    topic = f"metropole/test/{uuid.uuid4().hex[:8]}"
    messages: list[dict[str, Any]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: messages.append(json.loads(m.payload))
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(15), "no SUBACK from the MQTT broker"
        subscribe(api, f"mqtt://{host}:{port}/{topic}",
                  notification={"endpoint": {"notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                                             "receiverInfo": [{"key": "X-Token", "value": "m"}]}})
        eid = new_id()
        api.post("/entities", json=thing(eid, temperature=5))
        deadline = time.monotonic() + 15
        while not messages:
            assert time.monotonic() < deadline, "no MQTT notification"
            time.sleep(0.05)
        message = messages[0]
        assert message["metadata"]["Content-Type"] == "application/json" and "Link" in message["metadata"]
        assert message["metadata"]["X-Token"] == "m"
        assert message["body"]["type"] == "Notification" and message["body"]["data"][0]["id"] == eid
    finally:
        client.loop_stop()
        client.disconnect()


def _start_broker(port: int, data: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "METROPOLE_NOTIFY_RETRY_MAX": "0.5", "METROPOLE_NOTIFY_RETRY_INITIAL": "0.1",
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/ngsi-ld/v1/subscriptions", timeout=1)
            return process
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "broker did not start"
            time.sleep(0.1)


def test_queued_notifications_survive_a_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver()  # not listening yet: every notification stays queued
    process = _start_broker(port, tmp_path)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", timeout=30)
        sid = subscribe(api, receiver.url)
        ids = [new_id() for _ in range(20)]
        for eid in ids:
            assert api.post("/entities", json=thing(eid, temperature=1)).status_code == 201
        deadline = time.monotonic() + 15
        while api.get(f"/subscriptions/{sid}").json()["notification"].get("timesFailed", 0) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.terminate()
        assert process.wait(timeout=30) is not None
        receiver.start()
        process = _start_broker(port, tmp_path)
        receiver.wait(lambda: {e["id"] for e in receiver.entities()} >= set(ids), timeout=40)
        assert [e["id"] for e in receiver.entities()][: len(ids)] == ids  # in order
    finally:
        process.terminate()
        process.wait(timeout=30)
        receiver.stop()


# --- Linked Entity retrieval in notifications (notification.join, clauses 5.2.14.1, 5.8.6, 4.5.23) ---------

def _linked_world(api: httpx.Client) -> tuple[str, str, str]:
    """A Building located in a City that is in a Country; the ids of the three."""
    building, city, country = new_id(), new_id(), new_id()
    assert api.post("/entities", json={"id": country, "type": "Country",
                                       "name": {"type": "Property", "value": "France"}}).status_code == 201
    assert api.post("/entities", json={"id": city, "type": "City", "name": {"type": "Property", "value": "Paris"},
                                       "isInCountry": {"type": "Relationship", "object": country}}).status_code == 201
    assert api.post("/entities", json={"id": building, "type": "Building",
                                       "locatedAt": {"type": "Relationship", "object": city}}).status_code == 201
    return building, city, country


def _building_subscription(api: httpx.Client, receiver: Receiver, **notification: Any) -> str:
    return subscribe(api, receiver.url, entities=[{"type": "Building"}], notification=notification)


def _rename(api: httpx.Client, building: str) -> None:
    r = api.patch(f"/entities/{building}/attrs", json={"name": {"type": "Property", "value": "Tour Eiffel"}})
    assert r.status_code == 204


def test_join_flat_appends_the_linked_entities_up_to_join_level(api: httpx.Client, receiver: Receiver) -> None:
    building, city, country = _linked_world(api)
    _building_subscription(api, receiver, join="flat", joinLevel=1)
    _building_subscription(api, receiver, join="flat", joinLevel=2)
    _rename(api, building)
    receiver.wait(lambda: len(receiver.received) >= 2)
    by_size = sorted((n["data"] for _, n in receiver.received), key=len)
    level1, level2 = by_size
    assert [e["id"] for e in level1] == [building, city]
    assert level1[0]["name"] == {"type": "Property", "value": "Tour Eiffel"}
    assert level1[1] == {"id": city, "type": "City", "name": {"type": "Property", "value": "Paris"},
                         "isInCountry": {"type": "Relationship", "object": country}}
    assert [e["id"] for e in level2] == [building, city, country]


def test_join_inline_nests_the_linked_entity(api: httpx.Client, receiver: Receiver) -> None:
    building, city, country = _linked_world(api)
    _building_subscription(api, receiver, join="inline")
    _rename(api, building)
    receiver.wait(lambda: len(receiver.received) >= 1)
    (entity,) = receiver.received[0][1]["data"]
    assert entity["locatedAt"] == {"type": "Relationship", "object": city, "entity": {
        "id": city, "type": "City", "name": {"type": "Property", "value": "Paris"},
        "isInCountry": {"type": "Relationship", "object": country}}}


def test_join_inline_simplified_replaces_the_object_and_attributes_select_the_linking_entity_only(
        api: httpx.Client, receiver: Receiver) -> None:
    """`attributes` projects the notified entity; the Linked Entity comes whole (as in GET /entities with attrs)."""
    building, city, country = _linked_world(api)
    _building_subscription(api, receiver, join="inline", format="keyValues", attributes=["locatedAt"])
    _rename(api, building)
    receiver.wait(lambda: len(receiver.received) >= 1)
    assert receiver.received[0][1]["data"] == [{"id": building, "type": "Building", "locatedAt": {
        "id": city, "type": "City", "name": "Paris", "isInCountry": country}}]


def test_join_none_and_bad_join_members(api: httpx.Client, receiver: Receiver) -> None:
    building, _, _ = _linked_world(api)
    _building_subscription(api, receiver, join="@none")
    for bad in ({"join": "deep"}, {"join": "flat", "joinLevel": 0}):
        body = {"type": "Subscription", "entities": [{"type": "Building"}],
                "notification": {"endpoint": {"uri": receiver.url}, **bad}}
        r = api.post("/subscriptions", json=body)
        assert r.status_code == 400 and r.json()["type"].endswith("BadRequestData"), r.text
    _rename(api, building)
    receiver.wait(lambda: len(receiver.received) >= 1)
    assert [e["id"] for e in receiver.received[0][1]["data"]] == [building]


def test_join_flat_in_periodic_notifications_lists_each_linked_entity_once(api: httpx.Client,
                                                                         receiver: Receiver) -> None:
    """timeInterval notifications carry every matching entity, then their Linked Entities, each once."""
    building, city, country = _linked_world(api)
    other = new_id()
    assert api.post("/entities", json={"id": other, "type": "Building",
                                       "locatedAt": {"type": "Relationship", "object": city}}).status_code == 201
    subscribe(api, receiver.url, entities=[{"type": "Building"}], timeInterval=1,
              notification={"join": "flat", "joinLevel": 2})
    receiver.wait(lambda: len(receiver.received) >= 1)
    ids = [e["id"] for e in receiver.received[0][1]["data"]]
    assert sorted(ids[:2]) == sorted([building, other]) and ids[2:] == [city, country]
