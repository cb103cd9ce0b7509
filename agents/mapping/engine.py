"""The mapping engine: one measure group of one device -> the NGSI-LD entities to upsert.

Follows iotagent-node-lib in NGSI-LD mode: provisioned `attributes` by
`object_id` (or `name`), JEXL `expression`s evaluated in order with earlier
results in the context, `skipValue`, multi-entity attributes (`entity_name` /
`entity_type`), `static_attributes` sent with every update, `explicitAttrs`
(bool, or a JEXL array of names), `TimeInstant` as `observedAt` on every
attribute, `timestamp` adding a `TimeInstant` attribute. A Smart Data Models
profile (the entity type names one) maps the measures the provisioning does
not, adds `dateObserved` and `refDevice`, and a `Device` entity.

What depends on the configuration alone (attribute builders, static
attributes, the expressions' context, the profile's index) is compiled once
into a plan kept on the `DeviceConfig`, so it lives as long as the ingestor
caches that configuration; a measure then costs only what depends on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from agents.mapping.attributes import Builder, attribute_builder
from agents.mapping.jexl import JexlError, evaluate, variables
from agents.mapping.timestamps import to_utc
from agents.messages import Rejected
from agents.profiles import DEVICE_MEASUREMENTS, Measurement, Profile, convert, device_measurement, profile_for
from models.vocabulary import Doc

__all__ = ["DeviceConfig", "entity_id", "map_measure", "merge_config"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
TIME_INSTANT = "TimeInstant"


def entity_id(entity_type: str, name: str) -> str:
    """An absolute URI is kept; anything else becomes `urn:ngsi-ld:<Type>:<name>` as the FIWARE agents name it."""
    if _URI.match(name) and not name.startswith(f"{entity_type}:"):
        return name
    return f"urn:ngsi-ld:{entity_type}:{name.removeprefix(entity_type + ':')}"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A device's effective provisioning: its own fields over its group's (read-only: a plan is compiled from it)."""

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
    _plan: _Plan | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return entity_id(self.entity_type, self.entity_name)

    @property
    def plan(self) -> _Plan:
        """The mapping plan, compiled on first use (by the first measure, so a bad configuration fails there)."""
        plan = self._plan
        if plan is None:
            plan = _compile(self)
            object.__setattr__(self, "_plan", plan)  # a cache of the frozen fields, not a change of them
        return plan


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
        service=str(d.get("service", g.get("service", "")) or ""),
        service_path=str(d.get("service_path", g.get("subservice", "/")) or "/"),
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


# -- the plan: what a configuration says, resolved once ---------------------------------------------

#: (keep unmapped measures?, names allowed or None for all, object_ids allowed)
Explicit = tuple[bool, frozenset[str] | None, frozenset[str]]
_NO_SKIP: Any = object()


@dataclass(frozen=True, slots=True)
class _Entity:
    """The other entity a multi-entity attribute goes to."""

    type: str
    name: str  # entity_name as provisioned: a URI, or JEXL giving the name
    id: str | None  # known at once for a URI, else evaluated per measure


@dataclass(frozen=True, slots=True)
class _Attribute:
    """A provisioned attribute."""

    name: str
    key: str  # the measure it reads, and the object_id explicitAttrs may allow: object_id, else name
    type_name: Any  # as provisioned, for rejection details
    build: Builder
    expression: str | None
    skip: Any  # skipValue, _NO_SKIP when none
    entity: _Entity | None  # None: the device's own entity


@dataclass(frozen=True, slots=True)
class _Static:
    """A static attribute: its NGSI-LD attribute built once, `build` copying it per measure."""

    name: str
    type_name: Any
    build: Builder
    value: Any


@dataclass(frozen=True, slots=True)
class _ProfilePlan:
    """A Smart Data Models profile, indexed."""

    measurements: dict[str, tuple[Measurement, Builder]]  # by lower-cased key or alias
    controlled: tuple[str, ...]
    period: tuple[str, ...]  # DateTime members the model requires (Profile.period)
    units: dict[str, str]  # Smart Data Model attribute -> its unit code, for provisioned attributes without one


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything about a configuration that does not depend on the measure."""

    main_id: str
    attributes: tuple[_Attribute, ...]
    statics: tuple[_Static, ...]
    context: Doc | None  # what expressions read besides the measure; None when the configuration has none
    explicit: Explicit | str  # a str is JEXL, evaluated per measure
    profile: _ProfilePlan | None
    device_entity_id: str  # the Device entity of a profile, its refDevice


def _compile(cfg: DeviceConfig) -> _Plan:
    """The plan of a configuration, with no measure yet (a bad value in it fails the measures that use it)."""
    main_id = cfg.id
    profile = _profile_plan(cfg.profile) if cfg.profile is not None else None
    units = profile.units if profile is not None else {}
    attributes = tuple(_attribute(a, cfg.entity_type, units) for a in cfg.attributes if a.get("name"))
    explicit = _explicit_rule(cfg.explicit_attrs)
    evaluates = isinstance(explicit, str) or any(
        a.expression is not None or (a.entity is not None and a.entity.id is None) for a in attributes
    )
    context = {
        "id": cfg.device_id, "entity_name": main_id, "type": cfg.entity_type, "service": cfg.service,
        "subservice": cfg.service_path, "staticAttributes": {a.get("name"): a.get("value") for a in cfg.static_attributes},
    } if evaluates else None
    return _Plan(
        main_id=main_id,
        attributes=attributes,
        statics=tuple(_static(s) for s in cfg.static_attributes if s.get("name") and "value" in s),
        context=context,
        explicit=explicit,
        profile=profile,
        device_entity_id=entity_id("Device", cfg.device_id),
    )


def _attribute(attr: Doc, entity_type: str, units: dict[str, str]) -> _Attribute:
    name = attr["name"]
    expression = attr.get("expression")
    entity = None
    if attr.get("entity_name"):
        etype = attr.get("entity_type") or entity_type
        raw = str(attr["entity_name"])
        entity = _Entity(etype, raw, entity_id(etype, raw) if _URI.match(raw) else None)
    metadata = attr.get("metadata")
    unit = units.get(name) if entity is None else None
    if unit is not None and not (isinstance(metadata, dict) and "unitCode" in metadata):
        # A FIWARE-style mapping onto a profile's attribute ({"object_id": "l", "name": "LAeq"}) says no unit:
        # the Smart Data Model's is the only one the value can be in, so it gets it as the profile would.
        metadata = {**(metadata if isinstance(metadata, dict) else {}), "unitCode": {"type": "Text", "value": unit}}
    return _Attribute(
        name=name, key=attr.get("object_id") or name, type_name=attr.get("type"),
        build=attribute_builder(attr.get("type"), metadata),
        expression=str(expression) if expression else None, skip=attr.get("skipValue", _NO_SKIP), entity=entity,
    )


def _static(static: Doc) -> _Static:
    build = attribute_builder(static.get("type"), static.get("metadata"))
    try:
        # Each measure gets a shallow copy (observedAt is added to it); the value inside is shared, as a
        # provisioned structured value always was, and nothing mutates it (the outbox serialises the entity).
        return _Static(static["name"], static.get("type"), dict, build(static["value"]))
    except Exception:  # noqa: BLE001 - see below
        # A value of the wrong type (or malformed metadata) fails every measure that sends it, as before.
        return _Static(static["name"], static.get("type"), build, static["value"])


def _explicit_rule(rule: Any) -> Explicit | str:
    """What a constant explicitAttrs lets through; the text of a JEXL one, which depends on the measure."""
    if isinstance(rule, str):
        text = rule.strip()
        if text.lower() not in ("true", "false"):
            return text
        rule = text.lower() == "true"
    return _explicit(rule)


def _explicit(rule: Any) -> Explicit:
    """What an explicitAttrs value (a JEXL one once evaluated) lets through."""
    if isinstance(rule, list):
        names = frozenset(x for x in rule if isinstance(x, str))
        oids = frozenset(x["object_id"] for x in rule if isinstance(x, dict) and "object_id" in x)
        return False, names | {TIME_INSTANT}, oids
    return (not bool(rule)), None, frozenset()


@cache
def _profile_plan(profile: Profile) -> _ProfilePlan:
    # Profile.lookup matches a key by its lower-cased form: indexing every lower-cased key and alias with
    # what lookup answers for it gives the same answers in one dict access.
    builders: dict[Measurement, Builder] = {}
    measurements: dict[str, tuple[Measurement, Builder]] = {}
    for key in (k for m in profile.measurements for k in m.names()):
        found = profile.lookup(key)
        assert found is not None
        if found not in builders:
            unit = {"unitCode": {"type": "Text", "value": found.unit_code}} if found.unit_code else None
            builders[found] = attribute_builder("Number", unit)
        measurements.setdefault(key.lower(), (found, builders[found]))
    units = {m.attribute: m.unit_code for m in profile.measurements if m.unit_code}
    return _ProfilePlan(measurements, tuple(profile.controlled_properties()), profile.period, units)


#: device_measurement by lower-cased key, which is all it matches on
_DEVICE_MEASUREMENTS = {k.lower(): device_measurement(k) for m in DEVICE_MEASUREMENTS for k in m.names()}


# -- mapping one measure group ------------------------------------------------------------------------

class _Update:
    """The entities of one update while they are built: the device's own first, others in order of use.

    A value that its attribute cannot take is refused alone when `dropped` is a list (it is appended there,
    the other attributes are kept, as iotagent-node-lib keeps them), and fails the whole measure when it is None.
    """

    __slots__ = ("allowed", "allowed_oids", "cfg", "dropped", "kept", "main", "max_length", "observed", "others")

    def __init__(self, cfg: DeviceConfig, observed: str, explicit: Explicit, main: Doc,
                 dropped: list[Rejected] | None, max_length: int) -> None:
        self.cfg = cfg
        self.observed = observed
        _, self.allowed, self.allowed_oids = explicit
        self.main = main
        self.others: dict[str, Doc] = {}
        self.dropped = dropped
        self.kept = 0  # measured attributes (not static ones) put so far
        self.max_length = max_length

    def refuse(self, reason: str, detail: str, name: str) -> None:
        """Refuse one attribute: collected when partial acceptance is on, else the whole measure fails."""
        rejection = Rejected(reason, detail, apikey=self.cfg.apikey, device_id=self.cfg.device_id, attribute=name)
        if self.dropped is None:
            raise rejection
        self.dropped.append(rejection)

    def entity(self, eid: str, etype: str) -> Doc:
        """The document of an entity by id, made on first use."""
        if eid == self.main["id"]:
            return self.main
        doc = self.others.get(eid)
        if doc is None:
            doc = self.others[eid] = {"id": eid, "type": etype}
        return doc

    def put(self, target: Doc, name: str, oid: str, type_name: Any, build: Builder, value: Any,
            measured: bool = True) -> None:
        """Add an attribute (observed now unless its metadata says when) if explicitAttrs lets it through."""
        allowed = self.allowed
        if allowed is not None and name not in allowed and oid not in self.allowed_oids:
            return
        if self.max_length and type(value) is not int and type(value) is not float and _too_long(value, self.max_length):
            self.refuse("too_long", f"attribute {name!r}: a value of more than {self.max_length} characters", name)
            return
        try:
            attr = build(value)
        except ValueError as exc:
            self.refuse("wrong_type", f"attribute {name!r} ({type_name}): {exc}", name)
            return
        attr.setdefault("observedAt", self.observed)
        target[name] = attr
        if measured:
            self.kept += 1

    def docs(self) -> list[Doc]:
        """The device's entity, and the others that got an attribute."""
        return [self.main, *(doc for doc in self.others.values() if len(doc) > 2)]


def _too_long(value: Any, limit: int) -> bool:
    """Whether a value is over the length limit: a string by its characters, a structure by its JSON."""
    if isinstance(value, str):
        return len(value) > limit
    if isinstance(value, (dict, list)):
        return len(orjson.dumps(value)) > limit
    return False


def map_measure(cfg: DeviceConfig, measure: Doc, received_at: str, dropped: list[Rejected] | None = None,
                max_length: int = 0) -> list[Doc]:
    """The normalized NGSI-LD entities (no @context) one measure group gives, main entity first.

    With a `dropped` list, a value its attribute cannot take (wrong type, over `max_length` characters)
    is refused alone and appended there; a measure all of whose values were refused gives no entity.
    Without one, such a value raises Rejected for the whole measure.
    """
    try:
        observed = to_utc(measure[TIME_INSTANT], cfg.timezone) if TIME_INSTANT in measure else to_utc(received_at)
    except ValueError as exc:
        raise _reject("wrong_type", f"TimeInstant: {exc}", cfg) from None
    plan = cfg.plan
    ctx = None if plan.context is None else {**measure, **plan.context}
    explicit = _evaluated_explicit(cfg, plan.explicit, ctx) if isinstance(plan.explicit, str) else plan.explicit
    update = _Update(cfg, observed, explicit, {"id": plan.main_id, "type": cfg.entity_type}, dropped, max_length)
    refused_before = len(dropped) if dropped is not None else 0
    consumed = _map_provisioned(plan, update, measure, ctx)
    readings = _map_unprovisioned(plan, update, measure, consumed, keep_unmapped=explicit[0])
    if dropped is not None and update.kept == 0 and not readings and len(dropped) > refused_before:
        return []  # every value of the measure was refused: nothing of it to say
    main = update.main
    for static in plan.statics:
        update.put(main, static.name, static.name, static.type_name, static.build, static.value, measured=False)
    if cfg.timestamp:
        main[TIME_INSTANT] = _observed_date_time(observed)
    if plan.profile is not None:
        main.setdefault("dateObserved", _observed_date_time(observed))
        # NoiseLevelObserved requires the period a level covers; a measure that does not say it
        # (dateObservedFrom/To attributes or measures) covers the instant it was observed at.
        for member in plan.profile.period:
            main.setdefault(member, _observed_date_time(observed))
        main.setdefault("refDevice", {"type": "Relationship", "object": plan.device_entity_id, "observedAt": observed})
    docs = update.docs()
    if plan.profile is not None:
        docs.append(_device_entity(plan, observed, readings))
    return docs


def _evaluated_explicit(cfg: DeviceConfig, text: str, ctx: Doc | None) -> Explicit:
    assert ctx is not None  # a JEXL explicitAttrs makes the plan keep a context
    try:
        return _explicit(evaluate(text, ctx))
    except JexlError as exc:
        raise _reject("expression_failed", f"explicitAttrs {text!r}: {exc}", cfg) from None


def _map_provisioned(plan: _Plan, update: _Update, measure: Doc, ctx: Doc | None) -> set[str]:
    """Map the provisioned attributes, in order; the measure keys they consumed."""
    consumed = {TIME_INSTANT}
    for attr in plan.attributes:
        if attr.expression is not None:
            assert ctx is not None  # an expression makes the plan keep a context
            try:
                if not variables(attr.expression) <= ctx.keys():
                    continue  # iotagent-node-lib evaluates an expression only when its variables are all there
                value = evaluate(attr.expression, ctx)
            except JexlError as exc:
                raise _reject("expression_failed", f"attribute {attr.name!r}: {exc}", update.cfg) from None
            consumed.add(attr.key)
        elif attr.key in measure:
            value = measure[attr.key]
            consumed.add(attr.key)
        else:
            continue
        if value is None or (attr.skip is not _NO_SKIP and value == attr.skip):
            continue
        if ctx is not None:
            ctx[attr.name] = value  # later expressions read earlier results
        target = update.main if attr.entity is None else _other_entity(update, attr.entity, ctx)
        update.put(target, attr.name, attr.key, attr.type_name, attr.build, value)
    return consumed


def _other_entity(update: _Update, entity: _Entity, ctx: Doc | None) -> Doc:
    if entity.id is not None:
        return update.entity(entity.id, entity.type)
    assert ctx is not None  # a JEXL entity_name makes the plan keep a context
    try:
        named = evaluate(entity.name, ctx)
    except JexlError:
        named = entity.name
    return update.entity(entity_id(entity.type, named if isinstance(named, str) and named else entity.name), entity.type)


def _map_unprovisioned(plan: _Plan, update: _Update, measure: Doc, consumed: set[str], *, keep_unmapped: bool) -> Doc:
    """Map the measures no attribute consumed (through the profile, if any); the Device entity's readings."""
    readings: Doc = {}
    profile = plan.profile
    for key, value in measure.items():
        if key in consumed or value is None:
            continue
        found = None
        if profile is not None:
            folded = key.lower()
            device_m = _DEVICE_MEASUREMENTS.get(folded)
            if device_m is not None:
                try:
                    readings[device_m.attribute] = convert(device_m, value)
                except ValueError as exc:
                    update.refuse("wrong_type", f"measure {key!r}: {exc}", device_m.attribute)
                continue
            found = profile.measurements.get(folded)
        if not keep_unmapped and update.allowed is None:
            continue
        if found is not None:
            m, build = found
            try:
                number = convert(m, value)
            except ValueError as exc:
                update.refuse("wrong_type", f"measure {key!r} ({m.attribute}): {exc}", m.attribute)
                continue
            update.put(update.main, m.attribute, key, "Number", build, number)
        else:
            type_name, build = _inferred(value)
            update.put(update.main, key, key, type_name, build, value)
    return readings


_BOOLEAN = attribute_builder("Boolean")
_NUMBER = attribute_builder("Number")
_PROPERTY = attribute_builder("Property")


def _inferred(value: Any) -> tuple[str, Builder]:
    """The type (and its builder) of a measure no attribute provisions."""
    if isinstance(value, bool):
        return "Boolean", _BOOLEAN
    if isinstance(value, (int, float)):
        return "Number", _NUMBER
    return "Property", _PROPERTY


def _observed_date_time(observed: str) -> Doc:
    # A DateTime is a plain UTC string (clause 4.6.3, "DateTime string"), as the Smart Data Models' JSON
    # Schemas (format date-time) and QuantumLeap's API have it: it reads back unchanged from both.
    return {"type": "Property", "value": observed, "observedAt": observed}


def _device_entity(plan: _Plan, observed: str, readings: Doc) -> Doc:
    assert plan.profile is not None
    doc: Doc = {
        "id": plan.device_entity_id,
        "type": "Device",
        "controlledProperty": {"type": "Property", "value": list(plan.profile.controlled)},
        "dateLastValueReported": {"type": "Property", "value": observed},
    }
    for name, value in readings.items():
        doc[name] = {"type": "Property", "value": value, "observedAt": observed}
    return doc
