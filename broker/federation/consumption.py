"""Distributed Retrieve Entity and Query Entities (clauses 5.7.1, 5.7.2 with 4.3.6, 6.3.17).

The local answer and the answers of the matching registrations are merged
per entity id (forward.merge_entity). A source that fails or does not
answer within the timeout is named in an NGSILD-Warning header
(Table 6.3.17-1); what the others and the local store hold is still
answered. Auxiliary sources are merged last and only add what is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request

from broker.federation import matching
from broker.federation.forward import Forwarder, Plan, Reply, Target, merge_entity
from broker.federation.registration import operations_of
from broker.query.projection import parse_attrs
from broker.service.entities import to_enf
from broker.store.base import StoredEntity
from models.context import Context
from models.errors import NgsiLdError

if TYPE_CHECKING:  # broker.state imports broker.federation: a runtime import here would be a package cycle
    from broker.state import BrokerState

_MODE_ORDER = {"inclusive": 0, "exclusive": 0, "redirect": 0, "auxiliary": 1}


@dataclass(slots=True)
class Distributed:
    """Entities gathered from registered sources, and the warnings of those that failed."""

    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """ENF documents by id, in the order they came"""
    warnings: list[str] = field(default_factory=list)
    asked: int = 0
    sources: dict[str, list[str]] = field(default_factory=dict)
    linked: dict[str, str] = field(default_factory=dict)
    """registration id -> the EntityMap the source made for it (an EntityMap's linkedMaps)"""
    """entity id -> the registrations that answered it (an EntityMap's entityMap, broker.federation.entitymaps)"""

    def header(self) -> dict[str, str]:
        """The NGSILD-Warning header, when a source failed."""
        return {"NGSILD-Warning": ", ".join(self.warnings)} if self.warnings else {}


def params_of(spec: Any, request: Request) -> dict[str, str]:
    """The selection of a QuerySpec (GET /entities or POST /entityOperations/query) as GET parameters."""
    out: dict[str, str] = {}
    if len(spec.selectors) == 1:
        sel = spec.selectors[0]
        if sel.ids:
            out["id"] = ",".join(sel.ids)
        if sel.id_pattern:
            out["idPattern"] = sel.id_pattern
        if sel.type_text:
            out["type"] = sel.type_text
    elif spec.selectors:
        types = [s.type_text for s in spec.selectors if s.type_text]
        if types:
            out["type"] = ",".join(types)
    if spec.attrs:
        out["attrs"] = ",".join(spec.attrs)
    if spec.q:
        out["q"] = spec.q
    if spec.scope_q:
        out["scopeQ"] = spec.scope_q
    if spec.geo:
        for key, value in zip(("georel", "geometry", "coordinates", "geoproperty"), spec.geo, strict=True):
            if value is not None:
                out[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    for key in ("lang", "entityMap", "entityMapLifetime"):
        if request.query_params.get(key):
            out[key] = request.query_params[key]
    return out


def forwarder(request: Request) -> Forwarder | None:
    """The app's forwarder, None for a request that must stay local (local=true)."""
    if request.query_params.get("local", "false").lower() == "true":
        return None
    return app_forwarder(request)


def app_forwarder(request: Request) -> Forwarder | None:
    """`BrokerState.forwarder` of the app serving the request, None before its lifespan has opened it.

    Read off `app.state.broker` as `broker.state.opened` does, without importing broker.state at run time.
    """
    state: BrokerState | None = getattr(request.app.state, "broker", None)
    return state.forwarder if state is not None else None


def _terms(text: str | None) -> list[str]:
    return [t for t in (text or "").replace("|", ",").replace(";", ",").split(",") if t and t != "*"]


def wanted_of(params: Any, ctx: Context) -> matching.Wanted:
    """The matching part of a query's parameters (ids, idPattern, types, attrs, geo)."""
    ids = [i for i in (params.get("id") or "").split(",") if i]
    attrs = list(parse_attrs(params["attrs"])) if params.get("attrs") else []
    if params.get("pick"):
        attrs += [a for a in params["pick"].split(",") if a and a not in ("id", "type")]
    return matching.Wanted(
        ids=frozenset(ids), id_pattern=params.get("idPattern") or None,
        types=frozenset(ctx.expand_term(t) for t in _terms(params.get("type"))),
        attrs=frozenset(ctx.expand_term(a) for a in attrs),
    )


def restricted(target: Target, wanted: matching.Wanted, ctx: Context) -> tuple[str | None, str | None]:
    """The type and attrs parameters a source is asked for: the request's, within what it registered."""
    types = sorted(wanted.types & set(target.types)) if wanted.types and target.types else (
        sorted(wanted.types) or target.types)
    attrs = sorted(wanted.attrs & set(target.attrs)) if wanted.attrs and target.attrs else (
        sorted(wanted.attrs) or ([] if not wanted.attrs else target.attrs))
    type_param = ",".join(ctx.compact_iri(t) for t in types) or None
    attrs_param = ",".join(ctx.compact_iri(a) for a in attrs) or None
    return type_param, attrs_param


def _entities_of(reply: Reply, ctx: Context) -> list[dict[str, Any]]:
    body = reply.body
    docs = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    out = []
    for doc in docs:
        if not isinstance(doc, dict) or "id" not in doc:
            continue
        doc = {k: v for k, v in doc.items() if k != "@context"}
        try:
            out.append(to_enf(doc, ctx))
        except NgsiLdError:
            continue  # 6.3.17: an invalid payload is not incorporated (111 would name it)
    return out


def _gather(distributed: Distributed, plan: Plan, replies: list[Reply], ctx: Context) -> None:
    if plan.loop or plan.skipped:
        distributed.warnings.append('199 - "registration loop detected: not forwarded again"')
    for reply in sorted(replies, key=lambda r: _MODE_ORDER.get(r.target.mode, 0)):
        if not reply.ok:
            if reply.status != 404:
                distributed.warnings.append(reply.warning())
            continue
        auxiliary = reply.target.mode == "auxiliary"
        for enf in _entities_of(reply, ctx):
            held = distributed.entities.get(enf["id"])
            distributed.entities[enf["id"]] = merge_entity(held, enf, auxiliary=auxiliary and held is not None)
            distributed.sources.setdefault(enf["id"], []).append(reply.target.item.id)
        if reply.entity_map:
            distributed.linked[reply.target.item.id] = reply.entity_map


async def retrieve(request: Request, tenant: str, entity_id: str, ctx: Context, context_value: Any,
                   local: dict[str, Any] | None) -> Distributed | None:
    """Ask the matching sources for one entity; None when no registration matches (the local answer stands)."""
    fwd = forwarder(request)
    if fwd is None or not await fwd.registrations.active(tenant):
        return None  # no registration in the tenant (the usual case): nothing to plan (issue 16)
    params = request.query_params
    wanted = wanted_of({**params, "id": entity_id}, ctx)
    plan = await fwd.plan(tenant, "retrieveEntity", wanted, request.headers.get("via"))
    for operation in ("queryEntity", "queryBatch"):  # a source offering only queries is asked by one
        more = await fwd.plan(tenant, operation, wanted, request.headers.get("via"))
        known = {t.item.id for t in plan.targets}
        plan.targets += [t for t in more.targets if t.item.id not in known]
        plan.skipped += [t for t in more.skipped if t.item.id not in {s.item.id for s in plan.skipped}]
        plan.loop = plan.loop or more.loop
    if not plan.targets and not plan.skipped:
        return None
    out = Distributed()
    if local is not None:
        out.entities[entity_id] = local

    def path_of(t: Target) -> tuple[str, list[tuple[str, str]], Any]:
        type_param, attrs_param = restricted(t, wanted, ctx)
        query = [(k, v) for k, v in (("type", type_param), ("attrs", attrs_param)) if v]
        ops = operations_of(t.reg)
        if "retrieveEntity" in ops:
            return f"/entities/{entity_id}", query, None
        if "queryEntity" in ops:
            return "/entities", [("id", entity_id), *query] + ([] if type_param else [("type", "*")]), None
        selector: dict[str, Any] = {"id": entity_id}
        if type_param:
            selector["type"] = type_param
        return "/entityOperations/query", [], {"type": "Query", "entities": [selector]}

    async def send(t: Target) -> Reply:
        path, query_params, body = path_of(t)
        return await fwd.send(t, "POST" if body is not None else "GET", path, params=query_params, body=body,
                              request_headers=request.headers, context_value=context_value)

    replies = list(await asyncio.gather(*(send(t) for t in plan.targets)))
    out.asked = len(replies)
    _gather(out, plan, replies, ctx)
    return out


async def query(request: Request, tenant: str, ctx: Context, context_value: Any, fetch: int,
                params: Any = None, operation: str = "queryEntity") -> Distributed | None:
    """Ask the matching sources for the entities of a query (the first `fetch` of each)."""
    fwd = forwarder(request)
    if fwd is None:
        return None
    params = params if params is not None else request.query_params
    wanted = wanted_of(params, ctx)
    plan = await fwd.plan(tenant, operation, wanted, request.headers.get("via"))
    if operation == "queryEntity":
        more = await fwd.plan(tenant, "queryBatch", wanted, request.headers.get("via"))
        known = {t.item.id for t in plan.targets}
        plan.targets += [t for t in more.targets if t.item.id not in known]
    if not plan.targets and not plan.skipped:
        return None
    out = Distributed()
    passed = ("id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty", "lang")

    def path_of(t: Target) -> tuple[str, list[tuple[str, str]], Any]:
        type_param, attrs_param = restricted(t, wanted, ctx)
        query_params = [(k, str(params[k])) for k in passed if params.get(k)]
        query_params += [(k, v) for k, v in (("type", type_param), ("attrs", attrs_param)) if v]
        query_params.append(("limit", str(max(1, min(fetch, 1000)))))
        if str(params.get("entityMap") or "").lower() == "true" and "createEntityMapQueryEntity" in operations_of(t.reg):
            # clause 5.14.4.4: a source offering it makes an EntityMap of its own (linkedMaps)
            query_params += [(k, str(params[k])) for k in ("entityMap", "entityMapLifetime") if params.get(k)]
        if "queryEntity" in operations_of(t.reg) or "queryBatch" not in operations_of(t.reg):
            return "/entities", query_params, None
        body: dict[str, Any] = {"type": "Query"}
        selector: dict[str, Any] = {"type": type_param or "*"}
        body["entities"] = [selector]
        if attrs_param:
            body["attrs"] = attrs_param.split(",")
        if params.get("q"):
            body["q"] = params["q"]
        return "/entityOperations/query", [("limit", str(max(1, min(fetch, 1000))))], body

    async def send(t: Target) -> Reply:
        path, query_params, body = path_of(t)
        return await fwd.send(t, "POST" if body is not None else "GET", path, params=query_params, body=body,
                               request_headers=request.headers, context_value=context_value)

    replies = list(await asyncio.gather(*(send(t) for t in plan.targets)))
    out.asked = len(replies)
    _gather(out, plan, replies, ctx)
    return out


def merged_page(local: list[StoredEntity], distributed: Distributed, offset: int, limit: int,
                total: int | None) -> tuple[list[StoredEntity], int | None]:
    """The local entities (first `offset + limit`) merged with the distributed ones, cut to the page."""
    by_id: dict[str, StoredEntity] = {}
    for e in local:
        by_id[e.doc["id"]] = e
    extra = 0
    for entity_id, doc in distributed.entities.items():
        held = by_id.get(entity_id)
        if held is None:
            by_id[entity_id] = StoredEntity(doc, "", "")
            extra += 1
        else:
            by_id[entity_id] = StoredEntity(merge_entity(held.doc, doc), held.created_at, held.modified_at)
    ordered = list(by_id.values())
    if len(local) != len(ordered):  # remote entities came in: id order, as the store pages
        ordered.sort(key=lambda e: e.doc["id"])
    return ordered[offset:offset + limit], (total + extra) if total is not None else None
