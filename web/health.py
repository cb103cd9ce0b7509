"""`Health`: liveness and readiness answered in front of an app, the same way on every server.

    GET /health  200 {"status": "pass"} while the process serves requests (liveness:
                 restart the container when this fails)
    GET /ready   200 when every readiness check passes within its timeout, else 503 with
                 the failing checks (readiness: send no traffic meanwhile)

The body follows the IETF draft "Health Check Response Format for HTTP
APIs" (`application/health+json`, status pass/fail, `checks`). A check is
an async callable that raises (or returns a reason string) when its part
is not ready: the store answers, the device registry answers, the MQTT
client is connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

Check = Callable[[], Awaitable[str | None]]
MEDIA = b"application/health+json"


async def _run(check: Check, timeout: float) -> str | None:
    try:
        return await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure of a part means not ready
        return f"{type(exc).__name__}: {exc}"


async def readiness(checks: Mapping[str, Check], timeout: float = 3.0) -> tuple[bool, dict[str, object]]:
    """(ready, body): every check run concurrently."""
    names = list(checks)
    results = await asyncio.gather(*(_run(checks[n], timeout) for n in names))
    detail: dict[str, object] = {}
    for name, reason in zip(names, results):
        detail[name] = [{"status": "pass"} if reason is None else {"status": "fail", "output": reason}]
    ready = all(r is None for r in results)
    return ready, {"status": "pass" if ready else "fail", "checks": detail}


class Health:
    """/health and /ready for the app it wraps (`liveness=False` leaves /health to the app)."""

    def __init__(self, app: ASGIApp, *, checks: Mapping[str, Check] | Callable[[], Mapping[str, Check]],
                 liveness: bool = True, timeout: float = 3.0) -> None:
        self.app = app
        self.checks = checks
        self.liveness = liveness
        self.timeout = timeout

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # any other request gets the wrapped app's own coroutine: no frame of this layer (issue 16)
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == "/health" and self.liveness:
                return self._answer(send, 200, {"status": "pass"})
            if path == "/ready":
                return self._ready(send)
        return self.app(scope, receive, send)

    async def _ready(self, send: Send) -> None:
        checks = self.checks() if callable(self.checks) else self.checks
        ready, body = await readiness(checks, self.timeout)
        await self._answer(send, 200 if ready else 503, body)

    @staticmethod
    async def _answer(send: Send, status: int, body: dict[str, object]) -> None:
        raw = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", MEDIA), (b"content-length", str(len(raw)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": raw})
