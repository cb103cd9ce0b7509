"""Batch entity operations (clauses 5.6.7-5.6.10, 5.6.20) with the duplicate rules of clause 5.5.11.

Each entity of a batch succeeds or fails on its own: a malformed entity
becomes a BatchEntityError (clause 5.2.17) beside the others' successes.
Several entries with the same id are applied in array order, as if they had
arrived in separate requests. Replace-mode upsert writes whole documents in
one `upsert_replace` call with no read; every other mode, and a replace-mode
upsert that repeats an id, goes through one `Store.modify` over the distinct
ids, so the batch is one transaction.

A repeated id is applied one instance at a time, and the documents after
the earlier instances go to the store as `Change.steps`: the store logs one
change per instance, so temporal history keeps every instance in order
(5.5.11.2, 5.5.11.5) and each one is notified (5.5.11.3). All instances
share the batch's modifiedAt (5.5.11.0): history tells them apart by
observedAt, and instances of one attribute with neither observedAt nor a
different time share one history key, where the last one is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.service.entities import to_enf
from broker.service.patch import apply_fragment, stamp_new, stamp_new_owned, utc_now
from broker.store.base import Change, Doc, Store, StoredEntity
from models.errors import AlreadyExists, BadRequestData, NgsiLdError, ResourceNotFound
from models.normalize import TermMapper
from models.validation import is_uri


@dataclass(slots=True)
class BatchResult:
    """Ids that succeeded, the ids newly created, and (id, error) pairs (clause 5.2.16)."""

    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str, NgsiLdError]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The BatchOperationResult body."""
        return {
            "success": self.success,
            "errors": [{"entityId": i, "error": e.to_problem()} for i, e in self.errors],
        }


Contexts = TermMapper | Sequence[TermMapper | NgsiLdError]
"""One @context for every entity of a batch, or one per entity (an error refuses that entity alone)."""


def check_batch(body: Any) -> list[Any]:
    """The entities of a batch body; BadRequestData for a non-array, an empty array or a null item (5.6.7.4)."""
    if not isinstance(body, list):
        raise BadRequestData("a batch operation takes a JSON array")
    if not body:
        raise BadRequestData("the batch is empty")
    if any(item is None for item in body):
        raise BadRequestData("the batch contains a null item")
    return body


def _entity_id(item: Any) -> str:
    entity_id = item.get("id") if isinstance(item, dict) else None
    return entity_id if isinstance(entity_id, str) else ""


def _prepare(body: Any, ctx: Contexts, result: BatchResult, **kwargs: Any) -> list[Doc]:
    docs = []
    items = check_batch(body)
    # the @context of each entity, told once per batch (an ABC isinstance per entity is not free)
    contexts: Sequence[TermMapper | NgsiLdError] = ctx if isinstance(ctx, Sequence) else [ctx] * len(items)
    for item, own in zip(items, contexts, strict=True):
        try:
            if isinstance(own, NgsiLdError):
                raise own
            docs.append(to_enf(item, own, **kwargs))
        except NgsiLdError as error:
            result.errors.append((_entity_id(item), error))
    return docs


def _on_existing(**apply: Any) -> Any:
    """The group function of batch update and merge: apply each fragment to an existing entity, else 404."""

    def fn(current: StoredEntity | None, group: list[Doc], now: str) -> tuple[Doc | None, list[Any]]:
        if current is None:
            return None, [ResourceNotFound(f"entity {g['id']} not found", instance=g["id"]) for g in group]
        doc = dict(current.doc)
        outcomes: list[Any] = []
        for frag in group:
            done = apply_fragment(doc, frag, now, **apply)
            kept = [name for name, _, _ in done.not_updated if name != "scope"]
            # clause 5.6.9.4: each entity is an Append Attributes; attributes noOverwrite left alone make it
            # an entity in error (the others were appended)
            outcomes.append(AlreadyExists(f"entity {frag['id']}: attributes {', '.join(kept)} exist and "
                                          "noOverwrite leaves them untouched", instance=frag["id"]) if kept else None)
        return doc, outcomes

    return fn


def _instances(fn: Any, current: StoredEntity | None, group: list[Doc], now: str) -> Change:
    """The change of a repeated id: `fn` applied to one instance at a time, in array order (5.5.11.0).

    Each instance meets the outcome of the previous ones, as if sent in a request of its own
    (an instance in error leaves the entity as it was). The document after each instance that
    changed it is kept, a copy (fn changes its document in place): all but the last become
    `Change.steps`, one change record each.
    """
    outcomes: list[Any] = []
    docs: list[Doc] = []
    last = None if current is None else orjson.loads(orjson.dumps(current.doc))
    state = current
    for frag in group:
        try:
            doc, outs = fn(state, [frag], now)
        except NgsiLdError as error:
            outcomes.append(error)
            continue
        outcomes.extend(outs)
        if doc is None or doc == last:
            continue  # nothing written by this instance
        last = orjson.loads(orjson.dumps(doc))
        docs.append(last)
        state = StoredEntity(doc, state.created_at if state is not None else now, now)
    if not docs:
        return Change(None, outcomes, changed=False)
    return Change(docs[-1], outcomes, steps=docs[:-1] or None)


class BatchService:
    """The /entityOperations operations over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, tenant: str, body: Any, ctx: Contexts) -> BatchResult:
        """Batch Create (5.6.7): the first entry of an id creates it, later ones are AlreadyExists."""
        result = BatchResult()
        now = utc_now()
        docs = [stamp_new_owned(d, now) for d in _prepare(body, ctx, result)]
        conflicts = Counter(await self.store.insert(tenant, docs, now)) if docs else Counter()
        occurrences = Counter(d["id"] for d in docs)
        seen: set[str] = set()
        for doc in docs:
            entity_id = doc["id"]
            first = entity_id not in seen
            seen.add(entity_id)
            if first and conflicts[entity_id] < occurrences[entity_id]:
                result.success.append(entity_id)
                result.created.append(entity_id)
            else:
                result.errors.append((entity_id, AlreadyExists(f"entity {entity_id} already exists", instance=entity_id)))
        return result

    async def upsert(self, tenant: str, body: Any, ctx: Contexts, *, update: bool = False) -> BatchResult:
        """Batch Upsert (5.6.8): create or replace (default), or create or update (options=update)."""
        result = BatchResult()
        docs = _prepare(body, ctx, result)
        if not docs:
            return result
        if not update:
            ids = list(dict.fromkeys(d["id"] for d in docs))
            if len(ids) == len(docs):  # no repeated id (most batches): whole documents, no read
                now = utc_now()
                result.created = await self.store.upsert_replace(tenant, [stamp_new_owned(d, now) for d in docs], now)
                result.success = ids
                return result

            def replace(current: StoredEntity | None, group: list[Doc], now: str) -> tuple[Doc | None, list[Any]]:
                doc = stamp_new_owned(group[-1], now)
                return doc, ["created" if current is None else None] * len(group)

            await self._modify_groups(tenant, docs, replace, result)
            return result

        def fn(current: StoredEntity | None, group: list[Doc], now: str) -> tuple[Doc | None, list[Any]]:
            outcomes: list[Any] = []
            doc = None if current is None else dict(current.doc)
            for frag in group:
                if doc is None:
                    doc = stamp_new(frag, now)
                    outcomes.append("created")
                else:
                    apply_fragment(doc, frag, now, overwrite=True, scope_only_if_present=True)
                    outcomes.append(None)
            return doc, outcomes

        await self._modify_groups(tenant, docs, fn, result)
        return result

    async def update(self, tenant: str, body: Any, ctx: Contexts, *, overwrite: bool = True) -> BatchResult:
        """Batch Update (5.6.9): Append Attributes on each existing entity; noOverwrite keeps existing ones."""
        result = BatchResult()
        docs = _prepare(body, ctx, result, allow_null=True)
        await self._modify_groups(tenant, docs, _on_existing(overwrite=overwrite), result)
        return result

    async def merge(self, tenant: str, body: Any, ctx: Contexts) -> BatchResult:
        """Batch Merge (5.6.20): Merge Entity on each existing entity, in array order."""
        result = BatchResult()
        docs = _prepare(body, ctx, result, allow_null=True)
        await self._modify_groups(tenant, docs, _on_existing(merge=True), result)
        return result

    async def delete(self, tenant: str, body: Any) -> BatchResult:
        """Batch Delete (5.6.10): the first entry of an id deletes it, later ones are ResourceNotFound."""
        result = BatchResult()
        ids: list[str] = []
        for item in check_batch(body):
            if is_uri(item):
                ids.append(item)
            else:
                result.errors.append((str(item), BadRequestData(f"entity id must be a URI, got {item!r}")))
        deleted = set(await self.store.delete(tenant, list(dict.fromkeys(ids)))) if ids else set()
        for entity_id in ids:
            if entity_id in deleted:
                result.success.append(entity_id)
                deleted.discard(entity_id)
            else:
                result.errors.append((entity_id, ResourceNotFound(f"entity {entity_id} not found", instance=entity_id)))
        return result

    async def _modify_groups(self, tenant: str, docs: list[Doc], fn: Any, result: BatchResult) -> None:
        groups: dict[str, list[Doc]] = {}
        for doc in docs:
            groups.setdefault(doc["id"], []).append(doc)
        if not groups:
            return

        def change(entity_id: str, current: StoredEntity | None) -> Change:
            now = utc_now()
            group = groups[entity_id]
            if len(group) > 1:
                return _instances(fn, current, group, now)
            try:
                doc, outcomes = fn(current, group, now)
            except NgsiLdError as error:
                return Change(None, [error], changed=False)
            return Change(doc, outcomes, changed=doc is not None)

        outcomes = await self.store.modify(tenant, list(groups), change, utc_now())
        for entity_id, per_doc in outcomes.items():
            for outcome in per_doc:
                if isinstance(outcome, NgsiLdError):
                    result.errors.append((entity_id, outcome))
                    continue
                if entity_id not in result.success:
                    result.success.append(entity_id)
                if outcome == "created":
                    result.created.append(entity_id)
