"""History on the PostgreSQL schema of the store, through the schema's shared pool (storage.database).

Instances are appended roughly in time order, so a BRIN index on each time
column is a few pages that prune whole block ranges of a month-long scan;
the unique b-tree on (series id, key time, kind) serves the usual
per-series range and lastN scans, observedAt ones included (the key
time is observedAt wherever an instance has one). Instance documents are bytea (orjson
bytes): only Python reads them, so the server never parses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from broker.temporal.model import (
    DELETION,
    VALUE,
    EntityRow,
    HistoryRow,
    packed_created,
    rebuild_instance,
    unique_rows,
    value_text,
)
from broker.temporal.rollup import DAY_US, HOUR_US, Plan, RollupBucket, hour_sql, plan
from broker.temporal.storage import (
    PLAIN_INSTANCE,
    Bucket,
    HistoryStorage,
    InstanceHit,
    TimeRange,
    added_types,
    cache_entries_from_env,
    packed_instance,
    packed_value,
    time_clauses,
    trimmed,
)
from storage.database import PostgresDatabase
from storage.migrate import Schema
from storage.urls import DatabaseUrl


# The instances of a series (tenant, entity, attribute, datasetId) are rows of temporal_rows under its
# integer sid (temporal_series): the text keys once per series instead of in every row and index entry.
# temporal_instances is a view of both with the former table's columns, which the reads query.
# A row leaves out what another of its columns holds (histbytes16), the view reads it back:
#   created_us   NULL on a value row (kind 0) whose createdAt is its modifiedAt
#   value_json   NULL where value_num gives it back exactly (a JSON float: model.packed_value_json)
#   value_json   '' for a DateTime value that is key_us in whole seconds (storage.KEY_DATETIME, hist17)
#   instance     NULL for the stored document of a plain reading (storage.PLAIN_INSTANCE, hist17: 8 bytes of
#                a row of 88; the column's NOT NULL dropped in place, a metadata change)
#   observed_us  NULL with obs_key true where observedAt is key_us (hist17). obs_key sits after kind, in the
#                2 bytes of padding before key_us: the row is 8 bytes smaller. A table made before has obs_key
#                added at its end, where the flag and the 8 bytes saved share one padding to 8 bytes: no
#                smaller, no larger (histbytes16 measured that), until the table is made again
# A row written before keeps every column and reads the same.
# The unique b-tree is on (sid, kind, key_us), not (sid, key_us, kind) as before pgbytes22: the int2 between the
# int4 and the int8 packs in the int8's padding, an entry of 24 bytes instead of 32 (a fifth of the index, which
# was a third of the history's bytes). Its order is each kind's instances in key order: a read in key order
# takes each kind (VALUE, DELETION) in order and merges them (KINDS), a range without a kind names both, one
# descent each (an index condition, not a filter over the series' whole range). A schema made before has its
# index built again at its first open (a few seconds per million rows).
# iid has no b-tree (there was its primary key, 10 % of the history's bytes): iids grow with the rows'
# place in the heap, so a BRIN index finds an instance by its id in a few pages (EXPLAIN ANALYZE, 1M rows:
# 4 heap pages, 1.5 ms), the series id beside it; pages written since autovacuum last summarized them
# (autosummarize: each range of 8 pages as it fills) are read whole.
def instance_sql(column: str) -> str:
    """The SQL that reads `column` (temporal_rows.instance) back as the stored document (NULL: PLAIN_INSTANCE)."""
    return f"coalesce({column}, '\\x{PLAIN_INSTANCE.hex()}'::bytea)"


# value_json as read: the text of storage.key_datetime_json for KEY_DATETIME ('' is no JSON text); the rollup
# triggers and _PURE/_INT read the stored column: '' there is, as the text it stands for, no number
VALUE_JSON = ("CASE WHEN {r}value_json = '' THEN '{{\"@type\":\"DateTime\",\"@value\":\"' || to_char(to_timestamp({r}key_us"
              " / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || '\"}}' ELSE {r}value_json END")
CREATED = "coalesce({r}created_us, CASE WHEN {r}kind = 0 THEN {r}modified_us END)"
OBSERVED = "coalesce({r}observed_us, CASE WHEN {r}obs_key THEN {r}key_us END)"
# the time columns as the rows of temporal_rows (not the view) are read (storage.time_clauses)
_ROW_TIMES = {"created_us": CREATED.format(r=""), "observed_us": OBSERVED.format(r="")}
SCHEMA = """
CREATE TABLE IF NOT EXISTS temporal_series (sid serial PRIMARY KEY, tenant text COLLATE "C" NOT NULL,
    entity_id text COLLATE "C" NOT NULL, attr text COLLATE "C" NOT NULL, dataset_id text COLLATE "C" NOT NULL,
    UNIQUE (tenant, entity_id, attr, dataset_id));
CREATE TABLE IF NOT EXISTS temporal_rows (iid bigserial, sid integer NOT NULL, kind smallint NOT NULL, obs_key boolean,
    key_us bigint NOT NULL, observed_us bigint, created_us bigint, modified_us bigint, deleted_us bigint,
    value_num double precision, value_json text, instance bytea);
ALTER TABLE temporal_rows ALTER COLUMN instance DROP NOT NULL;
ALTER TABLE temporal_rows ADD COLUMN IF NOT EXISTS obs_key boolean;
CREATE UNIQUE INDEX IF NOT EXISTS temporal_rows_kind ON temporal_rows (sid, kind, key_us);
DROP INDEX IF EXISTS temporal_rows_series;
CREATE INDEX IF NOT EXISTS temporal_rows_modified_brin ON temporal_rows USING brin (modified_us);
CREATE INDEX IF NOT EXISTS temporal_rows_observed_brin ON temporal_rows USING brin (observed_us);
ALTER TABLE temporal_rows DROP CONSTRAINT IF EXISTS temporal_rows_pkey;
CREATE INDEX IF NOT EXISTS temporal_rows_iid_brin ON temporal_rows USING brin (iid)
    WITH (pages_per_range = 8, autosummarize = on);
CREATE TABLE IF NOT EXISTS temporal_entities (tenant text COLLATE "C" NOT NULL, entity_id text COLLATE "C" NOT NULL,
    types text[] NOT NULL, deleted_us bigint, PRIMARY KEY (tenant, entity_id));
CREATE TABLE IF NOT EXISTS temporal_cursors (consumer text PRIMARY KEY, seq bigint NOT NULL);
ALTER TABLE temporal_entities ADD COLUMN IF NOT EXISTS service_path text COLLATE "C";
DO $$ BEGIN
    CREATE TYPE temporal_row_in AS (sid integer, kind smallint, key_us bigint, observed_us bigint, created_us bigint,
        modified_us bigint, deleted_us bigint, value_num double precision, value_json text, instance bytea, obs_key boolean);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
"""
# a schema of the former layout (temporal_instances a table, text keys in every row): its rows move under
# series ids, iids kept (they are the instanceIds); its rollups stay, the same keys
_MIGRATE = """
INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)
    SELECT DISTINCT tenant, entity_id, attr, dataset_id FROM temporal_instances ORDER BY 1, 2, 3, 4;
INSERT INTO temporal_rows (iid, sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,
    value_json, instance) SELECT i.iid, s.sid, i.kind, i.key_us, i.observed_us, i.created_us, i.modified_us,
    i.deleted_us, i.value_num, i.value_json, i.instance FROM temporal_instances AS i JOIN temporal_series AS s
    ON s.tenant = i.tenant AND s.entity_id = i.entity_id AND s.attr = i.attr AND s.dataset_id = i.dataset_id ORDER BY i.iid;
SELECT setval(pg_get_serial_sequence('temporal_rows', 'iid'), coalesce((SELECT max(iid) FROM temporal_rows), 0) + 1, false);
DROP TABLE temporal_instances;
"""
_VIEW = """
CREATE OR REPLACE VIEW temporal_instances AS SELECT r.iid, s.tenant, s.entity_id, s.attr, s.dataset_id, r.kind, r.key_us,
    """ + OBSERVED.format(r="r.") + """ AS observed_us, """ + CREATED.format(r="r.") + """ AS created_us, r.modified_us, r.deleted_us, r.value_num,
    """ + VALUE_JSON.format(r="r.") + """ AS value_json,
    """ + instance_sql("r.instance") + """ AS instance, r.sid FROM temporal_rows AS r JOIN temporal_series AS s ON s.sid = r.sid;
"""
# hourly rollups (broker.temporal.rollup), kept by statement triggers over the transition tables: inserted
# value instances are added per hour; the hours of replaced or deleted ones are recomputed from the
# instances. Every trigger first takes one transaction lock per schema, so that a recomputation never
# races another transaction's additions to the same hour: history writes commit one at a time.
# (a NULL value_json is a JSON float: pure, not an integer)
_PURE = ("({r}value_num IS NOT NULL AND ({r}value_json IS NULL OR ({r}value_json NOT IN ('true', 'false')"
         " AND left({r}value_json, 1) <> '[')))")
_INT = ("({r}value_num IS NOT NULL AND {r}value_json IS NOT NULL AND {r}value_json NOT IN ('true', 'false')"
        " AND left({r}value_json, 1) <> '[' AND {r}value_json !~ '[.eE]')")
# PostgreSQL refuses a float8 product that overflows or underflows to zero ("value out of range"), where
# IEEE arithmetic (SQLite, Python) gives inf or 0: one reading of 1e200 or 2e-308 failed the whole history
# write, and every later one behind it. A square is taken only where it is safe: above 1e150 it counts as
# inf (1e8 squares of 1e150 still sum below float8's maximum, so r.sumsq + excluded.sumsq cannot overflow
# either), below 1e-160 as 0 (its true square is under 1e-320: nothing a sum of squares can show).
# A sum overflows the same way (two readings of 1e308 in one hour): a value above 1e300 is summed as
# +-inf, so that 1e8 of the others cannot reach float8's maximum (its min, max and instances are kept).
_SQUARE = ("CASE WHEN abs({v}) > 1e150 THEN 'Infinity'::float8 WHEN abs({v}) < 1e-160 THEN 0::float8"
           " ELSE {v} * {v} END")
_SUMMAND = "CASE WHEN abs({v}) > 1e300 THEN sign({v}) * 'Infinity'::float8 ELSE {v} END"
_AGGREGATES = (
    "count(*), count({r}value_num), sum({pure}::int), sum({int}::int), sum(" + _SUMMAND.format(v="{r}value_num")
    + "), min({r}value_num), max({r}value_num), sum(" + _SQUARE.format(v="{r}value_num") + ")"
)
# the columns of a row the rollups read: an update that leaves them all as they were changes no hour
_ROLLED = "sid, key_us, kind, value_num, value_json, observed_us, obs_key"
_LOCK = "PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || ':temporal_rollup', 0));"
# the hourly rollups live in temporal_hourly under the series id (pgbytes22): the text keys (tenant, entity,
# attribute, datasetId: ~130 bytes in the bench's rows, twice with the primary key) were in every rollup row and
# key entry. temporal_rollup is a view of it with the series' keys, the former table's columns in its order,
# which the reads query. sid and the two flags share the 8 bytes before hour_us (no padding of their own)
_HOURLY = "sid, observed, hour_us, n, n_num, n_pure, n_int, sum, min, max, sumsq"
_ADD = f"""INSERT INTO temporal_hourly AS r ({_HOURLY}) SELECT a.sid, (a.observed_us IS NOT NULL OR a.obs_key IS NOT NULL) AS o,
        {hour_sql("a.key_us")} AS h,
        {_AGGREGATES.format(r="a.", pure=_PURE.format(r="a."), int=_INT.format(r="a."))}
        FROM added AS a WHERE a.kind = 0{{skip}}
        GROUP BY a.sid, h, o
    ON CONFLICT (sid, hour_us, observed) DO UPDATE SET n = r.n + excluded.n, n_num = r.n_num + excluded.n_num,
        n_pure = r.n_pure + excluded.n_pure, n_int = r.n_int + excluded.n_int,
        sum = coalesce(r.sum + excluded.sum, r.sum, excluded.sum), min = least(r.min, excluded.min),
        max = greatest(r.max, excluded.max), sumsq = coalesce(r.sumsq + excluded.sumsq, r.sumsq, excluded.sumsq);"""
_REDONE = f"""
        AND NOT EXISTS (SELECT 1 FROM temporal_rollup_dirty_sid AS d WHERE d.sid = a.sid AND d.hour_us = {hour_sql("a.key_us")})"""
HOURLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS temporal_hourly (sid integer NOT NULL, observed boolean NOT NULL,
    impure boolean GENERATED ALWAYS AS (n_pure < n) STORED, hour_us bigint NOT NULL,
    n bigint NOT NULL, n_num bigint NOT NULL, n_pure bigint NOT NULL, n_int bigint NOT NULL, sum double precision,
    min double precision, max double precision, sumsq double precision, PRIMARY KEY (sid, hour_us, observed))
    WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS temporal_hourly_impure ON temporal_hourly (sid) WHERE impure;
"""
# a schema whose rollups are the former table (text keys): its rows move under their series' ids (every rollup
# row has its series: series are never deleted), then the table goes and the view takes its name
_HOURLY_MOVE = f"""
INSERT INTO temporal_hourly ({_HOURLY}) SELECT s.sid, r.observed, r.hour_us, r.n, r.n_num, r.n_pure, r.n_int, r.sum,
    r.min, r.max, r.sumsq FROM temporal_rollup AS r JOIN temporal_series AS s ON s.tenant = r.tenant
    AND s.entity_id = r.entity_id AND s.attr = r.attr AND s.dataset_id = r.dataset_id ORDER BY s.sid, r.hour_us;
DROP TABLE temporal_rollup;
"""
ROLLUP_SCHEMA = f"""
CREATE OR REPLACE VIEW temporal_rollup AS SELECT s.tenant, s.entity_id, s.attr, h.hour_us, s.dataset_id, h.observed,
    h.n, h.n_num, h.n_pure, h.n_int, h.sum, h.min, h.max, h.sumsq, h.impure, h.sid
    FROM temporal_hourly AS h JOIN temporal_series AS s ON s.sid = h.sid;
-- an hour's row is updated by every write to it: with free room on its page (fillfactor) and no indexed
-- column changed, the update is HOT (no new index entries, the old version pruned on the page). The
-- partial index's predicate was on n_pure < n, columns every update changes, which made each update a
-- new tuple in every index; `impure` (a stored column) changes only when the hour turns impure
-- an INSERT ... ON CONFLICT DO UPDATE fires its UPDATE statement trigger first: the hours it recomputed
-- (temporal_rollup_dirty_sid, marked with the statement's start in metropole.rollup_redone) already count the
-- rows this statement inserted, which are then not added again (they were counted twice before histbytes16)
CREATE OR REPLACE FUNCTION temporal_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    {_LOCK}
    IF current_setting('metropole.rollup_redone', true) IS NOT DISTINCT FROM statement_timestamp()::text THEN
        {_ADD.format(skip=_REDONE)}
    ELSE
        {_ADD.format(skip="")}
    END IF;
    RETURN NULL;
END $$;
-- joins by nested loop only (the function's own settings): the planner, blind to the temp table's size
-- (610 rows assumed, 200 distinct), hashed the DELETE's dirty hours with a scan of the whole rollup, which a
-- PATCH stream's history writes (a few dozen rewritten hours each) paid every time: 8-15 ms per write at
-- 11,000 rollup rows, half the statement (issue 16, pgpatch19). Each dirty hour is one probe of an index.
CREATE OR REPLACE FUNCTION temporal_rollup_recompute() RETURNS trigger LANGUAGE plpgsql
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$ BEGIN
    -- an INSERT ... ON CONFLICT DO UPDATE that met no conflict (every /v2/notify write, every new reading)
    -- fires this trigger too, with empty transition tables: nothing to recompute. The statement's rows are
    -- then all added by temporal_rollup_add (the mark of an earlier recomputation under the same statement
    -- start, as inside one function or one multi-statement query, cleared)
    IF NOT EXISTS (SELECT 1 FROM changed WHERE kind = 0) THEN
        IF TG_OP = 'UPDATE' THEN  -- (replaced exists in an UPDATE trigger only)
            IF NOT EXISTS (SELECT 1 FROM replaced WHERE kind = 0) THEN
                PERFORM set_config('metropole.rollup_redone', '', true);
                RETURN NULL;
            END IF;
        ELSE
            PERFORM set_config('metropole.rollup_redone', '', true);
            RETURN NULL;
        END IF;
    END IF;
    {_LOCK}
    -- the dirty hours by series id (pgbytes22; a session's table of text keys before is another shape: made
    -- again under a name of its own)
    CREATE TEMP TABLE IF NOT EXISTS temporal_rollup_dirty_sid (sid integer, hour_us bigint) ON COMMIT DELETE ROWS;
    -- DELETE, not TRUNCATE: a TRUNCATE gives the table a new file, which invalidates every cached plan that
    -- reads it (this function's and temporal_rollup_add's), so each call planned them all again (ms per call)
    DELETE FROM temporal_rollup_dirty_sid;
    -- An update's hours are those of the rows whose rolled-up columns it changed: the same instance written
    -- again with another modifiedAt (a batch upsert of the same readings, an agent's retry) changes none,
    -- and then nothing is recomputed, as SQLite's update trigger does (issue 16, batch19)
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO temporal_rollup_dirty_sid SELECT DISTINCT sid, {hour_sql("key_us")} FROM (
                (SELECT {_ROLLED} FROM changed WHERE kind = 0 EXCEPT SELECT {_ROLLED} FROM replaced)
                UNION ALL (SELECT {_ROLLED} FROM replaced WHERE kind = 0 EXCEPT SELECT {_ROLLED} FROM changed)
            ) AS m;
        IF NOT FOUND THEN
            PERFORM set_config('metropole.rollup_redone', '', true);
            RETURN NULL;
        END IF;
    ELSE
        INSERT INTO temporal_rollup_dirty_sid SELECT DISTINCT sid, {hour_sql("key_us")} FROM changed WHERE kind = 0;
    END IF;
    DELETE FROM temporal_hourly AS r USING (SELECT DISTINCT * FROM temporal_rollup_dirty_sid) AS d
        WHERE r.sid = d.sid AND r.hour_us = d.hour_us;
    -- each dirty hour's rows read through the (sid, key_us) index: a LATERAL subquery with its own GROUP BY
    -- is not flattened into a join, which the planner, blind to the temp table's size, ran as a scan of all
    -- temporal_rows (2.6 s per 1,000 entities re-upserted at 223,000 rows, growing with the history; pg18)
    INSERT INTO temporal_hourly ({_HOURLY}) SELECT d.sid, a.*
        FROM (SELECT DISTINCT * FROM temporal_rollup_dirty_sid) AS d CROSS JOIN LATERAL (
            SELECT (i.observed_us IS NOT NULL OR i.obs_key IS NOT NULL) AS o, d.hour_us,
                {_AGGREGATES.format(r="i.", pure=_PURE.format(r="i."), int=_INT.format(r="i."))}
            FROM temporal_rows AS i
            WHERE i.sid = d.sid AND i.key_us >= d.hour_us AND i.key_us < d.hour_us + {HOUR_US} AND i.kind = 0
            GROUP BY o) AS a;
    PERFORM set_config('metropole.rollup_redone', statement_timestamp()::text, true);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER temporal_rollup_insert AFTER INSERT ON temporal_rows
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION temporal_rollup_add();
CREATE OR REPLACE TRIGGER temporal_rollup_update AFTER UPDATE ON temporal_rows
    REFERENCING OLD TABLE AS changed NEW TABLE AS replaced FOR EACH STATEMENT EXECUTE FUNCTION temporal_rollup_recompute();
CREATE OR REPLACE TRIGGER temporal_rollup_delete AFTER DELETE ON temporal_rows
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION temporal_rollup_recompute();
"""
_ROLLUP_BACKFILL = (
    f"INSERT INTO temporal_hourly ({_HOURLY}) SELECT sid, (observed_us IS NOT NULL OR obs_key IS NOT NULL) AS o,"
    f" {hour_sql('key_us')} AS h, {_AGGREGATES.format(r='', pure=_PURE.format(r=''), int=_INT.format(r=''))}"
    " FROM temporal_rows WHERE kind = 0 GROUP BY sid, h, o"
)
# the rollups recomputed from the instances, in the view's columns (tests compare the stored ones with it)
ROLLUP_RECOMPUTED = (
    f"SELECT tenant, entity_id, attr, {hour_sql('key_us')} AS h, dataset_id,"
    f" observed_us IS NOT NULL AS o, {_AGGREGATES.format(r='', pure=_PURE.format(r=''), int=_INT.format(r=''))}"
    " FROM temporal_instances WHERE kind = 0 GROUP BY tenant, entity_id, attr, h, dataset_id, o"
)


def _unit_sql(unit: str, x: str) -> str:
    """The start of the calendar `unit` (UTC) holding the hour start `x`, in microseconds."""
    if unit == "hour":
        return x
    if unit == "day":
        return f"({x} - ((({x} % {DAY_US}) + {DAY_US}) % {DAY_US}))"
    return (f"(extract(epoch FROM date_trunc('{unit}', to_timestamp({x} / 1000000) AT TIME ZONE 'UTC'))"
            f" * 1000000)::bigint")


# a batch's new series first (a statement of its own: the rows' statement must see them), then its rows
# under their sids; the sids of committed series are kept in the process (series rows are never deleted).
# The insert returns the sids it made (the keys come distinct, in index order); only the keys it met
# already stored (made by another writer, or before a restart) are looked up by _SERIES_IDS after it
_SERIES = (
    "INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(t, e, a, d)"
    " ORDER BY t COLLATE \"C\", e COLLATE \"C\", a COLLATE \"C\", d COLLATE \"C\""
    " ON CONFLICT DO NOTHING RETURNING tenant, entity_id, attr, dataset_id, sid"
)
_SERIES_IDS = (
    "SELECT s.tenant, s.entity_id, s.attr, s.dataset_id, s.sid FROM temporal_series AS s"
    " JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(t, e, a, d)"
    " ON s.tenant = u.t AND s.entity_id = u.e AND s.attr = u.a AND s.dataset_id = u.d"
)
# count(DISTINCT value_json) and the upsert's comparison: value_json is NULL on the rows that are JSON floats
# (and text on the rows written before histbytes16): a float is one double (value_num) per text
FLOATISH = ("({r}value_json IS NULL OR ({r}value_num IS NOT NULL AND {r}value_json <> '-0.0'"
            " AND {r}value_json ~ '^-?[0-9].*[.eE]'))")
_INSERT = (
    "INSERT INTO temporal_rows AS t (sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num,"
    " value_json, instance, obs_key)"
    " SELECT * FROM unnest($1::temporal_row_in[])"
    " ON CONFLICT (sid, key_us, kind) DO UPDATE SET observed_us = excluded.observed_us, obs_key = excluded.obs_key,"
    " created_us = excluded.created_us, modified_us = excluded.modified_us, deleted_us = excluded.deleted_us,"
    " value_num = excluded.value_num, value_json = excluded.value_json, instance = excluded.instance"
    # the same instance again replaces the stored one (same iid), unless nothing differs; the stored
    # instance leaves out what the columns hold (model.compact_instance): they are compared too, as read
    # (a row written before histbytes16 keeps every column: the same instance again leaves it as it is)
    " WHERE (" + instance_sql("t.instance") + ", " + OBSERVED.format(r="t.") + ", t.modified_us, t.deleted_us, t.value_num, " + CREATED.format(r="t.") + ")"
    " IS DISTINCT FROM (" + instance_sql("excluded.instance") + ", " + OBSERVED.format(r="excluded.") + ", excluded.modified_us,"
    " excluded.deleted_us,"
    " excluded.value_num, " + CREATED.format(r="excluded.") + ")"
    " OR NOT (t.value_json IS NOT DISTINCT FROM excluded.value_json OR (excluded.value_json IS NULL"
    " AND " + FLOATISH.format(r="t.") + "))"
)
SeriesKey = tuple[str, str, str, str]
_FEW_SERIES = 8  # instances() reads up to this many series one at a time
HELD_IDLE = 0.05  # seconds: write_added's kept connection goes back to the pool after this long unused
_ENTITY = (
    "INSERT INTO temporal_entities SELECT t, i, string_to_array(ty, E'\\x1f'), d"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS u(t, i, ty, d)"
    " ON CONFLICT (tenant, entity_id) DO UPDATE SET"
    " types = CASE WHEN cardinality(excluded.types) = 0 THEN temporal_entities.types ELSE excluded.types END,"
    " deleted_us = excluded.deleted_us"
)

# write_added in one statement (issue 16, notify18): whether the change-log consumer $6 (NULL: none) is at the
# store's change log's last seq (same schema: broker.store.postgres's change_log), and only then the rows
# ($1, as _INSERT) and the entities of tenant $2 (ids $3, types $4 joined by U+001F, service paths $5,
# NULL: keep the stored one) with their types added to the stored ones; answers whether it wrote
_ADDED = (
    "WITH chk AS (SELECT $6::text IS NULL OR (SELECT coalesce(max(seq), 0) FROM change_log)"
    " <= (SELECT coalesce(max(seq), 0) FROM temporal_cursors WHERE consumer = $6) AS ok),"
    " r AS (" + _INSERT.replace(" ON CONFLICT", " WHERE (SELECT ok FROM chk) ON CONFLICT", 1) + "),"
    " e AS (INSERT INTO temporal_entities AS e (tenant, entity_id, types, deleted_us, service_path)"
    " SELECT $2, u.i, string_to_array(u.ty, E'\\x1f'), NULL, u.p FROM unnest($3::text[], $4::text[], $5::text[])"
    " AS u(i, ty, p) WHERE (SELECT ok FROM chk)"
    " ON CONFLICT (tenant, entity_id) DO UPDATE SET types = e.types || ARRAY(SELECT a.x FROM unnest(excluded.types)"
    " WITH ORDINALITY AS a(x, o) WHERE a.x <> ALL(e.types) ORDER BY a.o), deleted_us = NULL,"
    " service_path = coalesce(excluded.service_path, e.service_path)"
    # only where that changes the row: a notification of a known entity (its types, its path) wrote a new
    # version of its row every time, and its WAL record (issue 16, pgnotify20)
    " WHERE e.deleted_us IS NOT NULL OR NOT (excluded.types <@ e.types)"
    " OR (excluded.service_path IS NOT NULL AND excluded.service_path IS DISTINCT FROM e.service_path))"
    " SELECT ok FROM chk"
)
# _ADDED with new series (issue 16, notifypg19): a notification's first write of an entity made its series in a
# transaction of its own statements (BEGIN, the series insert, their lookup, _ADDED, COMMIT: five round trips).
# Here the series keys $8-$11 not yet known are inserted in the same statement and each row without a sid ($1
# NULL) takes the one of its key, by its 1-based place $7 among them: made by this statement (RETURNING), else
# found in its snapshot. A key made by a transaction that committed after this statement began is neither: the
# row's sid stays NULL, the NOT NULL constraint refuses the statement, and the caller writes again as before
_ADDED_SERIES = _ADDED.replace(
    " r AS (",
    " ns AS (INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
    " SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::text[]) AS u(t, e, a, d)"
    " WHERE (SELECT ok FROM chk) ORDER BY t COLLATE \"C\", e COLLATE \"C\", a COLLATE \"C\", d COLLATE \"C\""
    " ON CONFLICT DO NOTHING RETURNING tenant, entity_id, attr, dataset_id, sid),"
    # a key the insert did not make is looked up by its unique index, and only then (coalesce evaluates its
    # subquery only where ns gave no sid): a LEFT JOIN of temporal_series was, in the statement's generic plan
    # (made while the table was small), a hash join over a scan of the whole table: 0.43 of 0.85 ms of a new
    # entity's notification at 1,926 series, growing with them (issue 16, pgone22)
    " k AS (SELECT u.n, coalesce(ns.sid, (SELECT s.sid FROM temporal_series AS s WHERE s.tenant = u.t"
    " AND s.entity_id = u.e AND s.attr = u.a AND s.dataset_id = u.d)) AS sid"
    " FROM unnest($8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY AS u(t, e, a, d, n)"
    " LEFT JOIN ns ON ns.tenant = u.t AND ns.entity_id = u.e AND ns.attr = u.a AND ns.dataset_id = u.d),"
    " r AS (", 1,
).replace(
    # a join (a subquery per row scanned the CTE: rows x new series), the rows kept in their order (their iids)
    " SELECT * FROM unnest($1::temporal_row_in[]) WHERE (SELECT ok FROM chk)",
    " SELECT coalesce(u.sid, k.sid), u.kind, u.key_us, u.observed_us, u.created_us,"
    " u.modified_us, u.deleted_us, u.value_num, u.value_json, u.instance, u.obs_key"
    " FROM unnest($1::temporal_row_in[], $7::int4[]) WITH ORDINALITY AS u(sid, kind, key_us, observed_us,"
    " created_us, modified_us, deleted_us, value_num, value_json, instance, obs_key, x, o) LEFT JOIN k ON k.n = u.x"
    " WHERE (SELECT ok FROM chk) ORDER BY u.o", 1,
).replace(" SELECT ok FROM chk", " SELECT ok, ARRAY(SELECT sid FROM k ORDER BY n) FROM chk")
assert "unnest($1::temporal_row_in[], $7::int4[])" in _ADDED_SERIES

# _ADDED and _ADDED_SERIES with a plain INSERT of the rows, without ON CONFLICT (issue 16, pgnotify23): a
# notification's rows are new instances nearly always (a new TimeInstant each time), and an INSERT ... ON CONFLICT
# pays for the instance that is not there: a probe of the (sid, kind, key_us) index before each row's insert (a
# second descent), a speculative insertion and its confirmation record in the WAL (48 bytes a row), and the
# rollup's UPDATE statement trigger, which PostgreSQL fires for every ON CONFLICT DO UPDATE statement, with empty
# transition tables. A row already stored makes the plain statement fail whole (unique violation: nothing written,
# its implicit transaction rolled back) and write_added writes it again with ON CONFLICT, as before. Each is a
# transaction of its own (one statement, one Sync): the rollup triggers' mark of hours recomputed by an earlier
# statement of the same transaction (which the UPDATE trigger clears) cannot be met
_UPSERT_CLAUSE = _INSERT[_INSERT.index(" ON CONFLICT (sid, key_us, kind)"):]
assert _ADDED.count(_UPSERT_CLAUSE) == 1 and _ADDED_SERIES.count(_UPSERT_CLAUSE) == 1
_ADDED_PLAIN = _ADDED.replace(_UPSERT_CLAUSE, "", 1)
_ADDED_SERIES_PLAIN = _ADDED_SERIES.replace(_UPSERT_CLAUSE, "", 1)
_INSERT_PLAIN = _INSERT.replace(_UPSERT_CLAUSE, "", 1)
UPSERTS_AFTER_CONFLICT = 1000  # write_added's writes made with ON CONFLICT after a plain one met a stored row

# what a read selects to rebuild an instance document (model.rebuild_instance), from the view; _ROW_STORED
# the same from temporal_rows
STORED = "instance, value_json, observed_us, created_us, modified_us, deleted_us, value_num"
_ROW_STORED = (f"{instance_sql('instance')} AS instance, {VALUE_JSON.format(r='')} AS value_json,"
               f" {_ROW_TIMES['observed_us']} AS observed_us,"
               f" {_ROW_TIMES['created_us']} AS created_us, modified_us, deleted_us, value_num")
# count(DISTINCT value_json), value_json NULL on the rows that are JSON floats (and text on the rows
# written before histbytes16): the floats counted by value_num (one double per float text), the rest by text
_DISTINCT = (f"count(DISTINCT CASE WHEN {FLOATISH.format(r='')} THEN NULL ELSE value_json END)"
             f" + count(DISTINCT CASE WHEN {FLOATISH.format(r='')} THEN value_num END)")


# the kinds of rows, in the order of the (sid, kind, key_us) index; a clause naming them all, which the index
# takes as one descent per kind where a range on key_us follows
KINDS = (VALUE, DELETION)
_ANY_KIND = f"kind IN ({', '.join(map(str, KINDS))})"


def _ordered(series: str, column: str, times: Sequence[str], order: str, tie: str, limit: int) -> str:
    """The SQL of one series' rows (iid, t, STORED...) in (time, tie) order, the first `limit`.

    In key order, each kind's rows are an index range read in order, up to `limit` each, and the two merged
    (the index is (sid, kind, key_us): one ordered read of the series across kinds would sort its whole range);
    `series` the condition on sid, `tie` the ORDER BY member after the time (kind or iid).
    """
    if column == "key_us":
        parts = [f"(SELECT iid, key_us AS t, kind, {_ROW_STORED} FROM temporal_rows WHERE {series} AND kind = {k}"
                 f"{''.join(' AND ' + c for c in times)} ORDER BY key_us {order} LIMIT {limit})" for k in KINDS]
        return f"SELECT iid, t, {STORED} FROM ({' UNION ALL '.join(parts)}) AS b ORDER BY t {order}, {tie} LIMIT {limit}"
    clauses = " AND ".join([series, "kind >= 0", *times])
    return (f"SELECT iid, {column} AS t, {_ROW_STORED} FROM temporal_rows WHERE {clauses}"
            f" ORDER BY {column} {order}, {tie} LIMIT {limit}")


def _hit(r: Any, entity_id: str | None = None, attr: str | None = None) -> InstanceHit:
    """An InstanceHit of a row (iid, entity_id, attr, time, STORED...), or (iid, time, STORED...) of one series."""
    if entity_id is None or attr is None:
        return InstanceHit(r[0], r[1], r[2], r[3], bytes(r[4]), value_text(r[5], r[10]), r[6], r[7], r[8], r[9])
    return InstanceHit(r[0], entity_id, attr, r[1], bytes(r[2]), value_text(r[3], r[8]), r[4], r[5], r[6], r[7])


def _columns(rows: Sequence[HistoryRow], sids: Mapping[SeriesKey, int],
             fresh: Mapping[SeriesKey, int | None] | None = None) -> list[list[tuple[Any, ...]]]:
    """The insert's parameters: one array of temporal_row_in, a tuple per row in the type's column order; each
    row's sid from `sids`, else from `fresh` (series made by this write; None: made by the statement itself).

    One array of rows, not an array per column (issue 16, pghist23): asyncpg checks every element of an array
    against collections.abc.Iterable and Sized (two ABCMeta.__instancecheck__ calls, Python frames, for a text or
    bytea element, one for the others) before encoding it: ~13 calls per row over eleven arrays, ~4 per row here.
    """
    recs: list[tuple[Any, ...]] = []
    for r in rows:
        key = r.observed_us == r.key_us  # observedAt is the key: NULL and obs_key (OBSERVED)
        series = (r.tenant, r.entity_id, r.attr, r.dataset_id)
        sid = sids.get(series)
        if sid is None:
            sid = (fresh if fresh is not None else sids)[series]  # a KeyError, never a NULL sid, if neither has it
        recs.append((sid, r.kind, r.key_us, None if key else r.observed_us, packed_created(r), r.modified_us,
                     r.deleted_us, r.value_num, packed_value(r), packed_instance(r.stored), True if key else None))
    return [recs]


def _where(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, first: int,
    datasets: Sequence[str] | None = None, exprs: Mapping[str, str] | None = None,
) -> tuple[str, list[Any], str]:
    params: list[Any] = [tenant, list(entity_ids)]
    clauses = [f"tenant = ${first}", f"entity_id = ANY(${first + 1}::text[])"]

    def p(value: Any) -> str:
        params.append(value)
        return f"${first + len(params) - 1}"

    if attrs is not None:
        clauses.append(f"attr = ANY({p(list(attrs))}::text[])")
    if datasets is not None:
        clauses.append(f"dataset_id = ANY({p(list(datasets))}::text[])")
    times, column = time_clauses(rng, p, exprs)
    return " AND ".join(clauses + times), params, column


# the members of a rollup read after (entity_id, attr, bucket), summed per bucket or as the rows are: those of
# RollupBucket, or those of Bucket (aggregate without distinctCount, read in its shape: no second tuple per row)
_SUMMED = {
    "rollup": "sum(n)::int8, sum(n_num)::int8, sum(n_pure)::int8, sum(n_int)::int8, sum(n_ds)::int8, sum(s), min(lo),"
              " max(hi), sum(sq)",
    "bucket": "sum(n)::int8, 0::int8, sum(n_num)::int8, sum(s), min(lo), max(hi), sum(sq)",
}
_AS_IS = {"rollup": "n, n_num, n_pure, n_int, n_ds, s, lo, hi, sq", "bucket": "n, 0::int8, n_num, s, lo, hi, sq"}


def _rollup_query(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, datasets: Sequence[str] | None, pl: Plan,
    unit: str | None, origin_us: int, period_us: int, shape: str = "rollup",
) -> tuple[str, list[Any], str | None]:
    """Rollup rows of the whole hours and instance rows of the partial ones, summed per (entity, attribute, bucket).

    Where each bucket is one hour (a calendar hour, or periods of an hour from an hour-aligned origin) the
    bucket follows the hour one to one: grouped by the hour, and without partial hours also the SQL of the
    rollup rows as they are (third member), the answer itself wherever no two of them share an (entity,
    attribute, hour): one datasetId and one observed flag per hour, which SQL's sums over one row give back
    unchanged (query18). One entity, attribute or datasetId is compared with =, not with ANY of an array.
    """
    params: list[Any] = []
    hourly = unit == "hour" or (unit is None and period_us == HOUR_US)

    def p(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    def bucket(x: str) -> str:
        if unit is not None:
            return _unit_sql(unit, x)
        if period_us > 0:
            return f"(({x} - {p(origin_us)}::int8) / {p(period_us)}::int8)"
        return "0::int8"

    def common(prefix: str) -> list[str]:
        clauses = [f"{prefix}tenant = {p(tenant)}"]
        for column, values in (("entity_id", entity_ids), ("attr", attrs), ("dataset_id", datasets)):
            if values is None:
                continue
            listed = list(dict.fromkeys(values))
            if len(listed) == 1:
                clauses.append(f"{prefix}{column} = {p(listed[0])}::text")
            else:
                clauses.append(f"{prefix}{column} = ANY({p(listed)}::text[])")
        return clauses

    b_sql = bucket("hour_us")
    clauses = common("")
    if pl.observed:
        clauses.append("observed")
    if pl.hours_from is not None:
        clauses.append(f"hour_us >= {p(pl.hours_from)}::int8")
    if pl.hours_to is not None:
        clauses.append(f"hour_us < {p(pl.hours_to)}::int8")
    parts = [(f"SELECT entity_id, attr, hour_us AS h, {b_sql} AS b, n, n_num, n_pure, n_int,"
              f" CASE WHEN dataset_id <> '' THEN n ELSE 0 END AS n_ds, sum AS s, min AS lo, max AS hi, sumsq AS sq"
              f" FROM temporal_rollup WHERE {' AND '.join(clauses)}")]
    for start, end in pl.edges:
        h_sql = hour_sql("i.key_us")
        e_sql = bucket(h_sql)
        clauses = common("i.")
        clauses.append("i.kind = 0")
        if pl.observed:
            clauses.append("i.observed_us IS NOT NULL")
        clauses += [f"i.key_us >= {p(start)}::int8", f"i.key_us < {p(end)}::int8"]
        parts.append(
            f"SELECT i.entity_id, i.attr, {h_sql}, {e_sql}, 1::int8, (i.value_num IS NOT NULL)::int::int8,"
            f" {_PURE.format(r='i.')}::int::int8, {_INT.format(r='i.')}::int::int8, (i.dataset_id <> '')::int::int8, {_SUMMAND.format(v='i.value_num')},"
            f" i.value_num, i.value_num,"
            f" {_SQUARE.format(v='i.value_num')} FROM temporal_instances AS i WHERE {' AND '.join(clauses)}"
        )
    rows = " UNION ALL ".join(parts)
    if hourly:  # b a function of h: any of the group's (all equal)
        sql = (f"SELECT entity_id, attr, min(b), {_SUMMED[shape]} FROM ({rows}) AS u"
               f" GROUP BY entity_id, attr, h ORDER BY entity_id, attr, h")
    else:
        sql = (f"SELECT entity_id, attr, b, {_SUMMED[shape]} FROM ({rows}) AS u"
               f" GROUP BY entity_id, attr, b ORDER BY entity_id, attr, b")
    as_is = (f"SELECT entity_id, attr, b, {_AS_IS[shape]} FROM ({rows}) AS u ORDER BY entity_id, attr, h"
             if hourly and not pl.edges else None)
    return sql, params, as_is


async def _migrate(conn: asyncpg.Connection) -> None:
    """History's tables, in one transaction of the migration runner (storage.migrate)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':temporal', 0))")
    await conn.execute(SCHEMA)
    if await conn.fetchval("SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass('temporal_instances')"):
        await conn.execute(_MIGRATE)  # the layout before integer series ids (histcompact16)
    await conn.execute(_VIEW)
    former = await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('temporal_rollup')")
    await conn.execute(HOURLY_SCHEMA)
    if former == "r":
        await conn.execute(_HOURLY_MOVE)  # the rollups of text keys (before pgbytes22) under series ids
    await conn.execute(ROLLUP_SCHEMA)
    if former is None:
        await conn.execute(_ROLLUP_BACKFILL)


class _Behind(Exception):
    """write_added: history is behind the change log (rolls the transaction back)."""


class PostgresHistory(HistoryStorage):
    """History tables in a PostgreSQL schema, on the schema's shared pool (storage.database)."""

    tables = Schema("history", postgres=_migrate)

    def __init__(self, dsn: str, schema: str = "public", *, max_size: int = 4,
                 db: PostgresDatabase | None = None, cache_entries: int | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        self.max_size = max_size
        self._db = db if db is not None else PostgresDatabase(DatabaseUrl.postgresql(dsn, schema),
                                                               min_size=1, max_size=max_size)
        self._pool: asyncpg.Pool | None = None
        # series key -> sid, of committed series (never deleted), at most `cache_entries` between writes: above,
        # replaced by a new dict of its newest half (storage.trimmed) once a write committed, never emptied in place
        # (a write running meanwhile keeps the dict it took, whole); a key evicted is looked up again as a new one is
        self._series: dict[SeriesKey, int] = {}
        self.cache_entries = cache_entries_from_env() if cache_entries is None else cache_entries
        # write_added's connection, kept between writes (see _added_row)
        self._held: asyncpg.Connection | None = None
        self._held_busy = False
        self._held_used = 0.0
        self._held_timer: asyncio.TimerHandle | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._upserts = 0  # write_added's writes still to make with ON CONFLICT (_added_first)

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._pool = self._db.pool

    async def close(self) -> None:
        if self._pool is not None:
            if self._held_timer is not None:
                self._held_timer.cancel()
                self._held_timer = None
            for _ in range(500):  # a write under way on the kept connection ends first (at most 5 s)
                if not self._held_busy:
                    break
                await asyncio.sleep(0.01)
            if self._held is not None:
                conn, self._held = self._held, None
                await self._pool.release(conn)
            if self._releases:
                await asyncio.gather(*self._releases, return_exceptions=True)
            self._pool = None
            await self._db.close()

    async def _added_first(self, plain: str, upsert: str, *args: Any) -> Any:
        """`plain` (rows by a plain INSERT: _ADDED_PLAIN), or `upsert` (ON CONFLICT) where one of the rows is stored.

        After a plain write met a stored row, the next UPSERTS_AFTER_CONFLICT writes are made with ON CONFLICT at
        once: a stream that sends the same instances again pays a failed statement once in that many writes.
        """
        if self._upserts:
            self._upserts -= 1
            return await self._added_row(upsert, *args)
        try:
            return await self._added_row(plain, *args)
        except asyncpg.UniqueViolationError:  # nothing written: the statement's transaction rolled back whole
            self._upserts = UPSERTS_AFTER_CONFLICT
            return await self._added_row(upsert, *args)

    async def _added_row(self, sql: str, *args: Any) -> Any:
        """One write_added statement (an implicit transaction) on a pool connection kept between writes.

        When notifypg19 measured it, a connection given back to asyncpg's pool was reset first
        (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN, RESET ALL): a second round trip, waited for, after every
        statement. pgpatch19 then gave the pool's connections an empty reset query (storage/database.py); what
        keeping one still saves is the pool's acquire and release per notification (issue 16). The kept one
        goes back once no write has used it for HELD_IDLE seconds, so that it is not taken from the pool's other
        users for longer than a burst of notifications; broken, or left by an error that is not the server's
        answer to the statement (cancelled, connection lost), it goes back at once (the pool closes or resets it).
        A write while another is under way (the group commit's retries) takes a pool connection of its own.
        """
        if self._held_busy:
            return await self.pool.fetchrow(sql, *args)
        self._held_busy = True
        conn = self._held
        try:
            if conn is None:
                conn = self._held = await self.pool.acquire()
            return await conn.fetchrow(sql, *args)
        except BaseException as exc:
            if conn is not None and (not isinstance(exc, asyncpg.PostgresError) or conn.is_closed()):
                self._held = None
                await self.pool.release(conn)
            raise
        finally:
            self._held_busy = False
            self._held_used = asyncio.get_running_loop().time()
            if self._held is not None and self._held_timer is None and self._pool is not None:
                self._held_timer = asyncio.get_running_loop().call_later(HELD_IDLE, self._release_idle)

    def _release_idle(self) -> None:
        self._held_timer = None
        conn = self._held
        if conn is None or self._pool is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._held_used
        if self._held_busy or idle < HELD_IDLE:
            self._held_timer = loop.call_later(HELD_IDLE - idle if not self._held_busy else HELD_IDLE, self._release_idle)
            return
        self._held = None
        task = loop.create_task(self.pool.release(conn))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "history is not open"
        return self._pool

    async def _store(self, conn: asyncpg.Connection, entities: Sequence[EntityRow], rows: Sequence[HistoryRow],
                     insert: str = _INSERT) -> dict[SeriesKey, int]:
        """Write in the caller's transaction; the sids of the series it made, to keep once it commits."""
        fresh: dict[SeriesKey, int] = {}
        if rows:
            rows = unique_rows(rows)
            known = self._series
            missing = list(dict.fromkeys(k for r in rows if (k := (r.tenant, r.entity_id, r.attr, r.dataset_id)) not in known))
            if missing:
                fresh = {(r[0], r[1], r[2], r[3]): r[4]
                         for r in await conn.fetch(_SERIES, *[list(c) for c in zip(*missing, strict=True)])}
                stored = [k for k in missing if k not in fresh]
                if stored:
                    keys = [list(c) for c in zip(*stored, strict=True)]
                    fresh.update({(r[0], r[1], r[2], r[3]): r[4] for r in await conn.fetch(_SERIES_IDS, *keys)})
            # fresh series looked up beside the held ones, not merged into a copy of them: that copy, on each
            # batch that made a series, grew with the database (8 ms at 220,000 series; issue 16, batch17)
            await conn.execute(insert, *_columns(rows, known, fresh))
        if entities:
            await conn.execute(
                _ENTITY, [e.tenant for e in entities], [e.entity_id for e in entities],
                ["\x1f".join(e.types) for e in entities], [e.deleted_us for e in entities],
            )
        return fresh

    async def load_cursor(self, consumer: str) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(seq), 0) FROM temporal_cursors WHERE consumer = $1", consumer))

    async def apply(self, consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        async def run(insert: str) -> dict[SeriesKey, int]:
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await self._store(conn, _last_per_entity(entities), rows, insert)
                await conn.execute(
                    "INSERT INTO temporal_cursors VALUES ($1, $2) ON CONFLICT (consumer)"
                    " DO UPDATE SET seq = greatest(temporal_cursors.seq, excluded.seq)",
                    consumer, seq,
                )
            return fresh

        self._keep(await self._plain_first(run))  # committed

    async def write(self, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        async def run(insert: str) -> dict[SeriesKey, int]:
            async with self.pool.acquire() as conn, conn.transaction():
                return await self._store(conn, _last_per_entity(entities), rows, insert)

        self._keep(await self._plain_first(run))  # committed

    def _keep(self, made: Mapping[SeriesKey, int]) -> None:
        """The sids of committed series cached, the cache bounded (a new dict: see __init__)."""
        if made:
            self._series.update(made)
            self._series = trimmed(self._series, self.cache_entries)

    async def _plain_first(self, run: Callable[[str], Awaitable[dict[SeriesKey, int]]]) -> dict[SeriesKey, int]:
        """`run` (a whole transaction) with the rows by a plain INSERT (_INSERT_PLAIN), again with _INSERT where one
        of them is stored (issue 16, pghist23): as write_added's _added_first, for the recorder's transactions (a
        batch upsert's history). The failed transaction rolled back whole (its series too: made again by the
        second); the next UPSERTS_AFTER_CONFLICT writes use ON CONFLICT at once.
        """
        if self._upserts:
            self._upserts -= 1
            return await run(_INSERT)
        try:
            return await run(_INSERT_PLAIN)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "temporal_rows_kind":
                raise
            self._upserts = UPSERTS_AFTER_CONFLICT
            return await run(_INSERT)

    async def write_added(self, tenant: str, entities: Sequence[tuple[str, Sequence[str]]], rows: Sequence[HistoryRow],
                          paths: Mapping[str, str], *, current: str | None = None) -> bool:
        # one statement: _ADDED when every series is known, else _ADDED_SERIES, which makes them (each with a plain
        # INSERT of the rows first: _added_first)
        added = added_types(entities)
        rows = unique_rows(rows)
        tail = (tenant, list(added), ["\x1f".join(t) for t in added.values()], [paths.get(i) for i in added], current)
        known = self._series
        missing = list(dict.fromkeys(k for r in rows if (k := (r.tenant, r.entity_id, r.attr, r.dataset_id)) not in known))
        if not missing:
            return bool((await self._added_first(_ADDED_PLAIN, _ADDED, *_columns(rows, known), *tail))[0])
        # the new series in the same statement (_ADDED_SERIES), each row without a sid given its key's place
        cols = _columns(rows, known, dict.fromkeys(missing))  # None: made by the statement
        place = {k: n for n, k in enumerate(missing, 1)}
        at = [None if rec[0] is not None else place[(r.tenant, r.entity_id, r.attr, r.dataset_id)]
              for r, rec in zip(rows, cols[0], strict=True)]
        try:
            row = await self._added_first(_ADDED_SERIES_PLAIN, _ADDED_SERIES, *cols, *tail, at,
                                          *[list(c) for c in zip(*missing, strict=True)])
        except asyncpg.NotNullViolationError:
            pass  # a series another transaction made after the statement began: in a transaction of its own, as before
        else:
            if not row[0]:
                return False
            self._keep(dict(zip(missing, row[1], strict=True)))  # committed
            return True
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                keys = [list(c) for c in zip(*missing, strict=True)]
                await conn.execute(_SERIES, *keys)
                fresh = {(r[0], r[1], r[2], r[3]): r[4] for r in await conn.fetch(_SERIES_IDS, *keys)}
                if not await conn.fetchval(_ADDED, *_columns(rows, known, fresh), *tail):
                    raise _Behind  # the new series roll back with the rest
        except _Behind:
            return False
        self._keep(fresh)  # committed
        return True

    async def entities(self, tenant: str, *, ids: Sequence[str] | None = None,
                       types_any: Sequence[str] | None = None) -> list[EntityRow]:
        sql = "SELECT entity_id, types, deleted_us FROM temporal_entities WHERE tenant = $1"
        params: list[Any] = [tenant]
        if ids is not None:
            params.append(list(ids))
            sql += f" AND entity_id = ANY(${len(params)}::text[])"
        if types_any is not None:
            params.append(list(types_any))
            sql += f" AND types && ${len(params)}::text[]"
        rows = await self.pool.fetch(sql + " ORDER BY entity_id", *params)
        return [EntityRow(tenant, r[0], list(r[1]), r[2]) for r in rows]

    async def entity(self, tenant: str, entity_id: str) -> EntityRow | None:
        row = await self.pool.fetchrow(
            "SELECT types, deleted_us FROM temporal_entities WHERE tenant = $1 AND entity_id = $2", tenant, entity_id
        )
        return None if row is None else EntityRow(tenant, entity_id, list(row[0]), row[1])

    async def instances(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, per_attr: int, newest: bool,
        *, total: int | None = None, datasets: Sequence[str] | None = None,
    ) -> list[InstanceHit]:
        order = "DESC" if newest else "ASC"
        each = per_attr if total is None else min(per_attr, total)
        sparams: list[Any] = [tenant, list(entity_ids)]
        series = "SELECT sid, entity_id, attr FROM temporal_series WHERE tenant = $1 AND entity_id = ANY($2::text[])"
        if attrs is not None:
            sparams.append(list(attrs))
            series += f" AND attr = ANY(${len(sparams)}::text[])"
        if datasets is not None:
            sparams.append(list(datasets))
            series += f" AND dataset_id = ANY(${len(sparams)}::text[])"
        # the time bounds and series ids are written in the SQL (integers): as parameters, a statement run a
        # sixth time got PostgreSQL's generic plan, which guessed 50 rows in the range and read and sorted all
        # of them (a month page of one series: 10,000 rows, 20 ms, against 2 ms by the index in its order)
        times, column = time_clauses(rng, lambda us: str(int(us)), _ROW_TIMES)
        async with self.pool.acquire() as conn:
            found = await conn.fetch(series, *sparams)
            if not found:
                return []
            if len(found) <= _FEW_SERIES:
                # one ordered LIMIT per series, read in the (sid, key, kind) index's order, no sort: a page of one
                # entity's attribute is its index range. Ties of key_us (a value and a deletion) are put in iid
                # order here: one row more than the page holds the whole tie at its end
                tie = f"kind {order}" if column == "key_us" else f"iid {order}"
                by_series: dict[tuple[str, str], list[InstanceHit]] = {}
                for sid, entity_id, attr in found:
                    sql = _ordered(f"sid = {int(sid)}", column, times, order, tie, int(each) + 1)
                    by_series.setdefault((entity_id, attr), []).extend(
                        _hit(r, entity_id, attr) for r in await conn.fetch(sql))
                hits = []
                for got in by_series.values():
                    got.sort(key=lambda h: (h.time_us, h.iid), reverse=newest)
                    hits += got[:each]
                if total is not None:
                    hits.sort(key=lambda h: (h.time_us, h.iid), reverse=newest)
                    del hits[total:]
                hits.sort(key=lambda h: (h.entity_id, h.attr, h.time_us, h.iid))
                return hits
            # one index range scan per series id (LATERAL, LIMIT: for a lastN without a range, not the whole
            # history), the series of one attribute (one per datasetId) then cut to `each` together
            sql = (
                f"SELECT iid, entity_id, attr, t, {STORED} FROM (SELECT h.*, k.entity_id, k.attr, row_number() OVER"
                f" (PARTITION BY k.entity_id, k.attr ORDER BY h.t {order}, h.iid {order}) AS rn"
                f" FROM unnest($1::int4[], $2::text[], $3::text[]) AS k(sid, entity_id, attr),"
                f" LATERAL ({_ordered('sid = k.sid', column, times, order, f'iid {order}', int(each))}) AS h) AS x"
                f" WHERE rn <= {int(each)}"
            )
            if total is not None:
                sql += f" ORDER BY t {order}, iid {order} LIMIT {int(total)}"
            else:
                sql += " ORDER BY entity_id, attr, t, iid"
            rows = await conn.fetch(sql, [r[0] for r in found], [r[1] for r in found], [r[2] for r in found])
        hits = [_hit(r) for r in rows]
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
        """rollup's read, its rows as RollupBucket or (shape "bucket") as Bucket (_rollup_query)."""
        sql, params, as_is = _rollup_query(tenant, entity_ids, attrs, datasets, pl, unit, origin_us, period_us, shape)
        make = RollupBucket._make if shape == "rollup" else Bucket._make
        if as_is is not None:
            rows = await self.pool.fetch(as_is, *params)
            if len({(r[0], r[1], r[2]) for r in rows}) == len(rows):
                return list(map(make, rows))
        return list(map(make, await self.pool.fetch(sql, *params)))

    async def aggregate(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, origin_us: int, period_us: int,
        *, datasets: Sequence[str] | None = None, distinct: bool = True,
    ) -> list[Bucket]:
        pl = None if distinct else plan(rng, origin_us, period_us)
        if pl is not None:
            return await self._rolled(tenant, entity_ids, attrs, datasets, pl, origin_us, period_us, None, "bucket")
        where, params, column = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        if period_us > 0:
            n = len(params)
            bucket = f"(({column} - ${n + 1}::int8) / ${n + 2}::int8)"
            params += [origin_us, period_us]
        else:
            bucket = "0::int8"
        sql = (
            f"SELECT entity_id, attr, {bucket} AS b, count(*), {_DISTINCT}, count(value_num),"
            f" sum({_SUMMAND.format(v='value_num')}), min(value_num), max(value_num), sum({_SQUARE.format(v='value_num')})"
            f" FROM temporal_instances WHERE {where} AND kind = 0 GROUP BY entity_id, attr, b ORDER BY entity_id, attr, b"
        )
        return list(map(Bucket._make, await self.pool.fetch(sql, *params)))

    async def impure_attrs(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> set[str]:
        sql = "SELECT DISTINCT attr FROM temporal_rollup WHERE tenant = $1 AND entity_id = ANY($2::text[]) AND impure"
        args: list[Any] = [tenant, list(entity_ids)]
        if rng.start is not None:
            args.append(rng.start - rng.start % HOUR_US)
            sql += f" AND hour_us >= ${len(args)}"
        if rng.end is not None:
            args.append(rng.end)
            sql += f" AND hour_us < ${len(args)}"
        return {r[0] for r in await self.pool.fetch(sql, *args)}

    async def series(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> set[tuple[str, str]]:
        where, params, _ = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        # per series, whether one of its instances matches (the first found ends its search), not DISTINCT over
        # every matching instance: one entity's month was 2,000 heap reads before a retrieve rendered anything
        # (query18). `where` names the instance view's columns ($1 tenant, $2 the entity ids)
        rows = await self.pool.fetch(
            "SELECT s.entity_id, s.attr FROM temporal_series AS s WHERE s.tenant = $1 AND s.entity_id = ANY($2::text[])"
            f" AND EXISTS (SELECT 1 FROM temporal_instances AS i WHERE i.sid = s.sid AND i.{_ANY_KIND} AND {where})", *params)
        return {(r[0], r[1]) for r in rows}

    async def first_time(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> int | None:
        where, params, column = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        value = await self.pool.fetchval(f"SELECT min({column}) FROM temporal_instances WHERE {where} AND kind = 0", *params)
        return None if value is None else int(value)

    async def delete_entity(self, tenant: str, entity_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM temporal_rows WHERE sid IN (SELECT sid FROM temporal_series"
                               " WHERE tenant = $1 AND entity_id = $2)", tenant, entity_id)
            status = await conn.execute("DELETE FROM temporal_entities WHERE tenant = $1 AND entity_id = $2", tenant, entity_id)
        return bool(status != "DELETE 0")

    async def delete_instances(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> int:
        # the rows by their series (no b-tree on iid to find them by): each clause's column is in one table only
        where, params, _ = _where(tenant, entity_ids, None, rng, 1, exprs=_ROW_TIMES)
        sql = f"DELETE FROM temporal_rows AS r USING temporal_series AS s WHERE r.sid = s.sid AND r.{_ANY_KIND} AND {where}"
        return int((await self.pool.execute(sql, *params)).split()[-1])

    async def set_service_paths(self, tenant: str, paths: Mapping[str, str]) -> None:
        if paths:
            await self.pool.execute(
                "UPDATE temporal_entities AS e SET service_path = u.p FROM unnest($2::text[], $3::text[]) AS u(i, p)"
                " WHERE e.tenant = $1 AND e.entity_id = u.i", tenant, list(paths), list(paths.values()),
            )

    async def service_paths(self, tenant: str) -> dict[str, str]:
        rows = await self.pool.fetch(
            "SELECT entity_id, service_path FROM temporal_entities WHERE tenant = $1 AND service_path IS NOT NULL", tenant
        )
        return {r[0]: r[1] for r in rows}

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, dataset_id: str | None) -> int:
        series = "SELECT sid FROM temporal_series WHERE tenant = $1 AND entity_id = $2 AND attr = $3"
        params: list[Any] = [tenant, entity_id, attr]
        if dataset_id is not None:
            series += " AND dataset_id = $4"
            params.append(dataset_id)
        sql = f"DELETE FROM temporal_rows WHERE sid IN ({series})"
        return int((await self.pool.execute(sql, *params)).split()[-1])

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        status = await self.pool.execute(
            "DELETE FROM temporal_rows WHERE iid = $1 AND sid IN"
            " (SELECT sid FROM temporal_series WHERE tenant = $2 AND entity_id = $3 AND attr = $4)",
            iid, tenant, entity_id, attr,
        )
        return bool(status != "DELETE 0")

    async def get_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bytes | None:
        row = await self.pool.fetchrow(
            f"SELECT {STORED} FROM temporal_instances WHERE iid = $1 AND tenant = $2 AND entity_id = $3 AND attr = $4",
            iid, tenant, entity_id, attr,
        )
        return None if row is None else rebuild_instance(bytes(row[0]), value_text(row[1], row[6]), row[2], row[3], row[4],
                                                         row[5])

    async def replace_instance(self, tenant: str, entity_id: str, attr: str, iid: int, row: HistoryRow) -> bool:
        status = await self.pool.execute(
            # every column as is; a createdAt read from modified_us (NULL) kept
            "UPDATE temporal_rows SET observed_us = $1, obs_key = NULL, modified_us = $2, value_num = $3, value_json = $4, instance = $5,"
            " created_us = CASE WHEN kind = 0 THEN coalesce(created_us, modified_us) ELSE created_us END WHERE iid = $6 AND sid IN (SELECT sid FROM temporal_series WHERE tenant = $7 AND entity_id = $8 AND attr = $9)",
            row.observed_us, row.modified_us, row.value_num, row.value_json, row.instance, iid, tenant, entity_id, attr,
        )
        return bool(status != "UPDATE 0")


def _last_per_entity(entities: Sequence[EntityRow]) -> list[EntityRow]:
    """One row per (tenant, entity), the last: ON CONFLICT cannot touch a row twice in one statement."""
    return list({(e.tenant, e.entity_id): e for e in entities}.values())
