"""Does a registration match a request (clause 5.12)? Everything here works on expanded registrations (IRIs).

A request is described by `Wanted`: entity ids, id pattern, types (IRIs),
attribute IRIs, an optional geo-query, and the scope/temporal conditions.
A RegistrationInfo matches when one of its EntityInfo matches the entity
part (or it has none) and one of its names is asked for (or either side
names none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.times import parse_utc


@dataclass(slots=True)
class Wanted:
    """What a request (or a csource subscription) asks for, in IRIs."""

    ids: frozenset[str] = frozenset()
    id_pattern: str | None = None
    types: frozenset[str] = frozenset()
    attrs: frozenset[str] = frozenset()
    geo: Any = None
    """a broker.query.geo.GeoQuery matched against the registration's location"""
    temporal: tuple[str, str, datetime, datetime | None] | None = None
    """(timeproperty, timerel, timeAt, endTimeAt)"""
    extra: dict[str, Any] = field(default_factory=dict)


def _types(info: dict[str, Any]) -> list[str]:
    t = info.get("type")
    return t if isinstance(t, list) else [str(t)]


def entity_info_matches(info: dict[str, Any], wanted: Wanted) -> bool:
    """One EntityInfo against the entity part of a request."""
    if wanted.types and not set(_types(info)) & wanted.types:
        return False
    if wanted.ids:
        if "id" in info:
            return info["id"] in wanted.ids
        if "idPattern" in info:
            return any(re.fullmatch(info["idPattern"], i) or re.search(info["idPattern"], i) for i in wanted.ids)
        return True
    if wanted.id_pattern and "id" in info:
        return re.search(wanted.id_pattern, info["id"]) is not None
    return True


def info_matches(item: dict[str, Any], wanted: Wanted) -> bool:
    """One RegistrationInfo against a request."""
    entities = item.get("entities")
    if entities and not any(entity_info_matches(e, wanted) for e in entities):
        return False
    # a RegistrationInfo without entities may hold any entity; without names, any attribute
    names = set(item.get("propertyNames", ())) | set(item.get("relationshipNames", ()))
    return not (wanted.attrs and names and not names & wanted.attrs)


def matching_infos(reg: dict[str, Any], wanted: Wanted) -> list[dict[str, Any]]:
    """The RegistrationInfo elements of an expanded registration that match a request."""
    return [i for i in reg.get("information", ()) if isinstance(i, dict) and info_matches(i, wanted)]


def _overlaps(interval: dict[str, Any] | None, rel: str, at: datetime, end: datetime | None) -> bool:
    if interval is None:
        return False
    start = parse_utc(interval["startAt"], "startAt")
    stop = parse_utc(interval["endAt"], "endAt") if "endAt" in interval else None
    if rel == "before":
        return start <= at
    if rel == "after":
        return stop is None or stop >= at
    if rel == "between" and end is not None:
        return start <= end and (stop is None or stop >= at)
    return False


def registration_matches(reg: dict[str, Any], wanted: Wanted, *, now: datetime | None = None) -> bool:
    """Clause 5.10.2.4: entities, attributes, geo-query, time intervals (not csf or scopeQ: see the service)."""
    if "expiresAt" in reg and now is not None and parse_utc(reg["expiresAt"], "expiresAt") <= now:
        return False
    if not matching_infos(reg, wanted):
        return False
    if wanted.temporal is None:
        if "observationInterval" in reg or "managementInterval" in reg:
            return False
    else:
        prop, rel, at, end = wanted.temporal
        interval = reg.get("observationInterval") if prop == "observedAt" else reg.get("managementInterval")
        if not _overlaps(interval, rel, at, end):
            return False
    if wanted.geo is not None:
        location = reg.get("location")
        if location is None:
            return False
        if not geo_matches(wanted.geo, location):
            return False
    return True


def geo_matches(query: Any, location: dict[str, Any]) -> bool:
    """A geo-query against a registration's location: it matches directly, or the area may hold matches."""
    import shapely
    from shapely.geometry import shape

    from broker.query.geo import compile_geo
    from models.vocabulary import GEO_PROPERTY

    entity = {query.geoproperty: {"type": GEO_PROPERTY, "value": location}}
    if compile_geo(query, lambda t: t)(entity):
        return True
    if query.georel in ("disjoint", "equals"):
        return False
    return bool(shapely.intersects(shape(query.geometry), shape(location)))


def united_types(first: Any, second: Any) -> list[str]:
    """The types of two documents of one entity, united in order (clause 4.3.6.2: a distributed entity has every
    type any source gives it). Each side is a type, a list of types, or None."""
    types = list(_as_list(first))
    for t in _as_list(second):
        if t not in types:
            types.append(t)
    return types


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return value if isinstance(value, list) else [value]
