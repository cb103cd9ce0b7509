"""RequestLimits hands the body it read on in the scope (web.request_limits.BODY), and FastRoutes' Request
answers body() from it (issue 16, patch17); the bytes are the request's, chunked or not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from web.request_limits import BODY, RequestLimits


def _run(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], bytes]:
    seen: dict[str, Any] = {}
    got: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        message = await receive()  # the replayed body is still there for an app that reads it
        got.append(message["body"])

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"nothing refused: {message}")

    scope = {"type": "http", "method": "PATCH", "path": "/x", "query_string": b"", "headers": headers}
    asyncio.run(RequestLimits(app, max_bytes=lambda: 1000)(scope, receive, send))
    return seen, got[0]


@pytest.mark.parametrize(("chunks", "headers"), [
    ([b'{"value": 1}'], [(b"content-length", b"12")]),
    ([b'{"val', b'ue": ', b"1}"], [(b"transfer-encoding", b"chunked")]),
])
def test_the_body_read_is_in_the_scope(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
    scope, replayed = _run(chunks, headers)
    assert scope[BODY] == replayed == b'{"value": 1}'


def test_no_body_no_key() -> None:
    scope, _ = _run([b""], [(b"content-length", b"0")])
    assert BODY not in scope
