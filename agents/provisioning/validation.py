"""Provisioning refuses configurations that could never work, naming the field.

`schemas` checks the shapes iotagent-node-lib's templates require; this
module checks what they do not, and what would otherwise make a device fail
silently on its first measure:

- a static attribute whose value its type cannot take (`geo:point` "abc");
- an `entity_name` (or `entity_type`) that gives no URI once prefixed
  `urn:ngsi-ld:<Type>:` (spaces, quotes ...), and attribute names that are no NGSI-LD name (4.6.2);
- a transport the agents do not speak (LoRaWAN: not built yet);
- a `cbroker` that is no http(s) URL, or on which nothing answers (a TCP connection is tried,
  METROPOLE_AGENT_CHECK_CBROKER=false turns that part off).

Each failure is a 400 BAD_REQUEST whose body names the field (`field`).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from agents.mapping.attributes import attribute_builder
from agents.mapping.engine import entity_id
from agents.provisioning.errors import InvalidField
from models.validation import is_name, is_uri

__all__ = ["TRANSPORTS", "check_cbroker", "check_device", "check_group"]

#: transports the agents speak, by their provisioning name (compared case-insensitively)
TRANSPORTS = ("MQTT", "HTTP")
_LATER = {"LORAWAN": "LoRaWAN devices are not supported yet (their codecs are being built); provision them when"
                     " a release lists LoRaWAN among its transports"}


def _transport(doc: dict[str, Any], where: str) -> None:
    value = doc.get("transport")
    if value is None:
        return
    upper = str(value).upper()
    if upper in _LATER:
        raise InvalidField(f"{where}.transport", f"transport {value!r}: {_LATER[upper]}")
    if upper not in TRANSPORTS:
        raise InvalidField(f"{where}.transport", f"transport {value!r} is not one of {', '.join(TRANSPORTS)}")


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


def check_group(group: dict[str, Any], where: str) -> None:
    """Raise InvalidField for what would make every device of the group fail (the cbroker aside)."""
    _transport(group, where)
    _entity_type(group, where)
    _names(group, where)
    _statics(group, where)
    cbroker = group.get("cbroker") or group.get("cbHost")
    if cbroker:
        parts = urlsplit(str(cbroker))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidField(f"{where}.cbroker", f"cbroker {cbroker!r} is not an http(s) URL of an NGSI-LD broker")


def check_device(device: dict[str, Any], where: str, group: dict[str, Any] | None = None) -> None:
    """Raise InvalidField for what would make the device fail on its first measure."""
    _transport(device, where)
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
