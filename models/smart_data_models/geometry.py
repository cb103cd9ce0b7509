"""The `location` of the Smart Data Models common schema: one of six GeoJSON geometries.

common-schema.json (Location-Commons) accepts exactly one of Point,
LineString, Polygon, MultiPoint, MultiLineString and MultiPolygon, each an
object with `type` and `coordinates` and an optional `bbox` of at least four
numbers. Its rules are looser than GeoJSON's (rings need four positions but
need not be closed; positions need two numbers, not a range of latitudes):
this module follows the schema, since vendors' payloads are judged by it.
The NGSI-LD broker applies its own, stricter GeoJSON rules on top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from models.smart_data_models.fields import Path, fail, is_number

GEOMETRY_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")

Check = Callable[[Any, Path], None]


def _array(item: Check | None, min_items: int = 0) -> Check:
    def check(v: Any, path: Path) -> None:
        if not isinstance(v, list):
            raise fail("oneOf", f"{_where(path)} must be an array", path)
        if len(v) < min_items:
            raise fail("oneOf", f"{_where(path)} has {len(v)} items, at least {min_items} are required", path)
        if item is not None:
            for i, x in enumerate(v):
                item(x, [*path, i])

    return check


def _number(v: Any, path: Path) -> None:
    if not is_number(v):
        raise fail("oneOf", f"{_where(path)} must be a number, got {v!r}", path)


def _where(path: Path) -> str:
    return "location" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


_POSITION = _array(_number, 2)
_COORDINATES: dict[str, Check] = {
    "Point": _array(_number, 2),
    "LineString": _array(_POSITION, 2),
    "Polygon": _array(_array(_POSITION, 4)),
    "MultiPoint": _array(_POSITION),
    "MultiLineString": _array(_array(_POSITION, 2)),
    "MultiPolygon": _array(_array(_array(_POSITION, 4))),
}
_BBOX = _array(_number, 4)


def check_location(v: Any) -> Any:
    """Return v if it is one of the six geometries of Location-Commons, else a `oneOf` error."""
    if not isinstance(v, dict):
        raise fail("oneOf", f"location must be a GeoJSON geometry object, got {v!r}")
    kind = v.get("type")
    if kind not in _COORDINATES:
        raise fail("oneOf", f"location type {kind!r} is not one of {list(GEOMETRY_TYPES)}", ["type"])
    if "coordinates" not in v:
        raise fail("oneOf", f"the {kind} has no coordinates", [])
    _COORDINATES[kind](v["coordinates"], ["coordinates"])
    if "bbox" in v:
        _BBOX(v["bbox"], ["bbox"])
    return v


def is_location(v: Any) -> bool:
    """Whether v would be accepted as a Smart Data Models location."""
    try:
        check_location(v)
    except Exception:  # noqa: BLE001 - a PydanticCustomError means "no"
        return False
    return True


Location = Annotated[Any, BeforeValidator(lambda v: v), AfterValidator(check_location)]
