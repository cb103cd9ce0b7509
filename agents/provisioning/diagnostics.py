"""Diagnostics of the provisioning API, scoped to a tenant: rejected messages, the outbox, its dead letters.

Every route needs `fiware-service` and `fiware-servicepath` (400
MISSING_HEADERS otherwise) and sees only that service's data, and only that
service path's unless it is `/*`, as iotagent-node-lib scopes groups and
devices. Rejections that belong to no tenant (a message whose apikey no group
has) are kept under the empty service: `fiware-service:` (empty) with
`fiware-servicepath: /*` lists them.

    GET    /iot/rejections                    rejected messages and refused attributes, newest first
    DELETE /iot/rejections[?before=]         forget them
    GET    /iot/outbox                        measures waiting for their broker (target, attempts, last error)
    POST   /iot/outbox/retry                  due now: {"seqs": [...]} or all
    DELETE /iot/outbox[?seq=1,2]              drop waiting measures (lost: an operator's decision)
    GET    /iot/outbox/dead-letters           what brokers refused, with their ProblemDetails
    POST   /iot/outbox/dead-letters/retry     back into the outbox, to the group's current cbroker
    DELETE /iot/outbox/dead-letters[?id=1,2]  forget them
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from adapters.outbox import Outbox
from adapters.outbox_admin import device_prefix
from agents.metrics import Metrics
from agents.provisioning.deps import page, scope
from agents.provisioning.errors import WrongSyntax
from agents.provisioning.state import provisioning_state

__all__ = ["outbox_router", "refresh_gauges", "router"]


def _tenant(request: Request) -> tuple[str, str | None]:
    service, subservice = scope(request)
    return service, None if subservice == "/*" else subservice


def _ids(request: Request, name: str) -> list[int] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise WrongSyntax(f"{name} must be a comma-separated list of integers") from None


async def _body_ids(request: Request, name: str) -> list[int] | None:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WrongSyntax("the body is not JSON") from None
    ids = doc.get(name) if isinstance(doc, dict) else None
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise WrongSyntax(f"{name} must be an array of integers")
    return ids


router = APIRouter()
"""The rejection routes (every agent)."""
outbox_router = APIRouter()
"""The outbox routes: included only when the agent has an outbox (not in API-only tests)."""


async def _page(request: Request, read: Callable[..., tuple[int, list[dict[str, Any]]]], member: str) -> JSONResponse:
    """A page of the tenant's outbox rows (`read`: Outbox.rows or Outbox.dead), 100 unless ?limit= says."""
    service, path = _tenant(request)
    limit, offset = page(request)
    count, rows = await asyncio.to_thread(read, service, path, limit=100 if limit is None else limit, offset=offset)
    return JSONResponse({"count": count, member: rows})


def _outbox(request: Request) -> Outbox:
    outbox = provisioning_state(request).outbox
    if outbox is None:  # outbox_router is included only with an outbox
        raise RuntimeError("this provisioning app has no outbox")
    return outbox


@router.get("/iot/rejections")
async def rejections(request: Request) -> JSONResponse:
    """Rejections of this tenant, newest first; filter with reason, apikey, device_id; page with limit, offset."""
    service, path = _tenant(request)
    registry = provisioning_state(request).registry
    limit, offset = page(request)
    q = request.query_params
    result = await registry.list_dead_letters(
        reason=q.get("reason"), apikey=q.get("apikey"), device_id=q.get("device_id"), service=service,
        service_path=path, limit=100 if limit is None else limit, offset=offset,
    )
    return JSONResponse({"count": result.count, "rejections": result.items})


@router.delete("/iot/rejections")
async def purge_rejections(request: Request) -> Response:
    """Forget the tenant's rejections (those before ?before=, or all)."""
    service, path = _tenant(request)
    registry = provisioning_state(request).registry
    await registry.purge_dead_letters(request.query_params.get("before"), service=service, service_path=path)
    return Response(status_code=204)


@outbox_router.get("/iot/outbox")
async def waiting(request: Request) -> JSONResponse:
    """The tenant's measures waiting for delivery, oldest first."""
    return await _page(request, _outbox(request).rows, "rows")


@outbox_router.post("/iot/outbox/retry")
async def retry(request: Request) -> JSONResponse:
    """Make the tenant's waiting measures due now: {"seqs": [...]} or all."""
    service, path = _tenant(request)
    outbox = _outbox(request)
    seqs = await _body_ids(request, "seqs")
    return JSONResponse({"retried": await asyncio.to_thread(outbox.retry, service, path, seqs)})


@outbox_router.delete("/iot/outbox")
async def purge(request: Request) -> JSONResponse:
    """Drop the tenant's waiting measures (?seq=1,2 or all): lost, an operator's decision."""
    service, path = _tenant(request)
    outbox = _outbox(request)
    return JSONResponse({"purged": await asyncio.to_thread(outbox.purge, service, path, _ids(request, "seq"))})


@outbox_router.get("/iot/outbox/dead-letters")
async def dead(request: Request) -> JSONResponse:
    """What the brokers refused for this tenant, newest first, with their ProblemDetails."""
    return await _page(request, _outbox(request).dead, "deadLetters")


@outbox_router.post("/iot/outbox/dead-letters/retry")
async def requeue(request: Request) -> JSONResponse:
    """Dead letters back into the outbox, to their group's current cbroker."""
    service, path = _tenant(request)
    outbox = _outbox(request)
    ids = await _body_ids(request, "ids")
    groups = (await provisioning_state(request).registry.list_groups(service, None)).items
    current: dict[str, str] = {
        device_prefix(service, str(g.get("apikey", ""))): str(g.get("cbroker") or g.get("cbHost") or "")
        for g in groups
    }

    def target(_tenant: str, device: str) -> str | None:
        head = device.rsplit("|", 1)[0] + "|"
        return current.get(head)  # the group's broker now; None (group gone): the row's own

    n = await asyncio.to_thread(outbox.requeue, service, path, ids, target)
    return JSONResponse({"requeued": n})


@outbox_router.delete("/iot/outbox/dead-letters")
async def purge_dead(request: Request) -> JSONResponse:
    """Forget the tenant's dead letters (?id=1,2 or all)."""
    service, path = _tenant(request)
    outbox = _outbox(request)
    n = await asyncio.to_thread(outbox.purge_dead, service, path, _ids(request, "id"))
    return JSONResponse({"purged": n})


def refresh_gauges(outbox: Outbox, metrics: Metrics) -> None:
    """Outbox counts for /metrics, read when scraped: rows per target, dead letters."""
    per_target, dead = outbox.counts()
    rows = metrics.gauge("metropole_agent_outbox_rows", "Entity updates waiting, by target broker ('' = default)",
                         ["target"])
    for target in outbox.targets | set(per_target):
        rows.labels(target=target).set(per_target.get(target, 0))
    metrics.gauge("metropole_agent_outbox_dead_letters", "Entity updates the brokers refused, kept").set(dead)
