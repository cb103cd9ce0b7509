"""Provisioning refuses configurations that could never work, naming the field.

`schemas` checks the shapes iotagent-node-lib's templates require; this
module checks what they do not, and what would otherwise make a device fail
silently on its first measure:

- a static attribute whose value its type cannot take (`geo:point` "abc");
- an `entity_name` (or `entity_type`) that gives no URI once prefixed
  `urn:ngsi-ld:<Type>:` (spaces, quotes ...), and attribute names that are no NGSI-LD name (4.6.2);
- a transport the agents do not speak;
- a LoRaWAN device or group (`transport` LORAWAN, or `internal_attributes.lorawan`, IoTagent-LoRaWAN's
  shape: agents.lorawan.provisioning) whose DevEUI, codec, network server or application is missing or
  malformed, whose entity type is not its codec's, or that has commands its codec cannot encode;
- a `cbroker` that is no http(s) URL, or on which nothing answers (a TCP connection is tried,
  METROPOLE_AGENT_CHECK_CBROKER=false turns that part off).

Each failure is a 400 BAD_REQUEST whose body names the field (`field`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from agents.lorawan.catalog import codec_for
from agents.lorawan.provisioning import FIELD, LORAWAN, ConfError, conf, is_lorawan, is_lorawan_device, section
from agents.lorawan.tts import PRIORITIES
from agents.mapping.attributes import attribute_builder
from agents.mapping.engine import entity_id
from agents.provisioning.errors import InvalidField
from models.validation import is_name, is_uri

__all__ = ["TRANSPORTS", "check_cbroker", "check_device", "check_group", "lorawan_shortcuts"]

#: transports the agents speak, by their provisioning name (compared case-insensitively)
TRANSPORTS = ("MQTT", "HTTP", LORAWAN)
Servers = Mapping[str, Mapping[str, Any]]
_NO_SERVERS: Servers = MappingProxyType({})


def _transport(doc: dict[str, Any], where: str) -> None:
    value = doc.get("transport")
    if value is None:
        return
    upper = str(value).upper()
    if upper not in TRANSPORTS:
        raise InvalidField(f"{where}.transport", f"transport {value!r} is not one of {', '.join(TRANSPORTS)}")
    if section(doc) is not None and upper != LORAWAN:
        raise InvalidField(f"{where}.transport", f"a device or group with {FIELD} has transport {LORAWAN},"
                           f" not {value!r}")


def lorawan_shortcuts(doc: dict[str, Any]) -> dict[str, Any]:
    """A device with top-level `dev_eui` / `codec` (our shortcuts), with them moved into internal_attributes.lorawan.

    That is where IoTagent-LoRaWAN keeps a device's DevEUI, and where the registry and the agent read it.
    """
    moved = {k: doc[k] for k in ("dev_eui", "codec") if k in doc}
    if not moved:
        return doc
    out = {k: v for k, v in doc.items() if k not in moved}
    internal = out.get("internal_attributes")
    if isinstance(internal, list):
        items = [dict(i) if isinstance(i, dict) else i for i in internal]
        holder = next((i for i in items if isinstance(i, dict) and isinstance(i.get("lorawan"), dict)), None)
        if holder is None:
            holder = {"lorawan": {}}
            items.append(holder)
        holder["lorawan"] = {**holder["lorawan"], **moved}
        out["internal_attributes"] = items
        return out
    base = dict(internal) if isinstance(internal, dict) else {}
    current = base.get("lorawan")
    base["lorawan"] = {**(current if isinstance(current, dict) else {}), **moved}
    out["internal_attributes"] = base
    return out


def _lorawan(doc: dict[str, Any], where: str, group: dict[str, Any] | None, servers: Servers, *,
             is_device: bool) -> None:
    """A LoRaWAN device (with its group) or group: a provisioning its uplinks and commands can work with."""
    try:
        found = conf(doc if is_device else None, group if is_device else doc, servers, is_device=is_device)
    except ConfError as exc:
        raise InvalidField(f"{where}.{exc.field}", exc.message) from None
    sources = [(doc, where)] + ([(group, "group")] if is_device and group else [])
    if found.codec_id is None:
        for source, at in sources:
            if source.get("commands"):
                raise InvalidField(f"{at}.commands", "a device without a codec (data_model application_server)"
                                   " has nothing to encode its downlinks with: name its codec")
        return
    codec = codec_for(found.codec_id)
    for source, at in sources:
        entity_type = source.get("entity_type") or source.get("type")
        if entity_type and entity_type != codec.entity_type:
            raise InvalidField(f"{at}.entity_type", f"codec {codec.id!r} gives {codec.entity_type} entities, not"
                               f" {entity_type} (leave entity_type out, or give {codec.entity_type})")
    for source, at in sources:
        if source.get("commands") and codec.encode_downlink is None:
            raise InvalidField(f"{at}.commands", f"codec {codec.id!r} documents no downlink: its device cannot"
                               " take commands")
        for i, command in enumerate(source.get("commands") or []):
            options = command.get("lorawan") if isinstance(command, dict) else None
            if options is None:
                continue
            field = f"{at}.commands[{i}].lorawan"
            if not isinstance(options, dict):
                raise InvalidField(field, 'a command\'s lorawan options are {"confirmed": bool, "priority": ...}')
            if not isinstance(options.get("confirmed", False), bool):
                raise InvalidField(f"{field}.confirmed", "confirmed must be true or false")
            if options.get("priority", "NORMAL") not in PRIORITIES:
                raise InvalidField(f"{field}.priority", f"priority must be one of {', '.join(PRIORITIES)}")


def _names(doc: dict[str, Any], where: str) -> None:
    for key in ("attributes", "lazy", "commands", "static_attributes"):
        for i, item in enumerate(doc.get(key) or []):
            name = item.get("name")
            if isinstance(name, str) and not is_name(name):
                raise InvalidField(f"{where}.{key}[{i}].name",
                                   f"{name!r} is not an NGSI-LD attribute name (clause 4.6.2)")


def _statics(doc: dict[str, Any], where: str) -> None:
    for i, item in enumerate(doc.get("static_attributes") or []):
        if "value" not in item:
            continue
        try:
            attribute_builder(item.get("type"), item.get("metadata"))(item["value"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidField(f"{where}.static_attributes[{i}].value",
                               f"static attribute {item.get('name')!r} of type {item.get('type')!r}: {exc}") from None


def _entity_type(doc: dict[str, Any], where: str) -> None:
    for key in ("entity_type", "type"):
        value = doc.get(key)
        if isinstance(value, str) and value and not is_name(value):
            raise InvalidField(f"{where}.{key}", f"{value!r} is not an NGSI-LD type name (clause 4.6.2)")


def check_group(group: dict[str, Any], where: str, servers: Servers = _NO_SERVERS) -> None:
    """Raise InvalidField for what would make every device of the group fail (the cbroker aside)."""
    _transport(group, where)
    if is_lorawan(group):
        _lorawan(group, where, None, servers, is_device=False)
    _entity_type(group, where)
    _names(group, where)
    _statics(group, where)
    cbroker = group.get("cbroker") or group.get("cbHost")
    if cbroker:
        parts = urlsplit(str(cbroker))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidField(f"{where}.cbroker", f"cbroker {cbroker!r} is not an http(s) URL of an NGSI-LD broker")


def check_device(device: dict[str, Any], where: str, group: dict[str, Any] | None = None,
                 servers: Servers = _NO_SERVERS) -> None:
    """Raise InvalidField for what would make the device fail on its first measure."""
    _transport(device, where)
    if is_lorawan_device(device, group):
        _lorawan(device, where, group, servers, is_device=True)
    _entity_type(device, where)
    _names(device, where)
    _statics(device, where)
    name = device.get("entity_name")
    if name is not None:
        entity_type = device.get("entity_type") or (group or {}).get("entity_type") or "Thing"
        eid = entity_id(str(entity_type), str(name))
        if not is_uri(eid):
            raise InvalidField(f"{where}.entity_name", f"entity_name {name!r} gives the entity id {eid!r},"
                               " which is not a URI (no spaces, quotes or <>{}|\\^` in it)")


async def check_cbroker(url: str, field: str, timeout: float = 2.0) -> None:
    """Raise InvalidField when nothing accepts a connection at the broker's address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise InvalidField(field, f"nothing answers on cbroker {url!r} ({type(exc).__name__}: {exc or 'timeout'});"
                           " start the broker first, or set METROPOLE_AGENT_CHECK_CBROKER=false") from None
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
