"""Distributed temporal retrieval and query (clauses 5.7.3, 5.7.4 with 4.3.6, 4.20, 5.10.2.4, 6.3.17).

    retrieve(...)   GET /temporal/entities/{id}: sources registered for retrieveTemporal
    query(...)      GET /temporal/entities, POST /temporal/entityOperations/query: sources registered for
                    queryTemporal, asked with the same binding the client used
    merge(...)      two temporal representations of one entity

A registration takes part when it matches the entity part of the request and
its time interval (observationInterval, managementInterval for createdAt,
modifiedAt, deletedAt) overlaps the temporal query (5.10.2.4); a retrieve
without a temporal query asks for the whole history, so every registration
with an interval of that kind overlaps it. Registrations with no interval
are sources of latest information and are not asked (5.10.2.4).

Instances are merged per attribute and per datasetId: an instance whose
datasetId and time (the request's timeproperty) another source already gave
is the same instance and is kept once; auxiliary sources only add instances
at a time no other answer has (5.7.3.4, 5.7.4.4). lastN is applied again
after the merge. A source that fails or does not answer in time is named in
NGSILD-Warning; 404 from a source is no failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from broker.federation.consumption import forwarder, restricted, wanted_of
from broker.federation.forward import Plan, Reply, Target
from broker.federation.matching import united_types
from broker.federation.registration import operations_of
from broker.query.projection import parse_attrs
from broker.temporal.query import AGGR_METHODS, TemporalQuery
from models.context import Context
from models.errors import NgsiLdError

_EVER = datetime(1, 1, 1, tzinfo=UTC)
_PAIRS = ("values", "objects", "languageMaps", "vocabs", "jsons", "valueLists", "objectLists")
Warnings = dict[str, str]
_MAP_PARAMS = ("entityMap", "entityMapLifetime")


@dataclass
class EntityMapParts:
    """What a temporal query that makes an EntityMap learns from the sources (5.14.5.4)."""

    sources: dict[str, list[str]] = field(default_factory=dict)
    """entity id -> the registrations that answered it"""
    linked: dict[str, str] = field(default_factory=dict)
    """registration id -> the EntityMap the source made (offering createEntityMapQueryTemporal)"""
    limit: int | None = None
    """the sources are asked for up to this many entities (every candidate, not the client's page)"""


def _map_params(target: Target, found: EntityMapParts | None) -> tuple[str, ...]:
    """The EntityMap URL parameters NOT to pass to a source: all unless a map is being made and the source
    offers createEntityMapQueryTemporal (5.14.5.4: then it makes its own map, kept in linkedMaps)."""
    if found is not None and "createEntityMapQueryTemporal" in operations_of(target.reg):
        return ()
    return _MAP_PARAMS


def _slots(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def _pairs_member(slot: dict[str, Any]) -> str | None:
    return next((m for m in _PAIRS if isinstance(slot.get(m), list)), None)


def _pair_time(pair: Any) -> str:
    return str(pair[1]) if isinstance(pair, list) and len(pair) > 1 else ""


def _merge_attribute(held: Any, value: Any, *, auxiliary: bool, timeprop: str, last_n: int | None) -> Any:
    """One attribute's temporal representations put together (normalized or temporalValues)."""
    mine, theirs = _slots(held), _slots(value)
    if mine and _pairs_member(mine[0]) or theirs and _pairs_member(theirs[0]):
        return _merge_simplified(mine, theirs, auxiliary=auxiliary, last_n=last_n)
    if any(_has_aggregate(i) for i in mine + theirs):
        # aggregatedValues: periods of different sources cannot be recombined; a datasetId not held is added
        known = {i.get("datasetId") for i in mine}
        slots = mine + [i for i in theirs if i.get("datasetId") not in known]
        return slots[0] if len(slots) == 1 else slots

    def key(i: dict[str, Any]) -> tuple[Any, ...]:
        return (i.get(timeprop),) if auxiliary else (i.get("datasetId"), i.get(timeprop))

    seen = {key(i) for i in mine}
    times = {i.get(timeprop) for i in mine}
    merged = list(mine)
    for inst in theirs:
        if key(inst) in seen or (auxiliary and inst.get(timeprop) in times):
            continue
        seen.add(key(inst))
        merged.append(inst)
    merged.sort(key=lambda i: str(i.get(timeprop) or ""))
    if last_n is not None:
        merged = _last_n(merged, last_n, lambda i: str(i.get(timeprop) or ""))
    return merged


def _has_aggregate(inst: dict[str, Any]) -> bool:
    """An aggregatedValues slot (clause 4.5.19): a member named after an aggregation method."""
    return any(k in AGGR_METHODS and isinstance(v, list) for k, v in inst.items())


def _last_n(items: list[Any], n: int, time_of: Any) -> list[Any]:
    """The items at the n latest timestamps of an attribute ("the last n timestamps", 5.7.3.4), in time order."""
    latest = set(sorted({time_of(i) for i in items})[-n:])
    return [i for i in items if time_of(i) in latest]


def _merge_simplified(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], *, auxiliary: bool,
                      last_n: int | None) -> Any:
    out = [dict(s) for s in mine]
    every_time = {_pair_time(p) for s in mine for p in s.get(_pairs_member(s) or "", [])}
    for slot in theirs:
        member = _pairs_member(slot)
        if member is None:
            continue
        held = next((s for s in out if s.get("datasetId") == slot.get("datasetId")), None)
        pairs = [p for p in slot[member] if not (auxiliary and _pair_time(p) in every_time)]
        if held is None:
            if pairs or not auxiliary:
                out.append({**slot, member: pairs})
            continue
        held_member = _pairs_member(held) or member
        times = {_pair_time(p) for p in held.get(held_member, [])}
        held[held_member] = sorted(held.get(held_member, []) + [p for p in pairs if _pair_time(p) not in times],
                                   key=_pair_time)
    if last_n is not None:
        latest = set(sorted({_pair_time(p) for s in out for p in s.get(_pairs_member(s) or "", [])})[-last_n:])
        for slot in out:
            member = _pairs_member(slot)
            if member:
                slot[member] = [p for p in slot[member] if _pair_time(p) in latest]
    return out[0] if len(out) == 1 else out


def merge(base: dict[str, Any], other: dict[str, Any], *, auxiliary: bool = False, timeprop: str = "observedAt",
          last_n: int | None = None) -> dict[str, Any]:
    """Two temporal representations of one entity (clause 4.5.5 per instance): types united, instances merged
    per attribute and datasetId."""
    out = dict(base)
    types = united_types(base.get("type"), other.get("type"))
    out["type"] = types[0] if len(types) == 1 else types
    for name, value in other.items():
        if name in ("id", "type", "@context"):
            continue
        if name not in out:
            out[name] = value
        elif name != "scope":
            out[name] = _merge_attribute(out[name], value, auxiliary=auxiliary, timeprop=timeprop, last_n=last_n)
    return out


def _temporal_of(params: Any, ctx: Context) -> tuple[str, str, datetime, datetime | None]:
    """The (timeproperty, timerel, timeAt, endTimeAt) a registration's interval is matched against."""
    tq = TemporalQuery.from_params(params)
    if tq.timerel is None:  # no temporal query: the whole history
        return (tq.timeproperty, "after", _EVER, None)
    from broker.federation.service import parse_query

    found = parse_query({**params, "type": params.get("type") or "*"}, ctx)[0].temporal
    return found if found is not None else (tq.timeproperty, "after", _EVER, None)


async def _plan(request: Request, tenant: str, operation: str, params: Any, ctx: Context) -> Plan | None:
    fwd = forwarder(request)
    if fwd is None:
        return None
    wanted = wanted_of(params, ctx)
    try:
        wanted.temporal = _temporal_of(params, ctx)
    except NgsiLdError:
        return None
    plan = await fwd.plan(tenant, operation, wanted, request.headers.get("via"))
    return plan if plan.targets or plan.skipped else None


def _gather(plan: Plan, replies: list[Reply], by_id: dict[str, dict[str, Any]], params: Any,
            found: EntityMapParts | None = None) -> Warnings:
    """Merge the sources' entities into by_id (local first, auxiliary sources last); the warning header.
    `found` collects which registration answered which entity id, and the sources' own EntityMaps."""
    timeprop = str(params.get("timeproperty") or "observedAt")
    last_n = int(params["lastN"]) if str(params.get("lastN") or "").isdigit() else None
    warnings = ['199 - "registration loop detected: not forwarded again"'] if plan.loop or plan.skipped else []
    for reply in sorted(replies, key=lambda r: r.target.mode == "auxiliary"):
        if not reply.ok:
            if reply.status != 404:
                warnings.append(reply.warning())
            continue
        if found is not None and reply.entity_map:
            found.linked[reply.target.item.id] = reply.entity_map
        body = reply.body
        for entity in body if isinstance(body, list) else [body] if isinstance(body, dict) else []:
            if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                continue
            entity = {k: v for k, v in entity.items() if k != "@context"}
            if found is not None:
                found.sources.setdefault(entity["id"], []).append(reply.target.item.id)
            held = by_id.get(entity["id"])
            by_id[entity["id"]] = entity if held is None else merge(
                held, entity, auxiliary=reply.target.mode == "auxiliary", timeprop=timeprop, last_n=last_n)
    return {"NGSILD-Warning": ", ".join(warnings)} if warnings else {}


def _narrowed(target: Target, params: Any, ctx: Context) -> tuple[str | None, str | None]:
    """The type and attrs a source is asked for: the request's within what it registered; a request naming
    no attribute asks a source registered for some attributes for those only (clause 4.3.6.1)."""
    wanted = wanted_of(params, ctx)
    type_param, attrs_param = restricted(target, wanted, ctx)
    if not wanted.attrs and target.attrs:
        attrs_param = ",".join(ctx.compact_iri(a) for a in target.attrs)
    return type_param, attrs_param


def _restricted_params(target: Target, params: Any, ctx: Context, *, keep_type: bool) -> list[tuple[str, str]]:
    """The request's URL parameters for one source: type and attrs within what it registered, local dropped."""
    type_param, attrs_param = _narrowed(target, params, ctx)
    out = [(k, str(v)) for k, v in params.items() if k not in ("local", "offset", "count", "type", "attrs")]
    if type_param and (keep_type or params.get("type")):
        out.append(("type", type_param))
    if attrs_param:
        out.append(("attrs", attrs_param))
    return out


async def retrieve(request: Request, tenant: str, entity_id: str, ctx: Context, context_value: Any,
                   local: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Warnings] | None:
    """Retrieve Temporal Evolution of an Entity at the sources registered for it (5.7.3.4): the merged entity
    (None: nowhere) and the warning header; None when no registration matches (the local answer stands)."""
    params = dict(request.query_params)
    plan = await _plan(request, tenant, "retrieveTemporal", {**params, "id": entity_id}, ctx)
    if plan is None:
        return None
    fwd = forwarder(request)
    assert fwd is not None
    replies = await asyncio.gather(*(
        fwd.send(t, "GET", f"/temporal/entities/{entity_id}", params=_restricted_params(t, params, ctx, keep_type=False),
                 request_headers=request.headers, context_value=context_value)
        for t in plan.targets))
    by_id = {entity_id: local} if local is not None else {}
    warnings = _gather(plan, list(replies), by_id, params)
    return by_id.get(entity_id), warnings


async def query(request: Request, tenant: str, ctx: Context, context_value: Any, local: list[dict[str, Any]],
                body: dict[str, Any] | None = None,
                found: EntityMapParts | None = None,
                used: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], Warnings]:
    """Query Temporal Evolution of Entities at the sources registered for queryTemporal (5.7.4.4): the local
    entities merged with theirs by id (new ones after the local ones), and the warning header.

    `body` is the Query of POST /temporal/entityOperations/query: it goes to each source as a POST too,
    its attrs and entity types narrowed to what the source registered. `found` (an EntityMap is made,
    5.14.5.4) collects the registrations that answered each entity and the sources' own maps. `used` (the
    EntityMap the request names): "only the retrieved EntityMap shall be used to determine which Context Source
    Registrations match", and a source with a linked map is sent its location (5.7.4.4).
    """
    params: dict[str, Any] = dict(request.query_params)
    if body is not None:
        params = {**_params_of_body(body), **{k: v for k, v in params.items() if k not in ("local",)}}
    plan = await _plan(request, tenant, "queryTemporal", params, ctx)
    if plan is None:
        return local, {}
    fwd = forwarder(request)
    assert fwd is not None
    linked: dict[str, str] = {}
    if used is not None:
        linked = used.get("linkedMaps") or {}
        listed = {r for regs in (used.get("entityMap") or {}).values() for r in regs} | set(linked)
        plan.targets = [t for t in plan.targets if t.item.id in listed]

    def extra(t: Target) -> dict[str, str] | None:
        return {"NGSILD-EntityMap": linked[t.item.id]} if t.item.id in linked else None

    def paged(items: list[tuple[str, str]], t: Target) -> list[tuple[str, str]]:
        skip = _map_params(t, found)
        out = [(k, v) for k, v in items if k not in skip and not (found is not None and found.limit and k == "limit")]
        return out + [("limit", str(found.limit))] if found is not None and found.limit else out

    def send(t: Target) -> Any:
        if body is None:
            return fwd.send(t, "GET", "/temporal/entities",
                            params=paged(_restricted_params(t, params, ctx, keep_type=True), t),
                            request_headers=request.headers, context_value=context_value, extra_headers=extra(t))
        type_param, attrs_param = _narrowed(t, params, ctx)
        forwarded = {k: v for k, v in body.items() if k not in ("local", "@context", *_map_params(t, found))}
        if attrs_param:
            forwarded["attrs"] = attrs_param.split(",")
        if type_param:
            forwarded["entities"] = [{**s, "type": type_param} if isinstance(s, dict) and _simple_type(s) else s
                                     for s in forwarded.get("entities") or [{}]]
        url = [(k, str(v)) for k, v in request.query_params.items() if k not in ("local", "offset", "count")]
        return fwd.send(t, "POST", "/temporal/entityOperations/query", params=paged(url, t), body=forwarded,
                        request_headers=request.headers, context_value=context_value, extra_headers=extra(t))

    replies = await asyncio.gather(*(send(t) for t in plan.targets))
    by_id = {e["id"]: e for e in local if isinstance(e, dict) and "id" in e}
    warnings = _gather(plan, list(replies), by_id, params, found)
    return list(by_id.values()), warnings


def _simple_type(selector: dict[str, Any]) -> bool:
    """A selector whose type is absent or a plain list of names (no ; | ( ) expression to narrow)."""
    text = selector.get("type")
    return text is None or (isinstance(text, str) and not any(c in text for c in ";|()"))


def _params_of_body(body: dict[str, Any]) -> dict[str, Any]:
    """A temporal Query body's selection as GET parameters, for matching registrations."""
    out: dict[str, Any] = {}
    selectors = [s for s in body.get("entities") or [] if isinstance(s, dict)]
    ids = [i for s in selectors for i in ([s["id"]] if isinstance(s.get("id"), str) else s.get("id") or [])]
    if ids and len(ids) == len(selectors):  # every selector names ids: only those entities are asked for
        out["id"] = ",".join(ids)
    types = [str(s["type"]) for s in selectors if s.get("type")]
    if types and len(types) == len(selectors):
        out["type"] = ",".join(types)
    attrs = body.get("attrs")
    if attrs:
        out["attrs"] = ",".join(parse_attrs(attrs) if isinstance(attrs, str) else attrs)
    for name, value in (body.get("temporalQ") or {}).items():
        out[name] = value
    for name in ("lastN", "timeproperty"):
        if name in body:
            out[name] = body[name]
    return out
