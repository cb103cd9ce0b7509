"""Smart Data Models profiles: a device mapped straight onto a model, as data.

A profile is a tuple of :class:`Measurement` descriptions (payload key and its
aliases -> Smart Data Model attribute, UN/CEFACT unit code, conversion) served
by the one mapping engine. A device whose entity type names a profile gets,
for every measure the provisioning does not map itself, the profile's
attribute, unit and conversion; the entity is linked by `refDevice` to a
`Device` entity carrying `controlledProperty`, `batteryLevel` and
`dateLastValueReported`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEVICE_MEASUREMENTS", "PROFILES", "Measurement", "Profile", "percent_to_fraction", "profile_for"]


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

    def keys(self) -> tuple[str, ...]:
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
            if key in m.keys() or folded in (k.lower() for k in m.keys()):
                return m
        return None

    def controlled_properties(self) -> list[str]:
        return list(dict.fromkeys(m.controlled_property for m in self.measurements if m.controlled_property))


#: Readings that describe the device itself, sent to its Device entity.
DEVICE_MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("battery", "batteryLevel", None, percent_to_fraction, ("bat", "batt", "batteryLevel", "battery_level")),
    Measurement("rssi", "rssi", None, aliases=("RSSI",)),
)


def _registry() -> dict[str, Profile]:
    from agents.profiles import air_quality, noise_level, weather

    table: dict[str, Profile] = {}
    for module in (air_quality, noise_level, weather):
        profile = module.PROFILE
        if profile.model in table:
            raise ValueError(f"two profiles for {profile.model}")
        table[profile.model] = profile
    return table


PROFILES: dict[str, Profile] = {}


def profile_for(entity_type: str | None) -> Profile | None:
    """The profile of a Smart Data Model type, None for any other type."""
    if not PROFILES:
        PROFILES.update(_registry())
    return PROFILES.get(entity_type or "")


def device_measurement(key: str) -> Measurement | None:
    folded = key.lower()
    for m in DEVICE_MEASUREMENTS:
        if folded in (k.lower() for k in m.keys()):
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
