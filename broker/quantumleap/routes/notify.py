"""POST /v2/notify: NGSI-v2 and NGSI-LD notifications into history (reporter.py:150-205).

The body checks are connexion's, which QuantumLeap runs against
specification/quantumleap.yml before reporter.notify: a body that is not
declared JSON is 415, declared JSON but unreadable is 400, and the
Notification schema (`data`, entities with `id` and `type`) is 400.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.http import link_context
from broker.quantumleap.errors import QLError
from broker.quantumleap.params import service_paths, write_tenant
from broker.quantumleap.routes.deps import service

router = APIRouter()


def _is_json_type(content_type: str) -> bool:
    """connexion's is_json_mimetype: application/json or application/*+json."""
    main, _, rest = content_type.partition(";")[0].strip().lower().partition("/")
    return main == "application" and (rest == "json" or rest.endswith("+json"))


async def read_notification(request: Request) -> dict[str, Any]:
    """The notification body, checked as connexion checks it."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if raw.strip() and not _is_json_type(content_type):
        raise QLError(415, "Unsupported Media Type", f"Invalid Content-type ({content_type}), expected JSON data")
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise QLError(400, "Bad Request", "Request body is not valid JSON") from None
    if body is None:
        raise QLError(400, "Bad Request", "Discarding notification due to lack of request body. Lost in a redirect maybe?")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise QLError(400, "Bad Request", "'data' is a required property")
    for item in body["data"]:
        if not isinstance(item, dict) or "id" not in item or "type" not in item:
            raise QLError(400, "Bad Request", "Entity id and type are required in notifications")
    return body


@router.post("/notify")
async def notify(request: Request) -> Response:
    """Store the notified entities under the tenant and service path(s) of the request."""
    body = await read_notification(request)
    await service(request).notify(write_tenant(request), service_paths(request), body, link=link_context(request),
                                  time_index_attr=request.headers.get("fiware-timeindex-attribute"))
    return Response("Notification successfully processed", media_type="text/plain")
