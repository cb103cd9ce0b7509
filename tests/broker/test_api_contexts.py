"""/jsonldContexts (clauses 5.13, 6.29, 6.30) on both stores: host, list, serve, use, delete, reload."""

from __future__ import annotations

import httpx

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
