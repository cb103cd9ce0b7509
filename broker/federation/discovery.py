"""Distributed discovery of entity types and attributes (clauses 5.7.5-5.7.11, 4.20).

    /types                     retrieveEntityTypes         typeList united
    /types?details=true        retrieveEntityTypeDetails   EntityType by typeName, attributeNames united
    /types/{type}              retrieveEntityTypeInfo      entityCount summed, attributeDetails by attributeName
    /attributes                retrieveAttrTypes           attributeList united
    /attributes?details=true   retrieveAttrTypeDetails     Attribute by attributeName, typeNames united
    /attributes/{attr}         retrieveAttrTypeInfo        attributeCount summed, attributeTypes, typeNames united

Clause 5.7.11 lets a broker answer from its own store and the registry, or
forward the request to every source offering the operation and merge the
lists with its own: this broker forwards, which gives actual names and
counts rather than "possibly available" ones. Counts are sums, an estimate
when a source and this broker hold the same entity (5.7.11 allows it).
What a source answers is kept within its registration: types and
attributes it was not registered for are left out (4.3.6.1). Names come back
in the client's terms, as each forwarded request carries its @context. A
source that fails is named in NGSILD-Warning; a 404 from it is no failure.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import Request

from broker.federation import matching
from broker.federation.consumption import forwarder
from broker.federation.forward import Reply, Target
from models.context import Context

Warnings = dict[str, str]
_LISTS = ("attributeNames", "attributeTypes", "typeNames")
_COUNTS = ("entityCount", "attributeCount")


async def _ask(request: Request, tenant: str, context_value: Any, *, path: str, operation: str,
               wanted: matching.Wanted, params: list[tuple[str, str]] | None = None) -> list[Reply] | None:
    fwd = forwarder(request)
    if fwd is None:
        return None
    plan = await fwd.plan(tenant, operation, wanted, request.headers.get("via"))
    if not plan.targets:
        return None
    return list(await asyncio.gather(*(fwd.send(t, "GET", path, params=params, request_headers=request.headers,
                                                context_value=context_value) for t in plan.targets)))


def _warnings(replies: list[Reply]) -> Warnings:
    failed = [r.warning() for r in replies if not r.ok and r.status != 404]
    return {"NGSILD-Warning": ", ".join(failed)} if failed else {}


def _offered(target: Target, ctx: Context) -> tuple[set[str] | None, set[str] | None]:
    """The type and attribute names (client terms) a source was registered for; None: any."""
    types = {ctx.compact_iri(t) for t in target.types} or None
    attrs = {ctx.compact_iri(a) for a in target.attrs} or None
    return types, attrs


def _within(names: Any, allowed: set[str] | None) -> list[str]:
    return [n for n in names if isinstance(n, str) and (allowed is None or n in allowed)] \
        if isinstance(names, list) else []


async def names(request: Request, tenant: str, context_value: Any, ctx: Context, *, path: str, operation: str,
                member: str, local: list[str]) -> tuple[list[str], Warnings]:
    """/types or /attributes (5.7.5, 5.7.8): the lists united and sorted."""
    replies = await _ask(request, tenant, context_value, path=path, operation=operation, wanted=matching.Wanted())
    if replies is None:
        return local, {}
    out = set(local)
    for reply in replies:
        if reply.ok and isinstance(reply.body, dict):
            types, attrs = _offered(reply.target, ctx)
            out.update(_within(reply.body.get(member), types if member == "typeList" else attrs))
    return sorted(out), _warnings(replies)


def _merge_lists(held: dict[str, Any], other: dict[str, Any]) -> None:
    for key in _LISTS:
        if isinstance(other.get(key), list):
            held[key] = sorted(set(held.get(key) or []) | {v for v in other[key] if isinstance(v, str)})
    for key in _COUNTS:
        if isinstance(other.get(key), int) and not isinstance(other.get(key), bool):
            held[key] = int(held.get(key) or 0) + other[key]
    if isinstance(other.get("attributeDetails"), list):
        by_name = {d["attributeName"]: d for d in held.get("attributeDetails") or [] if isinstance(d, dict)}
        for detail in other["attributeDetails"]:
            if not isinstance(detail, dict) or not isinstance(detail.get("attributeName"), str):
                continue
            mine = by_name.get(detail["attributeName"])
            if mine is None:
                by_name[detail["attributeName"]] = dict(detail)
            else:
                _merge_lists(mine, detail)
        held["attributeDetails"] = [by_name[n] for n in sorted(by_name)]


def _kept(item: dict[str, Any], key: str, target: Target, ctx: Context) -> dict[str, Any] | None:
    """A source's EntityType / EntityTypeInfo / Attribute within its registration (None: not registered)."""
    types, attrs = _offered(target, ctx)
    name = item.get(key)
    if not isinstance(name, str) or (key == "typeName" and types is not None and name not in types) \
            or (key == "attributeName" and attrs is not None and name not in attrs):
        return None
    item = {k: v for k, v in item.items() if k != "@context"}
    if "attributeNames" in item:
        item["attributeNames"] = _within(item["attributeNames"], attrs)
    if "typeNames" in item:
        given = item["typeNames"]
        item["typeNames"] = _within(given, types)
        if given and not item["typeNames"]:  # only entities of types it was not registered for have it
            return None
    if isinstance(item.get("attributeDetails"), list):
        item["attributeDetails"] = [d for d in item["attributeDetails"] if isinstance(d, dict)
                                    and (attrs is None or d.get("attributeName") in attrs)]
    return item


async def details(request: Request, tenant: str, context_value: Any, ctx: Context, *, path: str, operation: str,
                  key: str, local: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Warnings]:
    """/types?details=true or /attributes?details=true (5.7.6, 5.7.9): merged by typeName / attributeName."""
    replies = await _ask(request, tenant, context_value, path=path, operation=operation, wanted=matching.Wanted(),
                         params=[("details", "true")])
    if replies is None:
        return local, {}
    by_name = {str(i[key]): dict(i) for i in local}
    for reply in replies:
        for item in reply.body if reply.ok and isinstance(reply.body, list) else []:
            kept = _kept(item, key, reply.target, ctx) if isinstance(item, dict) else None
            if kept is None:
                continue
            held = by_name.get(kept[key])
            if held is None:
                by_name[kept[key]] = kept
            else:
                _merge_lists(held, kept)
    return [by_name[n] for n in sorted(by_name)], _warnings(replies)


async def info(request: Request, tenant: str, context_value: Any, ctx: Context, *, kind: str, name: str,
               local: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Warnings] | None:
    """/types/{type} (5.7.7) or /attributes/{attr} (5.7.10) with the matching sources' answers: the merged
    EntityTypeInfo or Attribute (None: known nowhere); None when no registration takes the request."""
    iri = ctx.expand_term(name)
    if kind == "types":
        wanted, operation, key = matching.Wanted(types=frozenset({iri})), "retrieveEntityTypeInfo", "typeName"
    else:
        wanted, operation, key = matching.Wanted(attrs=frozenset({iri})), "retrieveAttrTypeInfo", "attributeName"
    replies = await _ask(request, tenant, context_value, path=f"/{kind}/{quote(name, safe='')}",
                         operation=operation, wanted=wanted)
    if replies is None:
        return None
    out = dict(local) if local is not None else None
    for reply in replies:
        kept = _kept(reply.body, key, reply.target, ctx) if reply.ok and isinstance(reply.body, dict) else None
        if kept is None:
            continue
        if out is None:
            out = kept
        else:
            _merge_lists(out, kept)
    return out, _warnings(replies)
