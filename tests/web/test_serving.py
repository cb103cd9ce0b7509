"""web.serving: a response head leaves with its body in one write, and nothing is lost, reordered or held back."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bench.procs import free_port
from web.serving import CoalescingHTTP, CoalescingTransport, EmbeddedServer

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording(asyncio.Transport):
    """A transport that keeps what it is asked to write, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_head_is_sent_with_the_body_that_follows() -> None:
    asyncio.run(_test_a_head_is_sent_with_the_body_that_follows())


async def _test_a_head_is_sent_with_the_body_that_follows() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(HEAD)
    assert raw.writes == []
    transport.write(b"{}")
    assert raw.writes == [HEAD + b"{}"]


def test_an_empty_body_releases_the_head() -> None:
    asyncio.run(_test_an_empty_body_releases_the_head())


async def _test_an_empty_body_releases_the_head() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    transport.write(b"")
    assert raw.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_a_head_alone_leaves_on_the_next_turn_of_the_loop() -> None:
    asyncio.run(_test_a_head_alone_leaves_on_the_next_turn_of_the_loop())


async def _test_a_head_alone_leaves_on_the_next_turn_of_the_loop() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert raw.writes == [HEAD]
    transport.write(b"{}")
    assert raw.writes == [HEAD, b"{}"]


def test_close_sends_a_held_head_first() -> None:
    asyncio.run(_test_close_sends_a_held_head_first())


async def _test_close_sends_a_held_head_first() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(HEAD)
    transport.close()
    assert raw.writes == [HEAD] and raw.closed
    assert transport.is_closing()


def test_other_writes_pass_straight_through() -> None:
    asyncio.run(_test_other_writes_pass_straight_through())


async def _test_other_writes_pass_straight_through() -> None:
    raw = Recording()
    transport = CoalescingTransport(raw)
    transport.write(b"5\r\nhello\r\n")
    transport.writelines([b"0\r\n", b"\r\n"])
    assert raw.writes == [b"5\r\nhello\r\n", b"0\r\n", b"\r\n"]


async def _slow_chunks() -> Any:
    for part in (b"one,", b"two,", b"three"):
        await asyncio.sleep(0.01)
        yield part


async def small(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def streamed(request: Request) -> StreamingResponse:
    return StreamingResponse(_slow_chunks(), media_type="text/plain")


async def empty(request: Request) -> Response:
    return Response(status_code=204)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    app = Starlette(routes=[Route("/small", small), Route("/streamed", streamed), Route("/empty", empty)])
    port = free_port()
    running = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    assert running.config.http is CoalescingHTTP
    thread = threading.Thread(target=lambda: asyncio.run(running.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    yield port
    running.should_exit = True
    thread.join(timeout=30)


def test_responses_over_a_real_socket_are_whole(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    for _ in range(3):  # keep-alive: one response after another on one connection
        conn.request("GET", "/small")
        small_response = conn.getresponse()
        assert (small_response.status, small_response.read()) == (200, b'{"ok":true}')
        conn.request("GET", "/streamed")
        streamed_response = conn.getresponse()
        assert streamed_response.getheader("transfer-encoding") == "chunked"
        assert streamed_response.read() == b"one,two,three"
        conn.request("GET", "/empty")
        empty_response = conn.getresponse()
        assert (empty_response.status, empty_response.read()) == (204, b"")
    conn.close()
