"""WeatherObserved (dataModel.Weather, schema 0.3.4).

"An observation of weather conditions at a certain place and time."
Required: id, type, dateObserved, location. The Weather-Commons attributes
(weather-schema.json) are part of the model; where both define an
attribute, both rules hold (windDirection is in degrees from 0 to 360).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator

from models.smart_data_models.base import LocatedModel
from models.smart_data_models.fields import (
    DateTime,
    EntityId,
    Number,
    Text,
    fail,
    is_number,
    number,
    object_with_numbers,
)
from models.smart_data_models.geometry import Location

_VISIBILITY = ("veryPoor", "poor", "moderate", "good", "veryGood", "excellent")
_TENDENCY = ("falling", "raising", "steady")


def _visibility(v: Any) -> Any:
    # anyOf: a qualitative level, or a non-negative distance.
    if v in _VISIBILITY or (is_number(v) and v >= 0):
        return v
    raise fail("anyOf", f"{v!r} is neither one of {list(_VISIBILITY)} nor a non-negative number")


def _pressure_tendency(v: Any) -> Any:
    # oneOf: one of three words, or a number.
    if v in _TENDENCY or is_number(v):
        return v
    raise fail("oneOf", f"{v!r} is neither one of {list(_TENDENCY)} nor a number")


Visibility = Annotated[Any, BeforeValidator(lambda v: v), AfterValidator(_visibility)]
PressureTendency = Annotated[Any, BeforeValidator(lambda v: v), AfterValidator(_pressure_tendency)]
TimeSeriesAggregation = Annotated[
    Any, BeforeValidator(lambda v: v),
    AfterValidator(object_with_numbers("instValue", "minOverTime", "maxOverTime", "averageValue")),
]

_NON_NEGATIVE = Annotated[Any, number(minimum=0)]


class WeatherObserved(LocatedModel):
    """An observation of weather conditions at a certain place and time."""

    ENTITY_TYPE: ClassVar[str] = "WeatherObserved"
    SUBJECT: ClassVar[str] = "dataModel.Weather"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Weather/WeatherObserved/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.3.4"
    UNITS: ClassVar[dict[str, str]] = {
        "temperature": "CEL", "feelsLikeTemperature": "CEL", "dewPoint": "CEL", "airTemperatureForecast": "CEL",
        "relativeHumidity": "C62", "atmosphericPressure": "A97", "windSpeed": "MTS", "gustSpeed": "MTS",
        "windDirection": "DD", "precipitation": "MMT", "solarRadiation": "D54", "directIrradiation": "D54",
        "diffuseIrradiation": "D54", "illuminance": "LUX", "snowHeight": "CMT", "streamGauge": "CMT",
    }
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset({"refDevice", "refPointOfInterest"})
    OBSERVED_AT: ClassVar[str | None] = "dateObserved"

    dateObserved: DateTime
    location: Location
    # Weather-Commons (weather-schema.json)
    weatherType: Text = None
    visibility: Visibility = None
    windDirection: Annotated[Any, number(minimum=0, maximum=360)] = None
    windSpeed: _NON_NEGATIVE = None
    gustSpeed: Number = None
    refPointOfInterest: Text = None
    atmosphericPressure: _NON_NEGATIVE = None
    illuminance: _NON_NEGATIVE = None
    temperature: Number = None
    feelsLikeTemperature: Number = None
    relativeHumidity: Annotated[Any, number(minimum=0, maximum=1)] = None
    # WeatherObserved's own attributes
    precipitation: _NON_NEGATIVE = None
    solarRadiation: _NON_NEGATIVE = None
    directIrradiation: _NON_NEGATIVE = None
    diffuseIrradiation: _NON_NEGATIVE = None
    pressureTendency: PressureTendency = None
    dewPoint: Number = None
    refDevice: EntityId = None
    streamGauge: _NON_NEGATIVE = None
    snowHeight: _NON_NEGATIVE = None
    uVIndexMax: _NON_NEGATIVE = None
    aqiMajorPollutant: Text = None
    aqiMajorPollutantForecast: Text = None
    airTemperatureForecast: Number = None
    precipitationForecast: Number = None
    airQualityIndex: Number = None
    relativeHumidityForecast: Number = None
    airQualityIndexForecast: Number = None
    airTemperatureTSA: TimeSeriesAggregation = None
