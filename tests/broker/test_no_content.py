"""The PATCH handler's 204 (broker.api.entities.NoContent) is broker.http.no_content()'s (issue 16, patch17)."""

from __future__ import annotations

import asyncio
from typing import Any

from broker.api.entities import NoContent
from broker.http import no_content


def _sent(response: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("a 204 reads nothing")

    asyncio.run(response({"type": "http"}, receive, send))
    return messages


def test_no_content_sends_what_no_content_sends() -> None:
    assert _sent(NoContent()) == _sent(no_content())
    assert _sent(NoContent()) == [{"type": "http.response.start", "status": 204, "headers": []},
                                  {"type": "http.response.body", "body": b""}]


def test_each_no_content_has_its_own_headers() -> None:
    first, second = NoContent(), NoContent()
    first.headers["x-test"] = "1"  # a middleware adding a header to one answer leaves the next alone
    assert second.raw_headers == [] and dict(second.headers) == {}
    assert {k: v for k, v in vars(no_content()).items() if k != "_headers"} == {
        "status_code": 204, "background": None, "body": b"", "raw_headers": []}
