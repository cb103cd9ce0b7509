"""/subscriptions and /subscriptions/{id} (clauses 6.10, 6.11): thin handlers over SubscriptionService."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.api.pagination import add_links, page_links
from broker.federation.subs import relay_of
from broker.http import accepted_type, json_response, no_content
from broker.service.queries import Page
from broker.state import broker_state
from broker.subscriptions.service import SubscriptionService

router = APIRouter(prefix=API)


def service(request: Request) -> SubscriptionService:
    """The subscription service of this app."""
    return broker_state(request).subscriptions.service


@router.post("/subscriptions")
async def create_subscription(request: Request, tenant: TenantDep = "") -> Response:
    """Create Subscription (6.10.3.1): 201 + Location, 400, 409."""
    deps.check_params(request)
    incoming, ctx = await deps.read_entity_body(request)
    sub_id = await service(request).create(tenant, incoming.body, incoming.context, ctx)
    # federation: copies at the registered sources offering createSubscription (5.8.1.4)
    if isinstance(incoming.body, dict):
        await relay_of(request).created(request, tenant, sub_id, incoming.body, incoming.context, ctx)
    return Response(status_code=201, headers={"Location": f"{API}/subscriptions/{quote(sub_id, safe=':/')}"})


@router.get("/subscriptions")
async def query_subscriptions(request: Request, tenant: TenantDep = "") -> Response:
    """Query Subscriptions (6.10.3.2): 200 with an array; limit, offset, count; Link to the other pages (6.3.10)."""
    deps.check_params(request)
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    svc = service(request)
    subs, total = await svc.query(tenant, page.limit, page.offset)
    payload = [await svc.present(s, value, ctx) for s in subs]
    headers = {"NGSILD-Results-Count": str(total)} if page.count else None
    response = json_response(payload, media=media, context=value, headers=headers)
    return add_links(response, page_links(request, page, total, media))


@router.get("/subscriptions/{sub_id:path}")
async def retrieve_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Subscription (6.11.3.1): 200, 400, 404."""
    deps.check_params(request)
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    svc = service(request)
    await broker_state(request).subscriptions.settle(tenant, sub_id)
    stored = await svc.get(tenant, sub_id)
    return json_response(await svc.present(stored, value, ctx), media=media, context=value)


@router.patch("/subscriptions/{sub_id:path}")
async def update_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update Subscription (6.11.3.2): 204, 400, 404."""
    deps.check_params(request)
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    await service(request).update(tenant, sub_id, incoming.body, incoming.context, ctx)
    await relay_of(request).updated(request, tenant, sub_id, incoming.body, incoming.context)  # federation: 5.8.2.4
    return no_content()


@router.delete("/subscriptions/{sub_id:path}")
async def delete_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Subscription (6.11.3.3): 204, 400, 404."""
    deps.check_params(request)
    await service(request).delete(tenant, sub_id)
    await relay_of(request).deleted(request, tenant, sub_id)  # federation: the copies at the sources
    return no_content()
