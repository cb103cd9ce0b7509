"""The Notification (clause 5.3.1) of one trigger, rendered as clause 5.8.6 asks.

The entity is taken from the change record (`after`, or `before` for a
deletion), so it is exactly the state that triggered the notification,
even when it is delivered much later. It is rendered with the same `View`
as GET /entities (attributes -> attrs, pick, omit, sysAttrs, lang,
format), in the subscription's jsonldContext, after three additions on
ENF: deleted attributes as NGSI-LD Null, previous values (showChanges),
and the datasetId selection. What is queued is an envelope: the media
type, the Link header value, and the notification itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from broker.http import GEO_JSON, JSON, JSON_LD, link_header
from broker.query.projection import parse_projection
from broker.service.queries import View
from broker.store.base import ChangeRecord, Doc, StoredEntity
from broker.subscriptions.matching import DELETED, UPDATED, Trigger
from models.context import CORE_CONTEXT_URL, Context
from models.representation import Representation
from models.vocabulary import ENTITY_CORE, LANGUAGE_PROPERTY, NGSI_LD_NULL, PREVIOUS_MEMBER, VALUE_MEMBER


def view_of(doc: Doc, ctx: Context) -> View:
    """The rendering View of a subscription's notification member (terms expanded with its context)."""
    note = doc.get("notification") or {}
    fmt = note.get("format", "normalized")
    representation = Representation.SIMPLIFIED if fmt in ("keyValues", "simplified") else Representation(fmt)
    attrs = frozenset(ctx.expand_term(a) for a in note["attributes"]) if note.get("attributes") else None

    def projection(member: str) -> Any:
        value = note.get(member)
        if value is None:
            return None
        return parse_projection(",".join(value) if isinstance(value, list) else value)

    join = note.get("join")
    return View(representation, bool(note.get("sysAttrs")), doc.get("lang"), attrs, projection("pick"), projection("omit"),
                join=None if join in (None, "@none") else join, join_level=int(note.get("joinLevel") or 1))


def _null_instance(inst: dict[str, Any], at: str, *, sys_attrs: bool, show_changes: bool) -> dict[str, Any]:
    kind = inst.get("type", "Property")
    member = VALUE_MEMBER.get(kind, "value")
    out: dict[str, Any] = {"type": kind, member: {"@none": NGSI_LD_NULL} if kind == LANGUAGE_PROPERTY else NGSI_LD_NULL}
    if "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    if sys_attrs:  # clause 5.8.6: the system sub-attributes of the deleted instance, and when it went
        out.update({k: inst[k] for k in ("createdAt", "modifiedAt") if k in inst})
        out["deletedAt"] = at
    if show_changes and member in inst:
        out[PREVIOUS_MEMBER[member]] = inst[member]
    return out


def _deleted_attribute(instances: Any, at: str, *, sys_attrs: bool, show_changes: bool) -> list[dict[str, Any]]:
    """A wholly deleted attribute: one NGSI-LD Null instance, with its datasetId if it had just that instance.

    Several instances deleted together (deleteAll, the entity deleted) are the
    deletion of the attribute itself, shown from its default instance.
    """
    insts = [i for i in (instances if isinstance(instances, list) else [instances]) if isinstance(i, dict)]
    if not insts:
        return []
    if len(insts) == 1:
        return [_null_instance(insts[0], at, sys_attrs=sys_attrs, show_changes=show_changes)]
    base = next((i for i in insts if "datasetId" not in i), insts[0])
    out = _null_instance(base, at, sys_attrs=sys_attrs, show_changes=show_changes)
    out.pop("datasetId", None)
    return [out]


def _with_previous(instances: list[Any], previous: list[Any]) -> list[Any]:
    by_ds = {p.get("datasetId"): p for p in previous if isinstance(p, dict)}
    out = []
    for inst in instances:
        old = by_ds.get(inst.get("datasetId")) if isinstance(inst, dict) else None
        if old is not None:
            member = VALUE_MEMBER.get(inst.get("type", ""), "value")
            if member in old and old.get("type") == inst.get("type"):
                inst = {**inst, PREVIOUS_MEMBER[member]: old[member]}
        out.append(inst)
    return out


def _select_datasets(doc: Doc, datasets: list[str]) -> Doc:
    wanted = set(datasets)
    out: Doc = {}
    for name, value in doc.items():
        if name in ENTITY_CORE or not isinstance(value, list):
            out[name] = value
            continue
        kept = [i for i in value if isinstance(i, dict) and i.get("datasetId", "@none") in wanted]
        if kept:
            out[name] = kept
    return out


def changed_entity(doc: Doc, record: ChangeRecord, trigger: Trigger) -> tuple[Doc, str, str]:
    """The ENF document to notify for a trigger, with its createdAt and modifiedAt.

    Deleted attributes and instances are NGSI-LD Null instances (clause
    5.8.6): an instance deleted from an attribute that remains is added to
    the attribute's instances with its datasetId; a whole attribute is one
    Null instance (`_deleted_attribute`).
    """
    note = doc.get("notification") or {}
    sys_attrs, show = bool(note.get("sysAttrs")), bool(note.get("showChanges"))
    before = record.before or {}
    if trigger.reason == "entityDeleted":
        out: Doc = {"id": before.get("id", record.entity_id), "type": before.get("type", [])}
        if trigger.changed:  # attributeDeleted of the deleted entity's attributes
            for name in trigger.changed:
                out[name] = _deleted_attribute(before.get(name, []), record.at, sys_attrs=sys_attrs, show_changes=show)
        elif show:
            for name, value in before.items():
                if name not in ENTITY_CORE and isinstance(value, list):
                    out[name] = [_null_instance(i, record.at, sys_attrs=sys_attrs, show_changes=True) for i in value]
        return out, before.get("createdAt", record.at), before.get("modifiedAt", record.at)
    after = record.after or {}
    out = dict(after)
    for name, kinds in trigger.changed.items():
        if name not in after:
            out[name] = _deleted_attribute(before.get(name, []), record.at, sys_attrs=sys_attrs, show_changes=show)
            continue
        if DELETED in kinds:
            kept = {i.get("datasetId") for i in after[name] if isinstance(i, dict)}
            out[name] = list(after[name]) + [
                _null_instance(i, record.at, sys_attrs=sys_attrs, show_changes=show)
                for i in before.get(name, []) if isinstance(i, dict) and i.get("datasetId") not in kept
            ]
        if UPDATED in kinds and show:
            out[name] = _with_previous(out[name], before.get(name, []))
    return out, after.get("createdAt", record.at), after.get("modifiedAt", record.at)


def render_entity(doc: Doc, view: View, ctx: Context, entity: Doc, created: str, modified: str,
                  *, linked: Mapping[str, StoredEntity] | None = None, deleted_at: str | None = None,
                  deleted_attrs: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One entity of a notification in the subscription's terms and format: a list of it alone, or with
    `notification.join` (clause 5.8.6, 4.5.23) its Linked Entities from `linked` inline in it or, flat,
    appended after it."""
    if doc.get("datasetId"):
        entity = _select_datasets(entity, doc["datasetId"])
    stored = StoredEntity(entity, created, modified)
    extra: list[dict[str, Any]] = []
    if view.join is not None and linked:
        joined = view.render_entity(stored, ctx, {**linked, entity["id"]: stored})
        rendered, extra = (joined[0], joined[1:]) if isinstance(joined, list) else (joined, [])
    else:
        rendered = view.render(stored, ctx)
    if view.representation is Representation.CONCISE:
        # clause 5.8.6: a deleted attribute is its name and the NGSI-LD Null, unless more must be said
        for iri in deleted_attrs:
            term = ctx.compact_iri(iri)
            value = rendered.get(term)
            if isinstance(value, dict) and len(value) <= 2 and NGSI_LD_NULL in (value.get("value"), value.get("object")):
                rendered[term] = NGSI_LD_NULL
    elif view.representation is Representation.SIMPLIFIED and view.sys_attrs:
        # the entity's own system members, which the simplified representation otherwise leaves out (5.8.6)
        rendered.update({"createdAt": created, "modifiedAt": modified})
    if deleted_at is not None:
        rendered["deletedAt"] = deleted_at
    return [rendered, *extra]


def _feature(entity: dict[str, Any]) -> dict[str, Any]:
    geo = entity.get("location")
    if isinstance(geo, list):
        geo = geo[0] if geo else None
    if isinstance(geo, dict) and "value" in geo and "coordinates" not in geo:
        geo = geo["value"]
    return {"id": entity.get("id"), "type": "Feature", "geometry": geo,
            "properties": {k: v for k, v in entity.items() if k != "id"}}


def envelope(doc: Doc, context_value: Any, entities: list[dict[str, Any]], notified_at: str) -> bytes:
    """The queued form of a notification: media type, Link, and the Notification of clause 5.3.1."""
    endpoint = (doc.get("notification") or {}).get("endpoint") or {}
    accept = endpoint.get("accept", JSON)
    context = context_value if context_value is not None else CORE_CONTEXT_URL
    prefer = next((kv["value"] for kv in endpoint.get("receiverInfo") or () if kv.get("key", "").lower() == "prefer"),
                  None)
    data: Any = entities
    link: str | None = None
    notification: dict[str, Any] = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
                                    "subscriptionId": doc["id"], "notifiedAt": notified_at}
    if accept == GEO_JSON:
        data = {"type": "FeatureCollection", "features": [_feature(e) for e in entities]}
        if prefer == "body=json":
            link = link_header(context_value)
        else:
            data["@context"] = context
    elif accept == JSON_LD:
        # at the top, as Orion-LD does (src/lib/orionld/notifications/notificationSend.cpp, notificationTree),
        # and in each entity, as GET /entities with ld+json gives each entity of a list its @context
        notification["@context"] = context
        data = [{**e, "@context": context} for e in entities]
    else:
        link = link_header(context_value)
    notification["data"] = data
    return orjson.dumps({"contentType": accept, "link": link, "notification": notification})
