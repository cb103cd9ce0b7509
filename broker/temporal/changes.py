"""Plain readings grouped per entity change: the rows a store may keep as one row per change (issue 16, sqlrow21).

A notified entity (QuantumLeap's AirQualityObserved: TimeInstant and five numbers) gives one HistoryRow per
attribute, each of which said again what its neighbours say: the entity, the key time, modifiedAt, createdAt,
a plain document. A store may keep the "plain readings" of one entity with one key time and one modifiedAt
as one row (the entity, the key, the first instanceId, modifiedAt once, the values packed); this module says
which rows those are and groups them, store-neutral (no SQL), so that both stores can share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.temporal.model import VALUE, HistoryRow
from broker.temporal.storage import KEY_DATETIME, PLAIN_INSTANCE, packed_value

# a packed member's value: a JSON float (value_num gives it back exactly) or KEY_DATETIME (the key time)
Member = float | str


def member_value(row: HistoryRow) -> Member | None:
    """The value a plain reading is packed as, or None where `row` is not one.

    Plain: a value instance (kind 0) of the default instance (datasetId ''), observedAt its key time, createdAt
    its modifiedAt, no deletedAt, the plain document (storage.PLAIN_INSTANCE), and a value that is a JSON
    float or the key time as a DateTime (storage.KEY_DATETIME). Everything else a reader gets back from the
    row (the time columns, the document) is then the change's, so a packed member loses nothing.
    """
    # packed_instance(row.stored) and packed_created(row) inlined, the plain document first (most rows that
    # are not plain readings have a unit or another shape): this runs for every row a store writes
    if ((row.packed or row.instance) != PLAIN_INSTANCE or row.kind != VALUE or row.dataset_id != ""
            or row.modified_us is None or row.created_us != row.modified_us or row.observed_us != row.key_us
            or row.deleted_us is not None):
        return None
    text = packed_value(row)
    if text is None and row.value_num is not None:
        return float(row.value_num)  # as the REAL column kept it: an int value reads back as a float
    if text == KEY_DATETIME:
        return KEY_DATETIME
    return None


@dataclass(slots=True)
class Change:
    """The plain readings of one entity at one key time with one modifiedAt, in the order written."""

    tenant: str
    entity_id: str
    key_us: int
    modified_us: int
    rows: list[HistoryRow] = field(default_factory=list)
    values: list[Member] = field(default_factory=list)


def group_changes(rows: Sequence[HistoryRow], least: int = 2) -> tuple[list[Change], list[HistoryRow]]:
    """The plain readings of `rows` as changes, one per (tenant, entity, key time), and the other rows.

    `rows` hold one row per storage key (model.unique_rows). Plain readings of one entity and key time that
    differ in modifiedAt (two writes of one entity at one observedAt in one batch) cannot share a row: those
    of the first modifiedAt seen form the change, the others are returned with the rest. A change of fewer
    than `least` readings is returned with the rest too: a row of one member is no smaller than a row per
    attribute (about 45 bytes either way on SQLite), and an entity with one plain reading among others (a
    number with a unit, a text) would pay the change's bookkeeping for nothing.
    """
    changes: dict[tuple[str, str, int], Change] = {}
    rest: list[HistoryRow] = []
    for r in rows:
        value = member_value(r)
        if value is None:
            rest.append(r)
            continue
        key = (r.tenant, r.entity_id, r.key_us)
        change = changes.get(key)
        if change is None:
            change = changes[key] = Change(r.tenant, r.entity_id, r.key_us, r.modified_us or 0)
        elif change.modified_us != r.modified_us:
            rest.append(r)
            continue
        change.rows.append(r)
        change.values.append(value)
    if least > 1 and any(len(c.rows) < least for c in changes.values()):
        # the rest in the order written (a store gives new instanceIds in this order)
        alone = {id(r) for c in changes.values() if len(c.rows) < least for r in c.rows}
        kept = {id(r) for r in rest} | alone
        return [c for c in changes.values() if len(c.rows) >= least], [r for r in rows if id(r) in kept]
    return list(changes.values()), rest
