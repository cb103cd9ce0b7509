"""/entityOperations/{create,upsert,update,delete,merge,query} (clauses 6.14-6.17, 6.23, 6.31)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.http import GEO_JSON, JSON, accepted_type, no_content, read_body
from broker.service.batch import BatchResult
from broker.service.queries import Page, QuerySpec, Selector, View
from models.errors import BadRequestData

router = APIRouter(prefix=f"{API}/entityOperations")


def _multi_status(result: BatchResult) -> Response:
    return Response(orjson.dumps(result.to_json()), status_code=207, media_type=JSON)


def _done(result: BatchResult) -> Response:
    """204 when every entity succeeded, 207 with the BatchOperationResult otherwise."""
    return _multi_status(result) if result.errors else no_content()


@router.post("/create")
async def batch_create(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Create (6.14.3.1): 201 with the created ids, 207, 400."""
    incoming, ctx = await deps.read_entity_body(request)
    result = await deps.batch(request).create(tenant, incoming.body, ctx)
    if result.errors:
        return _multi_status(result)
    return Response(orjson.dumps(result.success), status_code=201, media_type=JSON)


@router.post("/upsert")
async def batch_upsert(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Upsert (6.15.3.1): 201 with created ids, 204 when all existed, 207, 400; options=replace|update."""
    opts = deps.options(request)
    if {"replace", "update"} <= opts:
        raise BadRequestData("options replace and update exclude each other")
    incoming, ctx = await deps.read_entity_body(request)
    result = await deps.batch(request).upsert(tenant, incoming.body, ctx, update="update" in opts)
    if result.errors:
        return _multi_status(result)
    if result.created:
        return Response(orjson.dumps(list(dict.fromkeys(result.created))), status_code=201, media_type=JSON)
    return no_content()


@router.post("/update")
async def batch_update(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Update (6.16.3.1): 204, 207, 400; options=noOverwrite."""
    incoming, ctx = await deps.read_entity_body(request)
    overwrite = "noOverwrite" not in deps.options(request)
    return _done(await deps.batch(request).update(tenant, incoming.body, ctx, overwrite=overwrite))


@router.post("/merge")
async def batch_merge(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Merge (6.31.3.1): 204, 207, 400."""
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    return _done(await deps.batch(request).merge(tenant, incoming.body, ctx))


@router.post("/delete")
async def batch_delete(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Delete (6.17.3.1): 204, 207, 400; the body is an array of entity ids."""
    incoming = await read_body(request)
    return _done(await deps.batch(request).delete(tenant, incoming.body))


def _query_spec(body: Any) -> tuple[QuerySpec, dict[str, str]]:
    """A Query (clause 5.2.23) as a QuerySpec, plus the view parameters it carries."""
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData('the body must be a Query: a JSON object with "type": "Query"')
    selectors = []
    for item in body.get("entities") or []:
        if not isinstance(item, dict):
            raise BadRequestData("each entities item must be an EntitySelector object")
        ids = item.get("id")
        types = item.get("type")
        if types is not None and not isinstance(types, str):
            raise BadRequestData("EntitySelector type must be a string")
        selectors.append(Selector([ids] if isinstance(ids, str) else ids, item.get("idPattern"), types))
    geo = None
    if body.get("geoQ") is not None:
        g = body["geoQ"]
        if not isinstance(g, dict):
            raise BadRequestData("geoQ must be an object")
        coords = g.get("coordinates")
        geo = (g.get("georel"), g.get("geometry"), orjson.dumps(coords).decode() if isinstance(coords, list) else coords,
               g.get("geoproperty"))
    attrs = body.get("attrs")
    if attrs is not None and (not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs)):
        raise BadRequestData("attrs must be an array of attribute names")
    spec = QuerySpec(selectors, attrs or None, body.get("q"), body.get("scopeQ"), geo, bool(body.get("local")))
    view: dict[str, str] = {}
    if attrs:
        view["attrs"] = ",".join(attrs)
    for name in ("pick", "omit", "lang"):
        if isinstance(body.get(name), str):
            view[name] = body[name]
        elif isinstance(body.get(name), list):
            view[name] = ",".join(body[name])
    return spec, view


@router.post("/query")
async def batch_query(request: Request, tenant: TenantDep = "") -> Response:
    """Query Entities via POST (6.23.3.1): 200 with an array, 400."""
    media = accepted_type(request)
    incoming, ctx = await deps.read_entity_body(request)
    spec, view_params = _query_spec(incoming.body)
    params = {**dict(request.query_params), **view_params}
    view = View.from_params(params, ctx)
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    result = await deps.queries(request).query(tenant, spec, ctx, page)
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    headers = {"NGSILD-Results-Count": str(result.total)} if result.total is not None else None
    payload = [view.render(e, ctx) for e in result.entities]
    return deps.json_response(payload, media=media if media != GEO_JSON else JSON, context=incoming.context,
                              headers=headers)
