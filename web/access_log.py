"""`AccessLog`: one line per request on the `metropole.access` logger, when METROPOLE_ACCESS_LOG is on.

    127.0.0.1 "GET /ngsi-ld/v1/entities/urn:ngsi-ld:X:1" 200 0.8ms tenant=aix principal=aix-portal

Off by default: at a few thousand requests a second a line each is a cost
(bench/ops_bench.py measures it) and a volume operators choose. The query
string is left out, since it may carry an API key (`?k=`) or a token; the
tenant is what the request named (NGSILD-Tenant, else Fiware-Service), the
principal the caller authentication found.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("metropole.access")


def enabled_from_env() -> bool:
    """METROPOLE_ACCESS_LOG: on/true/1 turns the access log on."""
    return os.environ.get("METROPOLE_ACCESS_LOG", "off").strip().lower() in {"1", "true", "yes", "on"}


def _tenant(headers: list[tuple[bytes, bytes]]) -> str:
    found = {k.lower(): v for k, v in headers if k.lower() in (b"ngsild-tenant", b"fiware-service")}
    value = found.get(b"ngsild-tenant", found.get(b"fiware-service"))
    return value.decode("latin-1") if value is not None else "-"


class AccessLog:
    """Logs each HTTP request of the app it wraps once its response has started."""

    def __init__(self, app: ASGIApp, *, enabled: bool | None = None) -> None:
        self.app = app
        self.enabled = enabled_from_env() if enabled is None else enabled

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # `enabled` is read on every request (it may be switched while serving); off, the wrapped app's own
        # coroutine is handed back, so this layer adds no frame that every resume of the request walks (issue 16)
        if scope["type"] != "http" or not self.enabled:
            return self.app(scope, receive, send)
        return self._logged(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = [500]
        scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            principal = scope["state"].get("principal")
            log.info('%s "%s %s" %d %.1fms tenant=%s principal=%s', client[0] if client else "-", scope["method"],
                     scope["path"], status[0], (time.perf_counter() - started) * 1000, _tenant(scope.get("headers", [])),
                     principal.name if principal is not None else "-")
