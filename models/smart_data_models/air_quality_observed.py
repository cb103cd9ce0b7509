"""AirQualityObserved (dataModel.Environment, schema 0.1.4).

"An observation of air quality conditions at a certain place and time."
Written from the model's specification; required: id, type, dateObserved,
location. Pollutant concentrations are non-negative numbers written with
unit code GQ (micrograms per cubic metre) unless the payload says
otherwise; carbon monoxide defaults to GP (milligrams per cubic metre), as
in the official example.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field

from models.smart_data_models.base import LocatedModel
from models.smart_data_models.fields import DateTime, EntityId, Number, Text, integer, number, text, text_enum
from models.smart_data_models.geometry import Location

_UG_M3 = "GQ"
_NON_NEGATIVE = Annotated[Any, number(minimum=0)]


class AirQualityObserved(LocatedModel):
    """An observation of air quality conditions at a certain place and time."""

    ENTITY_TYPE: ClassVar[str] = "AirQualityObserved"
    SUBJECT: ClassVar[str] = "dataModel.Environment"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Environment/AirQualityObserved/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.1.4"
    UNITS: ClassVar[dict[str, str]] = {
        **{p: _UG_M3 for p in ("as", "c6h6", "cd", "ni", "no", "no2", "nox", "o3", "pb", "pm1", "pm10",
                                "pm25", "pm4", "sh2", "so2", "volatileOrganicCompoundsTotal")},
        "co": "GP",  # mg/m3
        "co2": "59",  # ppm
        "temperature": "CEL",
        "relativeHumidity": "C62",  # a ratio between 0 and 1
        "windSpeed": "MTS",
        "windDirection": "DD",
        "precipitation": "MMT",  # litres per square metre = millimetres
        "pressure": "A97",  # hectopascal
    }
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset({"refDevice", "refPointOfInterest", "refWeatherObserved"})
    OBSERVED_AT: ClassVar[str | None] = "dateObserved"

    dateObserved: DateTime
    location: Location  # required here, unlike in Location-Commons
    airQualityIndex: Annotated[Any, integer(minimum=0)] = None
    airQualityLevel: Annotated[Any, text(min_length=2)] = None  # Environment-schema.json
    reliability: Annotated[Any, number(minimum=0, maximum=1)] = None
    as_: _NON_NEGATIVE = Field(None, alias="as")
    c6h6: _NON_NEGATIVE = None
    cd: _NON_NEGATIVE = None
    co: _NON_NEGATIVE = None
    coLevel: Text = None
    co2: _NON_NEGATIVE = None
    ni: _NON_NEGATIVE = None
    no: _NON_NEGATIVE = None
    no2: _NON_NEGATIVE = None
    nox: _NON_NEGATIVE = None
    o3: _NON_NEGATIVE = None
    pm1: Number = None
    pm10: _NON_NEGATIVE = None
    pm25: _NON_NEGATIVE = None
    pm4: _NON_NEGATIVE = None
    pb: _NON_NEGATIVE = None
    precipitation: _NON_NEGATIVE = None
    relativeHumidity: Annotated[Any, number(minimum=0, maximum=1)] = None
    sh2: _NON_NEGATIVE = None
    so2: _NON_NEGATIVE = None
    typeofLocation: Annotated[Any, text_enum("indoor", "outdoor")] = None
    volatileOrganicCompoundsTotal: _NON_NEGATIVE = None
    refDevice: EntityId = None
    refPointOfInterest: EntityId = None
    refWeatherObserved: EntityId = None
    temperature: Number = None
    windDirection: Annotated[Any, number(minimum=-180, maximum=180)] = None
    windSpeed: _NON_NEGATIVE = None
    tpc: Annotated[Any, integer(minimum=0)] = None
    tsp: Annotated[Any, integer(minimum=0)] = None
    pressure: _NON_NEGATIVE = None
    charge: _NON_NEGATIVE = None
