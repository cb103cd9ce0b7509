"""The three entity representations of clause 4.5: normalized, concise and simplified (keyValues).

Conversions work on terms (compacted names) and need no @context:

- normalized -> concise (clauses 4.5.2.3 ... 4.5.24.3, 4.7.3) is lossless:
  a member is dropped only when the reader can infer it back, so
  `normalize_entity(to_concise(e)) == normalize_entity(e)` for every valid e.
- concise -> normalized is `models.normalize.normalize_entity`.
- normalized -> simplified (clause 4.5.4) is lossy by definition: only the
  values of the entity's own attributes remain; multi-attributes become
  {"dataset": {datasetId or "@none": value}}.
- simplified -> normalized is the concise reading of the same document
  (every simplified value is a valid concise attribute); what simplified
  lost (sub-attributes, Relationship vs URI-valued Property, unit codes)
  cannot come back, and `from_simplified` does not pretend it can.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from models.geojson import is_geometry
from models.normalize import instances_of, looks_like_attribute, normalize_entity
from models.vocabulary import (
    ENTITY_CORE,
    GEO_PROPERTY,
    JSON_PROPERTY,
    LANGUAGE_PROPERTY,
    LIST_PROPERTY,
    LIST_RELATIONSHIP,
    PROPERTY,
    RELATIONSHIP,
    VALUE_MEMBER,
    VOCAB_PROPERTY,
)


class Representation(str, Enum):
    """The representation a client asks for with `options=` or `format=`."""

    NORMALIZED = "normalized"
    CONCISE = "concise"
    SIMPLIFIED = "keyValues"

    @classmethod
    def from_options(cls, options: set[str], fmt: str | None = None) -> Representation:
        """Pick the representation from the `format` parameter, else the `options` flags (clause 6.3.7)."""
        if fmt:
            if fmt in ("keyValues", "simplified"):
                return cls.SIMPLIFIED
            return cls(fmt)
        if "keyValues" in options or "simplified" in options:
            return cls.SIMPLIFIED
        if "concise" in options:
            return cls.CONCISE
        return cls.NORMALIZED


def to_concise(entity: dict[str, Any]) -> dict[str, Any]:
    """A normalized entity in concise representation, losslessly."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if name in ENTITY_CORE:
            out[name] = value
        else:
            out[name] = _concise_attribute(value)
    return out


def _concise_attribute(attribute: Any) -> Any:
    if isinstance(attribute, list):
        return [_concise_instance(i, in_list=True) for i in attribute]
    return _concise_instance(attribute, in_list=False)


def _concise_instance(inst: dict[str, Any], *, in_list: bool) -> Any:
    attr_type = inst["type"]
    member = VALUE_MEMBER[attr_type]
    value = inst[member]
    others = [k for k in inst if k not in ("type", member)]
    if not others and not in_list and _bare_value_reads_back(attr_type, value):
        return value
    out: dict[str, Any] = {}
    if not _type_inferable(attr_type, value):
        out["type"] = attr_type
    if attr_type == LIST_RELATIONSHIP:
        # Clause 4.5.22.3 and annex C.2.2: the concise objectList is an array of URIs.
        value = [o["object"] if isinstance(o, dict) else o for o in value]
    out[member] = value
    for key in others:
        sub = inst[key]
        if isinstance(sub, dict | list) and key not in ("objectType", "entity", "entityList"):
            out[key] = _concise_attribute(sub) if _is_attribute(sub) else sub
        else:
            out[key] = sub
    return out


def _is_attribute(sub: Any) -> bool:
    if isinstance(sub, list):
        return bool(sub) and all(isinstance(s, dict) and "type" in s for s in sub)
    return isinstance(sub, dict) and isinstance(sub.get("type"), str) and sub["type"] in VALUE_MEMBER


def _bare_value_reads_back(attr_type: str, value: Any) -> bool:
    """Whether the bare value alone would be read back as the same attribute."""
    if attr_type == GEO_PROPERTY:
        return True  # clause 4.7.3: a bare geometry is a concise GeoProperty
    if attr_type != PROPERTY:
        return False
    if isinstance(value, dict):
        return not looks_like_attribute(value) and not is_geometry(value)
    if isinstance(value, list):
        return not (value and all(looks_like_attribute(v) for v in value))
    return value is not None


def _type_inferable(attr_type: str, value: Any) -> bool:
    if attr_type == PROPERTY:
        return not is_geometry(value)
    if attr_type == GEO_PROPERTY:
        return is_geometry(value)
    return True


def to_simplified(entity: dict[str, Any], *, lang: str | None = None) -> dict[str, Any]:
    """A normalized entity in simplified (keyValues) representation (clause 4.5.4)."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if name in ENTITY_CORE:
            if name in ("id", "type", "scope", "@context"):
                out[name] = value
            continue
        instances = instances_of(value)
        if len(instances) == 1 and "datasetId" not in instances[0]:
            out[name] = simplified_value(instances[0], lang)
        else:
            out[name] = {
                "dataset": {i.get("datasetId", "@none"): simplified_value(i, lang) for i in instances}
            }
    return out


def simplified_value(inst: dict[str, Any], lang: str | None = None) -> Any:
    """The simplified (keyValues) value of one attribute instance (clause 4.5.4)."""
    attr_type = inst["type"]
    if attr_type in (PROPERTY, GEO_PROPERTY, RELATIONSHIP, LIST_PROPERTY):
        return inst[VALUE_MEMBER[attr_type]]
    if attr_type == LIST_RELATIONSHIP:
        return [o["object"] if isinstance(o, dict) else o for o in inst["objectList"]]
    if attr_type == LANGUAGE_PROPERTY:
        if lang is not None:
            return pick_language(inst["languageMap"], lang)
        return {"languageMap": inst["languageMap"]}
    if attr_type == VOCAB_PROPERTY:
        return {"vocab": inst["vocab"]}
    if attr_type == JSON_PROPERTY:
        return {"json": inst["json"]}
    raise ValueError(f"unknown attribute type {attr_type}")  # pragma: no cover


def pick_language(language_map: dict[str, Any], lang: str) -> Any:
    """The string of a languageMap for the `lang` filter (clause 4.15).

    `lang` is a list of tags with optional q-weights ("fr,en;q=0.8") or "*".
    The best match wins; without a match, "@none", else the first entry.
    """
    prefs: list[tuple[float, str]] = []
    for i, part in enumerate(lang.split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        prefs.append((-weight + i * 1e-6, tag.strip()))
    for _, tag in sorted(prefs):
        if tag == "*":
            break
        if tag in language_map:
            return language_map[tag]
        for key, value in language_map.items():  # "fr" also matches "fr-FR"
            if key.split("-")[0] == tag.split("-")[0]:
                return value
    if "@none" in language_map:
        return language_map["@none"]
    return next(iter(language_map.values()))


def from_simplified(entity: dict[str, Any]) -> dict[str, Any]:
    """Read a simplified entity back into normalized form (every attribute a Property or GeoProperty).

    Multi-attributes written as {"dataset": {...}} become one instance per datasetId.
    """
    doc: dict[str, Any] = {}
    for name, value in entity.items():
        if name not in ENTITY_CORE and isinstance(value, dict) and set(value) == {"dataset"}:
            datasets = value["dataset"]
            doc[name] = [
                ({"value": v} if ds == "@none" else {"value": v, "datasetId": ds}) for ds, v in datasets.items()
            ]
        else:
            doc[name] = value
    return normalize_entity(doc)


def convert(entity: dict[str, Any], representation: Representation, *, lang: str | None = None) -> dict[str, Any]:
    """A normalized entity in the asked representation."""
    if representation is Representation.CONCISE:
        return to_concise(entity)
    if representation is Representation.SIMPLIFIED:
        return to_simplified(entity, lang=lang)
    return entity


__all__ = [
    "RELATIONSHIP",
    "Representation",
    "convert",
    "from_simplified",
    "pick_language",
    "simplified_value",
    "to_concise",
    "to_simplified",
]
