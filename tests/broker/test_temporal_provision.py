"""Writing and deleting history (clauses 5.6.11-5.6.16, 6.18-6.22), and read-your-writes across both APIs, both stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.broker.conftest import new_id

BAD = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
NOT_FOUND = "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def at(hour: int) -> str:
    return f"2026-04-01T{hour:02d}:00:00.000Z"


def prop(value: Any, hour: int, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(hour), **extra}


def test_every_temporal_operation_sees_the_writes_before_it(client: httpx.Client) -> None:
    """History is recorded from the change log; each operation first applies what is committed (no waiting)."""
    for _ in range(5):
        eid = new_id("Bus")
        assert client.post("/entities", json={"id": eid, "type": "Bus", "speed": prop(1, 1)}).status_code == 201
        # the entity is known to history at once: adding history to it is an update (204), not a creation
        assert client.post("/temporal/entities", json={"id": eid, "type": "Bus", "speed": [prop(2, 2)]}).status_code == 204
        assert client.patch(f"/entities/{eid}/attrs/speed", json={"value": 3, "observedAt": at(3)}).status_code == 204
        got = client.get(f"/temporal/entities/{eid}").json()
        assert [i["value"] for i in got["speed"]] == [1, 2, 3]
        assert client.delete(f"/entities/{eid}").status_code == 204
        assert client.delete(f"/temporal/entities/{eid}").status_code == 204
        assert client.get(f"/temporal/entities/{eid}").status_code == 404


def test_an_instance_written_again_replaces_the_stored_one(client: httpx.Client) -> None:
    """Clause 5.6.11: the same attribute, datasetId and time written again is an update of that instance."""
    eid = new_id("Bus")
    assert client.post("/temporal/entities", json={"id": eid, "type": "Bus", "speed": [prop(120, 1), prop(80, 2)]}).status_code == 201
    before = client.get(f"/temporal/entities/{eid}").json()["speed"]
    assert client.post("/temporal/entities", json={"id": eid, "type": ["Bus", "Vehicle"], "speed": [prop(121, 1)]}).status_code == 204
    after = client.get(f"/temporal/entities/{eid}").json()
    assert [i["value"] for i in after["speed"]] == [121, 80]
    assert after["speed"][0]["instanceId"] == before[0]["instanceId"]
    assert sorted(after["type"]) == ["Bus", "Vehicle"]  # new type names are added (clause 5.6.11.4)


def test_delete_one_instance(client: httpx.Client) -> None:
    eid = new_id("Bus")
    assert client.post("/temporal/entities", json={"id": eid, "type": "Bus", "speed": [prop(1, 1), prop(2, 2)]}).status_code == 201
    first = client.get(f"/temporal/entities/{eid}").json()["speed"][0]["instanceId"]
    assert client.delete(f"/temporal/entities/{eid}/attrs/speed/{first}").status_code == 204
    assert [i["value"] for i in client.get(f"/temporal/entities/{eid}").json()["speed"]] == [2]
    r = client.delete(f"/temporal/entities/{eid}/attrs/speed/{first}")
    assert r.status_code == 404 and r.json()["type"] == NOT_FOUND
    assert client.delete(f"/temporal/entities/{eid}/attrs/fuel/{first}").status_code == 404
    assert client.delete(f"/temporal/entities/{new_id('Bus')}/attrs/speed/{first}").status_code == 404


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/temporal/entities//attrs/speed/urn:ngsi-ld:attribute-instance:1"),
    ("DELETE", "/temporal/entities/not-a-uri/attrs/speed/urn:ngsi-ld:attribute-instance:1"),
    ("DELETE", "/temporal/entities/{eid}/attrs//urn:ngsi-ld:attribute-instance:1"),
    ("DELETE", "/temporal/entities/{eid}/attrs/invalid(name/urn:ngsi-ld:attribute-instance:1"),
    ("DELETE", "/temporal/entities/{eid}/attrs/speed/not-a-uri"),
    ("PATCH", "/temporal/entities//attrs/speed/urn:ngsi-ld:attribute-instance:1"),
    ("PATCH", "/temporal/entities/{eid}/attrs//urn:ngsi-ld:attribute-instance:1"),
    ("PATCH", "/temporal/entities/{eid}/attrs/speed/not-a-uri"),
    ("DELETE", "/temporal/entities//attrs/speed"),
    ("DELETE", "/temporal/entities/{eid}/attrs/invalid(name"),
    ("POST", "/temporal/entities//attrs"),
])
def test_malformed_path_parts_are_bad_request_data(client: httpx.Client, method: str, path: str) -> None:
    """Clauses 5.6.12-5.6.15: an empty or invalid entity id, attribute name or instanceId is BadRequestData."""
    eid = new_id("Bus")
    assert client.post("/temporal/entities", json={"id": eid, "type": "Bus", "speed": [prop(1, 1)]}).status_code == 201
    body = {"speed": [prop(2, 2)]} if method == "POST" else {"value": 3} if method == "PATCH" else None
    r = client.request(method, path.replace("{eid}", eid), json=body)
    assert r.status_code == 400 and r.json()["type"] == BAD, r.text


@pytest.mark.parametrize("type_", [[{"a": 1}], ["Bus", []], {"a": 1}, "invalid(name", 7])
def test_a_temporal_entity_type_that_is_not_a_name_is_bad_request_data(client: httpx.Client, type_: Any) -> None:
    """Clause 5.6.11 with 4.6.2: the type member holds names; anything else is a 400 (a dict inside a list was a 500)."""
    r = client.post("/temporal/entities", json={"id": new_id("Bus"), "type": type_, "speed": [prop(1, 1)]})
    assert r.status_code == 400 and r.json()["type"] == BAD, r.text
