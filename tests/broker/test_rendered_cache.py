"""Retrieve Entity's kept answers (broker.api.rendered) are the bytes the uncached handler gives, before and after writes.

One broker state (store, resolver, registrations) served by two apps on two real sockets, on SQLite
and on PostgreSQL: the broker as `create_app` builds it, whose GETs keep and send again their
answers, and the same app with its cache turned off. Every GET below goes to the uncached app and
twice to the cached one (the second answered from the cache when it was kept), and the status,
headers (but Date) and body must be the same bytes; between rounds the entity is written in every
way an entity can be written, through either app.
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

from bench.procs import free_port
from broker.api import rendered
from broker.api.rendered import Entry, RenderedEntities, budget_from_env
from broker.app import create_app
from broker.service.view import View
from broker.settings import BrokerSettings
from broker.store.base import ChangeRecord
from models.context import ContextResolver
from tests.pg import store_url
from web.serving import EmbeddedServer

API = "/ngsi-ld/v1"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
LINK = f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
EID = "urn:ngsi-ld:AirQualityObserved:cache-1"
JSON = [("Content-Type", "application/json")]
ENTITY = {"id": EID, "type": "AirQualityObserved",
          "no2": {"type": "Property", "value": 21.5, "unitCode": "GQ", "observedAt": "2026-11-26T02:16:00Z"},
          "no2b": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}],
          "name": {"type": "LanguageProperty", "languageMap": {"fr": "Capteur", "en": "Sensor"}},
          "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.4, 43.5]}},
          "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"}}

GETS: list[tuple[str, list[tuple[str, str]]]] = [
    ("", []), ("", [("Accept", "application/json")]), ("", [("Accept", "application/ld+json")]),
    ("", [("Accept", "application/geo+json")]), ("", [("Accept", "application/geo+json"), ("Prefer", "body=json")]),
    ("", [("Link", LINK)]), ("", [("Link", LINK), ("Accept", "application/ld+json")]),
    ("?options=keyValues", []), ("?options=sysAttrs", []), ("?options=concise,sysAttrs", []),
    ("?attrs=no2", []), ("?attrs=nope", []), ("?pick=no2", []), ("?omit=no2", []), ("?lang=fr", []),
    ("?type=AirQualityObserved", []), ("?type=Other", []), ("?datasetId=urn:ds:2", []),
    ("?geometryProperty=location", [("Accept", "application/geo+json")]), ("?join=inline", []),
    ("?options=bogus", []), ("?local=true", []), ("", [("NGSILD-Tenant", "aix")]),
]


class Pair:
    """The cached and the uncached broker app over one broker state, served by uvicorn in one background loop."""

    def __init__(self, data: Path, url: str) -> None:
        settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data, store_url=url,
                                  context_timeout=2.0)
        self.cached_app = create_app(settings)
        self.plain_app = create_app(settings)
        self.plain_app.state.rendered_entities = None  # turned off
        plain_port = free_port()
        self.cached = EmbeddedServer(uvicorn.Config(self.cached_app, host="127.0.0.1", port=settings.port,
                                                    log_level="warning", lifespan="on"))
        self.plain = EmbeddedServer(uvicorn.Config(self.plain_app, host="127.0.0.1", port=plain_port,
                                                   log_level="warning", lifespan="off"))
        self.ports = {"cached": settings.port, "plain": plain_port}
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        await asyncio.gather(self.cached.serve(), self.plain.serve())

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.cached.started and self.plain.started):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the brokers did not start")
            time.sleep(0.02)
        self.plain_app.state.broker = self.cached_app.state.broker  # one state: the same store behind both
        self.plain_app.state.authenticator = self.cached_app.state.authenticator
        return self

    def __exit__(self, *exc: object) -> None:
        self.cached.should_exit = self.plain.should_exit = True
        self.thread.join(timeout=30)

    def cache(self) -> RenderedEntities:
        bound = self.cached_app.state.rendered_entities
        assert bound is not None, "the cached app made no cache"
        cache: RenderedEntities = bound.cache
        return cache

    def send(self, app: str, method: str, path: str, body: Any = None,
             headers: list[tuple[str, str]] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[app], timeout=30)
        conn.putrequest(method, path, skip_accept_encoding=True)
        raw = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
        for name, value in (headers if headers is not None else JSON if raw is not None else []):
            conn.putheader(name, value)
        if raw is not None:
            conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders(raw)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, [(k, v) for k, v in response.getheaders() if k.lower() != "date"], payload

    def same(self) -> list[tuple[int, bytes]]:
        """Every GET of GETS answered alike by the uncached app and twice by the cached one."""
        answers = []
        for query, headers in GETS:
            path = f"{API}/entities/{EID}{query}"
            plain = self.send("plain", "GET", path, headers=headers)
            first = self.send("cached", "GET", path, headers=headers)
            again = self.send("cached", "GET", path, headers=headers)
            assert first == plain, f"GET {path} {headers}"
            assert again == plain, f"GET {path} {headers}, from the cache"
            answers.append((plain[0], plain[2]))
        return answers


@pytest.fixture(params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    with store_url(request.param, tmp_path / "broker.db", "test_rendered") as url, Pair(tmp_path, url) as running:
        for tenant in ("", "aix"):
            headers = [*JSON, *([("NGSILD-Tenant", tenant)] if tenant else [])]
            assert running.send("plain", "POST", f"{API}/entities", ENTITY, headers)[0] == 201
        yield running


WRITES: list[tuple[str, str, str, Any]] = [
    ("PATCH", f"/entities/{EID}/attrs/no2", "plain", {"type": "Property", "value": 3.5}),
    ("PATCH", f"/entities/{EID}/attrs/no2", "cached", {"value": 4.5}),
    ("PATCH", f"/entities/{EID}", "plain", {"no2": {"type": "Property", "value": 5.5}}),
    ("POST", f"/entities/{EID}/attrs", "plain", {"pm10": {"type": "Property", "value": 9}}),
    ("PATCH", f"/entities/{EID}/attrs", "cached", {"pm10": {"type": "Property", "value": 10}}),
    ("DELETE", f"/entities/{EID}/attrs/pm10", "plain", None),
    ("PUT", f"/entities/{EID}", "plain", {k: v for k, v in ENTITY.items() if k not in ("id", "name")}),
    ("POST", "/entityOperations/upsert", "plain", [{**ENTITY, "no2": {"type": "Property", "value": 6.5}}]),
    ("POST", "/entityOperations/upsert?options=update", "cached",
     [{"id": EID, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 7.5}}]),
    ("POST", "/entityOperations/update", "plain",
     [{"id": EID, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 8.5}}]),
    ("POST", "/entityOperations/merge", "plain",
     [{"id": EID, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 1}}]),
    ("DELETE", f"/entities/{EID}", "plain", None),
    ("POST", "/entities", "plain", {**ENTITY, "no2": {"type": "Property", "value": 10.5}}),
    ("POST", "/entityOperations/delete", "cached", [EID]),
    ("POST", "/entityOperations/create", "plain", [ENTITY]),
    ("DELETE", "/entities?type=AirQualityObserved&drop=no2b", "plain", None),
]


def test_cached_answers_are_the_uncached_ones_after_every_kind_of_write(pair: Pair) -> None:
    seen = [pair.same()]
    assert len(pair.cache()) > 0, "nothing was kept"
    for method, path, app, body in WRITES:
        status = pair.send(app, method, API + path, body)[0]
        assert status in (200, 201, 204), f"{method} {path}: {status}"
        seen.append(pair.same())
    assert len({tuple(s) for s in seen}) > len(WRITES) // 2, "the writes did not change the answers"


def test_a_write_through_the_other_app_reaches_the_cached_answer(pair: Pair) -> None:
    # the uncached app shares the store, not the cache: only the store's committed writes can drop the answer
    path = f"{API}/entities/{EID}?options=keyValues&attrs=no2"
    before = pair.send("cached", "GET", path)
    assert orjson.loads(before[2])["no2"] == 21.5
    assert pair.cache().get("", EID, (b"options=keyValues&attrs=no2", None, None, None)) is not None
    assert pair.send("plain", "PATCH", f"{API}/entities/{EID}/attrs/no2", {"value": 30})[0] == 204
    assert orjson.loads(pair.send("cached", "GET", path)[2])["no2"] == 30
    assert pair.send("plain", "POST", f"{API}/entityOperations/upsert?options=update",
                     [{"id": EID, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 31}}])[0] == 204
    assert orjson.loads(pair.send("cached", "GET", path)[2])["no2"] == 31
    assert pair.send("plain", "DELETE", f"{API}/entities/{EID}")[0] == 204
    assert pair.send("cached", "GET", path)[0] == 404
    # another tenant's entity of the same id is another entry
    assert orjson.loads(pair.send("cached", "GET", path, headers=[("NGSILD-Tenant", "aix")])[2])["no2"] == 21.5


def test_hosted_contexts_and_registrations_are_read_on_every_request(pair: Pair) -> None:
    terms = {"nitrogen": "https://uri.etsi.org/ngsi-ld/default-context/no2"}
    r = pair.send("plain", "POST", f"{API}/jsonldContexts", {"@context": terms})
    assert r[0] == 201
    location = {k.lower(): v for k, v in r[1]}["location"]
    hosted = [("Link", f'<{location}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')]
    GETS.append(("", hosted))
    try:
        pair.same()
        assert pair.send("plain", "DELETE", location)[0] == 204  # the context gone: both answer as the resolver says
        pair.same()
    finally:
        GETS.pop()
    # a registration in the tenant: the answers are the forwarding path's (the source is unreachable), not kept ones
    reg = {"type": "ContextSourceRegistration", "endpoint": "http://127.0.0.1:1",
           "information": [{"entities": [{"type": "AirQualityObserved"}]}]}
    assert pair.send("plain", "POST", f"{API}/csourceRegistrations", reg)[0] == 201
    pair.same()


def _record(tenant: str, entity_id: str) -> ChangeRecord:
    return ChangeRecord(1, tenant, entity_id, None, None, "2026-12-06T00:00:00Z")


def _entry(body: bytes = b"{}") -> Entry:
    return Entry(None, None, 200, ((b"content-type", b"application/json"),), body)


def test_an_answer_read_before_a_write_is_not_kept_after_it() -> None:
    cache = RenderedEntities(1 << 20)
    variant = (b"", None, None, None)
    generation = cache.generation()  # a GET about to read the store
    cache.invalidate([_record("", "urn:x:1")])  # a write commits meanwhile
    cache.keep("", "urn:x:1", variant, _entry(), generation)
    assert cache.get("", "urn:x:1", variant) is None
    cache.keep("", "urn:x:2", variant, _entry(), generation)  # another entity: its read is still good
    assert cache.get("", "urn:x:2", variant) is not None
    cache.keep("", "urn:x:1", variant, _entry(), cache.generation())  # read after the write
    assert cache.get("", "urn:x:1", variant) is not None
    cache.invalidate([_record("", "urn:x:1")])
    assert cache.get("", "urn:x:1", variant) is None and cache.get("", "urn:x:2", variant) is not None


def test_the_cache_forgets_the_oldest_entities_past_its_budget() -> None:
    cache = RenderedEntities(3 * (1000 + 256))
    variant = (b"", None, None, None)
    for n in range(5):
        cache.keep("", f"urn:x:{n}", variant, _entry(b"x" * 1000), cache.generation())
    assert [n for n in range(5) if cache.get("", f"urn:x:{n}", variant) is not None] == [2, 3, 4]
    cache.keep("", "urn:x:big", variant, _entry(b"x" * 10_000), cache.generation())  # larger than the whole budget
    assert cache.get("", "urn:x:big", variant) is None


def test_a_reloaded_context_is_not_answered_with_the_former_one(pair: Pair, context_server: Any) -> None:
    # the same Link, a new Context object once reloaded: an answer kept with the former one is not sent
    iri = "https://uri.etsi.org/ngsi-ld/default-context/no2"
    url = context_server.publish({"nitrogen": iri})
    headers = [("Link", f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')]
    path = f"{API}/entities/{EID}?options=keyValues&attrs=no2"
    assert orjson.loads(pair.send("cached", "GET", path, headers=headers)[2])["nitrogen"] == 21.5
    assert orjson.loads(pair.send("cached", "GET", path, headers=headers)[2])["nitrogen"] == 21.5
    context_server.handler.documents[url.removeprefix(context_server.base)] = {"@context": {"dioxide": iri}}
    assert pair.send("plain", "DELETE", f"{API}/jsonldContexts/{url}?reload=true")[0] == 204
    answer = pair.send("cached", "GET", path, headers=headers)
    assert answer == pair.send("plain", "GET", path, headers=headers)
    assert orjson.loads(answer[2])["dioxide"] == 21.5


@pytest.mark.parametrize(("text", "budget"), [("", 64 << 20), ("0", 0), ("0.5", 1 << 19), ("lots", 64 << 20)])
def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, text: str, budget: int) -> None:
    monkeypatch.setenv("METROPOLE_BROKER_RENDER_CACHE_MB", text)
    assert budget_from_env() == budget


def test_no_answer_older_than_an_acknowledged_write_under_concurrent_reads(pair: Pair) -> None:
    # one client PATCHes increasing values; four read the entity meanwhile: a GET sent after a PATCH was
    # answered must show that value or a later one, whether it was answered from the cache or not
    path = f"{API}/entities/{EID}?options=keyValues&attrs=no2"
    acked = [0]
    stale: list[tuple[int, Any]] = []
    done = threading.Event()
    hits = [0]

    def read() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", pair.ports["cached"], timeout=30)
        while not done.is_set():
            floor = acked[0]
            conn.request("GET", path)
            response = conn.getresponse()
            value = orjson.loads(response.read())["no2"]
            if value < floor:
                stale.append((floor, value))
            hits[0] += 1
        conn.close()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    conn = http.client.HTTPConnection("127.0.0.1", pair.ports["cached"], timeout=30)
    try:
        for value in range(1, 151):
            conn.request("PATCH", f"{API}/entities/{EID}/attrs/no2", orjson.dumps({"value": value}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 204
            acked[0] = value
            time.sleep(0.002)  # let the readers keep answers between the writes
    finally:
        done.set()
        for reader in readers:
            reader.join(timeout=30)
        conn.close()
    assert not stale, f"answers older than an acknowledged write: {stale[:5]}"
    assert hits[0] > 300
    final = pair.send("cached", "GET", path)
    assert final == pair.send("plain", "GET", path) and orjson.loads(final[2])["no2"] == 150


def test_no_parameters_is_the_view_the_parameters_give_when_none_applies() -> None:
    # View.from_params answers an empty mapping without reading it: the same view as a full read finds
    ctx = ContextResolver().resolve(None)
    assert View.from_params({}, ctx, entity_maps=True) == View.from_params({"local": "true"}, ctx) == View()
    assert View.from_params({"options": "keyValues"}, ctx) != View()


def test_a_read_older_than_what_the_cache_remembers_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendered, "TOUCHED", 2)
    cache = RenderedEntities(1 << 20)
    variant = (b"", None, None, None)
    generation = cache.generation()
    cache.invalidate([_record("", "urn:x:1"), _record("", "urn:x:2"), _record("", "urn:x:3")])  # urn:x:1 forgotten
    cache.keep("", "urn:x:1", variant, _entry(), generation)  # it may have changed after this read: not kept
    cache.keep("", "urn:x:9", variant, _entry(), generation)  # nor anything else read that early
    assert cache.get("", "urn:x:1", variant) is None and cache.get("", "urn:x:9", variant) is None
    cache.keep("", "urn:x:9", variant, _entry(), cache.generation())
    assert cache.get("", "urn:x:9", variant) is not None
