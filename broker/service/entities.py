"""EntityService: the single-entity operations of clause 5.6 on ENF documents through a Store.

Handlers give ENF fragments (already normalized and expanded with the
request's @context) except where the operation needs the stored entity to
read the body (partial attribute patch: the target's type fills what a
concise fragment leaves out). System attributes are set here: each attribute
instance carries createdAt/modifiedAt (createdAt kept across replacements),
the entity's own live in store columns and are added on reads with sysAttrs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.query.types import compile_type_selection
from broker.service.patch import (
    UpdateResult,
    apply_fragment,
    find_instance,
    is_null_instance,
    patch_instance,
    stamp_new,
    utc_now,
)
from broker.store.base import Change, Doc, Store, StoredEntity
from models.errors import (
    AlreadyExists,
    BadRequestData,
    InvalidAttribute,
    NgsiLdError,
    NonexistentTenant,
    ResourceNotFound,
)
from models.expansion import expand_instance
from models.geojson import is_geometry
from models.normalize import TermMapper, normalize_attribute, normalize_entity
from models.validation import check_name
from models.vocabulary import ATTRIBUTE_TYPES, GEO_PROPERTY, VALUE_MEMBER

_PLACEHOLDER: dict[str, Any] = {
    "Property": 0,
    "GeoProperty": {"type": "Point", "coordinates": [0, 0]},
    "Relationship": "urn:ngsi-ld:placeholder",
    "LanguageProperty": {"en": "placeholder"},
    "VocabProperty": "placeholder",
    "JsonProperty": {},
    "ListProperty": [],
    "ListRelationship": [],
}
"""A valid value per attribute type, to validate a partial fragment that leaves its value out."""


def to_enf(doc: Any, ctx: TermMapper, *, allow_null: bool = False, fragment: bool = False) -> Doc:
    """A client entity (normalized or concise, terms) -> ENF; fragments need no id or type."""
    return normalize_entity(doc, require_id=not fragment, require_type=not fragment, allow_null=allow_null, ctx=ctx)


def with_system_attrs(stored: StoredEntity) -> Doc:
    """The stored document with the entity's createdAt/modifiedAt (for sysAttrs)."""
    return {**stored.doc, "createdAt": stored.created_at, "modifiedAt": stored.modified_at}


class _Missing:
    """Change.result of a modify on an absent entity."""


MISSING = _Missing()


class EntityService:
    """Every single-entity operation; tenants are created by the store on first write."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ tenants and errors

    async def check_tenant(self, tenant: str) -> None:
        """NonexistentTenant unless the tenant exists (the default tenant '' always does)."""
        if tenant and not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")

    async def not_found(self, tenant: str, entity_id: str) -> NgsiLdError:
        """The error for an entity that is not there: NonexistentTenant first, if that is why."""
        if tenant and not await self.store.has_tenant(tenant):
            return NonexistentTenant(f"tenant {tenant!r} does not exist")
        return ResourceNotFound(f"entity {entity_id} not found", instance=entity_id)

    async def _modify(self, tenant: str, entity_id: str, fn: Callable[[StoredEntity], Change]) -> Any:
        """Atomic read-modify-write of one existing entity; ResourceNotFound when absent."""

        def change(_id: str, current: StoredEntity | None) -> Change:
            if current is None:
                return Change(None, MISSING, changed=False)
            return fn(current)

        result = (await self.store.modify(tenant, [entity_id], change, utc_now()))[entity_id]
        if result is MISSING:
            raise await self.not_found(tenant, entity_id)
        if isinstance(result, NgsiLdError):
            raise result
        return result

    # ------------------------------------------------------------------ entities

    async def create(self, tenant: str, enf: Doc) -> None:
        """Create Entity (clause 5.6.1): AlreadyExists when the id is taken."""
        now = utc_now()
        if await self.store.insert(tenant, [stamp_new(enf, now)], now):
            raise AlreadyExists(f"entity {enf['id']} already exists", instance=enf["id"])

    async def get(self, tenant: str, entity_id: str, type_text: str | None = None,
                  ctx: TermMapper | None = None) -> StoredEntity:
        """Retrieve Entity (clause 5.7.1); with a type selection (4.17), an entity of other types is not found."""
        stored = await self.store.get(tenant, entity_id)
        if (stored is not None and type_text and type_text != "*" and ctx is not None
                and not compile_type_selection(type_text).compile(ctx.expand_term)(stored.doc.get("type", ()))):
            stored = None
        if stored is None:
            raise await self.not_found(tenant, entity_id)
        return stored

    async def delete(self, tenant: str, entity_id: str) -> None:
        """Delete Entity (clause 5.6.6)."""
        if not await self.store.delete(tenant, [entity_id]):
            raise await self.not_found(tenant, entity_id)

    async def replace(self, tenant: str, entity_id: str, enf: Doc) -> None:
        """Replace Entity (clause 5.6.18): the whole content, createdAt kept."""
        if enf.get("id", entity_id) != entity_id:
            raise BadRequestData(f"the body's id {enf['id']} differs from the entity id {entity_id}")
        doc = {**enf, "id": entity_id}

        def fn(current: StoredEntity) -> Change:
            now = utc_now()
            new = stamp_new(doc, now)
            return Change(new, None)

        await self._modify(tenant, entity_id, fn)

    async def update_attrs(self, tenant: str, entity_id: str, fragment: Doc) -> UpdateResult:
        """Update Attributes (clause 5.6.2): partial update patch at attribute level, nulls delete."""
        return await self._apply(tenant, entity_id, fragment, overwrite=True, scope_only_if_present=True)

    async def append_attrs(self, tenant: str, entity_id: str, fragment: Doc, *, overwrite: bool = True) -> UpdateResult:
        """Append Attributes (clause 5.6.3); noOverwrite leaves existing instances untouched."""
        return await self._apply(tenant, entity_id, fragment, overwrite=overwrite)

    async def merge(self, tenant: str, entity_id: str, fragment: Doc, **options: Any) -> UpdateResult:
        """Merge Entity (clause 5.6.17, merge patch of 5.5.12); options: keep_type, lang, observed_at."""
        return await self._apply(tenant, entity_id, fragment, merge=True, **options)

    async def _apply(self, tenant: str, entity_id: str, fragment: Doc, **kwargs: Any) -> UpdateResult:
        if fragment.get("id", entity_id) != entity_id:
            raise BadRequestData(f"the body's id {fragment['id']} differs from the entity id {entity_id}")

        def fn(current: StoredEntity) -> Change:
            doc = dict(current.doc)
            result = apply_fragment(doc, fragment, utc_now(), **kwargs)
            return Change(doc, result, changed=bool(result.updated) or "type" in fragment or "scope" in fragment)

        result: UpdateResult = await self._modify(tenant, entity_id, fn)
        return result

    # ------------------------------------------------------------------ one attribute

    async def patch_attr(
        self, tenant: str, entity_id: str, attr: str, body: Any, ctx: TermMapper, *, dataset_id: str | None = None
    ) -> None:
        """Partial Attribute Update (clause 5.6.4): the target instance must exist; its type cannot change."""
        check_name(attr, "attribute name")
        if attr == "scope":
            raise BadRequestData("scope is not an attribute that can be patched")
        iri = ctx.expand_term(attr)
        # A bare value, or a GeoJSON geometry (its "type" is not the attribute's), is the concise value (clause 4.7.3).
        raw = body if isinstance(body, dict) and not is_geometry(body) else {"value": body}

        def fn(current: StoredEntity) -> Change:
            try:
                doc = dict(current.doc)
                instances = list(doc.get(iri, ()))
                ds = raw.get("datasetId", dataset_id)
                i = find_instance(instances, ds)
                if i < 0:
                    raise ResourceNotFound(f"entity {entity_id} has no attribute {attr}" + (f" with datasetId {ds}" if ds else ""))
                old = instances[i]
                frag = _fragment_instance(attr, raw, old["type"], ctx)
                if is_null_instance(frag):
                    del instances[i]
                else:
                    instances[i] = patch_instance(old, frag, utc_now())
                if instances:
                    doc[iri] = instances
                else:
                    doc.pop(iri, None)
                # current.doc untouched: doc and instances are copies, patch_instance makes a new instance
                return Change(doc, None, before_intact=True)
            except NgsiLdError as error:
                return Change(None, error, changed=False)

        await self._modify(tenant, entity_id, fn)

    async def replace_attr(self, tenant: str, entity_id: str, attr: str, body: Any, ctx: TermMapper) -> None:
        """Replace Attribute (clause 5.6.19): the instance with the same datasetId must exist."""
        check_name(attr, "attribute name")
        if attr == "scope":
            raise BadRequestData("scope cannot be replaced as an attribute")
        iri = ctx.expand_term(attr)
        normalized = normalize_attribute(attr, body)
        new_instances = [expand_instance(i, ctx) for i in (normalized if isinstance(normalized, list) else [normalized])]

        def fn(current: StoredEntity) -> Change:
            doc = dict(current.doc)
            instances = list(doc.get(iri, ()))
            now = utc_now()
            for inst in new_instances:
                i = find_instance(instances, inst.get("datasetId"))
                if i < 0:
                    ds = inst.get("datasetId")
                    return Change(None, ResourceNotFound(
                        f"entity {entity_id} has no attribute {attr}" + (f" with datasetId {ds}" if ds else "")
                    ), changed=False)
                instances[i] = {**inst, "createdAt": instances[i].get("createdAt", now), "modifiedAt": now}
            doc[iri] = instances
            return Change(doc, None)

        await self._modify(tenant, entity_id, fn)

    async def delete_attr(
        self, tenant: str, entity_id: str, attr: str, ctx: TermMapper, *, dataset_id: str | None = None, delete_all: bool = False
    ) -> None:
        """Delete Attribute (clause 5.6.5): the default instance, one datasetId, or all with deleteAll."""
        check_name(attr, "attribute name")
        iri = "scope" if attr == "scope" else ctx.expand_term(attr)

        def fn(current: StoredEntity) -> Change:
            doc = dict(current.doc)
            if iri not in doc:
                return Change(None, ResourceNotFound(f"entity {entity_id} has no attribute {attr}"), changed=False)
            if iri == "scope" or delete_all:
                del doc[iri]
                return Change(doc, None)
            instances = list(doc[iri])
            i = find_instance(instances, dataset_id)
            if i < 0:
                which = f"datasetId {dataset_id}" if dataset_id else "default instance"
                return Change(None, ResourceNotFound(f"attribute {attr} of {entity_id} has no {which}"), changed=False)
            del instances[i]
            if instances:
                doc[iri] = instances
            else:
                del doc[iri]
            return Change(doc, None)

        await self._modify(tenant, entity_id, fn)


def _fragment_instance(attr: str, raw: dict[str, Any], target_type: str, ctx: TermMapper) -> Doc:
    """One attribute fragment of a partial patch, validated and expanded; its value may be absent."""
    raw = dict(raw)
    given = raw.get("type")
    if given is not None and not (isinstance(given, str) and given in ATTRIBUTE_TYPES):
        # Not the target's type, so refused (clause 5.6.4), as every other write refuses it (clause 5.5.4).
        raise InvalidAttribute(f"attribute {attr!r} has unknown type {given!r}")
    if given is not None and given != target_type and not (
        {given, target_type} == {"Property", GEO_PROPERTY}
    ):
        raise BadRequestData(f"attribute {attr} is a {target_type}; its type cannot change to {given}")
    raw["type"] = target_type
    member = VALUE_MEMBER[target_type]
    if member not in raw and target_type != "Property" and "value" in raw:
        raw[member] = raw.pop("value")  # a simplified value for a non-Property keeps the attribute's type
    missing = member not in raw
    if missing:
        raw[member] = _PLACEHOLDER[target_type]
    inst = normalize_attribute(attr, raw, allow_null=True)
    if isinstance(inst, list):
        raise BadRequestData("a partial attribute update takes one instance")
    expanded = expand_instance(inst, ctx)
    if missing:
        expanded.pop(member, None)
    return expanded
