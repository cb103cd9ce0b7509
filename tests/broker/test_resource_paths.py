"""Trailing slashes, OPTIONS and 405's Allow header on the NGSI-LD and history APIs, through a real socket.

FIWARE's own tutorials write `/entities/` and `/subscriptions/`; Orion-LD
accepts them. The provisioning API's side is in tests/agents/test_provisioning_api.py.
"""

from __future__ import annotations

import httpx
import pytest

from tests.broker.conftest import new_id

ENTITY_ID = "urn:ngsi-ld:Thing:slash"


def test_post_entities_with_trailing_slash_creates(client: httpx.Client) -> None:
    eid = new_id()
    r = client.post("/entities/", json={"id": eid, "type": "Thing", "n": {"type": "Property", "value": 1}})
    assert r.status_code == 201, r.text
    assert client.get(f"/entities/{eid}/").json()["n"]["value"] == 1


def test_post_subscriptions_with_trailing_slash_creates(client: httpx.Client) -> None:
    body = {"type": "Subscription", "entities": [{"type": "Thing"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    r = client.post("/subscriptions/", json=body)
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    assert client.get(location.removeprefix("/ngsi-ld/v1") + "/").status_code == 200


@pytest.mark.parametrize(
    ("path", "allowed", "patch"),
    [
        ("/entities", {"GET", "POST", "DELETE"}, False),
        ("/entities/", {"GET", "POST", "DELETE"}, False),
        (f"/entities/{ENTITY_ID}", {"GET", "PUT", "PATCH", "DELETE"}, True),
        (f"/entities/{ENTITY_ID}/attrs/no2", {"PATCH", "PUT", "DELETE"}, True),
        ("/subscriptions", {"GET", "POST"}, False),
        ("/entityOperations/upsert", {"POST"}, False),
    ],
)
def test_options_lists_the_allowed_methods(client: httpx.Client, path: str, allowed: set[str], patch: bool) -> None:
    r = client.options(path)
    assert r.status_code == 204
    methods = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allowed | {"OPTIONS"} <= methods
    assert ("PATCH" in methods) == patch
    assert ("Accept-Patch" in r.headers) == patch
    if patch:
        assert "application/merge-patch+json" in r.headers["Accept-Patch"]


def test_options_on_unknown_path_is_404(client: httpx.Client) -> None:
    r = client.options("/no-such-resource")
    assert r.status_code == 404
    assert r.json()["type"].endswith("/ResourceNotFound")


def test_wrong_method_answers_405_with_allow(client: httpx.Client) -> None:
    r = client.put("/entities", json={})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["Allow"].split(",")} >= {"GET", "POST", "DELETE"}
    assert r.json()["type"].endswith("/InvalidRequest")


def test_history_api_options_and_slash(broker_url: str) -> None:
    with httpx.Client(base_url=broker_url) as c:
        r = c.options("/v2/notify")
        assert r.status_code == 204 and "POST" in r.headers["Allow"]
        r = c.options("/v2/entities/")
        assert r.status_code == 204 and "GET" in r.headers["Allow"]
        assert c.get("/v2/entities/", headers={"Fiware-Service": new_id().rsplit(":", 1)[1]}).status_code in {200, 404}
