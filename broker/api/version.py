"""GET /version and /ngsi-ld/v1/info/sourceIdentity: who this broker is and what it implements."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api.deps import API
from broker.http import json_response

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


@router.get("/version")
async def version() -> Response:
    """Name, version, NGSI-LD version and implemented features."""
    return json_response(_info(), headers={})


@router.get(f"{API}/info/sourceIdentity")
async def source_identity(request: Request) -> Response:
    """A ContextSourceIdentity-like description (clause 5.15 of later versions; a cheap subset here)."""
    identity = request.app.state.identity
    body = {"id": identity, "type": "ContextSourceIdentity", "contextSourceAlias": NAME,
            "contextSourceUptime": None, **_info()}
    return json_response(body)


def new_identity() -> str:
    """A URN identifying this broker instance."""
    return f"urn:ngsi-ld:ContextSource:{uuid.uuid4()}"
