"""/attributes and /attributes/{attrId} (clauses 6.27, 6.28)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.federation import discovery as distributed
from broker.http import accepted_type
from models.errors import ResourceNotFound

router = APIRouter(prefix=API)


@router.get("/attributes")
async def list_attributes(request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Attributes (6.27.3.1): AttributeList, or Attribute[] with details=true."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).attributes(tenant, ctx, details=deps.flag(request, "details"))
    headers: dict[str, str] = {}
    if isinstance(body, dict):  # federation: the sources' too (5.7.11)
        body["attributeList"], headers = await distributed.names(
            request, tenant, value, ctx, path="/attributes", operation="retrieveAttrTypes", member="attributeList", local=body["attributeList"])
    else:
        body, headers = await distributed.details(
            request, tenant, value, ctx, path="/attributes", operation="retrieveAttrTypeDetails", key="attributeName", local=body)
    return deps.json_response(body, media=media, context=value, headers=headers or None)


@router.get("/attributes/{attr:path}")
async def attribute_info(attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Attribute Information (6.28.3.1): Attribute, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    missing: ResourceNotFound | None = None
    try:
        body: dict[str, Any] | None = await deps.discovery(request).attribute_info(tenant, attr, ctx)
    except ResourceNotFound as exc:
        body, missing = None, exc
    merged = await distributed.info(request, tenant, value, ctx, kind="attributes", name=attr, local=body)
    headers: dict[str, str] = {}
    if merged is not None:  # federation: the matching sources' answers too (5.7.11)
        body, headers = merged
    if body is None:
        raise missing or ResourceNotFound(f"{attr!r} is known neither here nor at the registered sources")
    return deps.json_response(body, media=media, context=value, headers=headers or None)
