"""Distributed batch operations (clauses 5.6.7-5.6.10, 5.6.20 with 4.3.6): create, upsert, update, delete, merge.

Each entity of the batch is planned like a single-entity operation
(provision.distribute): inclusive sources get it as well, exclusive ones
take their registered attributes, redirect ones the whole entity (or their
attributes). Every source receives one batch with its share; this broker
runs the rest. A batch delete names ids only: every id is deleted here too
(clause 5.6.10.4), and one this broker does not hold is no error when a
source deleted it. The BatchOperationResult unites both: an entity a source
refused is an error naming the registration (`registrationId`, `endpoint`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from broker.federation import matching
from broker.federation.consumption import forwarder
from broker.federation.forward import Reply, Target
from broker.federation.provision import LoopDetected, _problem, _restrict, _without
from broker.service.batch import BatchResult
from models.errors import NgsiLdError

_CORE = frozenset({"id", "type", "@context", "scope"})


class _RemoteError(NgsiLdError):
    """An entity a context source refused, with the source's ProblemDetails."""

    def __init__(self, problem: dict[str, Any], reply: Reply) -> None:
        super().__init__(str(problem.get("detail", problem.get("title", "refused by the context source"))))
        self.problem = problem
        self.reply = reply

    def to_problem(self) -> dict[str, Any]:
        return self.problem


def _ctx_of(ctx: Any, index: int) -> Any:
    if isinstance(ctx, (list, tuple)):
        return ctx[index]
    return ctx


async def distribute_batch(request: Request, tenant: str, operation: str, path: str, items: list[Any], ctx: Any,
                           local: Callable[[list[Any], Any], Awaitable[BatchResult]], *,
                           ids_only: bool = False) -> BatchResult:
    """Run a batch here and at the matching sources; `local(items, ctx)` runs this broker's share."""
    fwd = forwarder(request)
    if fwd is None or not await fwd.registrations.active(tenant):
        return await local(items, ctx)
    shares: dict[str, tuple[Target, list[Any]]] = {}
    kept_items: list[Any] = []
    kept_ctx: list[Any] = []
    loop = False
    for index, item in enumerate(items):
        c = _ctx_of(ctx, index)
        entity_id = item if ids_only else item.get("id") if isinstance(item, dict) else None
        if not isinstance(entity_id, str) or isinstance(c, NgsiLdError) or (c is None and not ids_only):
            kept_items.append(item)
            kept_ctx.append(c)
            continue
        if ids_only:
            stored = await fwd.registrations.store.get(tenant, entity_id)
            types = list(stored.doc.get("type", [])) if stored else []
            attrs: list[str] = []
        else:
            raw = item.get("type")
            types = [c.expand_term(t) for t in (raw if isinstance(raw, list) else [raw]) if isinstance(t, str)]
            attrs = [c.expand_term(k) for k in item if k not in _CORE]
        wanted = matching.Wanted(ids=frozenset([entity_id]), types=frozenset(types), attrs=frozenset(attrs))
        plan = await fwd.plan(tenant, operation, wanted, request.headers.get("via"),
                              modes=("inclusive", "exclusive", "redirect"))
        loop = loop or (plan.loop and bool(plan.skipped))
        remote_only = False
        kept = item
        for t in plan.targets:
            share = item if ids_only else _restrict(item, t, c)
            shares.setdefault(t.item.id, (t, []))[1].append(share)
            # a delete (ids only) runs here for every id as well (5.6.10.4): unregistered attributes may be held here
            if t.mode in ("exclusive", "redirect") and not ids_only:
                if not t.attrs:
                    remote_only = True
                else:
                    kept = _without(kept, set(t.attrs), c)
        if remote_only or (not ids_only and plan.targets and not any(k not in _CORE for k in kept)
                           and any(k not in _CORE for k in item)):
            continue
        kept_items.append(kept)
        kept_ctx.append(c)
    if loop:
        raise LoopDetected(f"POST {path} came back to this broker (Via: {request.headers.get('via')})")
    if not shares:
        return await local(items, ctx)

    async def send(t: Target, share: list[Any]) -> tuple[Target, list[Any], Reply]:
        reply = await fwd.send(t, "POST", path, params=[(k, v) for k, v in request.query_params.multi_items()
                                                        if k != "local"],
                               body=share, request_headers=request.headers, context_value=_context_value(request))
        return t, share, reply

    results = await asyncio.gather(*(send(t, share) for t, share in shares.values()))
    if kept_items:
        local_ctx = ctx if not isinstance(ctx, (list, tuple)) else kept_ctx
        result = await local(kept_items, local_ctx)
    else:
        result = BatchResult()
    if ids_only:  # an entity a source deleted and this broker did not hold (redirect) was deleted, not missed
        deleted_there = {i for t, share, reply in results for i in _deleted(share, reply)}
        result.errors = [(i, e) for i, e in result.errors if not (i in deleted_there and e.status == 404)]
    failed_ids = {i for i, _ in result.errors}
    for target, share, reply in results:
        ids = [s if ids_only else s.get("id") for s in share]
        refused: dict[str, dict[str, Any]] = {}
        if reply.status == 207 and isinstance(reply.body, dict):
            for err in reply.body.get("errors") or []:
                if isinstance(err, dict) and isinstance(err.get("entityId"), str):
                    refused[err["entityId"]] = err.get("error") or {}
        elif not reply.ok:
            refused = {i: _problem(reply) for i in ids}
        for entity_id in ids:
            if entity_id in refused:
                error = _RemoteError({**refused[entity_id]}, reply)
                error.extra = {}
                result.errors.append((entity_id, error))
                failed_ids.add(entity_id)
            elif entity_id not in result.success:
                result.success.append(entity_id)
                if reply.status == 201:
                    result.created.append(entity_id)
    result.success = [i for i in result.success if i not in failed_ids]
    return result


def _deleted(share: list[Any], reply: Reply) -> list[str]:
    """The ids of a forwarded batch delete that the source reports deleted."""
    if reply.ok and reply.status != 207:
        return [i for i in share if isinstance(i, str)]
    if reply.status == 207 and isinstance(reply.body, dict):
        return [i for i in reply.body.get("success") or [] if isinstance(i, str)]
    return []


def _context_value(request: Request) -> Any:
    from broker.http import link_context

    return link_context(request)


def error_entries(result: BatchResult) -> list[dict[str, Any]]:
    """The BatchOperationResult errors, with the registration of an entity a source refused."""
    out = []
    for entity_id, error in result.errors:
        entry: dict[str, Any] = {"entityId": entity_id, "error": error.to_problem()}
        if isinstance(error, _RemoteError):
            entry["registrationId"] = error.reply.target.item.id
            entry["endpoint"] = error.reply.target.endpoint
        out.append(entry)
    return out
