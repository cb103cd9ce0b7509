"""/csourceRegistrations (clauses 6.8, 6.9) and /csourceSubscriptions (6.12, 6.13): thin handlers over the services."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.api.pagination import add_links, page_links
from broker.federation.csubs import CSourceSubscriptions
from broker.federation.service import RegistrationService
from broker.http import accepted_type, json_response, no_content
from broker.service.queries import Page
from broker.state import broker_state

router = APIRouter(prefix=API)


def registrations(request: Request) -> RegistrationService:
    """The registration service of this app."""
    return broker_state(request).registrations


@router.post("/csourceRegistrations")
async def create_registration(request: Request, tenant: TenantDep = "") -> Response:
    """Create Context Source Registration (6.8.3.1): 201 + Location, 400, 409."""
    incoming, ctx = await deps.read_entity_body(request)
    reg_id = await registrations(request).create(tenant, incoming.body, incoming.context, ctx)
    return Response(status_code=201, headers={"Location": f"{API}/csourceRegistrations/{quote(reg_id, safe=':/')}"})


@router.get("/csourceRegistrations")
async def query_registrations(request: Request, tenant: TenantDep = "") -> Response:
    """Query Context Source Registrations (6.8.3.2): 200 with an array; limit, offset, count, Link to other pages."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    svc = registrations(request)
    found = await svc.query(tenant, request.query_params, ctx)
    total = len(found)
    payload = [await svc.present(r, value, ctx) for r in found[page.offset:page.offset + page.limit]]
    headers = {"NGSILD-Results-Count": str(total)} if page.count else None
    response = json_response(payload, media=media, context=value, headers=headers)
    return add_links(response, page_links(request, page, total, media))


@router.get("/csourceRegistrations/{reg_id:path}")
async def retrieve_registration(reg_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Context Source Registration (6.9.3.1): 200, 400, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    svc = registrations(request)
    item = await svc.get(tenant, reg_id)
    return json_response(await svc.present(item, value, ctx), media=media, context=value)


@router.patch("/csourceRegistrations/{reg_id:path}")
async def update_registration(reg_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update Context Source Registration (6.9.3.2): 204, 400, 404."""
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    await registrations(request).update(tenant, reg_id, incoming.body, incoming.context, ctx)
    return no_content()


@router.delete("/csourceRegistrations/{reg_id:path}")
async def delete_registration(reg_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Context Source Registration (6.9.3.3): 204, 400, 404."""
    deps.check_params(request)
    await registrations(request).delete(tenant, reg_id)
    return no_content()


# ---------------------------------------------------------------- /csourceSubscriptions (6.12, 6.13)


def csubs(request: Request) -> CSourceSubscriptions:
    """The csource subscription service of this app."""
    return broker_state(request).csource_subscriptions


@router.post("/csourceSubscriptions")
async def create_csource_subscription(request: Request, tenant: TenantDep = "") -> Response:
    """Create Context Source Registration Subscription (6.12.3.1): 201 + Location, 400, 409."""
    incoming, ctx = await deps.read_entity_body(request)
    sub_id = await csubs(request).create(tenant, incoming.body, incoming.context, ctx)
    return Response(status_code=201, headers={"Location": f"{API}/csourceSubscriptions/{quote(sub_id, safe=':/')}"})


@router.get("/csourceSubscriptions")
async def query_csource_subscriptions(request: Request, tenant: TenantDep = "") -> Response:
    """Query Context Source Registration Subscriptions (6.12.3.2): limit, offset, count, Link to other pages."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    cfg = deps.settings(request)
    page = Page.from_params(request.query_params, cfg.default_limit, cfg.max_limit)
    svc = csubs(request)
    found = await svc.query(tenant)
    payload = [await svc.present(s, value, ctx) for s in found[page.offset:page.offset + page.limit]]
    headers = {"NGSILD-Results-Count": str(len(found))} if page.count else None
    response = json_response(payload, media=media, context=value, headers=headers)
    return add_links(response, page_links(request, page, len(found), media))


@router.get("/csourceSubscriptions/{sub_id:path}")
async def retrieve_csource_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve Context Source Registration Subscription (6.13.3.1): 200, 400, 404."""
    media = accepted_type(request)
    value, ctx = await deps.read_context(request)
    svc = csubs(request)
    return json_response(await svc.present(await svc.get(tenant, sub_id), value, ctx), media=media, context=value)


@router.patch("/csourceSubscriptions/{sub_id:path}")
async def update_csource_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update Context Source Registration Subscription (6.13.3.2): 204, 400, 404."""
    incoming, ctx = await deps.read_entity_body(request, patch=True)
    await csubs(request).update(tenant, sub_id, incoming.body, incoming.context, ctx)
    return no_content()


@router.delete("/csourceSubscriptions/{sub_id:path}")
async def delete_csource_subscription(sub_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete Context Source Registration Subscription (6.13.3.3): 204, 400, 404."""
    deps.check_params(request)
    await csubs(request).delete(tenant, sub_id)
    return no_content()
