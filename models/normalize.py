"""Reading entities and attributes sent in normalized or concise representation.

Clauses 4.5.2-4.5.24 and 4.7.3 of ETSI GS CIM 009 V1.9.1: an attribute is
either written in full ("type" present: normalized) or in the concise form,
whose type is inferred from the member that holds the value ("value",
"object", "languageMap", "vocab", "json", "valueList", "objectList") or,
for a bare value, is a Property (a GeoProperty when the value is a GeoJSON
geometry). An array of such objects is a multi-attribute (clause 4.5.5).

Everything here works on terms as the client wrote them; expansion against
the @context happens afterwards (models.expansion). The output is the
canonical normalized form: every attribute instance a dict with its "type",
multi-instance attributes as lists, nothing inferred left implicit.
"""

from __future__ import annotations

from typing import Any, Protocol

from models.errors import BadRequestData, InvalidAttribute
from models.geojson import is_geometry, validate_geometry
from models.validation import check_datetime, check_language_map, check_name, check_uri, is_uri
from models.vocabulary import (
    ATTRIBUTE_CORE,
    ATTRIBUTE_TYPES,
    ENTITY_CORE,
    GEO_PROPERTY,
    JSON_PROPERTY,
    LANGUAGE_PROPERTY,
    LIST_PROPERTY,
    LIST_RELATIONSHIP,
    NGSI_LD_NULL,
    PROPERTY,
    RELATIONSHIP,
    SYSTEM_MEMBERS,
    VALUE_MEMBER,
    VOCAB_PROPERTY,
)


class TermMapper(Protocol):
    """What expansion needs of a resolved @context (models.context.Context provides it)."""

    def expand_term(self, term: str) -> str: ...

    def compact_iri(self, iri: str) -> str: ...


# Concise inference: the member that is present decides the attribute type.
_INFER_FROM_MEMBER: tuple[tuple[str, str], ...] = (
    ("object", RELATIONSHIP),
    ("languageMap", LANGUAGE_PROPERTY),
    ("vocab", VOCAB_PROPERTY),
    ("json", JSON_PROPERTY),
    ("valueList", LIST_PROPERTY),
    ("objectList", LIST_RELATIONSHIP),
    ("value", PROPERTY),
)
_VALUE_KEYS = frozenset(m for m, _ in _INFER_FROM_MEMBER)
# Per value member, the other value members an attribute must not carry (precomputed: hot path).
_OTHER_VALUE_KEYS: dict[str, tuple[str, ...]] = {m: tuple(_VALUE_KEYS - {m}) for m in _VALUE_KEYS}
_DATETIME_MEMBERS = frozenset({"observedAt", "createdAt", "modifiedAt", "deletedAt", "expiresAt"})


def looks_like_attribute(item: object) -> bool:
    """Whether a JSON object is an attribute written in full or concise form (not a plain value)."""
    return isinstance(item, dict) and ("type" in item or not _VALUE_KEYS.isdisjoint(item))


def normalize_entity(
    doc: object,
    *,
    require_id: bool = True,
    require_type: bool = True,
    allow_null: bool = False,
    ctx: TermMapper | None = None,
) -> dict[str, Any]:
    """Validate an entity in normalized or concise form and return its canonical normalized form.

    `allow_null` admits NGSI-LD Null values (used by merge/patch to delete).
    Without `ctx` the result keeps the client's terms and its "@context"
    member. With `ctx` the result is ENF directly (names, types, vocab and
    objectType values expanded, every attribute a list of instances): the
    same as `expansion.expand_entity(normalize_entity(doc), ctx)` in one
    pass, which is what the broker's write path uses.
    """
    if not isinstance(doc, dict):
        raise BadRequestData("an entity must be a JSON object")
    out: dict[str, Any] = {}
    if "id" in doc:
        out["id"] = check_uri(doc["id"], "entity id")
    elif require_id:
        raise BadRequestData("the entity has no id")
    if "type" in doc:
        types = _entity_types(doc["type"])
        if ctx is None:
            out["type"] = types
        else:
            out["type"] = [_type_iri(t, ctx) for t in (types if isinstance(types, list) else [types])]
    elif require_type:
        raise BadRequestData(f"the entity {doc.get('id', '')!s} has no type")
    if "scope" in doc:
        out["scope"] = _scopes(doc["scope"])
    for key in ("createdAt", "modifiedAt", "deletedAt"):
        if key in doc:
            out[key] = check_datetime(doc[key], f"entity {key}")
    if "@context" in doc and ctx is None:
        out["@context"] = doc["@context"]
    for name, value in doc.items():
        if name in ENTITY_CORE:
            continue
        attribute = normalize_attribute(name, value, allow_null=allow_null, ctx=ctx)
        if ctx is None:
            out[name] = attribute
        else:
            out[ctx.expand_term(name)] = attribute if isinstance(attribute, list) else [attribute]
    return out


def normalize_attribute(name: str, value: object, *, allow_null: bool = False, ctx: TermMapper | None = None) -> Any:
    """One attribute (any form) -> one normalized instance dict, or a list for multi-attributes.

    With `ctx`, sub-attribute names and term-valued members are expanded (ENF instances).
    """
    check_name(name, "attribute name")
    if isinstance(value, list) and value and all(looks_like_attribute(v) for v in value):
        instances = [_instance(name, v, allow_null, ctx) for v in value]
        _check_dataset_ids(name, instances)
        return instances if len(instances) > 1 else instances[0]
    return _instance(name, value, allow_null, ctx)


def _instance(name: str, value: object, allow_null: bool, ctx: TermMapper | None) -> dict[str, Any]:
    if not looks_like_attribute(value):
        # A bare value is a concise Property, or GeoProperty for a geometry (clause 4.7.3).
        if value is None:
            raise InvalidAttribute(_JSON_NULL.format(name))
        if value == NGSI_LD_NULL:
            if not allow_null:
                raise InvalidAttribute(f"attribute {name!r} has a null value")
            return {"type": PROPERTY, "value": NGSI_LD_NULL}
        return {"type": GEO_PROPERTY if is_geometry(value) else PROPERTY, "value": value}
    assert isinstance(value, dict)
    attr_type = value.get("type")
    if attr_type is None:
        attr_type = _infer_type(value)
    elif not isinstance(attr_type, str) or attr_type not in ATTRIBUTE_TYPES:  # a list or dict: 400, not 500
        # A concise GeoProperty's geometry carries a GeoJSON "type" (clause 4.7.3).
        if is_geometry(value):
            return {"type": GEO_PROPERTY, "value": value}
        raise InvalidAttribute(f"attribute {name!r} has unknown type {attr_type!r}")
    out: dict[str, Any] = {"type": attr_type}
    member = VALUE_MEMBER[attr_type]
    if member not in value:
        raise InvalidAttribute(
            f"Property {name!r} has no value" if attr_type == PROPERTY else f"{attr_type} {name!r} has no {member!r} member"
        )
    for key in _OTHER_VALUE_KEYS[member]:
        if key in value:
            raise InvalidAttribute(f"{attr_type} {name!r} must not have a {key!r} member")
    checked = _check_value(name, attr_type, value[member], allow_null)
    out[member] = checked if ctx is None or member != "vocab" else _expand_strings(checked, ctx)
    for key, sub in value.items():
        if key == "type" or key == member:
            continue
        if key in ATTRIBUTE_CORE:
            checked = _check_member(name, attr_type, key, sub)
            out[key] = checked if ctx is None or key != "objectType" else _expand_strings(checked, ctx)
        elif ctx is None:
            out[key] = normalize_attribute(key, sub, allow_null=allow_null)
        else:
            out[ctx.expand_term(key)] = normalize_attribute(key, sub, allow_null=allow_null, ctx=ctx)
    return out


def _expand_strings(value: Any, ctx: TermMapper) -> Any:
    if isinstance(value, list):
        return [ctx.expand_term(v) if isinstance(v, str) else v for v in value]
    return ctx.expand_term(value) if isinstance(value, str) else value


def _infer_type(value: dict[str, Any]) -> str:
    for member, attr_type in _INFER_FROM_MEMBER:
        if member in value:
            if attr_type == PROPERTY and is_geometry(value["value"]):
                return GEO_PROPERTY
            return attr_type
    raise InvalidAttribute("cannot infer the attribute type")  # pragma: no cover - guarded


_JSON_NULL = "attribute {!r}: JSON null is not an NGSI-LD value; urn:ngsi-ld:null deletes (clauses 4.5.0, 5.2.1)"
_NULL_LANGUAGE_MAP: dict[str, str] = {"@none": NGSI_LD_NULL}


def _is_null(v: object) -> bool:
    """Whether a value is NGSI-LD Null: the URI, an array of it, or {"@none": it} for a languageMap (4.5.0)."""
    # Type checks first: this runs on every value of every write.
    if type(v) is str:
        return v == NGSI_LD_NULL
    if type(v) is list:
        return len(v) == 1 and v[0] == NGSI_LD_NULL
    if type(v) is dict:
        return len(v) == 1 and v == _NULL_LANGUAGE_MAP
    return False


def _check_value(name: str, attr_type: str, v: object, allow_null: bool) -> Any:
    if v is None:
        raise InvalidAttribute(_JSON_NULL.format(name))
    if _is_null(v):
        if not allow_null:
            raise InvalidAttribute(f"{attr_type} {name!r} has a null value")
        if attr_type == LANGUAGE_PROPERTY:
            return dict(_NULL_LANGUAGE_MAP)
        return [NGSI_LD_NULL] if attr_type in (LIST_PROPERTY, LIST_RELATIONSHIP) else NGSI_LD_NULL
    if attr_type == PROPERTY:  # most values of most writes: checked first, no message built
        if type(v) is dict and "@type" in v and "@value" not in v:
            raise InvalidAttribute(f"Property {name!r}: a JSON-LD typed value needs @value")
        return v
    what = f"{attr_type} {name!r}"
    if attr_type == RELATIONSHIP:
        if isinstance(v, list):
            if not v:
                raise InvalidAttribute(f"{what}: object must not be an empty array")
            return [check_uri(o, f"{what} object") for o in v]
        return check_uri(v, f"{what} object")
    if attr_type == GEO_PROPERTY:
        validate_geometry(v)
        return v
    if attr_type == LANGUAGE_PROPERTY:
        return check_language_map(v, what)
    if attr_type == VOCAB_PROPERTY:
        items = v if isinstance(v, list) else [v]
        if not items or not all(isinstance(i, str) and i for i in items):
            raise InvalidAttribute(f"{what}: vocab must be a string or an array of strings")
        return v
    if attr_type == LIST_PROPERTY:
        if not isinstance(v, list):
            raise InvalidAttribute(f"{what}: valueList must be an array")
        return v
    if attr_type == LIST_RELATIONSHIP:
        if not isinstance(v, list):
            raise InvalidAttribute(f"{what}: objectList must be an array")
        # Concise form allows bare URI strings (clause 4.5.22.3); store the full form.
        return [
            {"object": check_uri(o.get("object") if isinstance(o, dict) else o, f"{what} objectList item")}
            for o in v
        ]
    return v


def _check_member(name: str, attr_type: str, key: str, v: object) -> Any:
    what = f"{attr_type} {name!r}"
    if key in _DATETIME_MEMBERS:
        return check_datetime(v, f"{what} {key}")
    if key == "datasetId":
        return check_uri(v, f"{what} datasetId")
    if key == "unitCode":
        if attr_type in (RELATIONSHIP, LIST_RELATIONSHIP, VOCAB_PROPERTY, LANGUAGE_PROPERTY):
            raise InvalidAttribute(f"{what} must not have a unitCode")
        if not isinstance(v, str) or not v:
            raise InvalidAttribute(f"{what}: unitCode must be a non-empty string")
        return v
    if key == "objectType":
        if attr_type not in (RELATIONSHIP, LIST_RELATIONSHIP):
            raise InvalidAttribute(f"{what} must not have an objectType")
        types = v if isinstance(v, list) else [v]
        for t in types:
            check_name(t, f"{what} objectType")
        return v
    if key == "instanceId":
        return check_uri(v, f"{what} instanceId")
    if key in SYSTEM_MEMBERS:
        return v
    return v


def _check_dataset_ids(name: str, instances: list[dict[str, Any]]) -> None:
    seen: set[str | None] = set()
    for inst in instances:
        ds = inst.get("datasetId")
        if ds in seen:
            which = "the default instance" if ds is None else f"datasetId {ds}"
            raise BadRequestData(f"attribute {name!r} has {which} more than once (clause 4.5.5)")
        seen.add(ds)


def _entity_types(value: object) -> str | list[str]:
    types = value if isinstance(value, list) else [value]
    if not types:
        raise BadRequestData("the entity type list is empty")
    out: list[str] = []
    for t in types:
        name = check_name(t, "entity type")
        if name not in out:
            out.append(name)
    return out[0] if len(out) == 1 else out


def _type_iri(term: str, ctx: TermMapper) -> str:
    """An entity type's IRI; a term the @context maps to a JSON-LD keyword ("type" -> "@type") is no type."""
    iri = ctx.expand_term(term)
    if iri.startswith("@"):
        raise BadRequestData(f"entity type {term!r} expands to the JSON-LD keyword {iri}, not to a type IRI")
    return iri


def _scopes(value: object) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for s in scopes:
        if not isinstance(s, str) or not s.startswith("/") or s.endswith("/") and s != "/":
            raise BadRequestData(f"scope {s!r} must be a path like /Marseille/Centre (clause 4.18)")
    return list(scopes)


def instances_of(attribute: Any) -> list[dict[str, Any]]:
    """The instances of a normalized attribute as a list, whether single or multi."""
    return attribute if isinstance(attribute, list) else [attribute]


def is_relationship_uri(value: object) -> bool:
    """Whether a keyValues value could be a Relationship object (a URI)."""
    return is_uri(value)
