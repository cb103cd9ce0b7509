"""URL parameters an operation does not take are refused (clause 6.3.20), before anything else is looked at."""

from __future__ import annotations

import httpx
import pytest

from broker.api.params import OPERATIONS
from tests.broker.conftest import new_id

INVALID_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", "/entities", {"type": "T", "limt": "1"}),  # a typo no longer answers silently
    ("GET", "/entities", {"type": "T", "options": "keyvalues"}),
    ("GET", "/entities", {"type": "T", "options": "keyValues,noOverwrite"}),
    ("GET", "/entities", {"type": "T", "format": "compact"}),
    ("GET", "/entities/urn:ngsi-ld:T:none", {"options": "invalid"}),  # 400, not 404: parameters come first
    ("GET", "/entities/urn:ngsi-ld:T:none", {"format": "invalidFormat"}),
    ("DELETE", "/entities", {"invalidParams": "x"}),
    ("POST", "/entities/urn:ngsi-ld:T:none/attrs", {"options": "replace"}),
    ("POST", "/entityOperations/upsert", {"options": "noOverwrite"}),
    ("GET", "/types", {"detail": "true"}),
    ("DELETE", "/entities/urn:ngsi-ld:T:none", {"deleteAll": "true"}),
    ("POST", "/entityOperations/delete", {"options": "x"}),
    ("GET", "/jsonldContexts", {"detail": "true"}),
    ("DELETE", "/subscriptions/urn:ngsi-ld:Subscription:none", {"x": "1"}),
    ("DELETE", "/temporal/entities/urn:ngsi-ld:T:none", {"x": "1"}),
    ("GET", "/subscriptions", {"invalidParams": "x"}),
    ("GET", "/temporal/entities", {"type": "T", "timerel": "after", "timeAt": "2026-01-01T00:00:00Z",
                                   "options": "temporalValues,invalid"}),
])
def test_unknown_parameters_and_options_are_invalid_request(client: httpx.Client, method: str, path: str,
                                                             params: dict[str, str]) -> None:
    r = client.request(method, path, params=params, json=[{"id": new_id(), "type": "T"}] if method == "POST" else None)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == INVALID_REQUEST


def test_parameters_are_checked_before_the_body(client: httpx.Client) -> None:
    # the body is not even an object: the unknown parameter is still what is reported
    r = client.post("/entities", params={"invalidParams": "x"}, content=b'"not an entity"',
                    headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 400 and "invalidParams" in r.json()["detail"]


def test_known_parameters_and_empty_options_pass(client: httpx.Client) -> None:
    entity_id = new_id()
    assert client.post("/entities", json={"id": entity_id, "type": "T", "a": 1}).status_code == 201
    r = client.get(f"/entities/{entity_id}", params={"options": "keyValues,sysAttrs", "lang": "fr"})
    assert r.status_code == 200 and r.json()["a"] == 1
    assert client.get(f"/entities/{entity_id}", params={"format": "simplified"}).json()["a"] == 1
    r = client.post(f"/entities/{entity_id}/attrs", params={"options": ""}, json={"b": 2})
    assert r.status_code == 204


def test_every_route_of_the_api_has_its_parameters_declared() -> None:
    from broker.app import create_app
    from broker.settings import BrokerSettings

    app = create_app(BrokerSettings())
    declared = {(m, "/ngsi-ld/v1" + p) for m, p in OPERATIONS}
    routes = set()
    for route in app.router.routes:
        router = getattr(route, "original_router", None)  # an included router (FastAPI 0.16x)
        for inner in router.routes if router is not None else [route]:
            path = getattr(inner, "path", "")
            if path.startswith("/ngsi-ld/v1/") and not path.startswith("/ngsi-ld/v1/info"):
                routes |= {(m, path) for m in getattr(inner, "methods", ())}
    assert len(routes) >= 35  # the walk did find the API
    assert routes - declared == set()


def test_patch_attr_reads_its_parameters(client: httpx.Client) -> None:
    # the PATCH handler skips parsing an empty query string: a non-empty one is still checked and read
    entity_id = new_id()
    body = {"id": entity_id, "type": "T", "a": [{"type": "Property", "value": 1},
                                                {"type": "Property", "value": 2, "datasetId": "urn:ds:1"}]}
    assert client.post("/entities", json=body).status_code == 201
    r = client.patch(f"/entities/{entity_id}/attrs/a", params={"datasetId": "urn:ds:1"}, json={"value": 20})
    assert r.status_code == 204, r.text
    r = client.patch(f"/entities/{entity_id}/attrs/a", params={"datasetid": "urn:ds:1"}, json={"value": 30})
    assert r.status_code == 400 and r.json()["type"] == INVALID_REQUEST
    r = client.patch(f"/entities/{entity_id}/attrs/a", json={"value": 10})
    assert r.status_code == 204
    values = {i.get("datasetId"): i["value"] for i in client.get(f"/entities/{entity_id}").json()["a"]}
    assert values == {None: 10, "urn:ds:1": 20}
