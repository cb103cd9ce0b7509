"""adapters.ngsild against the real embedded broker (a subprocess, over HTTP) and a mock transport."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.ngsild import BrokerUnavailable, NgsiLdClient, error_from_response, is_retryable
from bench.procs import broker_process, free_port
from models.errors import BadRequestData, InternalError, LdContextNotAvailable, NonexistentTenant

SDM = "https://smartdatamodels.org/context.jsonld"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"


def aq(name: str, no2: Any, observed: str = "2026-11-26T07:00:00Z") -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:AirQualityObserved:{name}", "type": "AirQualityObserved",
            "no2": {"type": "Property", "value": no2, "unitCode": "GQ", "observedAt": observed}}


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ngsild")
    proc = broker_process(tmp / "data", log=tmp / "broker.log")
    proc.start()
    try:
        yield proc.ready_url.removesuffix("/version")
    finally:
        proc.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_upsert_creates_then_updates_with_tenant_and_link(broker_url: str) -> None:
    async def go() -> None:
        async with NgsiLdClient(broker_url) as c:
            first = await c.upsert([aq("A", 41), aq("B", 12)], tenant="aix", context=[SDM, CORE])
            assert sorted(first.created) == ["urn:ngsi-ld:AirQualityObserved:A", "urn:ngsi-ld:AirQualityObserved:B"]
            again = await c.upsert([aq("A", 43, "2026-11-26T08:00:00Z")], tenant="aix", context=[SDM, CORE])
            assert again.success == ["urn:ngsi-ld:AirQualityObserved:A"] and not again.errors
            got = await c.get_entity("urn:ngsi-ld:AirQualityObserved:A", tenant="aix", context=[SDM])
            assert got["no2"]["value"] == 43 and got["no2"]["unitCode"] == "GQ"
            with pytest.raises(NonexistentTenant):  # another tenant does not see it
                await c.get_entity("urn:ngsi-ld:AirQualityObserved:A", tenant="marseille", context=[SDM])
    run(go())


def test_merge_mode_creates_missing_entities_and_merges_existing(broker_url: str) -> None:
    async def go() -> None:
        async with NgsiLdClient(broker_url) as c:
            out = await c.write([aq("M", 1)], mode="merge", tenant="merge", context=[SDM])
            assert not out.errors
            pm = {"id": "urn:ngsi-ld:AirQualityObserved:M", "type": "AirQualityObserved",
                  "pm10": {"type": "Property", "value": 20, "unitCode": "GQ"}}
            out = await c.write([pm], mode="merge", tenant="merge", context=[SDM])
            assert not out.errors
            got = await c.get_entity("urn:ngsi-ld:AirQualityObserved:M", tenant="merge", context=[SDM])
            assert got["no2"]["value"] == 1 and got["pm10"]["value"] == 20, "merge keeps what it does not name"
    run(go())


def test_207_maps_each_entity_error_from_problem_details(broker_url: str) -> None:
    async def go() -> None:
        async with NgsiLdClient(broker_url) as c:
            bad = {"id": "urn:ngsi-ld:AirQualityObserved:bad", "type": "AirQualityObserved",
                   "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": "nowhere"}}}
            out = await c.upsert([aq("ok", 1), bad], tenant="errs", context=[SDM])
            assert "urn:ngsi-ld:AirQualityObserved:ok" in out.success
            (entity_id, error), = out.errors
            assert entity_id == "urn:ngsi-ld:AirQualityObserved:bad"
            assert isinstance(error, BadRequestData) and not is_retryable(error)
    run(go())


def test_inline_context_when_several_non_core_contexts(broker_url: str) -> None:
    """Two user contexts cannot share one Link header: they go inline as application/ld+json."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        c = NgsiLdClient("http://broker", http=http)
        await c.upsert([aq("X", 1)], tenant="t", context=[SDM, "https://example.org/other.jsonld", CORE])
        await c.upsert([aq("X", 1)], context=[SDM, CORE])
        await http.aclose()

    run(go())
    inline, link = seen
    assert inline.headers["content-type"] == "application/ld+json" and "link" not in inline.headers
    assert inline.headers["ngsild-tenant"] == "t"
    assert b'"@context":["https://smartdatamodels.org/context.jsonld","https://example.org/other.jsonld"]' in inline.content
    assert link.headers["content-type"] == "application/json" and SDM in link.headers["link"]
    assert "ngsild-tenant" not in link.headers, "the default tenant sends no header"
    assert link.url.params["options"] == "update"


def test_broker_down_is_retryable_unavailable() -> None:
    async def go() -> None:
        async with NgsiLdClient(f"http://127.0.0.1:{free_port()}", timeout=2) as c:
            with pytest.raises(BrokerUnavailable) as info:
                await c.upsert([aq("A", 1)])
            assert is_retryable(info.value)
    run(go())


@pytest.mark.parametrize(
    ("status", "body", "expected", "retry"),
    [
        (400, {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "x", "detail": "d"},
         BadRequestData, False),
        (503, {"type": "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable", "title": "x", "detail": "d"},
         LdContextNotAvailable, True),
        (502, None, BrokerUnavailable, True),
        (429, None, BrokerUnavailable, True),
        (422, {"type": "https://example.org/vendor/Unprocessable", "status": 422, "detail": "d"}, BadRequestData, False),
        (500, {"type": "https://example.org/vendor/Oops", "detail": "d"}, InternalError, True),
    ],
)
def test_one_error_mapping(status: int, body: Any, expected: type, retry: bool) -> None:
    request = httpx.Request("POST", "http://broker/ngsi-ld/v1/entityOperations/upsert")
    response = httpx.Response(status, json=body, request=request) if body is not None else httpx.Response(
        status, text="busy", request=request)
    error = error_from_response(response)
    assert isinstance(error, expected)
    assert is_retryable(error) is retry




def test_own_http_client_reads_chunked_answers_and_survives_a_closed_keep_alive_connection() -> None:
    """`_Http11`: a chunked 207, then the server closes the idle connection; the next request gets through."""
    requests: list[bytes] = []
    closed = asyncio.Event()  # set by the server once it has closed a connection
    multi = b'{"success": ["urn:a"], "errors": []}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        requests.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(multi), multi))
        await writer.drain()
        writer.close()  # after answering: the client's kept-alive connection is dead when it reuses it
        await writer.wait_closed()
        closed.set()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, NgsiLdClient(f"http://127.0.0.1:{port}") as c:
            for _ in range(2):
                out = await c.write_json([b'{"id":"urn:a","type":"T"}'], ["urn:a"], tenant="t", context=[SDM])
                assert out.success == ["urn:a"] and not out.errors
                await asyncio.wait_for(closed.wait(), 10)  # the connection the client keeps is closed: reuse it
                closed.clear()

    run(go())
    assert len(requests) == 2
    assert requests[0].startswith(b"POST /ngsi-ld/v1/entityOperations/upsert?options=update HTTP/1.1\r\n")
    assert b"\r\nNGSILD-Tenant: t\r\n" in requests[0] and requests[0].endswith(b'[{"id":"urn:a","type":"T"}]')
