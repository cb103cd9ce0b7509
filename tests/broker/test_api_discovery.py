"""/types, /types/{type}, /attributes, /attributes/{attr} (clauses 6.25-6.28) and /version on both stores."""

from __future__ import annotations

import httpx

from tests.broker.conftest import new_id

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def seed(client: httpx.Client) -> None:
    body = [
        {"id": new_id(), "type": "AirQualityObserved", "no2": 1, "refDevice": {"type": "Relationship", "object": "urn:a:b"}},
        {"id": new_id(), "type": "AirQualityObserved", "no2": 2, "location": {"type": "Point", "coordinates": [5, 43]}},
        {"id": new_id(), "type": "NoiseLevelObserved", "LAeq": 3},
    ]
    assert client.post("/entityOperations/create", json=body).status_code == 201


def test_types(client: httpx.Client) -> None:
    seed(client)
    r = client.get("/types")
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "EntityTypeList" and body["id"].startswith("urn:")
    assert body["typeList"] == ["AirQualityObserved", "NoiseLevelObserved"]
    details = client.get("/types", params={"details": "true"}).json()
    assert {d["typeName"]: d["attributeNames"] for d in details} == {
        "AirQualityObserved": ["location", "no2", "refDevice"],
        "NoiseLevelObserved": ["LAeq"],
    }
    assert details[0]["id"] == DEFAULT + "AirQualityObserved"


def test_type_info(client: httpx.Client) -> None:
    seed(client)
    info = client.get("/types/AirQualityObserved").json()
    assert info["type"] == "EntityTypeInfo" and info["entityCount"] == 2
    attrs = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert attrs == {"no2": ["Property"], "refDevice": ["Relationship"], "location": ["GeoProperty"]}
    r = client.get("/types/Unknown")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")


def test_attributes(client: httpx.Client) -> None:
    seed(client)
    body = client.get("/attributes").json()
    assert body["type"] == "AttributeList"
    assert body["attributeList"] == ["LAeq", "location", "no2", "refDevice"]
    details = {a["attributeName"]: a for a in client.get("/attributes", params={"details": "true"}).json()}
    assert details["no2"]["typeNames"] == ["AirQualityObserved"]
    info = client.get("/attributes/no2").json()
    assert info["attributeCount"] == 2 and info["attributeTypes"] == ["Property"]
    assert info["typeNames"] == ["AirQualityObserved"]
    assert client.get("/attributes/nothing").status_code == 404
    assert client.get("/attributes", params={"details": "maybe"}).status_code == 400


def test_discovery_of_unknown_tenant_is_404(broker_url: str) -> None:
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": "nobody-here"}) as c:
        for path in ("/types", "/attributes"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")


def test_version_and_source_identity(raw_client: httpx.Client) -> None:
    body = raw_client.get("/version").json()
    assert body["ngsildVersion"] == "1.9.1" and "batch" in body["features"]
    identity = raw_client.get("/ngsi-ld/v1/info/sourceIdentity").json()
    assert identity["type"] == "ContextSourceIdentity" and identity["id"].startswith("urn:ngsi-ld:ContextSource:")
