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

from agents.profiles import air_quality, noise_level, weather
from agents.profiles.measurement import (
    DEVICE_MEASUREMENTS,
    Measurement,
    Profile,
    convert,
    device_measurement,
    percent_to_fraction,
)

__all__ = ["DEVICE_MEASUREMENTS", "PROFILES", "Measurement", "Profile", "convert", "device_measurement",
           "percent_to_fraction", "profile_for"]


def _registry() -> dict[str, Profile]:
    table: dict[str, Profile] = {}
    for module in (air_quality, noise_level, weather):
        profile = module.PROFILE
        if profile.model in table:
            raise ValueError(f"two profiles for {profile.model}")
        table[profile.model] = profile
    return table


PROFILES: dict[str, Profile] = _registry()
"""Smart Data Model type -> its profile."""


def profile_for(entity_type: str | None) -> Profile | None:
    """The profile of a Smart Data Model type, None for any other type."""
    return PROFILES.get(entity_type or "")
