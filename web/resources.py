"""`ResourcePaths`: one ASGI middleware for what every resource of our HTTP APIs answers alike.

- A trailing slash on a path names the same resource as the path without it
  (`POST /ngsi-ld/v1/entities/`, `DELETE /iot/services/?resource=...`), as
  Orion-LD and the FIWARE IoT agents accept and FIWARE's tutorials write.
  Starlette's own answer is a 307 redirect, which POST clients do not follow,
  and a `/{id}` route would otherwise see an empty id.
- `OPTIONS` on any resource answers 204 with the methods its routes allow in
  `Allow`, and `Accept-Patch` where PATCH is one of them (RFC 7231 4.3.7,
  RFC 5789 3.1); an unknown path falls through to the app's 404.
- A 405 carries `Allow` (RFC 7231 6.5.5, which NGSI-LD clause 6.3.2 mandates),
  whatever body the app's own error handler wrote.

The allowed methods are read from the app's routes (mounted sub-apps
included), so a new route needs nothing here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATCH_MEDIA_TYPES = "application/json, application/ld+json, application/merge-patch+json"
"""What PATCH bodies may be (NGSI-LD clause 6.3.4): the `Accept-Patch` of resources that allow PATCH."""

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _accepts(routes: Iterable[BaseRoute], scope: Scope) -> bool:
    """Whether some route takes the scope's path and method, descending into mounted apps."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Mount):
            if _accepts(route.routes, {**scope, **child}):
                return True
            continue
        return True
    return False


def _methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """The methods some route takes at the scope's path.

    Asked of each route through `matches`, the one routing interface every
    router keeps, rather than read from framework internals.
    """
    return {m for m in _ORDER if m != "OPTIONS" and _accepts(routes, {**scope, "method": m})}


def _allow(methods: set[str]) -> str:
    methods = methods | {"OPTIONS"}
    return ", ".join(m for m in _ORDER if m in methods)


async def _no_content(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class ResourcePaths:
    """Trailing slashes, OPTIONS and the `Allow` header of 405 for the app it wraps (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # no await before the wrapped app is called: its own coroutine is handed back, so this layer adds
        # no frame that every resume of the request walks (issue 16); only OPTIONS answers here
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        path: str = scope["path"]
        # only a literal slash is stripped: an id ending in an encoded %2F keeps it
        if len(path) > 1 and path.endswith("/") and raw.split(b"?", 1)[0].endswith(b"/"):
            stripped = path.rstrip("/") or "/"
            scope = {**scope, "path": stripped, "raw_path": raw.split(b"?", 1)[0].rstrip(b"/") or b"/"}
        if scope["method"] == "OPTIONS":
            methods = self._allowed(scope)
            if methods:
                headers = [(b"allow", _allow(methods).encode()), (b"content-length", b"0")]
                if "PATCH" in methods:
                    headers.append((b"accept-patch", PATCH_MEDIA_TYPES.encode()))
                return _no_content(send, headers)

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = self._allowed(scope)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", _allow(methods).encode()))
                message = {**message, "headers": headers}
            await send(message)

        return self.app(scope, receive, send_with_allow)

    def _allowed(self, scope: Scope) -> set[str]:
        app: Any = self.app
        # the innermost Starlette app below any other middleware holds the routes
        while not hasattr(app, "routes") and hasattr(app, "app"):
            app = app.app
        routes: Sequence[BaseRoute] = getattr(app, "routes", ())
        return _methods(routes, scope)
