"""`TenantNames`: the tenant headers every API reads are checked once, before any store sees them.

A tenant is data everywhere in the platform (a column value bound as a
query parameter, never a file, schema or table name), so quotes, `../`,
shell syntax and unicode are names like any other. What a store cannot take
is length: PostgreSQL refuses an index row over 8,191 bytes (the
`(tenant, id)` key), which a 10,000-byte tenant was, as a 500 where SQLite
said 201. Both stores now behave alike: a tenant header over
MAX_TENANT_BYTES, or holding control characters, is a 400 in the API's
error shape. Orion-LD and QuantumLeap allow 50 characters; 255 bytes
keeps every name they accept and room for longer town names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_TENANT_BYTES = 255
HEADERS = (b"ngsild-tenant", b"fiware-service")

Render = Callable[[int, str, str], tuple[bytes, str]]


def problem(value: bytes, header: str) -> str | None:
    """Why a tenant header value is refused, None when it is acceptable."""
    if len(value) > MAX_TENANT_BYTES:
        return f"the {header} header is {len(value)} bytes long; a tenant name has at most {MAX_TENANT_BYTES}"
    if any(b < 0x20 or b == 0x7F for b in value):
        return f"the {header} header holds control characters"
    return None


class TenantNames:
    """Answers 400 (rendered by the API's own `render`) to a request whose tenant header is unacceptable."""

    def __init__(self, app: ASGIApp, *, render: Render) -> None:
        self.app = app
        self.render = render

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # the headers are checked before any await; an acceptable request gets the wrapped app's own
        # coroutine, so this layer adds no frame that every resume of the request walks (issue 16)
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                lowered = name.lower()
                if lowered in HEADERS:
                    reason = problem(value, lowered.decode())
                    if reason is not None:
                        return self._refuse(send, reason)
        return self.app(scope, receive, send)

    async def _refuse(self, send: Send, reason: str) -> None:
        body, media = self.render(400, "Bad Request", reason)
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", media.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
