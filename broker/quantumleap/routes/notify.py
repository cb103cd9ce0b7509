"""POST /v2/notify: NGSI-v2 and NGSI-LD notifications into history (reporter.py:150-205).

The body checks are connexion's, which QuantumLeap runs against
specification/quantumleap.yml before reporter.notify: a body that is not
declared JSON is 415, declared JSON but unreadable is 400, and the
Notification schema (`data`, entities with `id` and `type`) is 400.

The handler is served by web.fastroutes (no router, no dependency solver), and
does per request only what depends on the request (issue 16, notifyfast21):
the six headers it reads are found in one pass over the scope's raw headers
(no `Headers` object, one look-up each before), the body is parsed by orjson
(json.loads decides whatever orjson would read otherwise, see `parse`), and the
answer's bytes and headers are made once.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broker.http import link_url
from broker.quantumleap.errors import QLError
from broker.quantumleap.params import paths_of, tenant_of
from broker.quantumleap.routes.deps import service

router = APIRouter()

_READ = frozenset((b"content-type", b"ngsild-tenant", b"fiware-service", b"fiware-servicepath",
                   b"fiware-timeindex-attribute", b"link"))
# a run of 19 ASCII digits, where orjson may read a number otherwise than json.loads (see parse): found as
# `_RUN in raw.translate(_DIGITS)` (every digit made "0", every other byte "x"), 1.4 against 6.7 µs for
# re.search(rb"\d{19}") over a one-entity body, 79 against 919 µs over a 100-entity one
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x78 for i in range(256))
_RUN = b"0" * 19
_OK = b"Notification successfully processed"


def _is_json_type(content_type: str) -> bool:
    """connexion's is_json_mimetype: application/json or application/*+json."""
    main, _, rest = content_type.partition(";")[0].strip().lower().partition("/")
    return main == "application" and (rest == "json" or rest.endswith("+json"))


def parse(raw: bytes) -> Any:
    """The JSON value of a body, as json.loads reads it; ValueError (or RecursionError) when it does not.

    orjson reads what it accepts as json.loads does, but for integers past 64 bits (a float for
    orjson), so a body holding a run of 19 digits goes to json.loads; so does everything orjson
    refuses and json.loads may still take (a UTF-8 BOM, UTF-16, NaN and Infinity, a lone surrogate,
    deeper nesting) or refuse with its own error. orjson: 1 against 3.5 µs for a one-entity body.
    """
    if _RUN not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def read_headers(scope: Scope) -> dict[bytes, str]:
    """The headers /v2/notify reads, by lower-case name: the first of each, as Starlette's `Headers.get`."""
    found: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        if key in _READ and key not in found:
            found[key] = value.decode("latin-1")
    return found


def checked(raw: bytes, content_type: str) -> dict[str, Any]:
    """The notification body, checked as connexion checks it."""
    if raw.strip() and not _is_json_type(content_type):
        raise QLError(415, "Unsupported Media Type", f"Invalid Content-type ({content_type}), expected JSON data")
    try:
        body = parse(raw) if raw.strip() else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json.loads recurses, bad input too
        raise QLError(400, "Bad Request", "Request body is not valid JSON") from None
    if body is None:
        raise QLError(400, "Bad Request", "Discarding notification due to lack of request body. Lost in a redirect maybe?")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise QLError(400, "Bad Request", "'data' is a required property")
    for item in body["data"]:
        if not isinstance(item, dict) or "id" not in item or "type" not in item:
            raise QLError(400, "Bad Request", "Entity id and type are required in notifications")
    return body


async def read_notification(request: Request) -> dict[str, Any]:
    """The notification body of a request, checked as connexion checks it."""
    return checked(await request.body(), request.headers.get("content-type", ""))


class _Processed(Response):
    """The 200 answer, `Response("Notification successfully processed", media_type="text/plain")`, made once:
    the same status, headers and body bytes, its head a fresh list each time (send wrappers may add to it)."""

    def __init__(self) -> None:
        super().__init__(_OK, media_type="text/plain")
        self._head = tuple(self.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(self._head)})
        await send({"type": "http.response.body", "body": _OK})


_PROCESSED = _Processed()


@router.post("/notify")
async def notify(request: Request) -> Response:
    """Store the notified entities under the tenant and service path(s) of the request."""
    headers = read_headers(request.scope)
    body = checked(await request.body(), headers.get(b"content-type", ""))
    tenant = tenant_of(headers.get(b"ngsild-tenant") or headers.get(b"fiware-service"))
    paths = paths_of(headers.get(b"fiware-servicepath"))
    await service(request).notify(tenant, paths, body, link=link_url(headers.get(b"link")),
                                  time_index_attr=headers.get(b"fiware-timeindex-attribute"))
    return _PROCESSED
