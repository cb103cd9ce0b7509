"""What a profile is made of: :class:`Measurement` descriptions in a :class:`Profile`, and the device's own readings.

The profiles themselves (air_quality, noise_level, weather) and the LoRaWAN
codecs build on these; agents.profiles gathers the profiles by model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEVICE_MEASUREMENTS", "Measurement", "Profile", "convert", "device_measurement", "percent_to_fraction"]


def _identity(x: float) -> float:
    return x


def percent_to_fraction(x: float) -> float:
    """0-100 % to the 0-1 the Smart Data Models use (values already in 0-1 are kept)."""
    return round(x / 100.0, 6) if x > 1 else x


@dataclass(frozen=True, slots=True)
class Measurement:
    """One payload reading and the Smart Data Model attribute it becomes."""

    key: str
    attribute: str
    unit_code: str | None = None
    convert: Callable[[float], float] = _identity
    aliases: tuple[str, ...] = ()
    controlled_property: str | None = None

    def names(self) -> tuple[str, ...]:
        """Every name the reading may come under: its key, the attribute, the aliases."""
        return (self.key, self.attribute, *self.aliases)


@dataclass(frozen=True, slots=True)
class Profile:
    """A Smart Data Model the mapping engine fills: its measurements, and the members its schema requires."""

    model: str
    subject: str  # dataModel.Environment, dataModel.Weather
    measurements: tuple[Measurement, ...]
    #: DateTime members the model requires for the period a measure covers (NoiseLevelObserved's
    #: dateObservedFrom/dateObservedTo); the engine gives them the observation time unless the measure has them
    period: tuple[str, ...] = ()

    def lookup(self, key: str) -> Measurement | None:
        folded = key.lower()
        for m in self.measurements:
            if key in m.names() or folded in (k.lower() for k in m.names()):
                return m
        return None

    def controlled_properties(self) -> list[str]:
        return list(dict.fromkeys(m.controlled_property for m in self.measurements if m.controlled_property))


#: Readings that describe the device itself, sent to its Device entity.
DEVICE_MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("battery", "batteryLevel", None, percent_to_fraction, ("bat", "batt", "batteryLevel", "battery_level")),
    Measurement("rssi", "rssi", None, aliases=("RSSI",)),
)


def device_measurement(key: str) -> Measurement | None:
    folded = key.lower()
    for m in DEVICE_MEASUREMENTS:
        if folded in (k.lower() for k in m.names()):
            return m
    return None


def convert(m: Measurement, value: Any) -> float:
    """The number a reading carries, converted; ValueError when it is not a number."""
    if isinstance(value, bool):
        raise ValueError(f"{m.key} must be a number, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.lstrip("+-").isdigit() else float(text)
    if not isinstance(value, (int, float)):
        raise ValueError(f"{m.key} must be a number")
    return m.convert(value)
