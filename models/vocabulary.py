"""Names of the NGSI-LD core information model (ETSI GS CIM 009 V1.9.1, clauses 4.2, 4.5, 5.2).

The internal entity format used everywhere inside the platform, "expanded
normalized form" (ENF), is a plain dict, chosen over objects because the
broker stores and filters hundreds of thousands of them:

    {
      "id": "urn:ngsi-ld:AirQualityObserved:aix-1",       # URI
      "type": ["https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"],
      "scope": ["/Aix/Centre"],                          # optional, always a list
      "createdAt": "2026-11-26T06:00:00Z",               # system attributes, optional
      "modifiedAt": "2026-11-26T06:00:00Z",
      "<expanded attribute IRI>": [instance, ...],       # always a list: one item per datasetId
    }

An attribute instance is the normalized representation of clause 4.5 with
core member names kept short (they are protected core-context terms and
never change meaning) and every user term expanded to its IRI:

    {"type": "Property", "value": 42, "unitCode": "GQ",
     "observedAt": "...", "datasetId": "urn:...",      # optional members
     "createdAt": "...", "modifiedAt": "...",          # system members
     "<expanded sub-attribute IRI>": {instance}}       # sub-attributes: one instance each

The value member depends on the attribute type: Property and GeoProperty
"value", Relationship "object" (+ optional "objectType"), LanguageProperty
"languageMap", VocabProperty "vocab" (expanded IRIs), JsonProperty "json"
(never expanded), ListProperty "valueList", ListRelationship "objectList"
(a list of {"object": uri}). Property values are kept verbatim (a compound
value's keys are not expanded), as Orion-LD does.
"""

from __future__ import annotations

from typing import Any, Final

ENTITY_CORE: Final = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"})
"""Entity members that are not attributes."""

PROPERTY = "Property"
RELATIONSHIP = "Relationship"
GEO_PROPERTY = "GeoProperty"
LANGUAGE_PROPERTY = "LanguageProperty"
VOCAB_PROPERTY = "VocabProperty"
JSON_PROPERTY = "JsonProperty"
LIST_PROPERTY = "ListProperty"
LIST_RELATIONSHIP = "ListRelationship"

VALUE_MEMBER: Final[dict[str, str]] = {
    PROPERTY: "value",
    GEO_PROPERTY: "value",
    RELATIONSHIP: "object",
    LANGUAGE_PROPERTY: "languageMap",
    VOCAB_PROPERTY: "vocab",
    JSON_PROPERTY: "json",
    LIST_PROPERTY: "valueList",
    LIST_RELATIONSHIP: "objectList",
}
"""The member holding each attribute type's value (clauses 4.5.2-4.5.24)."""

ATTRIBUTE_TYPES: Final = frozenset(VALUE_MEMBER)

VALUE_MEMBERS: Final = frozenset(VALUE_MEMBER.values())

PREVIOUS_MEMBER: Final[dict[str, str]] = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "vocab": "previousVocab",
    "json": "previousJson",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}

SYSTEM_MEMBERS: Final = frozenset({"createdAt", "modifiedAt", "deletedAt", "instanceId"})

ATTRIBUTE_CORE: Final = frozenset(
    {
        "type",
        "datasetId",
        "observedAt",
        "unitCode",
        "objectType",
        "valueType",
        "expiresAt",
        "lang",
        "entity",
        "entityList",
        *VALUE_MEMBERS,
        *SYSTEM_MEMBERS,
        *PREVIOUS_MEMBER.values(),
    }
)
"""Attribute members that are not sub-attributes (their names are core terms)."""

TEMPORAL_MEMBERS: Final = frozenset({"observedAt", "createdAt", "modifiedAt", "deletedAt"})

NGSI_LD_NULL: Final = "urn:ngsi-ld:null"
"""The NGSI-LD Null of clause 4.5.0, used by patch and merge to delete."""

DEFAULT_CONTEXT_VOCAB: Final = "https://uri.etsi.org/ngsi-ld/default-context/"
"""Where terms the @context does not define expand to (clause 5.5.7)."""

NGSI_LD_NS: Final = "https://uri.etsi.org/ngsi-ld/"

Json = Any
"""A JSON value as parsed by the json/orjson modules."""

Entity = dict[str, Any]
"""An entity in any of the representations (a JSON object)."""

Doc = dict[str, Any]
"""A JSON object as parsed: an entity, an attribute, a subscription, a provisioning body, a stored row's document."""
