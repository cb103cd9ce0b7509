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

`v2_prepared` makes the same rows for an NGSI-v2 notified entity of that shape straight from its
notified attributes, without v2_entity's instances in between (issue 16, notifyfast21).

`NotifyWriter.write` stores the prepared entities of one notification, their
rows, their types added to the stored ones and their service paths, in one
history transaction (HistoryStorage.write_added: one job on SQLite's writer,
one statement on PostgreSQL, new series made in it too), which also checks
that history holds every change the store committed before it
(read-your-writes); when it does not, the recorder's backlog is applied and the
write made then. The read-your-writes check, the read of the stored types, the
write and the service paths were four round trips, two of them write
transactions (issue 16, notify18); and two notifications of one entity at once
each read the stored types before either wrote, the later one dropping the
type the other added.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from broker.quantumleap import notify as nt
from broker.service.temporal import TemporalService
from broker.state import BrokerState
from broker.store.base import Store
from broker.temporal.model import HistoryRow, now_stamp, value_row
from models.geojson import is_geometry
from models.normalize import TermMapper
from models.validation import is_datetime, is_name, is_uri
from models.vocabulary import ENTITY_CORE, NGSI_LD_NULL, PROPERTY

_PLAIN = (str, int, float, bool)
_SHAPES = {("type", "value", "observedAt"), ("type", "value", "unitCode", "observedAt")}
_NAMES: set[str] = set()  # names known valid (is_name), so checked once
_NAMES_MAX = 65_536
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # the integers orjson writes


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


def v2_prepared(tenant: str, entity: Any, header_attr: str | None, now: str, ctx: TermMapper) -> Prepared | None:
    """`prepare(tenant, eid, v2_entity(entity, header_attr, now), ctx)` for an NGSI-v2 notified entity whose
    every recorded attribute takes the plain-Property path, made in one pass over the notified attributes:
    each ENF instance is built once, in its final form, instead of v2_entity's instance, then _fast's checks
    of it and its copy (issue 16, notifyfast21). An entity with no attribute to record gives rows == []: the
    general path leaves it out (no row, no type, no service path). None for anything else (an id, type or
    name the general path would refuse or treat otherwise, a geometry, a relationship, a value or unitCode
    _fast would pass on): the caller then takes the general path for the whole notification, which
    answers, and refuses, as before; test_notifyfast21_ingest.py compares both on every case.
    """
    if type(entity) is not dict:
        return None
    kind, given = entity.get("type"), entity.get("id")
    if type(kind) is not str or not kind or type(given) is not str or not given or not _name(kind):
        return None
    eid = nt.stored_id(given, kind)
    if not is_uri(eid):
        return None
    observed = nt.v2_time_index(entity, header_attr, now)
    instances: list[tuple[str, dict[str, Any]]] = []
    for name, attr in entity.items():
        if name == "id" or name == "type":
            continue
        if name in ENTITY_CORE or not isinstance(name, str):
            return None
        if not isinstance(attr, dict):
            attr = {"value": attr}
        a_kind, value = attr.get("type"), attr.get("value")
        if a_kind is not None and type(a_kind) is not str:
            return None  # (an unhashable type fails v2_entity's set look-up: its answer is the general path's)
        if value is None or value == "":
            continue  # v2_entity records nothing for it
        if a_kind in nt.V2_GEO or a_kind in ("Relationship", "Reference") or (name == "location" and is_geometry(value)):
            return None
        cast = nt.cast_v2_value(a_kind, value)
        if cast is None:
            continue
        if type(cast) is dict:
            if tuple(cast) != ("@type", "@value"):
                return None
        elif not isinstance(cast, _PLAIN) or cast == NGSI_LD_NULL or (type(cast) is int and not _INT_MIN <= cast <= _INT_MAX):
            return None  # (an integer orjson cannot write fails value_row: the general path's answer)
        if not _name(name):
            return None
        inst: dict[str, Any] = {"type": PROPERTY, "value": cast}
        meta = attr.get("metadata")
        unit = meta.get("unitCode") if isinstance(meta, dict) else None
        if isinstance(unit, dict) and isinstance(unit.get("value"), str):
            if not unit["value"]:
                return None
            inst["unitCode"] = unit["value"]
        inst["observedAt"] = observed
        instances.append((name, inst))
    if not instances:
        return Prepared(eid, [], [])
    if not (isinstance(observed, str) and is_datetime(observed)):
        return None
    stamp, now_us = now_stamp()  # as _fast: one moment per entity
    rows = []
    for name, inst in instances:
        inst["createdAt"] = stamp
        inst["modifiedAt"] = stamp
        rows.append(value_row(tenant, eid, ctx.expand_term(name), inst, now_us))
    return Prepared(eid, [ctx.expand_term(kind)], rows)


def prepare(tenant: str, eid: str, body: dict[str, Any], ctx: TermMapper) -> Prepared:
    """The types and history rows of one temporal entity body, as TemporalService.write_many makes them."""
    fast = _fast(tenant, eid, body, ctx)
    if fast is not None:
        return fast
    types, rows = TemporalService._temporal_rows(tenant, eid, body, ctx, None, adding=False)
    return Prepared(eid, types, rows)


@dataclass(slots=True)
class _Write:
    """One notification's write, waiting for its group (NotifyWriter, PostgreSQL)."""

    tenant: str
    added: list[tuple[str, list[str]]]
    rows: list[HistoryRow]
    paths: dict[str, str]
    done: asyncio.Future[None]


class NotifyWriter:
    """Writes a notification's rows, entities and service paths in one history transaction
    (HistoryStorage.write_added), checking in it that history holds every change the store committed before
    (read-your-writes): when it does not, the recorder's backlog is applied and the write made then.

    On PostgreSQL a notification that finds no write under way is written at once by its own request; those
    that arrive while a write is under way are written together after it, in arrival order, by one statement
    (group commit): every history write takes the rollup triggers' lock of the schema
    until its commit, so concurrent writes went one commit (and its WAL flush) at a time. A group that fails
    is written again one notification at a time, so that each gets its own answer. SQLite's writer thread
    already groups the jobs queued on it (one COMMIT: HistoryStorage.groups_writes), so there each
    notification is its own job.
    """

    def __init__(self) -> None:
        self._tenants: dict[str, Store] = {}  # tenant -> the store it is known to exist in
        self._queue: deque[_Write] = deque()
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def write(self, st: BrokerState, tenant: str, entities: list[Prepared], paths: dict[str, str]) -> None:
        """Store one notification's entities and their service paths; returns once committed."""
        if not entities:
            return
        if self._tenants.get(tenant) is not st.store:  # a tenant written to through history exists (4.14)
            await st.store.ensure_tenant(tenant)
            self._tenants[tenant] = st.store
        rows: list[HistoryRow] = []
        for p in entities:
            rows.extend(p.rows)
        added = [(p.entity_id, p.types) for p in entities]
        if st.history.groups_writes:
            await self._write(st, tenant, added, rows, paths)
            return
        if not self._draining:  # nothing under way: written at once, in this task (no task, future, or hop)
            self._draining = True
            try:
                await self._write(st, tenant, added, rows, paths)
            finally:
                if self._queue:  # those that arrived meanwhile, together
                    self._task = asyncio.create_task(self._drain(st), name="notify-group-commit")  # held: not collected
                else:
                    self._draining = False
            return
        item = _Write(tenant, added, rows, paths, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        await item.done

    @staticmethod
    async def _write(st: BrokerState, tenant: str, added: list[tuple[str, list[str]]], rows: list[HistoryRow],
                     paths: dict[str, str]) -> None:
        recorder = st.recorder
        if not await st.history.write_added(tenant, added, rows, paths, current=recorder.name):
            await recorder.catch_up(st.temporal.catch_up_timeout)
            await st.history.write_added(tenant, added, rows, paths)

    async def _drain(self, st: BrokerState) -> None:
        """Write the queued notifications, those of one tenant in a row together, until none is left."""
        try:
            while self._queue:
                group = [self._queue.popleft()]
                while self._queue and self._queue[0].tenant == group[0].tenant:
                    group.append(self._queue.popleft())
                group = [w for w in group if not w.done.done()]  # a caller that gave up: not written
                if not group:
                    continue
                try:
                    if len(group) == 1:
                        w = group[0]
                        await self._write(st, w.tenant, w.added, w.rows, w.paths)
                    else:
                        paths: dict[str, str] = {}
                        for w in group:
                            paths.update(w.paths)
                        await self._write(st, group[0].tenant, [a for w in group for a in w.added],
                                          [r for w in group for r in w.rows], paths)
                except BaseException as exc:  # each notification's answer is its own
                    if not isinstance(exc, Exception):  # cancelled (the app stopping): every caller told, then out
                        for w in group:
                            _settle(w, RuntimeError("the history write was cancelled"))
                        raise
                    if len(group) == 1:
                        _settle(group[0], exc)
                        continue
                    for w in group:  # one at a time: the one that fails fails alone
                        try:
                            await self._write(st, w.tenant, w.added, w.rows, w.paths)
                        except Exception as one:  # noqa: BLE001
                            _settle(w, one)
                        else:
                            _settle(w, None)
                    continue
                for w in group:
                    _settle(w, None)
        finally:
            self._draining = False
            for w in self._queue:  # cancelled while draining (the app stopping): nobody waits for ever
                _settle(w, RuntimeError("the history write was cancelled"))
            self._queue.clear()


def _settle(w: _Write, exc: BaseException | None) -> None:
    if w.done.done():
        return
    if exc is None:
        w.done.set_result(None)
    else:
        w.done.set_exception(exc)
