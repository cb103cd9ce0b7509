"""/entities, /entities/{id}, /entities/{id}/attrs[/{attr}] (clauses 6.4-6.7): thin handlers over EntityService."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps, rendered
from broker.api.deps import API, TenantDep
from broker.federation import consumption, entitymaps, provision
from broker.http import GEO_JSON, JSON, accepted_type, no_content
from broker.query.projection import parse_attrs
from broker.service.entities import to_enf
from broker.service.patch import UpdateResult
from broker.service.queries import Page, QuerySpec, View
from broker.store.base import QueryPage, StoredEntity
from models.context import Context
from models.errors import BadRequestData, ResourceNotFound
from models.validation import check_uri

router = APIRouter(prefix=API)


def update_result_response(result: UpdateResult) -> Response:
    """204 when every attribute was updated, else 207 with the UpdateResult (clause 5.2.18).

    A 207 body carries no @context, so attributes are named by their full IRIs (clause 6.3.6).
    """
    if not result.not_updated:
        return no_content()
    body = {
        "updated": list(dict.fromkeys(result.updated)),
        "notUpdated": [
            {"attributeName": a, "reason": reason, **({"datasetId": ds} if ds else {})}
            for a, reason, ds in result.not_updated
        ],
    }
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


def to_feature(entity: dict[str, Any], geometry_property: str) -> dict[str, Any]:
    """An entity as a GeoJSON Feature (clause 4.5.16.2)."""
    geo = entity.get(geometry_property)
    if isinstance(geo, list):
        geo = geo[0] if geo else None
    if isinstance(geo, dict) and "value" in geo and "coordinates" not in geo:
        geo = geo["value"]
    properties = {k: v for k, v in entity.items() if k != "id"}
    return {"id": entity.get("id"), "type": "Feature", "geometry": geo, "properties": properties}


def attribute_body(body: Any) -> Any:
    """The attribute of a one-attribute request: an application/ld+json body's "@context" is not a sub-attribute."""
    if isinstance(body, dict) and "@context" in body:
        return {k: v for k, v in body.items() if k != "@context"}
    return body


def geometry_property(request: Request, media: str) -> str:
    """The GeoProperty a GeoJSON response takes its geometry from (clause 6.3.15); BadRequestData without GeoJSON."""
    name = request.query_params.get("geometryProperty")
    if name is None:
        return "location"
    if media != GEO_JSON:
        raise BadRequestData("geometryProperty is only used with Accept: application/geo+json (clause 5.7.1.4)")
    return name


def geo_response(request: Request, payload: Any, context: Any, headers: dict[str, str] | None = None) -> Response:
    """A GeoJSON response: the @context in the body, or in a Link header with `Prefer: body=json` (clause 6.3.6)."""
    prefer = {p.strip().lower() for p in request.headers.get("prefer", "").split(",")}
    return deps.json_response(payload, media=GEO_JSON, context=context, headers=headers,
                              body_context="body=json" not in prefer)


# ---------------------------------------------------------------------------- /entities


@router.post("/entities")
async def create_entity(request: Request, tenant: TenantDep = "") -> Response:
    """Create Entity (6.4.3.1): 201 + Location, 409 AlreadyExists, 400."""
    incoming, ctx = await deps.read_entity_body(request)
    enf = to_enf(incoming.body, ctx)
    location = {"Location": f"{API}/entities/{quote(enf['id'], safe=':/')}"}

    async def local(body: Any) -> Response:
        await deps.entities(request).create(tenant, to_enf(body, ctx) if body is not incoming.body else enf)
        return Response(status_code=201, headers=location)

    response = await provision.distribute(
        request, tenant, "createEntity", entity_id=enf["id"], types=list(enf["type"]), attrs=_attrs(enf),
        method="POST", path="/entities", body=incoming.body, context_value=incoming.context, ctx=ctx,
        local=local)
    if response.status_code == 201:
        response.headers.update(location)
    return response


async def query_response(request: Request, tenant: str, spec: QuerySpec, view: View, ctx: Context,
                         context_value: Any, media: str) -> Response:
    """Run a Query Entities (GET /entities or POST /entityOperations/query) and answer it (clause 5.7.2)."""
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    gp = geometry_property(request, media)
    if spec.attrs is None:
        spec.attrs = view.picked_attributes()  # clause 5.7.2.4: an entity matches when it holds a picked attribute
    queries = deps.queries(request)
    # EntityMaps (clause 5.14.4): entityMap=true makes one, an NGSILD-EntityMap header names one to answer from
    make_map, used = await _entity_map_of(request, tenant)
    # federation: the first offset+limit of every source, merged, then cut to the page (clause 4.3.6.7)
    fetch = cfg.max_limit if make_map or used is not None else page.offset + page.limit
    distributed = None
    if not spec.local:
        distributed = await consumption.query(request, tenant, ctx, context_value, fetch,
                                              params=consumption.params_of(spec, request))
    map_header: dict[str, str] = {}
    if make_map or used is not None:
        result, map_header = await _mapped_page(request, tenant, spec, ctx, page, fetch, distributed, used)
    elif distributed is not None:
        wide = Page(page.offset + page.limit, 0, page.count)
        result = await queries.query(tenant, spec, ctx, wide)
        entities, total = consumption.merged_page(result.entities, distributed, page.offset, page.limit, result.total)
        result = QueryPage(entities, total)
    else:
        result = await queries.query(tenant, spec, ctx, page)
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    headers = {"NGSILD-Results-Count": str(result.total)} if result.total is not None else None
    if distributed is not None and distributed.warnings:
        headers = {**(headers or {}), **distributed.header()}
    if map_header:
        headers = {**(headers or {}), **map_header}
    linked = await queries.linked(tenant, result.entities, view) if view.join else None
    payload: Any = view.render_entities(result.entities, ctx, linked)
    if media == GEO_JSON:
        return geo_response(request, {"type": "FeatureCollection", "features": [to_feature(e, gp) for e in payload]},
                            context_value, headers)
    return deps.json_response(payload, media=media, context=context_value, headers=headers)


async def _entity_map_of(request: Request, tenant: str) -> tuple[bool, dict[str, Any] | None]:
    """(entityMap=true, the EntityMap an NGSILD-EntityMap request header names); 404 for an unknown one."""
    make_map = entitymaps.wanted(request.query_params)
    header = request.headers.get(entitymaps.HEADER)
    used = None
    if header and not make_map:
        used = await entitymaps.maps(request).get(tenant, entitymaps.id_of_header(header))
    return make_map, used


async def _mapped_page(request: Request, tenant: str, spec: QuerySpec, ctx: Context, page: Page, fetch: int,
                       distributed: consumption.Distributed | None,
                       used: dict[str, Any] | None) -> tuple[QueryPage, dict[str, str]]:
    """The page of a query that makes an EntityMap (its ids: every match here and at the sources, up to
    `fetch` each) or answers from one (the matches the map lists)."""
    lifetime = entitymaps.lifetime_of(request.query_params) if used is None else None
    result = await deps.queries(request).query(tenant, spec, ctx, Page(fetch, 0, False))
    gathered = distributed if distributed is not None else consumption.Distributed()
    merged, _ = consumption.merged_page(result.entities, gathered, 0, 2 * fetch, None)
    if used is not None:
        listed = used["entityMap"]
        merged = [e for e in merged if e.doc["id"] in listed]
        map_id = used["id"]
    else:
        assert lifetime is not None
        ids = entitymaps.build([e.doc["id"] for e in result.entities], gathered.sources)
        made = await entitymaps.maps(request).create(tenant, ids, dict(sorted(gathered.linked.items())), lifetime)
        map_id = made["id"]
    total = len(merged) if page.count else None
    page_entities = merged[page.offset:page.offset + page.limit]
    return QueryPage(page_entities, total), {entitymaps.HEADER: entitymaps.location(map_id)}


@router.get("/entities")
async def query_entities(request: Request, tenant: TenantDep = "") -> Response:
    """Query Entities (6.4.3.2): 200 with an array (or a GeoJSON FeatureCollection)."""
    media = accepted_type(request, geo=True)
    value, ctx = await deps.read_context(request)
    params = request.query_params
    view = View.from_params(params, ctx, entity_maps=True)
    spec = QuerySpec.from_params(params)
    if spec.q is None and params.get("q") == "":
        raise BadRequestData("q must not be empty")
    return await query_response(request, tenant, spec, view, ctx, value, media)


@router.delete("/entities")
async def purge_entities(request: Request, tenant: TenantDep = "") -> Response:
    """Purge Entities (6.4.3.3): 204; keep/drop purge attributes only."""
    value, ctx = await deps.read_context(request)
    params = request.query_params
    keep = list(parse_attrs(params["keep"])) if "keep" in params else None
    drop = list(parse_attrs(params["drop"])) if "drop" in params else None
    spec = QuerySpec.from_params(params)

    async def local() -> None:
        await deps.entities(request).check_tenant(tenant)
        await deps.queries(request).purge(tenant, spec, ctx, keep=keep, drop=drop)

    # federation: the sources registered for purgeEntity purge too (clauses 4.3.6, 5.6.21)
    return await provision.distribute_purge(request, tenant, context_value=value, ctx=ctx, local=local)


# ---------------------------------------------------------------------------- /entities/{id}


@router.get("/entities/{entity_id}")
async def retrieve_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Entity (6.5.3.1): 200, 404, 400.

    A 200 answer is kept as bytes until the entity changes (broker.api.rendered) and sent again to a
    request of the same variant and @context, unless the tenant has context source registrations.
    """
    scope = request.scope
    state = request.app.state
    cache = rendered.cache_of(state, deps.entities(request).store)
    variant = rendered.variant_of(scope["headers"], scope["query_string"]) if cache is not None else None
    resolved: tuple[Any, Context] | None = None
    if variant is not None and cache is not None:
        entry = cache.get(tenant, entity_id, variant)
        if entry is not None and not await _has_registrations(request, tenant):
            ctx = await deps.resolve(request, entry.context_value)  # counts the context's hit, as below
            if ctx is entry.ctx:
                return rendered.CachedResponse(entry)
            resolved = entry.context_value, ctx  # the same Link, another Context: render again with it
    media = accepted_type(request, geo=True)
    check_uri(entity_id, "entity id")
    if resolved is None:
        value, ctx = await deps.read_context(request)
    else:
        deps.check_params(request)  # passed when the entry was kept: the query string is part of its variant
        value, ctx = resolved
    # a plain dict (the last value of a repeated name, as QueryParams.get): a Starlette mapping's get of an
    # absent name raises and catches a KeyError inside, and a GET asks for about fifteen absent names
    params: dict[str, str] = dict(request.query_params) if scope["query_string"] else {}
    view = View.from_params(params, ctx, entity_maps=True)
    make_map, used = await entitymaps.asked_for(request, tenant, params)  # 5.7.1.4
    gp = geometry_property(request, media)
    headers: dict[str, str] = {}
    generation = cache.generation() if cache is not None else 0  # before the read: see rendered.keep
    try:
        found: StoredEntity | None = await deps.entities(request).get(tenant, entity_id, params.get("type"), ctx)
    except ResourceNotFound:
        found = None
    held_here = found is not None
    # federation: the matching registrations' sources are asked too (clauses 4.3.6, 6.3.17)
    distributed = await consumption.retrieve(request, tenant, entity_id, ctx, value, found.doc if found else None)
    if distributed is not None:
        headers = distributed.header()
        doc = distributed.entities.get(entity_id)
        if doc is not None:
            found = StoredEntity(doc, found.created_at if found else "", found.modified_at if found else "")
    if found is None:
        raise await deps.entities(request).not_found(tenant, entity_id)
    if used is not None:  # 6.5.3.1: the location of the EntityMap used is returned
        headers[entitymaps.HEADER] = entitymaps.location(used["id"])
    elif make_map:  # 5.7.1.4: the entity id with "@none" (held here) and the registrations that answered it
        made = await entitymaps.maps(request).create(
            tenant, entitymaps.build([entity_id] if held_here else [], distributed.sources if distributed else {}),
            dict(sorted(distributed.linked.items())) if distributed else {},
            entitymaps.lifetime_of(params))
        headers[entitymaps.HEADER] = entitymaps.location(made["id"])
    stored = found
    if view.shows_nothing(stored, ctx.expand_term):
        raise ResourceNotFound(f"entity {entity_id} has none of the attributes asked for", instance=entity_id)
    linked = await deps.queries(request).linked(tenant, [stored], view) if view.join else None
    entity = view.render_entity(stored, ctx, linked)
    if media == GEO_JSON:
        response = geo_response(request, to_feature(entity, gp) if isinstance(entity, dict) else
                                {"type": "FeatureCollection", "features": [to_feature(e, gp) for e in entity]}, value,
                                headers or None)
    else:
        response = deps.json_response(entity, media=media, context=value, headers=headers or None)
    if (cache is not None and variant is not None and distributed is None and not make_map and used is None
            and view.join is None and not await _has_registrations(request, tenant)):
        cache.keep(tenant, entity_id, variant, rendered.Entry(ctx, value, response.status_code,
                                                              tuple(response.raw_headers), bytes(response.body)),
                   generation)
    return response


async def _has_registrations(request: Request, tenant: str) -> bool:
    """Whether the tenant has a context source registration (then Retrieve Entity may forward: nothing is kept)."""
    fwd = consumption.app_forwarder(request)
    return fwd is not None and bool(await fwd.registrations.active(tenant))


@router.delete("/entities/{entity_id}")
async def delete_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Entity (6.5.3.2): 204, 404."""
    deps.check_params(request)
    check_uri(entity_id, "entity id")
    value, ctx = await deps.read_context(request)

    async def local(_: Any) -> Response:
        await deps.entities(request).delete(tenant, entity_id)
        return no_content()

    return await provision.distribute(
        request, tenant, "deleteEntity", entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=[], method="DELETE", path=f"/entities/{entity_id}", body=None, context_value=value, ctx=ctx,
        local=local, local_whole=True)


@router.put("/entities/{entity_id}")
async def replace_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Replace Entity (6.5.3.3): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)
    body = incoming.body
    if "id" not in body:
        body = {**body, "id": entity_id}
    enf = to_enf(body, ctx)

    async def local(part: Any) -> Response:
        await deps.entities(request).replace(tenant, entity_id, to_enf(part, ctx))
        return no_content()

    return await provision.distribute(
        request, tenant, "replaceEntity", entity_id=entity_id, types=list(enf["type"]), attrs=_attrs(enf),
        method="PUT", path=f"/entities/{entity_id}", body=body, context_value=incoming.context, ctx=ctx,
        local=local, local_whole=True)


@router.patch("/entities/{entity_id}")
async def merge_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Merge Entity (6.5.3.4): 204, 404, 400; options=keyValues keeps attribute types, lang, observedAt."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    fragment = to_enf(incoming.body, ctx, allow_null=True, fragment=True)
    opts = deps.options(request)
    observed_at = request.query_params.get("observedAt")
    if observed_at is not None:
        from models.validation import check_datetime

        check_datetime(observed_at, "observedAt")

    async def local(part: Any) -> Response:
        frag = fragment if part is incoming.body else to_enf(part, ctx, allow_null=True, fragment=True)
        await deps.entities(request).merge(
            tenant, entity_id, frag, keep_type=bool(opts & {"keyValues", "simplified"}),
            lang=request.query_params.get("lang"), observed_at=observed_at,
        )
        return no_content()

    return await provision.distribute(
        request, tenant, "mergeEntity", entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=_attrs(fragment), method="PATCH", path=f"/entities/{entity_id}", body=incoming.body,
        context_value=incoming.context, ctx=ctx, local=local)


# ---------------------------------------------------------------------------- attributes


@router.post("/entities/{entity_id}/attrs")
async def append_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Append Entity Attributes (6.6.3.1): 204, 207 with noOverwrite conflicts, 404."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)
    fragment = to_enf(incoming.body, ctx, fragment=True)
    overwrite = "noOverwrite" not in deps.options(request)

    async def local(part: Any) -> Response:
        frag = fragment if part is incoming.body else to_enf(part, ctx, fragment=True)
        return update_result_response(
            await deps.entities(request).append_attrs(tenant, entity_id, frag, overwrite=overwrite))

    return await provision.distribute(
        request, tenant, "appendAttrs", entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=_attrs(fragment), method="POST", path=f"/entities/{entity_id}/attrs", body=incoming.body,
        context_value=incoming.context, ctx=ctx, local=local)


@router.patch("/entities/{entity_id}/attrs")
async def update_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update Entity Attributes (6.6.3.2): 204, 207, 404; NGSI-LD Null deletes."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    fragment = to_enf(incoming.body, ctx, allow_null=True, fragment=True)

    async def local(part: Any) -> Response:
        frag = fragment if part is incoming.body else to_enf(part, ctx, allow_null=True, fragment=True)
        return update_result_response(await deps.entities(request).update_attrs(tenant, entity_id, frag))

    return await provision.distribute(
        request, tenant, "updateEntity", entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=_attrs(fragment), method="PATCH", path=f"/entities/{entity_id}/attrs", body=incoming.body,
        context_value=incoming.context, ctx=ctx, local=local)


class NoContent(Response):
    """The 204 of `broker.http.no_content()` (no headers at all), made without Starlette's header plumbing.

    no_content() builds a Response, then reads its `headers` (a MutableHeaders view) to drop a
    Content-Length a 204 never gets: about 1.5 % of a one-attribute PATCH in the handler's thread
    (issue 16, patch17). Each request gets its own object and header list, as before.
    """

    def __init__(self) -> None:  # Response.__init__ not called: these are every attribute it would set
        self.status_code = 204
        self.background = None
        self.body = b""
        self.raw_headers = []


@router.patch("/entities/{entity_id}/attrs/{attr}")
async def patch_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Partial Attribute Update (6.7.3.1): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    # without a query string there is no datasetId, and no QueryParams to parse (issue 16, patch17)
    dataset_id = request.query_params.get("datasetId") if request.scope.get("query_string") else None

    async def local(_: Any) -> Response:
        await deps.entities(request).patch_attr(tenant, entity_id, attr, attribute_body(incoming.body), ctx,
                                                dataset_id=dataset_id)
        return NoContent()

    # A tenant without registrations (the usual case): provision.distribute would plan nothing and
    # run `local`; going there directly saves the plan and its second look at the registrations (issue 16).
    # (forwarder() reads `local` from the query string; without one it is the app's forwarder, found
    # without parsing an empty query string: 4 % of the handler thread's samples, issue 16, patch17)
    fwd = consumption.forwarder(request) if request.scope.get("query_string") else consumption.app_forwarder(request)
    if fwd is None or not await fwd.registrations.active(tenant):
        return await local(None)
    return await _one_attr(request, tenant, "updateAttrs", entity_id, attr, "PATCH", incoming, ctx, local)


@router.put("/entities/{entity_id}/attrs/{attr}")
async def replace_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Replace Attribute (6.7.3.3): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)

    async def local(_: Any) -> Response:
        await deps.entities(request).replace_attr(tenant, entity_id, attr, attribute_body(incoming.body), ctx)
        return no_content()

    return await _one_attr(request, tenant, "replaceAttrs", entity_id, attr, "PUT", incoming, ctx, local)


@router.delete("/entities/{entity_id}/attrs/{attr}")
async def delete_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Attribute (6.7.3.2): 204, 404; datasetId and deleteAll parameters."""
    check_uri(entity_id, "entity id")
    value, ctx = await deps.read_context(request)
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")

    async def local(_: Any) -> Response:
        await deps.entities(request).delete_attr(
            tenant, entity_id, attr, ctx, dataset_id=dataset_id, delete_all=deps.flag(request, "deleteAll")
        )
        return no_content()

    return await provision.distribute(
        request, tenant, "deleteAttrs", entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=[ctx.expand_term(attr)], method="DELETE", path=f"/entities/{entity_id}/attrs/{attr}", body=None,
        context_value=value, ctx=ctx, local=local)


# ---------------------------------------------------------------------------- federation helpers


def _attrs(enf: dict[str, Any]) -> list[str]:
    """The attribute IRIs of an ENF document or fragment."""
    return [k for k in enf if k not in ("id", "type", "scope", "@context", "createdAt", "modifiedAt")]


async def _types(request: Request, tenant: str, entity_id: str, ctx: Context) -> list[str]:
    """The entity's type IRIs: the `type` parameter, else the local entity's, else none (any registration).

    They only choose registrations (provision.distribute -> Forwarder.plan), so the local entity is read
    only when the tenant has a registration: without one (the usual case) a PATCH of one attribute
    costs one store call, not two (issue 16).
    """
    text = request.query_params.get("type")
    if text:
        return [ctx.expand_term(t) for t in text.split(",") if t]
    fwd = consumption.forwarder(request)
    if fwd is None or not await fwd.registrations.active(tenant):
        return []
    stored = await deps.entities(request).store.get(tenant, entity_id)
    return list(stored.doc.get("type", [])) if stored is not None else []


async def _one_attr(request: Request, tenant: str, operation: str, entity_id: str, attr: str, method: str,
                    incoming: Any, ctx: Context, local: Any) -> Response:
    """A one-attribute operation (PATCH or PUT /entities/{id}/attrs/{attr}) here and at the sources."""
    return await provision.distribute(
        request, tenant, operation, entity_id=entity_id, types=await _types(request, tenant, entity_id, ctx),
        attrs=[ctx.expand_term(attr)], method=method, path=f"/entities/{entity_id}/attrs/{attr}",
        body=attribute_body(incoming.body), context_value=incoming.context, ctx=ctx, local=local, single_attr=True)
