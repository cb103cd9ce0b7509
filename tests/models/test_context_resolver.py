"""`ContextResolver` against a real local HTTP server: fetching, limits, caches, the /jsonldContexts inventory."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.context import CORE_CONTEXT_URL, ContextResolver
from models.errors import BadRequestData, LdContextNotAvailable, OperationNotSupported, ResourceNotFound

LD_JSON = "application/ld+json"


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = LD_JSON
    delay: float = 0.0
    location: str | None = None
    declare_length: bool = True


@dataclass
class ContextServer:
    """A real HTTP server on 127.0.0.1 serving canned routes and counting requests per path."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path

    def context(self, path: str, context: object, **kwargs: object) -> str:
        self.routes[path] = Route(json.dumps({"@context": context}).encode(), **kwargs)  # type: ignore[arg-type]
        return self.url(path)


@pytest.fixture
def server() -> Iterator[ContextServer]:
    state = ContextServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            time.sleep(route.delay)
            try:
                self.send_response(route.status)
                if route.content_type:
                    self.send_header("Content-Type", route.content_type)
                if route.location:
                    self.send_header("Location", route.location)
                if route.declare_length:
                    self.send_header("Content-Length", str(len(route.body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up reading, as it should for oversized bodies

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


SPEED = {"speed": "https://example.org/speed", "Car": "https://example.org/Car"}


def test_remote_context_is_fetched_and_cached(server: ContextServer) -> None:
    url = server.context("/car.jsonld", SPEED)
    resolver = ContextResolver()
    context = resolver.resolve(url)
    assert context.expand_term("speed") == "https://example.org/speed"
    assert context.urls == (url,) and context.source == url
    assert resolver.resolve(url) is context
    assert resolver.resolve([url, CORE_CONTEXT_URL]).expand_term("Car") == "https://example.org/Car"
    assert server.hits["/car.jsonld"] == 1  # the second value reused the stored document
    [entry] = resolver.entries()
    assert entry["URL"] == url and entry["kind"] == "Cached" and entry["numberOfHits"] >= 2
    assert entry["expiresAt"] > entry["createdAt"]


def test_nested_remote_contexts(server: ContextServer) -> None:
    inner = server.context("/inner.jsonld", {"ex": "https://example.org/ns#", "speed": "ex:speed"})
    outer = server.context("/outer.jsonld", [inner, {"Car": "ex:Car"}, CORE_CONTEXT_URL])
    context = ContextResolver().resolve([outer, {"colour": "ex:colour"}])
    assert context.expand_term("speed") == "https://example.org/ns#speed"
    assert context.expand_term("Car") == "https://example.org/ns#Car"
    assert context.expand_term("colour") == "https://example.org/ns#colour"
    assert context.urls == (outer,)
    assert server.hits == Counter({"/inner.jsonld": 1, "/outer.jsonld": 1})


def test_later_user_context_overrides_earlier_one(server: ContextServer) -> None:
    url = server.context("/a.jsonld", {"speed": "https://a.example/speed"})
    context = ContextResolver().resolve([url, {"speed": "https://b.example/speed"}])
    assert context.expand_term("speed") == "https://b.example/speed"


def _unavailable(resolver: ContextResolver, url: str) -> LdContextNotAvailable:
    with pytest.raises(LdContextNotAvailable) as caught:
        resolver.resolve(url)
    error = caught.value
    assert url in error.detail
    assert error.to_problem()["type"] == "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
    assert error.status == 503
    return error


def test_slow_server_times_out(server: ContextServer) -> None:
    url = server.context("/slow.jsonld", SPEED, delay=2.0)
    started = time.monotonic()
    error = _unavailable(ContextResolver(timeout=0.3), url)
    assert time.monotonic() - started < 1.5
    assert "timed out" in error.detail


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "close-delimited"])
def test_too_large_body_is_refused(server: ContextServer, declare_length: bool) -> None:
    big = {f"term{i}": f"https://example.org/{'x' * 40}/{i}" for i in range(30_000)}
    url = server.context("/big.jsonld", big, declare_length=declare_length)
    assert len(server.routes["/big.jsonld"].body) > 1 << 20
    error = _unavailable(ContextResolver(), url)
    assert "limit" in error.detail
    assert ContextResolver(max_bytes=4 << 20).resolve(url).expand_term("term7").endswith("/7")


def test_not_found(server: ContextServer) -> None:
    assert "404" in _unavailable(ContextResolver(), server.url("/missing.jsonld")).detail


def test_non_json_body(server: ContextServer) -> None:
    server.routes["/broken.jsonld"] = Route(b"<html>not json</html>")
    assert "not JSON" in _unavailable(ContextResolver(), server.url("/broken.jsonld")).detail


def test_wrong_content_type(server: ContextServer) -> None:
    url = server.context("/page.html", SPEED, content_type="text/html; charset=utf-8")
    assert "text/html" in _unavailable(ContextResolver(), url).detail


def test_json_media_types_and_a_missing_one_are_read(server: ContextServer) -> None:
    # +json types are JSON (JSON-LD 1.1 LoadDocumentCallback); with no type at all the body decides
    for path, content_type in (("/ctx.json", "application/json"), ("/ctx.vnd", "application/vnd.x+json"),
                               ("/ctx.none", "")):
        url = server.context(path, SPEED, content_type=content_type)
        assert ContextResolver().resolve(url).expand_term("speed") == "https://example.org/speed", path
    server.routes["/html.none"] = Route(b"<html>not json</html>", content_type="")
    assert "not JSON" in _unavailable(ContextResolver(), server.url("/html.none")).detail


def test_bookkeeping_resolutions_are_not_hits(server: ContextServer) -> None:
    url = server.context("/counted.jsonld", SPEED)
    resolver = ContextResolver()
    resolver.resolve(url, hit=False)
    resolver.resolve(url, hit=False)
    assert resolver.entry(url)["numberOfHits"] == 0
    resolver.resolve(url)
    assert resolver.entry(url)["numberOfHits"] == 1
    other = server.context("/first-use.jsonld", SPEED)
    resolver.resolve(other)  # the use that downloads it counts
    assert resolver.entry(other)["numberOfHits"] == 1


def test_document_without_context_member(server: ContextServer) -> None:
    server.routes["/plain.json"] = Route(b'{"speed": "https://example.org/speed"}', content_type="application/json")
    assert "@context" in _unavailable(ContextResolver(), server.url("/plain.json")).detail


def test_redirects_are_followed_up_to_a_limit(server: ContextServer) -> None:
    target = server.context("/target.jsonld", SPEED)
    server.routes["/moved.jsonld"] = Route(b"", status=302, location=target)
    assert ContextResolver().resolve(server.url("/moved.jsonld")).expand_term("speed") == "https://example.org/speed"
    server.routes["/loop.jsonld"] = Route(b"", status=302, location=server.url("/loop.jsonld"))
    assert "redirect" in _unavailable(ContextResolver(max_redirects=3), server.url("/loop.jsonld")).detail
    assert server.hits["/loop.jsonld"] == 4


def test_recursive_inclusion_and_depth_limit(server: ContextServer) -> None:
    a, b = server.url("/a.jsonld"), server.url("/b.jsonld")
    server.context("/a.jsonld", [b])
    server.context("/b.jsonld", [a])
    assert "recursive" in _unavailable(ContextResolver(), a).detail
    for i in range(5):
        server.context(f"/chain{i}.jsonld", [server.url(f"/chain{i + 1}.jsonld")] if i < 4 else SPEED)
    assert ContextResolver(max_depth=5).resolve(server.url("/chain0.jsonld")).expand_term("speed").endswith("speed")
    assert "nested" in _unavailable(ContextResolver(max_depth=4), server.url("/chain0.jsonld")).detail


def test_failures_are_cached_for_a_while(server: ContextServer) -> None:
    # issue 17: a dead or slow context server costs one fetch per failure_ttl, not one per request
    now = [1_000_000.0]
    resolver = ContextResolver(failure_ttl=30, clock=lambda: now[0])
    url = server.url("/later.jsonld")
    first = _unavailable(resolver, url)
    server.context("/later.jsonld", SPEED)
    assert _unavailable(resolver, url).detail == first.detail  # answered from memory
    assert server.hits["/later.jsonld"] == 1
    now[0] += 31
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/speed"
    assert server.hits["/later.jsonld"] == 2


def test_failures_are_not_cached_with_a_zero_ttl(server: ContextServer) -> None:
    resolver = ContextResolver(failure_ttl=0)
    url = server.url("/later0.jsonld")
    _unavailable(resolver, url)
    server.context("/later0.jsonld", SPEED)
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/speed"


def test_disk_cache_survives_a_new_resolver_until_ttl(server: ContextServer, tmp_path: Path) -> None:
    url = server.context("/disk.jsonld", SPEED)
    now = [1_000_000.0]
    ContextResolver(cache_dir=tmp_path, ttl=60, clock=lambda: now[0]).resolve(url)
    restarted = ContextResolver(cache_dir=tmp_path, ttl=60, clock=lambda: now[0])
    assert restarted.resolve(url).expand_term("speed") == "https://example.org/speed"
    assert server.hits["/disk.jsonld"] == 1
    assert restarted.entries()[0]["extraInfo"] == "origin: disk"
    now[0] += 61  # expired: both the stored document and the resolved context are refreshed
    assert restarted.resolve(url).expand_term("speed") == "https://example.org/speed"
    assert server.hits["/disk.jsonld"] == 2


def test_memory_ttl_expires_resolved_contexts(server: ContextServer) -> None:
    url = server.context("/ttl.jsonld", SPEED)
    now = [0.0]
    resolver = ContextResolver(ttl=10, clock=lambda: now[0])
    resolver.resolve(url)
    server.context("/ttl.jsonld", {"speed": "https://example.org/v2/speed"})
    now[0] = 5
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/speed"
    now[0] = 11
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/v2/speed"
    assert server.hits["/ttl.jsonld"] == 2


def test_aresolve_fetches_off_the_loop_and_returns_cached(server: ContextServer) -> None:
    url = server.context("/async.jsonld", SPEED, delay=0.3)
    resolver = ContextResolver()

    async def scenario() -> tuple[int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        context = await resolver.aresolve(url)
        task.cancel()
        started = time.monotonic()
        assert await resolver.aresolve(url) is context
        return ticks, time.monotonic() - started

    ticks, cached_time = asyncio.run(scenario())
    assert ticks >= 10  # the loop kept running while the server was slow
    assert cached_time < 0.05 and server.hits["/async.jsonld"] == 1


def test_concurrent_resolves_agree(server: ContextServer) -> None:
    url = server.context("/shared.jsonld", SPEED, delay=0.05)
    resolver = ContextResolver()
    results: list[str] = []

    def work() -> None:
        results.append(resolver.resolve([url, {"x": "https://example.org/x"}]).expand_term("speed"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["https://example.org/speed"] * 8
    assert len(resolver.entries()) == 1


def test_hosted_contexts(server: ContextServer) -> None:
    resolver = ContextResolver(fetch=lambda url: pytest.fail(f"fetched {url}"), hosted_base_url="http://broker:1026/ngsi-ld/v1/jsonldContexts/")
    local_id = resolver.host({"@context": SPEED, "ignored": 1})
    url = resolver.url_of(local_id)
    assert url == f"http://broker:1026/ngsi-ld/v1/jsonldContexts/{local_id}"
    assert resolver.get(local_id) == {"@context": SPEED}
    assert resolver.resolve(url).expand_term("Car") == "https://example.org/Car"
    implicit = resolver.host({"@context": [url, {"x": "https://example.org/x"}]}, implicit=True)
    assert {e["kind"] for e in resolver.entries()} == {"Hosted", "ImplicitlyCreated"}
    assert [e["localId"] for e in resolver.entries("ImplicitlyCreated")] == [implicit]
    with pytest.raises(BadRequestData):
        resolver.reload(local_id)
    with pytest.raises(BadRequestData):
        resolver.host({"speed": "no @context member"})
    with pytest.raises(BadRequestData):
        resolver.host({"@context": {"s": {"@id": "https://e.org/s", "@context": {}}}})
    resolver.delete(local_id)
    with pytest.raises(ResourceNotFound):
        resolver.get(local_id)
    with pytest.raises(BadRequestData):
        resolver.delete("")


def test_cached_contexts_are_not_served_but_can_be_reloaded_and_deleted(server: ContextServer) -> None:
    url = server.context("/cached.jsonld", SPEED)
    resolver = ContextResolver()
    resolver.resolve(url)
    [entry] = resolver.entries("Cached")
    with pytest.raises(OperationNotSupported):
        resolver.get(entry["localId"])
    assert resolver.entry(url)["localId"] == entry["localId"]

    server.context("/cached.jsonld", {"speed": "https://example.org/v2/speed"})
    assert resolver.reload(url)["localId"] == entry["localId"]
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/v2/speed"

    server.routes.pop("/cached.jsonld")
    with pytest.raises(LdContextNotAvailable):
        resolver.reload(entry["localId"])
    assert resolver.resolve(url).expand_term("speed") == "https://example.org/v2/speed"  # kept on failure

    resolver.delete(url)
    assert resolver.entries() == []
    with pytest.raises(ResourceNotFound):
        resolver.entry(url)
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve(url)  # deleted, so fetched again, and now the server has nothing


def test_shipped_contexts_appear_in_the_inventory_without_fetch() -> None:
    resolver = ContextResolver(fetch=lambda url: pytest.fail(f"fetched {url}"))
    resolver.resolve("https://smartdatamodels.org/context.jsonld")
    [entry] = resolver.entries()
    assert entry["extraInfo"] == "origin: shipped" and "expiresAt" not in entry
    assert resolver.reload(entry["URL"])["URL"] == "https://smartdatamodels.org/context.jsonld"


def test_urls_that_cannot_be_fetched() -> None:
    resolver = ContextResolver()
    with pytest.raises(BadRequestData):
        resolver.resolve("relative/context.jsonld")
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve("ftp://example.org/context.jsonld")
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve("http://127.0.0.1:9/closed-port.jsonld")


def test_inline_wrapper_and_null() -> None:
    resolver = ContextResolver()
    wrapped = resolver.resolve({"@context": SPEED})
    assert wrapped.expand_term("speed") == "https://example.org/speed"
    reset = resolver.resolve([SPEED, None, {"Car": "https://example.org/Car"}])
    assert reset.expand_term("speed").startswith("https://uri.etsi.org/ngsi-ld/default-context/")
    assert reset.expand_term("Car") == "https://example.org/Car"
