"""From measures to indicator entities without a broker: days without data, observedAt of final and provisional days."""

from __future__ import annotations

from datetime import date, timedelta

from indicators.compute import PlacedSensor, compute_sensor, sensor_entities, town_entities
from indicators.entities import observed_at
from indicators.timebase import hours, iso, local_at
from indicators.towns import town_by_insee

DAY = date(2026, 7, 14)


def test_final_and_provisional_days_get_observed_times_that_never_meet() -> None:
    assert observed_at(DAY, False, None) == iso(local_at(DAY, 0))
    now = local_at(DAY, 10) + timedelta(minutes=25)
    assert observed_at(DAY, True, now) == iso(local_at(DAY, 10))
    # a Lden day still provisional on the next morning stays inside its own day
    assert observed_at(DAY, True, local_at(DAY, 27)) == iso(local_at(DAY, 24) - timedelta(seconds=1))
    assert observed_at(DAY, True, local_at(DAY, 0)) == iso(local_at(DAY, 0) + timedelta(seconds=1))


def test_days_without_any_measure_get_no_indicator_and_a_town_aggregates_its_sensors() -> None:
    samples = [(h, 95.0) for h in hours(local_at(DAY, 0), local_at(DAY, 24))]
    results = compute_sensor({"no2": samples, "temperature": [(h, 21.0) for h, _ in samples]},
                             [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)], now=local_at(DAY, 30))
    assert set(results.atmo) == {DAY} and results.atmo[DAY].index == 3
    assert set(results.heat) <= {DAY, DAY + timedelta(days=1)}
    town = town_by_insee("13055")
    assert town is not None
    sensor = PlacedSensor("urn:ngsi-ld:AirQualityObserved:x", "AirQualityObserved", 5.39, 43.30, town)
    entities = sensor_entities(sensor, results, [DAY], now=local_at(DAY, 30))
    atmo = next(e for e in entities if e["id"] == "urn:ngsi-ld:AirQualityObserved:atmo:sensor:x")
    assert atmo["airQualityIndex"]["value"] == 3 and atmo["airQualityLevel"]["value"] == "dégradé"
    assert atmo["refSensor"]["object"] == sensor.id
    made = town_entities(town, [results], [DAY], now=local_at(DAY, 30))
    assert {e["id"] for e in made} >= {"urn:ngsi-ld:AirQualityObserved:atmo:town:13055",
                                       "urn:ngsi-ld:AirQualityObserved:eaqi:town:13055"}
    eaqi = [e for e in made if e["id"].endswith("eaqi:town:13055")]
    assert len(eaqi) == 24 and all(e["airQualityIndex"]["value"] == 4 for e in eaqi)  # NO2 95: 60 < x <= 100


def test_just_after_midnight_today_gets_no_instance_and_the_entity_keeps_yesterdays() -> None:
    now = local_at(DAY, 0) + timedelta(minutes=20)
    samples = [(h, 95.0) for h in hours(local_at(DAY - timedelta(days=1), 0), now)]
    results = compute_sensor({"no2": samples}, [DAY - timedelta(days=1), DAY], now=now)
    assert results.atmo[DAY].provisional and results.atmo[DAY].index == 0  # no complete hour yet
    town = town_by_insee("13055")
    assert town is not None
    made = [e for e in town_entities(town, [results], [DAY - timedelta(days=1), DAY], now=now)
            if e["id"].endswith("atmo:town:13055")]
    assert [e["dateObserved"]["value"] for e in made] == [(DAY - timedelta(days=1)).isoformat()]
