"""The demo fleet: three devices in each of four pilot towns, as an integrator would provision them.

Coordinates are plausible places of each town (the air stations stand where
AtmoSud's stations of the same names are); they fall inside the shipped town
outlines (indicators/data/towns.geojson).
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE = "metropole"
SUBSERVICE = "/demo"


@dataclass(frozen=True, slots=True)
class DemoDevice:
    """One simulated device: id, kind (air, noise, weather), town, place name and location."""

    device_id: str
    kind: str
    town: str
    place: str
    lat: float
    lon: float

    @property
    def entity_type(self) -> str:
        """The Smart Data Model the device's measures become."""
        return {"air": "AirQualityObserved", "noise": "NoiseLevelObserved", "weather": "WeatherObserved"}[self.kind]

    @property
    def entity_id(self) -> str:
        """The id of its measuring entity."""
        return f"urn:ngsi-ld:{self.entity_type}:{self.device_id}"


#: apikey of each kind's service group.
APIKEYS = {"air": "demo-air-aq7f3", "noise": "demo-noise-n2k9", "weather": "demo-weather-w5p1"}

FLEET: tuple[DemoDevice, ...] = (
    DemoDevice("demo-marseille-longchamp", "air", "Marseille", "Longchamp", 43.3065, 5.3946),
    DemoDevice("demo-marseille-cours-julien", "noise", "Marseille", "Cours Julien", 43.2940, 5.3840),
    DemoDevice("demo-marseille-vieux-port", "weather", "Marseille", "Vieux-Port", 43.2951, 5.3698),
    DemoDevice("demo-aix-ecole-art", "air", "Aix-en-Provence", "École d'Art", 43.5307, 5.4406),
    DemoDevice("demo-aix-mirabeau", "noise", "Aix-en-Provence", "Cours Mirabeau", 43.5265, 5.4474),
    DemoDevice("demo-aix-jas-de-bouffan", "weather", "Aix-en-Provence", "Jas de Bouffan", 43.5256, 5.4200),
    DemoDevice("demo-martigues-lavera", "air", "Martigues", "Lavéra", 43.3900, 5.0040),
    DemoDevice("demo-martigues-ferrieres", "noise", "Martigues", "Ferrières", 43.4090, 5.0480),
    DemoDevice("demo-martigues-centre", "weather", "Martigues", "Centre", 43.4000, 5.0600),
    DemoDevice("demo-aubagne-centre", "air", "Aubagne", "Centre", 43.2927, 5.5708),
    DemoDevice("demo-aubagne-gare", "noise", "Aubagne", "Gare", 43.2900, 5.5650),
    DemoDevice("demo-aubagne-napollon", "weather", "Aubagne", "Napollon", 43.2800, 5.5900),
)


def provisioning(device: DemoDevice) -> dict[str, object]:
    """The device's entry of a POST /iot/devices body (its measures mapped by its Smart Data Models profile)."""
    return {
        "device_id": device.device_id, "entity_name": device.entity_id, "entity_type": device.entity_type,
        "protocol": "PDI-IoTA-JSON", "transport": "MQTT", "apikey": APIKEYS[device.kind],
        "static_attributes": [
            {"name": "location", "type": "geo:point", "value": f"{device.lat},{device.lon}"},
            {"name": "name", "type": "Text", "value": f"{device.town} - {device.place}"},
        ],
    }


def service_groups() -> list[dict[str, object]]:
    """The POST /iot/services body's groups: one per kind of device."""
    entity_type = {"air": "AirQualityObserved", "noise": "NoiseLevelObserved", "weather": "WeatherObserved"}
    return [{"apikey": key, "entity_type": entity_type[kind], "resource": "/iot/json"} for kind, key in APIKEYS.items()]
