"""History on the SQLite file of the store: writes on the file's one writer thread, reads on a thread of their own.

Writes go through the file's backend (storage.database.SQLiteDatabase), in
turn with the store's; reads run on a connection and thread of history's
own (WAL), so the event loop never waits on the disk and a long history
query never holds up a write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from broker.store.sqlite_rows import insert_rows, insert_rows_returning
from broker.temporal.changes import Change, Member, group_changes
from broker.temporal.model import (
    EntityRow,
    HistoryRow,
    packed_created,
    rebuild_instance,
    unique_rows,
    value_text,
)
from broker.temporal.rollup import DAY_US, HOUR_US, Plan, RollupBucket, hour_sql, plan
from broker.temporal.storage import (
    KEY_DATETIME,
    PLAIN_INSTANCE,
    Bucket,
    HistoryStorage,
    InstanceHit,
    TimeRange,
    added_types,
    cache_entries_from_env,
    merged_types,
    packed_instance,
    packed_value,
    time_clauses,
    trimmed,
)
from storage.database import SQLiteDatabase
from storage.migrate import Schema
from storage.sqlite_thread import SQLiteThread
from storage.urls import DatabaseUrl

T = TypeVar("T")

# The instances of a series (tenant, entity, attribute, datasetId) are rows of temporal_rows under its
# integer sid (temporal_series): the text keys once per series instead of in every row and index entry.
# temporal_instances is a view of both with the former table's columns, which the reads query.
# A row leaves out what another of its columns holds (histbytes16), the view reads it back:
#   observed_us  NULL with obs_key = 1 where observedAt is key_us (every row that has one, until replaced)
#   created_us   NULL on a value row (kind 0) whose createdAt is its modifiedAt
#   value_json   NULL where value_num gives it back exactly (a JSON float: model.packed_value_json)
#   instance     NULL for the stored document of a plain reading (storage.PLAIN_INSTANCE, hist17)
#   value_json   '' for a DateTime value that is key_us in whole seconds (storage.KEY_DATETIME, hist17)
# A row written before keeps every column (obs_key NULL) and reads the same.
INSTANCE = f"coalesce({{r}}instance, X'{PLAIN_INSTANCE.hex()}')"
# value_json as read: the text of storage.key_datetime_json for KEY_DATETIME ('' is no JSON text); the rollup
# triggers and _PURE/_INT read the stored column: '' there is, as the text it stands for, no number
VALUE_JSON = ("CASE WHEN {r}value_json = '' THEN '{{\"@type\":\"DateTime\",\"@value\":\"' || strftime('%Y-%m-%dT%H:%M:%SZ',"
              " {r}key_us / 1000000, 'unixepoch') || '\"}}' ELSE {r}value_json END")
OBSERVED = "coalesce({r}observed_us, CASE WHEN {r}obs_key IS NOT NULL THEN {r}key_us END)"
CREATED = "coalesce({r}created_us, CASE WHEN {r}kind = 0 THEN {r}modified_us END)"
# a member of a change row (c: temporal_changes, j: json_each of its shape's sids, j.key its position) as
# value_num and value_json are read: '' is KEY_DATETIME
MEMBER_NUM = "nullif(c.vals ->> j.key, '')"


def _key_datetime(key: str) -> str:
    """The SQL of VALUE_JSON's DateTime text (storage.key_datetime_json) at the key time `key`."""
    return ("'{\"@type\":\"DateTime\",\"@value\":\"' || strftime('%Y-%m-%dT%H:%M:%SZ', " + key
            + " / 1000000, 'unixepoch') || '\"}'")


MEMBER_JSON = f"CASE WHEN c.vals ->> j.key = '' THEN {_key_datetime('c.key_us')} END"
# a member's stored document (h: temporal_change_shapes): its shape's docs, '' where every member's is the
# plain one (every shape of sqlrow21), else a JSON array of the documents as text, null for the plain one
# (issue 16, sqlunit21: a reading with a unitCode keeps its document once per shape, not in every change)
MEMBER_DOC = (f"CASE WHEN h.docs = '' THEN X'{PLAIN_INSTANCE.hex()}'"
              f" ELSE coalesce(CAST(h.docs ->> j.key AS BLOB), X'{PLAIN_INSTANCE.hex()}') END")
# the stored value_json of a member, as the rollup triggers read temporal_rows' column (NULL: a JSON float)
_MEMBER_STORED_JSON = "CASE WHEN c.vals ->> j.key = '' THEN '' END"
# the time columns as the rows of temporal_rows (not the view) are read (storage.time_clauses)
_ROW_TIMES = {"observed_us": OBSERVED.format(r=""), "created_us": CREATED.format(r="")}
# the same of a member of a change row (c: temporal_changes): observedAt is the key, createdAt modifiedAt
# a member's createdAt: the change's created_us, NULL where it is modifiedAt (sqlunit21; every row of sqlrow21)
MEMBER_CREATED = "coalesce(c.created_us, c.modified_us)"
_MEMBER_TIMES = {"observed_us": "c.key_us", "created_us": MEMBER_CREATED, "modified_us": "c.modified_us",
                 "deleted_us": "NULL"}
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS temporal_series (sid INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
           entity_id TEXT NOT NULL, attr TEXT NOT NULL, dataset_id TEXT NOT NULL,
           UNIQUE (tenant, entity_id, attr, dataset_id))""",
    # WITHOUT ROWID, clustered on the series key (hist17): the row and its key are one b-tree, where a rowid
    # table kept the rows by iid and a second b-tree on (sid, key_us, kind) -> iid (a quarter of the history's
    # bytes). A time range of one series seeks as the index did; key_us being observedAt where there is one,
    # the key also serves timeproperty=observedAt (_where), and timeproperty=modifiedAt reads each series by it.
    # iid (the instanceId) is a column given from temporal_next_iid (as a rowid was: 1, 2, ...), without an
    # index: an instance is found by its id within its series (delete, replace by instanceId: rare writes)
    """CREATE TABLE IF NOT EXISTS temporal_rows (sid INTEGER NOT NULL, key_us INTEGER NOT NULL, kind INTEGER NOT NULL,
           iid INTEGER NOT NULL, observed_us INTEGER, created_us INTEGER, modified_us INTEGER, deleted_us INTEGER,
           value_num REAL, value_json TEXT, instance BLOB, obs_key INTEGER,
           PRIMARY KEY (sid, key_us, kind)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS temporal_next_iid (next INTEGER NOT NULL)",
    # a row per entity change for plain readings (issue 16, sqlrow21; broker.temporal.changes): the readings of
    # one entity at one key time with one modifiedAt, their values in a JSON text array (a JSON float, or ''
    # for storage.KEY_DATETIME), their series in the same order in the row's shape (a JSON array of sids in
    # temporal_change_shapes: an entity's notifications share one), the member at position p being instance
    # iid0 + p; a member that left (deleted, moved to temporal_rows) is sid 0 in the row's shape (no series)
    # and null in vals. What every row of temporal_rows repeated (the series key, observedAt = key_us,
    # createdAt = modifiedAt, the plain document) is here once. eid: the entity's integer (temporal_change_keys).
    # JSON, not a blob of our own: any SQLite tool reads it, and the view and triggers read it with json_each.
    # [sid, value] pairs in the row took 114 bytes per notified entity (storage_bench: 180 in all), the shape
    # apart 92 (158). An instance (sid, key_us, kind) is in one of the two tables, never both (_place)
    """CREATE TABLE IF NOT EXISTS temporal_change_keys (eid INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
           entity_id TEXT NOT NULL, UNIQUE (tenant, entity_id))""",
    # docs: the members' stored documents (MEMBER_DOC), '' where all are plain; a shape is its sids and docs
    # (a file of sqlrow21 had sids alone, UNIQUE: made again with docs '' by _copy_former_rows)
    """CREATE TABLE IF NOT EXISTS temporal_change_shapes (shape INTEGER PRIMARY KEY, sids TEXT NOT NULL,
           docs TEXT NOT NULL DEFAULT '', UNIQUE (sids, docs))""",
    """CREATE TABLE IF NOT EXISTS temporal_changes (eid INTEGER NOT NULL, key_us INTEGER NOT NULL,
           iid0 INTEGER NOT NULL, modified_us INTEGER NOT NULL, shape INTEGER NOT NULL, vals TEXT NOT NULL,
           created_us INTEGER, PRIMARY KEY (eid, key_us)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS temporal_entities (tenant TEXT NOT NULL, entity_id TEXT NOT NULL,
           types TEXT NOT NULL, deleted_us INTEGER, PRIMARY KEY (tenant, entity_id)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS temporal_cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
)
_ROWS_SELECT = (
    "SELECT r.iid AS iid, s.tenant AS tenant, s.entity_id AS entity_id,"
    f" s.attr AS attr, s.dataset_id AS dataset_id, r.kind AS kind, r.key_us AS key_us, {OBSERVED.format(r='r.')}"
    f" AS observed_us, {CREATED.format(r='r.')} AS created_us, r.modified_us AS modified_us, r.deleted_us AS deleted_us,"
    f" r.value_num AS value_num, {VALUE_JSON.format(r='r.')} AS value_json, {INSTANCE.format(r='r.')} AS instance,"
    " r.sid AS sid"
    " FROM temporal_rows AS r"
    " JOIN temporal_series AS s ON s.sid = r.sid"
)
_VIEW = (
    f"CREATE VIEW temporal_instances AS {_ROWS_SELECT}"
    # the members of the change rows, as rows of the same columns: tenant and entity from the change's key
    # (a read by entity seeks temporal_change_keys, then the entity's changes by key time)
    f" UNION ALL SELECT c.iid0 + j.key, k.tenant, k.entity_id, s.attr, s.dataset_id, 0, c.key_us, c.key_us,"
    f" {MEMBER_CREATED}, c.modified_us, NULL, {MEMBER_NUM}, {MEMBER_JSON}, {MEMBER_DOC}, s.sid"
    " FROM temporal_change_keys AS k JOIN temporal_changes AS c ON c.eid = k.eid"
    " JOIN temporal_change_shapes AS h ON h.shape = c.shape JOIN json_each(h.sids) AS j"
    " JOIN temporal_series AS s ON s.sid = j.value"
)
# temporal_instances without its second arm: what the reads of entities that have no change row query. The
# UNION ALL is not flattened into an aggregate or windowed read (SQLite runs it as a co-routine, a row at a
# time), which took a rows-only read from 2.0-2.3 to 2.8-3.1 ms (temporal_bench, NGSI-LD hourly avg, 1 entity)
_ROWS_VIEW = f"CREATE VIEW temporal_row_instances AS {_ROWS_SELECT}"
_HAS_CHANGES = "SELECT 1 FROM temporal_change_keys WHERE tenant = ? AND entity_id IN (SELECT value FROM json_each(?)) LIMIT 1"


def _on(conn: sqlite3.Connection, tenant: str, entity_ids: Sequence[str], sql: str) -> str:
    """`sql` (a read of temporal_instances) on temporal_row_instances where none of the entities has a change
    row (an entity's eid is never deleted: one that had some reads both arms). Run in the read's transaction."""
    if "FROM temporal_instances" not in sql or conn.execute(_HAS_CHANGES, (tenant, _json(entity_ids))).fetchone():
        return sql
    return sql.replace("FROM temporal_instances", "FROM temporal_row_instances")
_ROW_COLUMNS = ("sid, key_us, kind, iid, observed_us, created_us, modified_us, deleted_us, value_num, value_json,"
                " instance, obs_key")
# a file of the former layout (temporal_instances a table, text keys in every row): its rows move under
# series ids, iids kept (they are the instanceIds); its rollups stay, the same keys
_MIGRATE = (
    ("INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
     " SELECT DISTINCT tenant, entity_id, attr, dataset_id FROM temporal_instances ORDER BY 1, 2, 3, 4"),
    (f"INSERT INTO temporal_rows ({_ROW_COLUMNS}) SELECT s.sid, i.key_us, i.kind, i.iid, i.observed_us, i.created_us,"
     " i.modified_us, i.deleted_us, i.value_num, i.value_json, i.instance, NULL FROM temporal_instances AS i"
     " JOIN temporal_series AS s ON s.tenant = i.tenant AND s.entity_id = i.entity_id AND s.attr = i.attr"
     " AND s.dataset_id = i.dataset_id ORDER BY s.sid, i.key_us, i.kind"),
    "DROP TABLE temporal_instances",
)
_ROWID_TABLE = "temporal_rows_rowid"  # temporal_rows of histcompact16 / histbytes16, renamed while copied
_SHAPES_TABLE = "temporal_change_shapes_sqlrow21"  # temporal_change_shapes of sqlrow21, likewise


def _migrate_former_layout(conn: sqlite3.Connection) -> None:
    """The former layouts' rows in this one (in the setup transaction, before the rollup triggers exist).

    A rowid temporal_rows (histcompact16, histbytes16: rows by iid, an index on (sid, key_us, kind)) is
    copied into the WITHOUT ROWID table in key order, every column as it was (iids kept: they are the
    instanceIds; obs_key NULL on the rows of histcompact16, which had no such column) and dropped with its
    indexes. Runs before SCHEMA, which then makes the new table."""
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'temporal_instances'").fetchone()
    if kind is not None and kind[0] == "view":
        conn.execute("DROP VIEW temporal_instances")  # made again by _copy_former_rows (it reads temporal_rows)
    conn.execute("DROP VIEW IF EXISTS temporal_row_instances")
    for trigger in ("insert", "update", "delete"):  # likewise (_setup_rollup): they are on temporal_rows
        conn.execute(f"DROP TRIGGER IF EXISTS temporal_rollup_{trigger}")
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'temporal_rows'").fetchone()
    if row is not None and "WITHOUT ROWID" not in str(row[0]).upper():
        conn.execute(f"ALTER TABLE temporal_rows RENAME TO {_ROWID_TABLE}")
    # sqlrow21's shapes (sids UNIQUE, no docs): renamed, copied by _copy_former_rows (the triggers reading
    # them are made again by _setup_rollup)
    for trigger in ("insert", "update", "delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS temporal_changes_rollup_{trigger}")
    if (conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'temporal_change_shapes'").fetchone()
            and not any(r[1] == "docs" for r in conn.execute("PRAGMA table_info(temporal_change_shapes)"))):
        conn.execute(f"ALTER TABLE temporal_change_shapes RENAME TO {_SHAPES_TABLE}")


def _copy_former_rows(conn: sqlite3.Connection) -> None:
    """After SCHEMA: the rows of a former layout into temporal_rows, and the next iid after theirs."""
    renamed = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_ROWID_TABLE,)).fetchone()
    if renamed is not None:
        has_flag = any(r[1] == "obs_key" for r in conn.execute(f"PRAGMA table_info({_ROWID_TABLE})"))
        conn.execute(
            f"INSERT INTO temporal_rows ({_ROW_COLUMNS}) SELECT sid, key_us, kind, iid, observed_us, created_us,"
            f" modified_us, deleted_us, value_num, value_json, instance, {'obs_key' if has_flag else 'NULL'}"
            f" FROM {_ROWID_TABLE} ORDER BY sid, key_us, kind")
        conn.execute(f"DROP TABLE {_ROWID_TABLE}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_SHAPES_TABLE,)).fetchone():
        # shape ids kept (the change rows hold them); every member of a sqlrow21 shape has the plain document
        conn.execute(f"INSERT INTO temporal_change_shapes (shape, sids, docs) SELECT shape, sids, '' FROM {_SHAPES_TABLE}")
        conn.execute(f"DROP TABLE {_SHAPES_TABLE}")
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'temporal_instances'").fetchone()
    if kind is not None and kind[0] == "table":
        for sql in _MIGRATE:
            conn.execute(sql)
    if conn.execute("SELECT 1 FROM temporal_next_iid").fetchone() is None:
        # a rowid table gave max(rowid) + 1: the same here (one scan, when the counter is made)
        conn.execute("INSERT INTO temporal_next_iid SELECT coalesce(max(iid), 0) + 1 FROM temporal_rows")
    conn.execute(_VIEW)
    conn.execute(_ROWS_VIEW)


# hourly rollups (broker.temporal.rollup): an inserted value instance adds itself to its hour; a replaced
# or deleted one marks its hour dirty, recomputed from the instances before the write commits (_refresh).
# ON CONFLICT DO NOTHING, not INSERT OR IGNORE: the outer upsert's conflict policy would override an OR IGNORE
# (a NULL value_json is a JSON float: pure, not an integer)
_PURE = ("({r}.value_num IS NOT NULL AND ({r}.value_json IS NULL OR ({r}.value_json NOT IN ('true', 'false')"
         " AND substr({r}.value_json, 1, 1) <> '[')))")
_INT = ("({r}.value_num IS NOT NULL AND {r}.value_json IS NOT NULL AND {r}.value_json NOT IN ('true', 'false')"
        " AND substr({r}.value_json, 1, 1) <> '[' AND {r}.value_json NOT GLOB '*[.eE]*')")
_HAS_OBSERVED = "({r}.observed_us IS NOT NULL OR {r}.obs_key IS NOT NULL)"
_NEW_NUM = MEMBER_NUM.replace("c.vals", "NEW.vals")
# an instance added to its hour's rollup row: the conflict clause of both insert triggers (a row, a change's members)
_ADD_TO_HOUR = """ON CONFLICT DO UPDATE SET n = n + 1, n_num = n_num + excluded.n_num, n_pure = n_pure + excluded.n_pure,
               n_int = n_int + excluded.n_int, sum = coalesce(sum + excluded.sum, sum, excluded.sum),
               min = coalesce(min(min, excluded.min), min, excluded.min),
               max = coalesce(max(max, excluded.max), max, excluded.max),
               sumsq = coalesce(sumsq + excluded.sumsq, sumsq, excluded.sumsq);"""
ROLLUP_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS temporal_rollup (tenant TEXT NOT NULL, entity_id TEXT NOT NULL, attr TEXT NOT NULL,
           hour_us INTEGER NOT NULL, dataset_id TEXT NOT NULL, observed INTEGER NOT NULL, n INTEGER NOT NULL,
           n_num INTEGER NOT NULL, n_pure INTEGER NOT NULL, n_int INTEGER NOT NULL, sum REAL, min REAL, max REAL,
           sumsq REAL, PRIMARY KEY (tenant, entity_id, attr, hour_us, dataset_id, observed)) WITHOUT ROWID""",
    # the hours holding something that is not a JSON number: few, found without reading the others
    "CREATE INDEX IF NOT EXISTS temporal_rollup_impure ON temporal_rollup (tenant, entity_id, attr) WHERE n_pure < n",
    """CREATE TABLE IF NOT EXISTS temporal_rollup_dirty (tenant TEXT NOT NULL, entity_id TEXT NOT NULL,
           attr TEXT NOT NULL, hour_us INTEGER NOT NULL, PRIMARY KEY (tenant, entity_id, attr, hour_us)) WITHOUT ROWID""",
    # dropped and made again at each open (and already by _migrate_former_layout, before a rowid table of the
    # versions before hist17 is renamed): the versions before histbytes16 read value_json and observed_us
    "DROP TRIGGER IF EXISTS temporal_rollup_insert",
    "DROP TRIGGER IF EXISTS temporal_rollup_update",
    "DROP TRIGGER IF EXISTS temporal_rollup_delete",
    f"""CREATE TRIGGER temporal_rollup_insert AFTER INSERT ON temporal_rows WHEN NEW.kind = 0 BEGIN
           INSERT INTO temporal_rollup SELECT s.tenant, s.entity_id, s.attr, {hour_sql("NEW.key_us")},
               s.dataset_id, {_HAS_OBSERVED.format(r="NEW")}, 1, NEW.value_num IS NOT NULL, {_PURE.format(r="NEW")},
               {_INT.format(r="NEW")}, NEW.value_num, NEW.value_num, NEW.value_num, NEW.value_num * NEW.value_num
               FROM temporal_series AS s WHERE s.sid = NEW.sid
           {_ADD_TO_HOUR}
       END""",
    # an update that leaves every column the rollups read as it was (the same instance written again with
    # another modifiedAt, as a batch upsert of the same readings does) marks no hour dirty: its recomputation
    # was 5.6 % of the broker's samples under broker_bench (issue 16, batch19)
    f"""CREATE TRIGGER temporal_rollup_update AFTER UPDATE ON temporal_rows
       WHEN (OLD.kind = 0 OR NEW.kind = 0) AND NOT (OLD.sid IS NEW.sid AND OLD.key_us IS NEW.key_us
           AND OLD.kind IS NEW.kind AND OLD.value_num IS NEW.value_num AND OLD.value_json IS NEW.value_json
           AND OLD.observed_us IS NEW.observed_us AND OLD.obs_key IS NEW.obs_key) BEGIN
           INSERT INTO temporal_rollup_dirty SELECT tenant, entity_id, attr, {hour_sql("OLD.key_us")}
               FROM temporal_series WHERE sid = OLD.sid ON CONFLICT DO NOTHING;
           INSERT INTO temporal_rollup_dirty SELECT tenant, entity_id, attr, {hour_sql("NEW.key_us")}
               FROM temporal_series WHERE sid = NEW.sid ON CONFLICT DO NOTHING;
       END""",
    f"""CREATE TRIGGER temporal_rollup_delete AFTER DELETE ON temporal_rows WHEN OLD.kind = 0 BEGIN
           INSERT INTO temporal_rollup_dirty SELECT tenant, entity_id, attr, {hour_sql("OLD.key_us")}
               FROM temporal_series WHERE sid = OLD.sid ON CONFLICT DO NOTHING;
       END""",
    # the same for the members of a change row (value instances, observedAt their key time, JSON floats or
    # KEY_DATETIME): an inserted row adds each member to its hour as temporal_rollup_insert does a row; a row
    # whose members changed (a value replaced, a member deleted or moved to temporal_rows) or that is deleted
    # marks its members' hours dirty. Only modifiedAt written again (a batch upsert of the same readings)
    # leaves vals as it was: no hour dirty. (An upsert after a join needs a WHERE to parse.)
    "DROP TRIGGER IF EXISTS temporal_changes_rollup_insert",
    "DROP TRIGGER IF EXISTS temporal_changes_rollup_update",
    "DROP TRIGGER IF EXISTS temporal_changes_rollup_delete",
    f"""CREATE TRIGGER temporal_changes_rollup_insert AFTER INSERT ON temporal_changes BEGIN
           INSERT INTO temporal_rollup SELECT s.tenant, s.entity_id, s.attr, {hour_sql("NEW.key_us")}, s.dataset_id, 1, 1,
               {_NEW_NUM} IS NOT NULL, {_NEW_NUM} IS NOT NULL, 0, {_NEW_NUM}, {_NEW_NUM}, {_NEW_NUM},
               {_NEW_NUM} * {_NEW_NUM}
               FROM temporal_change_shapes AS h JOIN json_each(h.sids) AS j JOIN temporal_series AS s ON s.sid = j.value
               WHERE h.shape = NEW.shape
           {_ADD_TO_HOUR}
       END""",
    f"""CREATE TRIGGER temporal_changes_rollup_update AFTER UPDATE ON temporal_changes
       WHEN NOT (OLD.eid IS NEW.eid AND OLD.key_us IS NEW.key_us AND OLD.shape IS NEW.shape AND OLD.vals IS NEW.vals) BEGIN
           INSERT INTO temporal_rollup_dirty SELECT s.tenant, s.entity_id, s.attr, {hour_sql("OLD.key_us")}
               FROM temporal_change_shapes AS h JOIN json_each(h.sids) AS j JOIN temporal_series AS s ON s.sid = j.value
               WHERE h.shape = OLD.shape
               ON CONFLICT DO NOTHING;
           INSERT INTO temporal_rollup_dirty SELECT s.tenant, s.entity_id, s.attr, {hour_sql("NEW.key_us")}
               FROM temporal_change_shapes AS h JOIN json_each(h.sids) AS j JOIN temporal_series AS s ON s.sid = j.value
               WHERE h.shape = NEW.shape
               ON CONFLICT DO NOTHING;
       END""",
    f"""CREATE TRIGGER temporal_changes_rollup_delete AFTER DELETE ON temporal_changes BEGIN
           INSERT INTO temporal_rollup_dirty SELECT s.tenant, s.entity_id, s.attr, {hour_sql("OLD.key_us")}
               FROM temporal_change_shapes AS h JOIN json_each(h.sids) AS j JOIN temporal_series AS s ON s.sid = j.value
               WHERE h.shape = OLD.shape
               ON CONFLICT DO NOTHING;
       END""",
)
_ROLLUP_AGGREGATES = (
    "count(*), count(i.value_num), sum({pure}), sum({int}), sum(i.value_num), min(i.value_num), max(i.value_num),"
    " sum(i.value_num * i.value_num)"
).format(pure=_PURE.format(r="i"), int=_INT.format(r="i"))
_ROLLUP_BACKFILL = (
    f"INSERT INTO temporal_rollup SELECT i.tenant, i.entity_id, i.attr, {hour_sql('i.key_us')} AS h, i.dataset_id,"
    f" i.observed_us IS NOT NULL AS o, {_ROLLUP_AGGREGATES} FROM temporal_instances AS i WHERE i.kind = 0"
    " GROUP BY i.tenant, i.entity_id, i.attr, h, i.dataset_id, o"
)
_ROLLUP_RECOMPUTE = (
    ("DELETE FROM temporal_rollup WHERE (tenant, entity_id, attr, hour_us) IN"
     " (SELECT tenant, entity_id, attr, hour_us FROM temporal_rollup_dirty)"),
    (f"INSERT INTO temporal_rollup SELECT i.tenant, i.entity_id, i.attr, i.hour_us, i.dataset_id, i.o,"
     f" {_ROLLUP_AGGREGATES} FROM"
     f" (SELECT d.tenant, d.entity_id, d.attr, d.hour_us, s.dataset_id, {_HAS_OBSERVED.format(r='i')} AS o,"
     f" i.value_num, i.value_json FROM temporal_rollup_dirty AS d"
    # CROSS JOIN: in this order (SQLite keeps it), the few dirty hours first, then their series, then the
    # rows of each by (sid, key_us); left to the planner on a file without statistics, it scanned every row
    f" CROSS JOIN temporal_series AS s ON s.tenant = d.tenant AND s.entity_id = d.entity_id AND s.attr = d.attr"
    f" CROSS JOIN temporal_rows AS i ON i.sid = s.sid AND i.key_us >= d.hour_us AND i.key_us < d.hour_us + {HOUR_US}"
     " WHERE i.kind = 0"
    # and the members of the entity's change rows in the hour (its key, then its changes by key time)
     f" UNION ALL SELECT d.tenant, d.entity_id, d.attr, d.hour_us, s.dataset_id, 1, {MEMBER_NUM}, {_MEMBER_STORED_JSON}"
     " FROM temporal_rollup_dirty AS d"
     " CROSS JOIN temporal_change_keys AS k ON k.tenant = d.tenant AND k.entity_id = d.entity_id"
     f" CROSS JOIN temporal_changes AS c ON c.eid = k.eid AND c.key_us >= d.hour_us AND c.key_us < d.hour_us + {HOUR_US}"
     " CROSS JOIN temporal_change_shapes AS h ON h.shape = c.shape CROSS JOIN json_each(h.sids) AS j"
     " CROSS JOIN temporal_series AS s ON s.sid = j.value"
     " WHERE s.attr = d.attr) AS i"
     " GROUP BY i.tenant, i.entity_id, i.attr, i.hour_us, i.dataset_id, i.o"),
    "DELETE FROM temporal_rollup_dirty",
)


def _refresh(conn: sqlite3.Connection) -> None:
    """Recompute the hours whose instances were replaced or deleted in this transaction."""
    if conn.execute("SELECT 1 FROM temporal_rollup_dirty LIMIT 1").fetchone() is None:
        return
    for sql in _ROLLUP_RECOMPUTE:
        conn.execute(sql)


def _setup_rollup(conn: sqlite3.Connection) -> None:
    """The rollup tables and triggers; filled from the instances when a file that predates them gets them."""
    existed = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'temporal_rollup'").fetchone()
    for sql in ROLLUP_SCHEMA:
        conn.execute(sql)
    if existed is None:
        conn.execute(_ROLLUP_BACKFILL)




def _unit_sql(unit: str, x: str) -> str:
    """The start of the calendar `unit` (UTC) holding the hour start `x`, in microseconds."""
    if unit == "hour":
        return x
    if unit == "day":
        return f"({x} - ((({x} % {DAY_US}) + {DAY_US}) % {DAY_US}))"
    return f"(CAST(strftime('%s', {x} / 1000000, 'unixepoch', 'start of {unit}') AS INTEGER) * 1000000)"


# count(DISTINCT value_json), value_json NULL on the rows that are JSON floats (and text on the rows
# written before histbytes16): the floats counted by value_num (one double per float text), the rest by text
FLOATISH = ("({r}value_json IS NULL OR ({r}value_num IS NOT NULL AND {r}value_json <> '-0.0'"
            " AND (substr({r}value_json, 1, 1) BETWEEN '0' AND '9' OR substr({r}value_json, 1, 1) = '-')"
            " AND {r}value_json GLOB '*[.eE]*'))")
_DISTINCT = (f"count(DISTINCT CASE WHEN {FLOATISH.format(r='')} THEN NULL ELSE value_json END)"
             f" + count(DISTINCT CASE WHEN {FLOATISH.format(r='')} THEN value_num END)")


_INSERT_ROWS = (
    "INSERT INTO temporal_rows (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
    " value_json, instance, obs_key, iid)"
)
# the same instance again replaces the stored one (same iid), unless nothing differs: a replayed
# change log writes nothing
_UPSERT = (
    " ON CONFLICT (sid, key_us, kind) DO UPDATE SET observed_us = excluded.observed_us,"
    " created_us = excluded.created_us, modified_us = excluded.modified_us, deleted_us = excluded.deleted_us,"
    " value_num = excluded.value_num, value_json = excluded.value_json, instance = excluded.instance,"
    " obs_key = excluded.obs_key"
    # the stored instance leaves out what the columns hold (model.compact_instance): they are compared too, as
    # read (a row written before histbytes16 keeps every column: the same instance again leaves it as it is)
    f" WHERE {INSTANCE.format(r='')} IS NOT {INSTANCE.format(r='excluded.')} OR value_num IS NOT excluded.value_num"
    " OR NOT (value_json IS excluded.value_json OR (excluded.value_json IS NULL AND " + FLOATISH.format(r="") + "))"
    f" OR {OBSERVED.format(r='')} IS NOT {OBSERVED.format(r='excluded.')}"
    f" OR {CREATED.format(r='')} IS NOT {CREATED.format(r='excluded.')}"
    " OR modified_us IS NOT excluded.modified_us OR deleted_us IS NOT excluded.deleted_us"
)
_SERIES_ROWS = "INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
_SERIES_LOOKUP = "SELECT sid FROM temporal_series WHERE tenant = ? AND entity_id = ? AND attr = ? AND dataset_id = ?"
SeriesKey = tuple[str, str, str, str]


_SERIES_MADE = " ON CONFLICT DO NOTHING RETURNING sid, tenant, entity_id, attr, dataset_id"


def _sids(conn: sqlite3.Connection, known: dict[SeriesKey, int], keys: Sequence[SeriesKey],
          fresh: set[int] | None = None) -> dict[SeriesKey, int]:
    """The series ids of `keys` (`known` caches them), making the series that are new (series rows are never deleted).

    The series made here come back from their INSERT (RETURNING, keyed: no order is promised), not from a
    look-up each: a batch upsert that creates 1,000 entities makes 12,000 (issue 16, upsert22). Their sids
    are added to `fresh` (no history row can hold one yet). A series that another process made meanwhile,
    or that the cache lost, is not returned by the INSERT (DO NOTHING): it is looked up.
    """
    out: dict[SeriesKey, int] = {}
    missing: list[SeriesKey] = []
    for k in keys:
        if k not in out:
            sid = known.get(k)
            if sid is None:
                missing.append(k)
                out[k] = 0
            else:
                out[k] = sid
    if missing:
        for sid, *key in insert_rows_returning(conn, _SERIES_ROWS, missing, _SERIES_MADE):
            known[tuple(key)] = sid
            if fresh is not None:
                fresh.add(sid)
        for k in missing:
            sid = known.get(k)
            if sid is None:
                sid = known[k] = conn.execute(_SERIES_LOOKUP, k).fetchone()[0]
            out[k] = sid
    return out


_ENTITY_ROWS = "INSERT INTO temporal_entities (tenant, entity_id, types, deleted_us)"
_ENTITY_CONFLICT = (
    " ON CONFLICT (tenant, entity_id) DO UPDATE SET"
    " types = CASE WHEN excluded.types = '[]' THEN types ELSE excluded.types END, deleted_us = excluded.deleted_us"
    # only where that changes the row: each recorder step (a PATCH) wrote its entity's row again with the
    # same types and no deletion (issue 16, sqlhist20)
    " WHERE temporal_entities.deleted_us IS NOT excluded.deleted_us"
    " OR (excluded.types <> '[]' AND temporal_entities.types IS NOT excluded.types)"
)


# write_added: whether the change-log consumer's cursor is behind the store's log (same file: broker.store.sqlite's
# change_log), the stored types of some entities, an entity's service path
_BEHIND = ("SELECT (SELECT coalesce(max(seq), 0) FROM change_log)"
           " > coalesce((SELECT seq FROM temporal_cursors WHERE consumer = ?), 0)")
_TYPES_OF = ("SELECT entity_id, types, deleted_us, service_path FROM temporal_entities"
             " WHERE tenant = ? AND entity_id IN (SELECT value FROM json_each(?))")
# the same for one entity (a single notification): its key, no json_each table to build and join
_TYPES_OF_ONE = "SELECT entity_id, types, deleted_us, service_path FROM temporal_entities WHERE tenant = ? AND entity_id = ?"
_SET_PATH = "UPDATE temporal_entities SET service_path = ? WHERE tenant = ? AND entity_id = ?"


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


# up to this many values, a list of placeholders (_in); more, a json_each list
_LISTED = 500


def _in(column: str, values: Sequence[str], params: list[Any]) -> str:
    """`column` among `values`, as a clause SQLite pushes into both arms of temporal_instances (a UNION ALL
    since sqlrow21): = or IN (?, ...). A term holding a subquery (IN (SELECT ... json_each)) is not pushed
    down: the arms then read every series of the tenant in the time range, filtered after."""
    listed = list(dict.fromkeys(values))
    if len(listed) > _LISTED:
        params.append(_json(listed))
        return f"{column} IN (SELECT value FROM json_each(?))"
    params.extend(listed)
    if len(listed) == 1:
        return f"{column} = ?"
    return f"{column} IN ({', '.join('?' * len(listed))})"


def _where(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, datasets: Sequence[str] | None = None
) -> tuple[str, list[Any], str]:
    params: list[Any] = [tenant]
    clauses = ["tenant = ?", _in("entity_id", entity_ids, params), "kind >= 0"]
    if attrs is not None:
        clauses.append(_in("attr", attrs, params))
    if datasets is not None:
        clauses.append(_in("dataset_id", datasets, params))
    times, column = time_clauses(rng, _param(params))
    return " AND ".join(clauses + times), params, column


def _param(params: list[Any]) -> Callable[[int], str]:
    def place(value: int) -> str:
        params.append(value)
        return "?"

    return place


# the members of a rollup read after (entity_id, attr, bucket), summed per bucket or as the rows are: those of
# RollupBucket, or those of Bucket (aggregate without distinctCount, read in its shape: no second tuple per row)
_SUMMED = {
    "rollup": "sum(n), sum(n_num), sum(n_pure), sum(n_int), sum(n_ds), sum(s), min(lo), max(hi), sum(sq)",
    "bucket": "sum(n), 0, sum(n_num), sum(s), min(lo), max(hi), sum(sq)",
}
_AS_IS = {"rollup": "n, n_num, n_pure, n_int, n_ds, s, lo, hi, sq", "bucket": "n, 0, n_num, s, lo, hi, sq"}


def _rollup_query(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, datasets: Sequence[str] | None, pl: Plan,
    bucket: Callable[[str], tuple[str, list[Any]]], hourly: bool = False, shape: str = "rollup",
) -> tuple[str, list[Any], str | None]:
    """Rollup rows of the whole hours and instance rows of the partial ones, summed per (entity, attribute, bucket).

    `hourly`: each bucket is one hour (a calendar hour, or periods of an hour from an hour-aligned origin), so
    that the bucket follows the hour one to one: grouped by the hour, in the order of the rollup key (no sort).
    Then, without partial hours, also the SQL of the rollup rows as they are (third member): the answer
    itself wherever no two of them share an (entity, attribute, hour), i.e. one datasetId and one observed
    flag per hour, which SQL's sums over one row give back unchanged (query18). One entity, attribute or
    datasetId is compared with =, not looked up in a json_each list.
    """

    def common(prefix: str) -> tuple[list[str], list[Any]]:
        clauses = [f"{prefix}tenant = ?"]
        args: list[Any] = [tenant]
        for column, values in (("entity_id", entity_ids), ("attr", attrs), ("dataset_id", datasets)):
            if values is not None:
                clauses.append(_in(f"{prefix}{column}", values, args))
        return clauses, args

    b_sql, b_args = bucket("hour_us")
    clauses, args = common("")
    if pl.observed:
        clauses.append("observed = 1")
    if pl.hours_from is not None:
        clauses.append("hour_us >= ?")
        args.append(pl.hours_from)
    if pl.hours_to is not None:
        clauses.append("hour_us < ?")
        args.append(pl.hours_to)
    parts = [(f"SELECT entity_id, attr, hour_us AS h, {b_sql} AS b, n, n_num, n_pure, n_int,"
              f" CASE WHEN dataset_id <> '' THEN n ELSE 0 END AS n_ds, sum AS s, min AS lo, max AS hi, sumsq AS sq"
              f" FROM temporal_rollup WHERE {' AND '.join(clauses)}")]
    params: list[Any] = [*b_args, *args]
    for start, end in pl.edges:
        h_sql = hour_sql("i.key_us")
        e_sql, e_args = bucket(h_sql)
        clauses, args = common("i.")
        clauses.append("i.kind = 0")
        if pl.observed:
            clauses.append("i.observed_us IS NOT NULL")
        clauses += ["i.key_us >= ?", "i.key_us < ?"]
        args += [start, end]
        parts.append(
            f"SELECT i.entity_id, i.attr, {h_sql}, {e_sql}, 1, i.value_num IS NOT NULL, {_PURE.format(r='i')},"
            f" {_INT.format(r='i')}, i.dataset_id <> '', i.value_num, i.value_num, i.value_num, i.value_num * i.value_num"
            f" FROM temporal_instances AS i WHERE {' AND '.join(clauses)}"
        )
        params += [*e_args, *args]
    rows = " UNION ALL ".join(parts)
    key = "h" if hourly else "b"
    sql = (f"SELECT entity_id, attr, b, {_SUMMED[shape]} FROM ({rows}) GROUP BY entity_id, attr, {key}"
           f" ORDER BY entity_id, attr, {key}")
    as_is = (f"SELECT entity_id, attr, b, {_AS_IS[shape]} FROM ({rows}) ORDER BY entity_id, attr, h"
             if hourly and not pl.edges else None)
    return sql, params, as_is


def _rollup_rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any], as_is: str | None) -> list[Any]:
    """The rows of a rollup read (_rollup_query): those of `as_is` when no two share a bucket, else the summed ones."""
    if as_is is not None:
        rows = conn.execute(as_is, params).fetchall()
        if len({(r[0], r[1], r[2]) for r in rows}) == len(rows):
            return rows
    return conn.execute(sql, params).fetchall()


# what a read selects to rebuild an instance document (model.rebuild_instance), from the view; _ROW_STORED
# the same from temporal_rows
STORED = "instance, value_json, observed_us, created_us, modified_us, deleted_us, value_num"
_ROW_STORED = f"{INSTANCE.format(r='')}, {VALUE_JSON.format(r='')}, {_ROW_TIMES['observed_us']}, {_ROW_TIMES['created_us']}, modified_us, deleted_us, value_num"


def _hit(r: tuple[Any, ...]) -> InstanceHit:
    return InstanceHit(r[0], r[1], r[2], r[3], r[4], value_text(r[5], r[10]), r[6], r[7], r[8], r[9])


def _per_series(
    conn: sqlite3.Connection, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
    datasets: Sequence[str] | None, per_attr: int, newest: bool, total: int | None,
) -> list[InstanceHit]:
    """SQLiteHistory.instances one series at a time: each its own ORDER BY ... LIMIT on the (sid, key) index,
    the series of one attribute (one per datasetId) then merged."""
    order = "DESC" if newest else "ASC"
    bounds: list[Any] = []
    times, column = time_clauses(rng, _param(bounds), _ROW_TIMES)
    clauses = ["sid = ?", "kind >= 0", *times]
    rows_sql = (f"SELECT iid, {column}, {_ROW_STORED} FROM temporal_rows WHERE {' AND '.join(clauses)}"
                f" ORDER BY {column} {order}, iid {order} LIMIT ?")
    series_sql = "SELECT attr, sid FROM temporal_series WHERE tenant = ? AND entity_id = ?"
    series_args: list[Any] = []
    if attrs is not None:
        series_sql += " AND attr IN (SELECT value FROM json_each(?))"
        series_args.append(_json(attrs))
    if datasets is not None:
        series_sql += " AND dataset_id IN (SELECT value FROM json_each(?))"
        series_args.append(_json(datasets))
    # the members of one series in the entity's change rows: the entity's changes by key time (the key's
    # order: lastN reads back from the newest until it has enough, not the whole history), each one's member
    # of that sid; by modifiedAt (timeproperty), the entity's changes in the range, sorted
    member_bounds: list[Any] = []
    member_times, member_column = time_clauses(rng, _param(member_bounds), _MEMBER_TIMES)
    member_order = f"{member_column} {order}" + ("" if member_column == "key_us" else f", iid0 {order}")
    members_sql = (f"SELECT c.iid0 + j.key, {member_column}, {MEMBER_DOC}, {MEMBER_JSON}, c.key_us,"
                   f" {MEMBER_CREATED}, c.modified_us, NULL, {MEMBER_NUM} FROM temporal_changes AS c"
                   " JOIN temporal_change_shapes AS h ON h.shape = c.shape JOIN json_each(h.sids) AS j"
                   f" WHERE {' AND '.join(['c.eid = ?', 'j.value = ?', *member_times])}"
                   f" ORDER BY {member_order} LIMIT ?")
    hits: list[InstanceHit] = []
    for entity_id in dict.fromkeys(entity_ids):
        by_attr: dict[str, list[int]] = {}
        for attr, sid in conn.execute(series_sql, (tenant, entity_id, *series_args)):
            by_attr.setdefault(attr, []).append(sid)
        eid_row = conn.execute(_EID_LOOKUP, (tenant, entity_id)).fetchone() if by_attr else None
        for attr, sids in by_attr.items():
            found = [InstanceHit(r[0], entity_id, attr, r[1], r[2], value_text(r[3], r[8]), r[4], r[5], r[6], r[7])
                     for sid in sids for r in conn.execute(rows_sql, (sid, *bounds, per_attr))]
            if eid_row is not None:
                packed = [InstanceHit(r[0], entity_id, attr, r[1], r[2], value_text(r[3], r[8]), r[4], r[5], r[6], r[7])
                          for sid in sids for r in conn.execute(members_sql, (eid_row[0], sid, *member_bounds, per_attr))]
                if packed:
                    found.extend(packed)
                    sids = [*sids, 0]  # more than one source: merged below
            if len(sids) > 1:
                found.sort(key=lambda h: (h.time_us, h.iid), reverse=newest)
                del found[per_attr:]
            hits.extend(found)
    if total is not None:
        hits.sort(key=lambda h: (h.time_us, h.iid), reverse=newest)
        hits = hits[:total]
    hits.sort(key=lambda h: (h.entity_id, h.attr, h.time_us, h.iid))
    return hits


def _add_column(conn: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """`table`.`column`, added in place to a file that predates it (SQLite has no ADD COLUMN IF NOT EXISTS)."""
    if any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})")):
        return
    try:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    except sqlite3.OperationalError as exc:  # another process added it between the check and here
        if "duplicate column" not in str(exc):
            raise


def _migrate(conn: sqlite3.Connection) -> None:
    """History's tables, in one transaction of the migration runner (storage.migrate)."""
    _migrate_former_layout(conn)
    for sql in SCHEMA:
        conn.execute(sql)
    # temporal_changes.created_us (sqlunit21: the members' createdAt, NULL where it is modifiedAt) on a file of
    # sqlrow21 (NULL on its rows: their members' createdAt was their modifiedAt); before the view
    # (_copy_former_rows), which reads it
    _add_column(conn, "temporal_changes", "created_us", "INTEGER")
    _copy_former_rows(conn)
    _add_column(conn, "temporal_entities", "service_path", "TEXT")
    _setup_rollup(conn)



# --- change rows (issue 16, sqlrow21) ---------------------------------------------------------------------

_CHANGE_ROWS = "INSERT INTO temporal_changes (eid, key_us, iid0, modified_us, shape, vals, created_us)"
_EID_LOOKUP = "SELECT eid FROM temporal_change_keys WHERE tenant = ? AND entity_id = ?"
_EIDS_LOOKUP = ("SELECT k.tenant, k.entity_id, k.eid FROM json_each(?) AS p"
                " CROSS JOIN temporal_change_keys AS k ON k.tenant = p.value ->> 0 AND k.entity_id = p.value ->> 1")
# the stored change rows at some (eid, key_us), given as a JSON array of pairs: seeks in C, one statement
_STORED_CHANGES = ("SELECT c.eid, c.key_us, c.iid0, c.modified_us, h.sids, c.vals, h.docs, c.created_us FROM json_each(?) AS p"
                   " CROSS JOIN temporal_changes AS c ON c.eid = p.value ->> 0 AND c.key_us = p.value ->> 1"
                   " CROSS JOIN temporal_change_shapes AS h ON h.shape = c.shape")
# the value instances of temporal_rows at some (sid, key_us), likewise
_STORED_ROWS = ("SELECT r.sid, r.key_us FROM json_each(?) AS p"
                " CROSS JOIN temporal_rows AS r ON r.sid = p.value ->> 0 AND r.key_us = p.value ->> 1 AND r.kind = 0")


_KEYS_ROWS = "INSERT INTO temporal_change_keys (tenant, entity_id)"
_KEYS_MADE = " RETURNING eid, tenant, entity_id"


def _eids(conn: sqlite3.Connection, known: dict[tuple[str, str], int], keys: Sequence[tuple[str, str]],
          make: bool, fresh: set[int] | None = None) -> dict[tuple[str, str], int]:
    """The eids of the entities `keys` (`known` caches them), made where `make` and new, else left out.

    Those not cached are looked up in one statement: the rows of an entity that has no change row (numbers
    with a unit, texts) ask for its eid at every write, and it has none. Those made are made in a few
    statements (multi-row INSERT ... RETURNING, keyed), their eids added to `fresh` (no change row holds
    one yet)."""
    out: dict[tuple[str, str], int] = {}
    missing: list[tuple[str, str]] = []
    for k in keys:
        eid = known.get(k)
        if eid is not None:
            out[k] = eid
        elif k not in out:
            missing.append(k)
            out[k] = 0
    if missing:
        for tenant, entity_id, eid in conn.execute(_EIDS_LOOKUP, (orjson.dumps(missing).decode(),)):
            out[(tenant, entity_id)] = known[(tenant, entity_id)] = int(eid)
        absent = [k for k in missing if not out[k]]
        if absent and make:
            # no conflict can happen: the write lock is held and the look-up above found none of them
            for eid, tenant, entity_id in insert_rows_returning(conn, _KEYS_ROWS, absent, _KEYS_MADE):
                out[(tenant, entity_id)] = known[(tenant, entity_id)] = int(eid)
                if fresh is not None:
                    fresh.add(int(eid))
        elif absent:
            for k in absent:
                del out[k]
    return out


# the change rows of one entity holding a member of some series (a JSON array of sids)
_ENTITY_CHANGES = ("SELECT c.key_us, c.iid0, c.modified_us, h.sids, c.vals, h.docs, c.created_us FROM temporal_changes AS c"
                   " JOIN temporal_change_shapes AS h ON h.shape = c.shape WHERE c.eid = ?"
                   " AND EXISTS (SELECT 1 FROM json_each(h.sids) AS j WHERE j.value IN (SELECT value FROM json_each(?)))")
# the change row of one entity holding instance `iid` (no index on iid: the entity's changes are read, as
# temporal_rows' series are for an iid)
_CHANGE_OF_IID = ("SELECT c.key_us, c.iid0, c.modified_us, h.sids, c.vals, h.docs, c.created_us FROM temporal_changes AS c"
                  " JOIN temporal_change_shapes AS h ON h.shape = c.shape WHERE c.eid = ? AND c.iid0 <= ?"
                  " AND c.iid0 + json_array_length(c.vals) > ?")


def _json_ints(values: Iterable[int]) -> str:
    return orjson.dumps(list(values)).decode()


def _docs_text(docs: Sequence[bytes | None]) -> str:
    """temporal_change_shapes.docs of members with these stored documents (None: the plain one)."""
    if not any(docs):
        return ""
    return orjson.dumps([None if d is None else d.decode() for d in docs]).decode()


_SHAPE_ROWS = "INSERT INTO temporal_change_shapes (sids, docs)"
_SHAPES_MADE = " RETURNING shape, sids, docs"


def _shape(conn: sqlite3.Connection, shapes: dict[str, int], sids: list[int], docs: Sequence[bytes | None] = ()) -> int:
    """The shape id of the sids `sids` with stored documents `docs` (none: all plain; `shapes` caches them
    by their JSON texts), made where new."""
    shape = _shape_or_later(conn, shapes, sids, docs)
    assert type(shape) is int
    return shape


def _shape_or_later(conn: sqlite3.Connection, shapes: dict[str, int], sids: list[int], docs: Sequence[bytes | None] = (),
                    fresh: frozenset[int] | set[int] = frozenset(),
                    later: dict[str, tuple[str, str]] | None = None) -> int | str:
    """The shape id of the sids `sids` with stored documents `docs` (none: all plain; `shapes` caches them
    by their JSON texts), made where new.

    A shape holding a sid of `fresh` (a series made in this write) is new: not looked for (each entity has
    shapes of its own: a batch creating 1,000 entities makes 1,000). With `later`, such a shape is not made
    here either: its cache key is returned, the shape added to `later` for `_make_shapes` (one statement for
    the batch's new shapes, not one each)."""
    text, docs_text = orjson.dumps(sids).decode(), _docs_text(docs)
    cached = f"{text}\n{docs_text}" if docs_text else text
    shape = shapes.get(cached)
    if shape is None:
        row = None
        if not fresh or fresh.isdisjoint(sids):
            row = conn.execute("SELECT shape FROM temporal_change_shapes WHERE sids = ? AND docs = ?",
                               (text, docs_text)).fetchone()
        elif later is not None:
            later[cached] = (text, docs_text)
            return cached
        if row is None:
            row = conn.execute("INSERT INTO temporal_change_shapes (sids, docs) VALUES (?, ?) RETURNING shape",
                               (text, docs_text)).fetchone()
        shape = shapes[cached] = int(row[0])
    return shape


def _make_shapes(conn: sqlite3.Connection, shapes: dict[str, int], later: dict[str, tuple[str, str]]) -> None:
    """The shapes `_shape` left to make (cache key -> sids and docs texts), made and cached; none is stored yet
    (each holds a series made in this write), none twice (keyed by their texts)."""
    if not later:
        return
    made = {(sids, docs): int(shape) for shape, sids, docs in insert_rows_returning(conn, _SHAPE_ROWS, list(later.values()),
                                                                                    _SHAPES_MADE)}
    for cached, key in later.items():
        shapes[cached] = made[key]


def _take_member(conn: sqlite3.Connection, shapes: dict[str, int], tenant: str, entity_id: str, attr: str,
                 iid: int) -> tuple[int, int, int, int, Member, bytes | None] | None:
    """Remove instance `iid` of (entity, attr) from its change row, if it is a member of one: its sid, key time,
    modifiedAt, createdAt, value and stored document (None: the plain one), or None."""
    eid = conn.execute(_EID_LOOKUP, (tenant, entity_id)).fetchone()
    if eid is None:
        return None
    row = conn.execute(_CHANGE_OF_IID, (eid[0], iid, iid)).fetchone()
    if row is None:
        return None
    have = _Stored(eid[0], *row)
    p = iid - have.iid0
    sid, value, doc = have.sids[p], have.vals[p], have.docs[p]
    if sid == 0 or conn.execute("SELECT 1 FROM temporal_series WHERE sid = ? AND tenant = ? AND entity_id = ? AND attr = ?",
                                (sid, tenant, entity_id, attr)).fetchone() is None:
        return None
    have.leave(p)
    have.save(conn, shapes)
    return sid, have.key_us, have.modified_us, have.created_us, value, doc


class _Stored:
    """A stored change row as _place reads and changes it: its members' sids (its shape) and values."""

    __slots__ = ("changed", "created_us", "docs", "eid", "iid0", "key_us", "left", "modified_us", "sids", "text", "vals")

    def __init__(self, eid: int, key_us: int, iid0: int, modified_us: int, sids: str, text: str, docs: str,
                 created_us: int | None) -> None:
        self.eid, self.key_us, self.iid0, self.modified_us, self.text = eid, key_us, iid0, modified_us, text
        self.created_us = modified_us if created_us is None else created_us  # as read (MEMBER_CREATED)
        self.sids: list[int] = orjson.loads(sids)
        self.vals: list[Any] = orjson.loads(text)
        # the members' stored documents, None for the plain one (MEMBER_DOC)
        self.docs: list[bytes | None] = ([None] * len(self.sids) if docs == "" else
                                         [None if d is None else d.encode() for d in orjson.loads(docs)])
        self.changed = False  # a value changed: vals written again
        self.left = False  # a member left or its document changed: the shape too

    def position(self, sid: int) -> int | None:
        try:
            return self.sids.index(sid)
        except ValueError:
            return None

    def leave(self, p: int) -> None:
        """The member at `p` leaves the row (sid 0, no value): its position, and so its neighbours' iids, stay."""
        self.sids[p] = 0
        self.vals[p] = None
        self.docs[p] = None
        self.changed = self.left = True

    def save(self, conn: sqlite3.Connection, shapes: dict[str, int]) -> None:
        """This row as changed: written again, or deleted when no member is left."""
        if not any(self.sids):
            conn.execute("DELETE FROM temporal_changes WHERE eid = ? AND key_us = ?", (self.eid, self.key_us))
        elif self.left:
            conn.execute("UPDATE temporal_changes SET modified_us = ?, created_us = ?, shape = ?, vals = ?"
                         " WHERE eid = ? AND key_us = ?",
                         (self.modified_us, self._created(), _shape(conn, shapes, self.sids, self.docs),
                          orjson.dumps(self.vals).decode(), self.eid, self.key_us))
        else:
            conn.execute("UPDATE temporal_changes SET modified_us = ?, created_us = ?, vals = ? WHERE eid = ? AND key_us = ?",
                         (self.modified_us, self._created(), orjson.dumps(self.vals).decode() if self.changed else self.text,
                          self.eid, self.key_us))

    def _created(self) -> int | None:
        """temporal_changes.created_us as stored: NULL where it is modifiedAt."""
        return None if self.created_us == self.modified_us else self.created_us


def _place(conn: sqlite3.Connection, entities: dict[tuple[str, str], int], shapes: dict[str, int],
           known: dict[SeriesKey, int], changes: Sequence[Change], rest: Sequence[HistoryRow], first: int,
           fresh: frozenset[int] | set[int] = frozenset(),
           ) -> tuple[list[tuple[HistoryRow, int | None]], list[tuple[Any, ...]], int]:
    """Where each instance goes: the rows for temporal_rows (with the iid of a member moved out of a change
    row, or None: a new number), the new change rows, and the next free iid (from `first`).

    One instance per (sid, key_us, kind) across both tables:
    - a plain reading whose instance is a row of temporal_rows (a file written before, a member moved out)
      stays there: the upsert replaces it, its iid kept;
    - one that is a member of the stored change at its (entity, key time): replaced there, in place, when the
      change keeps one modifiedAt (the same modifiedAt, or every member written again with a new one: a
      batch upsert of the same readings); otherwise moved out to temporal_rows with its iid;
    - one that meets a stored change without being a member of it: temporal_rows, a new iid (a member's iid
      is iid0 + its position: none can be added);
    - the others of an entity change: a new change row, consecutive iids from the counter, where they are
      two or more (group_changes: a lone reading, a single-attribute PATCH, is a row of temporal_rows as
      before; so is one left alone here by its neighbours' going to temporal_rows);
    - a row that is not a plain reading and meets a member: the member is moved out, the row replaces it.

    `fresh`: the sids of the series made in this write; nothing is stored for them, nor for the entities
    whose eid is made here: neither is looked for (a batch upsert that creates its entities reads nothing).
    """
    nxt = first
    placed: list[tuple[HistoryRow, int | None]] = []
    new_changes: list[tuple[Any, ...]] = []
    later: dict[str, tuple[str, str]] = {}  # the new shapes of new entities, made together (_make_shapes)
    # value rows of the default instance that are not plain readings may meet a member of a change row
    others = [r for r in rest if r.kind == 0 and r.dataset_id == ""]
    made: set[int] = set()  # the eids made now: no change row holds them
    eids = _eids(conn, entities, [(c.tenant, c.entity_id) for c in changes], True, made) if changes else {}
    if others:
        eids.update(_eids(conn, entities, [(r.tenant, r.entity_id) for r in others], False))
    if not eids:  # no change row written now or met: every row as before
        return [(r, None) for r in rest], new_changes, nxt
    keys = {(e, c.key_us) for c in changes if (e := eids[(c.tenant, c.entity_id)]) not in made}
    keys.update((e, r.key_us) for r in others if (e := eids.get((r.tenant, r.entity_id), 0)) and e not in made)
    stored = {} if not keys else {
        (e, k): _Stored(e, k, i, m, h, v, d, cr)
        for e, k, i, m, h, v, d, cr in conn.execute(_STORED_CHANGES, (orjson.dumps(list(keys)).decode(),))}
    in_rows: set[tuple[int, int]] = set()
    if changes:
        pairs = [(sid, c.key_us) for c in changes for r in c.rows
                 if (sid := known[(r.tenant, r.entity_id, r.attr, "")]) not in fresh]
        if pairs:
            in_rows = {(r[0], r[1]) for r in conn.execute(_STORED_ROWS, (orjson.dumps(pairs).decode(),))}
    touched: dict[tuple[int, int], _Stored] = {}
    for c in changes:
        eid = eids[(c.tenant, c.entity_id)]
        have = stored.get((eid, c.key_us))
        sids: list[int] = []
        values: list[Member] = []
        docs: list[bytes | None] = []
        alone: list[HistoryRow] = []
        hits: list[tuple[int, Member, bytes | None, HistoryRow]] = []
        for r, value, doc in zip(c.rows, c.values, c.docs, strict=True):
            sid = known[(r.tenant, r.entity_id, r.attr, "")]
            p = None if have is None else have.position(sid)
            if (sid, c.key_us) in in_rows or (have is not None and p is None):
                placed.append((r, None))
            elif p is None:
                sids.append(sid)
                values.append(value)
                docs.append(doc)
                alone.append(r)
            else:
                hits.append((p, value, doc, r))
        if len(sids) == 1:  # one reading: as a row of temporal_rows
            placed.append((alone[0], None))
        elif sids:
            new_changes.append((eid, c.key_us, nxt, c.modified_us, _shape_or_later(conn, shapes, sids, docs, fresh, later),
                                orjson.dumps(values).decode(), c.created_us))
            nxt += len(sids)
        if have is None or not hits:
            continue
        live = {p for p, sid in enumerate(have.sids) if sid}
        created = c.modified_us if c.created_us is None else c.created_us
        if ((have.modified_us != c.modified_us or have.created_us != created)
                and {p for p, _, _, _ in hits} != live):
            for p, _, _, r in hits:  # members of one change cannot keep two modifiedAt: these move out
                have.leave(p)
                placed.append((r, have.iid0 + p))
            touched[(eid, c.key_us)] = have
            continue
        for p, value, doc, _ in hits:
            if have.vals[p] != value or type(have.vals[p]) is not type(value):
                have.vals[p] = value
                have.changed = True
            if have.docs[p] != doc:  # another unit, say: the member's document in a shape of its own
                have.docs[p] = doc
                have.left = True
        if have.changed or have.left or have.modified_us != c.modified_us or have.created_us != created:
            have.modified_us, have.created_us = c.modified_us, created
            touched[(eid, c.key_us)] = have
    for r in rest:
        have = None
        if r.kind == 0 and r.dataset_id == "" and (r.tenant, r.entity_id) in eids:
            have = stored.get((eids[(r.tenant, r.entity_id)], r.key_us))
        p = None if have is None else have.position(known[(r.tenant, r.entity_id, r.attr, "")])
        if have is None or p is None:
            placed.append((r, None))
            continue
        have.leave(p)  # the member moves out: this row replaces it in temporal_rows, its iid kept
        touched[(have.eid, have.key_us)] = have
        placed.append((r, have.iid0 + p))
    for have in touched.values():
        have.save(conn, shapes)
    if later:  # the shape of a new change row made with the others: its cache key until now
        _make_shapes(conn, shapes, later)
        new_changes = [row if type(row[4]) is int else (*row[:4], shapes[row[4]], *row[5:]) for row in new_changes]
    return placed, new_changes, nxt


INLINE_ROWS = 64
"""A `write_added` of at most this many rows (a notification of a few entities) may run on the caller's thread."""


class SQLiteHistory(HistoryStorage):
    """History tables in a SQLite file: writes on the file's writer thread, reads on a thread of their own."""

    tables = Schema("history", sqlite=_migrate)
    groups_writes = True  # the file's writer thread commits the jobs queued on it together

    def __init__(self, path: str | Path, *, db: SQLiteDatabase | None = None, cache_entries: int | None = None) -> None:
        self.path = str(path)
        self._db = db if db is not None else SQLiteDatabase(DatabaseUrl.sqlite(self.path))
        self._reads: SQLiteThread | None = None
        # series key -> sid, as committed (series rows are never deleted; emptied when a write fails, whose
        # new series rolled back); read and written inside the file's write transactions only (on the writer
        # thread, or on the loop for an inline write: never both at once, see SQLiteThread.tx)
        self._series: dict[SeriesKey, int] = {}
        # (tenant, entity) -> eid of temporal_change_keys, likewise (never deleted, emptied on a failed write)
        self._entities: dict[tuple[str, str], int] = {}
        self._shapes: dict[str, int] = {}  # the JSON text of a shape's sids -> its id, likewise
        # each of the three at most this many entries between writes (storage.trimmed: the newest half kept, at the
        # end of a write transaction, when no write holds them; a key evicted is looked up again, as a new one is)
        self.cache_entries = cache_entries_from_env() if cache_entries is None else cache_entries

    async def open(self) -> None:
        await self._db.open([self.tables])
        try:
            self._reads = await self._db.open_reader(
                "sqlite-history", pragmas=("synchronous=NORMAL", "busy_timeout=30000", "cache_size=-64000"))
        except BaseException:
            await self._db.close()
            raise

    async def close(self) -> None:
        if self._reads is not None:
            reads, self._reads = self._reads, None
            await self._db.close_reader(reads)
            await self._db.close()

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False, inline: bool = False) -> T:
        if not write:
            if self._reads is None:
                raise RuntimeError("history is not open")
            return await self._reads.tx(fn, write=False)

        def run(conn: sqlite3.Connection) -> T:
            try:
                result = fn(conn)
                _refresh(conn)  # rollups exact before the commit
                # bounded here, the write's last use of them done (its sids and eids are its own dicts by now)
                bound = self.cache_entries
                self._series = trimmed(self._series, bound)
                self._entities = trimmed(self._entities, bound)
                self._shapes = trimmed(self._shapes, bound)
            except BaseException:
                self._series.clear()
                self._entities.clear()
                self._shapes.clear()
                raise
            return result

        # the file's writer, under its in-process write lock, in turn with the store's writes
        try:
            return await self._db.write(run, inline=inline)
        except BaseException:
            self._series.clear()  # the commit failed: series made in it are gone
            self._entities.clear()
            self._shapes.clear()
            raise

    def _store(self, conn: sqlite3.Connection, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        rows = unique_rows(rows)
        fresh: set[int] = set()  # the series made now: no instance is stored for them
        known = _sids(conn, self._series, [(r.tenant, r.entity_id, r.attr, r.dataset_id) for r in rows], fresh)
        # iids from the counter, read and moved in this transaction (so also with another process writing);
        # a row that meets a stored one keeps the stored iid (the upsert does not set it), its number unused
        # a SELECT then an UPDATE: one UPDATE ... RETURNING took 30 against 3-5 us (timeit, sqlite 3.40; sqlhist20)
        first = conn.execute("SELECT next FROM temporal_next_iid").fetchone()[0]
        # members with a stored document of their own too: the readings of the agents, with a unitCode (sqlunit21)
        changes, rest = group_changes(rows, docs=True)
        placed, new_changes, nxt = _place(conn, self._entities, self._shapes, known, changes, rest, first, fresh)
        # the instances that are rows of temporal_rows: iid None takes the next number
        values: list[tuple[Any, ...]] = []
        for r, iid in placed:
            if iid is None:
                iid, nxt = nxt, nxt + 1
            values.append((known[(r.tenant, r.entity_id, r.attr, r.dataset_id)], r.kind, r.key_us,
                           None if r.observed_us == r.key_us else r.observed_us, packed_created(r), r.modified_us,
                           r.deleted_us, r.value_num, packed_value(r), packed_instance(r.stored),
                           1 if r.observed_us == r.key_us else None, iid))
        if nxt != first:
            conn.execute("UPDATE temporal_next_iid SET next = ?", (nxt,))
        # multi-row VALUES: see broker.store.sqlite_rows for why not executemany or json_each
        insert_rows(conn, _CHANGE_ROWS, new_changes)
        insert_rows(conn, _INSERT_ROWS, values, _UPSERT)
        insert_rows(conn, _ENTITY_ROWS, [(e.tenant, e.entity_id, _json(e.types), e.deleted_us) for e in entities],
                    _ENTITY_CONFLICT)

    async def load_cursor(self, consumer: str) -> int:
        row = await self._tx(lambda c: c.execute("SELECT seq FROM temporal_cursors WHERE consumer = ?", (consumer,)).fetchone())
        return int(row[0]) if row else 0

    async def apply(self, consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        def run(c: sqlite3.Connection) -> None:
            self._store(c, entities, rows)
            c.execute(
                "INSERT INTO temporal_cursors VALUES (?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
                (consumer, seq),
            )

        await self._tx(run, write=True)

    async def write(self, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        await self._tx(lambda c: self._store(c, entities, rows), write=True)

    async def write_added(self, tenant: str, entities: Sequence[tuple[str, Sequence[str]]], rows: Sequence[HistoryRow],
                          paths: Mapping[str, str], *, current: str | None = None) -> bool:
        # one job on the file's writer (grouped with the writes queued beside it): the check, the stored types,
        # the rows, the entities and their service paths in one transaction (issue 16, notify18)
        added = added_types(entities)
        lookup = (_TYPES_OF_ONE, (tenant, next(iter(added)))) if len(added) == 1 else (_TYPES_OF, (tenant, _json(list(added))))

        def run(c: sqlite3.Connection) -> bool:
            if current is not None and c.execute(_BEHIND, (current,)).fetchone()[0]:
                return False
            stored = {r[0]: (orjson.loads(r[1]), r[2], r[3]) for r in c.execute(*lookup)}
            # an entity's row is written only where that changes it: new, deleted, a type added, another
            # path; a notification of a known entity left it as it was, rewritten (issue 16, sqlhist20)
            changed: list[EntityRow] = []
            for eid, types in added.items():
                have = stored.get(eid)
                merged = merged_types(None if have is None else have[0], types)
                if have is None or have[1] is not None or merged != have[0]:
                    changed.append(EntityRow(tenant, eid, merged, None))
            self._store(c, changed, rows)
            updates = [(p, tenant, i) for i, p in paths.items()
                       if i in added and (i not in stored or stored[i][2] != p)]
            if updates:
                c.executemany(_SET_PATH, updates)
            return True

        # a small write at once on the event loop's thread when the writer is free and has been idle: no hand-over
        # to it and back (SQLiteThread.tx's inline; issue 16, sqlnotify23); a large one stays off the loop
        return await self._tx(run, write=True, inline=len(rows) <= INLINE_ROWS)

    async def entities(self, tenant: str, *, ids: Sequence[str] | None = None,
                       types_any: Sequence[str] | None = None) -> list[EntityRow]:
        sql = "SELECT entity_id, types, deleted_us FROM temporal_entities WHERE tenant = ?"
        params: list[Any] = [tenant]
        if ids is not None:
            sql += " AND entity_id IN (SELECT value FROM json_each(?))"
            params.append(_json(ids))
        if types_any is not None:  # decided in SQLite: no row of another type becomes a Python object
            sql += " AND EXISTS (SELECT 1 FROM json_each(types) WHERE value IN (SELECT value FROM json_each(?)))"
            params.append(_json(types_any))
        sql += " ORDER BY entity_id"
        return await self._tx(lambda c: [EntityRow(tenant, r[0], orjson.loads(r[1]), r[2]) for r in c.execute(sql, params)])

    async def entity(self, tenant: str, entity_id: str) -> EntityRow | None:
        sql = "SELECT types, deleted_us FROM temporal_entities WHERE tenant = ? AND entity_id = ?"
        row = await self._tx(lambda c: c.execute(sql, (tenant, entity_id)).fetchone())
        return None if row is None else EntityRow(tenant, entity_id, orjson.loads(row[0]), row[1])

    async def instances(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, per_attr: int, newest: bool,
        *, total: int | None = None, datasets: Sequence[str] | None = None,
    ) -> list[InstanceHit]:
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        order = "DESC" if newest else "ASC"
        if total is not None and per_attr >= total:
            # no attribute can exceed the total: one ordered scan, no window
            sql = (f"SELECT iid, entity_id, attr, {column}, {STORED} FROM temporal_instances WHERE {where}"
                   f" ORDER BY {column} {order}, iid {order} LIMIT ?")
            args: tuple[Any, ...] = (*params, total)
        elif (rng.end is None if newest else rng.start is None) or len(set(entity_ids)) <= 4:
            # lastN (or firstN) open on the side read from: per (entity, attribute), an index seek and
            # LIMIT, instead of numbering every instance of the series (its whole history); and so for
            # a few entities in any range (a page of one entity: LIMIT reads the page, not the range)
            return await self._tx(lambda c: _per_series(c, tenant, entity_ids, attrs, rng, datasets, per_attr, newest, total))
        else:
            sql = (
                f"SELECT iid, entity_id, attr, t, {STORED} FROM (SELECT iid, entity_id, attr, {column} AS t, {STORED},"
                f" row_number() OVER (PARTITION BY entity_id, attr ORDER BY {column} {order}, iid {order}) AS rn"
                f" FROM temporal_instances WHERE {where}) WHERE rn <= ?"
            )
            args = (*params, per_attr)
            if total is not None:
                sql += f" ORDER BY t {order}, iid {order} LIMIT ?"
                args += (total,)
            else:
                sql += " ORDER BY entity_id, attr, t, iid"
        hits = await self._tx(lambda c: list(map(_hit, c.execute(_on(c, tenant, entity_ids, sql), args))))
        if total is not None:
            hits.sort(key=lambda h: (h.entity_id, h.attr, h.time_us, h.iid))
        return hits

    async def rollup(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        origin_us: int = 0, period_us: int = 0, *, unit: str | None = None, datasets: Sequence[str] | None = None,
    ) -> list[RollupBucket] | None:
        pl = plan(rng, origin_us, period_us)
        if pl is None:
            return None
        return await self._rolled(tenant, entity_ids, attrs, datasets, pl, origin_us, period_us, unit, "rollup")

    async def _rolled(self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None,
                      datasets: Sequence[str] | None, pl: Plan, origin_us: int, period_us: int, unit: str | None,
                      shape: str) -> list[Any]:
        """rollup's read, its rows as RollupBucket or (shape "bucket") as Bucket."""
        if unit is not None:
            def bucket(x: str) -> tuple[str, list[Any]]:
                return _unit_sql(unit, x), []
        elif period_us > 0:
            def bucket(x: str) -> tuple[str, list[Any]]:
                return f"(({x} - ?) / ?)", [origin_us, period_us]
        else:
            def bucket(x: str) -> tuple[str, list[Any]]:
                return "0", []
        hourly = unit == "hour" or (unit is None and period_us == HOUR_US)
        sql, params, as_is = _rollup_query(tenant, entity_ids, attrs, datasets, pl, bucket, hourly, shape)
        make = RollupBucket._make if shape == "rollup" else Bucket._make
        return await self._tx(lambda c: list(map(make, _rollup_rows(
            c, _on(c, tenant, entity_ids, sql), params, None if as_is is None else _on(c, tenant, entity_ids, as_is)))))

    async def aggregate(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, origin_us: int, period_us: int,
        *, datasets: Sequence[str] | None = None, distinct: bool = True,
    ) -> list[Bucket]:
        pl = None if distinct else plan(rng, origin_us, period_us)
        if pl is not None:
            return await self._rolled(tenant, entity_ids, attrs, datasets, pl, origin_us, period_us, None, "bucket")
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        bucket = f"(({column} - ?) / ?)" if period_us > 0 else "0"
        bparams = [origin_us, period_us] if period_us > 0 else []
        sql = (
            f"SELECT entity_id, attr, {bucket} AS b, count(*), {_DISTINCT}, count(value_num),"
            f" sum(value_num), min(value_num), max(value_num), sum(value_num * value_num)"
            f" FROM temporal_instances WHERE {where} AND kind = 0 GROUP BY entity_id, attr, b ORDER BY entity_id, attr, b"
        )
        return await self._tx(lambda c: list(map(Bucket._make, c.execute(_on(c, tenant, entity_ids, sql), (*bparams, *params)))))

    async def impure_attrs(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> set[str]:
        sql = ("SELECT DISTINCT attr FROM temporal_rollup WHERE tenant = ? AND entity_id IN (SELECT value FROM json_each(?))"
               " AND n_pure < n")
        args: list[Any] = [tenant, _json(entity_ids)]
        if rng.start is not None:
            sql += " AND hour_us >= ?"
            args.append(rng.start - rng.start % HOUR_US)
        if rng.end is not None:
            sql += " AND hour_us < ?"
            args.append(rng.end)
        return await self._tx(lambda c: {r[0] for r in c.execute(sql, args)})

    async def series(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> set[tuple[str, str]]:
        where, params, _ = _where(tenant, entity_ids, attrs, rng, datasets)
        sql = f"SELECT DISTINCT entity_id, attr FROM temporal_instances WHERE {where}"
        return await self._tx(lambda c: {(r[0], r[1]) for r in c.execute(_on(c, tenant, entity_ids, sql), params)})

    async def first_time(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> int | None:
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        sql = f"SELECT min({column}) FROM temporal_instances WHERE {where} AND kind = 0"
        row = await self._tx(lambda c: c.execute(_on(c, tenant, entity_ids, sql), params).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def delete_entity(self, tenant: str, entity_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM temporal_rows WHERE sid IN (SELECT sid FROM temporal_series WHERE tenant = ? AND entity_id = ?)",
                      (tenant, entity_id))
            c.execute("DELETE FROM temporal_changes WHERE eid = (SELECT eid FROM temporal_change_keys"
                      " WHERE tenant = ? AND entity_id = ?)", (tenant, entity_id))
            return c.execute("DELETE FROM temporal_entities WHERE tenant = ? AND entity_id = ?", (tenant, entity_id)).rowcount > 0

        return await self._tx(run, write=True)

    async def delete_instances(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> int:
        where, params, _ = _where(tenant, entity_ids, None, rng)
        # by the rows' keys (iid has no index: `iid IN (...)` would read every row of the file)
        sql = (f"DELETE FROM temporal_rows WHERE (sid, key_us, kind) IN"
               f" (SELECT sid, key_us, kind FROM temporal_instances WHERE {where})")
        # change rows: every member of one has the same times, so a row is in the range whole or not at all
        member_params: list[Any] = [tenant, _json(entity_ids)]
        times, _ = time_clauses(rng, _param(member_params), _MEMBER_TIMES)
        changes = ("FROM temporal_change_keys AS k CROSS JOIN temporal_changes AS c ON c.eid = k.eid"
                   " CROSS JOIN temporal_change_shapes AS h ON h.shape = c.shape"
                   f" WHERE {' AND '.join(['k.tenant = ?', 'k.entity_id IN (SELECT value FROM json_each(?))', *times])}")
        count = f"SELECT coalesce(sum((SELECT count(*) FROM json_each(h.sids) WHERE value <> 0)), 0) {changes}"
        drop = f"DELETE FROM temporal_changes WHERE (eid, key_us) IN (SELECT c.eid, c.key_us {changes})"

        def run(c: sqlite3.Connection) -> int:
            members = int(c.execute(count, member_params).fetchone()[0])
            c.execute(drop, member_params)
            return int(c.execute(sql, params).rowcount) + members

        return await self._tx(run, write=True)

    async def set_service_paths(self, tenant: str, paths: Mapping[str, str]) -> None:
        sql = "UPDATE temporal_entities SET service_path = ? WHERE tenant = ? AND entity_id = ?"
        rows = [(p, tenant, i) for i, p in paths.items()]
        if rows:
            def run(c: sqlite3.Connection) -> None:
                # the cursor must not leave the SQLite thread: freed on the event loop while the thread
                # runs the next statement, it made that statement fail (SQLITE_MISUSE, a 500 under 8 clients)
                c.executemany(sql, rows)

            await self._tx(run, write=True)

    async def service_paths(self, tenant: str) -> dict[str, str]:
        sql = "SELECT entity_id, service_path FROM temporal_entities WHERE tenant = ? AND service_path IS NOT NULL"
        return await self._tx(lambda c: {r[0]: r[1] for r in c.execute(sql, (tenant,))})

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, dataset_id: str | None) -> int:
        series = "SELECT sid FROM temporal_series WHERE tenant = ? AND entity_id = ? AND attr = ?"
        params: tuple[Any, ...] = (tenant, entity_id, attr)
        if dataset_id is not None:
            series += " AND dataset_id = ?"
            params += (dataset_id,)
        sql = f"DELETE FROM temporal_rows WHERE sid IN ({series})"

        def run(c: sqlite3.Connection) -> int:
            sids = {r[0] for r in c.execute(series, params)}
            removed = 0
            eid = c.execute(_EID_LOOKUP, (tenant, entity_id)).fetchone()
            if eid is not None and sids:  # the members of those series leave the entity's change rows
                for row in c.execute(_ENTITY_CHANGES, (eid[0], _json_ints(sids))).fetchall():
                    have = _Stored(eid[0], *row)
                    for p, sid in enumerate(have.sids):
                        if sid in sids:
                            have.leave(p)
                            removed += 1
                    have.save(c, self._shapes)
            return int(c.execute(sql, params).rowcount) + removed

        return await self._tx(run, write=True)

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        sql = ("DELETE FROM temporal_rows WHERE iid = ? AND sid IN"
               " (SELECT sid FROM temporal_series WHERE tenant = ? AND entity_id = ? AND attr = ?)")

        def run(c: sqlite3.Connection) -> bool:
            if c.execute(sql, (iid, tenant, entity_id, attr)).rowcount > 0:
                return True
            return _take_member(c, self._shapes, tenant, entity_id, attr, iid) is not None

        return await self._tx(run, write=True)

    async def get_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bytes | None:
        sql = f"SELECT {STORED} FROM temporal_instances WHERE iid = ? AND tenant = ? AND entity_id = ? AND attr = ?"
        row = await self._tx(lambda c: c.execute(_on(c, tenant, [entity_id], sql), (iid, tenant, entity_id, attr)).fetchone())
        return None if row is None else rebuild_instance(bytes(row[0]), value_text(row[1], row[6]), *row[2:6])

    async def replace_instance(self, tenant: str, entity_id: str, attr: str, iid: int, row: HistoryRow) -> bool:
        sql = (
            # every column as is (obs_key NULL); a createdAt read from modified_us (NULL) kept
            "UPDATE temporal_rows SET observed_us = ?, obs_key = NULL, modified_us = ?, value_num = ?, value_json = ?,"
            " instance = ?, created_us = CASE WHEN kind = 0 THEN coalesce(created_us, modified_us) ELSE created_us END"
            " WHERE iid = ? AND sid IN (SELECT sid FROM temporal_series WHERE tenant = ? AND entity_id = ? AND attr = ?)"
        )
        params = (row.observed_us, row.modified_us, row.value_num, row.value_json, row.instance, iid, tenant, entity_id, attr)

        def run(c: sqlite3.Connection) -> bool:
            if c.execute(sql, params).rowcount > 0:
                return True
            # a member of a change row: moved out to temporal_rows as it was (its iid), then replaced there
            taken = _take_member(c, self._shapes, tenant, entity_id, attr, iid)
            if taken is None:
                return False
            sid, key_us, modified_us, created_us, value, doc = taken
            c.execute(f"{_INSERT_ROWS} VALUES (?, 0, ?, NULL, ?, ?, NULL, ?, ?, ?, 1, ?)",
                      (sid, key_us, None if created_us == modified_us else created_us, modified_us,
                       None if value == KEY_DATETIME else value, KEY_DATETIME if value == KEY_DATETIME else None, doc, iid))
            return c.execute(sql, params).rowcount > 0

        return await self._tx(run, write=True)
