"""What brokers call on the agent for commands: module-level routes over the provisioning app's typed state.

    PATCH|PUT /ngsi-ld/v1/entities/{id}/attrs[/{attr}]   an update a broker forwards to the registered agent
    POST      /notify?service=&subservice=                 a notification of the agent's subscription to a command

Both run the command through the CommandService on `ProvisioningState.commands` (agents.provisioning.state);
the provisioning app includes this router when the agent runs one (agents.runtime).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agents.commands.northbound import value_of
from agents.commands.service import CommandService
from agents.provisioning.state import provisioning_state
from models.media import API

__all__ = ["router"]

router = APIRouter()


def _problem(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": kind, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _commands(request: Request) -> CommandService:
    service = provisioning_state(request).commands
    if service is None:  # the router is only included with a command service (create_provisioning_app)
        raise RuntimeError("the provisioning app has no command service")
    return service


async def update(request: Request, entity_id: str, attr: str | None = None) -> Response:
    """A command update forwarded by a broker to the agent registered for the device's commands."""
    tenant = request.headers.get("NGSILD-Tenant") or request.headers.get("fiware-service") or ""
    path = request.headers.get("NGSILD-Path") or request.headers.get("fiware-servicepath")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _problem(400, "InvalidRequest", "the body is not JSON")
    if not isinstance(body, dict):
        return _problem(400, "BadRequestData", "the body must be a JSON object")
    values = {attr: value_of(body)} if attr is not None else {
        k: value_of(v) for k, v in body.items() if k not in ("id", "type", "@context")}
    ran = await _commands(request).execute(tenant, path if path not in (None, "/*") else None, entity_id, values)
    if not ran:
        return _problem(404, "ResourceNotFound", f"no command of a device of entity {entity_id!r} in {sorted(values)}")
    return Response(status_code=204)


for _method in ("PATCH", "PUT"):
    router.add_api_route(API + "/entities/{entity_id}/attrs", update, methods=[_method])
    router.add_api_route(API + "/entities/{entity_id}/attrs/{attr}", update, methods=[_method])


@router.post("/notify")
async def notify(request: Request) -> Response:
    """A notification of a subscription the agent made on a device's command attributes."""
    tenant = request.query_params.get("service", "")
    path = request.query_params.get("subservice")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _problem(400, "InvalidRequest", "the body is not JSON")
    data = body.get("data") if isinstance(body, dict) else None
    commands = _commands(request)
    for entity in data if isinstance(data, list) else []:
        if isinstance(entity, dict) and isinstance(entity.get("id"), str):
            values = {k: value_of(v) for k, v in entity.items() if k not in ("id", "type", "@context")}
            await commands.execute(tenant, path, entity["id"], values)
    return Response(status_code=204)
