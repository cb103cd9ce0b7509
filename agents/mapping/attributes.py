"""One provisioned attribute type + one value -> one NGSI-LD attribute (normalized).

Types follow iotagent-node-lib in NGSI-LD mode: numbers (Number, Float,
Double, Integer), Boolean, Text/String, DateTime/Date/Time, Relationship,
geo types (see geo), LanguageProperty, structured values; any other type
passes the value through as a Property. ValueError means a value of the wrong
type for its attribute, which the engine reports as `wrong_type`.

    build = attribute_builder("Float", {"unitCode": {"type": "Text", "value": "CEL"}})
    build("21.5")   # {"type": "Property", "value": 21.5, "unitCode": "CEL"}

A builder is made once per provisioned attribute (the type is resolved and
the metadata converted then), and called once per value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from agents.mapping.geo import is_geo_type, to_geojson
from agents.mapping.timestamps import to_utc

__all__ = ["Builder", "attribute_builder", "metadata_members"]

#: value -> a new NGSI-LD attribute dict (ValueError for a value of the wrong type)
Builder = Callable[[Any], dict[str, Any]]

_NUMBER = {"number", "float", "double", "decimal"}
_INTEGER = {"integer", "int", "long"}
_BOOLEAN = {"boolean", "bool"}
_TEXT = {"text", "string"}
_DATETIME = {"datetime", "date", "time", "iso8601"}
_STRUCTURED = {"structuredvalue", "object", "json", "array", "list"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")


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
        if number.is_integer() and _INTEGER_TEXT.fullmatch(value):
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


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"a {type(value).__name__} is not text")
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _structured(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError(f"{value[:40]!r} is not JSON") from None


def _datetime(value: Any) -> str:
    # A plain UTC string, the "DateTime string" of NGSI-LD clause 4.6.3 (see the engine's _observed_date_time).
    return to_utc(value)


def _relationship(value: Any) -> dict[str, Any]:
    if not isinstance(value, str) or not _URI.match(value.strip()):
        raise ValueError(f"{value!r} is not a URI for a Relationship")
    return {"type": "Relationship", "object": value.strip()}


def _geo_property(kind: str, value: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": to_geojson(kind, value)}


def _language_property(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a language map")
    return {"type": "LanguageProperty", "languageMap": value}


def _property(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _property_of(convert: Callable[[Any], Any], value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": convert(value)}


def _converter(kind: str) -> Builder:
    """The builder of a (lower-cased) type name, before metadata."""
    if kind == "relationship":
        return _relationship
    if is_geo_type(kind):
        return partial(_geo_property, kind)
    if kind == "languageproperty":
        return _language_property
    for names, convert in ((_NUMBER, _number), (_INTEGER, _integer), (_BOOLEAN, _boolean), (_TEXT, _text),
                           (_DATETIME, _datetime), (_STRUCTURED, _structured)):
        if kind in names:
            return partial(_property_of, convert)
    return _property


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


def attribute_builder(type_name: str | None, metadata: dict[str, Any] | None = None) -> Builder:
    """The function turning a value of a provisioned type (and metadata) into its NGSI-LD attribute."""
    convert = _converter((type_name or "").strip().lower())
    try:
        members: dict[str, Any] | None = metadata_members(metadata)
    except Exception:  # noqa: BLE001 - see below
        # Provisioning does not validate metadata: a malformed one fails each value it is used with, as
        # it always did, rather than the configuration.
        members = None
    if members == {}:
        return convert

    def build(value: Any) -> dict[str, Any]:
        attr = convert(value)
        # The members are shared by every attribute built here: their sub-Property dicts are never mutated
        # (the engine only adds top-level members, and the outbox serialises the entity).
        attr.update(members if members is not None else metadata_members(metadata))
        return attr

    return build
