"""/types and /types/{type} (clauses 6.25, 6.26)."""

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


@router.get("/types")
async def list_types(request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Available Entity Types (6.25.3.1): EntityTypeList, or EntityType[] with details=true."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    body = await deps.discovery(request).types(tenant, ctx, details=deps.flag(request, "details"))
    headers: dict[str, str] = {}
    if isinstance(body, dict):  # federation: the sources' too (5.7.11)
        body["typeList"], headers = await distributed.names(
            request, tenant, value, ctx, path="/types", operation="retrieveEntityTypes", member="typeList", local=body["typeList"])
    else:
        body, headers = await distributed.details(
            request, tenant, value, ctx, path="/types", operation="retrieveEntityTypeDetails", key="typeName", local=body)
    return deps.json_response(body, media=media, context=value, headers=headers or None)


@router.get("/types/{type_name:path}")
async def type_info(type_name: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Entity Type Information (6.26.3.1): EntityTypeInfo, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    missing: ResourceNotFound | None = None
    try:
        body: dict[str, Any] | None = await deps.discovery(request).type_info(tenant, type_name, ctx)
    except ResourceNotFound as exc:
        body, missing = None, exc
    merged = await distributed.info(request, tenant, value, ctx, kind="types", name=type_name, local=body)
    headers: dict[str, str] = {}
    if merged is not None:  # federation: the matching sources' answers too (5.7.11)
        body, headers = merged
    if body is None:
        raise missing or ResourceNotFound(f"{type_name!r} is known neither here nor at the registered sources")
    return deps.json_response(body, media=media, context=value, headers=headers or None)
