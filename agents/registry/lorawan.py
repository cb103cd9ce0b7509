"""LoRaWAN lookups over the registry: a device's group, the device (or the groups) an uplink belongs to.

A LoRaWAN device is found by its DevEUI (`Registry.devices_by_dev_eui`), and
only where its provisioning agrees with what the network server says: the
same kind of network server and the same application (and TTS tenant, when
both say one). So an uplink on one application's topic can never feed a
device provisioned under another, even with a forged DevEUI.

A device's group is the one its apikey names (as for every device); a
device provisioned without an apikey, as IoTagent-LoRaWAN's documentation
provisions them, belongs to the group of its service and path that listens to
its application, if there is one (the group's cbroker, entity type and
attributes then apply to it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from agents.lorawan.envelope import Uplink
from agents.lorawan.provisioning import ConfError, LorawanConf, conf, section
from agents.registry.base import Registry
from models.vocabulary import Doc

__all__ = ["Found", "group_of", "groups_listening", "matches", "pick_group", "uplink_device"]

Servers = Mapping[str, Mapping[str, Any]]


class Found(NamedTuple):
    """A LoRaWAN device with its group and effective provisioning."""

    device: Doc
    group: Doc | None
    conf: LorawanConf


def _application(doc: Doc | None) -> Any:
    return (section(doc) or {}).get("application_id")


def pick_group(device: Doc, groups: list[Doc]) -> Doc | None:
    """A LoRaWAN device's group among `groups` (those of its apikey, or of its service and path)."""
    service = device.get("service", "")
    if device.get("apikey"):
        own = [g for g in groups if g.get("apikey") == device["apikey"] and g.get("service") == service]
        return next((g for g in own if section(g) is not None), own[0] if own else None)
    application = _application(device)
    if application is None:
        return None
    return next((g for g in groups if g.get("service") == service
                 and g.get("subservice", "/") == device.get("service_path", "/") and _application(g) == application),
                None)


async def group_of(registry: Registry, device: Doc) -> Doc | None:
    """The group of a LoRaWAN device: by its apikey, else the group of its service and path on its application."""
    if device.get("apikey"):
        return pick_group(device, await registry.groups_by_apikey(str(device["apikey"])))
    if _application(device) is None:
        return None
    service = device.get("service", "")
    return pick_group(device, (await registry.list_groups(service, device.get("service_path", "/"))).items)


def matches(found: LorawanConf, uplink: Uplink) -> bool:
    """Whether an uplink comes from where a provisioning listens: same network server kind and application."""
    if found.network != uplink.network or uplink.application is None:
        return False
    if found.application_id.lower() != uplink.application.lower():
        return False
    return not (found.tenant and uplink.tenant and found.tenant != uplink.tenant)


async def uplink_device(registry: Registry, uplink: Uplink, servers: Servers, service: str | None = None
                        ) -> Found | None:
    """The provisioned device an uplink is from (in `service` when given), None when none matches."""
    for device in await registry.devices_by_dev_eui(uplink.dev_eui):
        if service is not None and device.get("service") != service:
            continue
        group = await group_of(registry, device)
        try:
            found = conf(device, group, servers)
        except ConfError:
            continue  # provisioned before a setting it names went away: it cannot take uplinks
        if matches(found, uplink):
            return Found(device, group, found)
    return None


async def groups_listening(registry: Registry, uplink: Uplink, servers: Servers, service: str | None = None
                           ) -> list[tuple[Doc, LorawanConf]]:
    """The groups whose LoRaWAN application an uplink belongs to (where an unknown device is autoprovisioned)."""
    out: list[tuple[Doc, LorawanConf]] = []
    for group in await registry.all_groups():
        if section(group) is None or (service is not None and group.get("service") != service):
            continue
        try:
            found = conf(None, group, servers, is_device=False)
        except ConfError:
            continue
        if matches(found, uplink):
            out.append((group, found))
    return out
