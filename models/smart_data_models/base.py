"""The base of every Smart Data Model: common attributes, NGSI-LD output and input.

A model instance holds the simplified (keyValues) shape that the official
JSON Schemas describe; `to_ngsi_ld()` writes it as an NGSI-LD entity in any
representation with the model's @context, unit codes (UN/CEFACT), attribute
types (Property, Relationship, GeoProperty; date-times as JSON-LD typed
`DateTime` values, as the official normalized examples write them) and
`observedAt` taken from the observation date. `read_ngsi_ld()` reads an
entity written in any representation back into that shape, remembering the
JSON path each value came from, so a violation can point into the payload
as the vendor wrote it.

    class AirQualityObserved(SmartDataModel):
        ENTITY_TYPE = "AirQualityObserved"; SUBJECT = "dataModel.Environment"
        no2: Annotated[Any, number(minimum=0)] = None
        ...

Unknown attributes are kept (`extra="allow"`): the schemas do not close
their objects, and neither do the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from models.errors import NgsiLdError
from models.normalize import instances_of, normalize_entity
from models.representation import Representation, to_concise
from models.smart_data_models.fields import (
    Address,
    DateTime,
    EntityId,
    Rule,
    SeeAlso,
    Text,
    _date_time,
    array,
    entity_id_item,
    is_number,
    is_rfc3339,
)
from models.smart_data_models.geometry import Location
from models.vocabulary import ATTRIBUTE_TYPES, ENTITY_CORE, VALUE_MEMBER

CONTEXT_URL_TEMPLATE = "https://raw.githubusercontent.com/smart-data-models/{subject}/master/context.jsonld"
"""Where each subject's @context is published (the URL of the official examples)."""

DATETIME_TYPE = "DateTime"


class SmartDataModel(BaseModel):
    """Base of the Smart Data Models: the GSMA-Commons attributes every model has.

    Subclasses set the class variables below and declare their attributes
    with the value types of `models.smart_data_models.fields`.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    ENTITY_TYPE: ClassVar[str] = ""
    SUBJECT: ClassVar[str] = ""
    """The dataModel.<Subject> repository, which names the @context."""
    SCHEMA_ID: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[str] = ""
    UNITS: ClassVar[dict[str, str]] = {}
    """Default UN/CEFACT unit code of each numeric measurement."""
    RELATIONSHIPS: ClassVar[frozenset[str]] = frozenset()
    """Attributes that are NGSI-LD Relationships (the specs' "Relationship." attributes)."""
    OBSERVED_AT: ClassVar[str | None] = None
    """The attribute whose date-time becomes the measurements' observedAt."""

    id: EntityId
    type: Any
    dateCreated: DateTime = None
    dateModified: DateTime = None
    source: Text = None
    name: Text = None
    alternateName: Text = None
    description: Text = None
    dataProvider: Text = None
    owner: Annotated[Any, array(entity_id_item)] = None
    seeAlso: SeeAlso = None

    # An optional attribute may be absent, never null: defaults are not validated, an explicit
    # null is, and every value type refuses it under the keyword the schema would name.

    @field_validator("type", mode="after")
    @classmethod
    def _entity_type(cls, v: Any) -> Any:
        if v != cls.ENTITY_TYPE:
            raise PydanticCustomError("enum", "{v!r} is not {expected!r}", {"v": v, "expected": cls.ENTITY_TYPE})
        return v

    # --- class-level facts -------------------------------------------------------------

    @classmethod
    def context_url(cls) -> str:
        """The @context URL of the model's subject."""
        return CONTEXT_URL_TEMPLATE.format(subject=cls.SUBJECT)

    @classmethod
    def attribute_names(cls) -> frozenset[str]:
        """Every attribute the model defines (JSON names, aliases applied)."""
        return _attribute_names(cls)

    @classmethod
    def date_time_attributes(cls) -> frozenset[str]:
        """Attributes whose value is an RFC 3339 date-time."""
        return _date_time_attributes(cls)

    # --- output ------------------------------------------------------------------------

    def key_values(self) -> dict[str, Any]:
        """The entity in simplified (keyValues) representation, the shape of the official schemas."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        out = {"id": data.pop("id"), "type": data.pop("type")}
        out.update(data)
        return out

    def to_ngsi_ld(
        self,
        representation: Representation | str = Representation.NORMALIZED,
        *,
        context: str | list[str] | None = None,
        with_context: bool = True,
    ) -> dict[str, Any]:
        """The entity in `representation`, with "@context" (the subject's, unless given) when asked."""
        representation = Representation(representation)
        kv = self.key_values()
        if representation is Representation.SIMPLIFIED:
            out = kv
        else:
            out = self._normalized(kv)
            if representation is Representation.CONCISE:
                out = to_concise(out)
        if with_context:
            out["@context"] = context if context is not None else [self.context_url()]
        return out

    def _normalized(self, kv: dict[str, Any]) -> dict[str, Any]:
        observed = kv.get(self.OBSERVED_AT) if self.OBSERVED_AT else None
        observed_at = observed if isinstance(observed, str) and is_rfc3339(observed) else None
        dates = self.date_time_attributes()
        out: dict[str, Any] = {"id": kv["id"], "type": kv["type"]}
        for name, value in kv.items():
            if name in ("id", "type"):
                continue
            if name in self.RELATIONSHIPS:
                out[name] = {"type": "Relationship", "object": value}
            elif name == "location":
                out[name] = {"type": "GeoProperty", "value": value}
            elif name in dates:
                out[name] = {"type": "Property", "value": {"@type": DATETIME_TYPE, "@value": value}}
            else:
                attr: dict[str, Any] = {"type": "Property", "value": value}
                unit = self.unit_code(name)
                if unit is not None and is_number(value):
                    attr["unitCode"] = unit
                    if observed_at is not None:
                        attr["observedAt"] = observed_at
                out[name] = attr
        return out

    def unit_code(self, name: str) -> str | None:
        """The UN/CEFACT unit code written with attribute `name` (None for unitless ones)."""
        return self.UNITS.get(name)


@cache
def _attribute_names(cls: type[SmartDataModel]) -> frozenset[str]:
    return frozenset(f.alias or n for n, f in cls.model_fields.items())


@cache
def _date_time_attributes(cls: type[SmartDataModel]) -> frozenset[str]:
    out = set()
    for name, f in cls.model_fields.items():
        if any(isinstance(m, Rule) and m.check is _date_time for m in f.metadata):
            out.add(f.alias or name)
    return frozenset(out)


class LocatedModel(SmartDataModel):
    """Location-Commons of common-schema.json: location, address, areaServed."""

    location: Location = None
    address: Address = None
    areaServed: Text = None


# --- input: any representation back to keyValues ------------------------------------------


@dataclass
class ReadEntity:
    """An entity read from a payload: its keyValues shape and where each value came from."""

    key_values: dict[str, Any]
    representation: Representation
    paths: dict[str, str] = field(default_factory=dict)
    """Attribute name -> JSON path (relative to the entity, "$" its root) of the value read."""
    attribute_types: dict[str, str] = field(default_factory=dict)
    """Attribute name -> NGSI-LD attribute type as written (normalized and concise input only)."""
    context: Any = None


def detect_representation(doc: dict[str, Any]) -> Representation:
    """Normalized when every attribute is typed, concise when some are, keyValues otherwise."""
    attributes = [v for k, v in doc.items() if k not in ENTITY_CORE]
    typed = [_is_typed(v) for v in attributes]
    if typed and all(typed):
        return Representation.NORMALIZED
    if any(typed) or any(_is_concise(v) for v in attributes):
        return Representation.CONCISE
    return Representation.SIMPLIFIED


def _is_typed(v: Any) -> bool:
    if isinstance(v, list):
        return bool(v) and all(_is_typed(i) for i in v)
    return isinstance(v, dict) and isinstance(v.get("type"), str) and v["type"] in ATTRIBUTE_TYPES


def _is_concise(v: Any) -> bool:
    return isinstance(v, dict) and "type" not in v and any(m in v for m in ("value", "object", "languageMap"))


def read_ngsi_ld(doc: dict[str, Any], representation: Representation | None = None) -> ReadEntity:
    """Read an entity in any representation into keyValues; NgsiLdError when it breaks NGSI-LD."""
    representation = representation or detect_representation(doc)
    context = doc.get("@context")
    if representation is Representation.SIMPLIFIED:
        # A concise entity whose every attribute is a bare value looks simplified;
        # its JSON-LD typed values ({"@type", "@value"}) still mean their @value.
        simple = {k: _typed_value(v) for k, v in doc.items() if k != "@context"}
        return ReadEntity(simple, representation, {k: f"$.{k}" for k in simple}, {}, context)
    normalized = normalize_entity(doc)
    kv: dict[str, Any] = {}
    paths: dict[str, str] = {}
    types: dict[str, str] = {}
    for name, attribute in normalized.items():
        if name == "@context":
            continue
        if name in ENTITY_CORE:
            kv[name] = attribute
            paths[name] = f"$.{name}"
            continue
        instances = instances_of(attribute)
        first = instances[0]
        member = VALUE_MEMBER[first["type"]]
        types[name] = first["type"]
        written = doc.get(name)
        bare = not isinstance(written, dict) or (isinstance(written, dict) and member not in written)
        paths[name] = f"$.{name}" if bare else f"$.{name}.{member}"
        if len(instances) > 1 or "datasetId" in first:
            kv[name] = {"dataset": {i.get("datasetId", "@none"): _plain(i) for i in instances}}
        else:
            kv[name] = _plain(first)
    return ReadEntity(kv, representation, paths, types, context)


def _typed_value(value: Any) -> Any:
    if isinstance(value, dict) and "@value" in value and set(value) <= {"@value", "@type", "@language"}:
        return value["@value"]
    return value


def _plain(instance: dict[str, Any]) -> Any:
    """The keyValues value of one instance; a JSON-LD typed value ({"@type", "@value"}) gives its @value."""
    attr_type = instance["type"]
    value = instance[VALUE_MEMBER[attr_type]]
    if attr_type == "ListRelationship":
        return [o["object"] for o in value]
    return _typed_value(value)


__all__ = [
    "CONTEXT_URL_TEMPLATE",
    "LocatedModel",
    "NgsiLdError",
    "ReadEntity",
    "SmartDataModel",
    "detect_representation",
    "read_ngsi_ld",
]
