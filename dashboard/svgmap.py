"""The map: the towns' shipped outlines and the sensors, drawn as SVG on the server (no tile server).

Longitude and latitude are projected equirectangularly around the area's
mean latitude (lengths true to a few per mille at this scale). Each town and
air station is a link to its page, coloured by its latest ATMO index, with a
name for screen readers; the page's table carries the same information.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from indicators.towns import Town

WIDTH = 640


@dataclass(frozen=True, slots=True)
class Mark:
    """A sensor on the map."""

    lon: float
    lat: float
    href: str
    label: str
    colour: str
    station: bool


def _projection(towns: Sequence[Town]) -> tuple[float, float, float, float, float]:
    xs = [c[0] for t in towns for c in t.outline.exterior.coords]
    ys = [c[1] for t in towns for c in t.outline.exterior.coords]
    k = math.cos(math.radians((min(ys) + max(ys)) / 2))
    scale = (WIDTH - 20) / ((max(xs) - min(xs)) * k)
    return min(xs), max(ys), k, scale, (max(ys) - min(ys)) * scale + 20


def town_map(towns: Sequence[Town], colours: dict[str, str], labels: dict[str, str], hrefs: dict[str, str],
             marks: Sequence[Mark], title: str, desc: str) -> Markup:
    """The SVG map: towns filled with `colours[insee]`, sensors as circles (air) or squares (others)."""
    x0, y0, k, scale, height = _projection(towns)

    def at(lon: float, lat: float) -> tuple[float, float]:
        return 10 + (lon - x0) * k * scale, 10 + (y0 - lat) * scale

    body = ""
    for town in towns:
        points = " ".join("{:.1f},{:.1f}".format(*at(x, y)) for x, y in town.outline.exterior.coords)
        cx, cy = at(*town.centre)
        name = html.escape(town.name)
        body += (f'<a href="{hrefs[town.insee]}" aria-label="{html.escape(labels[town.insee])}">'
                 f'<polygon points="{points}" fill="{colours.get(town.insee, "#DDDDDD")}" class="town"/>'
                 f'<text x="{cx:.1f}" y="{cy - 12:.1f}" class="townname" text-anchor="middle">{name}</text></a>')
    for mark in marks:
        x, y = at(mark.lon, mark.lat)
        shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{mark.colour}" class="mark"/>' if mark.station else
                 f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{mark.colour}" class="mark"/>')
        body += f'<a href="{mark.href}" aria-label="{html.escape(mark.label)}">{shape}</a>'
    return Markup(
        f'<svg class="map" viewBox="0 0 {WIDTH} {height:.0f}" role="group" aria-labelledby="map-t map-d">'
        f'<title id="map-t">{html.escape(title)}</title><desc id="map-d">{html.escape(desc)}</desc>{body}</svg>')
