"""Distributed temporal retrieve and query, discovery with details, contextSourceInfo, and the redirect
rule of registration (clauses 5.7.3, 5.7.4, 5.7.5-5.7.11, 4.3.6.5, 5.9.2.4) between real broker processes.

The same three `metropole broker` processes as tests/broker/test_federation.py (its fixtures): the
metropolitan broker M and the towns A and B; each test in a tenant of its own. A source that is down is a
closed port.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.broker.test_federation import api, brokers, create, sensor, tenant

__all__ = ["api", "brokers", "tenant"]  # the fixtures, imported for pytest

EID = "urn:ngsi-ld:Sensor:hist"
HISTORY = {"observationInterval": {"startAt": "2026-01-01T00:00:00Z"}}


def history(client: httpx.Client, entity_id: str, **attrs: list[dict[str, Any]]) -> None:
    r = client.post("/temporal/entities", json={"id": entity_id, "type": "Sensor", **attrs})
    assert r.status_code in (201, 204), r.text


def prop(value: Any, at: str, dataset: str | None = None) -> dict[str, Any]:
    out = {"type": "Property", "value": value, "observedAt": at}
    return out | ({"datasetId": dataset} if dataset else {})


def instances(entity: dict[str, Any], attr: str) -> list[tuple[Any, str, str | None]]:
    return sorted((i["value"], i["observedAt"], i.get("datasetId")) for i in entity[attr])


def test_a_redirect_registration_matching_an_entity_held_here_is_a_conflict(api: dict[str, httpx.Client],
                                                                           tenant: str) -> None:
    # 5.9.2.4: "If an existing Entity already matches the Context Source Registration": Conflict
    create(api["M"], sensor("urn:ngsi-ld:Sensor:held", no2=1))
    body = {"type": "ContextSourceRegistration", "endpoint": "http://127.0.0.1:9", "tenant": tenant,
            "mode": "redirect"}
    for info in ([{"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:held"}]}],
                 [{"entities": [{"type": "Sensor"}]}],
                 [{"entities": [{"type": "Sensor", "idPattern": "held$"}], "propertyNames": ["no2"]}]):
        r = api["M"].post("/csourceRegistrations", json={**body, "information": info})
        assert r.status_code == 409 and "urn:ngsi-ld:Sensor:held" in r.json()["detail"], r.text
    for info in ([{"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:other"}]}],
                 [{"entities": [{"type": "Station"}]}],
                 [{"entities": [{"type": "Sensor"}], "propertyNames": ["pm10"]}]):
        r = api["M"].post("/csourceRegistrations", json={**body, "information": info})
        assert r.status_code == 201, r.text
    # an inclusive registration over the same entity stays allowed
    assert api["M"].post("/csourceRegistrations", json={**body, "mode": "inclusive", "information": [
        {"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:held"}]}]}).status_code == 201
