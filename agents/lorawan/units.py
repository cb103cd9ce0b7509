"""UN/CEFACT common codes and the unit conversions LoRaWAN device profiles use.

Codes from UN/CEFACT Recommendation 20 (the `unitCode` NGSI-LD and the Smart
Data Models use); the conversions bring a vendor's unit to the one the Smart
Data Model's description names (relativeHumidity 0-1, pressure in hPa).
"""

from __future__ import annotations

GQ = "GQ"  # microgram per cubic metre
GP = "GP"  # milligram per cubic metre
PPM = "59"  # part per million
PPB = "61"  # part per billion
CEL = "CEL"  # degree Celsius
HPA = "A97"  # hectopascal
DB = "2N"  # decibel
LUX = "LUX"  # lux


def percent(x: float) -> float:
    """0-100 % to the 0-1 fraction of relativeHumidity and batteryLevel (no guessing: 0.5 is 0.5 %)."""
    return round(x / 100.0, 6)


def pa_to_hpa(x: float) -> float:
    """Pascal to hectopascal (AirQualityObserved.pressure is in hPa)."""
    return round(x / 100.0, 4)
