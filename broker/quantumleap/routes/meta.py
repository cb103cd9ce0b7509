"""GET /v2 (the resource list, api.py), /version (version.py) and /health (health.py) of QuantumLeap 1.0.0."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.quantumleap.routes.deps import service
from broker.quantumleap.shapes import json_response

QL_VERSION = "1.0.0"

# src/reporter/api.py:1-9, word for word (its subscriptions_url names a resource 1.0.0 does not serve)
RESOURCES = {
    "notify_url": "/v2/notify",
    "subscriptions_url": "/v2/subscriptions",
    "entities_url": "/v2/entities",
    "types_url": "/v2/types",
    "attributes_url": "/v2/attrs",
}

router = APIRouter()  # under the API prefix
root = APIRouter()  # at the server root, when the API has a port of its own


@router.get("/")
async def list_of_api() -> Response:
    """The resource list (GET /v2)."""
    return json_response(RESOURCES)


@root.get("/version")
async def version() -> Response:
    return json_response({"version": QL_VERSION})


@root.get("/health")
async def health(request: Request) -> Response:
    """pass once history is open (503 before)."""
    service(request).broker()
    return Response(b'{"status": "pass"}', media_type="application/health+json")
