"""Device (dataModel.Device, schema 0.0.9).

"An apparatus (hardware + software + firmware) intended to accomplish a
particular task (sensing the environment, actuating, etc.)." Required: id,
type, controlledProperty. `refDeviceModel` and `controlledAsset` are
Relationships; the battery level is a ratio from 0 to 1, or -1 when it
cannot be determined.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator

from models.smart_data_models.base import LocatedModel
from models.smart_data_models.device_common import Category, ControlledProperty, MacAddress, SupportedProtocol
from models.smart_data_models.fields import (
    Boolean,
    DateTime,
    EntityId,
    Number,
    Text,
    array,
    entity_id_item,
    fail,
    ip_item,
    is_number,
    text_enum,
)


def _battery_level(v: Any) -> Any:
    # oneOf: a number in [0, 1], or exactly -1.
    if is_number(v) and (0 <= v <= 1 or v == -1):
        return v
    raise fail("oneOf", f"{v!r} is neither a ratio between 0 and 1 nor -1 (unknown)")


def _configuration_item(v: Any, path: list[str | int]) -> Any:
    # An object whose "parameter" and "value", when present, are strings.
    if not isinstance(v, dict):
        raise fail("type", f"{v!r} is not an object", path)
    for member in ("parameter", "value"):
        if member in v and not isinstance(v[member], str):
            raise fail("type", f"{v[member]!r} is not a string", [*path, member])
    return v


BatteryLevel = Annotated[Any, BeforeValidator(lambda v: v), AfterValidator(_battery_level)]


class Device(LocatedModel):
    """A sensor, actuator or other apparatus, as deployed."""

    ENTITY_TYPE: ClassVar[str] = "Device"
    SUBJECT: ClassVar[str] = "dataModel.Device"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Device/Device/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.0.9"
    UNITS: ClassVar[dict[str, str]] = {"batteryLevel": "C62", "distance": "MTR", "depth": "MTR"}
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset({"refDeviceModel", "controlledAsset"})
    OBSERVED_AT: ClassVar[str | None] = "dateObserved"

    controlledProperty: ControlledProperty
    # Device-Commons
    category: Category = None
    deviceCategory: Category = None
    supportedProtocol: SupportedProtocol = None
    macAddress: MacAddress = None
    # Device
    controlledAsset: Annotated[Any, array(entity_id_item)] = None
    mnc: Text = None
    mcc: Text = None
    ipAddress: Annotated[Any, array(ip_item)] = None
    configuration: Annotated[Any, array(_configuration_item)] = None
    dateInstalled: DateTime = None
    dateFirstUsed: DateTime = None
    dateManufactured: DateTime = None
    hardwareVersion: Text = None
    softwareVersion: Text = None
    firmwareVersion: Text = None
    osVersion: Text = None
    distance: Number = None
    dstAware: Boolean = None
    depth: Number = None
    relativePosition: Text = None
    direction: Annotated[Any, text_enum("Inlet", "Outlet", "Entry", "Exit")] = None
    dateLastCalibration: DateTime = None
    serialNumber: Text = None
    provider: Text = None
    refDeviceModel: EntityId = None
    batteryLevel: BatteryLevel = None
    rssi: Number = None
    deviceState: Text = None
    dateLastValueReported: DateTime = None
    value: Text = None
    dateObserved: DateTime = None
