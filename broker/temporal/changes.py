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


# the longest stored document a member keeps in its change's shape (member_of): a unit ('TVO*cm{"unitCode":"GQ"}',
# 23 bytes) or a few constant sub-properties. The shape is shared by the entity's changes only while its
# documents stay the same: a document that changes at every write (a varying sub-property) would make a
# shape row per change, larger than the rows it saves; a long one more likely does, so it stays a row
MEMBER_DOC_MAX = 64


def member_of(row: HistoryRow) -> tuple[Member, bytes | None] | None:
    """The value and stored document `row` is packed as with its document kept in the shape and its createdAt
    in the change row (issue 16, sqlunit21), or None: member_value's conditions but the plain document (None
    where it is PLAIN_INSTANCE), any compact document (model.compact_instance, row.packed) of at most
    MEMBER_DOC_MAX bytes, UTF-8 (the shape keeps it as JSON text), and any createdAt (the change keeps one for
    its members). The readings of the platform's own agents carry a unitCode and, updated again and again
    (BATCH_MODE update), a createdAt older than their modifiedAt: this packs them.

    The document is the compact one, made against the row's time columns, which a member shares with its
    change (observedAt the key, createdAt and modifiedAt the change's, no deletedAt): rebuilt from those, it
    gives the instance back byte for byte, as the row would.
    """
    stored = row.packed or row.instance
    if stored == PLAIN_INSTANCE and row.created_us == row.modified_us:
        value = member_value(row)
        return None if value is None else (value, None)
    if ((stored != PLAIN_INSTANCE and (not row.packed or len(stored) > MEMBER_DOC_MAX)) or row.kind != VALUE
            or row.dataset_id != "" or row.modified_us is None or row.created_us is None
            or row.observed_us != row.key_us or row.deleted_us is not None):
        return None
    if stored == PLAIN_INSTANCE:
        text = packed_value(row)
        if text is None and row.value_num is not None:
            return float(row.value_num), None
        return (KEY_DATETIME, None) if text == KEY_DATETIME else None
    try:
        stored.decode()
    except UnicodeDecodeError:  # orjson writes UTF-8: never, but the shape's JSON text could not hold it
        return None
    text = packed_value(row)
    if text is None and row.value_num is not None:
        return float(row.value_num), stored
    if text == KEY_DATETIME:
        return KEY_DATETIME, stored
    return None


@dataclass(slots=True)
class Change:
    """The plain readings of one entity at one key time with one modifiedAt (and one createdAt), in the order written."""

    tenant: str
    entity_id: str
    key_us: int
    modified_us: int
    created_us: int | None = None  # the members' createdAt (group_changes(docs=True)); None: their modifiedAt
    rows: list[HistoryRow] = field(default_factory=list)
    values: list[Member] = field(default_factory=list)
    # each member's stored document where it is not PLAIN_INSTANCE (group_changes(docs=True)), else None
    docs: list[bytes | None] = field(default_factory=list)


def group_changes(rows: Sequence[HistoryRow], least: int = 2, *, docs: bool = False) -> tuple[list[Change], list[HistoryRow]]:
    """The plain readings of `rows` as changes, one per (tenant, entity, key time), and the other rows.

    `rows` hold one row per storage key (model.unique_rows). Plain readings of one entity and key time that
    differ in modifiedAt (two writes of one entity at one observedAt in one batch) cannot share a row: those
    of the first modifiedAt seen form the change, the others are returned with the rest. A change of fewer
    than `least` readings is returned with the rest too: a row of one member is no smaller than a row per
    attribute (about 45 bytes either way on SQLite), and an entity with one plain reading among others (a
    number with a unit, a text) would pay the change's bookkeeping for nothing.

    `docs`: members may carry a stored document other than the plain one and a createdAt other than their
    modifiedAt (member_of: a reading with a unit, updated again), for a store that keeps the documents in the
    change's shape and the createdAt in the change (one per change: those of another createdAt are returned
    with the rest, as for modifiedAt); else only plain readings (member_value) are members.
    """
    changes: dict[tuple[str, str, int], Change] = {}
    rest: list[HistoryRow] = []
    for r in rows:
        if docs:
            found = member_of(r)
            if found is None:
                rest.append(r)
                continue
            value, doc = found
        else:
            plain = member_value(r)
            if plain is None:
                rest.append(r)
                continue
            value, doc = plain, None
        key = (r.tenant, r.entity_id, r.key_us)
        change = changes.get(key)
        if change is None:
            change = changes[key] = Change(r.tenant, r.entity_id, r.key_us, r.modified_us or 0,
                                           None if r.created_us == r.modified_us else r.created_us)
        elif change.modified_us != r.modified_us or change.created_us != (None if r.created_us == r.modified_us else r.created_us):
            rest.append(r)
            continue
        change.rows.append(r)
        change.values.append(value)
        change.docs.append(doc)
    if least > 1 and any(len(c.rows) < least for c in changes.values()):
        # the rest in the order written (a store gives new instanceIds in this order)
        alone = {id(r) for c in changes.values() if len(c.rows) < least for r in c.rows}
        kept = {id(r) for r in rest} | alone
        return [c for c in changes.values() if len(c.rows) >= least], [r for r in rows if id(r) in kept]
    return list(changes.values()), rest
