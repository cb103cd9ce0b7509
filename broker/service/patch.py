"""Pure ENF algorithms of the update operations: stamping, update/append, merge patch, partial patch.

Every function works on one entity document in expanded normalized form
(models.vocabulary) and mutates it in place; the services run them inside
`Store.modify`, so a read-modify-write cycle is atomic. Names:

- `apply_fragment` is clause 5.6.2 (update, `overwrite=True`), 5.6.3
  (append, `overwrite` per noOverwrite) and, with `merge=True`, 5.6.17
  (merge patch of clause 5.5.12);
- `patch_instance` is the partial update patch of one instance (5.5.8, 5.6.4);
- NGSI-LD Null (`urn:ngsi-ld:null`) as an instance's value deletes that
  instance (addressed by its datasetId); as a member's value it deletes the member.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from models.vocabulary import (
    ATTRIBUTE_CORE,
    ENTITY_CORE,
    GEO_PROPERTY,
    LANGUAGE_PROPERTY,
    LIST_RELATIONSHIP,
    NGSI_LD_NULL,
    PROPERTY,
    RELATIONSHIP,
    VALUE_MEMBER,
    Doc,
)

_second: tuple[int, str] = (-1, "")
"""The last whole second formatted (`2026-11-26T07:00:00`): every write of that second reuses it."""


def utc_now() -> str:
    """The current time as the RFC 3339 UTC string every system attribute carries (ms precision).

    The same text as `models.times.utc_iso()` (datetime.isoformat, milliseconds truncated, `Z`), built
    from the clock's integer nanoseconds with the second's prefix formatted once: a one-attribute
    PATCH takes the time twice (the instance's and the entity's modifiedAt), and datetime.now() with
    isoformat() and a replace cost about 3-7 µs each (issue 16, patch17). The cache is one tuple,
    replaced whole, so threads (the SQLite writer, the event loop) never see half of it.
    """
    return stamp_ms(time.time_ns() // 1_000_000)


def stamp_ms(ms: int) -> str:
    """POSIX milliseconds `ms` (from 1970 on) as `utc_now` writes them."""
    global _second
    sec = ms // 1000
    cached = _second
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        _second = cached
    return f"{cached[1]}.{ms - sec * 1000:03d}Z"


@dataclass(slots=True)
class UpdateResult:
    """What an attribute update did (clause 5.2.18), by attribute IRI."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(attribute IRI, reason, datasetId)"""


_NULL_LANGUAGE_MAP = {"@none": NGSI_LD_NULL}


def is_null(value: Any) -> bool:
    """Whether a member value is NGSI-LD Null (clause 4.5.0), {"@none": null} for a languageMap included."""
    return value == NGSI_LD_NULL or value is None or value == [NGSI_LD_NULL] or value == _NULL_LANGUAGE_MAP


def is_null_instance(inst: Doc) -> bool:
    """Whether an attribute instance stands for NGSI-LD Null (delete me)."""
    member = VALUE_MEMBER.get(inst.get("type", PROPERTY), "value")
    return member in inst and is_null(inst[member])


def find_instance(instances: list[Doc], dataset_id: str | None) -> int:
    """The index of the instance with this datasetId (None: the default instance), or -1."""
    for i, inst in enumerate(instances):
        if inst.get("datasetId") == dataset_id:
            return i
    return -1


def stamp_new(doc: Doc, now: str) -> Doc:
    """A new entity's document: entity timestamps dropped (they live in store columns), every
    attribute instance stamped createdAt = modifiedAt = now (clause 4.8)."""
    out: Doc = {}
    for name, value in doc.items():
        if name in ENTITY_CORE:
            if name in ("id", "type", "scope"):
                out[name] = value
            continue
        out[name] = [{**inst, "createdAt": now, "modifiedAt": now} for inst in value]
    return out


def stamp_new_owned(doc: Doc, now: str) -> Doc:
    """`stamp_new` for a document the caller owns and never reads again: stamps in place.

    The batch upsert path builds its documents itself (normalize_entity
    returns fresh dicts), so copying every instance again only cost time.
    """
    for name in ("createdAt", "modifiedAt", "deletedAt", "@context"):
        doc.pop(name, None)
    for name, value in doc.items():
        if name not in ENTITY_CORE:
            for inst in value:
                inst["createdAt"] = now
                inst["modifiedAt"] = now
    return doc


def _types_added(doc: Doc, types: list[str]) -> bool:
    current = doc.setdefault("type", [])
    added = False
    for t in types:
        if t not in current:
            current.append(t)
            added = True
    return added


def _scope(doc: Doc, scopes: list[str], overwrite: bool, only_if_present: bool) -> bool:
    """Apply a fragment's scope; False when Update Attributes finds no scope to replace (clause 5.6.2.4)."""
    if only_if_present:
        if "scope" not in doc:
            return False
        doc["scope"] = list(scopes)
        return True
    if overwrite or "scope" not in doc:
        doc["scope"] = list(scopes)
    else:
        doc["scope"] = doc["scope"] + [s for s in scopes if s not in doc["scope"]]
    return True


def apply_fragment(
    doc: Doc,
    fragment: Doc,
    now: str,
    *,
    overwrite: bool = True,
    merge: bool = False,
    scope_only_if_present: bool = False,
    keep_type: bool = False,
    lang: str | None = None,
    observed_at: str | None = None,
) -> UpdateResult:
    """Apply an ENF entity fragment to `doc` in place; what was (not) updated, by attribute IRI."""
    result = UpdateResult()
    for name, value in fragment.items():
        if name == "type":
            _types_added(doc, value)
            continue
        if name == "scope":
            if not is_null(value):
                if not _scope(doc, value, overwrite, scope_only_if_present):
                    result.not_updated.append(("scope", "the entity has no scope to replace", None))
            elif "scope" in doc:
                del doc["scope"]
            continue
        if name in ENTITY_CORE:
            continue
        instances: list[Doc] = list(doc.get(name, ()))
        for inst in value:
            dataset_id = inst.get("datasetId")
            i = find_instance(instances, dataset_id)
            if is_null_instance(inst):
                if i >= 0 and overwrite:
                    del instances[i]
                    result.updated.append(name)
                elif not merge:
                    result.not_updated.append((name, "no such attribute instance to delete", dataset_id))
                continue
            if i < 0:
                instances.append({**_strip_nulls(inst), "createdAt": now, "modifiedAt": now})
                result.updated.append(name)
                continue
            if not overwrite:
                result.not_updated.append((name, "the attribute exists and overwriting is not allowed", dataset_id))
                continue
            old = instances[i]
            if merge:
                new = merge_instance(old, _retyped(old, inst, keep_type, lang))
                if observed_at is not None and "observedAt" in old and "observedAt" not in inst:
                    new["observedAt"] = observed_at
            else:
                new = _strip_nulls(inst)
            new["createdAt"] = old.get("createdAt", now)
            new["modifiedAt"] = now
            instances[i] = new
            result.updated.append(name)
        if instances:
            doc[name] = instances
        else:
            doc.pop(name, None)
    return result


def _strip_nulls(inst: Doc) -> Doc:
    """An instance without NGSI-LD Null members or sub-attributes (nothing to delete in a new one)."""
    out = {}
    for k, v in inst.items():
        if k in ATTRIBUTE_CORE:
            if k in ("createdAt", "modifiedAt") or (k not in VALUE_MEMBER.values() and is_null(v)):
                continue
            out[k] = v
        elif isinstance(v, dict):
            if not is_null_instance(v):
                out[k] = _strip_nulls(v)
        else:
            out[k] = v
    return out


def _retyped(old: Doc, inst: Doc, keep_type: bool, lang: str | None) -> Doc:
    """Clause 5.6.17.4: a simplified value merged into an existing attribute keeps the attribute's type;
    a string merged into a LanguageProperty with a common `lang` replaces that language only."""
    old_type, new_type = old.get("type"), inst.get("type")
    if old_type == new_type or new_type not in (PROPERTY, GEO_PROPERTY):
        return inst
    value = inst.get("value")
    if old_type == LANGUAGE_PROPERTY and lang and isinstance(value, str):
        return {**{k: v for k, v in inst.items() if k != "value"}, "type": old_type, "languageMap": {lang: value}}
    if not keep_type:
        return inst
    out = {k: v for k, v in inst.items() if k != "value"}
    out["type"] = old_type
    if old_type == LIST_RELATIONSHIP:
        out["objectList"] = [{"object": o} for o in (value if isinstance(value, list) else [value])]
    elif old_type == RELATIONSHIP or old_type in VALUE_MEMBER:
        out[VALUE_MEMBER[old_type]] = value
    return out


def json_merge(target: Any, patch: Any) -> Any:
    """RFC 7396 merge patch with NGSI-LD Null (and JSON null) as the removal marker (clause 5.5.12)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if is_null(v):
            out.pop(k, None)
        else:
            out[k] = json_merge(out.get(k), v)
    return out


def merge_instance(old: Doc, frag: Doc) -> Doc:
    """Clause 5.5.12 on one attribute instance: members merged to any depth, nulls remove."""
    out = dict(old)
    for k, v in frag.items():
        if k in ("createdAt", "modifiedAt", "datasetId"):
            continue
        if k in ATTRIBUTE_CORE:
            if k == "type":
                out[k] = v
            elif is_null(v):
                out.pop(k, None)
            elif k in ("value", "languageMap", "json") and isinstance(v, dict) and isinstance(old.get(k), dict) \
                    and not (k == "value" and frag.get("type") == GEO_PROPERTY):
                out[k] = json_merge(old[k], v)
            else:
                out[k] = v
        elif isinstance(v, dict):
            if is_null_instance(v):
                out.pop(k, None)
            elif isinstance(old.get(k), dict):
                out[k] = merge_instance(old[k], v)
            else:
                out[k] = _strip_nulls(v)
        else:
            out[k] = v
    if frag.get("type") not in (None, old.get("type")):
        # a type change brings its own value member; drop the old one
        member = VALUE_MEMBER.get(old.get("type", ""))
        if member and member != VALUE_MEMBER.get(frag["type"]) and member not in frag:
            out.pop(member, None)
    return out


def patch_instance(old: Doc, frag: Doc, now: str) -> Doc:
    """Partial update patch of one instance (clauses 5.5.8, 5.6.4): members replaced, nulls removed."""
    out = dict(old)
    for k, v in frag.items():
        if k in ("createdAt", "modifiedAt", "datasetId"):
            continue
        if (k in ATTRIBUTE_CORE and k != "type" and is_null(v)) or (isinstance(v, dict) and is_null_instance(v)):
            out.pop(k, None)
        else:
            out[k] = v
    out["createdAt"] = old.get("createdAt", now)
    out["modifiedAt"] = now
    return out
