"""/ngsi-ld/v1/entityMaps/{id} (clause 6.32): retrieve, update and delete an EntityMap (broker.federation.entitymaps).

The routes live in broker.api, over the maps kept by broker.federation: federation does not import the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API, TenantDep
from broker.federation.entitymaps import maps
from broker.http import accepted_type, json_response, no_content

router = APIRouter(prefix=API)


@router.get("/entityMaps/{map_id:path}")
async def retrieve_entity_map(map_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Retrieve EntityMap (6.32.3.1): 200, 400, 404."""
    media = accepted_type(request)
    deps.check_params(request)
    value, _ = await deps.read_context(request)
    return json_response(await maps(request).get(tenant, map_id), media=media, context=value)


@router.patch("/entityMaps/{map_id:path}")
async def update_entity_map(map_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Update EntityMap (6.32.3.2): 204, 400, 404."""
    incoming, _ = await deps.read_entity_body(request, patch=True)
    await maps(request).update(tenant, map_id, incoming.body)
    return no_content()


@router.delete("/entityMaps/{map_id:path}")
async def delete_entity_map(map_id: str, request: Request, tenant: TenantDep = "") -> Response:
    """Delete EntityMap (6.32.3.3): 204, 400, 404."""
    deps.check_params(request)
    await maps(request).delete(tenant, map_id)
    return no_content()
