"""A codec's readings through its device profile: the measure groups to map, and the entities they become.

`project(codec, data)` sorts one decoded uplink's readings:

- a reading a profile maps (by its key, or for Cayenne-style `<type>_<channel>`
  keys by its type) goes to that profile's measure group, unless its value,
  converted, is outside what the Smart Data Model allows (a negative
  concentration from an electrochemical cell, humidity above 100 %): then it is
  left out with a warning, since the broker-side model would refuse the entity;
- a device reading (battery %, rssi) goes to the Device entity;
- a reading the codec declares as not forwarded is dropped silently (its reason is
  in the catalogue); any other is dropped with a warning (a newer firmware's
  reading, or a codec whose profile is incomplete).

`entities(...)` runs each group through the one mapping engine
(agents.mapping.engine.map_measure) with the profile as the device's profile,
which adds units, `dateObserved`, `refDevice` and the `Device` entity; the
Device entities of several profiles are merged into one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from agents.lorawan.catalog import Codec
from agents.mapping.engine import DeviceConfig, map_measure
from agents.mapping.timestamps import shifted
from agents.messages import Rejected
from agents.profiles import DEVICE_MEASUREMENTS, Measurement, Profile, convert
from models.vocabulary import Doc

__all__ = ["RANGES", "ConfigFor", "Projection", "entities", "lookup", "project"]

#: The configuration of the entity of one profile: (profile) -> DeviceConfig, e.g. the ingestor's cached ones.
ConfigFor = Callable[[Profile], DeviceConfig]

#: Bounds the Smart Data Models put on the attributes LoRaWAN profiles fill (minimum, maximum; None: unbounded).
#: tests/agents/lorawan/test_catalog.py checks this table against the official schemas (which give pm1 no minimum).
RANGES: Mapping[str, tuple[float | None, float | None]] = {
    **{a: (0, None) for a in ("no2", "no", "o3", "co", "co2", "so2", "pm4", "pm10", "pm25",
                              "volatileOrganicCompoundsTotal", "pressure", "atmosphericPressure", "illuminance")},
    "relativeHumidity": (0, 1),
}

_CHANNEL = re.compile(r"^(.+)_\d+$")


class Projection(NamedTuple):
    """One uplink's readings, sorted: per profile, for the Device entity, and what was left out and why."""

    groups: tuple[tuple[Profile, Doc], ...]
    device: Doc
    warnings: tuple[str, ...]


def _kind(key: str) -> str:
    """`temperature_3` -> `temperature`: a Cayenne-style channel suffix removed."""
    m = _CHANNEL.match(key)
    return m.group(1) if m else key


class _Index(NamedTuple):
    """A codec's profile resolved once: Profile.lookup scans every measurement and was 75% of a projection."""

    codec: Codec
    measurements: dict[str, tuple[Profile, Measurement]]  # by lower-cased key, alias or attribute
    device: dict[str, Measurement]  # the Device readings by lower-cased key
    unsent: frozenset[str]


_INDEXES: dict[str, _Index] = {}


def _index(codec: Codec) -> _Index:
    index = _INDEXES.get(codec.id)
    # by the codec's profiles: a device's calibrated codec (provisioning.codec_of) differs in its decoder alone
    if index is None or index.codec.profiles is not codec.profiles or index.codec.not_forwarded is not codec.not_forwarded:
        table: dict[str, tuple[Profile, Measurement]] = {}
        for profile in reversed(codec.profiles):  # the first profile wins a key two profiles share
            for m in profile.measurements:
                for k in m.names():
                    found = profile.lookup(k)
                    assert found is not None
                    table[k.lower()] = (profile, found)
        device = {k.lower(): m for m in DEVICE_MEASUREMENTS for k in m.names()}
        index = _INDEXES[codec.id] = _Index(codec, table, device, frozenset(codec.not_forwarded))
    return index


def lookup(codec: Codec, key: str) -> tuple[Profile, Measurement] | None:
    """The profile and measurement a reading maps to, if any (first profile first)."""
    table = _index(codec).measurements
    return table.get(key.lower()) or table.get(_kind(key).lower())


def _in_range(attribute: str, value: float) -> bool:
    low, high = RANGES.get(attribute, (None, None))
    return (low is None or value >= low) and (high is None or value <= high)


def project(codec: Codec, data: Mapping[str, Any]) -> Projection:
    """Sort the readings of one decoded uplink by where they go (see the module's docstring)."""
    groups: dict[str, Doc] = {}
    device: Doc = {}
    warnings: list[str] = []
    index = _index(codec)
    table = index.measurements
    for key, value in data.items():
        if value is None:
            continue
        folded = key.lower()
        found = table.get(folded) or table.get(_kind(folded))
        if found is not None:
            profile, m = found
            try:
                number = convert(m, value)
            except (ValueError, TypeError) as exc:
                warnings.append(f"{key}: {exc}; not sent")
                continue
            if not _in_range(m.attribute, number):
                low, high = RANGES[m.attribute]
                warnings.append(f"{key} = {value} gives {m.attribute} {number}, outside the model's "
                                f"{low}..{'' if high is None else high}; not sent")
                continue
            group = groups.setdefault(profile.model, {})
            if m.key in group:
                warnings.append(f"{key} gives {m.attribute} again; the last value is kept")
            group[m.key] = value  # by the profile's key, which the mapping engine knows (not `temperature_3`)
        elif folded in index.device:
            try:  # checked here so that the mapping engine does not reject the whole uplink for it
                convert(index.device[folded], value)
            except (ValueError, TypeError) as exc:
                warnings.append(f"{key}: {exc}; not sent")
                continue
            device[key] = value
        elif key not in index.unsent and _kind(key) not in index.unsent:
            warnings.append(f"reading {key!r} has no attribute in the {codec.id} profile; not sent")
    ordered = tuple((p, groups[p.model]) for p in codec.profiles if p.model in groups)
    return Projection(ordered, device, tuple(warnings))


def _period(doc: Doc, observed: str, period_s: float | None) -> None:
    """NoiseLevelObserved requires the interval its levels cover: `dateObservedFrom` .. `dateObservedTo`."""
    start = observed if period_s is None else shifted(observed, -round(period_s * 1_000_000))
    for name, at in (("dateObservedFrom", start), ("dateObservedTo", observed)):
        # a plain date-time string, as the agents' own profiles write DateTime values (clause 4.6.3)
        doc[name] = {"type": "Property", "value": at, "observedAt": observed}


def entities(codec: Codec, data: Mapping[str, Any], *, device_id: str, observed_at: str,
             static_attributes: list[Doc] | None = None, period_s: float | None = None, service: str = "",
             service_path: str = "/", config_for: ConfigFor | None = None, dropped: list[Rejected] | None = None,
             max_length: int = 0) -> tuple[list[Doc], tuple[str, ...]]:
    """The normalized NGSI-LD entities one decoded uplink gives (main entity first, one Device), and the warnings.

    `static_attributes` are provisioned attributes sent with every entity (a
    `location` GeoProperty, say), as the FIWARE agents send them. `period_s` is
    the interval a device's levels cover (its provisioned report interval):
    NoiseLevelObserved requires it; unknown, the interval is the instant, with a warning.
    `config_for` gives the mapping configuration of each profile's entity (a
    transport passes the ones it caches, whose compiled plans it keeps; without it
    one is built per call); `dropped` and `max_length` are the mapping engine's
    (a value its attribute cannot take is refused alone and appended to `dropped`).
    """
    projection = project(codec, data)
    warnings = list(projection.warnings)
    docs: list[Doc] = []
    device_doc: Doc | None = None
    statics = list(static_attributes or [])
    groups = list(projection.groups)
    device_only = not groups and bool(projection.device)
    if device_only:  # a battery-only frame: the Device entity alone, no empty observation
        groups = [(codec.profiles[0], {})]
    for i, (profile, measure) in enumerate(groups):
        if config_for is not None:
            cfg = config_for(profile)
        else:
            cfg = DeviceConfig(device_id=device_id, apikey="", service=service, service_path=service_path,
                               entity_type=profile.model, entity_name=device_id, static_attributes=statics,
                               profile=profile)
        mapped = map_measure(cfg, {**measure, **(projection.device if i == 0 else {})}, observed_at, dropped,
                             max_length)
        if not mapped:
            continue  # every value of the group was refused (they are in `dropped`)
        *main, device = mapped
        if not device_only:
            for doc in main:
                if doc["type"] == "NoiseLevelObserved":
                    _period(doc, doc["dateObserved"]["value"], period_s)
                    if period_s is None:
                        warnings.append("no observation period provisioned: dateObservedFrom = dateObservedTo")
            docs += main
        if device_doc is None:
            device_doc = device
        else:
            controlled = device_doc["controlledProperty"]["value"]
            controlled += [c for c in device["controlledProperty"]["value"] if c not in controlled]
    if device_doc is not None:
        docs.append(device_doc)
    return docs, tuple(warnings)
