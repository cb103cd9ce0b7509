"""GeoJSON geometries as NGSI-LD accepts them (ETSI GS CIM 009 V1.9.1 clauses 4.7, 4.10; IETF RFC 7946).

A GeoProperty value is a GeoJSON geometry object of one of the types in
`GEOMETRY_TYPES`; GeometryCollection is excluded by clause 4.7.1 (and by
clause 4.10 for reference geometries). Clause 4.7.2 also allows the whole
geometry encoded as a JSON string: `parse_geometry` accepts both forms.

Rules enforced (RFC 7946 section 3.1):

* a position is 2 or 3 finite JSON numbers [lng, lat(, alt)] with lng in
  [-180, 180] and lat in [-90, 90]; positions with more than 3 elements are
  rejected because RFC 7946 leaves their meaning unspecified and no NGSI-LD
  broker can index them;
* a LineString has at least 2 positions;
* a Polygon is a non-empty list of linear rings, each closed (first position
  equal to the last) with at least 4 positions; the right-hand winding rule
  is not enforced since RFC 7946 section 3.1.6 tells parsers not to reject
  rings that break it;
* Multi* geometries are lists of their single counterparts' coordinates
  (possibly empty, as RFC 7946 allows);
* an optional "bbox" member is an array of 2*n numbers; other foreign
  members are tolerated (RFC 7946 section 6.1).

This module is pure Python on purpose: models stay light, topology (shapely)
lives in the broker.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, TypeGuard

from models.errors import InvalidGeometry, InvalidQuery

GEOMETRY_TYPES: Final = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
"""GeoJSON geometry types NGSI-LD supports (clause 4.7.1: all but GeometryCollection)."""

_TYPES_BY_LOWER: Final = {name.lower(): name for name in GEOMETRY_TYPES}


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python, but `true` is not a JSON number.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _position(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise InvalidGeometry(f"{where}: a position must be an array [lng, lat] or [lng, lat, alt], got {value!r}")
    if not 2 <= len(value) <= 3:
        raise InvalidGeometry(f"{where}: a position has 2 or 3 numbers [lng, lat(, alt)], got {len(value)}")
    for index, number in enumerate(value):
        if not _is_number(number):
            raise InvalidGeometry(f"{where}[{index}]: {number!r} is not a finite number")
    lng, lat = value[0], value[1]
    if not -180.0 <= lng <= 180.0:
        raise InvalidGeometry(f"{where}: longitude {lng} is outside [-180, 180] (positions are [lng, lat])")
    if not -90.0 <= lat <= 90.0:
        raise InvalidGeometry(f"{where}: latitude {lat} is outside [-90, 90] (positions are [lng, lat])")


def _array(value: Any, where: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidGeometry(f"{where}: expected an array of {what}, got {type(value).__name__}")
    if value and not isinstance(value[0], list):
        # Usually one level of nesting too few, e.g. a Polygon given a bare ring.
        raise InvalidGeometry(f"{where}: expected an array of {what}, got an array of {type(value[0]).__name__}")
    return value


def _line(value: Any, where: str) -> None:
    positions = _array(value, where, "positions")
    if len(positions) < 2:
        raise InvalidGeometry(f"{where}: a LineString needs at least 2 positions, got {len(positions)}")
    for index, position in enumerate(positions):
        _position(position, f"{where}[{index}]")


def _polygon(value: Any, where: str) -> None:
    rings = _array(value, where, "linear rings")
    if not rings:
        raise InvalidGeometry(f"{where}: a Polygon needs at least its exterior ring")
    for ring_index, ring in enumerate(rings):
        ring_where = f"{where}[{ring_index}]"
        positions = _array(ring, ring_where, "positions")
        if len(positions) < 4:
            raise InvalidGeometry(f"{ring_where}: a linear ring needs at least 4 positions, got {len(positions)}")
        for index, position in enumerate(positions):
            _position(position, f"{ring_where}[{index}]")
        if positions[0] != positions[-1]:
            raise InvalidGeometry(
                f"{ring_where}: a linear ring must be closed (first position {positions[0]} "
                f"differs from last {positions[-1]})"
            )


def _each(value: Any, where: str, what: str, check: Any) -> None:
    for index, item in enumerate(_array(value, where, what)):
        check(item, f"{where}[{index}]")


def _coordinates(kind: str, coordinates: Any, where: str = "coordinates") -> None:
    if kind == "Point":
        _position(coordinates, where)
    elif kind == "MultiPoint":
        _each(coordinates, where, "positions", _position)
    elif kind == "LineString":
        _line(coordinates, where)
    elif kind == "MultiLineString":
        _each(coordinates, where, "LineString coordinates", _line)
    elif kind == "Polygon":
        _polygon(coordinates, where)
    else:  # MultiPolygon: the caller has checked the type name
        _each(coordinates, where, "Polygon coordinates", _polygon)


def _type_name(kind: Any) -> str:
    if kind == "GeometryCollection":
        raise InvalidGeometry("GeometryCollection is not supported by NGSI-LD (clause 4.7.1)")
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES:  # a list or dict is unhashable: test the type first
        hint = ""
        if isinstance(kind, str) and kind.lower() in _TYPES_BY_LOWER:
            hint = f" (GeoJSON type names are case-sensitive: did you mean {_TYPES_BY_LOWER[kind.lower()]!r}?)"
        raise InvalidGeometry(
            f'"type" {kind!r} is not a supported GeoJSON geometry type; expected one of '
            f"{', '.join(sorted(GEOMETRY_TYPES))}{hint}"
        )
    return str(kind)


def validate_geometry(value: Any) -> None:
    """Raise `InvalidGeometry` naming the member and position at fault unless `value` is a supported geometry."""
    if not isinstance(value, dict):
        raise InvalidGeometry(f"a GeoJSON geometry must be a JSON object, got {type(value).__name__}")
    if "type" not in value:
        raise InvalidGeometry('a GeoJSON geometry needs a "type" member')
    kind = _type_name(value["type"])
    if "coordinates" not in value:
        raise InvalidGeometry(f'a GeoJSON {kind} needs a "coordinates" member')
    _coordinates(kind, value["coordinates"])
    if "bbox" in value:
        bbox = value["bbox"]
        if (
            not isinstance(bbox, list)
            or len(bbox) not in (4, 6)
            or not all(_is_number(number) for number in bbox)
        ):
            raise InvalidGeometry(f'"bbox" must be an array of 4 or 6 numbers, got {bbox!r}')


def is_geometry(value: Any) -> TypeGuard[dict[str, Any]]:
    """True when `value` is a supported GeoJSON geometry object (used to infer GeoProperty, clause 4.7.3)."""
    # Cheap rejection first: most concise values are scalars or objects without a geometry type.
    if not isinstance(value, dict) or not isinstance(kind := value.get("type"), str) or kind not in GEOMETRY_TYPES \
            or "coordinates" not in value:
        return False
    try:
        validate_geometry(value)
    except InvalidGeometry:
        return False
    return True


def _loads(text: str) -> Any:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    # NaN and Infinity are not JSON (RFC 8259) though Python's json accepts them.
    return json.loads(text, parse_constant=reject_constant)


def parse_geometry(value: Any) -> dict[str, Any]:
    """Return the geometry object of a GeoProperty value given as an object or a JSON string (clause 4.7.2)."""
    if isinstance(value, str):
        try:
            value = _loads(value)
        except ValueError as error:
            raise InvalidGeometry(f"a string-encoded GeoJSON geometry must be a JSON object: {error}") from None
    validate_geometry(value)
    geometry: dict[str, Any] = value
    return geometry


def parse_coordinates(text: str) -> list[Any]:
    """Parse the `coordinates` query parameter (a JSON array as text) into nested lists; `InvalidQuery` if not."""
    try:
        coordinates = _loads(text)
    except ValueError as error:
        raise InvalidQuery(f"coordinates {text!r} is not a JSON array: {error}") from None
    if not isinstance(coordinates, list):
        raise InvalidQuery(f"coordinates {text!r} must be a JSON array such as [5.3698,43.2951]")
    return coordinates


def geometry_from_query(geometry: str, coordinates: str | list[Any]) -> dict[str, Any]:
    """Build the reference geometry of a geo-query from its `geometry` and `coordinates` (clauses 4.10, 5.2.13).

    `coordinates` is the parameter text or an already parsed array (a subscription's
    GeoQuery may carry either, table 5.2.13-1). Raises `InvalidQuery` with the reason.
    """
    if isinstance(coordinates, str):
        coordinates = parse_coordinates(coordinates)
    try:
        kind = _type_name(geometry)
        _coordinates(kind, coordinates)
    except InvalidGeometry as error:
        raise InvalidQuery(f"invalid geo-query reference geometry: {error.detail}") from None
    return {"type": kind, "coordinates": coordinates}


def positions(geometry: dict[str, Any]) -> list[list[float]]:
    """Every position of a valid geometry, flattened (for bounding boxes and distance witnesses)."""
    kind, coordinates = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        return [coordinates]
    if kind in ("MultiPoint", "LineString"):
        return list(coordinates)
    if kind in ("MultiLineString", "Polygon"):
        return [position for part in coordinates for position in part]
    return [position for polygon in coordinates for ring in polygon for position in ring]
