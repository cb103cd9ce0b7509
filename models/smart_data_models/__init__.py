"""FIWARE Smart Data Models as pydantic models, written from the official specifications.

    from models.smart_data_models import AirQualityObserved
    aq = AirQualityObserved(id="urn:ngsi-ld:AirQualityObserved:aix-1", type="AirQualityObserved",
                            dateObserved="2026-11-26T07:00:00Z", no2=41,
                            location={"type": "Point", "coordinates": [5.4474, 43.5265]})
    aq.to_ngsi_ld()                  # normalized, @context of dataModel.Environment, no2 with unitCode GQ
    aq.to_ngsi_ld("concise")         # or "keyValues"
    AirQualityObserved.model_validate(read_ngsi_ld(entity).key_values)   # any representation back

Validation agrees with the official JSON Schemas (tests/models/test_smart_data_models.py
shows it on generated and official payloads); the schemas themselves are not shipped.

- `fields`, `geometry`: value types with the JSON Schema rules (errors named by keyword);
- `base`: common attributes, NGSI-LD output, reading any representation;
- one module per model; `registry`: entity type -> model.
"""

from models.smart_data_models.air_quality_observed import AirQualityObserved
from models.smart_data_models.base import ReadEntity, SmartDataModel, detect_representation, read_ngsi_ld
from models.smart_data_models.device import Device
from models.smart_data_models.device_measurement import DeviceMeasurement
from models.smart_data_models.device_model import DeviceModel
from models.smart_data_models.noise_level_observed import NoiseLevelObserved
from models.smart_data_models.registry import MODELS, model_for
from models.smart_data_models.weather_observed import WeatherObserved

__all__ = [
    "MODELS",
    "AirQualityObserved",
    "Device",
    "DeviceMeasurement",
    "DeviceModel",
    "NoiseLevelObserved",
    "ReadEntity",
    "SmartDataModel",
    "WeatherObserved",
    "detect_representation",
    "model_for",
    "read_ngsi_ld",
]
