"""A credential for one tenant never reads, writes, subscribes to or is notified about another's data.

Every endpoint family, on both stores, over real sockets: entities, batch,
query, types/attributes, subscriptions and their notifications, temporal,
jsonldContexts, the /v2 history API (its own port and the broker's), and
the provisioning API (groups, devices, rejections).
"""

from __future__ import annotations

import uuid

import httpx

from tests.security.conftest import Platform

API = "/ngsi-ld/v1"


def _entity(kind: str, value: float = 1.0) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex[:8]}", "type": kind,
            "no2": {"type": "Property", "value": value, "observedAt": "2026-11-26T07:00:00Z"}}


def test_without_or_with_a_wrong_credential_nothing_is_served(platform: Platform) -> None:
    with platform.client(None) as anonymous:
        r = anonymous.get(f"{API}/entities", params={"type": "T"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["status"] == 401 and r.json()["type"] == "about:blank"
        assert anonymous.get("/version").status_code == 200, "/version stays public"
        assert anonymous.get("/health").status_code == 200 and anonymous.get("/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        r = anonymous.get(f"{API}/entities", params={"type": "T"}, headers={"X-API-Key": "mtr_guessed"})
        assert r.status_code == 401
        r = anonymous.get(f"{API}/entities", params={"type": "T"}, headers={"Authorization": "Basic YTpi"})
        assert r.status_code == 401
    with platform.client(None, platform.history) as anonymous:
        assert anonymous.get("/v2/entities", headers={"Fiware-Service": "aix"}).status_code == 401
        assert anonymous.get("/version").status_code == 200
    with platform.client(None, platform.provisioning) as anonymous:
        r = anonymous.get("/iot/services", headers={"fiware-service": "aix", "fiware-servicepath": "/"})
        assert r.status_code == 401 and r.json()["name"] == "UNAUTHORIZED"
        assert anonymous.get("/iot/about").status_code == 200


def test_entities_batch_query_types_and_temporal_stay_in_their_tenant(platform: Platform) -> None:
    kind = f"Iso{uuid.uuid4().hex[:6]}"
    mine = _entity(kind, 41)
    with platform.client("aix", NGSILD_Tenant="aix") as aix, platform.client("marseille") as mars, \
            platform.client("aix-reader", NGSILD_Tenant="aix") as reader:
        assert aix.post(f"{API}/entities", json=mine).status_code == 201
        eid = str(mine["id"])
        # reading another tenant: refused before any handler runs
        for path in (f"{API}/entities/{eid}", f"{API}/temporal/entities/{eid}", f"{API}/types", f"{API}/attributes"):
            assert mars.get(path, headers={"NGSILD-Tenant": "aix"}).status_code == 403, path
        assert mars.get(f"{API}/entities", params={"type": kind}, headers={"NGSILD-Tenant": "aix"}).status_code == 403
        query = {"type": "Query", "entities": [{"type": kind}]}
        assert mars.post(f"{API}/entityOperations/query", json=query,
                         headers={"NGSILD-Tenant": "aix"}).status_code == 403
        # a second tenant header does not smuggle the request through
        twice = httpx.Headers([("X-API-Key", platform.keys["marseille"]), ("NGSILD-Tenant", "marseille"),
                               ("NGSILD-Tenant", "aix")])
        assert httpx.get(f"{platform.broker}{API}/entities/{eid}", headers=twice).status_code == 403
        # the default tenant is a tenant too
        assert mars.get(f"{API}/entities/{eid}").status_code == 403
        # in its own tenant, marseille does not see aix's data
        own = {"NGSILD-Tenant": "marseille"}
        assert mars.post(f"{API}/entities", json=_entity(kind, 7), headers=own).status_code == 201
        assert mars.get(f"{API}/entities/{eid}", headers=own).status_code == 404
        listed = mars.get(f"{API}/entities", params={"type": kind}, headers=own).json()
        assert [e["no2"]["value"] for e in listed] == [7]
        assert mars.get(f"{API}/temporal/entities/{eid}", headers=own).status_code == 404
        # writing into another tenant: every write family refused, nothing changed
        assert mars.patch(f"{API}/entities/{eid}/attrs", json={"no2": {"type": "Property", "value": 0}},
                          headers={"NGSILD-Tenant": "aix"}).status_code == 403
        assert mars.post(f"{API}/entityOperations/upsert", json=[{**mine, "no2": {"type": "Property", "value": 0}}],
                         headers={"NGSILD-Tenant": "aix"}).status_code == 403
        assert mars.delete(f"{API}/entities/{eid}", headers={"NGSILD-Tenant": "aix"}).status_code == 403
        assert mars.post(f"{API}/temporal/entities", json=mine, headers={"NGSILD-Tenant": "aix"}).status_code == 403
        # the same id written in marseille is marseille's own entity
        assert mars.post(f"{API}/entityOperations/upsert", json=[{**mine, "no2": {"type": "Property", "value": 0}}],
                         headers=own).status_code in (201, 204)
        assert aix.get(f"{API}/entities/{eid}").json()["no2"]["value"] == 41
        # read-only credentials read, and write nothing
        assert reader.get(f"{API}/entities/{eid}").status_code == 200
        assert reader.post(f"{API}/entities", json=_entity(kind)).status_code == 403
        assert reader.delete(f"{API}/entities/{eid}").status_code == 403
        # purging a tenant is for its administrators
        assert aix.delete(f"{API}/entities", params={"type": kind}).status_code == 403
        types = aix.get(f"{API}/types").json()
        assert kind in str(types)
        assert kind not in str(mars.get(f"{API}/types", headers={"NGSILD-Tenant": "marseille-empty"}).text)


def test_subscriptions_and_notifications_stay_in_their_tenant(platform: Platform) -> None:
    kind = f"Sub{uuid.uuid4().hex[:6]}"
    receiver = platform.receiver
    sub = {"type": "Subscription", "entities": [{"type": kind}],
           "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}}}
    with platform.client("aix", NGSILD_Tenant="aix") as aix, platform.client("marseille", NGSILD_Tenant="marseille") as mars:
        created = mars.post(f"{API}/subscriptions", json=sub)
        assert created.status_code == 201, created.text
        sub_id = created.headers["location"].rsplit("/", 1)[-1]
        # aix cannot see, change or delete marseille's subscription, nor subscribe in marseille
        assert aix.get(f"{API}/subscriptions/{sub_id}").status_code == 404
        for call in (aix.get(f"{API}/subscriptions/{sub_id}", headers={"NGSILD-Tenant": "marseille"}),
                     aix.delete(f"{API}/subscriptions/{sub_id}", headers={"NGSILD-Tenant": "marseille"}),
                     aix.post(f"{API}/subscriptions", json=sub, headers={"NGSILD-Tenant": "marseille"})):
            assert call.status_code == 403
        assert sub_id not in aix.get(f"{API}/subscriptions").text
        # aix writes an entity of the watched type first, then marseille does: marseille's notification
        # is the sentinel (the change log is dispatched in order), and it must be the only one
        aix_entity, mars_entity = _entity(kind, 1), _entity(kind, 2)
        assert aix.post(f"{API}/entities", json=aix_entity).status_code == 201
        assert mars.post(f"{API}/entities", json=mars_entity).status_code == 201
        received = receiver.wait_for(lambda tenant, body: body.get("subscriptionId") == sub_id
                                     and any(e["id"] == mars_entity["id"] for e in body["data"]))
        ours = [(t, b) for t, b in received if b.get("subscriptionId") == sub_id]
        notified = {e["id"] for _, b in ours for e in b["data"]}
        assert notified == {mars_entity["id"]}, "a marseille subscription was notified of an aix entity"
        assert {t for t, _ in ours} == {"marseille"}


def test_hosted_contexts_are_not_listed_or_deleted_across_tenants(platform: Platform) -> None:
    with platform.client("aix") as aix, platform.client("marseille") as mars, platform.client("ops") as ops:
        hosted = aix.post(f"{API}/jsonldContexts", json={"@context": {"s": "https://example.org/s"}},
                          headers={"Content-Type": "application/ld+json"})
        assert hosted.status_code == 201, hosted.text
        url = hosted.headers["location"]
        path = url[url.index(API):]
        assert mars.get(f"{API}/jsonldContexts").status_code == 403, "the list shows every tenant's contexts"
        assert mars.delete(path).status_code == 403 and aix.delete(path).status_code == 403
        assert mars.get(path).status_code == 200, "a context URL is public to callers, as Link headers hand it round"
        assert ops.get(f"{API}/jsonldContexts").status_code == 200
        assert ops.delete(path).status_code == 204


def test_history_api_on_both_ports_stays_in_its_tenant(platform: Platform) -> None:
    kind = f"His{uuid.uuid4().hex[:6]}"
    entity = _entity(kind, 5)
    eid = str(entity["id"])
    with platform.client("aix", NGSILD_Tenant="aix") as aix:
        assert aix.post(f"{API}/entities", json=entity).status_code == 201
    for base in (platform.history, platform.broker):
        with platform.client("aix", base) as aix, platform.client("marseille", base) as mars:
            path = f"/v2/entities/{eid}/attrs/no2"
            ok = aix.get(path, headers={"Fiware-Service": "aix"})
            assert ok.status_code == 200, ok.text
            assert mars.get(path, headers={"Fiware-Service": "aix"}).status_code == 403
            assert mars.get(path, headers={"Fiware-Service": "AIX"}).status_code == 403, "QuantumLeap folds case"
            # queries read Fiware-Service only: an NGSILD-Tenant of marseille must not let it through
            assert mars.get(path, headers={"Fiware-Service": "aix", "NGSILD-Tenant": "marseille"}).status_code == 403
            assert mars.get(path, headers={"Fiware-Service": "marseille"}).status_code == 404
            notification = {"subscriptionId": "s", "data": [{"id": eid, "type": kind,
                                                              "no2": {"type": "Number", "value": 9}}]}
            assert mars.post("/v2/notify", json=notification, headers={"Fiware-Service": "aix"}).status_code == 403
            assert mars.post("/v2/notify", json=notification,
                             headers={"Fiware-Service": "marseille", "NGSILD-Tenant": "aix"}).status_code == 403
            assert mars.delete(f"/v2/entities/{eid}", headers={"Fiware-Service": "aix"}).status_code == 403
            assert aix.delete(f"/v2/types/{kind}", headers={"Fiware-Service": "aix"}).status_code == 403, "admin only"


def test_provisioning_groups_devices_and_rejections_stay_in_their_service(platform: Platform) -> None:
    apikey = uuid.uuid4().hex[:12]
    aix_h = {"fiware-service": "aix", "fiware-servicepath": "/"}
    mars_h = {"fiware-service": "marseille", "fiware-servicepath": "/"}
    group = {"services": [{"apikey": apikey, "entity_type": "AirQualityObserved", "resource": "/iot/json"}]}
    device = {"devices": [{"device_id": f"d{apikey}", "entity_name": f"urn:ngsi-ld:AirQualityObserved:{apikey}",
                           "entity_type": "AirQualityObserved", "transport": "HTTP"}]}
    base = platform.provisioning
    with platform.client("aix-admin", base) as admin, platform.client("aix", base) as aix, \
            platform.client("marseille", base) as mars, platform.client("ops", base) as ops:
        assert aix.post("/iot/services", json=group, headers=aix_h).status_code == 403, "groups need admin"
        assert admin.post("/iot/services", json=group, headers=aix_h).status_code == 201
        assert aix.post("/iot/devices", json=device, headers=aix_h).status_code == 201
        for path in ("/iot/services", "/iot/devices", f"/iot/devices/d{apikey}"):
            r = mars.get(path, headers=aix_h)
            assert r.status_code == 403 and r.json()["name"] == "ACCESS_FORBIDDEN", path
        assert apikey not in mars.get("/iot/services", headers=mars_h).text
        assert mars.get(f"/iot/devices/d{apikey}", headers=mars_h).status_code == 404
        assert mars.delete(f"/iot/devices/d{apikey}", headers=aix_h).status_code == 403
        assert mars.delete("/iot/services", params={"resource": "/iot/json", "apikey": apikey},
                           headers=aix_h).status_code == 403
        # rejections and the outbox: scoped by fiware-service like groups and devices; purging is an admin's
        assert mars.get("/iot/rejections", headers=aix_h).status_code == 403
        assert mars.get("/iot/rejections", headers=mars_h).status_code == 200
        assert mars.get("/iot/outbox", headers=aix_h).status_code == 403
        assert mars.delete("/iot/rejections", headers=mars_h).status_code == 403
        assert aix.delete("/iot/outbox/dead-letters", headers=aix_h).status_code == 403
        assert admin.delete("/iot/rejections", headers=aix_h).status_code == 204
        assert ops.get("/iot/rejections", headers=mars_h).status_code == 200
        assert aix.get(f"/iot/devices/d{apikey}", headers=aix_h).status_code == 200
