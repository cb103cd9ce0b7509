"""/v2/types/{type}: 1TNENA, 1TNE1A and the delete of a type's history (QuantumLeap 1.0.0 src/reporter/)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.quantumleap.errors import not_found
from broker.quantumleap.params import Params, service_paths, write_tenant
from broker.quantumleap.render import attributes, column, global_view, raw_dates, utc_dates, views
from broker.quantumleap.routes.deps import read_query, service, shapes, value_suffix
from broker.quantumleap.series import Series
from broker.quantumleap.service import Selection

router = APIRouter()


def ordered(series: list[Series], ids: list[str] | None) -> list[Series]:
    """The ids given first, in their order, then the rest by id (query_1TNE1A.py:130-156)."""
    by_id = {s.entity_id: s for s in series}
    out = [by_id.pop(i) for i in (ids or []) if i in by_id]
    return out + [by_id[k] for k in sorted(by_id)]


@router.get("/types/{entity_type:path}/attrs/{attr:path}")
async def get_type_attr(request: Request, entity_type: str, attr: str) -> Response:
    """1TNE1A (query_1TNE1A.py): the entities of a type, one attribute; entityType and attrName as asked."""
    name, value_only = value_suffix(attr)
    q = await read_query(request)
    p = q.params
    svc = service(request)
    picks = await svc.select(q.tenant, q.paths, q.names, Selection(entity_type=entity_type, ids=q.ids, id_pattern=p.id_pattern),
                             p.geo, p.time_range())
    series = [s for s in await svc.series(q.tenant, picks, q.names, [name], p) if column(s, name) is not None]
    if not series:
        return shapes(request).nothing()
    if p.aggr_method and p.aggr_scope == "global":
        g = global_view(series, p)
        values = column(g, name) or []
        if value_only:
            return shapes(request).ok({"index": g.index, "values": values})
        return shapes(request).ok({"entityType": entity_type, "attrName": name, "index": g.index, "values": values})
    entries = []
    for s in ordered(views(series, p), q.ids):
        index = s.index
        if p.aggr_method and not p.aggr_period:
            index = raw_dates(p) if q.ids and s.entity_id in q.ids else []
        entries.append({"entityId": s.entity_id, "index": index, "values": column(s, name) or []})
    if value_only:
        return shapes(request).ok({"values": entries})
    return shapes(request).ok({"entityType": entity_type, "attrName": name, "entities": entries})


@router.get("/types/{entity_type:path}")
async def get_type(request: Request, entity_type: str) -> Response:
    """1TNENA (query_1TNENA.py): the entities of a type, their attributes."""
    entity_type, value_only = value_suffix(entity_type)
    q = await read_query(request)
    p = q.params
    attrs = q.attrs(request)
    svc = service(request)
    picks = await svc.select(q.tenant, q.paths, q.names, Selection(entity_type=entity_type, ids=q.ids, id_pattern=p.id_pattern),
                             p.geo, p.time_range())
    series = await svc.series(q.tenant, picks, q.names, attrs, p)
    if not series:
        return shapes(request).nothing()
    if p.aggr_method and p.aggr_scope == "global":
        g = global_view(series, p)
        if value_only:
            return shapes(request).ok({"index": g.index, "attributes": attributes(g)})
        return shapes(request).ok({"entityType": entity_type, "index": g.index, "attributes": attributes(g)})
    entries = []
    for s in sorted(views(series, p), key=lambda s: s.entity_id):
        index = utc_dates(p) if p.aggr_method and not p.aggr_period else s.index
        entries.append({"entityId": s.entity_id, "index": index, "attributes": attributes(s)})
    if value_only:
        return shapes(request).ok({"values": entries})
    return shapes(request).ok({"entityType": entity_type, "entities": entries})


@router.delete("/types/{entity_type:path}")
async def delete_type(request: Request, entity_type: str) -> Response:
    """Delete a type's history in the service path, or drop it whole with dropTable (delete.py:33-63)."""
    tenant, paths = write_tenant(request), service_paths(request)
    p = Params.parse(request.query_params)
    drop = (request.query_params.get("dropTable") or "false").lower() == "true"
    svc = service(request)
    names = await svc.names()
    if drop:
        if paths != ["/"]:
            return Response("dropTable requires the root fiware-servicepath: '/'", status_code=422, media_type="text/plain")
        picks = await svc.select(tenant, ["/"], names, Selection(entity_type=entity_type))
        await svc.delete(tenant, ["/"], picks, Params())
        return Response(status_code=204)  # dropping a table that is not there is no error either
    picks = await svc.select(tenant, paths, names, Selection(entity_type=entity_type))
    if not await svc.delete(tenant, paths, picks, p):
        raise not_found()
    return Response(status_code=204)
