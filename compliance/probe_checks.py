"""The checks of `metropole check broker`, one function per behaviour, each with its clause.

Clauses are those of ETSI GS CIM 009 V1.9.1. Features group the checks as
the README's conformance table does: entities, representations, batch,
query, geo, errors, context, types, tenants, subscriptions, temporal, registrations,
distributed operations.
Every check creates what it needs (in the probe's tenant) and asserts one
behaviour; a prerequisite that fails makes the check fail with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compliance.probe_registry import API, CHECKS, ERRORS, Failed, NotSupported, check
from models.media import JSON_LD

if TYPE_CHECKING:
    from compliance.probe import Probe

__all__ = ["CHECKS"]



def _body(r: Any) -> Any:
    try:
        return r.json()
    except ValueError as exc:
        raise Failed("a JSON body", r.text[:200]) from exc


def _value(entity: Any, attribute: str) -> Any:
    attr = entity.get(attribute) if isinstance(entity, dict) else None
    return attr.get("value") if isinstance(attr, dict) else attr


def _ids(body: Any) -> set[str]:
    if not isinstance(body, list):
        raise Failed("a JSON array of entities", repr(body)[:200])
    ids = set()
    for e in body:
        if not (isinstance(e, dict) and isinstance(e.get("id"), str)):
            raise Failed("every element an object with a string id", repr(e)[:200])
        ids.add(e["id"])
    return ids


# --- entities (5.6, 5.7.1) ------------------------------------------------------------------


@check("entities", "5.6.1, 6.4.3.1", "Create entity", "201 Created with a Location header naming the entity")
def create_entity(p: Probe) -> str:
    entity = p.entity()
    r = p.request("POST", f"{API}/entities", json_body=entity)
    p.expect_status(r, 201)
    p.created.add(entity["id"])
    location = r.headers.get("location", "")
    if not location.endswith(entity["id"]):
        raise Failed(f"Location ending with {entity['id']}", location or "no Location header")
    return f"201, Location {location}"


@check("entities", "5.6.1, 5.5.2", "Create an existing entity", "409 with ProblemDetails AlreadyExists")
def create_existing_entity(p: Probe) -> str:
    entity = p.entity()
    p.create(entity)
    return p.expect_problem(p.request("POST", f"{API}/entities", json_body=entity), 409, "AlreadyExists")


@check("entities", "5.7.1, 6.5.3.1", "Retrieve entity", "200 with the attribute's value, unitCode and observedAt")
def retrieve_entity(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    r = p.request("GET", f"{API}/entities/{eid}")
    p.expect_status(r, 200)
    no2 = _body(r).get("no2", {})
    if no2.get("value") != 41 or no2.get("unitCode") != "GQ" or no2.get("observedAt") != "2026-11-26T07:00:00Z":
        raise Failed('no2 {"value": 41, "unitCode": "GQ", "observedAt": "2026-11-26T07:00:00Z"}', repr(no2))
    return "200, no2 as written"


@check("entities", "5.6.2, 6.6.3.2", "Update attributes", "204, then the new value is read back")
def update_attributes(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    r = p.request("PATCH", f"{API}/entities/{eid}/attrs", json_body={"no2": {"type": "Property", "value": 55}})
    p.expect_status(r, 204)
    got = _value(_body(p.request("GET", f"{API}/entities/{eid}")), "no2")
    if got != 55:
        raise Failed("no2 = 55 after the update", repr(got))
    return "204, no2 = 55"


@check("entities", "5.6.3, 6.6.3.1", "Append attributes", "204, then the new attribute is read back")
def append_attributes(p: Probe) -> str:
    eid = p.create(p.entity())
    r = p.request("POST", f"{API}/entities/{eid}/attrs", json_body={"o3": {"type": "Property", "value": 80}})
    p.expect_status(r, 204)
    got = _value(_body(p.request("GET", f"{API}/entities/{eid}")), "o3")
    if got != 80:
        raise Failed("o3 = 80 after the append", repr(got))
    return "204, o3 = 80"


@check("entities", "5.6.4, 6.7.3.1", "Partial attribute update", "204, then the new value is read back")
def partial_attribute_update(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    p.expect_status(p.request("PATCH", f"{API}/entities/{eid}/attrs/no2", json_body={"value": 12}), 204)
    got = _value(_body(p.request("GET", f"{API}/entities/{eid}")), "no2")
    if got != 12:
        raise Failed("no2 = 12", repr(got))
    return "204, no2 = 12"


@check("entities", "5.6.5, 6.7.3.2", "Delete attribute", "204, then the attribute is gone")
def delete_attribute(p: Probe) -> str:
    eid = p.create(p.entity())
    p.expect_status(p.request("DELETE", f"{API}/entities/{eid}/attrs/no2"), 204)
    if "no2" in _body(p.request("GET", f"{API}/entities/{eid}")):
        raise Failed("no2 absent", "no2 still present")
    return "204, no2 gone"


@check("entities", "5.6.17, 6.5.3.4", "Merge entity", "204; merged attribute changed, others kept")
def merge_entity(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    p.expect_status(p.request("PATCH", f"{API}/entities/{eid}", json_body={"no2": {"type": "Property", "value": 7}}),
                    204)
    body = _body(p.request("GET", f"{API}/entities/{eid}"))
    if _value(body, "no2") != 7 or "location" not in body:
        raise Failed("no2 = 7 and location kept", repr(body)[:200])
    return "204, merged"


@check("entities", "5.6.18, 6.5.3.3", "Replace entity", "204; only the new attributes remain")
def replace_entity(p: Probe) -> str:
    eid = p.create(p.entity())
    new = {"id": eid, "type": "AirQualityObserved", "o3": {"type": "Property", "value": 60}}
    p.expect_status(p.request("PUT", f"{API}/entities/{eid}", json_body=new), 204)
    body = _body(p.request("GET", f"{API}/entities/{eid}"))
    if "no2" in body or _value(body, "o3") != 60:
        raise Failed("only o3 = 60", repr(body)[:200])
    return "204, replaced"


@check("entities", "5.6.6, 6.5.3.2", "Delete entity", "204, then 404 ResourceNotFound on retrieval")
def delete_entity(p: Probe) -> str:
    eid = p.create(p.entity())
    p.expect_status(p.request("DELETE", f"{API}/entities/{eid}"), 204)
    p.created.discard(eid)
    return p.expect_problem(p.request("GET", f"{API}/entities/{eid}"), 404, "ResourceNotFound")


# --- representations (4.5) --------------------------------------------------------------------


@check("representations", "4.5.4, 6.3.7", "Simplified (keyValues) representation", "attributes as bare values")
def key_values(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    r = p.request("GET", f"{API}/entities/{eid}", params={"options": "keyValues"})
    p.expect_status(r, 200)
    body = _body(r)
    if body.get("no2") != 41 or body.get("location", {}).get("type") != "Point":
        raise Failed('"no2": 41 and location a bare GeoJSON Point', repr(body)[:200])
    return "no2 = 41"


@check("representations", "4.5.2.3, 6.3.7", "Concise representation", "attributes without their type member")
def concise(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    r = p.request("GET", f"{API}/entities/{eid}", params={"options": "concise"})
    p.expect_status(r, 200)
    no2 = _body(r).get("no2")
    if not isinstance(no2, dict) or "type" in no2 or no2.get("value") != 41 or no2.get("unitCode") != "GQ":
        raise Failed('no2 {"value": 41, "unitCode": "GQ", ...} without "type"', repr(no2))
    return repr(no2)


@check("representations", "6.3.5", "JSON-LD response", "Content-Type application/ld+json with an @context member")
def json_ld_response(p: Probe) -> str:
    eid = p.create(p.entity())
    r = p.request("GET", f"{API}/entities/{eid}", headers={"Accept": JSON_LD})
    p.expect_status(r, 200)
    if JSON_LD not in r.headers.get("content-type", "") or "@context" not in _body(r):
        raise Failed("application/ld+json with @context", f"{r.headers.get('content-type')} {r.text[:150]}")
    return "ld+json with @context"


@check("representations", "4.5.16, 6.3.15", "GeoJSON representation", "Accept application/geo+json gives a Feature")
def geojson(p: Probe) -> str:
    eid = p.create(p.entity())
    r = p.request("GET", f"{API}/entities/{eid}", headers={"Accept": "application/geo+json"})
    p.expect_status(r, 200)
    body = _body(r)
    if body.get("type") != "Feature" or body.get("geometry", {}).get("type") != "Point":
        raise Failed("a GeoJSON Feature with a Point geometry", repr(body)[:200])
    return "Feature"


# --- batch operations (5.6.7-5.6.10) ------------------------------------------------------------


@check("batch", "5.6.7, 6.14.3.1", "Batch create", "201 with the ids created")
def batch_create(p: Probe) -> str:
    entities = [p.entity(), p.entity()]
    r = p.request("POST", f"{API}/entityOperations/create", json_body=entities)
    p.expect_status(r, 201)
    p.created.update(e["id"] for e in entities)
    if set(_body(r)) != {e["id"] for e in entities}:
        raise Failed("the two ids", r.text[:200])
    return "201, 2 ids"


@check("batch", "5.6.7, 6.14.3.1", "Batch create with an existing entity", "207 with an error for the existing one")
def batch_create_partial(p: Probe) -> str:
    existing = p.entity()
    p.create(existing)
    fresh = p.entity()
    r = p.request("POST", f"{API}/entityOperations/create", json_body=[existing, fresh])
    p.created.add(fresh["id"])
    p.expect_status(r, 207)
    body = _body(r)
    errors = [e.get("entityId") for e in body.get("errors", [])]
    if body.get("success") != [fresh["id"]] or errors != [existing["id"]]:
        raise Failed("success [new id], errors [existing id]", repr(body)[:300])
    return "207, one success, one error"


@check("batch", "5.6.8, 6.15.3.1", "Batch upsert", "201 for new entities, 204 when all existed")
def batch_upsert(p: Probe) -> str:
    entities = [p.entity(), p.entity()]
    first = p.request("POST", f"{API}/entityOperations/upsert", json_body=entities)
    p.expect_status(first, 201)
    p.created.update(e["id"] for e in entities)
    p.expect_status(p.request("POST", f"{API}/entityOperations/upsert", json_body=entities), 204)
    return "201 then 204"


@check("batch", "5.6.9, 6.16.3.1", "Batch update", "204, values updated")
def batch_update(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    r = p.request("POST", f"{API}/entityOperations/update",
                  json_body=[{"id": eid, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 3}}])
    p.expect_status(r, 204)
    if _value(_body(p.request("GET", f"{API}/entities/{eid}")), "no2") != 3:
        raise Failed("no2 = 3", "another value")
    return "204"


@check("batch", "5.6.10, 6.17.3.1", "Batch delete", "204, entities gone")
def batch_delete(p: Probe) -> str:
    ids = [p.create(p.entity()), p.create(p.entity())]
    p.expect_status(p.request("POST", f"{API}/entityOperations/delete", json_body=ids), 204)
    p.created.difference_update(ids)
    p.expect_status(p.request("GET", f"{API}/entities/{ids[0]}"), 404)
    return "204, gone"


# --- query (5.7.2, 4.9) -------------------------------------------------------------------------


def _three(p: Probe) -> list[str]:
    values = [(20, 5.4474, 43.5265), (60, 5.3698, 43.2951), (90, 5.0500, 43.4000)]
    ids = []
    for no2, lon, lat in values:
        ids.append(p.create(p.entity(no2=no2, lon=lon, lat=lat)))
    return ids


def _query(p: Probe, **params: Any) -> Any:
    r = p.request("GET", f"{API}/entities", params={"type": "AirQualityObserved", **params})
    p.expect_status(r, 200)
    return r


@check("query", "5.7.2, 6.4.3.2", "Query by type", "every entity of the type in the tenant")
def query_by_type(p: Probe) -> str:
    ids = _three(p)
    got = _ids(_body(_query(p, limit=100)))
    if not set(ids) <= got:
        raise Failed(f"{len(ids)} entities", f"{len(got & set(ids))} of them")
    return f"{len(got)} entities"


@check("query", "4.9, 5.7.2", "Query language (q)", "q=no2>50 returns exactly the matching entities")
def query_language(p: Probe) -> str:
    ids = _three(p)
    got = _ids(_body(_query(p, q="no2>50", limit=100))) & set(ids)
    if got != set(ids[1:]):
        raise Failed("the 2 entities with no2 > 50", f"{len(got)}")
    return "2 of 3 matched"


@check("query", "5.7.2, 4.21", "Attribute projection (attrs)", "only the listed attributes")
def query_attrs(p: Probe) -> str:
    _three(p)
    body = _body(_query(p, attrs="no2", limit=100))
    extra = {k for e in body for k in e if k not in ("id", "type", "no2", "@context")}
    if extra or not all("no2" in e for e in body):
        raise Failed("id, type and no2 only", f"also {sorted(extra)}")
    return "no2 only"


@check("query", "6.3.13, 5.5.9", "Count and pagination", "NGSILD-Results-Count header; limit and offset honoured")
def query_count_pagination(p: Probe) -> str:
    ids = _three(p)
    only = ",".join(ids)
    r = _query(p, id=only, count="true", limit=2, offset=0)
    count = r.headers.get("ngsild-results-count")
    first = _ids(_body(r))
    second = _ids(_body(_query(p, id=only, limit=2, offset=2)))
    if count is None or int(count) != 3:
        raise Failed("NGSILD-Results-Count: 3", f"{count}")
    if len(first) != 2 or len(second) != 1 or first | second != set(ids):
        raise Failed("a page of 2 then a page of 1, together the 3 entities", f"{len(first)} then {len(second)}")
    return f"count {count}, pages disjoint"


# --- geo-queries (4.10) -------------------------------------------------------------------------


@check("geo", "4.10, 5.7.2", "Geo-query near;maxDistance", "only the entities within the distance")
def geo_near(p: Probe) -> str:
    ids = _three(p)
    r = _query(p, georel="near;maxDistance==5000", geometry="Point", coordinates="[5.3698,43.2951]", limit=100)
    got = _ids(_body(r)) & set(ids)
    if got != {ids[1]}:
        raise Failed("the one entity at the Vieux-Port", f"{len(got)} entities")
    return "1 entity"


@check("geo", "4.10, 5.7.2", "Geo-query within a Polygon", "only the entities inside the polygon")
def geo_within(p: Probe) -> str:
    ids = _three(p)
    polygon = "[[[5.3,43.2],[5.5,43.2],[5.5,43.6],[5.3,43.6],[5.3,43.2]]]"
    r = _query(p, georel="within", geometry="Polygon", coordinates=polygon, limit=100)
    got = _ids(_body(r)) & set(ids)
    if got != {ids[0], ids[1]}:
        raise Failed("the 2 entities inside", f"{len(got)} entities")
    return "2 entities"


@check("geo", "4.10, 5.5.2", "Geo-query with an invalid geometry", "400 with a ProblemDetails")
def geo_invalid(p: Probe) -> str:
    r = p.request("GET", f"{API}/entities", params={"type": "AirQualityObserved", "georel": "near;maxDistance==10",
                                                    "geometry": "Point", "coordinates": "[500]"})
    p.expect_status(r, 400)
    body = _body(r)
    if body.get("type") not in (ERRORS + "BadRequestData", ERRORS + "InvalidRequest"):
        raise Failed("type BadRequestData or InvalidRequest", repr(body)[:200])
    return "400"


# --- errors (5.5.2, 5.5.3, 6.3.4) ---------------------------------------------------------------


@check("errors", "5.5.2, 5.5.3", "Invalid entity id", "400 BadRequestData as application/problem+json")
def error_invalid_id(p: Probe) -> str:
    bad = {"id": "not a uri", "type": "AirQualityObserved"}
    return p.expect_problem(p.request("POST", f"{API}/entities", json_body=bad), 400, "BadRequestData")


@check("errors", "5.5.2, 6.5.3.1", "Unknown entity", "404 ResourceNotFound")
def error_not_found(p: Probe) -> str:
    p.create(p.entity())  # the tenant exists, so the 404 is about the entity
    return p.expect_problem(p.request("GET", f"{API}/entities/urn:ngsi-ld:AirQualityObserved:nobody-{p.run_id}"),
                            404, "ResourceNotFound")


@check("errors", "5.5.2", "Malformed JSON", "400 InvalidRequest")
def error_bad_json(p: Probe) -> str:
    return p.expect_problem(p.request("POST", f"{API}/entities", content='{"id": "urn:x:1", '), 400, "InvalidRequest")


@check("errors", "6.3.4", "Unsupported Content-Type", "415")
def error_content_type(p: Probe) -> str:
    r = p.request("POST", f"{API}/entities", content="id=1", headers={"Content-Type": "text/plain"})
    p.expect_status(r, 415)
    return "415"


@check("errors", "4.9, 5.7.2.4", "Invalid query (q)", "400 BadRequestData")
def error_bad_q(p: Probe) -> str:
    # clause 5.7.2.4: a query that is not syntactically valid is BadRequestData (InvalidRequest is for a
    # body that is not JSON, 5.5.4, and for parameters the operation does not take, 6.3.20)
    p.create(p.entity())
    return p.expect_problem(p.request("GET", f"{API}/entities", params={"type": "AirQualityObserved", "q": "no2>>"}),
                            400, "BadRequestData")


# --- @context (5.5.7, 6.3.5) --------------------------------------------------------------------


@check("context", "5.5.7, 6.3.5", "Terms expand with the Link header's @context",
       "short names with the same Link; full IRIs without it")
def context_link(p: Probe) -> str:
    eid = p.create(p.entity())
    short = _body(p.request("GET", f"{API}/entities/{eid}"))
    full = _body(p.request("GET", f"{API}/entities/{eid}", link=False))
    expanded = [k for k in full if k.startswith("http") and k.endswith("no2")]
    if "no2" not in short or not expanded:
        raise Failed("no2 with the Link, its IRI without", f"{sorted(short)[:5]} / {sorted(full)[:5]}")
    return f"no2 <-> {expanded[0]}"


@check("context", "6.3.5", "JSON-LD request with @context in the body", "201")
def context_in_body(p: Probe) -> str:
    entity = {**p.entity(), "@context": [p.context]}
    r = p.request("POST", f"{API}/entities", json_body=entity, link=False, headers={"Content-Type": JSON_LD})
    p.expect_status(r, 201)
    p.created.add(entity["id"])
    return "201"


@check("context", "6.3.5", "JSON-LD request without @context", "400 BadRequestData")
def context_missing_in_jsonld(p: Probe) -> str:
    r = p.request("POST", f"{API}/entities", json_body=p.entity(), link=False, headers={"Content-Type": JSON_LD})
    if r.status_code == 201:
        p.created.add(str(r.headers.get("location", "")).rsplit("/", 1)[-1])
    p.expect_status(r, 400)
    return "400"


@check("context", "6.3.5", "application/json request with @context in the body", "400 BadRequestData")
def context_in_plain_json(p: Probe) -> str:
    entity = {**p.entity(), "@context": [p.context]}
    r = p.request("POST", f"{API}/entities", json_body=entity, link=False)
    if r.status_code == 201:
        p.created.add(entity["id"])
    p.expect_status(r, 400)
    return "400"


# --- types, tenants -----------------------------------------------------------------------------


@check("types", "5.7.5, 6.25.3.1", "Available entity types", "the type of the probe's entities is listed")
def entity_types(p: Probe) -> str:
    p.create(p.entity())
    r = p.request("GET", f"{API}/types")
    p.expect_status(r, 200)
    if "AirQualityObserved" not in r.text:
        raise Failed("AirQualityObserved listed", r.text[:200])
    return "listed"


@check("tenants", "4.14, 5.5.2", "Reading a tenant never written", "404 NonexistentTenant")
def unknown_tenant(p: Probe) -> str:
    r = p.request("GET", f"{API}/entities", params={"type": "AirQualityObserved"}, tenant=f"{p.tenant}-never")
    return p.expect_problem(r, 404, "NonexistentTenant")


# --- subscriptions and notifications (5.8, 5.11) ------------------------------------------------


def _subscribe(p: Probe, eid: str) -> str:
    if p.receiver is None:
        raise Failed("a notification receiver", "none configured")
    sid = f"urn:ngsi-ld:Subscription:compliance-{p.run_id}-{p._n}"
    sub = {"id": sid, "type": "Subscription",
           "entities": [{"id": eid, "type": "AirQualityObserved"}], "watchedAttributes": ["no2"],
           "notification": {"attributes": ["no2"], "format": "normalized",
                            "endpoint": {"uri": p.receiver.url, "accept": "application/json"}}}
    r = p.request("POST", f"{API}/subscriptions", json_body=sub)
    p.expect_status(r, 201)
    p.subscriptions.add(sid)
    return sid


@check("subscriptions", "5.8.1, 6.10.3.1", "Create subscription", "201 with a Location header")
def create_subscription(p: Probe) -> str:
    eid = p.create(p.entity())
    return f"201, {_subscribe(p, eid)}"


@check("subscriptions", "5.8.3, 6.11.3.1", "Retrieve subscription", "200 with the subscription as created")
def retrieve_subscription(p: Probe) -> str:
    sid = _subscribe(p, p.create(p.entity()))
    r = p.request("GET", f"{API}/subscriptions/{sid}")
    p.expect_status(r, 200)
    if _body(r).get("id") != sid:
        raise Failed(f"id {sid}", r.text[:200])
    return "200"


@check("subscriptions", "5.11, 5.8.1", "Notification on change", "the receiver gets the changed entity")
def notification(p: Probe) -> str:
    eid = p.create(p.entity(no2=41))
    _subscribe(p, eid)
    p.expect_status(p.request("PATCH", f"{API}/entities/{eid}/attrs", json_body={"no2": {"type": "Property",
                                                                                         "value": 99}}), 204)
    assert p.receiver is not None

    def about(n: dict[str, Any]) -> bool:
        data = n["body"].get("data", []) if isinstance(n["body"], dict) else []
        return any(isinstance(e, dict) and e.get("id") == eid and _value(e, "no2") == 99 for e in data)

    got = p.receiver.wait_for(about, p.notification_timeout)
    if got is None:
        raise Failed(f"a notification with no2 = 99 within {p.notification_timeout:g} s", "none")
    return "notified"


@check("subscriptions", "5.8.5, 6.11.3.3", "Delete subscription", "204, then 404 on retrieval")
def delete_subscription(p: Probe) -> str:
    sid = _subscribe(p, p.create(p.entity()))
    p.expect_status(p.request("DELETE", f"{API}/subscriptions/{sid}"), 204)
    p.subscriptions.discard(sid)
    return p.expect_problem(p.request("GET", f"{API}/subscriptions/{sid}"), 404, "ResourceNotFound")


# --- context source registrations (5.9, 5.10) ---------------------------------------------------
# The registered type is the probe's own, and the endpoint a closed port: no other check's query
# matches it, and nothing of the broker's data is sent anywhere.


def _register(p: Probe, **members: Any) -> str:
    rid = f"urn:ngsi-ld:ContextSourceRegistration:compliance-{p.run_id}-{p._n}"
    p._n += 1
    body = {"id": rid, "type": "ContextSourceRegistration", "endpoint": "http://127.0.0.1:9",
            "information": [{"entities": [{"type": "ComplianceProbeSource"}], "propertyNames": ["no2"]}], **members}
    r = p.request("POST", f"{API}/csourceRegistrations", json_body=body)
    p.expect_status(r, 201)
    p.registrations.add(rid)
    return rid


@check("registrations", "5.9.2, 6.8.3.1", "Create registration", "201 with a Location header naming it")
def create_registration(p: Probe) -> str:
    rid = _register(p)
    return f"201, {rid}"


@check("registrations", "5.10.1, 6.9.3.1", "Retrieve registration", "200 with the endpoint and information as created")
def retrieve_registration(p: Probe) -> str:
    rid = _register(p, registrationName="probe")
    r = p.request("GET", f"{API}/csourceRegistrations/{rid}")
    p.expect_status(r, 200)
    body = _body(r)
    if body.get("endpoint") != "http://127.0.0.1:9" or body.get("registrationName") != "probe":
        raise Failed("the endpoint and registrationName as created", r.text[:200])
    return "200"


@check("registrations", "5.9.2.4, 5.2.9", "Invalid registration", "400 BadRequestData (empty information)")
def invalid_registration(p: Probe) -> str:
    body = {"type": "ContextSourceRegistration", "endpoint": "http://127.0.0.1:9", "information": []}
    return p.expect_problem(p.request("POST", f"{API}/csourceRegistrations", json_body=body), 400, "BadRequestData")


@check("registrations", "5.10.2, 6.8.3.2", "Query registrations by type", "200 with the registration of that type")
def query_registrations(p: Probe) -> str:
    rid = _register(p)
    r = p.request("GET", f"{API}/csourceRegistrations", params={"type": "ComplianceProbeSource"})
    p.expect_status(r, 200)
    if rid not in _ids(_body(r)):
        raise Failed(f"a list with {rid}", r.text[:200])
    return "200, found"


@check("registrations", "5.9.4, 6.9.3.3", "Delete registration", "204, then 404 on retrieval")
def delete_registration(p: Probe) -> str:
    rid = _register(p)
    p.expect_status(p.request("DELETE", f"{API}/csourceRegistrations/{rid}"), 204)
    p.registrations.discard(rid)
    return p.expect_problem(p.request("GET", f"{API}/csourceRegistrations/{rid}"), 404, "ResourceNotFound")


# --- distributed operations (4.3.6, 5.7.1.4, 5.7.2.4, 6.3.18) ---------------------------------------
# The probe runs a tiny context source of its own (ContextSource in compliance/probe.py) and registers it,
# inclusively, for a type of its own: the broker under test must be able to reach the probe's host (as for
# notifications, --notify-host). Each check deletes its registration before the next check runs, so no
# other check's request is ever forwarded.

DISTRIBUTED_TYPE = "ComplianceProbeDistributed"


def _distributed(p: Probe) -> tuple[str, str]:
    """Register the probe's context source for DISTRIBUTED_TYPE, holding one entity: (registration, entity id)."""
    source = p.source()
    eid = p.new_id()
    source.entities = {eid: {"id": eid, "type": DISTRIBUTED_TYPE, "no2": {"type": "Property", "value": 7}}}
    source.requests.clear()
    rid = f"urn:ngsi-ld:ContextSourceRegistration:compliance-{p.run_id}-{p._n}"
    p._n += 1
    body = {"id": rid, "type": "ContextSourceRegistration", "endpoint": source.url, "mode": "inclusive",
            "information": [{"entities": [{"type": DISTRIBUTED_TYPE}]}]}
    p.expect_status(p.request("POST", f"{API}/csourceRegistrations", json_body=body), 201)
    p.registrations.add(rid)
    return rid, eid


def _unregister(p: Probe, rid: str) -> None:
    p.request("DELETE", f"{API}/csourceRegistrations/{rid}")
    p.registrations.discard(rid)


def _source_called(p: Probe, what: str) -> None:
    """NotSupported when the broker never called the source: it does not forward (or cannot reach this host)."""
    if not p.source().requests:
        raise NotSupported(f"the broker never called the registered context source at {p.source().url} for "
                           f"{what} (no distributed operations, or it cannot reach this host: see --notify-host)")


@check("distributed operations", "4.3.6, 5.7.1.4, 6.5.3.1", "Distributed retrieve",
       "200 with the entity only the registered context source holds")
def distributed_retrieve(p: Probe) -> str:
    rid, eid = _distributed(p)
    try:
        r = p.request("GET", f"{API}/entities/{eid}", params={"type": DISTRIBUTED_TYPE})
        if r.status_code != 200:
            _source_called(p, "a retrieval")
        p.expect_status(r, 200)
        body = _body(r)
        if not isinstance(body, dict) or body.get("id") != eid or _value(body, "no2") != 7:
            raise Failed(f"the source's entity {eid} with no2 = 7", r.text[:200])
        return "200, the source's entity"
    finally:
        _unregister(p, rid)


@check("distributed operations", "4.3.6.2, 5.7.2.4, 6.4.3.2", "Distributed query merges local and remote",
       "200 with both the local entity and the context source's entity of the type")
def distributed_query(p: Probe) -> str:
    rid, remote = _distributed(p)
    try:
        local = p.create({"id": p.new_id(), "type": DISTRIBUTED_TYPE, "no2": {"type": "Property", "value": 3}})
        r = p.request("GET", f"{API}/entities", params={"type": DISTRIBUTED_TYPE})
        p.expect_status(r, 200)
        ids = _ids(_body(r))
        if remote not in ids:
            _source_called(p, "a query")
        if not {local, remote} <= ids:
            raise Failed(f"{local} (local) and {remote} (context source)", repr(sorted(ids)))
        return "200, local and remote merged"
    finally:
        _unregister(p, rid)


@check("distributed operations", "5.5.13, 6.3.18", "local=true limits a query to the broker",
       "200 with the local entity only, the context source not asked (it is without local=true)")
def local_scope(p: Probe) -> str:
    rid, remote = _distributed(p)
    try:
        local = p.create({"id": p.new_id(), "type": DISTRIBUTED_TYPE, "no2": {"type": "Property", "value": 3}})
        distributed = p.request("GET", f"{API}/entities", params={"type": DISTRIBUTED_TYPE})
        p.expect_status(distributed, 200)
        if remote not in _ids(_body(distributed)):
            _source_called(p, "a query")
            raise Failed(f"{remote} in the query without local=true (the reference)", distributed.text[:200])
        p.source().requests.clear()
        r = p.request("GET", f"{API}/entities", params={"type": DISTRIBUTED_TYPE, "local": "true"})
        p.expect_status(r, 200)
        ids = _ids(_body(r))
        if local not in ids or remote in ids:
            raise Failed(f"{local} (local) without {remote} (context source)", repr(sorted(ids)))
        if p.source().requests:
            raise Failed("no request to the context source", f"{len(p.source().requests)} request(s)")
        return "200, local only"
    finally:
        _unregister(p, rid)


@check("distributed operations", "4.3.6.4", "Forwarded request lists the broker in Via",
       "the context source's request carries a Via header (loop detection)")
def forwarded_via(p: Probe) -> str:
    rid, eid = _distributed(p)
    try:
        p.request("GET", f"{API}/entities/{eid}", params={"type": DISTRIBUTED_TYPE})
        _source_called(p, "a retrieval")
        via = [q["headers"].get("via") for q in p.source().requests]
        if not all(via):
            raise Failed("a Via header on every forwarded request", repr(via))
        return f"Via: {via[0]}"
    finally:
        _unregister(p, rid)


# --- temporal API (5.6.11-5.6.16, 5.7.3, 5.7.4) -------------------------------------------------


@check("temporal", "5.7.3, 6.19.3.1", "Temporal retrieval", "every observed value of the attribute, in time")
def temporal_retrieve(p: Probe) -> str:
    eid = p.create(p.entity(no2=41, observed="2026-11-26T07:00:00Z"))
    p.expect_status(p.request("PATCH", f"{API}/entities/{eid}/attrs", json_body={
        "no2": {"type": "Property", "value": 43, "observedAt": "2026-11-26T08:00:00Z"}}), 204)
    r = p.request("GET", f"{API}/temporal/entities/{eid}")
    p.expect_status(r, 200)
    values = {i.get("value") for i in _instances(_body(r).get("no2"))}
    if not {41, 43} <= values:
        raise Failed("no2 instances 41 and 43", repr(sorted(values, key=str)))
    return "2 instances"


@check("temporal", "5.7.4, 6.18.3.2", "Temporal query", "timerel=after selects the later instances")
def temporal_query(p: Probe) -> str:
    eid = p.create(p.entity(no2=41, observed="2026-11-26T07:00:00Z"))
    p.expect_status(p.request("PATCH", f"{API}/entities/{eid}/attrs", json_body={
        "no2": {"type": "Property", "value": 43, "observedAt": "2026-11-26T09:00:00Z"}}), 204)
    r = p.request("GET", f"{API}/temporal/entities", params={
        "type": "AirQualityObserved", "timerel": "after", "timeAt": "2026-11-26T08:00:00Z", "attrs": "no2",
        "id": eid})
    p.expect_status(r, 200)
    mine = [e for e in _body(r) if e.get("id") == eid]
    values = {i.get("value") for e in mine for i in _instances(e.get("no2"))}
    if values != {43}:
        raise Failed("only the instance observed at 09:00 (43)", repr(values))
    return "1 instance after 08:00"


@check("temporal", "5.6.11, 6.18.3.1", "Temporal create", "201 or 204, the instances then retrievable")
def temporal_create(p: Probe) -> str:
    eid = p.new_id()
    body = {"id": eid, "type": "AirQualityObserved", "no2": [
        {"type": "Property", "value": 10, "observedAt": "2026-11-26T01:00:00Z"},
        {"type": "Property", "value": 11, "observedAt": "2026-11-26T02:00:00Z"}]}
    r = p.request("POST", f"{API}/temporal/entities", json_body=body)
    p.expect_status(r, 201, 204)
    p.created.add(eid)
    got = p.request("GET", f"{API}/temporal/entities/{eid}")
    p.expect_status(got, 200)
    values = {i.get("value") for i in _instances(_body(got).get("no2"))}
    if values != {10, 11}:
        raise Failed("instances 10 and 11", repr(values))
    return "2 instances"


def _instances(attr: Any) -> list[dict[str, Any]]:
    if isinstance(attr, list):
        return [i for i in attr if isinstance(i, dict)]
    return [attr] if isinstance(attr, dict) else []


FEATURES = ("entities", "representations", "batch", "query", "geo", "errors", "context", "types", "tenants",
            "subscriptions", "temporal", "registrations", "distributed operations")
"""The feature groups, in report order."""

__all__ = ["FEATURES", "NotSupported"]
