"""/v2/entities: NTNE, 1T1ENA, 1T1E1A and the delete of one entity (QuantumLeap 1.0.0 src/reporter/)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.quantumleap.errors import not_found
from broker.quantumleap.params import Params, service_paths, write_tenant
from broker.quantumleap.render import attributes, column, views
from broker.quantumleap.routes.deps import read_query, service, shapes, value_suffix
from broker.quantumleap.series import iso
from broker.quantumleap.service import Selection

router = APIRouter()


@router.get("/entities")
async def list_entities(request: Request) -> Response:
    """NTNE (query_NTNE.py): every entity with history, its latest time index, newest first."""
    q = await read_query(request)
    svc = service(request)
    picks = await svc.select(q.tenant, q.paths, q.names,
                             Selection(entity_type=request.query_params.get("type"), id_pattern=q.params.id_pattern))
    found = await svc.latest(q.tenant, picks, q.params)
    if not found:
        return shapes(request).nothing()
    return shapes(request).ok([{"entityId": k.shown_id, "entityType": k.shown_type, "index": iso(t)} for k, t in found])


async def _one_entity(request: Request, entity_id: str, value_only: bool) -> Response:
    """1T1ENA (query_1T1ENA.py): one entity, its attributes by name."""
    q = await read_query(request)
    attrs = q.attrs(request)
    svc = service(request)
    picks = await svc.select(q.tenant, q.paths, q.names, Selection(entity_id=entity_id, entity_type=request.query_params.get("type")),
                             q.params.geo, q.params.time_range())
    shown = views(await svc.series(q.tenant, picks, q.names, attrs, q.params), q.params)
    if not shown:
        return shapes(request).nothing()
    s = shown[0]
    body = {"entityId": entity_id, "entityType": s.entity_type, "index": s.index, "attributes": attributes(s)}
    if value_only:
        body = {"index": s.index, "attributes": body["attributes"]}
    return shapes(request).ok(body)


@router.get("/entities/{entity_id}")
async def get_entity(request: Request, entity_id: str) -> Response:
    return await _one_entity(request, entity_id, False)


@router.get("/entities/{entity_id}/value")
async def get_entity_value(request: Request, entity_id: str) -> Response:
    return await _one_entity(request, entity_id, True)


@router.get("/entities/{entity_id}/attrs/{attr:path}")
async def get_entity_attr(request: Request, entity_id: str, attr: str) -> Response:
    """1T1E1A (query_1T1E1A.py): one entity, one attribute; attrName as asked."""
    name, value_only = value_suffix(attr)
    q = await read_query(request)
    svc = service(request)
    picks = await svc.select(q.tenant, q.paths, q.names, Selection(entity_id=entity_id, entity_type=request.query_params.get("type")),
                             q.params.geo, q.params.time_range())
    shown = views(await svc.series(q.tenant, picks, q.names, [name], q.params), q.params)
    values = column(shown[0], name) if shown else None
    if values is None:
        return shapes(request).nothing()
    s = shown[0]
    if value_only:
        return shapes(request).ok({"index": s.index, "values": values})
    return shapes(request).ok({"entityId": s.entity_id, "entityType": s.entity_type, "attrName": name,
                               "index": s.index, "values": values})


@router.delete("/entities/{entity_id}")
async def delete_entity(request: Request, entity_id: str) -> Response:
    """Delete an entity's history, or its rows in [fromDate, toDate] (delete.py:7-30; 204, 404, 409)."""
    tenant, paths = write_tenant(request), service_paths(request)
    p = Params.parse(request.query_params)
    svc = service(request)
    names = await svc.names()
    picks = await svc.select(tenant, paths, names, Selection(entity_id=entity_id, entity_type=request.query_params.get("type")))
    if not await svc.delete(tenant, paths, picks, p):
        raise not_found()  # a delete answers 404 on both lines
    return Response(status_code=204)
