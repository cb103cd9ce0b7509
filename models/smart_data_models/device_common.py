"""Device-Commons of dataModel.Device (device-schema.json): what Device and DeviceModel share.

Categories, controlled properties and supported protocols are closed lists
in the specification; a value outside them is an `enum` violation.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from models.smart_data_models.fields import array, enum_item, fail

CATEGORIES = (
    "actuator", "beacon", "endgun", "HVAC", "implement", "irrSection", "irrSystem", "meter", "multimedia",
    "network", "sensor",
)
CONTROLLED_PROPERTIES = (
    "airPollution", "atmosphericPressure", "averageVelocity", "batteryLife", "batterySupply", "cdom",
    "conductance", "conductivity", "depth", "eatingActivity", "electricityConsumption", "energy",
    "fillingLevel", "freeChlorine", "gasConsumption", "gateOpening", "heading", "humidity", "light",
    "location", "milking", "motion", "movementActivity", "noiseLevel", "occupancy", "orp", "pH", "power",
    "precipitation", "pressure", "refractiveIndex", "salinity", "smoke", "soilMoisture", "solarRadiation",
    "speed", "tds", "temperature", "trafficFlow", "tss", "turbidity", "uvLampIntensity", "uvOrganicLoad",
    "waterConsumption", "waterFlow", "waterLevel", "waterPollution", "weatherConditions", "weight",
    "windDirection", "windSpeed",
)
SUPPORTED_PROTOCOLS = (
    "3g", "bluetooth", "bluetooth LE", "cat-m", "coap", "ec-gsm-iot", "gprs", "http", "lwm2m", "lora",
    "lte-m", "mqtt", "nb-iot", "onem2m", "sigfox", "ul20", "websocket",
)

Category = Annotated[Any, array(enum_item(*CATEGORIES))]
ControlledProperty = Annotated[Any, array(enum_item(*CONTROLLED_PROPERTIES))]
SupportedProtocol = Annotated[Any, array(enum_item(*SUPPORTED_PROTOCOLS))]


def _mac(v: Any) -> Any:
    import re

    if not isinstance(v, str):
        raise fail("type", f"{v!r} is not a string")
    if re.search(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$", v) is None:
        raise fail("pattern", f"{v!r} is not a MAC address such as 00:1B:44:11:3A:B7")
    return v


MacAddress = Annotated[Any, BeforeValidator(lambda v: v), AfterValidator(_mac)]
