"""The Smart Data Models the platform speaks, registered by entity type.

    model_for("AirQualityObserved")   # -> AirQualityObserved
    MODELS                            # {"AirQualityObserved": AirQualityObserved, ...}

Adding a model is adding its module and one entry here; a test checks that
every entry's type, subject, schema id and attributes are consistent.
"""

from __future__ import annotations

from typing import Final

from models.smart_data_models.air_quality_observed import AirQualityObserved
from models.smart_data_models.base import SmartDataModel
from models.smart_data_models.device import Device
from models.smart_data_models.device_measurement import DeviceMeasurement
from models.smart_data_models.device_model import DeviceModel
from models.smart_data_models.noise_level_observed import NoiseLevelObserved
from models.smart_data_models.weather_observed import WeatherObserved

MODELS: Final[dict[str, type[SmartDataModel]]] = {
    m.ENTITY_TYPE: m
    for m in (AirQualityObserved, NoiseLevelObserved, WeatherObserved, Device, DeviceModel, DeviceMeasurement)
}


def model_for(entity_type: object) -> type[SmartDataModel] | None:
    """The model of an entity type (short name, or an IRI ending with it), None when unknown."""
    if isinstance(entity_type, list):
        for t in entity_type:
            found = model_for(t)
            if found is not None:
                return found
        return None
    if not isinstance(entity_type, str):
        return None
    if entity_type in MODELS:
        return MODELS[entity_type]
    tail = entity_type.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return MODELS.get(tail)
