"""/types and /types/{type} (clauses 6.25, 6.26)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.federation import consumption
from broker.http import accepted_type

router = APIRouter(prefix=API)


@router.get("/types")
async def list_types(request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Entity Types (6.25.3.1): EntityTypeList, or EntityType[] with details=true."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).types(tenant, ctx, details=deps.flag(request, "details"))
    headers: dict[str, str] = {}
    if isinstance(body, dict) and isinstance(body.get("typeList"), list):  # federation: the sources' too
        body["typeList"], headers = await consumption.discovery_list(
            request, tenant, value, path="/types", operation="retrieveEntityTypes", member="typeList", local=body["typeList"])
    return deps.json_response(body, media=media, context=value, headers=headers or None)


@router.get("/types/{type_name:path}")
async def type_info(type_name: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Entity Type Information (6.26.3.1): EntityTypeInfo, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).type_info(tenant, type_name, ctx)
    return deps.json_response(body, media=media, context=value)
