"""One provisioned attribute type + one value -> one NGSI-LD attribute (normalized).

Types follow iotagent-node-lib in NGSI-LD mode: numbers (Number, Float,
Double, Integer), Boolean, Text/String, DateTime/Date/Time, Relationship,
geo types (see geo), LanguageProperty, structured values; any other type
passes the value through as a Property. ValueError means a value of the wrong
type for its attribute, which the engine reports as `wrong_type`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from agents.mapping.geo import is_geo_type, to_geojson
from agents.mapping.timestamps import to_utc

__all__ = ["to_attribute", "metadata_members"]

_NUMBER = {"number", "float", "double", "decimal"}
_INTEGER = {"integer", "int", "long"}
_BOOLEAN = {"boolean", "bool"}
_TEXT = {"text", "string"}
_DATETIME = {"datetime", "date", "time", "iso8601"}
_STRUCTURED = {"structuredvalue", "object", "json", "array", "list"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if number.is_integer() and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(number)
    else:
        raise ValueError(f"a {type(value).__name__} is not a number")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _integer(value: Any) -> int:
    number = _number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        number = int(number)
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{value!r} is not a boolean")


def metadata_members(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Provisioned metadata as NGSI-LD members: `unitCode` stays a member, others become sub-Properties."""
    out: dict[str, Any] = {}
    for name, meta in (metadata or {}).items():
        value = meta.get("value") if isinstance(meta, dict) and "value" in meta else meta
        if name == "unitCode":
            out["unitCode"] = str(value)
        elif name in ("observedAt", "datasetId"):
            out[name] = value
        elif isinstance(meta, dict) and str(meta.get("type", "")).lower() == "relationship":
            out[name] = {"type": "Relationship", "object": value}
        else:
            out[name] = {"type": "Property", "value": value}
    return out


def to_attribute(type_name: str | None, value: Any, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The NGSI-LD attribute for a value of a provisioned type."""
    kind = (type_name or "").strip().lower()
    attr: dict[str, Any]
    if kind == "relationship":
        if not isinstance(value, str) or not _URI.match(value.strip()):
            raise ValueError(f"{value!r} is not a URI for a Relationship")
        attr = {"type": "Relationship", "object": value.strip()}
    elif is_geo_type(kind):
        attr = {"type": "GeoProperty", "value": to_geojson(kind, value)}
    elif kind == "languageproperty":
        if not isinstance(value, dict):
            raise ValueError(f"{value!r} is not a language map")
        attr = {"type": "LanguageProperty", "languageMap": value}
    elif kind in _NUMBER:
        attr = {"type": "Property", "value": _number(value)}
    elif kind in _INTEGER:
        attr = {"type": "Property", "value": _integer(value)}
    elif kind in _BOOLEAN:
        attr = {"type": "Property", "value": _boolean(value)}
    elif kind in _TEXT:
        if isinstance(value, (dict, list)):
            raise ValueError(f"a {type(value).__name__} is not text")
        attr = {"type": "Property", "value": value if isinstance(value, str) else orjson.dumps(value).decode()}
    elif kind in _DATETIME:
        attr = {"type": "Property", "value": {"@type": "DateTime", "@value": to_utc(value)}}
    elif kind in _STRUCTURED and isinstance(value, str):
        try:
            attr = {"type": "Property", "value": orjson.loads(value)}
        except orjson.JSONDecodeError:
            raise ValueError(f"{value[:40]!r} is not JSON") from None
    else:
        attr = {"type": "Property", "value": value}
    attr.update(metadata_members(metadata))
    return attr
