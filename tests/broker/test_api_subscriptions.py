"""Subscriptions API (clauses 5.8.1-5.8.5, 6.10, 6.11) over a real socket, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.broker.conftest import CORE, link

BAD = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
ENDPOINT = {"uri": "http://127.0.0.1:9/notify"}


def sub(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Subscription", "entities": [{"type": "Thing"}],
                            "notification": {"endpoint": dict(ENDPOINT)}}
    body.update(members)
    return body


def future(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(client: httpx.Client, body: dict[str, Any], **kw: Any) -> str:
    r = client.post("/subscriptions", json=body, **kw)
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def test_create_retrieve_every_member(client: httpx.Client) -> None:
    body = sub(
        id="urn:ngsi-ld:Subscription:full", subscriptionName="full", description="every member",
        entities=[{"type": "Thing", "idPattern": "urn:ngsi-ld:Thing:.*"}, {"type": "Other", "id": "urn:ngsi-ld:Other:1"}],
        watchedAttributes=["temperature"], q="temperature>20", scopeQ="/Aix",
        geoQ={"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [5.44, 43.52]},
        notificationTrigger=["entityCreated", "attributeUpdated"], throttling=0.5, expiresAt=future(),
        isActive=True, lang="fr", datasetId=["@none"],
        notification={"attributes": ["temperature"], "format": "keyValues", "sysAttrs": True,
                      "endpoint": {"uri": "mqtt://127.0.0.1:1883/city/notify", "accept": "application/json",
                                   "receiverInfo": [{"key": "X-Auth", "value": "t0k"}],
                                   "notifierInfo": [{"key": "MQTT-QoS", "value": "1"},
                                                    {"key": "MQTT-Version", "value": "mqtt3.1.1"}]}},
    )
    sid = create(client, body)
    assert sid == "urn:ngsi-ld:Subscription:full"
    r = client.get(f"/subscriptions/{sid}")
    assert r.status_code == 200
    got = r.json()
    for member in ("entities", "watchedAttributes", "q", "scopeQ", "geoQ", "notificationTrigger", "throttling",
                   "expiresAt", "lang", "datasetId", "subscriptionName", "description"):
        assert got[member] == body[member], member
    assert got["type"] == "Subscription" and got["status"] == "active" and got["isActive"] is True
    assert got["jsonldContext"] == CORE
    note = got["notification"]
    assert note["format"] == "keyValues" and note["attributes"] == ["temperature"] and note["sysAttrs"] is True
    assert note["endpoint"]["receiverInfo"] == [{"key": "X-Auth", "value": "t0k"}]
    assert note["endpoint"]["notifierInfo"][1] == {"key": "MQTT-Version", "value": "mqtt3.1.1"}
    assert "Link" in r.headers


def test_generated_id_query_count_and_pagination(client: httpx.Client) -> None:
    ids = sorted(create(client, sub()) for _ in range(3))
    assert all(i.startswith("urn:ngsi-ld:Subscription:") for i in ids)
    r = client.get("/subscriptions", params={"count": "true", "limit": 2})
    assert r.status_code == 200 and r.headers["NGSILD-Results-Count"] == "3"
    first = [s["id"] for s in r.json()]
    second = [s["id"] for s in client.get("/subscriptions", params={"limit": 2, "offset": 2}).json()]
    assert first + second == ids


def test_pages_link_to_each_other(client: httpx.Client) -> None:
    """Clauses 5.5.9.1 and 6.3.10: Link next/prev with the media type of the response; none on a single page."""
    for _ in range(3):
        create(client, sub())
    ld = {"Accept": "application/ld+json"}
    r = client.get("/subscriptions/", params={"limit": 1, "offset": 1}, headers=ld)
    assert sorted(r.headers["Link"].split(",")) == [
        '</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json"',
        '</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"',
    ]
    r = client.get("/subscriptions", params={"limit": 1, "offset": 2}, headers=ld)
    assert r.headers["Link"] == '</ngsi-ld/v1/subscriptions?limit=1&offset=1>;rel="prev";type="application/ld+json"'
    assert "Link" not in client.get("/subscriptions", params={"limit": 5}, headers=ld).headers
    # application/json: the @context Link and the page links in one header
    r = client.get("/subscriptions", params={"limit": 2, "count": "true"})
    links = r.headers["Link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in links
    assert '</ngsi-ld/v1/subscriptions?limit=2&offset=2&count=true>;rel="next";type="application/json"' in links


def test_defaults_shown_as_they_act(client: httpx.Client) -> None:
    """The default notificationTrigger is shown; isActive only when the subscriber wrote it (clause 5.2.12)."""
    got = client.get(f"/subscriptions/{create(client, sub())}").json()
    assert got["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert "isActive" not in got and got["status"] == "active"
    got = client.get(f"/subscriptions/{create(client, sub(isActive=False))}").json()
    assert got["isActive"] is False and got["status"] == "paused"


def test_terms_follow_the_readers_context(client: httpx.Client, context_server: Any) -> None:
    url = context_server.publish({"temp": "https://example.org/ns/temperature", "Sensor": "https://example.org/ns/Sensor"})
    sid = create(client, sub(entities=[{"type": "Sensor"}], watchedAttributes=["temp"]), headers=link(url))
    assert client.get(f"/subscriptions/{sid}", headers=link(url)).json()["watchedAttributes"] == ["temp"]
    core = client.get(f"/subscriptions/{sid}").json()
    assert core["watchedAttributes"] == ["https://example.org/ns/temperature"]
    assert core["entities"] == [{"type": "https://example.org/ns/Sensor"}]
    assert core["jsonldContext"] == url


def test_json_ld_body_and_response(client: httpx.Client) -> None:
    body = {**sub(), "@context": CORE}
    sid = create(client, body, headers={"Content-Type": "application/ld+json"})
    r = client.get(f"/subscriptions/{sid}", headers={"Accept": "application/ld+json"})
    assert r.headers["content-type"].startswith("application/ld+json") and "@context" in r.json()


def test_update_and_status_transitions(client: httpx.Client) -> None:
    sid = create(client, sub(watchedAttributes=["a"]))
    # clause 5.5.8: a member of the fragment replaces the member whole, so a notification without endpoint is refused
    r = client.patch(f"/subscriptions/{sid}", json={"notification": {"format": "concise"}})
    assert r.status_code == 400 and r.json()["type"] == BAD
    r = client.patch(f"/subscriptions/{sid}", json={"isActive": False, "notification": {"format": "concise", "endpoint": ENDPOINT}})
    assert r.status_code == 204, r.text
    got = client.get(f"/subscriptions/{sid}").json()
    assert got["status"] == "paused" and got["isActive"] is False
    assert got["notification"]["format"] == "concise" and got["notification"]["endpoint"]["uri"] == ENDPOINT["uri"]
    assert client.patch(f"/subscriptions/{sid}", json={"isActive": True, "expiresAt": future()}).status_code == 204
    assert client.get(f"/subscriptions/{sid}").json()["status"] == "active"
    assert client.patch(f"/subscriptions/{sid}", json={"watchedAttributes": "urn:ngsi-ld:null"}).status_code == 204
    assert "watchedAttributes" not in client.get(f"/subscriptions/{sid}").json()
    r = client.patch(f"/subscriptions/{sid}", json={"expiresAt": "2001-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()["type"] == BAD
    r = client.patch(f"/subscriptions/{sid}", json={"id": "urn:ngsi-ld:Subscription:other"})
    assert r.status_code == 400


def test_read_only_members_are_ignored(client: httpx.Client) -> None:
    sid = create(client, sub(status="expired", notification={"endpoint": ENDPOINT, "timesSent": 99, "status": "failed"}))
    got = client.get(f"/subscriptions/{sid}").json()
    assert got["status"] == "active" and "timesSent" not in got["notification"]


def test_delete_and_not_found(client: httpx.Client) -> None:
    sid = create(client, sub())
    assert client.delete(f"/subscriptions/{sid}").status_code == 204
    for method in ("GET", "DELETE"):
        r = client.request(method, f"/subscriptions/{sid}")
        assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    assert client.patch(f"/subscriptions/{sid}", json={"isActive": False}).status_code == 404
    assert client.get("/subscriptions/not-a-uri").status_code == 400


def test_duplicate_id_conflicts(client: httpx.Client) -> None:
    create(client, sub(id="urn:ngsi-ld:Subscription:dup"))
    r = client.post("/subscriptions", json=sub(id="urn:ngsi-ld:Subscription:dup"))
    assert r.status_code == 409 and r.json()["type"].endswith("AlreadyExists")


def test_subscriptions_are_per_tenant(client: httpx.Client, broker_url: str) -> None:
    sid = create(client, sub())
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": "tother" + sid[-8:]}) as other:
        assert other.get(f"/subscriptions/{sid}").status_code == 404


@pytest.mark.parametrize("body", [
    {"type": "Subscription", "notification": {"endpoint": ENDPOINT}},                      # no entities/watched
    sub(type="Registration"),
    sub(entities=[]),
    sub(entities=[{"id": "urn:ngsi-ld:Thing:1"}]),                                         # selector without type
    sub(entities=[{"type": "Thing", "idPattern": "(["}]),
    sub(entities=[{"type": "Thing", "id": "not a uri"}]),
    sub(watchedAttributes=[]),
    sub(q="temperature>>"),
    sub(scopeQ="no-slash"),
    sub(geoQ={"georel": "near;maxDistance==10", "geometry": "Point"}),
    sub(geoQ={"georel": "somewhere", "geometry": "Point", "coordinates": [1, 2]}),
    sub(notificationTrigger=["entityExploded"]),
    sub(throttling=0),
    sub(timeInterval=-1),
    sub(timeInterval=10, watchedAttributes=["a"]),
    sub(timeInterval=10, throttling=1),
    sub(expiresAt="2001-01-01T00:00:00Z"),
    sub(expiresAt="tomorrow"),
    sub(isActive="yes"),
    sub(id="not a uri"),
    {"type": "Subscription", "entities": [{"type": "Thing"}]},                             # no notification
    sub(notification={"endpoint": {}}),
    sub(notification={"endpoint": {"uri": "ftp://example.org/x"}}),
    sub(notification={"endpoint": {"uri": "mqtt://127.0.0.1:1883"}}),                      # no topic
    sub(notification={"endpoint": {**ENDPOINT, "accept": "text/plain"}}),
    sub(notification={"endpoint": {**ENDPOINT, "receiverInfo": [{"key": "a"}]}}),
    sub(notification={"endpoint": {"uri": "mqtt://h/t", "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}]}}),
    sub(notification={"endpoint": ENDPOINT, "format": "compact"}),
    sub(notification={"endpoint": ENDPOINT, "attributes": []}),
    sub(notification={"endpoint": ENDPOINT, "format": "keyValues", "showChanges": True}),
    sub(notification={"endpoint": ENDPOINT, "pick": ["a"], "omit": ["b"]}),
])
def test_invalid_subscriptions_are_refused(client: httpx.Client, body: dict[str, Any]) -> None:
    r = client.post("/subscriptions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] in (BAD, "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest")


def test_media_types(client: httpx.Client) -> None:
    assert client.post("/subscriptions", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.get("/subscriptions", headers={"Accept": "text/html"}).status_code == 406
    r = client.post("/subscriptions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


@pytest.mark.parametrize("method,path", [("POST", "/subscriptions"), ("GET", "/subscriptions"),
                                         ("GET", "/subscriptions/urn:ngsi-ld:Subscription:x"),
                                         ("PATCH", "/subscriptions/urn:ngsi-ld:Subscription:x"),
                                         ("DELETE", "/subscriptions/urn:ngsi-ld:Subscription:x")])
def test_unknown_parameters_are_invalid_requests(client: httpx.Client, method: str, path: str) -> None:
    """Clause 6.3.20: a parameter the operation does not take is InvalidRequest, before the body is read."""
    r = client.request(method, f"{path}?invalidParams=invalidValue", content=b'"not a subscription"',
                       headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 400 and r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest", r.text
