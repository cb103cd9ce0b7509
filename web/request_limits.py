"""An ASGI middleware that refuses oversized bodies and NUL characters in URLs before any handler runs.

A body past `max_bytes()` is a 413 ("Request Entity too large", NGSI-LD clause 6.3.2) as soon as its
Content-Length says so, or as soon as the bytes received pass the bound (chunked bodies): it is never
read whole. Below the bound the body is read here, once, and handed on unchanged. A URL whose path or
query holds a NUL character (`%00`) is a 400: PostgreSQL cannot compare or store one (issue 17).
Errors are rendered by `render(status, detail)` (ProblemDetails by default; each API passes its shape).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Render = Callable[[int, str], tuple[bytes, str]]
BODY = "metropole.body"
"""The scope key holding the whole body read here (bytes): web.fastroutes gives it to the handler's Request."""
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def problem_details(status: int, detail: str) -> tuple[bytes, str]:
    """An NGSI-LD ProblemDetails body (BadRequestData for 400, the HTTP binding's 413 otherwise)."""
    kind, title = ("BadRequestData", "Bad request data") if status == 400 else ("InvalidRequest", "Request too large")
    body = {"type": ERRORS + kind, "title": title, "status": status, "detail": detail}
    return orjson.dumps(body), "application/json"


class RequestLimits:
    """Wraps an ASGI app: 413 for a body past `max_bytes()`, 400 for a NUL in the path or query."""

    def __init__(self, app: Any, max_bytes: Callable[[], int], render: Render = problem_details) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def _refuse(self, send: Any, status: int, detail: str) -> None:
        body, media = self.render(status, detail)
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # everything up to reading a body is decided before any await: a request without a body (or refused
        # at once) gets the wrapped app's own coroutine (or the refusal's), no frame of this layer (issue 16)
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            return self._refuse(send, 400, "the URL holds a NUL character (%00)")
        limit = self.max_bytes()
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > limit:
                return self._refuse(send, 413, f"the body is {length} bytes; at most {limit} are accepted")
            if length == 0:
                return self.app(scope, receive, send)  # type: ignore[no-any-return]
        elif b"transfer-encoding" not in headers:
            return self.app(scope, receive, send)  # type: ignore[no-any-return]  # no body
        return self._with_body(scope, receive, send, limit)

    async def _with_body(self, scope: Any, receive: Any, send: Any, limit: int) -> None:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._refuse(send, 413, f"the body is more than {limit} bytes; at most {limit} are accepted")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope[BODY] = body
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
