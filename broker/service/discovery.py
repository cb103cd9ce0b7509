"""Entity types and attributes available (clauses 5.7.5-5.7.10, data types of 4.5.10-4.5.15).

Everything is computed from the store's per-type summaries (types, entity
counts, attribute IRIs and attribute types), compacted with the request's
@context. List identifiers are URNs minted per response, as the spec leaves
them to the implementation.
"""

from __future__ import annotations

import uuid
from typing import Any

from broker.store.base import EntityFilter, Store, TypeSummary
from models.errors import ResourceNotFound
from models.normalize import TermMapper


def _urn(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex}"


class DiscoveryService:
    """GET /types, /types/{type}, /attributes, /attributes/{attr}."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _summaries(self, tenant: str) -> list[TypeSummary]:
        return sorted(await self.store.type_summaries(tenant), key=lambda s: s.type_iri)

    async def types(self, tenant: str, ctx: TermMapper, *, details: bool) -> Any:
        """EntityTypeList (4.5.10), or a list of EntityType (4.5.11) with details."""
        summaries = await self._summaries(tenant)
        if not details:
            return {"id": _urn("EntityTypeList"), "type": "EntityTypeList",
                    "typeList": [ctx.compact_iri(s.type_iri) for s in summaries]}
        return [
            {"id": s.type_iri, "type": "EntityType", "typeName": ctx.compact_iri(s.type_iri),
             "attributeNames": sorted(ctx.compact_iri(a) for a in s.attributes)}
            for s in summaries
        ]

    async def type_info(self, tenant: str, type_term: str, ctx: TermMapper) -> dict[str, Any]:
        """EntityTypeInfo (4.5.12) of one type; ResourceNotFound if no entity has it."""
        iri = ctx.expand_term(type_term)
        summary = next((s for s in await self._summaries(tenant) if s.type_iri == iri), None)
        if summary is None:
            raise ResourceNotFound(f"no entity of type {type_term}")
        return {
            "id": iri,
            "type": "EntityTypeInfo",
            "typeName": ctx.compact_iri(iri),
            "entityCount": summary.count,
            "attributeDetails": [
                {"id": a, "type": "Attribute", "attributeName": ctx.compact_iri(a), "attributeTypes": sorted(t)}
                for a, t in sorted(summary.attributes.items())
            ],
        }

    def _attributes(self, summaries: list[TypeSummary]) -> dict[str, tuple[set[str], set[str]]]:
        """attribute IRI -> (attribute types, entity type IRIs)."""
        out: dict[str, tuple[set[str], set[str]]] = {}
        for s in summaries:
            for attr, attr_types in s.attributes.items():
                types, entity_types = out.setdefault(attr, (set(), set()))
                types.update(attr_types)
                entity_types.add(s.type_iri)
        return out

    async def attributes(self, tenant: str, ctx: TermMapper, *, details: bool) -> Any:
        """AttributeList (4.5.13), or a list of Attribute (4.5.14) with details."""
        attrs = self._attributes(await self._summaries(tenant))
        if not details:
            return {"id": _urn("AttributeList"), "type": "AttributeList",
                    "attributeList": sorted(ctx.compact_iri(a) for a in attrs)}
        return [
            {"id": a, "type": "Attribute", "attributeName": ctx.compact_iri(a),
             "typeNames": sorted(ctx.compact_iri(t) for t in entity_types)}
            for a, (_, entity_types) in sorted(attrs.items())
        ]

    async def attribute_info(self, tenant: str, attr_term: str, ctx: TermMapper) -> dict[str, Any]:
        """Attribute (4.5.15) with its count of entities, attribute types and entity types."""
        iri = ctx.expand_term(attr_term)
        attrs = self._attributes(await self._summaries(tenant))
        if iri not in attrs:
            raise ResourceNotFound(f"no entity has attribute {attr_term}")
        page = await self.store.query(tenant, EntityFilter(attrs_any=frozenset({iri})), limit=0, offset=0, count=True)
        attr_types, entity_types = attrs[iri]
        return {
            "id": iri,
            "type": "Attribute",
            "attributeName": ctx.compact_iri(iri),
            "attributeCount": page.total,
            "attributeTypes": sorted(attr_types),
            "typeNames": sorted(ctx.compact_iri(t) for t in entity_types),
        }
