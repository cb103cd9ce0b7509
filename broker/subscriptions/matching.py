"""Does a change-log record trigger a subscription? (clauses 5.2.12, 5.8.1.4, 5.8.6)

A subscription is compiled once per load with its own @context: the
entity selectors, q, scopeQ and geoQ become an EntityFilter through the
same QuerySpec that GET /entities uses (so both always agree), evaluated
here in Python on one ENF document, or by the store for periodic
(timeInterval) notifications.

Triggers: without `notificationTrigger`, attributeCreated + attributeUpdated;
entityUpdated stands for the three attribute triggers. Instances are
compared by datasetId: an instance that appears, goes or whose members
differ (system members aside) is an attribute created, deleted or updated,
so that deleting one datasetId of an attribute is an attributeDeleted.
Deleting an entity deletes its attributes: without entityDeleted, it is
their attributeDeleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from broker.query.regex import compile_pattern
from broker.service.queries import QuerySpec, Selector
from broker.store.base import ChangeRecord, Doc, EntityFilter
from broker.subscriptions.model import DEFAULT_TRIGGERS
from broker.subscriptions.storage import StoredSubscription
from models.context import Context
from models.times import parse_utc
from models.vocabulary import ENTITY_CORE

CREATED, UPDATED, DELETED = "attributeCreated", "attributeUpdated", "attributeDeleted"
_SYSTEM = ("createdAt", "modifiedAt", "instanceId")


@dataclass(slots=True)
class Trigger:
    """Why a record notifies: the reason and the changed attributes (IRI -> kinds of change)."""

    reason: str  # entityCreated, entityUpdated, entityDeleted
    changed: dict[str, frozenset[str]] = field(default_factory=dict)


def _stripped(inst: Any) -> Any:
    return {k: v for k, v in inst.items() if k not in _SYSTEM} if isinstance(inst, dict) else inst


def _by_dataset(instances: Any) -> dict[Any, Any]:
    if not isinstance(instances, list):
        instances = [instances]
    return {i.get("datasetId") if isinstance(i, dict) else None: _stripped(i) for i in instances}


def attribute_changes(before: Doc | None, after: Doc | None) -> dict[str, frozenset[str]]:
    """Every attribute that differs between two ENF documents, with the kinds of change of its instances.

    Instances are told apart by datasetId (clause 4.5.5): one that appears is
    attributeCreated, one that goes is attributeDeleted, one whose members
    differ (system members aside) is attributeUpdated.
    """
    b = before or {}
    a = after or {}
    out: dict[str, frozenset[str]] = {}
    for name in a.keys() | b.keys():
        if name in ENTITY_CORE:
            continue
        if name not in b:
            out[name] = frozenset({CREATED})
        elif name not in a:
            out[name] = frozenset({DELETED})
        elif a[name] != b[name]:
            old, new = _by_dataset(b[name]), _by_dataset(a[name])
            kinds = set()
            if new.keys() - old.keys():
                kinds.add(CREATED)
            if old.keys() - new.keys():
                kinds.add(DELETED)
            if any(old[ds] != inst for ds, inst in new.items() if ds in old):
                kinds.add(UPDATED)
            if kinds:
                out[name] = frozenset(kinds)
    return out


def _attributes(doc: Doc) -> set[str]:
    return {k for k in doc if k not in ENTITY_CORE}


def query_spec(doc: Doc) -> QuerySpec:
    """The QuerySpec of a subscription's entities, q, scopeQ and geoQ (terms, not yet expanded)."""
    selectors = []
    for sel in doc.get("entities") or ():
        ids = sel.get("id")
        if isinstance(ids, str):
            ids = [ids]
        # clause 5.2.33: id takes precedence over idPattern
        selectors.append(Selector(ids or None, None if ids else sel.get("idPattern"), sel.get("type")))
    geo = None
    if isinstance(doc.get("geoQ"), dict):
        g = doc["geoQ"]
        geo = (g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
    return QuerySpec(selectors, None, doc.get("q"), doc.get("scopeQ"), geo)


def evaluate(flt: EntityFilter, doc: Doc) -> bool:
    """Whether one ENF document passes an EntityFilter (what the store does in SQL, in Python)."""
    if flt.ids is not None and doc.get("id") not in flt.ids:
        return False
    if flt.id_pattern is not None and compile_pattern(flt.id_pattern).search(doc.get("id", "")) is None:
        return False
    if flt.type_dnf is not None:
        types = set(doc.get("type") or ())
        if not any(conj <= types for conj in flt.type_dnf):
            return False
    if flt.attrs_any is not None and not (flt.attrs_any & doc.keys()):
        return False
    return flt.predicate is None or bool(flt.predicate(doc))


@dataclass(slots=True)
class Compiled:
    """A subscription ready to be matched against change records."""

    stored: StoredSubscription
    ctx: Context
    filter: EntityFilter
    watched: frozenset[str] | None
    triggers: frozenset[str]
    expires: datetime | None
    active: bool

    @property
    def doc(self) -> Doc:
        return self.stored.doc

    def is_active(self, now: datetime) -> bool:
        """Notifications only while the status is active (clause 5.8.6)."""
        return self.active and (self.expires is None or self.expires > now)

    def match(self, record: ChangeRecord) -> Trigger | None:
        """The trigger of this record for this subscription, or None."""
        if record.tenant != self.stored.tenant or record.seq <= self.stored.created_seq:
            return None
        if "timeInterval" in self.doc:
            return None
        before, after = record.before, record.after
        watched = self.watched
        if after is None:
            if before is None:
                return None
            if "entityDeleted" in self.triggers:
                if watched is not None and not (watched & _attributes(before)):
                    return None
                return Trigger("entityDeleted") if evaluate(self.filter, before) else None
            # without entityDeleted, the deletion of an entity is the deletion of its attributes
            gone = {a: frozenset({DELETED}) for a in _attributes(before) if watched is None or a in watched}
            if DELETED not in self.triggers or not gone:
                return None
            return Trigger("entityDeleted", gone) if evaluate(self.filter, before) else None
        if before is None:
            attrs = _attributes(after)
            created = {a: frozenset({CREATED}) for a in attrs if watched is None or a in watched}
            if "entityCreated" in self.triggers:
                if watched is not None and not created:
                    return None
            elif CREATED not in self.triggers or not created:
                return None
            return Trigger("entityCreated", created) if evaluate(self.filter, after) else None
        changed = {a: kinds for a, kinds in attribute_changes(before, after).items()
                   if kinds & self.triggers and (watched is None or a in watched)}
        if not changed:
            return None
        return Trigger("entityUpdated", changed) if evaluate(self.filter, after) else None


def compile_subscription(stored: StoredSubscription, ctx: Context) -> Compiled:
    """Compile a stored subscription with its resolved @context."""
    doc = stored.doc
    expand: Callable[[str], str] = ctx.expand_term
    triggers = set(doc.get("notificationTrigger") or DEFAULT_TRIGGERS)
    if "entityUpdated" in triggers:
        triggers |= {CREATED, UPDATED, DELETED}
    watched = frozenset(expand(a) for a in doc["watchedAttributes"]) if doc.get("watchedAttributes") else None
    expires = parse_utc(doc["expiresAt"], "expiresAt") if doc.get("expiresAt") else None
    return Compiled(stored, ctx, query_spec(doc).to_filter(ctx), watched, frozenset(triggers), expires,
                    bool(doc.get("isActive", True)))
