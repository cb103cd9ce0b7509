"""Provisioning refuses configurations that could never work, naming the field (both registry stores)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from agents.provisioning.hooks import Hooks
from tests.agents.conftest import RunningAgent

HEADERS = {"fiware-service": "validation", "fiware-servicepath": "/"}


@pytest.fixture
def checking(registry_url: str) -> Iterator[httpx.Client]:
    """The provisioning API with the cbroker check on (as the runtime runs it by default)."""
    with RunningAgent(registry_url, Hooks(check_cbroker=True)) as running, \
            httpx.Client(base_url=running.url, headers=HEADERS, timeout=30) as client:
        yield client


def _refused(r: httpx.Response, field: str, words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["name"] == "BAD_REQUEST" and body["field"] == field, body
    assert words in body["message"], body["message"]


def test_devices_that_could_never_work_are_refused(checking: httpx.Client) -> None:
    def device(**fields: object) -> httpx.Response:
        return checking.post("/iot/devices", json={"devices": [{"device_id": "d1", "entity_type": "Thing", **fields}]})

    _refused(device(static_attributes=[{"name": "location", "type": "geo:point", "value": "abc"}]),
             "devices[0].static_attributes[0].value", "'abc' is not 'lat, lng'")
    _refused(device(entity_name="noise sensor 1"), "devices[0].entity_name", "is not a URI")
    _refused(device(transport="LoRaWAN"), "devices[0].internal_attributes.lorawan.application_server",
             "application_server is required")  # LoRaWAN devices: tests/agents/lorawan/test_provisioning.py
    _refused(device(transport="AMQP"), "devices[0].transport", "is not one of MQTT, HTTP")
    _refused(device(attributes=[{"object_id": "t", "name": "temp erature", "type": "Number"}]),
             "devices[0].attributes[0].name", "not an NGSI-LD attribute name")
    _refused(device(static_attributes=[{"name": "n", "type": "Number", "value": "ten"}]),
             "devices[0].static_attributes[0].value", "not a number")
    assert checking.get("/iot/devices").json()["count"] == 0, "nothing of a refused request is kept"
    ok = device(entity_name="urn:ngsi-ld:Thing:noise-1", transport="mqtt",
                static_attributes=[{"name": "location", "type": "geo:point", "value": "43.5, 5.4"}])
    assert ok.status_code == 201, ok.text
    _refused(checking.put("/iot/devices/d1", json={"transport": "LoRaWAN"}),
             "device.internal_attributes.lorawan.application_server", "application_server is required")


def test_groups_that_could_never_work_are_refused(checking: httpx.Client) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    _refused(checking.post("/iot/services", json={"services": [
        {"apikey": "v1", "resource": "/iot/json", "cbroker": f"http://127.0.0.1:{dead}"}]}),
        "services[0].cbroker", "nothing answers on cbroker")
    _refused(checking.post("/iot/services", json={"services": [
        {"apikey": "v1", "resource": "/iot/json", "cbroker": "orion:1026"}]}), "services[0].cbroker", "http(s) URL")
    _refused(checking.post("/iot/services", json={"services": [
        {"apikey": "v1", "resource": "/iot/json", "entity_type": "Noise Sensor"}]}), "services[0].entity_type",
        "not an NGSI-LD type name")
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        port = live.getsockname()[1]
        r = checking.post("/iot/services", json={"services": [
            {"apikey": "v1", "resource": "/iot/json", "cbroker": f"http://127.0.0.1:{port}"}]})
        assert r.status_code == 201, r.text
    _refused(checking.put("/iot/services", params={"resource": "/iot/json", "apikey": "v1"},
                          json={"cbroker": f"http://127.0.0.1:{dead}"}), "group.cbroker", "nothing answers")
