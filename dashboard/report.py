"""The monthly report of a town or of the metropolis, for decision makers: the month against the month before.

For a place (a town, or `metropole` for every pilot town) and a month:
ATMO days per class and the worst day; WHO 2021 exceedance days per
pollutant and the month's mean of the daily means against the annual level
(indicative: a month is not a year); noise per sensor (energetic mean of the
daily Lden and Lnight, days above the French limit values and the WHO
recommendations); heat (tropical nights, heat-wave days, highest Tx); the
data coverage of every sensor (hours with at least one measure over the
month's hours elapsed); and each figure's change since the previous month.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dashboard.source import BrokerSource
from indicators.compute import MEASURED
from indicators.entities import HEAT_TYPE, indicator_id, sensor_key
from indicators.thresholds import ATMO_LEVELS, POLLUTANTS, noise_limits, who_guidelines
from indicators.timebase import energetic_mean, hour_of, local_at, local_day
from indicators.towns import Town, town_by_insee, town_of, towns


def month_span(month: str) -> tuple[date, date]:
    """First and last day of a `YYYY-MM` month."""
    first = date.fromisoformat(month + "-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


def previous_month(month: str) -> str:
    """The `YYYY-MM` before."""
    return (month_span(month)[0] - timedelta(days=1)).strftime("%Y-%m")


def _places(place: str) -> list[Town]:
    if place == "metropole":
        return list(towns())
    town = town_by_insee(place)
    return [town] if town else []


def summary(source: BrokerSource, place: str, month: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The figures of one month for a place; None for an unknown place."""
    places = _places(place)
    if not places:
        return None
    now = now or datetime.now(UTC)
    first, last = month_span(month)
    start, end = local_at(first, 0), min(local_at(last, 24), now)
    if end <= start:
        return {"atmo": {}, "who_days": {}, "who_means": {}, "noise": [], "heat": {}, "coverage": [], "days": 0}
    codes = {t.insee for t in places}
    atmo_days: Counter[int] = Counter()
    worst: tuple[int, str] | None = None
    heat: dict[str, Any] = {"tropical": 0, "waves": 0, "tmax": None}
    for town in places:
        series = source.daily(indicator_id("AirQualityObserved", "atmo", "town", town.insee), ["airQualityIndex"], start, end)
        for t, v in series.get("airQualityIndex", []):
            atmo_days[int(v)] += 1
            if worst is None or int(v) > worst[0]:
                worst = (int(v), f"{town.name} {local_day(t).isoformat()}")
        hs = source.daily(indicator_id(HEAT_TYPE, None, "town", town.insee), ["tropicalNight", "heatWaveDay", "maxTemperature"], start, end)
        heat["tropical"] += sum(1 for _, v in hs.get("tropicalNight", []) if v is True)
        heat["waves"] += sum(1 for _, v in hs.get("heatWaveDay", []) if v is True)
        for _, v in hs.get("maxTemperature", []):
            heat["tmax"] = v if heat["tmax"] is None else max(heat["tmax"], v)
    who_days: Counter[str] = Counter()
    daily: dict[str, list[float]] = {}
    for entity in source.indicators("AirQualityObserved", "atmo", "sensor"):
        if entity.get("townCode") not in codes:
            continue
        series = source.daily(entity["id"], ["whoExceedances", "dailyMeans"], start, end)
        for _, found in series.get("whoExceedances", []):
            for e in found or []:
                who_days[POLLUTANTS.get(e["pollutant"], e["pollutant"])] += 1
        for _, means in series.get("dailyMeans", []):
            for pollutant, value in (means or {}).items():
                daily.setdefault(pollutant, []).append(float(value))
    guidelines = who_guidelines()
    who_means = {POLLUTANTS[p]: {"mean": round(sum(v) / len(v), 1), "limit": guidelines[(p, "annual")],
                                 "over": sum(v) / len(v) > guidelines[(p, "annual")]}
                 for p, v in sorted(daily.items()) if (p, "annual") in guidelines and v}
    limits = noise_limits()
    noise = []
    for entity in sorted(source.indicators("NoiseLevelObserved", "noise", "sensor"), key=lambda e: e["id"]):
        if entity.get("townCode") not in codes:
            continue
        series = source.daily(entity["id"], ["Lden", "Lnight"], start, end)
        lden = [float(v) for _, v in series.get("Lden", [])]
        lnight = [float(v) for _, v in series.get("Lnight", [])]
        noise.append({"sensor": sensor_key(str(entity.get("refSensor"))), "town": entity.get("areaServed"),
                      "lden": round(energetic_mean(lden), 1) if lden else None,
                      "lnight": round(energetic_mean(lnight), 1) if lnight else None,
                      "lden_fr": sum(1 for v in lden if v > limits[("france_road", "Lden")]),
                      "lnight_fr": sum(1 for v in lnight if v > limits[("france_road", "Lnight")]),
                      "lden_who": sum(1 for v in lden if v > limits[("who_2018_road", "Lden")]),
                      "lnight_who": sum(1 for v in lnight if v > limits[("who_2018_road", "Lnight")])})
    hours = int((end - start).total_seconds() // 3600)
    coverage = []
    for entity in sorted(source.sensors(), key=lambda e: e["id"]):
        location = entity.get("location") or {}
        coords = location.get("coordinates") if location.get("type") == "Point" else None
        found = town_of(float(coords[0]), float(coords[1])) if coords else None
        if found is None or found.insee not in codes:
            continue
        attrs = [a for a in MEASURED if a in entity]
        series = source.history(entity["id"], attrs, start, end)
        seen = {hour_of(t) for values in series.values() for t, _ in values}
        coverage.append({"sensor": sensor_key(entity["id"]), "town": found.name,
                         "coverage": round(100 * len(seen) / hours, 1) if hours else 0.0})
    return {"atmo": {level: atmo_days.get(level, 0) for level in ATMO_LEVELS},
            "poor_days": sum(n for level, n in atmo_days.items() if level >= 4), "worst": worst,
            "who_days": dict(sorted(who_days.items())), "who_means": who_means, "noise": noise, "heat": heat,
            "coverage": coverage, "days": (min(last, local_day(now)) - first).days + 1}


def compare(current: dict[str, Any], before: dict[str, Any]) -> list[dict[str, Any]]:
    """The key figures with their change since the previous month."""
    def row(name: str, now_value: float | None, then_value: float | None) -> dict[str, Any]:
        delta = None if now_value is None or then_value is None else round(now_value - then_value, 1)
        return {"name": name, "now": now_value, "before": then_value, "delta": delta}
    rows = [row("atmo_poor_days", current.get("poor_days", 0), before.get("poor_days", 0)),
            row("tropical_nights", current["heat"].get("tropical", 0) if current.get("heat") else 0,
                before["heat"].get("tropical", 0) if before.get("heat") else 0),
            row("heat_wave_days", current["heat"].get("waves", 0) if current.get("heat") else 0,
                before["heat"].get("waves", 0) if before.get("heat") else 0),
            row("who_exceedance_days", sum(current.get("who_days", {}).values()), sum(before.get("who_days", {}).values()))]
    for sensor in current.get("noise", []):
        old: dict[str, Any] = next((s for s in before.get("noise", []) if s["sensor"] == sensor["sensor"]), {})
        rows.append(row(f"lnight:{sensor['sensor']}", sensor.get("lnight"), old.get("lnight")))
    return rows
