"""DeviceModel (dataModel.Device, schema 0.0.3).

"This entity captures the static properties of a Device." Required: id,
type, category, controlledProperty, manufacturerName, brandName, modelName.
It has the PhysicalObject-Commons attributes (color, image, annotations)
and no location.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from models.smart_data_models.base import SmartDataModel
from models.smart_data_models.device_common import Category, ControlledProperty, MacAddress, SupportedProtocol
from models.smart_data_models.fields import Text, Uri, array, enum_item, string_item, text_enum

FUNCTIONS = ("levelControl", "sensing", "onOff", "openClose", "metering", "eventNotification")


class DeviceModel(SmartDataModel):
    """The static properties shared by every device of one make and model."""

    ENTITY_TYPE: ClassVar[str] = "DeviceModel"
    SUBJECT: ClassVar[str] = "dataModel.Device"
    SCHEMA_ID: ClassVar[str] = "https://smart-data-models.github.io/dataModel.Device/DeviceModel/schema.json"
    SCHEMA_VERSION: ClassVar[str] = "0.0.3"

    category: Category
    controlledProperty: ControlledProperty
    manufacturerName: Text
    brandName: Text
    modelName: Text
    # PhysicalObject-Commons
    color: Text = None
    image: Uri = None
    annotations: Annotated[Any, array(string_item)] = None
    # Device-Commons
    deviceCategory: Category = None
    supportedProtocol: SupportedProtocol = None
    macAddress: MacAddress = None
    # DeviceModel
    deviceClass: Annotated[Any, text_enum("C0", "C1", "C2")] = None
    function: Annotated[Any, array(enum_item(*FUNCTIONS))] = None
    supportedUnits: Annotated[Any, array(string_item)] = None
    energyLimitationClass: Annotated[Any, text_enum("E0", "E1", "E2", "E9")] = None
    documentation: Uri = None
