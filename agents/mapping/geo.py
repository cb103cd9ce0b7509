"""geo:point, geo:json and GeoJSON types to an NGSI-LD GeoProperty value.

A `geo:point` is "lat, lng" (NGSI v2); NGSI-LD wants GeoJSON [lng, lat]. The
FIWARE agent keeps [lat, lng]; ours swaps, for the string and for a two-number
array under `geo:point`. Under `geo:json` and the GeoJSON type names an array
is already GeoJSON order.
"""

from __future__ import annotations

from typing import Any

import orjson

from models.geojson import validate_geometry

__all__ = ["GEO_TYPES", "is_geo_type", "to_geojson"]

GEO_TYPES = {
    "geo:point", "geo:json", "geoproperty", "point", "linestring", "polygon", "multipoint",
    "multilinestring", "multipolygon", "geo:line", "geo:polygon",
}


def is_geo_type(type_name: str | None) -> bool:
    return (type_name or "").lower() in GEO_TYPES


def _pair(text: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not 'lat, lng'")
    lat, lng = float(parts[0]), float(parts[1])
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError(f"{text!r} is out of range for 'lat, lng'")
    return [lng, lat]


def to_geojson(type_name: str, value: Any) -> dict[str, Any]:
    """The GeoJSON geometry of a value; ValueError when it is not one."""
    kind = type_name.lower()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = orjson.loads(text)
        else:
            return {"type": "Point", "coordinates": _pair(text)}
    if isinstance(value, list):
        if len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            coords = [value[1], value[0]] if kind == "geo:point" else list(value)
            geometry = {"type": "Point", "coordinates": coords}
        elif kind in ("linestring", "polygon", "multipoint", "multilinestring", "multipolygon"):
            names = {"linestring": "LineString", "polygon": "Polygon", "multipoint": "MultiPoint",
                     "multilinestring": "MultiLineString", "multipolygon": "MultiPolygon"}
            geometry = {"type": names[kind], "coordinates": value}
        else:
            raise ValueError(f"{value!r} is not a position")
    elif isinstance(value, dict):
        geometry = value
    else:
        raise ValueError(f"{value!r} is not a geometry")
    try:
        validate_geometry(geometry)
    except Exception as exc:  # noqa: BLE001 - any invalid geometry is a bad measure
        raise ValueError(str(exc)) from None
    return geometry
