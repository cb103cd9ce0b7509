"""The provisioning API over a real socket, with the requests of the FIWARE IoT Agent docs and tutorials."""

from __future__ import annotations

import httpx

from tests.agents.conftest import RunningAgent

# iotagent-node-lib doc/api.md, "Create config group"
DOC_GROUP = {
    "resource": "/deviceTest",
    "apikey": "801230BJKL23Y9090DSFL123HJK09H324HV8732",
    "entity_type": "Light",
    "trust": "8970A9078A803H3BL98PINEQRW8342HBAMS",
    "cbHost": "http://orion:1026",
    "commands": [{"name": "wheel1", "type": "Wheel"}],
    "attributes": [
        {"name": "luminescence", "type": "Integer", "metadata": {"unitCode": {"type": "Text", "value": "CAL"}}}
    ],
    "lazy": [{"name": "status", "type": "Boolean"}],
}

# FIWARE tutorial "IoT Agent": the service group and the temperature sensor
TUTORIAL_SERVICE = {
    "services": [
        {"apikey": "4jggokgpepnvsb2uv4s40d59ov", "cbroker": "http://orion:1026", "entity_type": "Thing",
         "resource": "/iot/d"}
    ]
}
TUTORIAL_DEVICE = {
    "devices": [
        {
            "device_id": "temperature001",
            "entity_name": "urn:ngsi-ld:Temperature:001",
            "entity_type": "Temperature",
            "timezone": "Europe/Berlin",
            "attributes": [{"object_id": "t", "name": "temperature", "type": "Integer"}],
            "static_attributes": [{"name": "refStore", "type": "Relationship", "value": "urn:ngsi-ld:Store:001"}],
        }
    ]
}


def test_services_lifecycle_with_tutorial_requests(iota: httpx.Client) -> None:
    r = iota.post("/iot/services", json=TUTORIAL_SERVICE)
    assert r.status_code == 201, r.text
    assert r.json() == {}
    listed = iota.get("/iot/services").json()
    assert listed["count"] == 1
    group = listed["services"][0]
    assert group["apikey"] == "4jggokgpepnvsb2uv4s40d59ov"
    assert group["entity_type"] == "Thing"
    assert group["service"] == "openiot" and group["subservice"] == "/"
    # the same list under the newer path, with the newer member name
    assert iota.get("/iot/groups").json()["groups"] == listed["services"]

    r = iota.put("/iot/services", params={"resource": "/iot/d", "apikey": "4jggokgpepnvsb2uv4s40d59ov"},
                 json={"cbroker": "http://orion-ld:1026", "autoprovision": False})
    assert r.status_code == 204, r.text
    group = iota.get("/iot/services").json()["services"][0]
    assert group["cbroker"] == "http://orion-ld:1026" and group["autoprovision"] is False

    r = iota.delete("/iot/services", params={"resource": "/iot/d", "apikey": "4jggokgpepnvsb2uv4s40d59ov"})
    assert r.status_code == 204
    assert iota.get("/iot/services").json() == {"count": 0, "services": []}


def test_groups_with_doc_body_and_duplicate(iota: httpx.Client) -> None:
    assert iota.post("/iot/groups", json={"groups": [DOC_GROUP]}).status_code == 201
    r = iota.post("/iot/groups", json={"groups": [DOC_GROUP]})
    assert r.status_code == 409
    assert r.json() == {
        "name": "DUPLICATE_GROUP",
        "message": "A device configuration already exists for resource /deviceTest and API Key "
        "801230BJKL23Y9090DSFL123HJK09H324HV8732",
    }
    stored = iota.get("/iot/groups").json()["groups"][0]
    assert stored["attributes"] == DOC_GROUP["attributes"]
    assert stored["cbHost"] == "http://orion:1026"


def test_group_servicepath_wildcard_and_scoping(iota: httpx.Client) -> None:
    iota.post("/iot/groups", json={"groups": [{"apikey": "a", "resource": "/iot/json", "entity_type": "X"}]},
              headers={"fiware-servicepath": "/one"})
    iota.post("/iot/groups", json={"groups": [{"apikey": "b", "resource": "/iot/json", "entity_type": "X"}]},
              headers={"fiware-servicepath": "/two"})
    assert iota.get("/iot/groups", headers={"fiware-servicepath": "/one"}).json()["count"] == 1
    assert iota.get("/iot/groups", headers={"fiware-servicepath": "/*"}).json()["count"] == 2
    assert iota.get("/iot/groups", headers={"fiware-service": "other"}).json()["count"] == 0


def test_group_errors(iota: httpx.Client) -> None:
    r = iota.post("/iot/groups", json={"groups": [{"apikey": "x"}]})
    assert r.status_code == 400 and r.json()["name"] == "WRONG_SYNTAX"
    assert r.json()["message"].startswith("Wrong syntax in request: ")
    r = iota.post("/iot/groups", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["name"] == "WRONG_SYNTAX"
    r = iota.put("/iot/groups", params={"resource": "/nope", "apikey": "nope"}, json={"entity_type": "Y"})
    assert r.status_code == 404 and r.json()["name"] == "DEVICE_GROUP_NOT_FOUND"
    r = iota.delete("/iot/groups", params={"resource": "/nope"})
    assert r.status_code == 400 and r.json()["name"] == "MISSING_HEADERS"
    r = httpx.get(str(iota.base_url) + "/iot/groups", headers={"fiware-service": "openiot"})
    assert r.status_code == 400
    assert r.json() == {"name": "MISSING_HEADERS",
                        "message": 'Some headers were missing from the request: ["fiware-servicepath"]'}


def test_device_lifecycle_with_tutorial_requests(iota: httpx.Client) -> None:
    r = iota.post("/iot/devices", json=TUTORIAL_DEVICE)
    assert r.status_code == 201, r.text
    device = iota.get("/iot/devices/temperature001").json()
    assert device["device_id"] == "temperature001"
    assert device["entity_name"] == "urn:ngsi-ld:Temperature:001"
    assert device["service"] == "openiot" and device["service_path"] == "/"
    assert device["attributes"] == TUTORIAL_DEVICE["devices"][0]["attributes"]
    listed = iota.get("/iot/devices").json()
    assert listed["count"] == 1 and listed["devices"][0]["device_id"] == "temperature001"

    r = iota.put("/iot/devices/temperature001", json={
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Float"}]})
    assert r.status_code == 204
    assert iota.get("/iot/devices/temperature001").json()["attributes"][0]["type"] == "Float"

    r = iota.post("/iot/devices", json=TUTORIAL_DEVICE)
    assert r.status_code == 409
    assert r.json() == {"name": "DUPLICATE_DEVICE_ID",
                        "message": "A device with the same pair (Service, DeviceId) was found:temperature001"}
    assert iota.delete("/iot/devices/temperature001").status_code == 204
    r = iota.get("/iot/devices/temperature001")
    assert r.status_code == 404
    assert r.json() == {"name": "DEVICE_NOT_FOUND", "message": "No device was found with id:temperature001"}
    assert iota.delete("/iot/devices/temperature001").status_code == 404


def test_device_errors_and_paging(iota: httpx.Client) -> None:
    r = iota.post("/iot/devices", json={"devices": [{"entity_name": "x"}]})
    assert r.status_code == 400 and r.json()["name"] == "WRONG_SYNTAX"
    r = iota.put("/iot/devices/missing", json={"entity_type": "X"})
    assert r.status_code == 404
    devices = [{"device_id": f"d{i}", "entity_type": "Thing"} for i in range(5)]
    assert iota.post("/iot/devices", json={"devices": devices}).status_code == 201
    page = iota.get("/iot/devices", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 5 and [d["device_id"] for d in page["devices"]] == ["d1", "d2"]
    r = iota.put("/iot/devices/d1", json={"device_id": "other"})
    assert r.status_code == 400 and r.json()["name"] == "BAD_REQUEST"


def test_about_version_metrics(agent: RunningAgent, iota: httpx.Client) -> None:
    about = iota.get("/iot/about").json()
    assert about["port"] == str(agent.port) and about["baseRoot"] == "/" and "libVersion" in about
    assert iota.get("/version").status_code == 200
    agent.metrics.counter("metropole_test_total", "a test counter").inc()
    r = iota.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert "metropole_test_total 1" in r.text


def test_rejections_listing(iota: httpx.Client) -> None:
    assert iota.get("/iot/rejections").json() == {"count": 0, "rejections": []}


def test_rejections_listed_filtered_and_scoped_by_tenant(agent: RunningAgent, iota: httpx.Client) -> None:
    """Each tenant sees its own rejections only (fiware-service, and fiware-servicepath unless /*)."""
    import asyncio

    from agents.registry import DeadLetter, open_registry

    async def write() -> None:
        registry = open_registry(agent.settings.registry_url)
        await registry.open()
        try:
            await registry.add_dead_letter(DeadLetter(AT_REJECT, "malformed_payload", "invalid JSON", "mqtt", "json",
                                                      "k1", "aix-01", "/k1/aix-01/attrs", service="openiot",
                                                      service_path="/", payload='{"no2": '))
            await registry.add_dead_letter(DeadLetter(AT_REJECT, "wrong_type", "attribute 't'", "http", "json",
                                                      "k1", "aix-02", "/iot/json", service="openiot",
                                                      service_path="/", payload='{"t": "abc", "h": 5}',
                                                      attribute="t"))
            await registry.add_dead_letter(DeadLetter(AT_REJECT, "wrong_type", "x", "http", "json", "k9", "ms-1",
                                                      "/iot/json", service="someoneelse", service_path="/",
                                                      payload='{"secret": 1}'))
            await registry.add_dead_letter(DeadLetter(AT_REJECT, "unknown_apikey", "no group", "http", "ul",
                                                      "zz", "x", "/iot/d?k=zz&i=x", payload="t|1"))
        finally:
            await registry.close()

    asyncio.run(write())
    listed = iota.get("/iot/rejections").json()
    assert listed["count"] == 2 and {r["device_id"] for r in listed["rejections"]} == {"aix-01", "aix-02"}
    only = iota.get("/iot/rejections", params={"reason": "malformed_payload"}).json()
    assert only["count"] == 1
    row = only["rejections"][0]
    assert row["device_id"] == "aix-01" and row["topic"] == "/k1/aix-01/attrs" and row["payload"] == '{"no2": '
    refused = iota.get("/iot/rejections", params={"reason": "wrong_type"}).json()["rejections"]
    assert [(r["device_id"], r["attribute"]) for r in refused] == [("aix-02", "t")]
    other = iota.get("/iot/rejections", headers={"fiware-service": "someoneelse"}).json()
    assert [r["apikey"] for r in other["rejections"]] == ["k9"], "another tenant's payloads and apikeys stay hidden"
    assert iota.get("/iot/rejections", headers={"fiware-servicepath": "/elsewhere"}).json()["count"] == 0
    assert iota.get("/iot/rejections", headers={"fiware-servicepath": "/*"}).json()["count"] == 2
    unowned = iota.get("/iot/rejections", headers={"fiware-service": "", "fiware-servicepath": "/*"}).json()
    assert [r["apikey"] for r in unowned["rejections"]] == ["zz"], "messages of no tenant: the empty service"
    assert httpx.get(agent.url + "/iot/rejections").status_code == 400, "no fiware-service: MISSING_HEADERS"
    assert iota.delete("/iot/rejections").status_code == 204
    assert iota.get("/iot/rejections").json()["count"] == 0
    assert iota.get("/iot/rejections", headers={"fiware-service": "someoneelse"}).json()["count"] == 1, (
        "a purge forgets the tenant's own rejections only")


AT_REJECT = "2026-11-26T07:00:00Z"


def test_trailing_slash_and_options(iota: httpx.Client) -> None:
    """The FIWARE tutorials write `/iot/services/` and `DELETE /iot/services/?resource=`; both work."""
    group = {"services": [{"apikey": "slashkey", "entity_type": "Thing", "resource": "/iot/json"}]}
    assert iota.post("/iot/services/", json=group).status_code == 201
    assert [s["apikey"] for s in iota.get("/iot/services/").json()["services"]] == ["slashkey"]
    r = iota.options("/iot/services")
    assert r.status_code == 204
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= {m.strip() for m in r.headers["Allow"].split(",")}
    assert "Accept-Patch" not in r.headers
    assert iota.delete("/iot/services/", params={"resource": "/iot/json", "apikey": "slashkey"}).status_code == 204
    assert iota.get("/iot/services").json()["count"] == 0
    assert iota.patch("/iot/services").status_code == 405
