"""What each page shows, read from the broker and shaped for the templates (no HTML here).

Every figure a page prints comes from an indicator entity or its history in
the broker, so what a reader sees is what another city's system gets from
the NGSI-LD API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup

from dashboard.charts import Bar, Line, bar_chart, line_chart
from dashboard.i18n import path, words
from dashboard.source import BrokerSource
from dashboard.svgmap import Mark, town_map
from indicators.compute import MEASURED
from indicators.entities import HEAT_TYPE, indicator_id, sensor_key
from indicators.thresholds import ATMO_LEVELS, EAQI_LEVELS, POLLUTANTS, noise_limits
from indicators.timebase import PARIS, hourly_means, local_day
from indicators.towns import Town, town_by_insee, town_of, towns

KIND = {"AirQualityObserved": "air", "NoiseLevelObserved": "noise", "WeatherObserved": "weather"}
UNITS = {"pm25": "µg/m³", "pm10": "µg/m³", "no2": "µg/m³", "o3": "µg/m³", "so2": "µg/m³", "LAeq": "dB(A)",
         "temperature": "°C"}
NAMES = {**POLLUTANTS, "LAeq": "LAeq", "temperature": "T"}


def ink(colour: str) -> str:
    """Black or white, whichever reads better on `colour` (WCAG contrast of at least 4.5:1 on the index colours)."""
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#FFFFFF"


def atmo_badge(index: int | None, lang: str) -> dict[str, Any]:
    """Index, label and colours of an ATMO class (0 or None: indisponible)."""
    level = ATMO_LEVELS[index or 0]
    return {"index": index or 0, "label": level.label(lang), "colour": level.colour, "ink": ink(level.colour)}


def _day_label(moment: datetime, lang: str) -> str:
    local = moment.astimezone(PARIS)
    return local.strftime("%d/%m") if lang == "fr" else local.strftime("%m-%d")


def _town_atmo(source: BrokerSource) -> dict[str, dict[str, Any]]:
    return {e.get("townCode", ""): e for e in source.indicators("AirQualityObserved", "atmo", "town")}


def home(source: BrokerSource, lang: str) -> dict[str, Any]:
    """The map and the table of towns and sensors."""
    w = words(lang)
    atmo = _town_atmo(source)
    sensor_atmo = {e.get("refSensor"): e for e in source.indicators("AirQualityObserved", "atmo", "sensor")}
    rows, colours, labels, hrefs = [], {}, {}, {}
    for town in towns():
        current = atmo.get(town.insee)
        badge = atmo_badge(current.get("airQualityIndex") if current else None, lang)
        colours[town.insee] = badge["colour"]
        hrefs[town.insee] = path(lang, "town", insee=town.insee)
        labels[town.insee] = f"{town.name} : {w['atmo']} {badge['index']} ({badge['label']})"
        rows.append({"town": town, "href": hrefs[town.insee], "badge": badge,
                     "date": current.get("dateObserved") if current else None,
                     "provisional": bool(current and current.get("provisional"))})
    marks, sensor_rows = [], []
    for entity in sorted(source.sensors(), key=lambda e: e["id"]):
        placed = _located(entity)
        if placed is None:
            continue
        lon, lat, town = placed
        kind = KIND.get(entity["type"], "air")
        own: dict[str, Any] | None = sensor_atmo.get(entity["id"])
        own_badge: dict[str, Any] | None = atmo_badge(own.get("airQualityIndex") if own else None, lang) if kind == "air" else None
        href = path(lang, "sensor", sensor=entity["id"])
        name = str(entity.get("name") or sensor_key(entity["id"]))
        label = f"{name} ({w['kind_' + kind]})" + (f" : {w['atmo']} {own_badge['index']} ({own_badge['label']})" if own_badge else "")
        marks.append(Mark(lon, lat, href, label, own_badge["colour"] if own_badge else "#4A4A4A", kind == "air"))
        sensor_rows.append({"name": name, "kind": w["kind_" + kind], "town": town.name, "href": href, "badge": own_badge})
    svg = town_map(towns(), colours, labels, hrefs, marks, w["map_title"], w["map_desc"])
    legend = [atmo_badge(level, lang) for level in range(1, 7)] + [atmo_badge(0, lang)]
    return {"map": svg, "towns": rows, "sensors": sensor_rows, "legend": legend}


def _located(entity: dict[str, Any]) -> tuple[float, float, Town] | None:
    location = entity.get("location")
    if not isinstance(location, dict) or location.get("type") != "Point":
        return None
    lon, lat = float(location["coordinates"][0]), float(location["coordinates"][1])
    town = town_of(lon, lat)
    return (lon, lat, town) if town else None


def town_page(source: BrokerSource, lang: str, insee: str, now: datetime | None = None) -> dict[str, Any] | None:
    """A town's indicators today and over time."""
    town = town_by_insee(insee)
    if town is None:
        return None
    w = words(lang)
    now = now or datetime.now(UTC)
    since = now - timedelta(days=30)
    current = source.entity(indicator_id("AirQualityObserved", "atmo", "town", insee))
    badge = atmo_badge(current.get("airQualityIndex") if current else None, lang)
    subs = []
    if current:
        stats = current.get("dailyStatistics") or {}
        for pollutant, level in sorted((current.get("subIndices") or {}).items()):
            subs.append({"pollutant": POLLUTANTS.get(pollutant, pollutant), "badge": atmo_badge(level, lang),
                         "statistic": stats.get(pollutant)})
    history = source.daily(indicator_id("AirQualityObserved", "atmo", "town", insee), ["airQualityIndex"], since, now)
    atmo_rows: list[dict[str, Any]] = [{"day": _day_label(t, lang), "badge": atmo_badge(int(v), lang)} for t, v in history.get("airQualityIndex", [])]
    atmo_chart = bar_chart("atmo", w["atmo_30"], w["atmo_30"] + f" ({town.name})",
                           [Bar(r["day"], max(r["badge"]["index"], 0.15), r["badge"]["colour"],
                                f"{r['day']} : {r['badge']['index']} {r['badge']['label']}") for r in atmo_rows], 6)
    eaqi = source.history(indicator_id("AirQualityObserved", "eaqi", "town", insee), ["airQualityIndex"],
                          now - timedelta(hours=48), now)
    eaqi_rows: list[dict[str, Any]] = []
    for t, v in eaqi.get("airQualityIndex", []):
        level = EAQI_LEVELS[int(v)]
        label = t.astimezone(PARIS).strftime("%d/%m %Hh" if lang == "fr" else "%m-%d %H:00")
        eaqi_rows.append({"hour": label, "index": int(v), "label": level.label(lang), "colour": level.colour,
                          "ink": ink(level.colour)})
    eaqi_chart = bar_chart("eaqi", w["eaqi_48"], w["eaqi_48"] + f" ({town.name})",
                           [Bar(r["hour"][-3:], r["index"], r["colour"], f"{r['hour']} : {r['index']} {r['label']}")
                            for r in eaqi_rows], 6)
    heat = _heat(source, insee, since, now, lang)
    noise = _noise(source, insee, since, now, lang)
    who = _who(source, insee, since, now)
    sensors = [{"name": str(e.get("name") or sensor_key(e["id"])), "href": path(lang, "sensor", sensor=e["id"]),
                "kind": w["kind_" + KIND.get(e["type"], "air")]}
               for e in sorted(source.sensors(), key=lambda e: e["id"]) if (_located(e) or (0, 0, None))[2] == town]
    month = local_day(now).strftime("%Y-%m")
    previous = (local_day(now).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    return {"town": town, "current": current, "badge": badge, "subs": subs, "atmo_chart": atmo_chart,
            "atmo_rows": atmo_rows, "eaqi_chart": eaqi_chart, "eaqi_rows": eaqi_rows, "heat": heat, "noise": noise,
            "who": who, "sensors": sensors,
            "reports": [{"month": m, "href": path(lang, "report", place=insee, month=m)} for m in (month, previous)]}


def _heat(source: BrokerSource, insee: str, since: datetime, now: datetime, lang: str) -> dict[str, Any]:
    w = words(lang)
    series = source.daily(indicator_id(HEAT_TYPE, None, "town", insee),
                            ["minTemperature", "maxTemperature", "tropicalNight", "heatWaveDay"], since, now)
    days = sorted({t for name in ("minTemperature", "maxTemperature") for t, _ in series.get(name, [])})
    by = {name: dict(series.get(name, [])) for name in series}
    rows: list[dict[str, Any]] = [{"day": _day_label(t, lang), "tmin": by.get("minTemperature", {}).get(t),
             "tmax": by.get("maxTemperature", {}).get(t), "tropical": by.get("tropicalNight", {}).get(t),
             "wave": by.get("heatWaveDay", {}).get(t)} for t in days]
    chart = line_chart("heat", w["heat_chart"], w["heat_chart"], [
        Line(w["tmax"], "#B2182B", [(r["day"], r["tmax"]) for r in rows]),
        Line(w["tmin"], "#2166AC", [(r["day"], r["tmin"]) for r in rows], dashed=True)],
        references=[(20.0, "20 °C")])
    return {"rows": rows, "chart": chart, "tropical": sum(1 for r in rows if r["tropical"] is True),
            "waves": sum(1 for r in rows if r["wave"] is True)}


def _noise(source: BrokerSource, insee: str, since: datetime, now: datetime, lang: str) -> list[dict[str, Any]]:
    w = words(lang)
    out: list[dict[str, Any]] = []
    limits = noise_limits()
    for entity in sorted(source.indicators("NoiseLevelObserved", "noise", "sensor"), key=lambda e: e["id"]):
        if entity.get("townCode") != insee:
            continue
        series = source.daily(entity["id"], ["Lden", "Lnight"], since, now)
        days = sorted({t for name in ("Lden", "Lnight") for t, _ in series.get(name, [])})
        lden, lnight = dict(series.get("Lden", [])), dict(series.get("Lnight", []))
        rows: list[dict[str, Any]] = [{"day": _day_label(t, lang), "lden": lden.get(t), "lnight": lnight.get(t)} for t in days]
        chart = line_chart(f"noise-{len(out)}", w["noise_chart"], f"{w['noise_chart']} : {sensor_key(str(entity.get('refSensor')))}", [
            Line("Lden", "#5E3C99", [(r["day"], r["lden"]) for r in rows]),
            Line("Lnight", "#1B7837", [(r["day"], r["lnight"]) for r in rows], dashed=True)],
            references=[(limits[("france_road", "Lnight")], "Ln FR 62"), (limits[("who_2018_road", "Lnight")], "Ln OMS/WHO 45")])
        out.append({"sensor": sensor_key(str(entity.get("refSensor"))), "href": path(lang, "sensor", sensor=str(entity.get("refSensor"))),
                    "rows": rows, "chart": chart,
                    "over_fr": sum(1 for r in rows if r["lnight"] is not None and r["lnight"] > limits[("france_road", "Lnight")]),
                    "over_who": sum(1 for r in rows if r["lnight"] is not None and r["lnight"] > limits[("who_2018_road", "Lnight")])})
    return out


def _who(source: BrokerSource, insee: str, since: datetime, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entity in source.indicators("AirQualityObserved", "atmo", "sensor"):
        if entity.get("townCode") != insee:
            continue
        series = source.daily(entity["id"], ["whoExceedances"], since, now)
        for t, found in series.get("whoExceedances", []):
            for e in found or []:
                out.append({"day": local_day(t).isoformat(), "sensor": sensor_key(str(entity.get("refSensor"))),
                            "pollutant": POLLUTANTS.get(e["pollutant"], e["pollutant"]), "averaging": e["averaging"],
                            "value": e["value"], "limit": e["limit"]})
    return sorted(out, key=lambda r: (r["day"], r["sensor"], r["pollutant"]), reverse=True)


def sensor_page(source: BrokerSource, lang: str, sensor_id: str, now: datetime | None = None) -> dict[str, Any] | None:
    """A sensor's raw measures over the last 7 days (hourly means) and its latest values."""
    entity = source.entity(sensor_id)
    if entity is None or entity.get("type") not in KIND:
        return None
    w = words(lang)
    now = now or datetime.now(UTC)
    attrs = [a for a in MEASURED if a in entity]
    series = source.history(sensor_id, attrs, now - timedelta(days=7), now)
    hourly = {a: hourly_means([(t, float(v)) for t, v in series.get(a, []) if isinstance(v, (int, float))]) for a in attrs}
    hours = sorted({h for values in hourly.values() for h in values})
    charts: list[Markup] = []
    for i, attr in enumerate(attrs):
        points = [(_day_label(h, lang), hourly[attr].get(h)) for h in hours]
        title = f"{w['raw_history']} : {NAMES[attr]} ({UNITS[attr]})"
        charts.append(line_chart(f"raw-{i}", title, title, [Line(NAMES[attr], "#1F4E79", points)]))
    table = [{"time": h.astimezone(PARIS).strftime("%Y-%m-%d %H:00"),
              "cells": [None if hourly[a].get(h) is None else round(hourly[a][h], 1) for a in attrs]}
             for h in reversed(hours)]
    placed = _located(entity)
    latest = [{"name": NAMES[a], "value": entity.get(a), "unit": UNITS[a]} for a in attrs]
    return {"entity": entity, "name": str(entity.get("name") or sensor_key(sensor_id)), "kind": w["kind_" + KIND[entity["type"]]],
            "town": placed[2] if placed else None, "attrs": [f"{NAMES[a]} ({UNITS[a]})" for a in attrs],
            "charts": charts, "table": table, "latest": latest, "observed": _text(entity.get("dateObserved"))}


def _text(value: Any) -> Any:
    """A keyValues value as text: a typed JSON-LD value ({"@type": "DateTime", "@value": ...}) by its @value."""
    return value.get("@value") if isinstance(value, dict) and "@value" in value else value


def api_towns(source: BrokerSource) -> list[dict[str, Any]]:
    """The current ATMO index of each town, as the map shows it (JSON for integrators and tests)."""
    atmo = _town_atmo(source)
    out = []
    for town in towns():
        current = atmo.get(town.insee) or {}
        out.append({"insee": town.insee, "name": town.name, "airQualityIndex": current.get("airQualityIndex"),
                    "airQualityLevel": current.get("airQualityLevel"), "dateObserved": current.get("dateObserved"),
                    "subIndices": current.get("subIndices"), "provisional": current.get("provisional")})
    return out


def pollutant_names(keys: Sequence[str]) -> list[str]:
    """Display names of pollutants."""
    return [POLLUTANTS.get(k, k) for k in keys]
