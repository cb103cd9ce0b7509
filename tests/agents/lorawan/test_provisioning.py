"""Provisioning LoRaWAN devices and groups through /iot/devices and /iot/services (both registry stores).

The shapes are FIWARE IoTagent-LoRaWAN's (docs/users_manual.md: `internal_attributes.lorawan` with
application_server, dev_eui, app_eui, application_id, data_model) plus our codec id; what could never
work is refused with 400 BAD_REQUEST naming the field, a DevEUI provisioned twice with 409.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agents.provisioning.hooks import Hooks
from tests.agents.conftest import RunningAgent

HEADERS = {"fiware-service": "lora", "fiware-servicepath": "/air"}
SERVERS = {"tts-aix": {"provider": "TTN", "host": "eu1.cloud.thethings.industries", "protocol": "mqtts",
                       "username": "aix-air@metropole", "password": "NNSXS.secret"}}
TTS = {"host": "eu1.cloud.thethings.network", "username": "aix-air@ttn", "password": "NNSXS.key", "provider": "TTN"}


def lorawan(**fields: Any) -> dict[str, Any]:
    base = {"application_server": TTS, "dev_eui": "70B3D57ED0000001", "app_eui": "0000000000000000",
            "application_id": "aix-air@ttn", "codec": "decentlab/dl-pm"}
    return {"lorawan": {k: v for k, v in {**base, **fields}.items() if v is not None}}


@pytest.fixture
def iota(registry_url: str) -> Iterator[httpx.Client]:
    with RunningAgent(registry_url, Hooks(lorawan_servers=SERVERS)) as running, \
            httpx.Client(base_url=running.url, headers=HEADERS, timeout=30) as client:
        yield client


def _device(client: httpx.Client, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
    return client.post("/iot/devices", headers=headers, json={"devices": [{"device_id": "pm-1", **fields}]})


def _refused(r: httpx.Response, field: str, *words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["name"] == "BAD_REQUEST" and body["field"] == field, body
    for word in words:
        assert word in body["message"], body["message"]


def test_the_fiware_lorawan_device_shape_with_a_codec(iota: httpx.Client) -> None:
    r = _device(iota, entity_name="urn:ngsi-ld:AirQualityObserved:aix-pm-1", internal_attributes=lorawan(),
                static_attributes=[{"name": "location", "type": "geo:point", "value": "43.5265, 5.4474"}])
    assert r.status_code == 201, r.text
    stored = iota.get("/iot/devices/pm-1").json()
    assert stored["internal_attributes"]["lorawan"]["codec"] == "decentlab/dl-pm"
    # the list form IoTagent-LoRaWAN also reads, and our shortcuts, stored where it keeps them
    r = iota.post("/iot/devices", json={"devices": [
        {"device_id": "th-1", "transport": "LORAWAN", "dev_eui": "a84041000181c8a5", "codec": "milesight/em300-th",
         "internal_attributes": [{"lorawan": {"application_server": {"provider": "chirpstack", "host": "127.0.0.1"},
                                              "application_id": "17c82e96-be03-4f38-aef3-f83d48582d97"}}]}]})
    assert r.status_code == 201, r.text
    item = iota.get("/iot/devices/th-1").json()["internal_attributes"][0]["lorawan"]
    assert item["dev_eui"] == "a84041000181c8a5" and item["codec"] == "milesight/em300-th"
    assert iota.get("/iot/devices").json()["count"] == 2


def test_what_could_never_work_is_refused_naming_the_field(iota: httpx.Client) -> None:
    at = "devices[0].internal_attributes.lorawan"
    _refused(_device(iota, internal_attributes=lorawan(codec="decentlab/dl-xx")), f"{at}.codec",
             "unknown codec 'decentlab/dl-xx'", "milesight/em300-th")
    _refused(_device(iota, internal_attributes=lorawan(dev_eui="70B3D57ED00001")), f"{at}.dev_eui", "16 hex digits")
    _refused(_device(iota, internal_attributes=lorawan(dev_eui="70B3D57ED000000G")), f"{at}.dev_eui", "16 hex digits")
    _refused(_device(iota, internal_attributes=lorawan(dev_eui=None)), f"{at}.dev_eui", "dev_eui is required")
    _refused(_device(iota, internal_attributes=lorawan(codec=None)), f"{at}.codec", "needs its codec")
    _refused(_device(iota, internal_attributes=lorawan(data_model="cbor", codec=None)), f"{at}.data_model",
             "'cbor' is not supported")
    _refused(_device(iota, internal_attributes=lorawan(data_model="application_server")), f"{at}.data_model",
             "contradicts codec")
    _refused(_device(iota, internal_attributes=lorawan(application_id=None)), f"{at}.application_id", "required")
    _refused(_device(iota, internal_attributes=lorawan(application_id="aix/#")), f"{at}.application_id", "MQTT topic")
    _refused(_device(iota, internal_attributes=lorawan(application_server={**TTS, "provider": "Helium"})),
             f"{at}.application_server.provider", "'Helium' is not one of TTN")
    _refused(_device(iota, internal_attributes=lorawan(application_server={**TTS, "port": 70000})),
             f"{at}.application_server.port", "not a TCP port")
    _refused(_device(iota, internal_attributes=lorawan(application_server={"name": "tts-lyon"})),
             f"{at}.application_server.name", "no network server 'tts-lyon'", "tts-aix")
    _refused(_device(iota, internal_attributes=lorawan(calibration={"NO2_S": 0.3})), f"{at}.calibration",
             "takes no calibration")
    _refused(_device(iota, internal_attributes=lorawan(codec="decentlab/dl-ac", calibration={"NO2_S": 0.3})),
             f"{at}.calibration", "lacks")
    _refused(_device(iota, entity_type="WeatherObserved", internal_attributes=lorawan()), "devices[0].entity_type",
             "gives AirQualityObserved entities")
    _refused(_device(iota, transport="MQTT", internal_attributes=lorawan()), "devices[0].transport", "LORAWAN")
    _refused(_device(iota, internal_attributes=lorawan(codec="cayenne/lpp"),
                     commands=[{"name": "reboot", "type": "command"}]), "devices[0].commands", "documents no downlink")
    _refused(_device(iota, internal_attributes=lorawan(codec=None, data_model="application_server"),
                     commands=[{"name": "reboot"}]), "devices[0].commands", "nothing to encode its downlinks")
    _refused(_device(iota, internal_attributes=lorawan(), commands=[{"name": "x", "lorawan": {"priority": "NOW"}}]),
             "devices[0].commands[0].lorawan.priority", "one of LOWEST")
    assert iota.get("/iot/devices").json()["count"] == 0, "nothing of a refused request is kept"


def test_a_devEUI_is_provisioned_once(iota: httpx.Client) -> None:
    assert _device(iota, internal_attributes=lorawan()).status_code == 201
    for headers in (None, {"fiware-service": "elsewhere", "fiware-servicepath": "/"}):
        r = iota.post("/iot/devices", headers=headers, json={"devices": [
            {"device_id": "pm-2", "internal_attributes": lorawan(dev_eui="70b3d57ed0000001")}]})
        assert r.status_code == 409, r.text
        assert r.json() == {"name": "DUPLICATE_DEVICE_ID",
                            "message": "A device with the same DevEUI was found: 70B3D57ED0000001"}
    r = iota.post("/iot/devices", json={"devices": [
        {"device_id": "pm-3", "internal_attributes": lorawan(dev_eui="70B3D57ED0000003")},
        {"device_id": "pm-4", "internal_attributes": lorawan(dev_eui="70B3D57ED0000003")}]})
    assert r.status_code == 409, r.text
    assert _device(iota, internal_attributes=lorawan(dev_eui="70B3D57ED0000002"), device_id="pm-2").status_code == 201
    # an update may not take another device's DevEUI, nor break its own
    r = iota.put("/iot/devices/pm-2", json={"internal_attributes": lorawan(dev_eui="70B3D57ED0000001")})
    assert r.status_code == 409, r.text
    _refused(iota.put("/iot/devices/pm-2", json={"dev_eui": "xyz"}), "device.internal_attributes.lorawan.dev_eui",
             "16 hex digits")
    r = iota.put("/iot/devices/pm-2", json={"dev_eui": "70B3D57ED0000009"})
    assert r.status_code == 204, r.text
    assert iota.get("/iot/devices/pm-2").json()["internal_attributes"]["lorawan"]["dev_eui"] == "70B3D57ED0000009"
    assert iota.delete("/iot/devices/pm-1").status_code == 204
    assert _device(iota, internal_attributes=lorawan(), device_id="pm-5").status_code == 201, "its DevEUI is free again"


def test_a_lorawan_group_and_its_devices(iota: httpx.Client) -> None:
    section = {"application_server": {"name": "tts-aix"}, "application_id": "aix-air@metropole",
               "codec": "milesight/em300-th"}
    group: dict[str, Any] = {"apikey": "", "resource": "0000000000000000", "cbroker": "http://127.0.0.1:1026",
                             "internal_attributes": {"lorawan": section}}
    r = iota.post("/iot/services", json={"services": [group]})
    assert r.status_code == 201, r.text
    bad = {**group, "resource": "1", "internal_attributes": {"lorawan": {"application_server": {"provider": "TTN"}}}}
    _refused(iota.post("/iot/services", json={"services": [bad]}),
             "services[0].internal_attributes.lorawan.application_id", "required")
    # a device of the group's application needs its DevEUI only; the group gives the rest
    r = iota.post("/iot/devices", json={"devices": [
        {"device_id": "th-7", "internal_attributes": {"lorawan": {"application_id": "aix-air@metropole",
                                                                  "dev_eui": "24E124136B502217"}}}]})
    assert r.status_code == 201, r.text
    # a group's codec that takes no commands refuses a device's commands
    r = iota.post("/iot/services", json={"services": [{**group, "apikey": "lpp", "resource": "2",
        "internal_attributes": {"lorawan": {**section, "codec": "cayenne/lpp"}}}]})
    assert r.status_code == 201, r.text
    _refused(iota.post("/iot/devices", json={"devices": [{"device_id": "lpp-1", "apikey": "lpp", "dev_eui":
                                                          "24E124136B502218", "commands": [{"name": "x"}]}]}),
             "devices[0].commands", "documents no downlink")


def test_the_codec_catalogue(iota: httpx.Client) -> None:
    body = iota.get("/iot/codecs").json()
    by_id = {c["id"]: c for c in body["codecs"]}
    assert body["count"] == len(by_id) >= 9
    assert by_id["elsys/ers-sound"]["entities"] == ["NoiseLevelObserved", "WeatherObserved"]
    assert by_id["milesight/em300-th"]["commands"] is True and by_id["cayenne/lpp"]["commands"] is False
    assert by_id["decentlab/dl-pm"]["uplink_ports"] == [1]
    assert iota.get("/iot/codecs/dragino/lht65").json()["vendor"] == by_id["dragino/lht65"]["vendor"]
    missing = iota.get("/iot/codecs/dragino/lht99")
    assert missing.status_code == 404 and "known: " in missing.json()["message"]
