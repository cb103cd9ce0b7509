"""Context source registrations API (clauses 5.9, 5.10, 6.8, 6.9) over a real socket, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.broker.conftest import link

BAD = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def reg(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}], "propertyNames": ["no2", "pm10"]}],
        "endpoint": "http://127.0.0.1:9",
    }
    body.update(members)
    return body


def future(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(client: httpx.Client, body: dict[str, Any], **kw: Any) -> str:
    r = client.post("/csourceRegistrations", json=body, **kw)
    assert r.status_code == 201, r.text
    assert r.headers["location"].startswith("/ngsi-ld/v1/csourceRegistrations/")
    return r.headers["location"].rsplit("/", 1)[1]


def test_create_retrieve_every_member(client: httpx.Client) -> None:
    body = reg(
        id="urn:ngsi-ld:ContextSourceRegistration:aix",
        information=[{"entities": [{"type": "AirQualityObserved", "idPattern": "urn:ngsi-ld:AirQualityObserved:Aix-.*"},
                                   {"type": "Device", "id": "urn:ngsi-ld:Device:aq-1"}],
                      "propertyNames": ["no2"], "relationshipNames": ["refDevice"]}],
        contextSourceInfo=[{"key": "Authorization", "value": "urn:ngsi-ld:request"},
                           {"key": "accept", "value": "application/json"}],
        mode="inclusive", operations=["retrieveOps", "createEntity"], registrationName="Aix",
        description="the town of Aix", contextSourceAlias="aix-broker", datasetId=["@none"],
        scope=["/Aix"], tenant="aix", refreshRate="PT1M", expiresAt=future(), management={"timeout": 1000},
        location={"type": "Point", "coordinates": [5.44, 43.52]},
        observationSpace={"type": "Point", "coordinates": [5.44, 43.52]},
        operationSpace={"type": "Point", "coordinates": [5.44, 43.52]},
        csourceVendor="metropole",
    )
    rid = create(client, body)
    assert rid == "urn:ngsi-ld:ContextSourceRegistration:aix"
    got = client.get(f"/csourceRegistrations/{rid}").json()
    for member, value in body.items():
        assert got[member] == value, member
    assert "status" not in got  # Table 5.2.9-2: only once a distributed operation was made


def test_defaults_shown_and_generated_id(client: httpx.Client) -> None:
    rid = create(client, reg())
    assert rid.startswith("urn:ngsi-ld:ContextSourceRegistration:")
    got = client.get(f"/csourceRegistrations/{rid}").json()
    assert got["mode"] == "inclusive" and got["operations"] == ["federationOps"]


@pytest.mark.parametrize("members", [
    {"information": []},
    {"information": [{}]},
    {"information": [{"entities": []}]},
    {"information": [{"entities": [{"id": "urn:ngsi-ld:X:1"}]}]},
    {"information": [{"propertyNames": []}]},
    {"endpoint": "not a uri"},
    {"mode": "sometimes"},
    {"operations": ["flyToTheMoon"]},
    {"mode": "auxiliary", "operations": ["createEntity"]},
    {"expiresAt": "2001-01-01T00:00:00Z"},
    {"location": {"type": "Point", "coordinates": "here"}},
    {"observationInterval": {"endAt": "2020-01-01T00:00:00Z"}},
    {"contextSourceInfo": [{"key": "accept", "value": "text/csv"}]},
    {"contextSourceInfo": [{"key": "ngsildConformance", "value": "one"}]},
    {"type": "Subscription"},
])
def test_invalid_is_bad_request_data(client: httpx.Client, members: dict[str, Any]) -> None:
    r = client.post("/csourceRegistrations", json=reg(**members))
    assert r.status_code == 400, r.text
    assert r.json()["type"] == BAD


def test_missing_members_are_bad_request_data(client: httpx.Client) -> None:
    for member in ("information", "endpoint"):
        body = reg()
        del body[member]
        r = client.post("/csourceRegistrations", json=body)
        assert r.status_code == 400 and r.json()["type"] == BAD


def test_already_exists_and_not_found(client: httpx.Client) -> None:
    rid = create(client, reg(id="urn:ngsi-ld:ContextSourceRegistration:dup"))
    r = client.post("/csourceRegistrations", json=reg(id=rid))
    assert r.status_code == 409 and r.json()["type"].endswith("/AlreadyExists")
    assert client.get("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:none").status_code == 404
    assert client.get("/csourceRegistrations/not-a-uri").json()["type"] == BAD
    assert client.delete("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:none").status_code == 404


def test_update_and_delete(client: httpx.Client) -> None:
    rid = create(client, reg(expiresAt=future()))
    r = client.patch(f"/csourceRegistrations/{rid}", json={"endpoint": "http://127.0.0.1:8", "expiresAt": None})
    assert r.status_code == 204, r.text
    got = client.get(f"/csourceRegistrations/{rid}").json()
    assert got["endpoint"] == "http://127.0.0.1:8" and "expiresAt" not in got
    assert client.patch(f"/csourceRegistrations/{rid}", json={"information": None}).status_code == 400
    assert client.patch(f"/csourceRegistrations/{rid}", json={"type": "Thing"}).status_code == 400
    assert client.delete(f"/csourceRegistrations/{rid}").status_code == 204
    assert client.get(f"/csourceRegistrations/{rid}").status_code == 404


def test_exclusive_overlap_is_a_conflict(client: httpx.Client) -> None:
    info = [{"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:1"}], "propertyNames": ["t"]}]
    create(client, reg(mode="exclusive", information=info))
    r = client.post("/csourceRegistrations", json=reg(mode="exclusive", information=info))
    assert r.status_code == 409 and r.json()["type"].endswith("/Conflict")


def test_exclusive_over_an_attribute_held_here_is_a_conflict(client: httpx.Client) -> None:
    # 5.9.2.4: an entity exists for the registered id and holds one of the registered attributes: Conflict
    eid = "urn:ngsi-ld:Sensor:held"
    r = client.post("/entities", json={"id": eid, "type": "Sensor", "t": {"type": "Property", "value": 1},
                                      "rel": {"type": "Relationship", "object": "urn:ngsi-ld:Thing:1"}})
    assert r.status_code == 201, r.text
    for names in ({"propertyNames": ["t"]}, {"relationshipNames": ["rel"]}):
        info = [{"entities": [{"type": "Sensor", "id": eid}], **names}]
        r = client.post("/csourceRegistrations", json=reg(mode="exclusive", information=info))
        assert r.status_code == 409 and r.json()["type"].endswith("/Conflict"), r.text
    # an attribute the entity does not hold, or an inclusive registration: accepted
    rid = create(client, reg(mode="exclusive", information=[{"entities": [{"type": "Sensor", "id": eid}],
                                                             "propertyNames": ["u"]}]))
    create(client, reg(information=[{"entities": [{"type": "Sensor", "id": eid}], "propertyNames": ["t"]}]))
    # an update that makes the exclusive registration take a held attribute is refused too
    r = client.patch(f"/csourceRegistrations/{rid}", json={"information": [
        {"entities": [{"type": "Sensor", "id": eid}], "propertyNames": ["u", "t"]}]})
    assert r.status_code == 409 and r.json()["type"].endswith("/Conflict"), r.text


def test_query_by_type_attrs_geo_csf_and_pages(client: httpx.Client) -> None:
    a = create(client, reg(registrationName="a", location={"type": "Point", "coordinates": [5.44, 43.52]}))
    b = create(client, reg(registrationName="b", information=[{"entities": [{"type": "NoiseLevelObserved"}]}]))
    c = create(client, reg(registrationName="c", information=[{"propertyNames": ["temperature"]}],
                           observationInterval={"startAt": "2020-01-01T00:00:00Z"}))

    def ids(**params: Any) -> set[str]:
        r = client.get("/csourceRegistrations", params=params)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()}

    assert ids(type="AirQualityObserved") == {a}
    assert ids(type="NoiseLevelObserved") == {b}
    assert ids(attrs="pm10") == {a, b}  # b names no attributes: any attribute matches
    assert ids(georel="near;maxDistance==2000", geometry="Point", coordinates="[5.441,43.521]") == {a}
    assert ids(georel="near;maxDistance==2000", geometry="Point", coordinates="[2.35,48.85]") == set()
    assert ids(csf='registrationName=="b"') == {b}
    assert ids(attrs="temperature", timerel="after", timeAt="2021-01-01T00:00:00Z") == {c}
    r = client.get("/csourceRegistrations", params={"attrs": "pm10", "limit": 1, "count": "true"})
    assert r.headers["NGSILD-Results-Count"] == "2" and len(r.json()) == 1 and 'rel="next"' in r.headers["link"]
    assert client.get("/csourceRegistrations").status_code == 400  # too wide
    assert client.get("/csourceRegistrations", params={"q": "a=="}).status_code == 400


def test_terms_follow_the_readers_context(client: httpx.Client, context_server: Any) -> None:
    url = context_server.publish({"Town": "https://example.org/terms#Town", "pop": "https://example.org/terms#pop"})
    rid = create(client, reg(information=[{"entities": [{"type": "Town"}], "propertyNames": ["pop"]}]),
                 headers=link(url))
    plain = client.get(f"/csourceRegistrations/{rid}").json()
    assert plain["information"][0]["entities"][0]["type"] == "https://example.org/terms#Town"
    ld = client.get(f"/csourceRegistrations/{rid}", headers={**link(url), "Accept": "application/ld+json"}).json()
    assert ld["information"][0]["propertyNames"] == ["pop"] and ld["@context"] == url
    assert {x["id"] for x in client.get("/csourceRegistrations", params={"type": "Town"}, headers=link(url)).json()} == {rid}


def test_registrations_are_tenant_scoped(broker_url: str, client: httpx.Client) -> None:
    rid = create(client, reg())
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": client.headers["NGSILD-Tenant"] + "x"}) as other:
        assert other.get(f"/csourceRegistrations/{rid}").status_code == 404


def test_one_attribute_patch_chooses_registrations_by_the_stored_type(client: httpx.Client) -> None:
    """A PATCH naming no `type` matches registrations on the local entity's type (read only once one exists)."""
    eid = "urn:ngsi-ld:AirQualityObserved:patch-by-type"
    r = client.post("/entities", json={"id": eid, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 1}})
    assert r.status_code == 201, r.text
    assert client.patch(f"/entities/{eid}/attrs/no2", json={"value": 2}).status_code == 204  # no registration
    # an exclusive registration of another type does not take it: the entity's type was read
    create(client, reg(mode="exclusive", operations=["updateOps"],
                       information=[{"entities": [{"type": "Vehicle"}], "propertyNames": ["no2"]}]))
    assert client.patch(f"/entities/{eid}/attrs/no2", json={"value": 3}).status_code == 204
    assert client.get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 3
    # one of the entity's type does: the update goes to its source only, which is unreachable
    create(client, reg(mode="exclusive", operations=["updateOps"],
                       information=[{"entities": [{"type": "AirQualityObserved"}], "propertyNames": ["no2"]}]))
    r = client.patch(f"/entities/{eid}/attrs/no2", json={"value": 4})
    assert r.status_code in (502, 504), r.text
    assert client.get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 3
