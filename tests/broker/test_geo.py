"""The NGSI-LD geo-query language: parsing, predicates over ENF entities, prefilter boxes (clause 4.10)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.geo import (
    EARTH_RADIUS_M,
    GeoQuery,
    bbox_for_prefilter,
    compile_geo,
    distance,
    geometry_bbox,
    haversine,
    parse_geoquery,
    parse_georel,
)
from models.errors import InvalidQuery

CORE = "https://uri.etsi.org/ngsi-ld/"
VIEUX_PORT = [5.3698, 43.2951]
MIRABEAU = [5.4474, 43.5265]
NOTRE_DAME_DE_LA_GARDE = [5.3713, 43.2840]
MARSEILLE_1 = [[[5.3640, 43.2930], [5.3850, 43.2930], [5.3850, 43.3050], [5.3640, 43.3050], [5.3640, 43.2930]]]
INSIDE_1 = [5.3750, 43.2990]  # Canebière, inside MARSEILLE_1


def expand(term: str) -> str:
    return term if ":" in term else CORE + term


def point(coordinates: list[float]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": coordinates}


def polygon(rings: list[Any]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": rings}


def entity(*geometries: Any, attribute: str = "location", kind: str = "GeoProperty") -> dict[str, Any]:
    return {
        "id": "urn:ngsi-ld:Device:marseille-1",
        "type": [CORE + "default-context/Device"],
        expand(attribute): [{"type": kind, "value": g} for g in geometries],
    }


def matches(georel: str, geometry: str, coordinates: Any, target: dict[str, Any], **kw: Any) -> bool:
    query = parse_geoquery(georel, geometry, coordinates if isinstance(coordinates, str) else json.dumps(coordinates))
    return compile_geo(query, expand)(entity(target, **kw))


def central_angle_distance(a: list[float], b: list[float]) -> float:
    """An independent formula (dot product of unit vectors) to check the haversine against."""
    def unit(p: list[float]) -> tuple[float, float, float]:
        lng, lat = math.radians(p[0]), math.radians(p[1])
        return (math.cos(lat) * math.cos(lng), math.cos(lat) * math.sin(lng), math.sin(lat))

    (x1, y1, z1), (x2, y2, z2) = unit(a), unit(b)
    cross = math.dist((y1 * z2 - z1 * y2, z1 * x2 - x1 * z2, x1 * y2 - y1 * x2), (0, 0, 0))
    return EARTH_RADIUS_M * math.atan2(cross, x1 * x2 + y1 * y2 + z1 * z2)


# ---------------------------------------------------------------- distances


def test_haversine_known_values() -> None:
    one_degree = EARTH_RADIUS_M * math.pi / 180  # 111,195.08 m on the mean sphere
    assert haversine(5.0, 43.0, 5.0, 44.0) == pytest.approx(one_degree, rel=1e-12)
    assert haversine(-0.5, 0.0, 0.5, 0.0) == pytest.approx(one_degree, rel=1e-12)
    assert haversine(0.0, 0.0, 180.0, 0.0) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-12)
    assert haversine(179.5, 0.0, -179.5, 0.0) == pytest.approx(one_degree, rel=1e-12)


def test_vieux_port_to_cours_mirabeau_is_about_27_km() -> None:
    metres = haversine(*VIEUX_PORT, *MIRABEAU)
    assert metres == pytest.approx(central_angle_distance(VIEUX_PORT, MIRABEAU), abs=0.01)
    assert 26_400 < metres < 26_600


def test_distance_to_a_line_uses_its_closest_point_not_its_vertices() -> None:
    # A quay-side line 100 m north of the Vieux-Port point, its ends kilometres away.
    line = {"type": "LineString", "coordinates": [[5.30, 43.2960], [5.44, 43.2960]]}
    assert distance(point(VIEUX_PORT), line) == pytest.approx(0.0009 * EARTH_RADIUS_M * math.pi / 180, rel=1e-4)


def test_distance_is_zero_inside_a_polygon_and_symmetric() -> None:
    assert distance(point(INSIDE_1), polygon(MARSEILLE_1)) == 0.0
    there, back = distance(polygon(MARSEILLE_1), point(MIRABEAU)), distance(point(MIRABEAU), polygon(MARSEILLE_1))
    assert there == pytest.approx(back) and 24_000 < there < 26_000
    assert there == pytest.approx(haversine(5.3850, 43.3050, *MIRABEAU), rel=1e-3)  # the NE corner is closest


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("near;maxDistance==2000", ("near", 2000.0, None)),
        ("near;minDistance==10", ("near", None, 10.0)),
        ("near;maxDistance==0.5", ("near", 0.5, None)),
        ("near;maxDistance==2e3", ("near", 2000.0, None)),
        *[(rel, (rel, None, None)) for rel in ("within", "contains", "intersects", "disjoint", "equals", "overlaps")],
    ],
)
def test_parse_georel(text: str, expected: tuple[str, float | None, float | None]) -> None:
    assert parse_georel(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("near", "needs exactly one distance"),
        ("near;maxDistance==0", "non-zero positive"),
        ("near;maxDistance==0.0", "non-zero positive"),
        ("near;maxDistance==-5", "non-zero positive"),
        ("near;maxDistance==01", "non-zero positive"),
        ("near;maxDistance==abc", "non-zero positive"),
        ("near;maxDistance==1e999", "non-zero positive"),
        ("near;maxDistance:2000", "needs exactly one distance"),
        ("near;distance==5", "needs exactly one distance"),
        ("near;maxDistance==2000;minDistance==10", "non-zero positive"),
        ("within;maxDistance==5", "unknown"),
        ("Within", "unknown"),
        ("crosses", "unknown"),
        ("", "unknown"),
    ],
)
def test_parse_georel_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidQuery, match=reason):
        parse_georel(text)


def test_parse_geoquery_defaults_and_round_trip() -> None:
    query = parse_geoquery("near;maxDistance==2000", "Point", "[8,40]")
    assert query == GeoQuery("near", "Point", (8, 40), "location", 2000.0, None)
    assert query.geometry == {"type": "Point", "coordinates": [8, 40]}
    assert query.to_dict() == {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [8, 40], "geoproperty": "location"}
    assert GeoQuery.from_dict(query.to_dict()) == query
    assert hash(query) == hash(GeoQuery.from_dict(query.to_dict()))
    within = GeoQuery.from_dict({"georel": "within", "geometry": "Polygon", "coordinates": json.dumps(MARSEILLE_1), "geoproperty": "observationSpace"})
    assert within.geoproperty == "observationSpace" and within.geometry["coordinates"] == MARSEILLE_1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((None, "Point", "[8,40]"), "missing georel"),
        (("within", None, None), "missing geometry, coordinates"),
        (("near;maxDistance==10", "Point", "[8,400]"), "latitude 400"),
        (("within", "GeometryCollection", "[]"), "GeometryCollection"),
        (("within", "Polygon", "[[8,40],[9,40],[9,41],[8,40]]"), "expected an array of positions"),
        (("within", "Point", "8,40"), "JSON array"),
        (("intersects", "Point", "[8,40]", "location;observationSpace"), "one attribute name"),
    ],
)
def test_parse_geoquery_rejects(args: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(InvalidQuery, match=reason):
        parse_geoquery(*args)


def test_from_dict_rejects_unknown_members() -> None:
    with pytest.raises(InvalidQuery, match="maxDistance"):
        GeoQuery.from_dict({"georel": "near", "geometry": "Point", "coordinates": [8, 40], "maxDistance": 10})


# ---------------------------------------------------------------- every georel, both ways


def test_near_max_distance() -> None:
    assert matches("near;maxDistance==2000", "Point", VIEUX_PORT, point(NOTRE_DAME_DE_LA_GARDE))
    assert not matches("near;maxDistance==2000", "Point", VIEUX_PORT, point(MIRABEAU))
    assert matches("near;maxDistance==26600", "Point", VIEUX_PORT, point(MIRABEAU))
    assert not matches("near;maxDistance==26400", "Point", VIEUX_PORT, point(MIRABEAU))


def test_near_min_distance() -> None:
    assert matches("near;minDistance==10", "Point", VIEUX_PORT, point(MIRABEAU))
    assert not matches("near;minDistance==10", "Point", VIEUX_PORT, point(VIEUX_PORT))
    assert not matches("near;minDistance==26600", "Point", VIEUX_PORT, point(MIRABEAU))


def test_near_against_lines_and_polygons() -> None:
    line = {"type": "LineString", "coordinates": [[5.30, 43.2960], [5.44, 43.2960]]}
    assert matches("near;maxDistance==150", "Point", VIEUX_PORT, line)
    assert not matches("near;maxDistance==50", "Point", VIEUX_PORT, line)
    assert matches("near;maxDistance==1", "Point", INSIDE_1, polygon(MARSEILLE_1))
    assert not matches("near;minDistance==1", "Point", INSIDE_1, polygon(MARSEILLE_1))


def test_near_buffers_a_polygon_reference() -> None:
    assert matches("near;maxDistance==26000", "Polygon", MARSEILLE_1, point(MIRABEAU))
    assert not matches("near;maxDistance==20000", "Polygon", MARSEILLE_1, point(MIRABEAU))
    assert matches("near;minDistance==20000", "Polygon", MARSEILLE_1, point(MIRABEAU))


def test_within() -> None:
    assert matches("within", "Polygon", MARSEILLE_1, point(INSIDE_1))
    assert not matches("within", "Polygon", MARSEILLE_1, point(MIRABEAU))
    assert not matches("within", "Polygon", MARSEILLE_1, point([5.3640, 43.2990]))  # on the boundary
    inner = [[[5.37, 43.296], [5.38, 43.296], [5.38, 43.30], [5.37, 43.296]]]
    assert matches("within", "Polygon", MARSEILLE_1, polygon(inner))
    assert not matches("within", "Polygon", MARSEILLE_1, {"type": "LineString", "coordinates": [INSIDE_1, MIRABEAU]})


def test_contains() -> None:
    assert matches("contains", "Point", INSIDE_1, polygon(MARSEILLE_1))
    assert not matches("contains", "Point", MIRABEAU, polygon(MARSEILLE_1))
    assert matches("contains", "Point", VIEUX_PORT, point(VIEUX_PORT))


def test_intersects_and_disjoint() -> None:
    crossing = {"type": "LineString", "coordinates": [INSIDE_1, MIRABEAU]}
    far = {"type": "LineString", "coordinates": [[5.44, 43.52], MIRABEAU]}
    on_edge = point([5.3640, 43.2990])
    for target, touching in ((crossing, True), (far, False), (on_edge, True), (point(INSIDE_1), True), (point(MIRABEAU), False)):
        assert matches("intersects", "Polygon", MARSEILLE_1, target) is touching
        assert matches("disjoint", "Polygon", MARSEILLE_1, target) is not touching


def test_equals() -> None:
    rotated = [MARSEILLE_1[0][1:] + [MARSEILLE_1[0][1]]]
    assert matches("equals", "Polygon", MARSEILLE_1, polygon(rotated))
    assert matches("equals", "Point", VIEUX_PORT, point(VIEUX_PORT + [12.0]))  # altitude is ignored
    assert not matches("equals", "Polygon", MARSEILLE_1, polygon([[[5.37, 43.296], [5.38, 43.296], [5.38, 43.30], [5.37, 43.296]]]))


def test_overlaps() -> None:
    shifted = [[[5.3800, 43.3000], [5.3950, 43.3000], [5.3950, 43.3100], [5.3800, 43.3100], [5.3800, 43.3000]]]
    nested = [[[5.37, 43.296], [5.38, 43.296], [5.38, 43.30], [5.37, 43.296]]]
    assert matches("overlaps", "Polygon", MARSEILLE_1, polygon(shifted))
    assert not matches("overlaps", "Polygon", MARSEILLE_1, polygon(nested))
    assert not matches("overlaps", "Polygon", MARSEILLE_1, point(INSIDE_1))  # different dimensions never overlap


# ---------------------------------------------------------------- which attribute is the target


def test_geoproperty_selects_the_target_attribute() -> None:
    query = parse_geoquery("within", "Polygon", json.dumps(MARSEILLE_1), "observationSpace")
    predicate = compile_geo(query, expand)
    assert predicate(entity(point(INSIDE_1), attribute="observationSpace"))
    assert not predicate(entity(point(INSIDE_1)))  # location is not observationSpace


def test_entities_without_a_usable_geoproperty_do_not_match() -> None:
    predicate = compile_geo(parse_geoquery("intersects", "Polygon", json.dumps(MARSEILLE_1)), expand)
    assert not predicate({"id": "urn:ngsi-ld:Device:bare", "type": ["Device"]})
    assert not predicate(entity(point(INSIDE_1), kind="Property"))
    assert not predicate(entity({"type": "Point", "coordinates": "5.37,43.29"}))  # broken store content
    assert not predicate(entity("not json"))
    assert predicate(entity(json.dumps(point(INSIDE_1))))  # clause 4.7.2 string encoding


def test_any_instance_matching_is_enough() -> None:
    predicate = compile_geo(parse_geoquery("near;maxDistance==2000", "Point", json.dumps(VIEUX_PORT)), expand)
    assert predicate(entity(point(MIRABEAU), point(NOTRE_DAME_DE_LA_GARDE)))
    assert not predicate(entity(point(MIRABEAU), {"type": "Point", "coordinates": [5.44, 43.52]}))


def test_a_self_intersecting_reference_polygon_is_repaired() -> None:
    # two triangles touching at (5.37, 43.30): RFC 7946 does not forbid the bow-tie, GEOS repairs it
    bowtie = [[[5.36, 43.29], [5.38, 43.31], [5.38, 43.29], [5.36, 43.31], [5.36, 43.29]]]
    within = compile_geo(parse_geoquery("within", "Polygon", json.dumps(bowtie)), expand)
    assert within(entity(point([5.362, 43.300])))  # in the left triangle
    assert not within(entity(point([5.370, 43.305])))  # above the crossing: outside both triangles
    # equals compares the geometry as given: an entity equals the very bow-tie it holds
    equals = compile_geo(parse_geoquery("equals", "Polygon", json.dumps(bowtie)), expand)
    assert equals(entity({"type": "Polygon", "coordinates": bowtie}))


# ---------------------------------------------------------------- prefilter boxes


def test_bbox_for_prefilter_per_georel() -> None:
    assert bbox_for_prefilter(parse_geoquery("disjoint", "Polygon", json.dumps(MARSEILLE_1))) is None
    assert bbox_for_prefilter(parse_geoquery("near;minDistance==10", "Point", json.dumps(VIEUX_PORT))) is None
    for rel in ("within", "contains", "intersects", "equals", "overlaps"):
        assert bbox_for_prefilter(parse_geoquery(rel, "Polygon", json.dumps(MARSEILLE_1))) == (5.3640, 43.2930, 5.3850, 43.3050)
    minlng, minlat, maxlng, maxlat = bbox_for_prefilter(parse_geoquery("near;maxDistance==26600", "Point", json.dumps(VIEUX_PORT)))  # type: ignore[misc]
    assert minlng < MIRABEAU[0] < maxlng and minlat < MIRABEAU[1] < maxlat
    assert maxlat - minlat == pytest.approx(2 * 26600 / (EARTH_RADIUS_M * math.pi / 180), rel=1e-6)


def test_geometry_bbox() -> None:
    assert geometry_bbox(point(VIEUX_PORT + [10.0])) == (5.3698, 43.2951, 5.3698, 43.2951)
    assert geometry_bbox({"type": "LineString", "coordinates": [VIEUX_PORT, MIRABEAU]}) == (5.3698, 43.2951, 5.4474, 43.5265)


def intersects(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def test_antimeridian_and_pole() -> None:
    east = parse_geoquery("near;maxDistance==5000", "Point", "[179.99,-16.5]")  # Fiji
    assert compile_geo(east, expand)(entity(point([-179.99, -16.5])))
    assert bbox_for_prefilter(east)[0::2] == (-180.0, 180.0)  # type: ignore[index]
    pole = parse_geoquery("near;maxDistance==5000", "Point", "[0,89.99]")
    assert compile_geo(pole, expand)(entity(point([180.0, 89.99])))
    assert bbox_for_prefilter(pole) == (-180.0, pytest.approx(89.99 - 5000 / 111195.08, rel=1e-6), 180.0, 90.0)


CENTRES = st.sampled_from([VIEUX_PORT, MIRABEAU, [179.9, -16.5], [-179.95, 65.0], [10.0, 89.9], [-70.0, -89.5], [0.0, 0.0]])


@settings(max_examples=300, deadline=None)
@given(
    centre=CENTRES,
    radius=st.floats(1.0, 3_000_000.0),
    offset=st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),
    scale=st.floats(0.0, 1.2),
)
def test_prefilter_box_never_excludes_a_point_match(centre: list[float], radius: float, offset: tuple[float, float], scale: float) -> None:
    query = parse_geoquery(f"near;maxDistance=={radius!r}", "Point", json.dumps(centre))
    # Candidates spread over the radius in degrees, stretched in longitude as near the poles.
    spread = math.degrees(radius / EARTH_RADIUS_M) * scale
    lat = max(-90.0, min(90.0, centre[1] + offset[1] * spread))
    lng = (centre[0] + offset[0] * spread / max(math.cos(math.radians(lat)), 1e-3) + 180.0) % 360.0 - 180.0
    truth = haversine(centre[0], centre[1], lng, lat) <= radius
    # The predicate rejects far points with the box before any trigonometry, so the
    # box is checked against the haversine itself, and the predicate against both.
    assert compile_geo(query, expand)(entity(point([lng, lat]))) is truth
    if truth:
        box = bbox_for_prefilter(query)
        assert box is not None and box[0] <= lng <= box[2] and box[1] <= lat <= box[3]


@settings(max_examples=150, deadline=None)
@given(
    centre=CENTRES,
    radius=st.floats(1.0, 500_000.0),
    ends=st.lists(st.tuples(st.floats(-8.0, 8.0), st.floats(-8.0, 8.0)), min_size=2, max_size=4),
)
def test_prefilter_box_never_excludes_a_line_match(centre: list[float], radius: float, ends: list[tuple[float, float]]) -> None:
    coordinates = [
        [max(-180.0, min(180.0, centre[0] + dx)), max(-90.0, min(90.0, centre[1] + dy))] for dx, dy in ends
    ]
    line = {"type": "LineString", "coordinates": coordinates}
    query = parse_geoquery(f"near;maxDistance=={radius!r}", "Point", json.dumps(centre))
    if compile_geo(query, expand)(entity(line)):
        box = bbox_for_prefilter(query)
        assert box is not None and intersects(box, geometry_bbox(line))
