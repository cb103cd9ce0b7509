"""Distributed subscriptions between real broker processes on loopback (clauses 5.8.1.4, 5.8.2.4, 5.8.5.4).

The metropolitan broker (M) runs on each store (SQLite file, PostgreSQL schema); the towns on SQLite.
Each test works in a tenant of its own, named by the registrations at M, so copies of a subscription
land in that tenant at the town. Waiting for something done in the background (a retried copy) polls
the town until it is there; nothing asserts how long it took.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.procs import Managed, broker_process, free_port
from tests import services
from tests.broker.federation_receiver import Receiver
from tests.pg import store_url

API = "/ngsi-ld/v1"
ENV = {"METROPOLE_BROKER_FEDERATION_TIMEOUT": "1.5", "METROPOLE_NOTIFY_RETRY_MAX": "1"}
T = TypeVar("T")


def town_process(data: Path, port: int | None = None) -> Managed:
    proc = broker_process(data, port, log=data / "broker.log")
    proc.env = dict(ENV)
    return proc


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def metro(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Managed, str]]:
    """The metropolitan broker on one store: (process, base URL); tests may restart it."""
    data = tmp_path_factory.mktemp(f"fedsubs-M-{request.param}")
    with store_url(request.param, data / "broker.db", "test_fedsubs") as url:
        port = free_port()
        proc = broker_process(data, port, log=data / "broker.log")
        proc.env = {**ENV, "METROPOLE_BROKER_STORE": url}
        proc.start()
        try:
            yield proc, f"http://127.0.0.1:{port}"
        finally:
            proc.stop()


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = town_process(tmp_path_factory.mktemp("fedsubs-A"), port)
    proc.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture
def tenant() -> str:
    return f"fs{uuid.uuid4().hex[:10]}"


def client(base: str, tenant: str) -> httpx.Client:
    return httpx.Client(base_url=base + API, headers={"NGSILD-Tenant": tenant}, timeout=30)


def sensor(entity_id: str, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Sensor", **{k: {"type": "Property", "value": v} for k, v in attrs.items()}}


def ok(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, response.text
    return response


def register(m: httpx.Client, source: str, tenant: str) -> str:
    r = ok(m.post("/csourceRegistrations", json={
        "type": "ContextSourceRegistration", "endpoint": source, "tenant": tenant,
        "information": [{"entities": [{"type": "Sensor"}]}]}), 201)
    return r.headers["location"].rsplit("/", 1)[1]


def subscribe(m: httpx.Client, receiver: Receiver, **members: Any) -> str:
    r = ok(m.post("/subscriptions", json={
        "type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["no2"],
        "notification": {"format": "keyValues", "endpoint": {"uri": receiver.url, "accept": "application/json"}},
        **members}), 201)
    return r.headers["location"].rsplit("/", 1)[1]


def copies(town: httpx.Client) -> list[dict[str, Any]]:
    return list(ok(town.get("/subscriptions"), 200).json())


def relayed_value(receiver: Receiver, sub_id: str, entity_id: str, attr: str, value: Any) -> None:
    """Wait for the relayed notification carrying `value`; initial notifications (old values) may come first."""
    for _ in range(12):
        note = receiver.next()
        assert note["subscriptionId"] == sub_id
        seen = {e["id"]: e.get(attr) for e in note["data"]}
        if seen.get(entity_id) == value:
            return
    raise AssertionError(f"no notification of {entity_id} {attr}={value!r}")


def eventually(probe: Callable[[], T | None], deadline: float = 90) -> T:
    """What `probe` returns once it returns something (polling: for work the broker does in the background)."""
    end = time.monotonic() + deadline
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < end, "never happened"
        time.sleep(0.2)


def test_relaying_goes_on_after_a_restart_of_the_metropolis(metro: tuple[Managed, str], town: str,
                                                            tenant: str) -> None:
    proc, m_url = metro
    with client(m_url, tenant) as m, client(town, tenant) as a, Receiver() as receiver:
        ok(a.post("/entities", json=sensor("urn:ngsi-ld:Sensor:restart-aix", no2=1)), 201)
        register(m, town, tenant)
        sub_id = subscribe(m, receiver)
        assert len(copies(a)) == 1
        proc.stop()
        proc.start()
        ok(a.patch("/entities/urn:ngsi-ld:Sensor:restart-aix/attrs", json={"no2": {"type": "Property", "value": 55}}),
           204)
        relayed_value(receiver, sub_id, "urn:ngsi-ld:Sensor:restart-aix", "no2", 55)
        # the copies are still known after the restart: deleting the subscription deletes them
        ok(m.delete(f"/subscriptions/{sub_id}"), 204)
        assert copies(a) == []


def test_a_town_registered_after_the_subscription_gets_a_copy(metro: tuple[Managed, str], town: str,
                                                               tenant: str) -> None:
    _, m_url = metro
    with client(m_url, tenant) as m, client(town, tenant) as a, Receiver() as receiver:
        ok(a.post("/entities", json=sensor("urn:ngsi-ld:Sensor:late-aix", no2=1)), 201)
        sub_id = subscribe(m, receiver)
        assert copies(a) == []
        reg_id = register(m, town, tenant)  # newlyMatching: the copy is made
        made = copies(a)
        assert len(made) == 1 and made[0]["notification"]["endpoint"]["uri"].startswith(f"{m_url}{API}/federation/")
        assert made[0]["watchedAttributes"] == ["no2"]
        ok(a.patch("/entities/urn:ngsi-ld:Sensor:late-aix/attrs", json={"no2": {"type": "Property", "value": 66}}),
           204)
        relayed_value(receiver, sub_id, "urn:ngsi-ld:Sensor:late-aix", "no2", 66)
        ok(m.delete(f"/csourceRegistrations/{reg_id}"), 204)  # noLongerMatching: the copy is deleted
        assert copies(a) == []
        ok(m.delete(f"/subscriptions/{sub_id}"), 204)


def test_a_patched_subscription_changes_its_copies(metro: tuple[Managed, str], town: str, tenant: str) -> None:
    _, m_url = metro
    with client(m_url, tenant) as m, client(town, tenant) as a, Receiver() as receiver:
        ok(a.post("/entities", json=sensor("urn:ngsi-ld:Sensor:patch-aix", no2=1, pm10=2)), 201)
        register(m, town, tenant)
        sub_id = subscribe(m, receiver)
        relay_uri = copies(a)[0]["notification"]["endpoint"]["uri"]
        ok(m.patch(f"/subscriptions/{sub_id}", json={
            "watchedAttributes": ["pm10"],
            "notification": {"format": "keyValues", "attributes": ["pm10"],
                             "endpoint": {"uri": receiver.url, "accept": "application/json"}}}), 204)
        (copy,) = copies(a)
        assert copy["watchedAttributes"] == ["pm10"] and copy["notification"]["attributes"] == ["pm10"]
        assert copy["notification"]["endpoint"]["uri"] == relay_uri  # the copy still notifies the relay
        ok(a.patch("/entities/urn:ngsi-ld:Sensor:patch-aix/attrs", json={"pm10": {"type": "Property", "value": 77}}),
           204)
        relayed_value(receiver, sub_id, "urn:ngsi-ld:Sensor:patch-aix", "pm10", 77)
        # an update that no longer matches the registration deletes the copy; matching again makes one
        ok(m.patch(f"/subscriptions/{sub_id}", json={"entities": [{"type": "Station"}]}), 204)
        assert copies(a) == []
        ok(m.patch(f"/subscriptions/{sub_id}", json={"entities": [{"type": "Sensor"}]}), 204)
        assert [c["watchedAttributes"] for c in copies(a)] == [["pm10"]]
        ok(m.delete(f"/subscriptions/{sub_id}"), 204)
        assert copies(a) == []


def test_a_town_down_at_subscription_gets_its_copy_when_it_is_back(metro: tuple[Managed, str], tenant: str,
                                                                    tmp_path: Path) -> None:
    _, m_url = metro
    port = free_port()
    later = f"http://127.0.0.1:{port}"
    with client(m_url, tenant) as m, client(later, tenant) as b, Receiver() as receiver:
        register(m, later, tenant)
        sub_id = subscribe(m, receiver)  # the town is down: its copy is tried again later
        proc = town_process(tmp_path, port)
        proc.start()
        try:
            ok(b.post("/entities", json=sensor("urn:ngsi-ld:Sensor:back-b", no2=1)), 201)
            made = eventually(lambda: copies(b))
            assert len(made) == 1
            ok(b.patch("/entities/urn:ngsi-ld:Sensor:back-b/attrs", json={"no2": {"type": "Property", "value": 88}}),
               204)
            relayed_value(receiver, sub_id, "urn:ngsi-ld:Sensor:back-b", "no2", 88)
            ok(m.delete(f"/subscriptions/{sub_id}"), 204)
            assert copies(b) == []
        finally:
            proc.stop()


def test_a_copy_holds_what_its_registration_offers_and_follows_its_updates(metro: tuple[Managed, str], town: str,
                                                                          tenant: str) -> None:
    # 5.8.1.4: the copy is "reduced to what is matched by the registration information"; splitEntities=true
    # drops q, geoQ, scopeQ (and the notification's attributes); an updated registration updates the copy
    _, m_url = metro
    with client(m_url, tenant) as m, client(town, tenant) as a, Receiver() as receiver:
        reg_id = register(m, town, tenant)
        sub_id = subscribe(m, receiver, entities=[{"type": "Sensor"}, {"type": "Station"}], q="no2>0",
                           splitEntities=True)
        (copy,) = copies(a)
        assert copy["entities"] == [{"type": "Sensor"}] and "q" not in copy
        ok(m.patch(f"/csourceRegistrations/{reg_id}", json={
            "information": [{"entities": [{"type": "Sensor"}, {"type": "Station"}]}]}), 204)
        (copy,) = copies(a)
        assert copy["entities"] == [{"type": "Sensor"}, {"type": "Station"}]
        ok(m.delete(f"/subscriptions/{sub_id}"), 204)
        assert copies(a) == []


def test_an_update_and_a_delete_reach_a_town_that_was_down(metro: tuple[Managed, str], tenant: str,
                                                           tmp_path: Path) -> None:
    # the copy a PATCH could not reach is made anew when the town is back; a delete is tried again
    _, m_url = metro
    port = free_port()
    b_url = f"http://127.0.0.1:{port}"
    proc = town_process(tmp_path, port)
    proc.start()
    try:
        with client(m_url, tenant) as m, client(b_url, tenant) as b, Receiver() as receiver:
            register(m, b_url, tenant)
            sub_id = subscribe(m, receiver)
            assert [c["watchedAttributes"] for c in copies(b)] == [["no2"]]
            proc.stop()
            ok(m.patch(f"/subscriptions/{sub_id}", json={"watchedAttributes": ["pm10"]}), 204)
            proc.start()
            eventually(lambda: [c["watchedAttributes"] for c in copies(b)] == [["pm10"]])
            proc.stop()
            ok(m.delete(f"/subscriptions/{sub_id}"), 204)
            proc.start()
            eventually(lambda: copies(b) == [])
    finally:
        proc.stop()


def test_a_relayed_notification_waits_for_a_subscriber_that_is_down(metro: tuple[Managed, str], town: str,
                                                                      tenant: str) -> None:
    _, m_url = metro
    port = free_port()  # the subscriber's address; nothing listens there yet
    with client(m_url, tenant) as m, client(town, tenant) as a:
        register(m, town, tenant)
        r = ok(m.post("/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["no2"],
            "notification": {"format": "keyValues",
                             "endpoint": {"uri": f"http://127.0.0.1:{port}/notify", "accept": "application/json"}}}),
               201)
        sub_id = r.headers["location"].rsplit("/", 1)[1]
        assert len(copies(a)) == 1
        ok(a.post("/entities", json=sensor("urn:ngsi-ld:Sensor:down-aix", no2=7)), 201)
        # the town has handed its notification to the relay endpoint (its copy counts a success)
        eventually(lambda: copies(a)[0]["notification"].get("lastSuccess"))
        with Receiver(port) as receiver:  # the subscriber is back: the queued notification reaches it
            relayed_value(receiver, sub_id, "urn:ngsi-ld:Sensor:down-aix", "no2", 7)
        note = ok(m.get(f"/subscriptions/{sub_id}"), 200).json()["notification"]
        assert note["timesFailed"] >= 1 and "lastFailure" in note
        ok(m.delete(f"/subscriptions/{sub_id}"), 204)


def test_an_mqtt_subscriber_gets_relayed_notifications(metro: tuple[Managed, str], town: str, tenant: str) -> None:
    host, mqtt_port = services.require_mqtt()
    _, m_url = metro
    topic = f"metropole/fedsubs/{uuid.uuid4().hex[:8]}"
    messages: list[dict[str, Any]] = []
    subscribed = threading.Event()
    listener = mqtt.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, msg: messages.append(json.loads(msg.payload))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect(host, mqtt_port)
    listener.subscribe(topic, qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(15), "no SUBACK from the MQTT broker"
        with client(m_url, tenant) as m, client(town, tenant) as a:
            register(m, town, tenant)
            r = ok(m.post("/subscriptions", json={
                "type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["no2"],
                "notification": {"format": "keyValues", "endpoint": {
                    "uri": f"mqtt://{host}:{mqtt_port}/{topic}", "accept": "application/json",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                    "receiverInfo": [{"key": "X-Token", "value": "m"}]}}}), 201)
            sub_id = r.headers["location"].rsplit("/", 1)[1]
            assert len(copies(a)) == 1  # an MQTT subscriber's subscription is copied too
            ok(a.post("/entities", json=sensor("urn:ngsi-ld:Sensor:mqtt-aix", no2=9)), 201)
            message = eventually(lambda: messages[0] if messages else None)
            assert message["metadata"]["X-Token"] == "m" and message["metadata"]["NGSILD-Tenant"] == tenant
            body = message["body"]
            assert body["subscriptionId"] == sub_id
            assert [(e["id"], e["no2"]) for e in body["data"]] == [("urn:ngsi-ld:Sensor:mqtt-aix", 9)]
            ok(m.delete(f"/subscriptions/{sub_id}"), 204)
    finally:
        listener.loop_stop()
        listener.disconnect()
