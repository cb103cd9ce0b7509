"""/entityOperations/{create,upsert,update,delete,merge,query} (clauses 6.14-6.17, 6.23, 6.31)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.api.entities import query_response
from broker.api.query_body import check_query_body
from broker.federation import batch as batch_federation
from broker.http import JSON, JSON_LD, accepted_type, no_content, read_body
from broker.service.batch import BatchResult, Contexts, check_batch
from broker.service.queries import QuerySpec, Selector, View
from models.errors import BadRequestData, NgsiLdError
from models.normalize import TermMapper

router = APIRouter(prefix=f"{API}/entityOperations")


async def batch_body(request: Request, *, patch: bool = False) -> tuple[list[Any], Contexts]:
    """The entities of a batch and the @context of each (clauses 5.6.7-5.6.10, 6.3.5).

    With application/json every entity takes the Link header's @context and
    one that carries an "@context" member is refused; with application/ld+json
    every entity must carry its own. A refused entity, or one whose @context
    cannot be resolved, becomes that entity's error in a 207, the others go on.
    Each distinct @context is resolved once.
    """
    deps.check_params(request)
    incoming = await read_body(request, patch=patch, batch=True)
    body = check_batch(incoming.body)
    if incoming.content_type != JSON_LD:
        ctx = await deps.resolve(request, incoming.context)
        if not any(isinstance(item, dict) and "@context" in item for item in body):
            return body, ctx  # the common case: one context for all, nothing per entity
        refused = BadRequestData("an entity sent as application/json must not carry an @context; use a Link header")
        return body, [refused if isinstance(item, dict) and "@context" in item else ctx for item in body]
    resolved: dict[bytes, TermMapper | NgsiLdError] = {}
    contexts: list[TermMapper | NgsiLdError] = []
    for item in body:
        value = item.get("@context") if isinstance(item, dict) else None
        if value is None:
            contexts.append(BadRequestData("an entity sent as application/ld+json must carry an @context"))
            continue
        key = orjson.dumps(value)
        if key not in resolved:
            try:
                resolved[key] = await deps.resolve(request, value)
            except NgsiLdError as error:
                resolved[key] = error
        contexts.append(resolved[key])
    return body, contexts


def _multi_status(result: BatchResult) -> Response:
    body = {"success": result.success, "errors": batch_federation.error_entries(result)}
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


def _done(result: BatchResult) -> Response:
    """204 when every entity succeeded, 207 with the BatchOperationResult otherwise."""
    return _multi_status(result) if result.errors else no_content()


@router.post("/create")
async def batch_create(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Create (6.14.3.1): 201 with the created ids, 207, 400."""
    body, ctx = await batch_body(request)
    result = await batch_federation.distribute_batch(
        request, tenant, "createBatch", "/entityOperations/create", body, ctx,
        lambda items, c: deps.batch(request).create(tenant, items, c))
    if result.errors:
        return _multi_status(result)
    return Response(orjson.dumps(result.success), status_code=201, media_type=JSON)


@router.post("/upsert")
async def batch_upsert(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Upsert (6.15.3.1): 201 with created ids, 204 when all existed, 207, 400; options=replace|update."""
    opts = deps.options(request)
    if {"replace", "update"} <= opts:
        raise BadRequestData("options replace and update exclude each other")
    body, ctx = await batch_body(request)
    result = await batch_federation.distribute_batch(
        request, tenant, "upsertBatch", "/entityOperations/upsert", body, ctx,
        lambda items, c: deps.batch(request).upsert(tenant, items, c, update="update" in opts))
    if result.errors:
        return _multi_status(result)
    if result.created:
        return Response(orjson.dumps(list(dict.fromkeys(result.created))), status_code=201, media_type=JSON)
    return no_content()


@router.post("/update")
async def batch_update(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Update (6.16.3.1): 204, 207, 400; options=noOverwrite."""
    body, ctx = await batch_body(request)
    overwrite = "noOverwrite" not in deps.options(request)
    return _done(await batch_federation.distribute_batch(
        request, tenant, "updateBatch", "/entityOperations/update", body, ctx,
        lambda items, c: deps.batch(request).update(tenant, items, c, overwrite=overwrite)))


@router.post("/merge")
async def batch_merge(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Merge (6.31.3.1): 204, 207, 400."""
    body, ctx = await batch_body(request, patch=True)
    return _done(await batch_federation.distribute_batch(
        request, tenant, "mergeBatch", "/entityOperations/merge", body, ctx,
        lambda items, c: deps.batch(request).merge(tenant, items, c)))


@router.post("/delete")
async def batch_delete(request: Request, tenant: TenantDep = "") -> Response:
    """Batch Delete (6.17.3.1): 204, 207, 400; the body is an array of entity ids (no @context needed)."""
    deps.check_params(request)
    incoming = await read_body(request, batch=True)
    if not isinstance(incoming.body, list) or not all(isinstance(i, str) for i in incoming.body):
        return _done(await deps.batch(request).delete(tenant, incoming.body))
    return _done(await batch_federation.distribute_batch(
        request, tenant, "deleteBatch", "/entityOperations/delete", incoming.body, None,
        lambda items, c: deps.batch(request).delete(tenant, items), ids_only=True))


def _query_spec(body: Any) -> tuple[QuerySpec, dict[str, str]]:
    """A Query (clause 5.2.23) as a QuerySpec, plus the view parameters it carries."""
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData('the body must be a Query: a JSON object with "type": "Query"')
    check_query_body(body)
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
    for name in ("pick", "omit", "lang", "datasetId", "join", "containedBy"):
        if isinstance(body.get(name), str):
            view[name] = body[name]
        elif isinstance(body.get(name), list):
            view[name] = ",".join(str(v) for v in body[name])
    if body.get("joinLevel") is not None:
        view["joinLevel"] = str(body["joinLevel"])
    return spec, view


@router.post("/query")
async def batch_query(request: Request, tenant: TenantDep = "") -> Response:
    """Query Entities via POST (6.23.3.1): 200 with an array (or a GeoJSON FeatureCollection), 400."""
    media = accepted_type(request, geo=True)
    incoming, ctx = await deps.read_entity_body(request)
    spec, view_params = _query_spec(incoming.body)
    view = View.from_params({**dict(request.query_params), **view_params}, ctx, entity_maps=True)
    return await query_response(request, tenant, spec, view, ctx, incoming.context, media)
