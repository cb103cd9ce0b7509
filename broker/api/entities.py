"""/entities, /entities/{id}, /entities/{id}/attrs[/{attr}] (clauses 6.4-6.7): thin handlers over EntityService."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.http import GEO_JSON, accepted_type, no_content
from broker.service.entities import to_enf
from broker.service.patch import UpdateResult
from broker.service.queries import Page, QuerySpec, View
from models.context import Context
from models.errors import BadRequestData
from models.validation import check_uri

router = APIRouter(prefix=API)


def update_result_response(result: UpdateResult, ctx: Context) -> Response:
    """204 when every attribute was updated, else 207 with the UpdateResult (clause 5.2.18)."""
    if not result.not_updated:
        return no_content()
    body = {
        "updated": list(dict.fromkeys(ctx.compact_iri(a) for a in result.updated)),
        "notUpdated": [
            {"attributeName": ctx.compact_iri(a), "reason": reason, **({"datasetId": ds} if ds else {})}
            for a, reason, ds in result.not_updated
        ],
    }
    return deps.json_response(body, status=207)


def to_feature(entity: dict[str, Any], geometry_property: str) -> dict[str, Any]:
    """An entity as a GeoJSON Feature (clause 4.5.16.2)."""
    geo = entity.get(geometry_property)
    if isinstance(geo, list):
        geo = geo[0] if geo else None
    if isinstance(geo, dict) and "value" in geo and "coordinates" not in geo:
        geo = geo["value"]
    properties = {k: v for k, v in entity.items() if k != "id"}
    return {"id": entity.get("id"), "type": "Feature", "geometry": geo, "properties": properties}


# ---------------------------------------------------------------------------- /entities


@router.post("/entities")
async def create_entity(request: Request, tenant: TenantDep = "") -> Response:
    """Create Entity (6.4.3.1): 201 + Location, 409 AlreadyExists, 400."""
    incoming, ctx = await deps.read_entity_body(request)
    enf = to_enf(incoming.body, ctx)
    await deps.entities(request).create(tenant, enf)
    return Response(status_code=201, headers={"Location": f"{API}/entities/{quote(enf['id'], safe=':/')}"})


@router.get("/entities")
async def query_entities(request: Request, tenant: TenantDep = "") -> Response:
    """Query Entities (6.4.3.2): 200 with an array (or a GeoJSON FeatureCollection)."""
    media = accepted_type(request, geo=True)
    value, ctx = await deps.read_context(request)
    params = request.query_params
    view = View.from_params(params, ctx)
    cfg = deps.settings(request)
    page = Page.from_params(params, cfg.default_limit, cfg.max_limit)
    spec = QuerySpec.from_params(params)
    if spec.q is None and params.get("q") == "":
        raise BadRequestData("q must not be empty")
    result = await deps.queries(request).query(tenant, spec, ctx, page)
    if not result.entities:
        await deps.entities(request).check_tenant(tenant)
    headers = {"NGSILD-Results-Count": str(result.total)} if result.total is not None else None
    payload: Any = [view.render(e, ctx) for e in result.entities]
    if media == GEO_JSON:
        gp = params.get("geometryProperty", "location")
        payload = {"type": "FeatureCollection", "features": [to_feature(e, gp) for e in payload]}
    return deps.json_response(payload, media=media, context=value, headers=headers)


@router.delete("/entities")
async def purge_entities(request: Request, tenant: TenantDep = "") -> Response:
    """Purge Entities (6.4.3.3): 204."""
    value, ctx = await deps.read_context(request)
    await deps.entities(request).check_tenant(tenant)
    await deps.queries(request).purge(tenant, QuerySpec.from_params(request.query_params), ctx)
    return no_content()


# ---------------------------------------------------------------------------- /entities/{id}


@router.get("/entities/{entity_id}")
async def retrieve_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Entity (6.5.3.1): 200, 404, 400."""
    media = accepted_type(request, geo=True)
    check_uri(entity_id, "entity id")
    value, ctx = await deps.read_context(request)
    view = View.from_params(request.query_params, ctx)
    stored = await deps.entities(request).get(tenant, entity_id)
    entity = view.render(stored, ctx)
    if media == GEO_JSON:
        entity = to_feature(entity, request.query_params.get("geometryProperty", "location"))
    return deps.json_response(entity, media=media, context=value)


@router.delete("/entities/{entity_id}")
async def delete_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Entity (6.5.3.2): 204, 404."""
    check_uri(entity_id, "entity id")
    await deps.entities(request).delete(tenant, entity_id)
    return no_content()


@router.put("/entities/{entity_id}")
async def replace_entity(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Replace Entity (6.5.3.3): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)
    body = incoming.body
    if isinstance(body, dict) and "id" not in body:
        body = {**body, "id": entity_id}
    await deps.entities(request).replace(tenant, entity_id, to_enf(body, ctx))
    return no_content()


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
    await deps.entities(request).merge(
        tenant, entity_id, fragment, keep_type=bool(opts & {"keyValues", "simplified"}),
        lang=request.query_params.get("lang"), observed_at=observed_at,
    )
    return no_content()


# ---------------------------------------------------------------------------- attributes


@router.post("/entities/{entity_id}/attrs")
async def append_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Append Entity Attributes (6.6.3.1): 204, 207 with noOverwrite conflicts, 404."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)
    fragment = to_enf(incoming.body, ctx, fragment=True)
    overwrite = "noOverwrite" not in deps.options(request)
    result = await deps.entities(request).append_attrs(tenant, entity_id, fragment, overwrite=overwrite)
    return update_result_response(result, ctx)


@router.patch("/entities/{entity_id}/attrs")
async def update_attrs(entity_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update Entity Attributes (6.6.3.2): 204, 207, 404; NGSI-LD Null deletes."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    fragment = to_enf(incoming.body, ctx, allow_null=True, fragment=True)
    result = await deps.entities(request).update_attrs(tenant, entity_id, fragment)
    return update_result_response(result, ctx)


@router.patch("/entities/{entity_id}/attrs/{attr}")
async def patch_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Partial Attribute Update (6.7.3.1): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    dataset_id = request.query_params.get("datasetId")
    await deps.entities(request).patch_attr(tenant, entity_id, attr, incoming.body, ctx, dataset_id=dataset_id)
    return no_content()


@router.put("/entities/{entity_id}/attrs/{attr}")
async def replace_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Replace Attribute (6.7.3.3): 204, 404, 400."""
    check_uri(entity_id, "entity id")
    incoming, ctx = await deps.read_entity_body(request)
    await deps.entities(request).replace_attr(tenant, entity_id, attr, incoming.body, ctx)
    return no_content()


@router.delete("/entities/{entity_id}/attrs/{attr}")
async def delete_attr(entity_id: str, attr: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Attribute (6.7.3.2): 204, 404; datasetId and deleteAll parameters."""
    check_uri(entity_id, "entity id")
    _, ctx = await deps.read_context(request)
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")
    await deps.entities(request).delete_attr(
        tenant, entity_id, attr, ctx, dataset_id=dataset_id, delete_all=deps.flag(request, "deleteAll")
    )
    return no_content()
