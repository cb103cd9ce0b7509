"""GET /version and /ngsi-ld/v1/info/sourceIdentity: who this broker is and what it implements."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api.deps import API
from broker.http import json_response
from broker.state import broker_state
from models.times import utc_iso

router = APIRouter()

NAME = "metropole-broker"
VERSION = "0.1.0"
SPEC_VERSION = "1.9.1"
FEATURES = (
    "entities", "attributes", "batch", "merge", "purge", "query-language", "scope-query", "geo-query",
    "projection", "concise", "keyValues", "sysAttrs", "lang", "multi-attribute", "multi-tenancy",
    "jsonldContexts", "types", "geojson",
)


def _info() -> dict[str, object]:
    return {"name": NAME, "version": VERSION, "ngsildVersion": SPEC_VERSION, "features": list(FEATURES)}


def _operations(request: Request) -> dict[str, object]:
    """What is switched on in this process (auth, TLS, metrics, access log: broker/ops.py)."""
    from broker.ops import operations

    return operations(request.app.state)


@router.get("/version")
async def version(request: Request) -> Response:
    """Name, version, NGSI-LD version, implemented features and the operational ones switched on."""
    return json_response({**_info(), "operations": _operations(request)}, headers={})


def uptime(seconds: float) -> str:
    """An ISO 8601 duration, as contextSourceUptime wants it: `P2DT3H4M5.25S`."""
    days, rest = divmod(max(0.0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"P{int(days)}D" if days else "P"
    return text + f"T{int(hours)}H{int(minutes)}M{secs:.3f}".rstrip("0").rstrip(".") + "S"


@router.get(f"{API}/info/sourceIdentity")
async def source_identity(request: Request) -> Response:
    """The ContextSourceIdentity of this broker (clauses 5.2.40, 5.15, 6.33)."""
    state = broker_state(request)
    now = utc_iso()
    body = {"id": state.identity, "type": "ContextSourceIdentity", "contextSourceAlias": NAME,
            "contextSourceUptime": uptime(time.time() - state.started_at), "contextSourceTimeAt": now,
            **_info(), "contextSourceExtras": {"operations": _operations(request)}}
    return json_response(body)


def new_identity() -> str:
    """A URN identifying this broker instance."""
    return f"urn:ngsi-ld:ContextSource:{uuid.uuid4()}"
