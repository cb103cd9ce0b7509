"""/iot/groups, its older alias /iot/services, and /iot/configGroups: service groups."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agents.provisioning import schemas
from agents.provisioning.deps import body, page, query, scope
from agents.provisioning.errors import DuplicateGroup, GroupNotFound
from agents.registry import Duplicate, Registry

#: path -> the member holding the groups in bodies and answers
PATHS = {"/iot/groups": "groups", "/iot/services": "services", "/iot/configGroups": "configGroups"}
_API_TO_STORED = {"type": "entity_type"}


def _stored(group: dict, service: str, subservice: str) -> dict:
    doc = {_API_TO_STORED.get(k, k): v for k, v in group.items() if k not in ("service", "subservice")}
    doc["service"], doc["subservice"] = service, subservice
    return doc


def router(registry: Registry) -> APIRouter:
    api = APIRouter()

    for path, key in PATHS.items():

        async def list_groups(request: Request, key: str = key) -> JSONResponse:
            service, subservice = scope(request)
            limit, offset = page(request)
            result = await registry.list_groups(service, None if subservice == "/*" else subservice, limit, offset)
            return JSONResponse({"count": result.count, key: result.items})

        async def create_groups(request: Request, key: str = key) -> JSONResponse:
            service, subservice = scope(request)
            items = [_stored(g, service, subservice) for g in schemas.groups(await body(request), key)]
            seen: set[tuple[str, str]] = set()
            for g in items:
                pair = (g["resource"], g["apikey"])
                if pair in seen:
                    raise DuplicateGroup(*pair)
                seen.add(pair)
            try:
                await registry.create_groups(service, subservice, items)
            except Duplicate as exc:
                resource, _, apikey = str(exc).partition("|")
                raise DuplicateGroup(resource, apikey) from None
            return JSONResponse({}, status_code=201)

        async def update_group(request: Request) -> Response:
            service, subservice = scope(request)
            resource, apikey = query(request, "resource", "apikey")
            changes = schemas.group_update(await body(request))
            current = await registry.get_group(service, subservice, resource, apikey)
            if current is None:
                raise GroupNotFound(["service", "subservice", "resource", "apikey"], [service, subservice, resource, apikey])
            updated = {**current, **_stored(changes, service, subservice)}
            updated["resource"], updated["apikey"] = resource, apikey  # the key of a group does not change
            await registry.replace_group(service, subservice, resource, apikey, updated)
            return Response(status_code=204)

        async def delete_group(request: Request) -> Response:
            service, subservice = scope(request)
            resource, apikey = query(request, "resource", "apikey")
            if not await registry.delete_group(service, subservice, resource, apikey):
                raise GroupNotFound(["service", "subservice", "resource", "apikey"], [service, subservice, resource, apikey])
            return Response(status_code=204)

        api.add_api_route(path, list_groups, methods=["GET"])
        api.add_api_route(path, create_groups, methods=["POST"])
        api.add_api_route(path, update_group, methods=["PUT"])
        api.add_api_route(path, delete_group, methods=["DELETE"])
    return api
