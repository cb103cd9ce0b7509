"""The broker's fast routes (web.fastroutes: GET one entity, PATCH one attribute, /v2/notify) answer as the normal routes.

One broker state (store, resolver, history) served by two apps on two real sockets: the broker
as `create_app` builds it, and the same app without its FastRoutes middleware, so every request
goes through FastAPI's router and dependency solver. Each request below is sent to both, one
after the other on the same state, and the status, the headers (but Date) and the body must be
the same bytes. The cases are those the fast routes take (good and bad ids, tenants, Accept and
Content-Type variants, Link headers, URL parameters, bad bodies) and neighbours they must leave
to the router (other methods, trailing slashes, encoded slashes).
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import orjson
import pytest
import uvicorn
from starlette.routing import Mount

from bench.procs import free_port
from broker.app import create_app
from broker.settings import BrokerSettings
from web.fastroutes import FastRoutes
from web.metrics import route_of
from web.serving import EmbeddedServer

API = "/ngsi-ld/v1"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
LINK = f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
EID = "urn:ngsi-ld:AirQualityObserved:fast-1"
UNREACHABLE = '<http://127.0.0.1:1/c.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
JSON = {"Content-Type": "application/json"}


def _without_fast_routes(app: Any) -> Any:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastRoutes]
    return app


class Labels:
    """Wraps an app and keeps the route label HttpMetrics gives each request it served (web.metrics.route_of)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append(route_of(scope))


def _middlewares(app: Any) -> list[Any]:
    found, node = [], app.middleware_stack
    while node is not None:
        found.append(node)
        node = getattr(node, "app", None)
    return found


class Pair:
    """The fast and the normal app over one broker state, served by uvicorn in one background loop."""

    def __init__(self, data: Path) -> None:
        settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data,
                                  store_url=f"sqlite:///{data / 'broker.db'}", context_timeout=2.0)
        self.fast_app = create_app(settings)
        self.slow_app = _without_fast_routes(create_app(settings))
        self.slow_port = free_port()
        self.labels = (Labels(self.fast_app), Labels(self.slow_app))
        self.fast = EmbeddedServer(uvicorn.Config(self.labels[0], host="127.0.0.1", port=settings.port,
                                                  log_level="warning", lifespan="on"))
        self.slow = EmbeddedServer(uvicorn.Config(self.labels[1], host="127.0.0.1", port=self.slow_port,
                                                  log_level="warning", lifespan="off"))
        self.ports = (settings.port, self.slow_port)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        await asyncio.gather(self.fast.serve(), self.slow.serve())

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.fast.started and self.slow.started):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the brokers did not start")
            time.sleep(0.02)
        self.slow_app.state.broker = self.fast_app.state.broker  # one state: the same store behind both
        self.slow_app.state.authenticator = self.fast_app.state.authenticator
        return self

    def __exit__(self, *exc: object) -> None:
        self.fast.should_exit = self.slow.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with Pair(tmp_path_factory.mktemp("fast-routes")) as running:
        entity = {"id": EID, "type": "AirQualityObserved",
                  "no2": {"type": "Property", "value": 21.5, "unitCode": "GQ", "observedAt": "2026-11-26T02:16:00Z"},
                  "no2b": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}],
                  "name": {"type": "LanguageProperty", "languageMap": {"fr": "Capteur", "en": "Sensor"}},
                  "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.4, 43.5]}},
                  "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"}}
        for tenant in ("", "aix"):
            conn = http.client.HTTPConnection("127.0.0.1", running.ports[0], timeout=30)
            headers = {**JSON, **({"NGSILD-Tenant": tenant} if tenant else {})}
            conn.request("POST", f"{API}/entities", body=orjson.dumps(entity), headers=headers)
            assert conn.getresponse().read() == b""
            conn.close()
        _label(running.labels[0], 1)  # both creations labelled: `same` counts labels from here on
        yield running


def _exchange(port: int, method: str, path: str, body: bytes | None, headers: list[tuple[str, str]]) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    payload = response.read()
    answer = (response.status, [(k, v) for k, v in response.getheaders() if k.lower() != "date"], payload)
    conn.close()
    return answer


def _label(labels: Labels, before: int) -> str:
    """The label of the request after the first `before`: the app may still be finishing when the client has read."""
    deadline = time.monotonic() + 10
    while len(labels.seen) <= before:
        assert time.monotonic() < deadline, "the request was not labelled"
        time.sleep(0.001)
    return labels.seen[before]


def same(pair: Pair, method: str, path: str, body: bytes | None = None,
         headers: list[tuple[str, str]] | None = None) -> Any:
    """Send the request to the normal app, then to the fast one; same bytes back, same metrics route label."""
    counts = [len(labels.seen) for labels in pair.labels]
    slow = _exchange(pair.ports[1], method, path, body, headers or [])
    fast = _exchange(pair.ports[0], method, path, body, headers or [])
    assert fast == slow, f"{method} {path}"
    if not any(ord(c) < 0x20 for _, value in headers or [] for c in value):  # else uvicorn answered, not the app
        assert _label(pair.labels[0], counts[0]) == _label(pair.labels[1], counts[1]), f"{method} {path}"
    return fast


def test_the_fast_routes_are_in_the_broker_and_the_history_api(pair: Pair) -> None:
    same(pair, "GET", f"{API}/entities/{EID}")
    same(pair, "POST", "/v2/notify", b"{}", [("Content-Type", "application/json")])
    fast = [m for m in _middlewares(pair.fast_app) if isinstance(m, FastRoutes)]
    assert [r.route.path for r in fast[0].fast] == [f"{API}/entities/{{entity_id}}",
                                                      f"{API}/entities/{{entity_id}}/attrs/{{attr}}", "/v2"]
    assert not [m for m in _middlewares(pair.slow_app) if isinstance(m, FastRoutes)]
    history = next(r.app for r in pair.fast_app.router.routes if isinstance(r, Mount) and r.path == "/v2")
    inner = [m for m in _middlewares(history) if isinstance(m, FastRoutes)]
    assert [r.route.path for r in inner[0].fast] == ["/notify"]


GETS = [
    "", "?options=keyValues", "?options=concise", "?options=sysAttrs", "?options=keyValues,sysAttrs",
    "?format=simplified", "?format=normalized&options=keyValues", "?attrs=no2", "?attrs=no2,nope", "?attrs=nope",
    "?attrs=", "?pick=no2", "?omit=no2", "?pick=no2&attrs=no2", "?lang=fr", "?lang=*", "?lang=de",
    "?type=AirQualityObserved", "?type=Other", "?type=", "?datasetId=urn:ds:2", "?limt=1", "?options=bogus",
    "?geometryProperty=location", "?join=inline", "?local=true", "?options=keyValues&options=sysAttrs", "?q=no2>1",
]


@pytest.mark.parametrize("query", GETS)
@pytest.mark.parametrize("accept", [None, "application/json", "application/ld+json", "application/geo+json",
                                    "text/plain", "*/*", "application/ld+json;q=0.5, application/json"])
def test_retrieve_entity_answers_as_the_router_does(pair: Pair, query: str, accept: str | None) -> None:
    headers = [("Accept", accept)] if accept is not None else []
    same(pair, "GET", f"{API}/entities/{EID}{query}", headers=headers)


@pytest.mark.parametrize("path", [
    f"{API}/entities/{EID}", f"{API}/entities/{EID}/", f"{API}/entities/urn:x:missing", f"{API}/entities/bad%20id",
    f"{API}/entities/urn%3Angsi-ld%3AAirQualityObserved%3Afast-1", f"{API}/entities/urn:x%2Fy",
    f"{API}/entities/%00", f"{API}/entities//", f"{API}/entities/{'u' * 300}", f"{API}/entities/{EID}?%00",
])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "POST", "PUT", "OPTIONS"])
def test_neighbours_of_retrieve_entity(pair: Pair, path: str, method: str) -> None:
    if method == "DELETE":
        path = path.replace("fast-1", "never")  # the entity stays for the other cases
    same(pair, method, path, body=b"{}" if method in ("POST", "PUT") else None,
         headers=[("Content-Type", "application/json")] if method in ("POST", "PUT") else [])


@pytest.mark.parametrize("headers", [
    [("NGSILD-Tenant", "aix")], [("NGSILD-Tenant", "nowhere")], [("ngsild-tenant", "aix")],
    [("NGSILD-Tenant", "aix"), ("NGSILD-Tenant", "nowhere")], [("NGSILD-Tenant", "")], [("Fiware-Service", "aix")],
    [("NGSILD-Tenant", "x" * 300)], [("Link", LINK)], [("Link", f"<{CORE}>")], [("Link", "not a link")],
    [("Link", UNREACHABLE)],
    [("Link", LINK), ("Accept", "application/ld+json")], [("Prefer", "body=json"), ("Accept", "application/geo+json")],
    [("Authorization", "Bearer nothing")],
])
def test_retrieve_entity_headers(pair: Pair, headers: list[tuple[str, str]]) -> None:
    same(pair, "GET", f"{API}/entities/{EID}", headers=headers)
    same(pair, "GET", f"{API}/entities/{EID}?options=keyValues&attrs=no2", headers=headers)


PATCHES: list[tuple[str, bytes | None, list[tuple[str, str]]]] = [
    ("no2", b'{"type": "Property", "value": 3.5}', [("Content-Type", "application/json")]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("no2", b"5", [("Content-Type", "application/json")]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/merge-patch+json")]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/json; charset=utf-8")]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/json"), ("Link", LINK)]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/json"), ("Link", UNREACHABLE)]),
    ("no2", b'{"value": 4, "@context": "' + CORE.encode() + b'"}', [("Content-Type", "application/ld+json")]),
    ("no2", b'{"value": 4}', [("Content-Type", "application/ld+json")]),
    ("no2", b'{"value": 4, "@context": "' + CORE.encode() + b'"}', [("Content-Type", "application/json")]),
    ("no2", b'{"value": 4, "@context": "' + CORE.encode() + b'"}',
     [("Content-Type", "application/ld+json"), ("Link", LINK)]),
    ("no2", b'{"value": 4}', []),
    ("no2", b'{"value": 4}', [("Content-Type", "text/plain")]),
    ("no2", b'{"value": 4', [("Content-Type", "application/json")]),
    ("no2", b"[1, 2]", [("Content-Type", "application/json")]),
    ("no2", b"", [("Content-Type", "application/json")]),
    ("no2", None, [("Content-Type", "application/json")]),
    ("no2", b'{"value": "a\\u0000b"}', [("Content-Type", "application/json")]),
    ("no2", b'{"type": "Relationship", "object": "urn:x:1"}', [("Content-Type", "application/json")]),
    ("no2", b'{"type": "Bogus", "value": 1}', [("Content-Type", "application/json")]),
    ("no2", b'{"value": null}', [("Content-Type", "application/json")]),
    ("no2", b'{"value": 6}', [("Content-Type", "application/json"), ("NGSILD-Tenant", "aix")]),
    ("no2", b'{"value": 6}', [("Content-Type", "application/json"), ("NGSILD-Tenant", "nowhere")]),
    ("no2", b'{"value": 6}', [("Content-Type", "application/json"), ("NGSILD-Tenant", "a\x01")]),
    ("no2b?datasetId=urn:ds:2", b'{"value": 7}', [("Content-Type", "application/json")]),
    ("no2b?datasetId=urn:ds:9", b'{"value": 7}', [("Content-Type", "application/json")]),
    ("no2b?datasetId=not%20uri", b'{"value": 7}', [("Content-Type", "application/json")]),
    ("no2b", b'{"value": 8, "datasetId": "urn:ds:2"}', [("Content-Type", "application/json")]),
    ("no2?options=keyValues", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("no2?limt=1", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("no2?local=true", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("nope", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("bad%20name", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("scope", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("name", b'{"languageMap": {"fr": "Sonde"}}', [("Content-Type", "application/json")]),
    ("location", b'{"type": "Point", "coordinates": [5.5, 43.6]}', [("Content-Type", "application/json")]),
    ("refDevice", b'{"object": "urn:ngsi-ld:Device:d2"}', [("Content-Type", "application/json")]),
    ("no2/", b'{"value": 4}', [("Content-Type", "application/json")]),
    ("no2", b"x" * 3_000_000, [("Content-Type", "application/json")]),
]


@pytest.mark.parametrize(("attr", "body", "headers"), PATCHES)
def test_patch_attribute_answers_as_the_router_does(pair: Pair, attr: str, body: bytes | None,
                                                     headers: list[tuple[str, str]]) -> None:
    same(pair, "PATCH", f"{API}/entities/{EID}/attrs/{attr}", body, headers)
    same(pair, "GET", f"{API}/entities/{EID}")  # and leave the same entity behind


@pytest.mark.parametrize("entity", ["urn:x:missing", "bad%20id", "urn:x%2Fy", ""])
def test_patch_attribute_of_other_entities(pair: Pair, entity: str) -> None:
    same(pair, "PATCH", f"{API}/entities/{entity}/attrs/no2", b'{"value": 1}', [("Content-Type", "application/json")])


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"])
def test_neighbours_of_patch_attribute(pair: Pair, method: str) -> None:
    body = b'{"type": "Property", "value": 9}' if method in ("POST", "PUT") else None
    attr = "nope" if method == "DELETE" else "no2b"  # a DELETE twice would not answer the same
    same(pair, method, f"{API}/entities/{EID}/attrs/{attr}", body,
         [("Content-Type", "application/json")] if body else [])


NOTIFICATIONS: list[tuple[str, bytes | None, list[tuple[str, str]]]] = [
    ("POST", orjson.dumps({"data": [{"id": "urn:x:r1", "type": "Room",
                                     "temperature": {"type": "Number", "value": 21.5},
                                     "TimeInstant": {"type": "DateTime", "value": "2026-03-01T00:00:00Z"}}]}),
     [("Content-Type", "application/json")]),
    ("POST", orjson.dumps({"data": [{"id": "urn:x:r1", "type": "Room", "temperature": {"value": 22}}]}),
     [("Content-Type", "application/json"), ("Fiware-Service", "aix"), ("Fiware-ServicePath", "/a")]),
    ("POST", orjson.dumps({"data": [{"id": "urn:x:r2", "type": "Room", "t": {"type": "Property", "value": 1}}]}),
     [("Content-Type", "application/ld+json"), ("NGSILD-Tenant", "aix"), ("Link", LINK)]),
    ("POST", b"{", [("Content-Type", "application/json")]),
    ("POST", b'{"data": {}}', [("Content-Type", "application/json")]),
    ("POST", b'{"data": [{"id": "x"}]}', [("Content-Type", "application/json")]),
    ("POST", b'{"data": []}', [("Content-Type", "text/plain")]),
    ("POST", b"", [("Content-Type", "application/json")]),
    ("POST", None, []),
    ("POST", b'{"data": []}', [("Content-Type", "application/json"), ("Fiware-Service", "a\x02")]),
    ("GET", None, []),
    ("PUT", b"{}", [("Content-Type", "application/json")]),
    ("OPTIONS", None, []),
]


@pytest.mark.parametrize(("method", "body", "headers"), NOTIFICATIONS)
@pytest.mark.parametrize("path", ["/v2/notify", "/v2/notify/", "/v2/notify?x=1"])
def test_notify_answers_as_the_router_does(pair: Pair, method: str, body: bytes | None,
                                           headers: list[tuple[str, str]], path: str) -> None:
    same(pair, method, path, body, headers)


@pytest.mark.parametrize("path", ["/v2", "/v2/", "/v2/version", "/v2/entities/urn:x:r1", "/v2/nowhere", "/v2x"])
def test_other_history_paths(pair: Pair, path: str) -> None:
    same(pair, "GET", path)
