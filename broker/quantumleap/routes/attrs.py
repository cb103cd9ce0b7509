"""/v2/attrs: NTNENA and NTNE1A, every entity having the attributes, grouped by type (QuantumLeap 1.0.0 src/reporter/)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.quantumleap.render import by_type, column, global_view, utc_dates, views
from broker.quantumleap.routes.deps import Query, read_query, service, shapes, value_suffix
from broker.quantumleap.series import Series
from broker.quantumleap.service import Selection

router = APIRouter()


async def _series(request: Request, q: Query, attrs: list[str] | None) -> list[Series]:
    svc = service(request)
    p = q.params
    picks = await svc.select(q.tenant, q.paths, q.names,
                             Selection(entity_type=request.query_params.get("type"), ids=q.ids, id_pattern=p.id_pattern),
                             p.geo, p.time_range())
    return await svc.series(q.tenant, picks, q.names, attrs, p)


def _types(series: list[Series], name: str, q: Query) -> list[dict[str, Any]]:
    """[{"entityType", "entities": [{"entityId", "index", "values"}]}] for one attribute (query_NTNE1A.py:94-140)."""
    p = q.params
    out: list[dict[str, Any]] = []
    for group in by_type([s for s in series if column(s, name) is not None]):
        if p.aggr_method and p.aggr_scope == "global":
            g = global_view(group, p)
            out.append({"entityType": group[0].entity_type, "index": g.index, "values": column(g, name) or []})
            continue
        entries = []
        for s in views(group, p):
            index = utc_dates(p) if p.aggr_method and not p.aggr_period else s.index
            entries.append({"entityId": s.entity_id, "index": index, "values": column(s, name) or []})
        out.append({"entityType": group[0].entity_type, "entities": entries})
    return out


async def _all_attrs(request: Request, value_only: bool) -> Response:
    """NTNENA (query_NTNENA.py): every attribute (or those of `attrs`), by name, each grouped by type."""
    q = await read_query(request)
    attrs = q.attrs(request)
    series = await _series(request, q, attrs)
    names = sorted({n for s in series for n in s.columns})
    if not names:
        return shapes(request).nothing()
    body = [{"attrName": n, "types": _types(series, n, q)} for n in names]
    return shapes(request).ok({"values": body} if value_only else {"attrs": body})


@router.get("/attrs")
async def get_attrs(request: Request) -> Response:
    return await _all_attrs(request, False)


@router.get("/attrs/value")
async def get_attrs_value(request: Request) -> Response:
    return await _all_attrs(request, True)


@router.get("/attrs/{attr:path}")
async def get_attr(request: Request, attr: str) -> Response:
    """NTNE1A (query_NTNE1A.py): every entity with the attribute, grouped by type."""
    name, value_only = value_suffix(attr)
    q = await read_query(request)
    types = _types(await _series(request, q, [name]), name, q)
    if not types:
        return shapes(request).nothing()
    return shapes(request).ok({"values": types} if value_only else {"attrName": name, "types": types})
