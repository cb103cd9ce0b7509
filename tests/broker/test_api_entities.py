"""/entities and /entities/{id}[/attrs[/{attr}]] through a real socket, on both stores (clauses 6.4-6.7)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.broker.conftest import CORE, link, new_id

JSON_LD = "application/ld+json"
AQO = {
    "type": "AirQualityObserved",
    "no2": {"type": "Property", "value": 22.5, "unitCode": "GQ", "observedAt": "2026-11-26T06:00:00Z"},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.447, 43.529]}},
    "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:aix-1"},
    "name": {"type": "LanguageProperty", "languageMap": {"fr": "Aix centre", "en": "Aix centre (en)"}},
}


def create(client: httpx.Client, body: dict, **kwargs) -> str:
    entity_id = body.get("id") or new_id()
    r = client.post("/entities", json={**body, "id": entity_id}, **kwargs)
    assert r.status_code == 201, r.text
    return entity_id


def get(client: httpx.Client, entity_id: str, **params) -> dict:
    r = client.get(f"/entities/{entity_id}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_then_retrieve_round_trip(client: httpx.Client) -> None:
    entity_id = new_id()
    r = client.post("/entities", json={"id": entity_id, **AQO})
    assert r.status_code == 201
    assert r.headers["location"] == f"/ngsi-ld/v1/entities/{entity_id}"
    got = get(client, entity_id)
    assert got == {"id": entity_id, **AQO}
    r = client.get(f"/entities/{entity_id}")
    assert r.headers["content-type"].startswith("application/json")
    assert CORE in r.headers["link"]


def test_create_conflict_is_409(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.post("/entities", json={"id": entity_id, **AQO})
    assert r.status_code == 409
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"id": "not a uri", "type": "T"}, "BadRequestData"),
        ({"type": "T"}, "BadRequestData"),
        ({"id": "urn:ngsi-ld:T:1"}, "BadRequestData"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Relationship", "object": "no uri"}}, "BadRequestData"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500]}}}, "BadRequestData"),
        ([1, 2], "InvalidRequest"),  # not an object: wrong content (clause 6.3.2, ETSI 001_02_02)
    ],
)
def test_create_invalid_is_400(client: httpx.Client, body: object, problem: str) -> None:
    r = client.post("/entities", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith(problem)
    assert "link" not in r.headers


def test_malformed_json_is_400_invalid_request(client: httpx.Client) -> None:
    r = client.post("/entities", content=b'{"id": "urn:a:b", ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"


def test_unsupported_content_type_is_bare_415(client: httpx.Client) -> None:
    r = client.post("/entities", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.content == b""


def test_unacceptable_accept_is_406(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.get(f"/entities/{entity_id}", headers={"Accept": "text/html"})
    assert r.status_code == 406
    assert "application/json" in r.json()["available"]


def test_unknown_entity_is_404_and_bad_id_400(client: httpx.Client) -> None:
    create(client, AQO)  # the tenant exists, so the 404 is about the entity
    r = client.get(f"/entities/{new_id()}")
    assert r.status_code == 404
    assert r.json()["type"].endswith("ResourceNotFound")
    assert client.get("/entities/notauri").status_code == 400
    assert client.delete(f"/entities/{new_id()}").status_code == 404


def test_ld_json_request_and_response(client: httpx.Client, context_server) -> None:
    ctx = context_server.publish({"no2": "https://example.org/air#no2", "AirQualityObserved": "https://example.org/air#AQO"})
    entity_id = new_id()
    body = {"id": entity_id, **AQO, "@context": ctx}
    r = client.post("/entities", content=orjson.dumps(body), headers={"Content-Type": JSON_LD})
    assert r.status_code == 201, r.text
    r = client.get(f"/entities/{entity_id}", headers={"Accept": JSON_LD, **link(ctx)})
    assert r.headers["content-type"].startswith(JSON_LD)
    got = r.json()
    assert got["@context"] == ctx
    assert got["type"] == "AirQualityObserved" and "no2" in got
    # Without the context, the same entity reads with full IRIs.
    plain = get(client, entity_id)
    assert plain["type"] == "https://example.org/air#AQO"
    assert "https://example.org/air#no2" in plain
    assert context_server.hits(ctx) == 1  # fetched once, then cached


def test_link_header_with_ld_json_body_is_400(client: httpx.Client, context_server) -> None:
    ctx = context_server.publish({"x": "https://example.org/x"})
    body = {"id": new_id(), "type": "T", "@context": ctx}
    r = client.post("/entities", content=orjson.dumps(body), headers={"Content-Type": JSON_LD, **link(ctx)})
    assert r.status_code == 400
    r = client.post("/entities", json=body)  # @context in an application/json body
    assert r.status_code == 400
    r = client.post("/entities", content=orjson.dumps({"id": new_id(), "type": "T"}), headers={"Content-Type": JSON_LD})
    assert r.status_code == 400  # ld+json without @context


def test_unreachable_remote_context_is_503(client: httpx.Client, context_server) -> None:
    r = client.post("/entities", json={"id": new_id(), "type": "T"}, headers=link(context_server.base + "/missing.jsonld"))
    assert r.status_code == 503
    assert r.json()["type"].endswith("LdContextNotAvailable")


def test_sys_attrs(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    got = get(client, entity_id, options="sysAttrs")
    assert got["createdAt"].endswith("Z") and got["modifiedAt"] >= got["createdAt"]
    assert got["no2"]["createdAt"] == got["createdAt"]
    assert "createdAt" not in get(client, entity_id)["no2"]
    r = client.patch(f"/entities/{entity_id}/attrs", json={"no2": {"type": "Property", "value": 30}})
    assert r.status_code == 204
    later = get(client, entity_id, options="sysAttrs")
    assert later["no2"]["createdAt"] == got["no2"]["createdAt"]
    assert later["no2"]["modifiedAt"] > got["no2"]["modifiedAt"]
    assert later["location"]["modifiedAt"] == got["location"]["modifiedAt"]
    assert later["createdAt"] == got["createdAt"] and later["modifiedAt"] > got["modifiedAt"]


def test_key_values_and_concise_round_trip(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    kv = get(client, entity_id, options="keyValues")
    assert kv["no2"] == 22.5 and kv["refDevice"] == "urn:ngsi-ld:Device:aix-1"
    assert kv["location"] == AQO["location"]["value"]
    assert get(client, entity_id, format="keyValues") == kv
    concise = get(client, entity_id, options="concise")
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:aix-1"}
    # concise goes back in and reads out the same normalized entity
    copy_id = new_id()
    create(client, {**concise, "id": copy_id})
    assert get(client, copy_id) == {**get(client, entity_id), "id": copy_id}
    # keyValues goes back in as Properties/GeoProperties
    kv_id = new_id()
    create(client, {**{k: v for k, v in kv.items() if k != "name"}, "id": kv_id})
    back = get(client, kv_id)
    assert back["no2"] == {"type": "Property", "value": 22.5}
    assert back["location"]["type"] == "GeoProperty"


def test_lang_filter(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    assert get(client, entity_id, options="keyValues", lang="en")["name"] == "Aix centre (en)"
    normalized = get(client, entity_id, lang="fr")
    assert normalized["name"] == {"type": "Property", "value": "Aix centre", "lang": "fr"}


def test_attrs_pick_omit(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    assert set(get(client, entity_id, attrs="no2")) == {"id", "type", "no2"}
    assert set(get(client, entity_id, pick="id,no2")) == {"id", "no2"}
    assert "no2" not in get(client, entity_id, omit="no2")
    r = client.get(f"/entities/{entity_id}", params={"pick": "no2", "omit": "id"})
    assert r.status_code == 400


def test_geojson_representation(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.get(f"/entities/{entity_id}", headers={"Accept": "application/geo+json"})
    assert r.status_code == 200
    feature = r.json()
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
    assert feature["properties"]["no2"]["value"] == 22.5
    assert feature["@context"] == CORE and "link" not in r.headers  # clause 6.3.6: in the body unless Prefer
    simplified = client.get(f"/entities/{entity_id}", params={"options": "keyValues", "geometryProperty": "location"},
                            headers={"Accept": "application/geo+json", "Prefer": "body=json"})
    assert simplified.json()["properties"]["no2"] == 22.5 and "@context" not in simplified.json()
    assert "link" in simplified.headers


def test_single_scope_is_a_string(client: httpx.Client) -> None:
    entity_id = create(client, {"type": "T", "scope": "/Aix/Centre"})
    assert get(client, entity_id)["scope"] == "/Aix/Centre"
    assert client.post(f"/entities/{entity_id}/attrs", json={"scope": "/Aix/Nord"}).status_code == 204
    assert get(client, entity_id)["scope"] == "/Aix/Nord"
    assert client.patch(f"/entities/{entity_id}", json={"scope": ["/Aix/Nord", "/Aix/Sud"]}).status_code == 204
    assert get(client, entity_id)["scope"] == ["/Aix/Nord", "/Aix/Sud"]


def test_update_attrs_reports_a_scope_it_cannot_replace(client: httpx.Client) -> None:
    entity_id = create(client, {"type": "T"})
    # clause 5.6.2.4: Update Attributes replaces an existing scope only
    r = client.patch(f"/entities/{entity_id}/attrs", json={"scope": "/Aix"})
    assert r.status_code == 207 and r.json()["notUpdated"][0]["attributeName"] == "scope"
    assert "scope" not in get(client, entity_id)


def test_entity_type_must_not_be_a_json_ld_keyword(client: httpx.Client) -> None:
    # with the core context "type" means @type: an entity of type "type" has no type IRI
    r = client.post("/entities", json={"id": new_id(), "type": "type"})
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")


def test_one_attribute_requests_in_json_ld(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    body = {"value": 30, "@context": CORE}
    headers = {"Content-Type": JSON_LD}
    # clause 5.6.4: the body's @context is the request's context, not a sub-attribute
    assert client.patch(f"/entities/{entity_id}/attrs/no2", content=orjson.dumps(body), headers=headers).status_code == 204
    assert get(client, entity_id)["no2"]["value"] == 30
    replace = {"type": "Property", "value": 31, "@context": CORE}
    assert client.put(f"/entities/{entity_id}/attrs/no2", content=orjson.dumps(replace), headers=headers).status_code == 204
    assert get(client, entity_id)["no2"] == {"type": "Property", "value": 31}


def test_language_property_null_deletes(client: httpx.Client) -> None:
    entity_id = create(client, {**AQO, "street": [
        {"type": "LanguageProperty", "languageMap": {"fr": "Cours Mirabeau"}},
        {"type": "LanguageProperty", "languageMap": {"en": "Mirabeau"}, "datasetId": "urn:ngsi-ld:Dataset:en"}]})
    null_map = {"@none": "urn:ngsi-ld:null"}
    r = client.patch(f"/entities/{entity_id}/attrs", json={"street": {
        "type": "LanguageProperty", "languageMap": null_map, "datasetId": "urn:ngsi-ld:Dataset:en"}})
    assert r.status_code == 204
    assert get(client, entity_id)["street"] == {"type": "LanguageProperty", "languageMap": {"fr": "Cours Mirabeau"}}
    assert client.patch(f"/entities/{entity_id}", json={"street": {"languageMap": null_map}}).status_code == 204
    assert "street" not in get(client, entity_id)
    # NGSI-LD Null is for updates only, and JSON null is never a value (clauses 4.5.0, 5.2.1)
    assert client.post("/entities", json={"id": new_id(), "type": "T", "l": {"languageMap": null_map}}).status_code == 400
    assert client.patch(f"/entities/{entity_id}", json={"no2": {"value": None}}).status_code == 400


def test_delete_entity(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    assert client.delete(f"/entities/{entity_id}").status_code == 204
    assert client.get(f"/entities/{entity_id}").status_code == 404


def test_replace_entity_keeps_created_at(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    before = get(client, entity_id, options="sysAttrs")
    r = client.put(f"/entities/{entity_id}", json={"type": "AirQualityObserved", "o3": 40})
    assert r.status_code == 204, r.text
    after = get(client, entity_id, options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert "no2" not in after and after["o3"]["value"] == 40
    assert client.put(f"/entities/{new_id()}", json={"type": "T"}).status_code == 404
    r = client.put(f"/entities/{entity_id}", json={"id": new_id(), "type": "T"})
    assert r.status_code == 400


def test_merge_entity(client: httpx.Client) -> None:
    entity_id = create(client, {**AQO, "address": {"type": "Property", "value": {"street": "Cours Mirabeau", "city": "Aix", "country": "FR"}}})
    r = client.patch(
        f"/entities/{entity_id}",
        json={
            "no2": {"type": "Property", "value": 40, "observedAt": "2026-11-26T07:00:00Z"},
            "address": {"type": "Property", "value": {"street": "Rue Espariat", "country": "urn:ngsi-ld:null"}},
            "refDevice": "urn:ngsi-ld:null",
            "o3": 12,
        },
    )
    assert r.status_code == 204, r.text
    got = get(client, entity_id)
    assert got["no2"] == {"type": "Property", "value": 40, "unitCode": "GQ", "observedAt": "2026-11-26T07:00:00Z"}
    assert got["address"]["value"] == {"street": "Rue Espariat", "city": "Aix"}
    assert "refDevice" not in got
    assert got["o3"] == {"type": "Property", "value": 12}
    assert client.patch(f"/entities/{new_id()}", json={"o3": 1}).status_code == 404


def test_merge_key_values_keeps_types(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.patch(f"/entities/{entity_id}", params={"options": "keyValues"}, json={"refDevice": "urn:ngsi-ld:Device:2"})
    assert r.status_code == 204
    assert get(client, entity_id)["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:2"}
    r = client.patch(f"/entities/{entity_id}", params={"lang": "en"}, json={"name": "Aix downtown"})
    assert r.status_code == 204
    assert get(client, entity_id)["name"]["languageMap"] == {"fr": "Aix centre", "en": "Aix downtown"}


def test_append_attrs_and_no_overwrite(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.post(f"/entities/{entity_id}/attrs", json={"o3": 10, "type": "Sensor"})
    assert r.status_code == 204
    got = get(client, entity_id)
    assert got["o3"]["value"] == 10 and got["type"] == ["AirQualityObserved", "Sensor"]
    r = client.post(f"/entities/{entity_id}/attrs", params={"options": "noOverwrite"}, json={"o3": 99, "pm10": 5})
    assert r.status_code == 207
    # clause 6.3.6: a 207 body has no @context, so it names attributes by their full IRIs
    default = "https://uri.etsi.org/ngsi-ld/default-context/"
    assert r.json() == {"updated": [default + "pm10"],
                        "notUpdated": [{"attributeName": default + "o3", "reason": r.json()["notUpdated"][0]["reason"]}]}
    assert "link" not in r.headers
    assert get(client, entity_id)["o3"]["value"] == 10
    assert client.post(f"/entities/{new_id()}/attrs", json={"o3": 1}).status_code == 404


def test_update_attrs_replaces_whole_attribute_and_null_deletes(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.patch(f"/entities/{entity_id}/attrs", json={"no2": {"type": "Property", "value": 100}, "location": "urn:ngsi-ld:null"})
    assert r.status_code == 204, r.text
    got = get(client, entity_id)
    assert got["no2"] == {"type": "Property", "value": 100}  # unitCode gone: the whole attribute is replaced
    assert "location" not in got


def test_partial_attribute_update(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    r = client.patch(f"/entities/{entity_id}/attrs/no2", json={"value": 100, "observedAt": "2026-11-26T13:00:00Z"})
    assert r.status_code == 204, r.text
    assert get(client, entity_id)["no2"] == {"type": "Property", "value": 100, "unitCode": "GQ", "observedAt": "2026-11-26T13:00:00Z"}
    r = client.patch(f"/entities/{entity_id}/attrs/refDevice", json={"object": "urn:ngsi-ld:Device:9"})
    assert r.status_code == 204
    assert get(client, entity_id)["refDevice"]["object"] == "urn:ngsi-ld:Device:9"
    r = client.patch(f"/entities/{entity_id}/attrs/no2", json={"type": "Relationship", "object": "urn:a:b"})
    assert r.status_code == 400
    assert client.patch(f"/entities/{entity_id}/attrs/absent", json={"value": 1}).status_code == 404
    assert client.patch(f"/entities/{entity_id}/attrs/no2", json={"value": "urn:ngsi-ld:null"}).status_code == 204
    assert "no2" not in get(client, entity_id)


@pytest.mark.parametrize("attr_type", [[], {"x": 1}, "Foo", 3, "property"])
def test_partial_attribute_update_refuses_an_unknown_type(client: httpx.Client, attr_type: object) -> None:
    """A type that is not an attribute type is a 400 naming the attribute, as on every other write (clauses 5.5.4, 5.6.4)."""
    entity_id = create(client, AQO)
    before = get(client, entity_id, options="sysAttrs")["no2"]
    r = client.patch(f"/entities/{entity_id}/attrs/no2", json={"type": attr_type, "value": 1})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert "no2" in r.json()["detail"]
    assert get(client, entity_id, options="sysAttrs")["no2"] == before


def test_partial_attribute_update_type_may_be_absent_or_the_same(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    assert client.patch(f"/entities/{entity_id}/attrs/no2", json={"type": "Property", "value": 5}).status_code == 204
    assert client.patch(f"/entities/{entity_id}/attrs/no2", json={"value": 6}).status_code == 204
    assert get(client, entity_id)["no2"]["value"] == 6
    point = {"type": "Point", "coordinates": [5.5, 43.5]}
    r = client.patch(f"/entities/{entity_id}/attrs/location", json={"type": "GeoProperty", "value": point})
    assert r.status_code == 204, r.text
    assert get(client, entity_id)["location"] == {"type": "GeoProperty", "value": point}
    moved = {"type": "Point", "coordinates": [5.6, 43.6]}
    r = client.patch(f"/entities/{entity_id}/attrs/location", json=moved)  # a concise GeoProperty: its GeoJSON type is no attribute type
    assert r.status_code == 204, r.text
    assert get(client, entity_id)["location"] == {"type": "GeoProperty", "value": moved}


def test_replace_attribute(client: httpx.Client) -> None:
    entity_id = create(client, AQO)
    before = get(client, entity_id, options="sysAttrs")["no2"]
    r = client.put(f"/entities/{entity_id}/attrs/no2", json={"type": "Property", "value": 7})
    assert r.status_code == 204, r.text
    after = get(client, entity_id, options="sysAttrs")["no2"]
    assert after["value"] == 7 and "unitCode" not in after
    assert after["createdAt"] == before["createdAt"]
    assert client.put(f"/entities/{entity_id}/attrs/absent", json={"value": 1}).status_code == 404


def test_multi_attribute_dataset_ids(client: httpx.Client) -> None:
    entity_id = create(client, {
        "type": "AirQualityObserved",
        "no2": [
            {"type": "Property", "value": 20},
            {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:sensorA"},
            {"type": "Property", "value": 22, "datasetId": "urn:ngsi-ld:Dataset:sensorB"},
        ],
    })
    kv = get(client, entity_id, options="keyValues")
    assert kv["no2"] == {"dataset": {"@none": 20, "urn:ngsi-ld:Dataset:sensorA": 21, "urn:ngsi-ld:Dataset:sensorB": 22}}
    # patch one dataset: the others stay
    r = client.patch(f"/entities/{entity_id}/attrs/no2", json={"value": 31, "datasetId": "urn:ngsi-ld:Dataset:sensorA"})
    assert r.status_code == 204, r.text
    # update attrs appends a new dataset and replaces the default
    r = client.patch(f"/entities/{entity_id}/attrs", json={"no2": [{"value": 10}, {"value": 40, "datasetId": "urn:ngsi-ld:Dataset:sensorC"}]})
    assert r.status_code == 204, r.text
    values = {i.get("datasetId"): i["value"] for i in get(client, entity_id)["no2"]}
    assert values == {None: 10, "urn:ngsi-ld:Dataset:sensorA": 31, "urn:ngsi-ld:Dataset:sensorB": 22, "urn:ngsi-ld:Dataset:sensorC": 40}
    # delete one dataset, then a missing one, then all
    r = client.delete(f"/entities/{entity_id}/attrs/no2", params={"datasetId": "urn:ngsi-ld:Dataset:sensorB"})
    assert r.status_code == 204
    r = client.delete(f"/entities/{entity_id}/attrs/no2", params={"datasetId": "urn:ngsi-ld:Dataset:sensorB"})
    assert r.status_code == 404
    assert len(get(client, entity_id)["no2"]) == 3
    r = client.delete(f"/entities/{entity_id}/attrs/no2")  # the default instance
    assert r.status_code == 204
    assert all("datasetId" in i for i in get(client, entity_id)["no2"])
    r = client.delete(f"/entities/{entity_id}/attrs/no2", params={"deleteAll": "true"})
    assert r.status_code == 204
    assert "no2" not in get(client, entity_id)
    assert client.delete(f"/entities/{entity_id}/attrs/no2").status_code == 404


def test_duplicate_dataset_id_in_create_is_400(client: httpx.Client) -> None:
    r = client.post("/entities", json={"id": new_id(), "type": "T", "a": [{"value": 1}, {"value": 2}]})
    assert r.status_code == 400


def test_tenant_isolation_and_unknown_tenant(client: httpx.Client, broker_url: str, tenant: str) -> None:
    entity_id = create(client, AQO)
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant + "x"}) as other:
        r = other.get(f"/entities/{entity_id}")
        assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")
        r = other.get("/entities", params={"type": "AirQualityObserved"})
        assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1") as default:
        r = default.get(f"/entities/{entity_id}")
        assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    r = client.get("/nothing-here")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    assert client.post("/entities/urn:ngsi-ld:T:1").status_code == 405
    # an item operation on the collection, or with an empty id segment: the entity id is missing (clause 5.6.x.4)
    # a trailing slash names the collection itself, which takes no PUT or PATCH
    assert client.put("/entities", json={}).status_code == 405
    assert client.patch("/entities/", json={}).status_code == 405
    # an empty id segment inside the path: the entity id is missing (clauses 5.6.3.4, 5.6.5.4)
    for r in (client.post("/entities//attrs", json={"a": 1}), client.delete("/entities//attrs/a"),
              client.patch("/entities//attrs/a", json={"value": 1})):
        assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData"), r.text
