"""/iot/groups, its older alias /iot/services, and /iot/configGroups: service groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agents.mqtt_auth import HASH_FIELD, bad_username, hash_password
from agents.provisioning import schemas
from agents.provisioning.deps import body, page, query, scope
from agents.provisioning.errors import DuplicateGroup, GroupNotFound, InvalidField
from agents.provisioning.hooks import Hooks
from agents.provisioning.state import provisioning_state
from agents.provisioning.validation import check_cbroker, check_group
from agents.registry import Duplicate
from agents.settings import origin

#: path -> the member holding the groups in bodies and answers
PATHS = {"/iot/groups": "groups", "/iot/services": "services", "/iot/configGroups": "configGroups"}
_API_TO_STORED = {"type": "entity_type"}


def _stored(group: dict[str, Any], service: str, subservice: str) -> dict[str, Any]:
    doc = {_API_TO_STORED.get(k, k): v for k, v in group.items() if k not in ("service", "subservice", HASH_FIELD)}
    doc["service"], doc["subservice"] = service, subservice
    if "mqtt_password" in doc:  # only its hash is kept (agents/mqtt_auth.py); null removes it
        clear = doc.pop("mqtt_password")
        doc[HASH_FIELD] = hash_password(clear) if clear else None
    return doc


def _shown(group: dict[str, Any]) -> dict[str, Any]:
    """A stored group as the API answers it: never the MQTT password, nor its hash."""
    return {k: v for k, v in group.items() if k != HASH_FIELD}


def _check_mqtt(group: dict[str, Any], where: str) -> None:
    name = group.get("mqtt_username")
    why = bad_username(name) if isinstance(name, str) else None
    if why and isinstance(name, str):
        raise InvalidField(f"{where}.mqtt_username", f"mqtt_username {name[:200]!r} cannot be an MQTT username: {why}")


async def _checked(group: dict[str, Any], where: str, hooks: Hooks) -> None:
    check_group(group, where, hooks.lorawan_servers)
    _check_mqtt(group, where)
    cbroker = group.get("cbroker") or group.get("cbHost")
    if cbroker and hooks.allowed_cbrokers is not None and origin(str(cbroker)) not in hooks.allowed_cbrokers:
        raise InvalidField(f"{where}.cbroker", f"cbroker {str(cbroker)[:200]!r} is not a broker this agent may post "
                           "device data to (METROPOLE_AGENT_CBROKER_ALLOWED; by default the agent's own broker only)")
    if cbroker and hooks.check_cbroker:
        await check_cbroker(str(cbroker), f"{where}.cbroker")


def _key(request: Request) -> str:
    """The member holding the groups on the path this request came by (the route's, whatever the URL's form)."""
    return PATHS[request.scope["route"].path]


async def list_groups(request: Request) -> JSONResponse:
    """The groups of the service (of its path, or every path for `/*`), paged."""
    service, subservice = scope(request)
    key, registry = _key(request), provisioning_state(request).registry
    limit, offset = page(request)
    result = await registry.list_groups(service, None if subservice == "/*" else subservice, limit, offset)
    return JSONResponse({"count": result.count, key: [_shown(g) for g in result.items]})

async def create_groups(request: Request) -> JSONResponse:
    """Create groups (all or none: 409 on a (resource, apikey) taken, here or in the body)."""
    service, subservice = scope(request)
    key, state = _key(request), provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    items = [_stored(g, service, subservice) for g in schemas.groups(await body(request), key)]
    for i, g in enumerate(items):
        await _checked(g, f"{key}[{i}]", hooks)
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
    for g in items:
        await hooks.group_changed(None, g)
    return JSONResponse({}, status_code=201)

async def update_group(request: Request) -> Response:
    """Change the group ?resource=&apikey= (its key stays)."""
    service, subservice = scope(request)
    state = provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    resource, apikey = query(request, "resource", "apikey")
    changes = schemas.group_update(await body(request))
    current = await registry.get_group(service, subservice, resource, apikey)
    if current is None:
        raise GroupNotFound(["service", "subservice", "resource", "apikey"], [service, subservice, resource, apikey])
    updated = {**current, **_stored(changes, service, subservice)}
    updated["resource"], updated["apikey"] = resource, apikey  # the key of a group does not change
    if any(k in changes for k in ("cbroker", "cbHost")):
        await _checked(updated, "group", hooks)
    else:
        check_group(updated, "group", hooks.lorawan_servers)
        _check_mqtt(updated, "group")
    await registry.replace_group(service, subservice, resource, apikey, updated)
    await hooks.group_changed(current, updated)
    return Response(status_code=204)

async def delete_group(request: Request) -> Response:
    """Delete the group ?resource=&apikey=."""
    service, subservice = scope(request)
    state = provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    resource, apikey = query(request, "resource", "apikey")
    current = await registry.get_group(service, subservice, resource, apikey)
    if current is None or not await registry.delete_group(service, subservice, resource, apikey):
        raise GroupNotFound(["service", "subservice", "resource", "apikey"], [service, subservice, resource, apikey])
    await hooks.group_changed(current, None)
    return Response(status_code=204)


router = APIRouter()
"""The group routes, under the three paths the FIWARE agents answer on."""
for _path in PATHS:
    router.add_api_route(_path, list_groups, methods=["GET"])
    router.add_api_route(_path, create_groups, methods=["POST"])
    router.add_api_route(_path, update_group, methods=["PUT"])
    router.add_api_route(_path, delete_group, methods=["DELETE"])
