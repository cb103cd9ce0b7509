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

import math
from collections.abc import Callable
from typing import Any, Protocol

from models.errors import BadRequestData, InvalidAttribute, NgsiLdError
from models.geojson import is_geometry, validate_geometry
from models.validation import check_datetime, check_language_map, check_name, check_uri, is_datetime, is_name, is_uri
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

    Entities of one shape (the same members, attributes of the same form,
    the same @context) take a plan compiled once (`_entity_plan`): the
    result is the same; any entity the plan finds in error is normalized
    again here, so the error is the one this function raises.
    """
    if type(doc) is dict:
        plan = _entity_plan(doc, ctx, require_id, require_type, allow_null)
        if plan is not None:
            try:
                return plan(doc)
            except NgsiLdError:
                pass
    return normalize_entity_uncompiled(
        doc, require_id=require_id, require_type=require_type, allow_null=allow_null, ctx=ctx
    )


def normalize_entity_uncompiled(
    doc: object,
    *,
    require_id: bool = True,
    require_type: bool = True,
    allow_null: bool = False,
    ctx: TermMapper | None = None,
) -> dict[str, Any]:
    """`normalize_entity` member by member, with no compiled plan: the reference the plans must equal."""
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


# ---------------------------------------------------------------------------------------------
# Compiled plans: what normalize_entity decides from an entity's shape alone (its members, each
# attribute's members and type, names, their expansion by the @context) is decided once per
# shape; a plan then only runs the checks that depend on values (URIs, date-times, geometries,
# nulls), with the same functions and in the same order as normalize_entity_uncompiled. A plan
# never decides an error: whatever it cannot take (another shape, a static error such as an
# invalid name or a member an attribute type must not have) goes to the uncompiled code, which
# builds the same result or raises the error it always raised.

_Plan = Callable[[dict[str, Any]], dict[str, Any]]
_Step = Callable[[Any], Any]
_FALLBACK: Any = object()  # a step's answer for a value not of its shape
_NO_PLAN: Any = object()
_PLANS: dict[tuple[Any, ...], Any] = {}
_PLAN_LIMIT = 512  # entity shapes x contexts kept; all forgotten when full (cheap to rebuild)
_VARIANTS_LIMIT = 8  # shapes compiled per attribute name of one entity plan; more take the uncompiled code
_ENTITY_TIMES = ("createdAt", "modifiedAt", "deletedAt")


def _entity_plan(doc: dict[str, Any], ctx: TermMapper | None, require_id: bool, require_type: bool,
                 allow_null: bool) -> _Plan | None:
    """The compiled plan for entities with `doc`'s members under `ctx`, None when there is none."""
    try:
        key = (ctx, require_id, require_type, allow_null, *doc)
        plan = _PLANS.get(key, _NO_PLAN)
    except TypeError:  # a TermMapper that cannot be hashed: no plans for it
        return None
    if plan is _NO_PLAN:
        plan = _compile_entity(tuple(doc), ctx, require_id, require_type, allow_null)
        if len(_PLANS) >= _PLAN_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan  # type: ignore[no-any-return]


def _compile_entity(keys: tuple[str, ...], ctx: TermMapper | None, require_id: bool, require_type: bool,
                    allow_null: bool) -> _Plan | None:
    if ("id" not in keys and require_id) or ("type" not in keys and require_type):
        return None  # always an error: the uncompiled code raises it
    has_id, has_type, has_scope = "id" in keys, "type" in keys, "scope" in keys
    times = tuple(k for k in _ENTITY_TIMES if k in keys)
    keep_context = "@context" in keys and ctx is None
    attributes: list[tuple[str, str, dict[tuple[Any, ...], _Step | None]]] = []
    for name in keys:
        if name in ENTITY_CORE:
            continue
        if not isinstance(name, str) or not is_name(name):
            return None  # an invalid attribute name: the uncompiled code raises its error
        attributes.append((name, name if ctx is None else ctx.expand_term(name), {}))
    type_iris: dict[str, list[str] | str | None] = {}

    def entity_type(value: Any) -> Any:
        if type(value) is str:  # one type (nearly always): its check and expansion done once
            known = type_iris.get(value, _NO_PLAN)
            if known is _NO_PLAN:
                try:
                    types = _entity_types(value)
                    known = types if ctx is None else _type_iri(value, ctx)
                except NgsiLdError:
                    known = None
                if len(type_iris) < 64:
                    type_iris[value] = known
            if known is None:
                raise BadRequestData("")  # the uncompiled code raises the real error
            return known if ctx is None else [known]
        types = _entity_types(value)
        if ctx is None:
            return types
        return [_type_iri(t, ctx) for t in (types if isinstance(types, list) else [types])]

    def plan(doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if has_id:
            out["id"] = check_uri(doc["id"], "entity id")
        if has_type:
            out["type"] = entity_type(doc["type"])
        if has_scope:
            out["scope"] = _scopes(doc["scope"])
        for key in times:
            out[key] = check_datetime(doc[key], f"entity {key}")
        if keep_context:
            out["@context"] = doc["@context"]
        for name, iri, variants in attributes:
            value = doc[name]
            attribute = _FALLBACK
            if type(value) is dict and type(kind := value.get("type")) is str:
                shape = (kind, *value)
                step = variants.get(shape, _NO_PLAN)
                if step is _NO_PLAN:
                    step = _compile_instance(name, value, allow_null, ctx) if len(variants) < _VARIANTS_LIMIT else None
                    variants[shape] = step
                if step is not None:
                    attribute = step(value)
            if attribute is _FALLBACK:
                attribute = normalize_attribute(name, value, allow_null=allow_null, ctx=ctx)
            if ctx is None:
                out[name] = attribute
            else:
                out[iri] = attribute if isinstance(attribute, list) else [attribute]
        return out

    return plan


def _compile_instance(name: str, sample: dict[str, Any], allow_null: bool, ctx: TermMapper | None) -> _Step | None:
    """The step normalizing one attribute instance of `sample`'s members and type (a dict with a known
    "type"); None when that shape is not compiled (it is then normalized uncompiled)."""
    attr_type = sample.get("type")
    if type(attr_type) is not str or attr_type not in ATTRIBUTE_TYPES:
        return None  # concise forms infer their type from values: left to the uncompiled code
    member = VALUE_MEMBER[attr_type]
    if member not in sample or any(k in sample for k in _OTHER_VALUE_KEYS[member]):
        return None
    what = f"{attr_type} {name!r}"
    expand_value = ctx is not None and member == "vocab"
    members: list[tuple[str, str, Callable[[Any], Any] | None, bool, _Step | None]] = []
    for key, sub in sample.items():
        if key == "type" or key == member:
            continue
        if key in ATTRIBUTE_CORE:
            check = _member_check(attr_type, key, what)
            if check is _FALLBACK:
                return None
            members.append((key, key, check, ctx is not None and key == "objectType", None))
        else:
            if not isinstance(key, str) or not is_name(key):
                return None
            sub_step = _compile_instance(key, sub, allow_null, ctx) if type(sub) is dict else None
            members.append((key, key if ctx is None else ctx.expand_term(key), None, False,
                            None if sub_step is None else _guarded((sub.get("type"), *sub), sub_step)))
    check_value = _value_check(attr_type, name, allow_null)

    def step(value: dict[str, Any]) -> Any:
        """`value` has the sample's type and members, in the sample's order (the caller checked)."""
        out: dict[str, Any] = {"type": attr_type}
        checked = check_value(value[member])
        out[member] = _expand_strings(checked, ctx) if expand_value else checked  # type: ignore[arg-type]
        for key, out_key, check, expand, sub_step in members:
            v = value[key]
            if check is not None:
                v = check(v)
                out[out_key] = _expand_strings(v, ctx) if expand else v  # type: ignore[arg-type]
                continue
            done = _FALLBACK if sub_step is None else sub_step(v)
            out[out_key] = done if done is not _FALLBACK else normalize_attribute(key, v, allow_null=allow_null, ctx=ctx)
        return out

    return step


def _guarded(shape: tuple[Any, ...], step: _Step) -> _Step:
    """`step` for values of `shape` (their "type", then their members in order); others get `_FALLBACK`."""
    def guarded(value: Any) -> Any:
        return step(value) if type(value) is dict and (value.get("type"), *value) == shape else _FALLBACK

    return guarded


def _value_check(attr_type: str, name: str, allow_null: bool) -> Callable[[Any], Any]:
    """`_check_value` for one attribute, with the common values taken without a call."""
    if attr_type == PROPERTY:
        def check_property(v: Any) -> Any:
            t = type(v)
            if t is float or t is int or t is bool:
                return v
            return _check_value(name, attr_type, v, allow_null)

        return check_property
    if attr_type == GEO_PROPERTY:
        def check_geo(v: Any) -> Any:
            return v if _is_plain_point(v) else _check_value(name, attr_type, v, allow_null)

        return check_geo
    return lambda v: _check_value(name, attr_type, v, allow_null)


def _is_plain_point(v: Any) -> bool:
    """Whether v is a GeoJSON Point validate_geometry accepts, told without it (False: ask it)."""
    if type(v) is not dict or v.get("type") != "Point" or "bbox" in v:
        return False
    position = v.get("coordinates")
    if type(position) is not list or not 2 <= len(position) <= 3:
        return False
    for number in position:
        t = type(number)
        if t is float:
            if not math.isfinite(number):
                return False
        elif t is not int or not -(2**53) < number < 2**53:
            return False
    return bool(-180.0 <= position[0] <= 180.0 and -90.0 <= position[1] <= 90.0)


def _member_check(attr_type: str, key: str, what: str) -> Any:
    """`_check_member` for one member of one attribute: None when the member is taken as it is,
    `_FALLBACK` when it is always an error (left to the uncompiled code)."""
    if key in _DATETIME_MEMBERS:
        label = f"{what} {key}"

        def date_time(v: Any) -> Any:
            return v if type(v) is str and is_datetime(v) else check_datetime(v, label)

        return date_time
    if key == "datasetId" or key == "instanceId":
        label = f"{what} {key}"
        return lambda v: check_uri(v, label)
    if key == "unitCode":
        if attr_type in (RELATIONSHIP, LIST_RELATIONSHIP, VOCAB_PROPERTY, LANGUAGE_PROPERTY):
            return _FALLBACK

        def unit_code(v: Any) -> Any:
            if not isinstance(v, str) or not v:
                raise InvalidAttribute(f"{what}: unitCode must be a non-empty string")
            return v

        return unit_code
    if key == "objectType":
        if attr_type not in (RELATIONSHIP, LIST_RELATIONSHIP):
            return _FALLBACK
        return lambda v: _check_member("", attr_type, key, v)
    return _identity


def _identity(v: Any) -> Any:
    return v
