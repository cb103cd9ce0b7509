"""ngsildclient (the NGSI-LD client the users named), pointed at the running broker, works without errors.

It speaks application/ld+json with the versionless core context URL, probes
the broker with `type=None&limit=0&count=true`, creates tenants on demand,
and uses single and batch operations: a good stand-in for the clients other
cities will point at us.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from ngsildclient import Client, Entity


@pytest.fixture
def ngsi(broker_url: str, tenant: str) -> Client:
    url = urlparse(broker_url)
    client = Client(hostname=url.hostname or "127.0.0.1", port=url.port or 1026, tenant=tenant, verbose=False)
    yield client
    client.close()


def _station(name: str, no2: float, lng: float, lat: float) -> Entity:
    e = Entity("AirQualityObserved", name)
    e.prop("no2", no2, unitcode="GQ").gprop("location", (lat, lng))
    return e


def test_create_get_upsert_query_delete(ngsi: Client) -> None:
    aix = _station("Aix-Mirabeau", 41.0, 5.4474, 43.5265)
    assert ngsi.create(aix)
    assert ngsi.exists(aix.id)

    back = ngsi.get(aix.id)
    assert back["no2"]["value"] == 41.0
    assert back["location"]["value"]["coordinates"] == [5.4474, 43.5265]

    aix["no2"]["value"] = 55.5
    ngsi.upsert(aix)
    assert ngsi.get(aix.id)["no2"]["value"] == 55.5

    marseille = [_station(f"Marseille-{i}", 20.0 + i * 10, 5.37 + i / 100, 43.29) for i in range(4)]
    ngsi.create(*marseille)
    assert ngsi.count(type="AirQualityObserved") == 5
    high = ngsi.query(type="AirQualityObserved", q="no2>40")
    assert sorted(e.id for e in high) == sorted([aix.id, marseille[3].id])

    ngsi.delete(aix)
    assert not ngsi.exists(aix.id)
    assert ngsi.count(type="AirQualityObserved") == 4
