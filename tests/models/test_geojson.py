"""GeoJSON validation for GeoProperty values and geo-query reference geometries (clauses 4.7, 4.10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.errors import InvalidGeometry, InvalidQuery
from models.geojson import (
    GEOMETRY_TYPES,
    geometry_from_query,
    is_geometry,
    parse_coordinates,
    parse_geometry,
    positions,
    validate_geometry,
)

VIEUX_PORT = [5.3698, 43.2951]
MIRABEAU = [5.4474, 43.5265]
# Marseille 1er arrondissement, roughly: Vieux-Port, Canebière, Belsunce, back to the port.
MARSEILLE_1 = [[[5.3640, 43.2930], [5.3850, 43.2930], [5.3850, 43.3050], [5.3640, 43.3050], [5.3640, 43.2930]]]
HOLE = [[5.3700, 43.2970], [5.3750, 43.2970], [5.3750, 43.3000], [5.3700, 43.3000], [5.3700, 43.2970]]

VALID: list[dict[str, Any]] = [
    {"type": "Point", "coordinates": VIEUX_PORT},
    {"type": "Point", "coordinates": [5.4474, 43.5265, 190.5]},
    {"type": "Point", "coordinates": [-180, -90]},
    {"type": "Point", "coordinates": [180, 90]},
    {"type": "MultiPoint", "coordinates": [VIEUX_PORT, MIRABEAU]},
    {"type": "MultiPoint", "coordinates": []},
    {"type": "LineString", "coordinates": [VIEUX_PORT, MIRABEAU]},
    {"type": "MultiLineString", "coordinates": [[VIEUX_PORT, MIRABEAU], [[5.40, 43.30], [5.41, 43.31], [5.42, 43.30]]]},
    {"type": "Polygon", "coordinates": MARSEILLE_1},
    {"type": "Polygon", "coordinates": [MARSEILLE_1[0], HOLE]},
    {"type": "MultiPolygon", "coordinates": [MARSEILLE_1, [[[5.44, 43.52], [5.45, 43.52], [5.45, 43.53], [5.44, 43.52]]]]},
    {"type": "Point", "coordinates": VIEUX_PORT, "bbox": [5.3698, 43.2951, 5.3698, 43.2951]},
    {"type": "Point", "coordinates": VIEUX_PORT, "crs-note": "foreign members are tolerated"},
]


@pytest.mark.parametrize("geometry", VALID, ids=lambda g: g["type"])
def test_valid_geometries_pass(geometry: dict[str, Any]) -> None:
    validate_geometry(geometry)
    assert is_geometry(geometry)


INVALID: list[tuple[Any, str]] = [
    ([5.3698, 43.2951], "JSON object"),
    ("Point", "JSON object"),
    ({"coordinates": VIEUX_PORT}, '"type"'),
    ({"type": "Point"}, '"coordinates"'),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": VIEUX_PORT}}, "'Feature'"),
    ({"type": "point", "coordinates": VIEUX_PORT}, "did you mean 'Point'"),
    ({"type": "GeometryCollection", "geometries": []}, "clause 4.7.1"),
    ({"type": "Point", "coordinates": [5.3698]}, "2 or 3"),
    ({"type": "Point", "coordinates": [5.3698, 43.2951, 10, 1]}, "2 or 3"),
    ({"type": "Point", "coordinates": ["5.3698", 43.2951]}, "coordinates[0]"),
    ({"type": "Point", "coordinates": [True, 43.2951]}, "not a finite number"),
    ({"type": "Point", "coordinates": [float("nan"), 43.2951]}, "not a finite number"),
    ({"type": "Point", "coordinates": [5.3698, float("inf")]}, "coordinates[1]"),
    ({"type": "Point", "coordinates": [181, 43.2951]}, "longitude 181"),
    ({"type": "Point", "coordinates": [43.2951, 95.0]}, "latitude 95"),
    ({"type": "Point", "coordinates": {"lng": 5.3, "lat": 43.2}}, "a position must be an array"),
    ({"type": "MultiPoint", "coordinates": [VIEUX_PORT, [5.3, 91]]}, "coordinates[1]: latitude 91"),
    ({"type": "MultiPoint", "coordinates": VIEUX_PORT}, "expected an array of positions, got an array of float"),
    ({"type": "LineString", "coordinates": [VIEUX_PORT]}, "at least 2 positions"),
    ({"type": "LineString", "coordinates": "5.3,43.2 5.4,43.5"}, "array of positions"),
    ({"type": "LineString", "coordinates": [VIEUX_PORT, [5.44, "x"]]}, "coordinates[1][1]"),
    ({"type": "MultiLineString", "coordinates": [[VIEUX_PORT, MIRABEAU], [MIRABEAU]]}, "coordinates[1]: a LineString"),
    ({"type": "Polygon", "coordinates": []}, "exterior ring"),
    ({"type": "Polygon", "coordinates": [[VIEUX_PORT, MIRABEAU, VIEUX_PORT]]}, "at least 4 positions"),
    ({"type": "Polygon", "coordinates": [MARSEILLE_1[0][:-1]]}, "must be closed"),
    ({"type": "Polygon", "coordinates": [MARSEILLE_1[0], HOLE[:-1]]}, "coordinates[1]: a linear ring must be closed"),
    ({"type": "Polygon", "coordinates": MARSEILLE_1[0]}, "coordinates[0]: expected an array of positions"),
    ({"type": "MultiPolygon", "coordinates": MARSEILLE_1}, "coordinates[0][0]"),
    ({"type": "MultiPolygon", "coordinates": [MARSEILLE_1, [[[5.44, 43.52], [5.45, 43.52], [5.44, 43.52]]]]}, "coordinates[1][0]"),
    ({"type": "Point", "coordinates": VIEUX_PORT, "bbox": [5.3, 43.2]}, '"bbox"'),
]


@pytest.mark.parametrize(("value", "reason"), INVALID, ids=[reason for _, reason in INVALID])
def test_invalid_geometries_name_the_fault(value: Any, reason: str) -> None:
    with pytest.raises(InvalidGeometry) as caught:
        validate_geometry(value)
    assert reason in caught.value.detail
    assert caught.value.to_problem()["type"].endswith("/BadRequestData")
    assert not is_geometry(value)


def test_supported_types_are_the_six_of_clause_4_7_1() -> None:
    assert GEOMETRY_TYPES == {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Property", "value": 21.5},
        {"type": "Point"},
        {"type": "Point", "coordinates": [5.3698, 143.2951]},
        {"type": "Building", "coordinates": VIEUX_PORT},
        "urn:ngsi-ld:Point:1",
        None,
    ],
)
def test_is_geometry_rejects_non_geometries(value: Any) -> None:
    assert not is_geometry(value)


def test_string_encoded_geometry_is_accepted_per_clause_4_7_2() -> None:
    geometry = {"type": "Polygon", "coordinates": MARSEILLE_1}
    assert parse_geometry(json.dumps(geometry)) == geometry
    assert parse_geometry(geometry) is geometry


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "Point", "coordinates": [5.3698, 43.2951', "JSON object"),
        ('{"type": "Point", "coordinates": [NaN, 43.2951]}', "NaN"),
        ('"Point"', "JSON object"),
        ('{"type": "Point", "coordinates": [5.3698, -91]}', "latitude -91"),
    ],
)
def test_string_encoded_geometry_must_be_valid(text: str, reason: str) -> None:
    with pytest.raises(InvalidGeometry, match=reason):
        parse_geometry(text)


def test_parse_coordinates() -> None:
    assert parse_coordinates("[8,40]") == [8, 40]
    assert parse_coordinates(" [[[100.0,0.0],[101.0,0.0],[101.0,1.0],[100.0,1.0],[100.0,0.0]]] ") == [
        [[100.0, 0.0], [101.0, 0.0], [101.0, 1.0], [100.0, 1.0], [100.0, 0.0]]
    ]


@pytest.mark.parametrize("text", ["8,40", "[8,40", "{}", "8", '"[8,40]"', "[Infinity, 40]", ""])
def test_parse_coordinates_rejects_non_arrays(text: str) -> None:
    with pytest.raises(InvalidQuery, match="coordinates"):
        parse_coordinates(text)


def test_geometry_from_query_builds_the_reference_geometry() -> None:
    assert geometry_from_query("Point", "[5.3698,43.2951]") == {"type": "Point", "coordinates": VIEUX_PORT}
    assert geometry_from_query("Polygon", MARSEILLE_1) == {"type": "Polygon", "coordinates": MARSEILLE_1}


@pytest.mark.parametrize(
    ("geometry", "coordinates", "reason"),
    [
        ("GeometryCollection", "[]", "GeometryCollection"),
        ("Circle", "[5.3698,43.2951]", "'Circle'"),
        ("polygon", json.dumps(MARSEILLE_1), "did you mean 'Polygon'"),
        ("Point", "[43.2951,95.0]", "latitude 95"),
        ("LineString", "[[5.3698,43.2951]]", "at least 2 positions"),
        ("Polygon", json.dumps([MARSEILLE_1[0][:-1]]), "closed"),
        ("Point", "5.3698,43.2951", "JSON array"),
    ],
)
def test_geometry_from_query_rejects_bad_parameters(geometry: str, coordinates: str, reason: str) -> None:
    with pytest.raises(InvalidQuery, match=reason) as caught:
        geometry_from_query(geometry, coordinates)
    # clause 5.7.2.4: a geoquery that is not syntactically valid is BadRequestData
    assert caught.value.to_problem()["type"].endswith("/BadRequestData")


def test_positions_flattens_every_type() -> None:
    assert positions({"type": "Point", "coordinates": VIEUX_PORT}) == [VIEUX_PORT]
    assert positions({"type": "Polygon", "coordinates": [MARSEILLE_1[0], HOLE]}) == MARSEILLE_1[0] + HOLE
    multi = {"type": "MultiPolygon", "coordinates": [MARSEILLE_1, [HOLE]]}
    assert positions(multi) == MARSEILLE_1[0] + HOLE
