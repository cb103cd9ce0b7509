"""NoiseLevelObserved (dataModel.Environment, schema 0.2.1).

"An observation of those acoustic parameters that estimate noise pressure
levels at a certain place and time." Required: id, type, dateObservedFrom,
dateObservedTo, location. Sound levels are written in decibels (unit code
2N); `dateObserved` is an ISO 8601 interval as free text, so the
observation period's end (`dateObservedTo`) gives observedAt.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from models.smart_data_models.base import LocatedModel
from models.smart_data_models.fields import DateTime, EntityId, Number, Text, text_enum
from models.smart_data_models.geometry import Location

_DECIBEL = "2N"


class NoiseLevelObserved(LocatedModel):
    """Acoustic parameters estimating noise pressure levels at a place over a period."""

    ENTITY_TYPE: ClassVar[str] = "NoiseLevelObserved"
    SUBJECT: ClassVar[str] = "dataModel.Environment"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Environment/NoiseLevelObserved/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.2.1"
    UNITS: ClassVar[dict[str, str]] = {"LAS": _DECIBEL, "LAeq": _DECIBEL, "LAeq_d": _DECIBEL, "LAmax": _DECIBEL}
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset({"refDevice", "refPointOfInterest", "refWeatherObserved"})
    OBSERVED_AT: ClassVar[str | None] = "dateObservedTo"

    dateObservedFrom: DateTime
    dateObservedTo: DateTime
    location: Location
    dateObserved: Text = None
    sonometerClass: Annotated[Any, text_enum("0", "1", "2")] = None
    refDevice: EntityId = None
    refPointOfInterest: EntityId = None
    refWeatherObserved: EntityId = None
    LAS: Number = None
    LAeq: Number = None
    LAeq_d: Number = None
    LAmax: Number = None
    obstacles: Text = None
    heightAverage: Text = None
    distanceAverage: Text = None
