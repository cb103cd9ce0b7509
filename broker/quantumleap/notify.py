"""POST /v2/notify bodies -> temporal entities for TemporalService.write.

NGSI-v2 (Orion): {"subscriptionId": ..., "data": [{"id", "type", "<attr>": {"type", "value", "metadata"}}]}
NGSI-LD:         {"type": "Notification", "notifiedAt": ..., "data": [normalized entities]}

QuantumLeap gives every entity of a notification one time index (its
"Fiware-TimeIndex-Attribute" header attribute, else the TimeInstant
attribute, else the newest TimeInstant/dateModified metadata, else
dateModified, else the time of arrival); it becomes the observedAt of each
attribute instance, so that the rows of one notification line up and a
notification delivered twice is stored once (history is unique on the
instance's observedAt). NGSI-LD instances keep their own observedAt, else
take their modifiedAt, else the notification's notifiedAt.

A v2 entity id that is not a URI ("Room1") is kept as urn:ngsi-v2:<type>:<id>
(the broker's history needs URIs) and shown back as "Room1" by the /v2 API.

Values are cast as QuantumLeap casts them into its columns
(src/translators/sql_translator.py:540-640): Number to float, Integer to
int, Boolean from "true"/"false"/1/0, Text to text; a value that does not
cast is not recorded (QuantumLeap stores NULL). A DateTime (or ISO8601)
value is kept as an NGSI-LD DateTime, {"@type": "DateTime", "@value": ...},
which the /v2 API shows back as QuantumLeap's ISO text and the NGSI-LD API
as a DateTime.
"""

from __future__ import annotations

from typing import Any

from broker.quantumleap.errors import QLError
from broker.service.patch import utc_now
from broker.temporal.model import to_us
from models.errors import BadRequestData
from models.geojson import is_geometry
from models.validation import is_uri
from models.vocabulary import ATTRIBUTE_TYPES, ENTITY_CORE

V2_PREFIX = "urn:ngsi-v2:"
V2_GEO = frozenset({"geo:point", "geo:line", "geo:polygon", "geo:box", "geo:json"})


def stored_id(entity_id: str, entity_type: str) -> str:
    """The history id of a v2 entity id."""
    return entity_id if is_uri(entity_id) else f"{V2_PREFIX}{entity_type}:{entity_id}"


def shown_id(stored: str) -> str:
    """The id the /v2 API shows for a history id."""
    if stored.startswith(V2_PREFIX):
        rest = stored.removeprefix(V2_PREFIX)
        return rest.split(":", 1)[1] if ":" in rest else rest
    return stored


def is_ld_notification(body: dict[str, Any]) -> bool:
    """Whether a notification body is NGSI-LD's (clause 5.3.1) rather than Orion's NGSI-v2 one."""
    return body.get("type") == "Notification" or "notifiedAt" in body or "@context" in body


def _bad(description: str) -> QLError:
    return QLError(400, "Bad Request", description)


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # the integers orjson reads and writes as integers


def as_orjson_reads(value: Any, name: str) -> Any:
    """`value` with its integers past 64 bits as the nearest floats, as orjson (so the NGSI-LD API) reads them.

    parse() gives a body holding a run of 19 digits to json.loads, which keeps such an integer exact (a Text
    keeps its digits); anywhere else a stored instance could not hold it (orjson writes no integer past 64 bits:
    the notification was a 500, lost). One past the float range is refused, as orjson refuses it."""
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            raise _bad(f"attribute {name}: a number out of range (beyond a 64-bit float)") from None
    if type(value) is list:
        return [as_orjson_reads(v, name) for v in value]
    if type(value) is dict:
        return {k: as_orjson_reads(v, name) for k, v in value.items()}
    return value


def _pairs(text: Any, what: str) -> list[list[float]]:
    """'lat, lon; lat, lon' (NGSI-v2 simple location format) -> [[lon, lat], ...]."""
    if not isinstance(text, str) and not (isinstance(text, list) and all(isinstance(t, str) for t in text)):
        raise _bad(f"{what} must be 'latitude, longitude' text, got {text!r}")
    items = text if isinstance(text, list) else text.split(";")
    out = []
    for item in items:
        parts = [p.strip() for p in item.split(",")]
        try:
            if len(parts) != 2:
                raise ValueError
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError:
            raise _bad(f"{what}: malformed point {item!r}, expected 'latitude, longitude'") from None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise _bad(f"{what}: point {item!r} is out of range")
        out.append([lon, lat])
    return out


def v2_geometry(kind: str, value: Any, name: str) -> dict[str, Any]:
    """A GeoJSON geometry from an NGSI-v2 geo:* attribute value; 400 when malformed (QuantumLeap: 500)."""
    what = f"attribute {name!r} ({kind})"
    if kind == "geo:json":
        if not is_geometry(value):
            raise _bad(f"{what} must hold a GeoJSON geometry")
        return value
    points = _pairs(value, what)
    if kind == "geo:point":
        if len(points) != 1:
            raise _bad(f"{what} must hold one point")
        return {"type": "Point", "coordinates": points[0]}
    if kind == "geo:line":
        if len(points) < 2:
            raise _bad(f"{what} needs at least two points")
        return {"type": "LineString", "coordinates": points}
    if kind == "geo:box":
        if len(points) != 2:
            raise _bad(f"{what} needs two corners")
        (x1, y1), (x2, y2) = points
        return {"type": "Polygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]}
    if len(points) < 4 or points[0] != points[-1]:
        raise _bad(f"{what} needs a closed ring of at least four points")
    return {"type": "Polygon", "coordinates": [points]}


def _meta_time(attr: Any, *names: str) -> str | None:
    if not isinstance(attr, dict) or not isinstance(attr.get("metadata"), dict):
        return None
    for n in names:
        m = attr["metadata"].get(n)
        value = m.get("value") if isinstance(m, dict) else None
        if isinstance(value, str):
            return value
    return None


def _attr_time(entity: dict[str, Any], name: str | None) -> str | None:
    attr = entity.get(name) if name else None
    value = attr.get("value") if isinstance(attr, dict) else attr
    return value if isinstance(value, str) and value else None


def _checked_time(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        to_us(text)
    except BadRequestData:
        return None
    return text


def v2_time_index(entity: dict[str, Any], header_attr: str | None, now: str) -> str:
    """The time index QuantumLeap would give this v2 entity."""
    for candidate in (_attr_time(entity, header_attr), _attr_time(entity, "TimeInstant")):
        checked = _checked_time(candidate)
        if checked:
            return checked
    found = [_checked_time(_meta_time(a, "TimeInstant", "timestamp", "dateModified")) for k, a in entity.items() if k not in ("id", "type")]
    metas = [m for m in found if m]
    if metas:
        return max(metas, key=to_us)
    return _checked_time(_attr_time(entity, "dateModified")) or now


def v2_entity(entity: Any, header_attr: str | None, now: str) -> dict[str, Any]:
    """A temporal NGSI-LD entity (one instance per attribute) of an NGSI-v2 notified entity."""
    if not isinstance(entity, dict):
        raise _bad("notified entities must be JSON objects")
    if not isinstance(entity.get("type"), str) or not entity["type"]:
        raise _bad("Entity type is required in notifications")
    if not isinstance(entity.get("id"), str) or not entity["id"]:
        raise _bad("Entity id is required in notifications")
    stamp = v2_time_index(entity, header_attr, now)
    out: dict[str, Any] = {"id": stored_id(entity["id"], entity["type"]), "type": entity["type"]}
    for name, attr in entity.items():
        if name in ("id", "type"):
            continue
        if not isinstance(attr, dict):
            attr = {"value": attr}
        kind, value = attr.get("type"), attr.get("value")
        if value is None or value == "":
            continue  # nothing to record (QuantumLeap stores a NULL cell; a row of ours has a value)
        inst: dict[str, Any]
        if kind in V2_GEO or (name == "location" and is_geometry(value)):
            inst = {"type": "GeoProperty", "value": v2_geometry(kind if kind in V2_GEO else "geo:json", value, name)}
        elif kind in ("Relationship", "Reference") and isinstance(value, str) and is_uri(value):
            inst = {"type": "Relationship", "object": value}
        else:
            cast = cast_v2_value(kind, value)
            if cast is None:
                continue
            inst = {"type": "Property", "value": as_orjson_reads(cast, name)}
        unit = (attr.get("metadata") or {}).get("unitCode") if isinstance(attr.get("metadata"), dict) else None
        if isinstance(unit, dict) and isinstance(unit.get("value"), str) and inst["type"] == "Property":
            inst["unitCode"] = unit["value"]
        inst["observedAt"] = stamp
        out[name] = inst
    return out


def cast_v2_value(kind: Any, value: Any) -> Any:
    """A v2 value cast as QuantumLeap casts it for its column type; None when it does not cast."""
    try:
        if kind == "Number":
            return None if isinstance(value, bool) else float(value)
        if kind == "Integer":
            return None if isinstance(value, bool) else int(float(value))
    except (TypeError, ValueError):
        return None
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return None
    if kind in ("DateTime", "ISO8601"):
        return {"@type": "DateTime", "@value": value} if isinstance(value, str) and _checked_time(value) else None
    if kind == "Text":
        return str(value)
    return value


def ld_entity(entity: Any, notified_at: str) -> dict[str, Any]:
    """A temporal NGSI-LD entity of a notified NGSI-LD entity: every instance gets an observedAt."""
    if not isinstance(entity, dict) or not entity.get("id") or not entity.get("type"):
        raise _bad("notified entities must be JSON objects with an id and a type")
    out: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for name, attr in entity.items():
        if name in ENTITY_CORE:
            continue
        instances = attr if isinstance(attr, list) else [attr]
        shown = []
        for inst in instances:
            if not isinstance(inst, dict) or not isinstance(inst.get("type"), str) or inst["type"] not in ATTRIBUTE_TYPES:
                inst = {"type": "GeoProperty" if is_geometry(inst) else "Property", "value": inst}
            inst = as_orjson_reads(inst, name)
            if not _checked_time(inst.get("observedAt")):
                inst["observedAt"] = _checked_time(inst.get("modifiedAt")) or notified_at
            shown.append(inst)
        out[name] = shown if len(shown) > 1 else shown[0]
    return out


def now() -> str:
    """The arrival time of a notification, the time index of last resort."""
    return utc_now()
