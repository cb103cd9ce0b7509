"""/temporal/entities... and /temporal/entityOperations/query (clauses 6.18-6.22, 6.24): thin handlers over TemporalService.

    GET    /temporal/entities                                   200, 206 (Content-Range), 400
    POST   /temporal/entities                                   201 (new, Location), 204 (history added), 400
    GET    /temporal/entities/{id}                              200, 206, 400, 404
    DELETE /temporal/entities/{id}                              204, 400, 404
    POST   /temporal/entities/{id}/attrs                        204, 400, 404
    DELETE /temporal/entities/{id}/attrs/{attrId}               204, 400, 404 (datasetId, deleteAll)
    PATCH  /temporal/entities/{id}/attrs/{attrId}/{instanceId}  204, 400, 404
    DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId}  204, 400, 404
    POST   /temporal/entityOperations/query                     200, 206, 400

An empty entity id, attribute name or instanceId (`/temporal/entities//attrs`)
is BadRequestData, as clauses 5.6.13-5.6.16 ask, not a 404 of an unknown
path: the app's 404 handler answers it for every resource (broker.app).
Every handler first refuses URL parameters its operation does not take
(broker.api.params, clause 6.3.20).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.api.pagination import add_links, page_links
from broker.api.query_body import check_query_body
from broker.federation import entitymaps, provision
from broker.federation import temporal as distributed
from broker.http import accepted_type, json_response, no_content
from broker.query.projection import parse_attrs
from broker.service.queries import Page, QuerySpec, Selector
from broker.service.temporal import TemporalResult, TemporalService
from broker.state import broker_state
from broker.temporal.query import TemporalQuery, check_order_by
from models.errors import BadRequestData, ResourceNotFound
from models.validation import check_uri

router = APIRouter(prefix=API)
ENTITY = "/temporal/entities/{entity_id}"


def service(request: Request) -> TemporalService:
    """The temporal service of this app."""
    return broker_state(request).temporal


def _respond(request: Request, result: TemporalResult, context: Any, payload: Any, links: str | None = None) -> Response:
    headers: dict[str, str] = {}
    if result.total is not None:
        headers["NGSILD-Results-Count"] = str(result.total)
    if result.content_range is not None:
        headers["Content-Range"] = result.content_range
    status = 206 if result.content_range is not None else 200
    response = json_response(payload, status=status, media=accepted_type(request), context=context, headers=headers)
    return add_links(response, links)


async def _query(request: Request, tenant: str, spec: QuerySpec, params: dict[str, Any], context: Any, ctx: Any,
                 body: dict[str, Any] | None = None) -> Response:
    media = accepted_type(request)
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    descending = check_order_by(params.get("orderBy"))
    tq = TemporalQuery.from_params(params, attrs_given=bool(spec.attrs))
    given = body or {}
    map_params: dict[str, Any] = {k: given[k] for k in ("entityMap", "entityMapLifetime") if k in given}
    map_params.update(request.query_params)
    make_map, used = await entitymaps.asked_for(request, tenant, map_params)
    if make_map or used is not None:
        return await _mapped_query(request, tenant, spec, ctx, tq, page, descending, context, body, used,
                                   entitymaps.lifetime_of(map_params))
    # counted always: the total also says whether there is a next page
    result = await service(request).query(tenant, spec, ctx, tq, Page(page.limit, page.offset, True),
                                          descending=bool(descending))
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    total = result.total or 0
    warnings: dict[str, str] = {}
    if not spec.local:  # federation: the registered sources' history too (5.7.4.4)
        result.entities, warnings = await distributed.query(request, tenant, ctx, context, result.entities, body)
        if descending is not None:  # orderBy=id: the sources' entities sorted in
            result.entities.sort(key=lambda e: str(e.get("id")), reverse=descending)
    if not page.count:
        result.total = None
    response = _respond(request, result, context, result.entities, page_links(request, page, total, media))
    response.headers.update(warnings)
    return response


async def _mapped_query(request: Request, tenant: str, spec: QuerySpec, ctx: Any, tq: TemporalQuery, page: Page,
                        descending: bool | None, context: Any, body: dict[str, Any] | None,
                        used: dict[str, Any] | None, lifetime: Any) -> Response:
    """A temporal query that makes an EntityMap (5.14.5) or is answered from one (5.7.4.4, NGSILD-EntityMap header).

    Every candidate (up to max_limit here and at each source) is fetched once; a new map lists them (entity id ->
    "@none" and/or the registrations that answered it, linkedMaps: the sources' own maps); a used map keeps only
    the entities it lists. The page (offset, limit) is cut from that set in id order (orderBy=id;desc: reversed);
    count is its size."""
    cfg = deps.settings(request)
    result = await service(request).query(tenant, spec, ctx, tq, Page(cfg.max_limit, 0, False),
                                          descending=bool(descending))
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    local_ids = [str(e.get("id")) for e in result.entities]
    found = distributed.EntityMapParts(limit=cfg.max_limit) if used is None else None
    merged: list[dict[str, Any]] = result.entities
    warnings: dict[str, str] = {}
    if not spec.local:  # federation: the registered sources' history too (5.7.4.4, 5.14.5.4)
        merged, warnings = await distributed.query(request, tenant, ctx, context, result.entities, body, found, used)
    if used is None:
        assert found is not None
        made = await entitymaps.maps(request).create(
            tenant, entitymaps.build(local_ids, found.sources), dict(sorted(found.linked.items())),
            lifetime)
        map_id = made["id"]
    else:
        listed = used["entityMap"]
        merged = [e for e in merged if e.get("id") in listed]
        map_id = used["id"]
    merged.sort(key=lambda e: str(e.get("id")), reverse=bool(descending))  # the map's order: a stable set of pages
    total = len(merged)
    shown = TemporalResult(merged[page.offset:page.offset + page.limit], total if page.count else None)
    response = _respond(request, shown, context, shown.entities,
                        page_links(request, page, total, accepted_type(request)))
    response.headers.update(warnings)
    response.headers[entitymaps.HEADER] = entitymaps.location(map_id)
    return response


@router.get("/temporal/entities")
async def query_temporal(request: Request, tenant: TenantDep = "") -> Response:
    """Query Temporal Evolution of Entities (6.18.3.2)."""
    deps.check_params(request)
    accepted_type(request)
    value, ctx = await deps.read_context(request)
    params = dict(request.query_params)
    return await _query(request, tenant, QuerySpec.from_params(request.query_params), params, value, ctx)


@router.post("/temporal/entityOperations/query")
async def query_temporal_post(request: Request, tenant: TenantDep = "") -> Response:
    """Query Temporal Evolution of Entities via POST (6.24.3.1): the Query in the body, paging in the URL."""
    deps.check_params(request)
    accepted_type(request)
    incoming, ctx = await deps.read_entity_body(request)
    body = incoming.body
    if not isinstance(body, dict) or body.get("type", "Query") != "Query":
        raise BadRequestData("the body must be a Query object")
    check_query_body(body, temporal=True)
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
    local = body.get("local") is True or request.query_params.get("local", "false").lower() == "true"
    spec = QuerySpec(
        selectors, attrs or None, body.get("q") or None, body.get("scopeQ") or None,
        (geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty")) if isinstance(geo, dict) else None,
        local,
    )
    params: dict[str, Any] = dict(body.get("temporalQ") or {})
    for name in ("aggrMethods", "aggrPeriodDuration", "lastN", "pick", "omit", "datasetId", "orderBy"):
        if name in body:
            params[name] = body[name]
    params.update({k: v for k, v in request.query_params.items()
                   if k in ("options", "format", "aggrMethods", "aggrPeriodDuration", "lastN", "pick", "omit",
                            "datasetId", "orderBy")})
    return await _query(request, tenant, spec, params, incoming.context, ctx, body)


@router.post("/temporal/entities")
async def create_temporal(request: Request, tenant: TenantDep = "") -> Response:
    """Create or Update Temporal Evolution of an Entity (6.18.3.1): 201 when new, 204 when history was added."""
    deps.check_params(request)
    incoming, ctx = await deps.read_entity_body(request)
    body = incoming.body
    if not isinstance(body, dict):
        raise BadRequestData("a temporal entity must be a JSON object")
    entity_id = check_uri(body.get("id"), "entity id")
    location = {"Location": f"{API}/temporal/entities/{quote(entity_id, safe=':/')}"}

    async def local(part: Any) -> Response:
        if await service(request).write(tenant, part, ctx):
            return Response(status_code=201, headers=location)
        return no_content()

    # federation: the registered sources' share goes to them (5.6.11.4, by registration mode as for entities)
    response = await provision.distribute(
        request, tenant, "upsertTemporal", entity_id=entity_id, types=_types_of(body, ctx), attrs=_attrs_of(body, ctx),
        method="POST", path="/temporal/entities", body=body, context_value=incoming.context, ctx=ctx, local=local, history=True)
    if response.status_code == 201:
        response.headers.update(location)
    return response


def _types_of(body: dict[str, Any], ctx: Any) -> list[str]:
    types = body.get("type")
    return [ctx.expand_term(t) for t in (types if isinstance(types, list) else [types]) if isinstance(t, str)]


def _attrs_of(body: Any, ctx: Any) -> list[str]:
    """The attribute IRIs of a temporal entity or fragment."""
    core = ("id", "type", "scope", "@context", "createdAt", "modifiedAt")
    return [ctx.expand_term(k) for k in body if k not in core] if isinstance(body, dict) else []


@router.get(ENTITY)
async def retrieve_temporal(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Temporal Evolution of an Entity (6.19.3.1)."""
    deps.check_params(request)
    accepted_type(request)
    value, ctx = await deps.read_context(request)
    params = request.query_params
    attrs = list(parse_attrs(params["attrs"])) if params.get("attrs") else None
    tq = TemporalQuery.from_params(params, attrs_given=attrs is not None)
    missing: ResourceNotFound | None = None
    try:
        result: TemporalResult | None = await service(request).retrieve(tenant, entity_id, attrs, ctx, tq)
    except ResourceNotFound as exc:
        result, missing = None, exc
    # federation: the sources registered for retrieveTemporal are asked too (5.7.3.4)
    merged = await distributed.retrieve(request, tenant, entity_id, ctx, value,
                                        result.entities[0] if result is not None else None)
    if merged is None:  # no registration matches: the local answer stands
        if missing is not None:
            raise missing
        assert result is not None
        return _respond(request, result, value, result.entities[0])
    entity, warnings = merged
    if entity is None:
        raise ResourceNotFound(f"no temporal entity {entity_id} here nor at the registered sources")
    response = _respond(request, result or TemporalResult([entity]), value, entity)
    response.headers.update(warnings)
    return response


@router.delete(ENTITY)
async def delete_temporal(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Temporal Evolution of an Entity (6.19.3.2)."""
    deps.check_params(request)
    check_uri(entity_id, "entity id")
    value, ctx = await deps.read_context(request)

    async def local(_: Any) -> Response:
        await service(request).delete_entity(tenant, entity_id)
        return no_content()

    return await provision.distribute(
        request, tenant, "deleteTemporal", entity_id=entity_id, types=[], attrs=[], method="DELETE",
        path=f"/temporal/entities/{entity_id}", body=None, context_value=value, ctx=ctx, local=local, local_whole=True,
        history=True)


@router.post(ENTITY + "/attrs")
async def add_temporal_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Add Attributes to Temporal Evolution of an Entity (6.20.3.1)."""
    deps.check_params(request)
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)

    async def local(part: Any) -> Response:
        await service(request).write(tenant, part, ctx, entity_id=entity_id)
        return no_content()

    return await provision.distribute(
        request, tenant, "appendAttrsTemporal", entity_id=entity_id, types=[], attrs=_attrs_of(incoming.body, ctx),
        method="POST", path=f"/temporal/entities/{entity_id}/attrs", body=incoming.body,
        context_value=incoming.context, ctx=ctx, local=local, history=True)


@router.delete(ENTITY + "/attrs/{attr}")
async def delete_temporal_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Attribute from Temporal Evolution of an Entity (6.21.3.1)."""
    deps.check_params(request)
    check_uri(entity_id, "entity id")
    value, ctx = await deps.read_context(request)
    params = request.query_params

    async def local(_: Any) -> Response:
        await service(request).delete_attr(tenant, entity_id, attr, ctx, params.get("datasetId"),
                                           deps.flag(request, "deleteAll"))
        return no_content()

    return await provision.distribute(
        request, tenant, "deleteAttrsTemporal", entity_id=entity_id, types=[], attrs=[ctx.expand_term(attr)],
        method="DELETE", path=f"/temporal/entities/{entity_id}/attrs/{attr}", body=None, context_value=value,
        ctx=ctx, local=local, single_attr=True, history=True)


@router.patch(ENTITY + "/attrs/{attr}/{instance_id}")
async def patch_temporal_instance(entity_id: str, attr: str, instance_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Modify Attribute instance in Temporal Evolution of an Entity (6.22.3.1)."""
    deps.check_params(request)
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    await service(request).patch_instance(tenant, entity_id, attr, instance_id, incoming.body, ctx)
    return no_content()


@router.delete(ENTITY + "/attrs/{attr}/{instance_id}")
async def delete_temporal_instance(entity_id: str, attr: str, instance_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Attribute instance from Temporal Evolution of an Entity (6.22.3.2)."""
    deps.check_params(request)
    _, ctx = await deps.read_context(request)
    await service(request).delete_instance(tenant, entity_id, attr, instance_id, ctx)
    return no_content()
