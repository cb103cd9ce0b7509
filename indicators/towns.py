"""The towns of the metropolis the indicators are computed for, and which town a sensor stands in.

`data/towns.geojson` holds the pilot towns (INSEE code, name, centre, a
simplified outline; its `source` member says where the outlines come from).
A sensor belongs to the town whose outline contains its location, or, for a
location just outside every outline (a coastal station, the outlines being
simplified), to the nearest town centre within 3 km.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from indicators.thresholds import DATA

NEAREST_KM = 3.0


@dataclass(frozen=True)
class Town:
    """A town: INSEE code, name, centre (lon, lat) and outline."""

    insee: str
    name: str
    centre: tuple[float, float]
    outline: BaseGeometry
    geometry: dict[str, Any]

    @property
    def slug(self) -> str:
        """A URL-friendly name (the INSEE code, stable and ASCII)."""
        return self.insee


@cache
def towns_geojson() -> dict[str, Any]:
    """The shipped GeoJSON FeatureCollection of the towns."""
    result: dict[str, Any] = json.loads((DATA / "towns.geojson").read_text(encoding="utf-8"))
    return result


@cache
def towns() -> tuple[Town, ...]:
    """Every town of `data/towns.geojson`, in file order."""
    out = []
    for feature in towns_geojson()["features"]:
        p = feature["properties"]
        out.append(Town(p["insee"], p["name"], (float(p["centre"][0]), float(p["centre"][1])),
                        shape(feature["geometry"]), feature["geometry"]))
    return tuple(out)


def town_by_insee(insee: str) -> Town | None:
    """The town with that INSEE code, or None."""
    return next((t for t in towns() if t.insee == insee), None)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(h))


def town_of(lon: float, lat: float) -> Town | None:
    """The town a location stands in (see the module's rule), or None."""
    point = Point(lon, lat)
    for town in towns():
        if town.outline.covers(point):
            return town
    nearest = min(towns(), key=lambda t: distance_km((lon, lat), t.centre), default=None)
    if nearest is not None and distance_km((lon, lat), nearest.centre) <= NEAREST_KM:
        return nearest
    return None
