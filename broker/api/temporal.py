"""/temporal/entities... and /temporal/entityOperations/query (clauses 6.18-6.22, 6.24): thin handlers over TemporalService.

    GET    /temporal/entities                                  200, 206 (Content-Range), 400
    POST   /temporal/entities                                  201 (new, Location), 204 (history added), 400
    GET    /temporal/entities/{id}                             200, 206, 404
    DELETE /temporal/entities/{id}                             204, 404
    POST   /temporal/entities/{id}/attrs                       204, 404, 400
    DELETE /temporal/entities/{id}/attrs/{attrId}              204, 404 (datasetId, deleteAll)
    PATCH  /temporal/entities/{id}/attrs/{attrId}/{instanceId} 204, 404, 400
    POST   /temporal/entityOperations/query                    200, 206, 400
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.http import accepted_type, no_content
from broker.query.projection import parse_attrs
from broker.service.queries import Page, QuerySpec, Selector
from broker.service.temporal import TemporalQuery, TemporalResult, TemporalService
from models.errors import BadRequestData

router = APIRouter(prefix=API)


def service(request: Request) -> TemporalService:
    """The temporal service of this app."""
    value: TemporalService = request.app.state.temporal
    return value


def _respond(request: Request, result: TemporalResult, context: Any, payload: Any) -> Response:
    headers: dict[str, str] = {}
    if result.total is not None:
        headers["NGSILD-Results-Count"] = str(result.total)
    if result.content_range is not None:
        headers["Content-Range"] = result.content_range
    status = 206 if result.content_range is not None else 200
    return deps.json_response(payload, status=status, media=accepted_type(request), context=context, headers=headers)


@router.get("/temporal/entities")
async def query_temporal(request: Request, tenant: TenantDep = "") -> Response:
    """Query Temporal Evolution of Entities (6.18.3.2)."""
    accepted_type(request)
    value, ctx = await deps.read_context(request)
    params = request.query_params
    cfg = deps.settings(request)
    page = Page.from_params(params, cfg.default_limit, cfg.max_limit)
    tq = TemporalQuery.from_params(params)
    result = await service(request).query(tenant, QuerySpec.from_params(params), ctx, tq, page)
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    return _respond(request, result, value, result.entities)


@router.post("/temporal/entityOperations/query")
async def query_temporal_post(request: Request, tenant: TenantDep = "") -> Response:
    """Query Temporal Evolution of Entities via POST (6.24.3.1): the Query in the body, paging in the URL."""
    accepted_type(request)
    incoming, ctx = await deps.read_entity_body(request)
    body = incoming.body
    if not isinstance(body, dict) or body.get("type", "Query") != "Query":
        raise BadRequestData("the body must be a Query object")
    selectors = []
    for item in body.get("entities") or []:
        if not isinstance(item, dict):
            raise BadRequestData("entities must hold EntitySelector objects")
        ids = item.get("id")
        selectors.append(Selector([ids] if isinstance(ids, str) else ids, item.get("idPattern"), item.get("type")))
    attrs = body.get("attrs")
    if isinstance(attrs, str):
        attrs = list(parse_attrs(attrs))
    geo = body.get("geoQ")
    spec = QuerySpec(
        selectors, attrs or None, body.get("q") or None, body.get("scopeQ") or None,
        (geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty")) if isinstance(geo, dict) else None,
        False,
    )
    params: dict[str, Any] = dict(body.get("temporalQ") or {})
    for name in ("aggrMethods", "aggrPeriodDuration", "lastN"):
        if name in body:
            params[name] = body[name]
    params.update({k: v for k, v in request.query_params.items() if k in ("options", "format", "aggrMethods", "aggrPeriodDuration", "lastN")})
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    result = await service(request).query(tenant, spec, ctx, TemporalQuery.from_params(params), page)
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    return _respond(request, result, incoming.context, result.entities)


@router.post("/temporal/entities")
async def create_temporal(request: Request, tenant: TenantDep = "") -> Response:
    """Create or Update Temporal Evolution of an Entity (6.18.3.1): 201 when new, 204 when history was added."""
    incoming, ctx = await deps.read_entity_body(request)
    created = await service(request).write(tenant, incoming.body, ctx)
    if created:
        entity_id = incoming.body["id"]
        return Response(status_code=201, headers={"Location": f"{API}/temporal/entities/{quote(entity_id, safe=':/')}"})
    return no_content()


@router.get("/temporal/entities/{entity_id}")
async def retrieve_temporal(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Temporal Evolution of an Entity (6.19.3.1)."""
    accepted_type(request)
    value, ctx = await deps.read_context(request)
    params = request.query_params
    attrs = list(parse_attrs(params["attrs"])) if params.get("attrs") else None
    result = await service(request).retrieve(tenant, entity_id, attrs, ctx, TemporalQuery.from_params(params))
    return _respond(request, result, value, result.entities[0])


@router.delete("/temporal/entities/{entity_id}")
async def delete_temporal(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Temporal Evolution of an Entity (6.19.3.2)."""
    deps.check_params(request)
    await service(request).delete_entity(tenant, entity_id)
    return no_content()


@router.post("/temporal/entities/{entity_id}/attrs")
async def add_temporal_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Add Attributes to Temporal Evolution of an Entity (6.20.3.1)."""
    incoming, ctx = await deps.read_entity_body(request)
    await service(request).write(tenant, incoming.body, ctx, entity_id=entity_id)
    return no_content()


@router.delete("/temporal/entities/{entity_id}/attrs/{attr}")
async def delete_temporal_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Attribute from Temporal Evolution of an Entity (6.21.3.1)."""
    _, ctx = await deps.read_context(request)
    params = request.query_params
    await service(request).delete_attr(tenant, entity_id, attr, ctx, params.get("datasetId"), deps.flag(request, "deleteAll"))
    return no_content()


@router.patch("/temporal/entities/{entity_id}/attrs/{attr}/{instance_id}")
async def patch_temporal_instance(entity_id: str, attr: str, instance_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Modify Attribute instance in Temporal Evolution of an Entity (6.22.3.1)."""
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    await service(request).patch_instance(tenant, entity_id, attr, instance_id, incoming.body, ctx)
    return no_content()
