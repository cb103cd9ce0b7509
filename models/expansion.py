"""Expansion of normalized entities to ENF and compaction back (clause 5.5.7).

Names a client writes (entity types, attribute and sub-attribute names,
objectType values, VocabProperty vocab values) are terms of its @context;
inside the platform they are IRIs, so two clients with different contexts
reading the same entity each see their own terms. Core members ("type",
"value", "observedAt", ...) are protected core-context terms and stay short.

The context object only needs `expand_term(term) -> iri` and
`compact_iri(iri) -> term` (models.context.Context provides both, memoised).
"""

from __future__ import annotations

from typing import Any

from models.normalize import TermMapper, instances_of
from models.vocabulary import ATTRIBUTE_CORE, ENTITY_CORE

_SYSTEM_ENTITY = ("createdAt", "modifiedAt", "deletedAt")


def expand_entity(entity: dict[str, Any], ctx: TermMapper) -> dict[str, Any]:
    """A normalized entity (terms) -> ENF (IRIs, every attribute a list of instances)."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if name == "@context":
            continue
        if name == "id":
            out["id"] = value
        elif name == "type":
            out["type"] = [ctx.expand_term(t) for t in (value if isinstance(value, list) else [value])]
        elif name in ENTITY_CORE:
            out[name] = value if name != "scope" or isinstance(value, list) else [value]
        else:
            out[ctx.expand_term(name)] = [expand_instance(i, ctx) for i in instances_of(value)]
    return out


def expand_attribute(value: Any, ctx: TermMapper) -> list[dict[str, Any]]:
    """A normalized attribute (single or multi) -> its list of expanded instances."""
    return [expand_instance(i, ctx) for i in instances_of(value)]


def expand_instance(inst: dict[str, Any], ctx: TermMapper) -> dict[str, Any]:
    """One normalized attribute instance -> its ENF instance."""
    out: dict[str, Any] = {}
    for key, value in inst.items():
        if key in ATTRIBUTE_CORE:
            if key == "vocab" or key == "previousVocab" or key == "objectType":
                out[key] = _map_strings(value, ctx.expand_term)
            else:
                out[key] = value
        elif isinstance(value, list):
            out[ctx.expand_term(key)] = [expand_instance(i, ctx) for i in value]
        else:
            out[ctx.expand_term(key)] = expand_instance(value, ctx)
    return out


def compact_entity(enf: dict[str, Any], ctx: TermMapper, *, sys_attrs: bool = False) -> dict[str, Any]:
    """ENF -> normalized entity in the terms of `ctx`.

    System members (createdAt, modifiedAt, deletedAt) are kept only with
    `sys_attrs`, as clause 4.8 asks for the sysAttrs option.
    """
    out: dict[str, Any] = {}
    for name, value in enf.items():
        if name == "id":
            out["id"] = value
        elif name == "type":
            types = [ctx.compact_iri(t) for t in value]
            out["type"] = types[0] if len(types) == 1 else types
        elif name in _SYSTEM_ENTITY:
            if sys_attrs:
                out[name] = value
        elif name == "scope":
            # like "type", one scope is written as a string, several as an array (clauses 4.18, 5.2.4)
            out["scope"] = value[0] if isinstance(value, list) and len(value) == 1 else value
        elif name in ENTITY_CORE:
            out[name] = value
        else:
            instances = [compact_instance(i, ctx, sys_attrs=sys_attrs) for i in value]
            out[ctx.compact_iri(name)] = instances[0] if len(instances) == 1 else instances
    return out


def compact_instance(inst: dict[str, Any], ctx: TermMapper, *, sys_attrs: bool = False) -> dict[str, Any]:
    """One ENF attribute instance -> normalized instance in the terms of `ctx`."""
    out: dict[str, Any] = {}
    for key, value in inst.items():
        if key in ATTRIBUTE_CORE:
            if key in ("createdAt", "modifiedAt", "deletedAt", "instanceId") and not sys_attrs:
                continue
            if key in ("vocab", "previousVocab", "objectType"):
                out[key] = _map_strings(value, ctx.compact_iri)
            else:
                out[key] = value
        elif isinstance(value, list):
            out[ctx.compact_iri(key)] = [compact_instance(i, ctx, sys_attrs=sys_attrs) for i in value]
        else:
            out[ctx.compact_iri(key)] = compact_instance(value, ctx, sys_attrs=sys_attrs)
    return out


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return [fn(v) if isinstance(v, str) else v for v in value]
    return fn(value) if isinstance(value, str) else value
