"""The NGSI-LD geo-query language (ETSI GS CIM 009 V1.9.1 clauses 4.10 and 5.2.13).

    parse_geoquery(georel, geometry, coordinates, geoproperty) -> GeoQuery   (validated, hashable)
    compile_geo(geoquery, expand) -> predicate(ENF entity) -> bool
    bbox_for_prefilter(geoquery) -> (minlng, minlat, maxlng, maxlat) | None  (index prefilter)

Interpretation choices (the spec leaves them open):

* Topology (within, contains, intersects, disjoint, equals, overlaps) is the
  OGC simple-features meaning of the spec's reference [14], evaluated in the
  planar lng/lat plane, as PostGIS `geometry` does: a segment is a straight
  line in coordinate space (RFC 7946 section 3.1.1), altitude is ignored.
* near measures great-circle (haversine) metres on the WGS84 mean sphere from
  the reference geometry to the closest point of the entity geometry; a
  polygon containing the reference point is at distance 0. Any reference
  geometry type is accepted, since clause 4.10 defines near as a buffer of
  "the reference geometry", not only of a point.
* maxDistance matches distance <= d and minDistance distance >= d, as
  Orion-LD (MongoDB $maxDistance/$minDistance) does; the spec's "within" and
  "disjoint with" the buffer differ only on the buffer boundary.
* Only attribute instances of type GeoProperty are targets; an entity without
  one, or whose stored geometry is unusable, does not match.
* A reference geometry that is well-formed GeoJSON but not OGC-valid (a
  self-intersecting "bow-tie" ring: RFC 7946 does not forbid it, and an
  entity may hold one) is taken as GEOS repairs it (make-valid, the
  linework method, which PostGIS's ST_MakeValid shares); `equals` compares
  the geometry as given, so an entity equals the very polygon it holds.

Prefilter contract: every entity geometry that can match has a bounding box
(`geometry_bbox`) that intersects the box `bbox_for_prefilter` returns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import shapely
from shapely.errors import GEOSException
from shapely.geometry import shape

from broker import limits
from models.errors import InvalidGeometry, InvalidQuery
from models.geojson import geometry_from_query, positions, validate_geometry
from models.vocabulary import GEO_PROPERTY

EARTH_RADIUS_M: Final = 6_371_008.8
"""WGS84 mean radius (IUGG R1), the sphere used for every distance."""

GEORELS: Final = ("near", "within", "contains", "intersects", "disjoint", "equals", "overlaps")
DEFAULT_GEOPROPERTY: Final = "location"

BBox = tuple[float, float, float, float]
"""(minlng, minlat, maxlng, maxlat) in degrees."""

Predicate = Callable[[dict[str, Any]], bool]

# RFC 8259 number without the minus sign (clause 4.10 PositiveNumber); zero is rejected after parsing.
_POSITIVE_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NEAR = re.compile(r"near;(maxDistance|minDistance)==(.*)")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _lists(value: Any) -> Any:
    return [_lists(item) for item in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class GeoQuery:
    """A validated geo-query; hashable (coordinates are nested tuples) so compiled predicates can be cached."""

    georel: str
    geometry_type: str
    coordinates: tuple[Any, ...]
    geoproperty: str = DEFAULT_GEOPROPERTY
    max_distance: float | None = None
    min_distance: float | None = None

    @property
    def geometry(self) -> dict[str, Any]:
        """The reference geometry as a GeoJSON object."""
        return {"type": self.geometry_type, "coordinates": _lists(self.coordinates)}

    @property
    def georel_text(self) -> str:
        """The georel parameter as the grammar of clause 4.10 writes it."""
        if self.max_distance is not None:
            return f"near;maxDistance=={self.max_distance:g}"
        if self.min_distance is not None:
            return f"near;minDistance=={self.min_distance:g}"
        return self.georel

    def to_dict(self) -> dict[str, Any]:
        """The GeoQuery data type of clause 5.2.13 (as a subscription stores it)."""
        return {
            "georel": self.georel_text,
            "geometry": self.geometry_type,
            "coordinates": _lists(self.coordinates),
            "geoproperty": self.geoproperty,
        }

    @classmethod
    def from_dict(cls, data: Any) -> GeoQuery:
        """Parse a clause 5.2.13 GeoQuery object (coordinates as an array or as JSON text)."""
        if not isinstance(data, dict):
            raise InvalidQuery(f"a GeoQuery must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"georel", "geometry", "coordinates", "geoproperty"}
        if unknown:
            raise InvalidQuery(f"unknown GeoQuery members: {', '.join(sorted(unknown))}")
        return parse_geoquery(
            data.get("georel"), data.get("geometry"), data.get("coordinates"), data.get("geoproperty")
        )


def parse_georel(text: str) -> tuple[str, float | None, float | None]:
    """Split a georel into (relation, maxDistance, minDistance); `InvalidQuery` if it breaks the grammar."""
    if text in GEORELS and text != "near":
        return text, None, None
    match = _NEAR.fullmatch(text)
    if match is None:
        if text == "near" or text.startswith("near;"):
            raise InvalidQuery(
                f"georel {text!r}: near needs exactly one distance, e.g. near;maxDistance==2000 or near;minDistance==10"
            )
        raise InvalidQuery(f"georel {text!r} is unknown; expected one of {', '.join(GEORELS)}")
    modifier, number = match.groups()
    value = float(number) if _POSITIVE_NUMBER.fullmatch(number) else math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidQuery(f"georel {text!r}: {modifier} must be a non-zero positive number of metres, got {number!r}")
    return ("near", value, None) if modifier == "maxDistance" else ("near", None, value)


def _check_size(coordinates: Any) -> None:
    """InvalidQuery when a reference geometry has more positions than METROPOLE_BROKER_MAX_GEOMETRY_POINTS.

    Counted before the geometry is parsed or checked (a position is two numbers, or three: a text with
    more than two numbers per allowed position is past the bound): a million-point polygon held every
    other request for 7-10 s (issue 17).
    """
    bound = limits.current().max_geometry_points
    if isinstance(coordinates, str):
        numbers = coordinates.count(",") + 1
    else:
        numbers, stack = 0, [coordinates]
        while stack and numbers <= 2 * bound:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            else:
                numbers += 1
    if numbers > 2 * bound or (isinstance(coordinates, str) and len(coordinates) > 64 * bound):
        raise InvalidQuery(f"the geo-query's geometry has more than {bound} positions")


def parse_geoquery(
    georel: str | None,
    geometry: str | None,
    coordinates: str | list[Any] | None,
    geoproperty: str | None = None,
) -> GeoQuery:
    """Validate the four geo-query parameters of clause 4.10 into a `GeoQuery`; `InvalidQuery` with the reason."""
    given = (("georel", georel), ("geometry", geometry), ("coordinates", coordinates))
    missing = [name for name, value in given if value is None]
    if missing or coordinates is None:
        raise InvalidQuery(f"a geo-query needs georel, geometry and coordinates together; missing {', '.join(missing)}")
    if not isinstance(georel, str) or not isinstance(geometry, str):
        raise InvalidQuery("georel and geometry must be strings")
    relation, max_distance, min_distance = parse_georel(georel)
    _check_size(coordinates)
    reference = geometry_from_query(geometry, coordinates)
    if not positions(reference):  # an empty MultiPoint/MultiLineString/MultiPolygon: nothing to measure from
        raise InvalidQuery(f"the geo-query's {reference['type']} has no position")
    if geoproperty is None or geoproperty == "":
        geoproperty = DEFAULT_GEOPROPERTY
    if not isinstance(geoproperty, str) or any(c in geoproperty for c in " ;,"):
        raise InvalidQuery(f"geoproperty {geoproperty!r} must be one attribute name")
    coordinates_tuple = _tuples(reference["coordinates"])
    return GeoQuery(relation, reference["type"], coordinates_tuple, geoproperty, max_distance, min_distance)


# ---------------------------------------------------------------- distances


def haversine(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle distance in metres between two [lng, lat] positions on the WGS84 mean sphere."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _haversine_many(lng: float, lat: float, lngs: np.ndarray, lats: np.ndarray) -> np.ndarray:
    phi, phis = math.radians(lat), np.radians(lats)
    a = np.sin((phis - phi) / 2) ** 2 + math.cos(phi) * np.cos(phis) * np.sin(np.radians(lngs - lng) / 2) ** 2
    distances: np.ndarray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))  # numpy's ufuncs: Any
    return distances


@dataclass(frozen=True)
class _Parts:
    """A geometry's vertices and segments as arrays, for closest-point distances."""

    vertices: np.ndarray  # (n, 2) lng, lat
    starts: np.ndarray  # (m, 2)
    ends: np.ndarray  # (m, 2)
    polygonal: bool


def _parts(geometry: dict[str, Any]) -> _Parts:
    kind, coordinates = geometry["type"], geometry["coordinates"]
    if kind in ("Point", "MultiPoint"):
        paths: list[Any] = []
    elif kind == "LineString":
        paths = [coordinates]
    elif kind in ("MultiLineString", "Polygon"):
        paths = list(coordinates)
    else:
        paths = [ring for polygon in coordinates for ring in polygon]
    vertices = np.array([p[:2] for p in positions(geometry)], dtype=float).reshape(-1, 2)
    segments = [np.array([p[:2] for p in path], dtype=float) for path in paths]
    starts = np.concatenate([s[:-1] for s in segments]) if segments else np.empty((0, 2))
    ends = np.concatenate([s[1:] for s in segments]) if segments else np.empty((0, 2))
    return _Parts(vertices, starts, ends, kind in ("Polygon", "MultiPolygon"))


def _point_to_parts(lng: float, lat: float, parts: _Parts) -> float:
    """Haversine metres from a point to the closest point found on vertices and segments.

    The closest point of each segment is found in a local equirectangular frame
    centred on the query point (an affine map of lng/lat, so the candidate is a
    real point of the straight lng/lat segment, and its haversine distance is
    exact for that point); vertices are always candidates, which also covers
    segments seen across the antimeridian.
    """
    best = float(_haversine_many(lng, lat, parts.vertices[:, 0], parts.vertices[:, 1]).min())
    if len(parts.starts):
        scale = math.cos(math.radians(lat))
        a, b = parts.starts, parts.ends
        ax, ay = (a[:, 0] - lng) * scale, a[:, 1] - lat
        dx, dy = (b[:, 0] - a[:, 0]) * scale, b[:, 1] - a[:, 1]
        length2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(length2 > 0, -(ax * dx + ay * dy) / length2, 0.0)
        t = np.clip(t, 0.0, 1.0)
        closest = a + t[:, None] * (b - a)
        best = min(best, float(_haversine_many(lng, lat, closest[:, 0], closest[:, 1]).min()))
    return best


def distance(reference: dict[str, Any], target: dict[str, Any]) -> float:
    """Haversine metres between the closest points of two valid geometries (0 when they intersect)."""
    if reference["type"] == "Point" and target["type"] == "Point":
        (lng1, lat1, *_), (lng2, lat2, *_) = reference["coordinates"], target["coordinates"]
        return haversine(lng1, lat1, lng2, lat2)
    if shapely.intersects(shape(reference), shape(target)):
        return 0.0
    # Between disjoint geometries the closest pair always includes a vertex of one of them.
    reference_parts, target_parts = _parts(reference), _parts(target)
    best = min(_point_to_parts(lng, lat, target_parts) for lng, lat in reference_parts.vertices)
    return min(best, min(_point_to_parts(lng, lat, reference_parts) for lng, lat in target_parts.vertices))


# ---------------------------------------------------------------- predicates


def _near_test(query: GeoQuery) -> Callable[[dict[str, Any]], bool]:
    reference = query.geometry
    limit = query.max_distance if query.max_distance is not None else query.min_distance
    assert limit is not None  # parse_georel guarantees one of them for near
    within = query.max_distance is not None
    box = bbox_for_prefilter(query)
    if reference["type"] != "Point":
        if within:
            return lambda target: distance(reference, target) <= limit
        return lambda target: distance(reference, target) >= limit
    lng0, lat0 = reference["coordinates"][0], reference["coordinates"][1]
    phi0, cos0 = math.radians(lat0), math.cos(math.radians(lat0))
    twice_r = 2 * EARTH_RADIUS_M
    minlng, minlat, maxlng, maxlat = box if box is not None else (-180.0, -90.0, 180.0, 90.0)
    sin, cos, asin, sqrt, rad = math.sin, math.cos, math.asin, math.sqrt, math.radians

    def test(target: dict[str, Any]) -> bool:
        if target["type"] != "Point":
            d = distance(reference, target)
            return d <= limit if within else d >= limit
        lng, lat = target["coordinates"][0], target["coordinates"][1]
        if within and not (minlng <= lng <= maxlng and minlat <= lat <= maxlat):
            return False  # the prefilter box is proven safe: no trigonometry for far points
        phi = rad(lat)
        a = sin((phi - phi0) / 2) ** 2 + cos0 * cos(phi) * sin(rad(lng - lng0) / 2) ** 2
        d = twice_r * asin(min(1.0, sqrt(a)))
        return d <= limit if within else d >= limit

    return test


def _topology_test(query: GeoQuery) -> Callable[[dict[str, Any]], bool]:
    reference = shape(query.geometry)
    relation = query.georel
    if relation != "equals" and not shapely.is_valid(reference):
        reference = shapely.make_valid(reference)  # see the module docstring: a self-intersecting polygon
    shapely.prepare(reference)
    # Point targets are the common case (sensors): test coordinates without building a geometry.
    point_tests: dict[str, Callable[[float, float], bool]] = {
        "within": lambda x, y: bool(shapely.contains_xy(reference, x, y)),
        "intersects": lambda x, y: bool(shapely.intersects_xy(reference, x, y)),
        "disjoint": lambda x, y: not shapely.intersects_xy(reference, x, y),
    }
    # The prepared reference is the first argument wherever the relation allows it.
    general: Callable[[Any], bool] = {
        "within": lambda t: bool(shapely.contains(reference, t)),
        "contains": lambda t: bool(shapely.within(reference, t)),
        "intersects": lambda t: bool(shapely.intersects(reference, t)),
        "disjoint": lambda t: bool(shapely.disjoint(reference, t)),
        "equals": lambda t: bool(shapely.equals(t, reference)),
        "overlaps": lambda t: bool(shapely.overlaps(reference, t)),
    }[relation]
    point_test = point_tests.get(relation)
    minlng, minlat, maxlng, maxlat = geometry_bbox(query.geometry)
    outside = relation == "disjoint"  # what a point outside the reference's box answers

    def test(target: dict[str, Any]) -> bool:
        if point_test is not None and target["type"] == "Point":
            x, y = target["coordinates"][0], target["coordinates"][1]
            if not (minlng <= x <= maxlng and minlat <= y <= maxlat):
                return outside  # a plain comparison is far cheaper than a GEOS call
            return point_test(x, y)
        return general(shape(target))

    return test


def _target_geometry(instance: Any) -> dict[str, Any] | None:
    if not isinstance(instance, dict) or instance.get("type") != GEO_PROPERTY:
        return None
    value = instance.get("value")
    if isinstance(value, str):  # clause 4.7.2: a geometry may be kept as JSON text
        try:
            value = json.loads(value)
            validate_geometry(value)
        except (ValueError, InvalidGeometry):
            return None
    return value if isinstance(value, dict) and "type" in value else None


def compile_geo(geoquery: GeoQuery, expand: Callable[[str], str]) -> Predicate:
    """Compile a geo-query into a predicate over ENF entities.

    `expand` maps the geoproperty term to the attribute IRI under which ENF
    stores it. An entity matches when any GeoProperty instance of that
    attribute matches; without one it does not (clause 4.10).
    """
    key = expand(geoquery.geoproperty)
    test = _near_test(geoquery) if geoquery.georel == "near" else _topology_test(geoquery)
    # A stored geometry broken beyond validation must not fail the whole query: it just does not match.
    failures = (KeyError, IndexError, TypeError, ValueError, GEOSException)

    def predicate(entity: dict[str, Any]) -> bool:
        instances = entity.get(key)
        if instances is None:
            return False
        if isinstance(instances, dict):
            instances = (instances,)
        for instance in instances:
            target = _target_geometry(instance)
            if target is None:
                continue
            try:
                if test(target):
                    return True
            except failures:
                continue
        return False

    return predicate


# ---------------------------------------------------------------- bounding boxes


def geometry_bbox(geojson: dict[str, Any]) -> BBox:
    """The (minlng, minlat, maxlng, maxlat) box of a valid geometry's positions, as a store indexes it."""
    points = positions(geojson)
    lngs = [p[0] for p in points]
    lats = [p[1] for p in points]
    return (min(lngs), min(lats), max(lngs), max(lats))


def _degree_margin(box: BBox, metres: float) -> BBox:
    """`box` grown by `metres` of great-circle distance; full longitude range where a cap wraps."""
    radius = metres / EARTH_RADIUS_M * (1 + 1e-9)
    dlat = math.degrees(radius) + 1e-9  # margins absorb floating-point rounding of the haversine
    minlng, minlat, maxlng, maxlat = box
    low, high = minlat - dlat, maxlat + dlat
    if low <= -90.0 or high >= 90.0:
        # A cap reaching a pole spans every longitude.
        return (-180.0, max(low, -90.0), 180.0, min(high, 90.0))
    # The widest longitude extent of a cap of angular radius r centred at latitude phi
    # is asin(sin r / cos phi); it grows with |phi|, so the box's most polar latitude bounds it.
    phi = math.radians(max(abs(minlat), abs(maxlat)))
    dlng = math.degrees(math.asin(min(1.0, math.sin(radius) / math.cos(phi)))) + 1e-9
    west, east = minlng - dlng, maxlng + dlng
    if west < -180.0 or east > 180.0:
        # The cap crosses the antimeridian: a single lng range must then be the whole circle.
        return (-180.0, low, 180.0, high)
    return (west, low, east, high)


def bbox_for_prefilter(geoquery: GeoQuery) -> BBox | None:
    """A box that the bbox of every possibly matching geometry intersects; None when no box can narrow it.

    None for disjoint and near;minDistance (matches lie anywhere outside a region)
    and for a maxDistance so large that any point of the Earth may match.
    """
    if geoquery.georel == "disjoint" or geoquery.min_distance is not None:
        return None
    box = geometry_bbox(geoquery.geometry)
    if geoquery.max_distance is None:
        return box
    if geoquery.max_distance / EARTH_RADIUS_M >= math.pi:
        return None
    return _degree_margin(box, geoquery.max_distance)
