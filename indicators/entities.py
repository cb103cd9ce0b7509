"""Indicator results as NGSI-LD entities (normalized), one entity per indicator and place, one instance per period.

Each indicator of a place is one entity whose history, through the broker's
temporal API, is the indicator's series, so other systems subscribe to and
query it like any other context. Every attribute of one instance shares one
`observedAt`:

- a final daily value (the day is over): local midnight starting the day;
- a provisional value of a day under way: the last full hour (at most one
  second before the day ends), so it never takes the final value's place:
  brokers that keep the first instance written at a time (ours) keep the
  final value once, and a reader of the history groups instances by
  `dateObserved` (the day, YYYY-MM-DD), preferring the final one;
- an hourly European AQI: the start of the hour, written once the hour is over.

A day with no measure at all for an indicator gets no instance.

| entity type (id prefix) | place | period | attributes |
|---|---|---|---|
| AirQualityObserved (Smart Data Models), `urn:ngsi-ld:AirQualityObserved:atmo:{town|sensor}:<key>` | town, sensor | day | dateObserved, airQualityIndex (0-6, 0 = indisponible), airQualityLevel (French label), subIndices, dailyStatistics, dailyMeans, responsiblePollutants, whoExceedances, provisional |
| AirQualityObserved, `urn:ngsi-ld:AirQualityObserved:eaqi:town:<insee>` | town | hour | airQualityIndex (1-6, European AQI 2024), airQualityLevel (English label), subIndices |
| NoiseLevelObserved (Smart Data Models), `urn:ngsi-ld:NoiseLevelObserved:lden:sensor:<key>` | sensor | day | dateObserved, Lday, Levening, Lnight, Lden (dB(A), unitCode 2N), exceedances, dateObservedFrom, dateObservedTo, provisional |
| HeatIndicatorObserved (ours), `urn:ngsi-ld:HeatIndicatorObserved:{town|sensor}:<key>` | town, sensor | day | dateObserved, minTemperature, meanTemperature, maxTemperature (unitCode CEL), tropicalNight, heatWaveDay, provisional |

Every indicator entity has `indicator` (atmo, eaqi, noise, heat), `indicatorPlace`
(town or sensor), `areaServed` (the town's name), `townCode` (INSEE),
`dataProvider` ("metropole-indicators"), a `location`, and for a sensor a
`refDevice`-like Relationship `refSensor` to the measuring entity. A value the
data cannot give (an unavailable Lnight) is left out of that instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from indicators.air import AtmoDay, EaqiHour, Exceedance
from indicators.heat import HeatDay
from indicators.noise import NoiseDay
from indicators.thresholds import ATMO_LEVELS, EAQI_LEVELS
from indicators.timebase import hour_of, iso, local_at, span

PROVIDER = "metropole-indicators"
HEAT_TYPE = "HeatIndicatorObserved"
Entity = dict[str, Any]


def indicator_id(entity_type: str, indicator: str | None, scope: str, key: str) -> str:
    """The id of a place's indicator entity (`key`: INSEE code, or the sensor id's last segments)."""
    middle = f"{indicator}:" if indicator else ""
    return f"urn:ngsi-ld:{entity_type}:{middle}{scope}:{key}"


def sensor_key(sensor_id: str) -> str:
    """The part of a sensor's entity id after `urn:ngsi-ld:<Type>:`."""
    parts = sensor_id.split(":", 3)
    return parts[3] if len(parts) == 4 and parts[0] == "urn" else sensor_id.replace(":", "-")


def is_indicator(entity: Mapping[str, Any]) -> bool:
    """Whether an entity is one of ours (so the service never reads its own results as measures)."""
    provider = entity.get("dataProvider")
    value = provider.get("value") if isinstance(provider, dict) else provider
    return value == PROVIDER


def _prop(value: Any, observed: str, unit: str | None = None) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value, "observedAt": observed}
    if unit:
        attr["unitCode"] = unit
    return attr


def observed_at(day: date, provisional: bool, now: datetime | None) -> str:
    """The observedAt of a daily instance (see the module's rule)."""
    start = local_at(day, 0)
    if not provisional or now is None:
        return iso(start)
    moment = min(hour_of(now), local_at(day, 24) - timedelta(seconds=1))
    return iso(max(moment, start + timedelta(seconds=1)))


def _place(entity_id: str, entity_type: str, indicator: str, scope: str, town_name: str, town_code: str,
           location: Sequence[float], observed: str, sensor_id: str | None) -> Entity:
    entity: Entity = {
        "id": entity_id, "type": entity_type,
        "indicator": _prop(indicator, observed), "indicatorPlace": _prop(scope, observed),
        "areaServed": _prop(town_name, observed), "townCode": _prop(town_code, observed),
        "dataProvider": _prop(PROVIDER, observed),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [location[0], location[1]]}},
    }
    if sensor_id:
        entity["refSensor"] = {"type": "Relationship", "object": sensor_id, "observedAt": observed}
    return entity


def _exceedance(e: Exceedance) -> dict[str, Any]:
    return {"pollutant": e.pollutant, "averaging": e.averaging, "value": e.value, "limit": e.limit}


def atmo_entity(result: AtmoDay, *, scope: str, key: str, town_name: str, town_code: str,
                location: Sequence[float], sensor_id: str | None = None,
                who: Sequence[Exceedance] = (), means: Mapping[str, float] | None = None,
                now: datetime | None = None) -> Entity:
    """The ATMO index of a day for a town or a sensor."""
    observed = observed_at(result.day, result.provisional, now)
    entity = _place(indicator_id("AirQualityObserved", "atmo", scope, key), "AirQualityObserved", "atmo", scope,
                    town_name, town_code, location, observed, sensor_id)
    entity.update({
        "dateObserved": _prop(result.day.isoformat(), observed),
        "airQualityIndex": _prop(result.index, observed),
        "airQualityLevel": _prop(ATMO_LEVELS[result.index].label_fr, observed),
        "subIndices": _prop(dict(result.sub_indices), observed),
        "dailyStatistics": _prop(dict(result.statistics), observed, "GQ"),
        "responsiblePollutants": _prop(result.responsible, observed),
        "whoExceedances": _prop([_exceedance(e) for e in who], observed),
        "provisional": _prop(result.provisional, observed),
    })
    if means is not None:
        entity["dailyMeans"] = _prop({p: round(v, 1) for p, v in means.items()}, observed, "GQ")
    return entity


def eaqi_entity(result: EaqiHour, *, key: str, town_name: str, location: Sequence[float]) -> Entity:
    """The European AQI of an hour for a town."""
    observed = iso(result.hour)
    entity = _place(indicator_id("AirQualityObserved", "eaqi", "town", key), "AirQualityObserved", "eaqi", "town",
                    town_name, key, location, observed, None)
    entity.update({
        "airQualityIndex": _prop(result.index, observed),
        "airQualityLevel": _prop(EAQI_LEVELS[result.index].label_en, observed),
        "subIndices": _prop(dict(result.sub_indices), observed),
    })
    return entity


def noise_entity(result: NoiseDay, *, key: str, town_name: str, town_code: str, location: Sequence[float],
                 sensor_id: str, now: datetime | None = None) -> Entity:
    """Lday/Levening/Lnight/Lden of a day for a sensor."""
    observed = observed_at(result.day, result.provisional, now)
    entity = _place(indicator_id("NoiseLevelObserved", "lden", "sensor", key), "NoiseLevelObserved", "noise",
                    "sensor", town_name, town_code, location, observed, sensor_id)
    start, _ = span(result.day, 6, 18)
    _, end = span(result.day, 22, 6)
    entity.update({
        "dateObserved": _prop(result.day.isoformat(), observed),
        "dateObservedFrom": _prop(iso(start), observed), "dateObservedTo": _prop(iso(end), observed),
        "exceedances": _prop(dict(result.exceedances), observed),
        "provisional": _prop(result.provisional, observed),
    })
    for name, value in (("Lday", result.lday), ("Levening", result.levening), ("Lnight", result.lnight),
                        ("Lden", result.lden)):
        if value is not None:
            entity[name] = _prop(value, observed, "2N")
    return entity


def heat_entity(result: HeatDay, *, scope: str, key: str, town_name: str, town_code: str,
                location: Sequence[float], sensor_id: str | None = None, now: datetime | None = None) -> Entity:
    """The heat indicators of a day for a town or a sensor."""
    observed = observed_at(result.day, result.provisional, now)
    entity = _place(indicator_id(HEAT_TYPE, None, scope, key), HEAT_TYPE, "heat", scope, town_name, town_code,
                    location, observed, sensor_id)
    entity["dateObserved"] = _prop(result.day.isoformat(), observed)
    entity["provisional"] = _prop(result.provisional, observed)
    for name, value in (("minTemperature", result.tmin), ("meanTemperature", result.tmean),
                        ("maxTemperature", result.tmax)):
        if value is not None:
            entity[name] = _prop(value, observed, "CEL")
    for name, flag in (("tropicalNight", result.tropical_night), ("heatWaveDay", result.heat_wave)):
        if flag is not None:
            entity[name] = _prop(flag, observed)
    return entity



