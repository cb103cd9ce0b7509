"""/jsonldContexts (clauses 5.13, 6.29, 6.30) on both stores: host, list, serve, use, delete, reload."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import orjson

from tests.broker.conftest import link, new_id


def host(client: httpx.Client, terms: dict) -> tuple[str, str]:
    r = client.post("/jsonldContexts", json={"@context": terms})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("/ngsi-ld/v1/jsonldContexts/")
    return location, location.rsplit("/", 1)[1]


def test_host_serve_and_use(client: httpx.Client, broker_url: str) -> None:
    terms = {"Kiosk": "https://example.org/Kiosk", "stock": "https://example.org/stock"}
    location, local_id = host(client, terms)
    r = client.get(f"/jsonldContexts/{local_id}")
    assert r.status_code == 200 and r.json() == {"@context": terms}
    details = client.get(f"/jsonldContexts/{local_id}", params={"details": "true"}).json()
    assert details["kind"] == "Hosted" and details["localId"] == local_id
    assert details["extraInfo"] == "origin: client"  # clause 5.13.3.5: custom information, a string
    url = details["URL"]
    assert url == broker_url + location
    assert url in client.get("/jsonldContexts").json()
    assert url in client.get("/jsonldContexts", params={"kind": "Hosted"}).json()
    assert url not in client.get("/jsonldContexts", params={"kind": "Cached"}).json()
    # the hosted URL works as the @context of a request, resolved locally
    entity_id = new_id()
    assert client.post("/entities", json={"id": entity_id, "type": "Kiosk", "stock": 3}, headers=link(url)).status_code == 201
    plain = client.get(f"/entities/{entity_id}").json()
    assert plain["type"] == "https://example.org/Kiosk"
    linked = client.get(f"/entities/{entity_id}", headers=link(url))
    assert linked.json()["type"] == "Kiosk" and url in linked.headers["link"]


def test_cached_context_listing_and_reload(client: httpx.Client, context_server) -> None:
    url = context_server.publish({"Bench": "https://example.org/Bench"})
    assert client.post("/entities", json={"id": new_id(), "type": "Bench"}, headers=link(url)).status_code == 201
    cached = client.get("/jsonldContexts", params={"kind": "Cached", "details": "true"}).json()
    entry = next(e for e in cached if e["URL"] == url)
    assert entry["kind"] == "Cached"
    r = client.get(f"/jsonldContexts/{entry['localId']}")
    assert r.status_code == 422
    before = context_server.hits(url)
    assert client.delete(f"/jsonldContexts/{entry['localId']}", params={"reload": "true"}).status_code == 204
    assert context_server.hits(url) == before + 1


def test_delete_and_errors(client: httpx.Client) -> None:
    _, local_id = host(client, {"x": "https://example.org/x"})
    assert client.delete(f"/jsonldContexts/{local_id}", params={"reload": "true"}).status_code == 400  # not Cached
    assert client.delete(f"/jsonldContexts/{local_id}").status_code == 204
    assert client.get(f"/jsonldContexts/{local_id}").status_code == 404
    assert client.delete(f"/jsonldContexts/{local_id}").status_code == 404
    assert client.post("/jsonldContexts", json={"no": "context"}).status_code == 400
    assert client.post("/jsonldContexts", json={"@context": {"bad": {"@context": {}}}}).status_code == 400
    assert client.get("/jsonldContexts", params={"kind": "Other"}).status_code == 400


def test_hosted_context_survives_restart(tmp_path) -> None:
    from broker.settings import BrokerSettings
    from tests.broker.conftest import RunningBroker, free_port

    store = f"sqlite:///{tmp_path / 'broker.db'}"
    port = free_port()
    settings = BrokerSettings(port=port, data_dir=tmp_path, store_url=store)
    with RunningBroker(settings) as broker, httpx.Client(base_url=broker.url + "/ngsi-ld/v1") as c:
        _, local_id = host(c, {"Kiosk": "https://example.org/Kiosk"})
    with RunningBroker(settings) as broker, httpx.Client(base_url=broker.url + "/ngsi-ld/v1") as c:
        r = c.get(f"/jsonldContexts/{local_id}")
        assert r.status_code == 200 and r.json() == {"@context": {"Kiosk": "https://example.org/Kiosk"}}
        url = c.get(f"/jsonldContexts/{local_id}", params={"details": "true"}).json()["URL"]
        assert url == f"{broker.url}/ngsi-ld/v1/jsonldContexts/{local_id}"
        assert c.post("/entities", json={"id": new_id(), "type": "Kiosk"}, headers=link(url)).status_code == 201


def test_served_context_media_type_follows_accept(client: httpx.Client) -> None:
    _, local_id = host(client, {"y": "https://example.org/y"})
    # a JSON object either way; application/json first, as clause 6.3.4 orders the types
    assert client.get(f"/jsonldContexts/{local_id}").headers["content-type"] == "application/json"
    r = client.get(f"/jsonldContexts/{local_id}", headers={"Accept": "application/ld+json"})
    assert r.headers["content-type"] == "application/ld+json" and r.json() == {"@context": {"y": "https://example.org/y"}}


def test_hosted_context_named_by_its_location_counts_hits(client: httpx.Client) -> None:
    location, local_id = host(client, {"Stall": "https://example.org/Stall"})
    assert client.get(f"/jsonldContexts/{local_id}", params={"details": "true"}).json()["numberOfHits"] == 0
    # the Location is relative; as an @context it is resolved against the request's URL (JSON-LD 1.1)
    entity_id = new_id()
    body = {"id": entity_id, "type": "Stall", "@context": location}
    r = client.post("/entities", content=orjson.dumps(body), headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    assert client.get(f"/entities/{entity_id}").json()["type"] == "https://example.org/Stall"
    assert client.get(f"/jsonldContexts/{local_id}", params={"details": "true"}).json()["numberOfHits"] == 1


def test_core_context_is_listed_and_cannot_be_deleted(client: httpx.Client) -> None:
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
    details = client.get(f"/jsonldContexts/{quote(core, safe='')}", params={"details": "true"})
    assert details.status_code == 200 and details.json()["kind"] == "Cached"
    for params in ({}, {"reload": "false"}):
        r = client.delete(f"/jsonldContexts/{quote(core, safe='')}", params=params)
        assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")
    # reload refreshes it from the copy the platform ships, with no network
    assert client.delete(f"/jsonldContexts/{quote(core, safe='')}", params={"reload": "true"}).status_code == 204
    assert client.get(f"/jsonldContexts/{quote(core, safe='')}", params={"details": "true"}).status_code == 200


def test_subscription_with_several_contexts_gets_an_implicit_one(client: httpx.Client, context_server) -> None:
    first = context_server.publish({"Kiosk": "https://example.org/Kiosk"})
    second = context_server.publish({"stock": "https://example.org/stock"})
    sub = {"id": new_id("Subscription"), "type": "Subscription", "entities": [{"type": "Kiosk"}],
           "notification": {"endpoint": {"uri": "http://127.0.0.1:1/notify"}}, "@context": [first, second]}
    r = client.post("/subscriptions", content=orjson.dumps(sub), headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    # clause 5.13.1: the broker hosts the array itself, as an ImplicitlyCreated @context with its own URL
    url = client.get(f"/subscriptions/{sub['id']}").json()["jsonldContext"]
    implicit = client.get("/jsonldContexts", params={"kind": "ImplicitlyCreated"}).json()
    assert url in implicit
    local_id = url.rsplit("/", 1)[1]
    assert client.get(f"/jsonldContexts/{local_id}").json() == {"@context": [first, second]}
    assert client.delete(f"/jsonldContexts/{local_id}", params={"reload": "true"}).status_code == 400
    assert client.delete(f"/jsonldContexts/{local_id}").status_code == 204
