"""The mapping engine: one measure group of one device -> the NGSI-LD entities to upsert.

Follows iotagent-node-lib in NGSI-LD mode: provisioned `attributes` by
`object_id` (or `name`), JEXL `expression`s evaluated in order with earlier
results in the context, `skipValue`, multi-entity attributes (`entity_name` /
`entity_type`), `static_attributes` sent with every update, `explicitAttrs`
(bool, or a JEXL array of names), `TimeInstant` as `observedAt` on every
attribute, `timestamp` adding a `TimeInstant` attribute. A Smart Data Models
profile (the entity type names one) maps the measures the provisioning does
not, adds `dateObserved` and `refDevice`, and a `Device` entity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agents.mapping.attributes import to_attribute
from agents.mapping.jexl import JexlError, evaluate, variables
from agents.mapping.timestamps import to_utc
from agents.messages import Rejected
from agents.profiles import Profile, convert, device_measurement, profile_for

__all__ = ["DeviceConfig", "map_measure", "entity_id", "merge_config"]

Doc = dict[str, Any]
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
TIME_INSTANT = "TimeInstant"


def entity_id(entity_type: str, name: str) -> str:
    """An absolute URI is kept; anything else becomes `urn:ngsi-ld:<Type>:<name>` as the FIWARE agents name it."""
    if _URI.match(name) and not name.startswith(f"{entity_type}:"):
        return name
    return f"urn:ngsi-ld:{entity_type}:{name.removeprefix(entity_type + ':')}"


@dataclass(slots=True)
class DeviceConfig:
    """A device's effective provisioning: its own fields over its group's."""

    device_id: str
    apikey: str
    service: str
    service_path: str
    entity_type: str
    entity_name: str
    attributes: list[Doc] = field(default_factory=list)
    static_attributes: list[Doc] = field(default_factory=list)
    explicit_attrs: Any = False
    timestamp: bool = False
    timezone: str | None = None
    broker_url: str | None = None
    profile: Profile | None = None

    @property
    def id(self) -> str:
        return entity_id(self.entity_type, self.entity_name)


def merge_config(device: Doc | None, group: Doc | None, *, device_id: str, apikey: str) -> DeviceConfig:
    """The configuration of a device from its registry document and its group's (either may be missing)."""
    d, g = device or {}, group or {}
    entity_type = d.get("entity_type") or g.get("entity_type") or g.get("type") or "Thing"
    names = {a.get("name") for a in d.get("attributes") or []}
    attributes = list(d.get("attributes") or []) + [a for a in g.get("attributes") or [] if a.get("name") not in names]
    statics_names = {a.get("name") for a in d.get("static_attributes") or []}
    statics = list(d.get("static_attributes") or []) + [
        a for a in g.get("static_attributes") or [] if a.get("name") not in statics_names
    ]
    explicit = d["explicitAttrs"] if d.get("explicitAttrs") is not None else g.get("explicitAttrs", False)
    stamp = d["timestamp"] if d.get("timestamp") is not None else g.get("timestamp", False)
    internal = d.get("internal_attributes") or g.get("internal_attributes") or {}
    profile_name = internal.get("profile") if isinstance(internal, dict) else None
    return DeviceConfig(
        device_id=device_id,
        apikey=apikey,
        service=d.get("service", g.get("service", "")),
        service_path=d.get("service_path", g.get("subservice", "/")),
        entity_type=entity_type,
        entity_name=d.get("entity_name") or device_id,
        attributes=attributes,
        static_attributes=statics,
        explicit_attrs=explicit,
        timestamp=bool(stamp) if not isinstance(stamp, str) else stamp.lower() == "true",
        timezone=d.get("timezone"),
        broker_url=g.get("cbroker") or g.get("cbHost") or None,
        profile=profile_for(profile_name or entity_type),
    )


def _reject(reason: str, detail: str, cfg: DeviceConfig) -> Rejected:
    return Rejected(reason, detail, apikey=cfg.apikey, device_id=cfg.device_id)


class _Entities:
    """The entities of one update, main first, in the order they appear."""

    def __init__(self, main_id: str, main_type: str) -> None:
        self.main_id = main_id
        self.order: list[str] = [main_id]
        self.docs: dict[str, Doc] = {main_id: {"id": main_id, "type": main_type}}

    def get(self, eid: str | None = None, etype: str | None = None) -> Doc:
        eid = eid or self.main_id
        if eid not in self.docs:
            self.docs[eid] = {"id": eid, "type": etype}
            self.order.append(eid)
        return self.docs[eid]

    def all(self) -> list[Doc]:
        return [self.docs[i] for i in self.order]


def _explicit_names(cfg: DeviceConfig, ctx: Doc) -> tuple[bool, set[str] | None, set[str]]:
    """(keep unmapped measures?, names allowed or None for all, object_ids allowed)."""
    rule = cfg.explicit_attrs
    if isinstance(rule, str):
        text = rule.strip()
        if text.lower() in ("true", "false"):
            rule = text.lower() == "true"
        else:
            try:
                rule = evaluate(text, ctx)
            except JexlError as exc:
                raise _reject("expression_failed", f"explicitAttrs {text!r}: {exc}", cfg) from None
    if isinstance(rule, list):
        names = {x for x in rule if isinstance(x, str)}
        oids = {x["object_id"] for x in rule if isinstance(x, dict) and "object_id" in x}
        return False, names | {TIME_INSTANT}, oids
    return (not bool(rule)), None, set()


def map_measure(cfg: DeviceConfig, measure: Doc, received_at: str) -> list[Doc]:
    """The normalized NGSI-LD entities (no @context) one measure group gives, main entity first."""
    try:
        observed = to_utc(measure[TIME_INSTANT], cfg.timezone) if TIME_INSTANT in measure else to_utc(received_at)
    except ValueError as exc:
        raise _reject("wrong_type", f"TimeInstant: {exc}", cfg) from None
    main_id = cfg.id
    entities = _Entities(main_id, cfg.entity_type)
    statics_ctx = {a.get("name"): a.get("value") for a in cfg.static_attributes}
    ctx: Doc = {**measure, "id": cfg.device_id, "entity_name": main_id, "type": cfg.entity_type,
                "service": cfg.service, "subservice": cfg.service_path, "staticAttributes": statics_ctx}
    keep_unmapped, allowed, allowed_oids = _explicit_names(cfg, ctx)
    consumed: set[str] = {TIME_INSTANT}
    device_readings: dict[str, Any] = {}

    def put(target: Doc, name: str, type_name: str | None, value: Any, metadata: Doc | None, oid: str) -> None:
        if allowed is not None and name not in allowed and oid not in allowed_oids:
            return
        try:
            target[name] = to_attribute(type_name, value, metadata)
        except ValueError as exc:
            raise _reject("wrong_type", f"attribute {name!r} ({type_name}): {exc}", cfg) from None

    for attr in cfg.attributes:
        name = attr.get("name")
        if not name:
            continue
        key = attr.get("object_id") or name
        expression = attr.get("expression")
        if expression:
            try:
                if not variables(str(expression)) <= ctx.keys():
                    continue  # iotagent-node-lib evaluates an expression only when its variables are all there
                value = evaluate(str(expression), ctx)
            except JexlError as exc:
                raise _reject("expression_failed", f"attribute {name!r}: {exc}", cfg) from None
            consumed.add(key)
        elif key in measure:
            value = measure[key]
            consumed.add(key)
        else:
            continue
        if value is None or ("skipValue" in attr and value == attr["skipValue"]):
            continue
        ctx[name] = value
        target = entities.get()
        if attr.get("entity_name"):
            etype = attr.get("entity_type") or cfg.entity_type
            raw = str(attr["entity_name"])
            try:
                named = evaluate(raw, ctx) if not _URI.match(raw) else raw
            except JexlError:
                named = raw
            target = entities.get(entity_id(etype, named if isinstance(named, str) and named else raw), etype)
        put(target, name, attr.get("type"), value, attr.get("metadata"), key)

    for key, value in measure.items():
        if key in consumed or value is None:
            continue
        device_m = device_measurement(key) if cfg.profile else None
        if device_m is not None:
            try:
                device_readings[device_m.attribute] = convert(device_m, value)
            except ValueError as exc:
                raise _reject("wrong_type", f"measure {key!r}: {exc}", cfg) from None
            continue
        if not keep_unmapped and allowed is None:
            continue
        m = cfg.profile.lookup(key) if cfg.profile else None
        if m is not None:
            try:
                number = convert(m, value)
            except ValueError as exc:
                raise _reject("wrong_type", f"measure {key!r} ({m.attribute}): {exc}", cfg) from None
            meta = {"unitCode": {"type": "Text", "value": m.unit_code}} if m.unit_code else None
            put(entities.get(), m.attribute, "Number", number, meta, key)
        else:
            put(entities.get(), key, _infer_type(value), value, None, key)

    main = entities.get()
    for static in cfg.static_attributes:
        name = static.get("name")
        if name and "value" in static:
            put(main, name, static.get("type"), static["value"], static.get("metadata"), name)
    if cfg.timestamp:
        main[TIME_INSTANT] = {"type": "Property", "value": {"@type": "DateTime", "@value": observed}}
    if cfg.profile is not None:
        _profile_members(cfg, main, observed)
    docs = [e for e in entities.all() if len(e) > 2 or e["id"] == main_id]
    for doc in docs:
        for name, member in doc.items():
            if isinstance(member, dict) and name != TIME_INSTANT:
                member.setdefault("observedAt", observed)
            if name == TIME_INSTANT:
                member.setdefault("observedAt", observed)
    if cfg.profile is not None:
        docs.append(_device_entity(cfg, observed, device_readings))
    return docs


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, (int, float)):
        return "Number"
    return "Property"


def _profile_members(cfg: DeviceConfig, main: Doc, observed: str) -> None:
    main.setdefault("dateObserved", {"type": "Property", "value": {"@type": "DateTime", "@value": observed}})
    main.setdefault("refDevice", {"type": "Relationship", "object": entity_id("Device", cfg.device_id)})


def _device_entity(cfg: DeviceConfig, observed: str, readings: Doc) -> Doc:
    assert cfg.profile is not None
    doc: Doc = {
        "id": entity_id("Device", cfg.device_id),
        "type": "Device",
        "controlledProperty": {"type": "Property", "value": cfg.profile.controlled_properties()},
        "dateLastValueReported": {"type": "Property", "value": {"@type": "DateTime", "@value": observed}},
    }
    for name, value in readings.items():
        doc[name] = {"type": "Property", "value": value, "observedAt": observed}
    return doc
