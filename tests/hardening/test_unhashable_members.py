"""A JSON list or object where the API expects a name (an attribute's or entity's "type") is a 400, never a 500.

`make fuzz` found these: the broker tested such members for membership in a set or dict, and a list or
dict is unhashable in Python, so the request ended in TypeError and an InternalError answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.broker.conftest import new_id

BAD = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
UNHASHABLE: list[Any] = [[], {"x": 1}, ["Property"]]


def _attribute_errors(r: httpx.Response) -> list[dict[str, Any]]:
    """The errors of a batch answer (207), or the ProblemDetails of a single-entity answer."""
    assert r.status_code in (207, 400), r.text
    return [e["error"] for e in r.json()["errors"]] if r.status_code == 207 else [r.json()]


@pytest.mark.parametrize("type_", UNHASHABLE)
@pytest.mark.parametrize("operation", ["create", "upsert", "update", "merge"])
def test_batch_attribute_type_that_is_not_a_name(client: httpx.Client, operation: str, type_: Any) -> None:
    eid = new_id("Fuzz")
    assert client.post("/entities", json={"id": eid, "type": "Fuzz", "a": {"type": "Property", "value": 1}}
                       ).status_code == 201
    r = client.post(f"/entityOperations/{operation}", json=[{"id": eid, "type": "Fuzz", "a": {"type": type_, "value": 2}}])
    errors = _attribute_errors(r)
    assert errors and all(e["type"] == BAD for e in errors), r.text
    assert client.get(f"/entities/{eid}", params={"options": "keyValues"}).json()["a"] == 1  # nothing written


@pytest.mark.parametrize("type_", UNHASHABLE)
@pytest.mark.parametrize("method,path", [("POST", "/entities"), ("POST", "/temporal/entities"),
                                         ("POST", "/entities/{eid}/attrs"), ("PATCH", "/entities/{eid}/attrs"),
                                         ("PATCH", "/entities/{eid}"), ("PUT", "/entities/{eid}"),
                                         ("POST", "/temporal/entities/{eid}/attrs")])
def test_attribute_type_that_is_not_a_name(client: httpx.Client, method: str, path: str, type_: Any) -> None:
    eid = new_id("Fuzz")
    assert client.post("/entities", json={"id": eid, "type": "Fuzz", "b": {"type": "Property", "value": 1}}
                       ).status_code == 201
    body: dict[str, Any] = {"a": {"type": type_, "value": 2}}
    if path in ("/entities", "/temporal/entities"):
        body |= {"id": new_id("Fuzz"), "type": "Fuzz"}
    r = client.request(method, path.replace("{eid}", eid), json=body)
    assert r.status_code == 400 and r.json()["type"] == BAD, r.text


@pytest.mark.parametrize("type_", [[], {"x": 1}])
def test_geometry_type_that_is_not_a_name(client: httpx.Client, type_: Any) -> None:
    """A value shaped like GeoJSON ("coordinates") whose "type" is a list or object is no geometry: 400."""
    r = client.post("/entities", json={"id": new_id("Fuzz"), "type": "Fuzz",
                                       "location": {"type": "GeoProperty", "value": {"type": type_, "coordinates": [5, 43]}}})
    assert r.status_code == 400 and r.json()["type"] == BAD, r.text
