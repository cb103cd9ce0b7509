"""The indicators service against the real embedded broker on a real socket: history in, indicator entities out.

Measures are written as a device's would be (batch upserts with observedAt,
oldest first); the service reads them through the temporal API and writes its
entities through the broker API; the test reads those back over NGSI-LD and
checks them against figures worked by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.ngsild import NgsiLdClient
from broker.settings import BrokerSettings
from indicators.noise import lden
from indicators.service import IndicatorService, IndicatorSettings
from indicators.timebase import hours, iso, local_at, local_day, span
from models.context.smart_data_models import SDM_ALL_CONTEXT_URL
from tests.broker.conftest import RunningBroker, free_port

LINK = f'<{SDM_ALL_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
DAY = local_day(datetime.now(UTC)) - timedelta(days=3)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("indicators-broker")
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data)
    with RunningBroker(settings) as running:
        yield running.url


def _sensor(kind: str, name: str, lon: float, lat: float, t: datetime, values: dict[str, float]) -> dict[str, Any]:
    entity: dict[str, Any] = {"id": f"urn:ngsi-ld:{kind}:{name}", "type": kind,
                              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}
    for attr, value in values.items():
        entity[attr] = {"type": "Property", "value": value, "observedAt": iso(t)}
    return entity


def _night_level(t: datetime, day: date) -> float:
    d0, _ = span(day, 6, 18)
    e0, _ = span(day, 18, 22)
    n0, n1 = span(day, 22, 6)
    return 65.0 if d0 <= t < e0 else 62.0 if e0 <= t < n0 else 58.0 if n0 <= t < n1 else 50.0


async def _write_history(url: str, tenant: str, until: datetime) -> None:
    async with NgsiLdClient(url) as client:
        for t in hours(local_at(DAY - timedelta(days=1), 0), until):
            hour = t.astimezone(local_at(DAY, 0).tzinfo).hour
            batch = [
                # Marseille: NO2 at 95 (ATMO 3) and PM2.5 at 30 (ATMO 4) every hour
                _sensor("AirQualityObserved", "t-marseille", 5.3946, 43.3065, t, {"no2": 95.0, "pm25": 30.0}),
                # Aix: a street at 65 / 62 / 58 dB(A) by the French periods of DAY
                _sensor("NoiseLevelObserved", "t-aix", 5.4474, 43.5265, t, {"LAeq": _night_level(t, DAY)}),
                # Aubagne: 22 °C at night, 31 °C by day: a tropical night
                _sensor("WeatherObserved", "t-aubagne", 5.5708, 43.2927, t, {"temperature": 31.0 if 10 <= hour < 18 else 22.0}),
            ]
            outcome = await client.upsert(batch, tenant=tenant, context=SDM_ALL_CONTEXT_URL)
            assert not outcome.errors, outcome.errors


def _get(url: str, tenant: str, entity_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/ngsi-ld/v1/entities/{entity_id}", params={"options": "keyValues"},
                         headers={"NGSILD-Tenant": tenant, "Link": LINK}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_service_writes_hand_worked_indicators_back_as_entities_with_history(broker: str) -> None:
    tenant = f"ind{uuid.uuid4().hex[:8]}"
    asyncio.run(_write_history(broker, tenant, local_at(DAY + timedelta(days=1), 12)))
    service = IndicatorService(IndicatorSettings(broker_url=broker, tenant=tenant, lookback_days=6))
    report = asyncio.run(service.catch_up())
    assert report.sensors == 3 and report.recomputed == 3 and report.written > 0 and not report.errors

    town = _get(broker, tenant, "urn:ngsi-ld:AirQualityObserved:atmo:town:13055")
    assert town["dataProvider"] == "metropole-indicators" and town["areaServed"] == "Marseille"
    # The entity's current state is the latest instance: the day after DAY, provisional up to 12:00
    assert town["dateObserved"] == (DAY + timedelta(days=1)).isoformat() and town["provisional"] is True

    history = httpx.get(f"{broker}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:atmo:town:13055",
                        params={"attrs": "airQualityIndex,subIndices,provisional", "options": "temporalValues",
                                "timerel": "between", "timeAt": iso(local_at(DAY, 0)), "endTimeAt": iso(local_at(DAY, 1))},
                        headers={"NGSILD-Tenant": tenant, "Link": LINK}, timeout=10).json()
    # DAY is over: one final instance at its local midnight, ATMO 4 from PM2.5 (25 < 30 <= 50), NO2 at 3 (90 < 95 <= 120)
    assert history["airQualityIndex"]["values"] == [[4, iso(local_at(DAY, 0))]]
    assert history["subIndices"]["values"][0][0] == {"no2": 3, "pm25": 4}
    assert history["provisional"]["values"][0][0] is False

    noise = _get(broker, tenant, "urn:ngsi-ld:NoiseLevelObserved:lden:sensor:t-aix")
    noise_day = httpx.get(f"{broker}/ngsi-ld/v1/temporal/entities/{noise['id']}",
                          params={"attrs": "Lday,Levening,Lnight,Lden", "options": "temporalValues",
                                  "timerel": "between", "timeAt": iso(local_at(DAY, 0)), "endTimeAt": iso(local_at(DAY, 1))},
                          headers={"NGSILD-Tenant": tenant, "Link": LINK}, timeout=10).json()
    assert [noise_day[k]["values"][0][0] for k in ("Lday", "Levening", "Lnight", "Lden")] == [
        65.0, 62.0, 58.0, round(lden(65, 62, 58), 1)]
    assert noise["refSensor"] == "urn:ngsi-ld:NoiseLevelObserved:t-aix" and noise["townCode"] == "13001"

    heat = _get(broker, tenant, "urn:ngsi-ld:HeatIndicatorObserved:town:13005")
    assert heat["areaServed"] == "Aubagne"
    heat_day = httpx.get(f"{broker}/ngsi-ld/v1/temporal/entities/{heat['id']}",
                         params={"attrs": "minTemperature,maxTemperature,tropicalNight", "options": "temporalValues",
                                 "timerel": "between", "timeAt": iso(local_at(DAY, 0)), "endTimeAt": iso(local_at(DAY, 1))},
                         headers={"NGSILD-Tenant": tenant, "Link": LINK}, timeout=10).json()
    assert heat_day["minTemperature"]["values"][0][0] == 22.0 and heat_day["maxTemperature"]["values"][0][0] == 31.0
    assert heat_day["tropicalNight"]["values"][0][0] is True

    # Nothing changed: the next pass recomputes nothing
    assert asyncio.run(service.catch_up()).recomputed == 0
    # New measures of one sensor: only that sensor is recomputed
    async def more() -> None:
        async with NgsiLdClient(broker) as client:
            t = local_at(DAY + timedelta(days=1), 13)
            await client.upsert([_sensor("WeatherObserved", "t-aubagne", 5.5708, 43.2927, t, {"temperature": 30.0})],
                                tenant=tenant, context=SDM_ALL_CONTEXT_URL)
    asyncio.run(more())
    assert asyncio.run(service.catch_up()).recomputed == 1


def test_an_entity_outside_every_town_and_our_own_entities_are_not_read_as_measures(broker: str) -> None:
    tenant = f"ind{uuid.uuid4().hex[:8]}"
    async def write() -> None:
        async with NgsiLdClient(broker) as client:
            t = local_at(DAY, 12)
            await client.upsert([_sensor("AirQualityObserved", "far-away", 2.35, 48.85, t, {"no2": 40.0})],
                                tenant=tenant, context=SDM_ALL_CONTEXT_URL)
    asyncio.run(write())
    service = IndicatorService(IndicatorSettings(broker_url=broker, tenant=tenant, lookback_days=6))
    report = asyncio.run(service.catch_up())
    assert report.sensors == 1 and report.recomputed == 0 and report.written == 0
