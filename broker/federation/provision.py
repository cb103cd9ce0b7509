"""Distributed context provision (clauses 5.6.x with 4.3.6.2, 4.3.6.3, 6.3.17): single-entity operations.

    inclusive   done locally AND forwarded (the registered attributes only)
    exclusive   the registered attributes go to the source only, the rest stays local
    redirect    like exclusive; a registration without attribute names takes the whole entity
    auxiliary   never takes unsafe operations (clause 4.3.6.2)

All sources answered well: the local status (201/204). One or more failed
(this broker included) with more than one taking part: 207 with a
BatchOperationResult whose `errors` name each failing registration and
endpoint. Everything went
to one exclusive/redirect source and it failed: 504 (no answer in time),
502 (unreachable or another error), 404 (not found there). A request that
comes back to this broker (its own host:port in Via) is 508 Loop Detected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from broker.federation import matching
from broker.federation.consumption import forwarder, wanted_of
from broker.federation.forward import Reply, Target
from broker.http import JSON
from models.context import Context
from models.errors import NgsiLdError

_CORE = frozenset({"id", "type", "@context", "scope", "location", "observationSpace", "operationSpace"})


class LoopDetected(NgsiLdError):
    """The request came back to this broker through its own registrations (6.3.17: 508 Loop Detected)."""

    problem_type = "LoopDetected"
    status = 508
    title = "Loop detected"


class GatewayError(NgsiLdError):
    """The single registered source failed (6.3.17: 502 Bad Gateway)."""

    problem_type = "BadGateway"
    status = 502
    title = "Bad gateway"


class GatewayTimeout(NgsiLdError):
    """The single registered source did not answer in time (6.3.17: 504 Gateway Timeout)."""

    problem_type = "GatewayTimeout"
    status = 504
    title = "Gateway timeout"


def _restrict(body: Any, target: Target, ctx: Context) -> Any:
    """The body with only the attributes the registration offers (all of them when it names none)."""
    if not isinstance(body, dict) or not target.attrs:
        return body
    allowed = set(target.attrs)
    return {k: v for k, v in body.items() if k in _CORE or ctx.expand_term(k) in allowed}


def _without(body: Any, attrs: set[str], ctx: Context) -> Any:
    if not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k in _CORE or ctx.expand_term(k) not in attrs}


def _has_attrs(body: Any) -> bool:
    return isinstance(body, dict) and any(k not in _CORE for k in body)


async def distribute(request: Request, tenant: str, operation: str, *, entity_id: str, types: list[str],
                     attrs: list[str], method: str, path: str, body: Any, context_value: Any, ctx: Context,
                     local: Callable[[Any], Awaitable[Response]], local_whole: bool = False,
                     single_attr: bool = False, history: bool = False) -> Response:
    """Run a single-entity provision operation here and at the registered sources it concerns.

    `types` and `attrs` are IRIs; `body` is the request body in the client's terms (None when bodiless);
    `local(body)` runs the operation on this broker with the part of the body that stays here and
    answers its response. `local_whole`: the operation concerns the whole entity (create, delete,
    replace), so an exclusive/redirect registration naming attributes does not take it from here.
    `single_attr`: the body is one attribute (PATCH/PUT .../attrs/{attr}), sent as it is.
    `history`: a temporal write (5.6.11-5.6.16): registrations for history (with an observationInterval or
    managementInterval, 5.10.2.4) take it as well as those without.
    """
    fwd = forwarder(request)
    if fwd is None:
        return await local(body)
    wanted = matching.Wanted(ids=frozenset([entity_id]), types=frozenset(types), attrs=frozenset(attrs))
    plan = await fwd.plan(tenant, operation, wanted, request.headers.get("via"),
                          modes=("inclusive", "exclusive", "redirect"))
    if history:  # the whole time: any observationInterval (observedAt) or managementInterval (modifiedAt)
        known = {t.item.id for t in plan.targets}
        for prop in ("observedAt", "modifiedAt"):
            wanted.temporal = (prop, "after", datetime(1, 1, 1, tzinfo=UTC), None)
            more = await fwd.plan(tenant, operation, wanted, request.headers.get("via"),
                                  modes=("inclusive", "exclusive", "redirect"))
            plan.targets += [t for t in more.targets if t.item.id not in known]
            plan.skipped += more.skipped
            known |= {t.item.id for t in more.targets}
    if plan.loop and plan.skipped:
        raise LoopDetected(f"{method} {path} came back to this broker (Via: {request.headers.get('via')})")
    if not plan.targets:
        return await local(body)
    kept = body
    remote_only = False
    for t in plan.targets:
        if t.mode in ("exclusive", "redirect"):
            if not t.attrs or single_attr:
                remote_only = True
            elif not local_whole:
                kept = _without(kept, set(t.attrs), ctx)
    run_local = not remote_only and (local_whole or body is None or _has_attrs(kept) or not _has_attrs(body))

    async def send(t: Target) -> Reply:
        return await fwd.send(t, method, path, params=[(k, v) for k, v in request.query_params.multi_items()
                                                         if k != "local"],
                              body=_restrict(body, t, ctx) if body is not None and not single_attr else body,
                              request_headers=request.headers, context_value=context_value)

    local_response: Response | None = None
    local_error: NgsiLdError | None = None
    if run_local:
        try:
            local_response = await local(kept)
        except NgsiLdError as exc:
            local_error = exc
    replies = list(await asyncio.gather(*(send(t) for t in plan.targets)))
    failed = [r for r in replies if not r.ok]
    if not run_local and len(replies) == 1 and failed:
        raise _single_failure(failed[0], entity_id)
    if local_error is not None and local_error.status == 404 and not local_whole and any(r.ok for r in replies):
        local_error = None  # an attribute operation on an entity held by the sources only
    if local_error is None and not failed:
        partial = [r for r in replies if r.status == 207]
        if partial or (local_response is not None and local_response.status_code == 207):
            return _partial(local_response, partial, kept, ctx)
        return _status_of(replies) if local_response is None else local_response
    return _multi(entity_id, replies, local_error)


def _partial(local_response: Response | None, partial: list[Reply], kept: Any, ctx: Context) -> Response:
    """207: this broker or a source did only part of the operation (5.6.2.4, 5.6.3.4: UpdateResult, 5.2.18).

    The local UpdateResult (the attributes kept here when this broker did all its part) with the sources'
    `updated`/`notUpdated` added, each not-updated attribute of a source naming its registration and endpoint.
    """
    result: dict[str, list[Any]] = {"updated": [], "notUpdated": []}
    if local_response is not None and local_response.status_code < 300 and isinstance(kept, dict):
        result["updated"] = [ctx.expand_term(k) for k in kept if k not in _CORE]  # as the local result names them
    if local_response is not None and local_response.status_code == 207:
        try:
            local_body = orjson.loads(bytes(local_response.body))
        except orjson.JSONDecodeError:
            local_body = None
        if isinstance(local_body, dict):
            result = {**local_body, "updated": list(local_body.get("updated") or []),
                      "notUpdated": list(local_body.get("notUpdated") or [])}
    for r in partial:
        if isinstance(r.body, dict):
            result["updated"] += [a for a in r.body.get("updated") or [] if a not in result["updated"]]
            result["notUpdated"] += [{**n, "registrationId": r.target.item.id, "endpoint": r.target.endpoint}
                                     if isinstance(n, dict) else n for n in r.body.get("notUpdated") or []]
        else:
            result["notUpdated"].append({"reason": f"{r.target.endpoint} answered 207 without a result",
                                         "registrationId": r.target.item.id, "endpoint": r.target.endpoint})
    return Response(orjson.dumps(result), status_code=207, media_type=JSON)


def _problem(reply: Reply) -> dict[str, Any]:
    """The ProblemDetails of a failed forwarded request (the source's own when it sent one)."""
    body = reply.body
    if isinstance(body, dict) and "type" in body and "status" in body:
        return body
    problem = _single_failure(reply, "").to_problem()
    if reply.status >= 400:  # the source's own status, even without a ProblemDetails body
        problem["status"] = reply.status
    return problem


def _single_failure(reply: Reply, entity_id: str) -> NgsiLdError:
    """6.3.17: what a single exclusive/redirect source's failure is answered with."""
    if reply.status == 404:
        from models.errors import ResourceNotFound

        return ResourceNotFound(f"{entity_id} not found at {reply.target.endpoint}")
    if reply.status == 0 and reply.error and "no answer" in reply.error:
        return GatewayTimeout(f"{reply.target.endpoint} did not answer in time")
    if isinstance(reply.body, dict) and isinstance(reply.body.get("status"), int) and reply.status < 500:
        error = GatewayError(f"{reply.target.endpoint}: {reply.body.get('detail', reply.status)}")
        error.extra = {"status": reply.status}
        return error
    return GatewayError(f"{reply.target.endpoint}: {reply.error or f'HTTP {reply.status}'}")


def _status_of(replies: list[Reply]) -> Response:
    status = 201 if any(r.status == 201 for r in replies) else 204
    return Response(status_code=status)


def _multi(entity_id: str, replies: list[Reply], local_error: NgsiLdError | None) -> Response:
    """207 with a BatchOperationResult (clause 5.2.16): the failing sources named by registration and endpoint."""
    errors: list[dict[str, Any]] = []
    if local_error is not None:
        errors.append({"entityId": entity_id, "error": local_error.to_problem()})
    for r in replies:
        if not r.ok:
            errors.append({"entityId": entity_id, "error": _problem(r), "registrationId": r.target.item.id,
                           "endpoint": r.target.endpoint})
    ok = local_error is None or any(r.ok for r in replies)
    body = {"success": [entity_id] if ok else [], "errors": errors}
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


async def distribute_purge(request: Request, tenant: str, *, context_value: Any, ctx: Context,
                           local: Callable[[], Awaitable[None]]) -> Response:
    """Purge Entities (5.6.21, 6.4.3.3) here and at the sources registered for purgeEntity (Table 4.20-2).

    The selection (type, id, idPattern, q, keep, drop...) goes to every matching inclusive, exclusive or
    redirect source as the client sent it; this broker purges its own entities as well (a purge only removes,
    so entities held elsewhere are simply not found here). All done: 204; a part failed: 207 whose `errors`
    name each failing registration and endpoint (a failure here has no registration).
    """
    fwd = forwarder(request)
    if fwd is None:
        await local()
        return Response(status_code=204)
    plan = await fwd.plan(tenant, "purgeEntity", wanted_of(request.query_params, ctx), request.headers.get("via"),
                          modes=("inclusive", "exclusive", "redirect"))
    if plan.loop and plan.skipped:
        raise LoopDetected(f"DELETE /entities came back to this broker (Via: {request.headers.get('via')})")
    local_error: NgsiLdError | None = None
    try:
        await local()
    except NgsiLdError as exc:
        if not plan.targets or exc.status == 400:  # bad input stays bad input, sent nowhere
            raise
        local_error = None if exc.status == 404 else exc  # a tenant unknown here may be known there
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "local"]
    replies = list(await asyncio.gather(*(
        fwd.send(t, "DELETE", "/entities", params=params, body=None, request_headers=request.headers,
                 context_value=context_value) for t in plan.targets)))
    failed = [r for r in replies if not r.ok and r.status != 404]  # nothing to purge there is no failure
    if local_error is None and not failed:
        return Response(status_code=204)
    errors: list[dict[str, Any]] = [{"error": local_error.to_problem()}] if local_error is not None else []
    errors += [{"error": _problem(r), "registrationId": r.target.item.id, "endpoint": r.target.endpoint}
               for r in failed]
    return Response(orjson.dumps({"success": [], "errors": errors}), status_code=207, media_type=JSON)
