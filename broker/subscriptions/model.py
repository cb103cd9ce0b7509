"""The Subscription data type (clauses 5.2.12-5.2.15, 5.2.33): validation, PATCH merge, status.

A subscription is kept as the client wrote it (its terms) beside the
@context value it was written with; the dispatcher expands its terms with
that context once per load, and GET compacts them again with the reader's
context. Read-only members (status, timesSent, ...) are never taken from a
client (clause 5.2.12: "implementations shall ignore them").
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from broker.query.geo import parse_geoquery
from broker.query.q import compile_q
from broker.query.regex import compile_pattern
from broker.query.scope import compile_scope_query
from broker.query.types import compile_type_selection
from models.errors import BadRequestData, InvalidRequest
from models.normalize import TermMapper
from models.times import now_utc, parse_utc
from models.validation import check_uri
from models.vocabulary import NGSI_LD_NULL

TRIGGERS = frozenset({"entityCreated", "entityUpdated", "entityDeleted",
                      "attributeCreated", "attributeUpdated", "attributeDeleted"})
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
FORMATS = frozenset({"normalized", "concise", "simplified", "keyValues"})
ACCEPTS = frozenset({"application/json", "application/ld+json", "application/geo+json"})
SCHEMES = frozenset({"http", "https", "mqtt", "mqtts"})
READ_ONLY = frozenset({"status", "createdAt", "modifiedAt", "@context"})
NOTIFICATION_READ_ONLY = frozenset({"timesSent", "timesFailed", "lastNotification", "lastSuccess",
                                    "lastFailure", "status"})
_NAME = re.compile(r"^[^\W\d][\w]*(:[\w]+)?$|^[a-z][a-z0-9+.-]*:\S+$", re.IGNORECASE)


def new_subscription_id() -> str:
    """A locally unique subscription id (clause 5.8.1.4)."""
    return f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"


def status_of(doc: dict[str, Any], now: datetime | None = None) -> str:
    """Clause 5.2.12 / 5.8.2.4: expired once expiresAt is past (whatever isActive), else paused or active."""
    expires = doc.get("expiresAt")
    if expires is not None and parse_utc(expires, "expiresAt") <= (now or now_utc()):
        return "expired"
    return "active" if doc.get("isActive", True) else "paused"


# ---------------------------------------------------------------------------- validation


def _names(value: Any, member: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequestData(f"{member} must be a non-empty array of attribute names")
    for v in value:
        if not isinstance(v, str) or not _NAME.match(v):
            raise BadRequestData(f"{member}: {v!r} is not a valid attribute name")
    return value


def _positive(value: Any, member: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadRequestData(f"{member} must be a number greater than 0")


def _boolean(value: Any, member: str) -> None:
    if not isinstance(value, bool):
        raise BadRequestData(f"{member} must be true or false")


def _string(value: Any, member: str) -> None:
    if not isinstance(value, str) or not value:
        raise BadRequestData(f"{member} must be a non-empty string")


def _key_values(value: Any, member: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise BadRequestData(f"{member} must be an array of {{key, value}} objects")
    for kv in value:
        if (not isinstance(kv, dict) or set(kv) != {"key", "value"} or not isinstance(kv["key"], str)
                or not isinstance(kv["value"], str) or not kv["key"]):
            raise BadRequestData(f"{member}: {kv!r} is not a {{key, value}} pair of strings")
    return value


def _entity_selector(sel: Any) -> None:
    if not isinstance(sel, dict):
        raise BadRequestData("entities must hold EntitySelector objects")
    unknown = set(sel) - {"id", "idPattern", "type"}
    if unknown:
        raise BadRequestData(f"unknown EntitySelector member(s) {sorted(unknown)}")
    if "type" not in sel:
        raise BadRequestData("an EntitySelector needs a type")
    _string(sel["type"], "entities[].type")
    try:
        compile_type_selection(sel["type"])
    except InvalidRequest as exc:
        raise BadRequestData(f"entities[].type: {exc.detail}") from None
    ids = sel.get("id")
    if ids is not None:
        for i in ids if isinstance(ids, list) else [ids]:
            if not isinstance(i, str):
                raise BadRequestData("entities[].id must be a URI or an array of URIs")
            check_uri(i, "entities[].id")
    if "idPattern" in sel:
        _string(sel["idPattern"], "entities[].idPattern")
        compile_pattern(sel["idPattern"], "idPattern")


def _endpoint(ep: Any) -> None:
    if not isinstance(ep, dict):
        raise BadRequestData("notification.endpoint must be an object")
    uri = ep.get("uri")
    if not isinstance(uri, str):
        raise BadRequestData("notification.endpoint.uri is mandatory")
    parts = urlsplit(uri)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise BadRequestData(f"notification.endpoint.uri {uri!r} must be an http(s):// or mqtt(s):// URI")
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise BadRequestData(f"notification.endpoint.uri {uri!r} has an invalid port") from None
    if parts.scheme.lower().startswith("mqtt") and parts.path.strip("/") == "":
        raise BadRequestData("an MQTT endpoint needs a topic: mqtt://host[:port]/topic (clause 7.2)")
    if "accept" in ep and ep["accept"] not in ACCEPTS:
        raise BadRequestData(f"notification.endpoint.accept must be one of {sorted(ACCEPTS)}")
    for member in ("timeout", "cooldown"):
        if member in ep:
            _positive(ep[member], f"notification.endpoint.{member}")
    if "receiverInfo" in ep:
        _key_values(ep["receiverInfo"], "notification.endpoint.receiverInfo")
    if "notifierInfo" in ep:
        for kv in _key_values(ep["notifierInfo"], "notification.endpoint.notifierInfo"):
            if kv["key"] == "MQTT-QoS" and kv["value"] not in ("0", "1", "2"):
                raise BadRequestData("MQTT-QoS must be 0, 1 or 2 (clause 7.2)")
            if kv["key"] == "MQTT-Version" and kv["value"] not in ("mqtt3.1.1", "mqtt5.0"):
                raise BadRequestData("MQTT-Version must be mqtt3.1.1 or mqtt5.0 (clause 7.2)")


def _notification(n: Any) -> None:
    if not isinstance(n, dict):
        raise BadRequestData("notification is mandatory and must be an object")
    if "endpoint" not in n:
        raise BadRequestData("notification.endpoint is mandatory")
    _endpoint(n["endpoint"])
    if "attributes" in n:
        names = _names(n["attributes"], "notification.attributes")
        if {"id", "type", "scope"} & set(names):
            raise BadRequestData("notification.attributes cannot name id, type or scope (use pick)")
    fmt = n.get("format", "normalized")
    if fmt not in FORMATS:
        raise BadRequestData(f"notification.format must be one of {sorted(FORMATS)}")
    for member in ("showChanges", "sysAttrs"):
        if member in n:
            _boolean(n[member], f"notification.{member}")
    if n.get("showChanges") and fmt in ("keyValues", "simplified"):
        raise BadRequestData("notification.showChanges cannot be true with format keyValues")
    for member in ("pick", "omit"):
        if member in n:
            value = n[member]
            if isinstance(value, list):
                if not value or not all(isinstance(v, str) for v in value):
                    raise BadRequestData(f"notification.{member} must be a non-empty array of strings")
                value = ",".join(value)
            from broker.query.projection import parse_projection

            _string(value, f"notification.{member}")
            try:
                parse_projection(value)
            except InvalidRequest as exc:
                raise BadRequestData(f"notification.{member}: {exc.detail}") from None
    if "pick" in n and "omit" in n:
        raise BadRequestData("notification.pick and notification.omit exclude each other")
    if "join" in n and n["join"] not in ("flat", "inline", "@none"):
        raise BadRequestData("notification.join must be flat, inline or @none")
    if "joinLevel" in n:
        _positive(n["joinLevel"], "notification.joinLevel")


def validate(doc: dict[str, Any], *, now: datetime | None = None, check_expiry: bool = True) -> None:
    """Check a whole Subscription against clause 5.2.12 (BadRequestData with the reason)."""
    if doc.get("type") != "Subscription":
        raise BadRequestData('a Subscription needs "type": "Subscription"')
    check_uri(doc["id"], "subscription id")
    entities = doc.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not entities:
            raise BadRequestData("entities must be a non-empty array of EntitySelectors")
        for sel in entities:
            _entity_selector(sel)
    if "watchedAttributes" in doc:
        _names(doc["watchedAttributes"], "watchedAttributes")
    if entities is None and "watchedAttributes" not in doc:
        raise BadRequestData("a Subscription needs entities or watchedAttributes (clause 5.2.12)")
    if "timeInterval" in doc:
        _positive(doc["timeInterval"], "timeInterval")
        if "watchedAttributes" in doc or "throttling" in doc:
            raise BadRequestData("timeInterval excludes watchedAttributes and throttling")
        if entities is None:
            raise BadRequestData("timeInterval needs entities")
    if "throttling" in doc:
        _positive(doc["throttling"], "throttling")
    if "notificationTrigger" in doc:
        triggers = doc["notificationTrigger"]
        if not isinstance(triggers, list) or not triggers or not set(triggers) <= TRIGGERS:
            raise BadRequestData(f"notificationTrigger must be a non-empty array of {sorted(TRIGGERS)}")
    if "q" in doc:
        _string(doc["q"], "q")
        try:
            compile_q(doc["q"])
        except InvalidRequest as exc:
            raise BadRequestData(f"q: {exc.detail}") from None
    if "scopeQ" in doc:
        _string(doc["scopeQ"], "scopeQ")
        try:
            compile_scope_query(doc["scopeQ"])
        except InvalidRequest as exc:
            raise BadRequestData(f"scopeQ: {exc.detail}") from None
    if "geoQ" in doc:
        geo_query(doc["geoQ"])
    _notification(doc.get("notification"))
    if "expiresAt" in doc:
        moment = parse_utc(doc["expiresAt"], "expiresAt")
        if check_expiry and moment <= (now or now_utc()):
            raise BadRequestData("expiresAt is in the past")
    for member in ("isActive", "localOnly", "splitEntities"):
        if member in doc:
            _boolean(doc[member], member)
    for member in ("lang", "description", "subscriptionName", "expandValues", "jsonKeys", "csf",
                   "ngsildConformance"):
        if member in doc:
            _string(doc[member], member)
    if "jsonldContext" in doc:
        _string(doc["jsonldContext"], "jsonldContext")
        check_uri(doc["jsonldContext"], "jsonldContext")
    if "datasetId" in doc:
        ds = doc["datasetId"]
        if not isinstance(ds, list) or not ds or not all(isinstance(d, str) for d in ds):
            raise BadRequestData("datasetId must be a non-empty array of URIs or @none")
        for d in ds:
            if d != "@none":
                check_uri(d, "datasetId")


def geo_query(geo: Any) -> Any:
    """The parsed GeoQuery of a geoQ member (clause 5.2.13), BadRequestData when invalid."""
    if not isinstance(geo, dict):
        raise BadRequestData("geoQ must be an object")
    unknown = set(geo) - {"georel", "geometry", "coordinates", "geoproperty"}
    if unknown:
        raise BadRequestData(f"unknown geoQ member(s) {sorted(unknown)}")
    try:
        return parse_geoquery(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty"))
    except InvalidRequest as exc:
        raise BadRequestData(f"geoQ: {exc.detail}") from None


def clean_input(body: Any) -> dict[str, Any]:
    """The client's members, without the read-only ones (which are ignored, clause 5.2.12)."""
    if not isinstance(body, dict):
        raise BadRequestData("a Subscription must be a JSON object")
    doc = {k: v for k, v in body.items() if k not in READ_ONLY}
    if isinstance(doc.get("notification"), dict):
        doc["notification"] = {k: v for k, v in doc["notification"].items() if k not in NOTIFICATION_READ_ONLY}
    return doc


def new_subscription(body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """A validated Subscription document from a create request (id generated when absent)."""
    doc = clean_input(body)
    doc.setdefault("id", new_subscription_id())
    if not isinstance(doc["id"], str):
        raise BadRequestData("the subscription id must be a URI")
    validate(doc, now=now)
    return doc


def _is_null(value: Any) -> bool:
    return value is None or value == NGSI_LD_NULL


def merge(current: dict[str, Any], fragment: Any, rename: Any = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Apply a Subscription fragment (clauses 5.8.2.4, 5.5.8): members replaced whole, NGSI-LD Null deletes.

    A member of the fragment replaces the subscription's member of that name
    as a whole, `notification` included: a fragment changing the format
    carries the endpoint too, else the result lacks one and is refused.
    `rename(doc)` rewrites the fragment's attribute terms into the
    subscription's own context.
    """
    frag = clean_input(fragment)
    if "id" in frag and frag["id"] != current["id"]:
        raise BadRequestData("the id of a subscription cannot be changed")
    if "type" in frag and frag["type"] != "Subscription":
        raise BadRequestData('a Subscription fragment must have "type": "Subscription" when it has a type')
    if not frag or set(frag) <= {"id", "type"}:
        raise BadRequestData("the fragment changes nothing")
    if rename is not None:
        frag = rename(frag)
    out = dict(current)
    for key, value in frag.items():
        if _is_null(value):
            out.pop(key, None)
        else:
            out[key] = value
    validate(out, now=now, check_expiry="expiresAt" in frag)
    return out


# ---------------------------------------------------------------------------- terms


def map_terms(doc: dict[str, Any], fn: Any) -> dict[str, Any]:
    """A copy with every attribute/type term passed through fn (expansion or compaction).

    Type selections are mapped only when they are a single name; q and
    scopeQ are strings of their own languages and stay as written.
    """
    out = dict(doc)
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = [fn(a) for a in doc["watchedAttributes"]]
    if isinstance(doc.get("entities"), list):
        out["entities"] = [
            {**s, "type": fn(s["type"])} if isinstance(s, dict) and isinstance(s.get("type"), str)
            and _NAME.match(s["type"]) and s["type"] != "*" else s
            for s in doc["entities"]
        ]
    if isinstance(doc.get("geoQ"), dict) and isinstance(doc["geoQ"].get("geoproperty"), str):
        out["geoQ"] = {**doc["geoQ"], "geoproperty": fn(doc["geoQ"]["geoproperty"])}
    note = doc.get("notification")
    if isinstance(note, dict) and isinstance(note.get("attributes"), list):
        out["notification"] = {**note, "attributes": [fn(a) if isinstance(a, str) else a for a in note["attributes"]]}
    return out


def recontext(doc: dict[str, Any], source: TermMapper, target: TermMapper) -> dict[str, Any]:
    """Terms written in `source` re-expressed in `target` (IRIs where target has no term)."""
    return map_terms(doc, lambda t: target.compact_iri(source.expand_term(t)))
