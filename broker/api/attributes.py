"""/attributes and /attributes/{attrId} (clauses 6.27, 6.28)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.federation import consumption
from broker.http import accepted_type

router = APIRouter(prefix=API)


@router.get("/attributes")
async def list_attributes(request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Attributes (6.27.3.1): AttributeList, or Attribute[] with details=true."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).attributes(tenant, ctx, details=deps.flag(request, "details"))
    headers: dict[str, str] = {}
    if isinstance(body, dict) and isinstance(body.get("attributeList"), list):  # federation: the sources' too
        body["attributeList"], headers = await consumption.discovery_list(
            request, tenant, value, path="/attributes", operation="retrieveAttrTypes", member="attributeList", local=body["attributeList"])
    return deps.json_response(body, media=media, context=value, headers=headers or None)


@router.get("/attributes/{attr:path}")
async def attribute_info(attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Attribute Information (6.28.3.1): Attribute, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).attribute_info(tenant, attr, ctx)
    return deps.json_response(body, media=media, context=value)
