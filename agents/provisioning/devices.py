"""/iot/devices: provisioned devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agents.lorawan.provisioning import is_lorawan, section
from agents.provisioning import schemas
from agents.provisioning.deps import body, page, scope
from agents.provisioning.errors import BadRequest, DeviceNotFound, DuplicateDevEui, DuplicateDevice
from agents.provisioning.state import provisioning_state
from agents.provisioning.validation import check_device, lorawan_shortcuts
from agents.registry import Duplicate, Registry
from agents.registry.base import dev_eui_of
from agents.registry.lorawan import group_of

#: fields fixed at creation: they link the device to its entity (iotagent-node-lib refuses to change them)
_FIXED = ("device_id", "service", "service_path")


async def _group_of(registry: Registry, device: dict[str, Any]) -> dict[str, Any] | None:
    """The group a device's apikey names, if any (its entity_type completes the device's); a LoRaWAN device's group."""
    apikey = device.get("apikey")
    groups = await registry.groups_by_apikey(str(apikey)) if apikey else []
    group = groups[0] if groups else None
    if is_lorawan(device) or section(group) is not None:
        return await group_of(registry, device)
    return group


async def _dev_eui_free(registry: Registry, device: dict[str, Any]) -> None:
    """409 when another device has this device's DevEUI (the registry's unique index backs this up)."""
    eui = dev_eui_of(device)
    if eui is None:
        return
    for other in await registry.devices_by_dev_eui(eui):
        if (other.get("service"), other.get("service_path"), other.get("device_id")) != (
                device.get("service"), device.get("service_path"), device.get("device_id")):
            raise DuplicateDevEui(eui)


router = APIRouter()
"""The device routes."""


@router.get("/iot/devices")
async def list_devices(request: Request) -> JSONResponse:
    """The devices of the service (of its path, or every path for `/*`), paged."""
    service, subservice = scope(request)
    registry = provisioning_state(request).registry
    limit, offset = page(request)
    result = await registry.list_devices(service, None if subservice == "/*" else subservice, limit, offset)
    return JSONResponse({"count": result.count, "devices": result.items})


@router.post("/iot/devices")
async def create_devices(request: Request) -> JSONResponse:
    """Create devices (all or none: 409 on a device id or DevEUI taken, here or in the body)."""
    service, subservice = scope(request)
    state = provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    items = [{**lorawan_shortcuts(d), "service": service, "service_path": subservice}
             for d in schemas.devices(await body(request))]
    for i, d in enumerate(items):
        check_device(d, f"devices[{i}]", await _group_of(registry, d), hooks.lorawan_servers)
    seen: set[str] = set()
    euis: set[str] = set()
    for d in items:
        if d["device_id"] in seen or await registry.get_device(service, subservice, d["device_id"]) is not None:
            raise DuplicateDevice(d["device_id"])
        seen.add(d["device_id"])
        eui = dev_eui_of(d)
        if eui is not None:
            if eui in euis:
                raise DuplicateDevEui(eui)
            euis.add(eui)
            await _dev_eui_free(registry, d)
    for doc in items:
        try:
            await registry.create_device(doc)
        except Duplicate:
            if dev_eui_of(doc) is not None and await registry.get_device(service, subservice, doc["device_id"]) is None:
                raise DuplicateDevEui(str(dev_eui_of(doc))) from None
            raise DuplicateDevice(doc["device_id"]) from None
        await hooks.device_changed(None, doc)
    return JSONResponse({}, status_code=201)


@router.get("/iot/devices/{device_id}")
async def get_device(device_id: str, request: Request) -> JSONResponse:
    """One device."""
    service, subservice = scope(request)
    registry = provisioning_state(request).registry
    device = await registry.get_device(service, None if subservice == "/*" else subservice, device_id)
    if device is None:
        raise DeviceNotFound(device_id)
    return JSONResponse(device)


@router.put("/iot/devices/{device_id}")
async def update_device(device_id: str, request: Request) -> Response:
    """Change a device (its id, service and path stay)."""
    service, subservice = scope(request)
    state = provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    changes = schemas.device_update(await body(request))
    if "device_id" in changes and changes["device_id"] != device_id or "deviceId" in changes:
        raise BadRequest("Can't change the ID of a preprovisioned device")
    current = await registry.get_device(service, subservice, device_id)
    if current is None:
        raise DeviceNotFound(device_id)
    # top-level members replace the stored ones, as node-lib updates a device; then our LoRaWAN shortcuts
    updated = lorawan_shortcuts({**current, **{k: v for k, v in changes.items() if k not in _FIXED}})
    check_device(updated, "device", await _group_of(registry, updated), hooks.lorawan_servers)
    await _dev_eui_free(registry, updated)
    try:
        await registry.replace_device(updated)
    except Duplicate:
        raise DuplicateDevEui(str(dev_eui_of(updated))) from None
    await hooks.device_changed(current, updated)
    return Response(status_code=204)


@router.delete("/iot/devices/{device_id}")
async def delete_device(device_id: str, request: Request) -> Response:
    """Delete a device."""
    service, subservice = scope(request)
    state = provisioning_state(request)
    registry, hooks = state.registry, state.hooks
    current = await registry.get_device(service, subservice, device_id)
    if current is None or not await registry.delete_device(service, subservice, device_id):
        raise DeviceNotFound(device_id)
    await hooks.device_changed(current, None)
    return Response(status_code=204)
