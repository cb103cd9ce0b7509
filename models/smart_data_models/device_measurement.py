"""DeviceMeasurement (dataModel.Device, schema 0.1.0).

"Description of a generic measurement entity coming from a device or other
data source." Required: id, type. The numerical value is written with the
measurement's own `unit` as its unit code when the payload gives one.
"""

from __future__ import annotations

from typing import ClassVar

from models.smart_data_models.base import LocatedModel
from models.smart_data_models.fields import Boolean, DateTime, EntityId, Number, Text


class DeviceMeasurement(LocatedModel):
    """One measurement of one property by one device."""

    ENTITY_TYPE: ClassVar[str] = "DeviceMeasurement"
    SUBJECT: ClassVar[str] = "dataModel.Device"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Device/DeviceMeasurement/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.1.0"
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset({"refDevice"})
    OBSERVED_AT: ClassVar[str | None] = "dateObserved"

    numValue: Number = None
    textValue: Text = None
    controlledProperty: Text = None
    refDevice: EntityId = None
    deviceType: Text = None
    measurementType: Text = None
    dateObserved: DateTime = None
    outlier: Boolean = None
    unit: Text = None

    def unit_code(self, name: str) -> str | None:
        """numValue is in the measurement's `unit` (a UN/CEFACT code)."""
        return self.unit if name == "numValue" and isinstance(self.unit, str) and self.unit else None
