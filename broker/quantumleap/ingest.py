"""History rows of notified entities and their write (POST /v2/notify, issue 16).

`prepare` turns one notified entity (broker.quantumleap.notify: v2_entity or
ld_entity) into its history rows: the rows TemporalService.write_many stores
for it. An instance of the shape NGSI-v2 notifications carry, a Property
with a plain value (number, text, boolean, DateTime), a unitCode and the
notification's observedAt, is already normalized and expanded: its ENF
instance is itself with createdAt and modifiedAt added, so the per-instance
normalize_attribute and expand_instance are skipped (8 % of a 100-entity
notification's broker CPU in py-spy). Anything else, and anything such an instance
would be refused for (a name that is not an NGSI-LD name, a value of
urn:ngsi-ld:null, an empty unitCode, an observedAt that is not a DateTime),
takes the general path, TemporalService._temporal_rows, which answers as before.

`NotifyWriter.write` stores the prepared entities of one notification as
write_many did (one history transaction) and then their service paths, with
the read-your-writes check (HistoryRecorder.read_current) run together with
the read of the entities' known types rather than before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.service.temporal import TemporalService
from broker.state import BrokerState
from broker.store.base import Store
from broker.temporal.model import EntityRow, HistoryRow, now_stamp, value_row
from models.normalize import TermMapper
from models.validation import is_datetime, is_name
from models.vocabulary import ENTITY_CORE, NGSI_LD_NULL, PROPERTY

_PLAIN = (str, int, float, bool)
_SHAPES = {("type", "value", "observedAt"), ("type", "value", "unitCode", "observedAt")}
_NAMES: set[str] = set()  # names known valid (is_name), so checked once
_NAMES_MAX = 65_536


@dataclass(slots=True)
class Prepared:
    """One notified entity as history: its id, the types it names (expanded), its rows."""

    entity_id: str
    types: list[str]
    rows: list[HistoryRow]


def _name(name: str) -> bool:
    if name in _NAMES:
        return True
    if not is_name(name):
        return False
    if len(_NAMES) < _NAMES_MAX:
        _NAMES.add(name)
    return True


def _fast(tenant: str, eid: str, body: dict[str, Any], ctx: TermMapper) -> Prepared | None:
    """The rows of an entity whose every instance is a plain Property (see the module docstring); None otherwise."""
    kind = body.get("type")
    if not isinstance(kind, str) or not _name(kind):
        return None
    instances: list[tuple[str, dict[str, Any]]] = []
    checked: str | None = None
    for name, inst in body.items():
        if name in ENTITY_CORE:
            continue
        if type(inst) is not dict or tuple(inst) not in _SHAPES or inst["type"] != PROPERTY or not _name(name):
            return None
        value = inst["value"]
        if type(value) is dict:
            if tuple(value) != ("@type", "@value"):
                return None
        elif not isinstance(value, _PLAIN) or value == NGSI_LD_NULL:
            return None
        unit = inst.get("unitCode", "x")
        if not isinstance(unit, str) or not unit:
            return None
        observed = inst["observedAt"]
        if observed != checked:
            if not (isinstance(observed, str) and is_datetime(observed)):
                return None
            checked = observed
        instances.append((name, inst))
    stamp, now_us = now_stamp()  # as _temporal_rows (utc_now, to_us): one moment per entity
    rows = []
    for name, inst in instances:
        enf = dict(inst)  # the ENF instance: normalize_attribute and expand_instance leave this shape as it is
        enf["createdAt"] = stamp
        enf["modifiedAt"] = stamp
        rows.append(value_row(tenant, eid, ctx.expand_term(name), enf, now_us))
    return Prepared(eid, [ctx.expand_term(kind)], rows)


def prepare(tenant: str, eid: str, body: dict[str, Any], ctx: TermMapper) -> Prepared:
    """The types and history rows of one temporal entity body, as TemporalService.write_many makes them."""
    fast = _fast(tenant, eid, body, ctx)
    if fast is not None:
        return fast
    types, rows = TemporalService._temporal_rows(tenant, eid, body, ctx, None, adding=False)
    return Prepared(eid, types, rows)


class NotifyWriter:
    """Writes a notification's rows: the read-your-writes check together with the read of the known types, then
    one history transaction and the service paths (TemporalService.write_many and set_service_paths)."""

    def __init__(self) -> None:
        self._tenants: dict[str, Store] = {}  # tenant -> the store it is known to exist in

    async def write(self, st: BrokerState, tenant: str, entities: list[Prepared], paths: dict[str, str]) -> None:
        """Store one notification's entities and their service paths; returns once committed."""
        history = st.history
        ids = list(dict.fromkeys(p.entity_id for p in entities))
        known: dict[str, list[str]] = {}
        if ids:
            found = await st.recorder.read_current(lambda: history.entities(tenant, ids=ids),
                                                   st.temporal.catch_up_timeout)
            known = {r.entity_id: r.types for r in found}
        else:
            await st.recorder.catch_up(st.temporal.catch_up_timeout)
        rows: list[EntityRow] = []
        history_rows: list[HistoryRow] = []
        for p in entities:
            old = known.get(p.entity_id)
            types = p.types if old is None else old + [t for t in p.types if t not in old]
            known[p.entity_id] = types  # an entity given twice: its types add up, its later rows replace
            rows.append(EntityRow(tenant, p.entity_id, types, None))
            history_rows.extend(p.rows)
        if rows:
            if self._tenants.get(tenant) is not st.store:  # a tenant written to through history exists (4.14)
                await st.store.ensure_tenant(tenant)
                self._tenants[tenant] = st.store
            await history.write(rows, history_rows)
        if paths:
            await history.set_service_paths(tenant, paths)
