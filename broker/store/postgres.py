"""The production store: PostgreSQL through its schema's shared asyncpg pool (storage.database), documents as JSONB.

Everything lives in one schema (the `schema` query parameter of the URL,
default `public`), reached through the connections' search_path, so tests
and several brokers can share a server. Batches travel as arrays expanded
with unnest: one statement per table whatever the batch size. JSONB goes
through a binary codec built on orjson (the jsonb wire format is a version
byte followed by the JSON text), which spares asyncpg's json module.

Read-modify-write: `modify` takes a transaction-scoped advisory lock per
(tenant, id) in a fixed order, so that two calls wanting the same absent
entity also serialise, then reads the rows with SELECT ... FOR UPDATE,
which makes concurrent upserts and deletes of existing rows wait.

Group commit (issue 16): the `modify` calls made while a group is in flight
wait in a queue and run next, together, in one transaction on one held
connection (at most GROUP_MAX calls, one tenant): one turn on the change-log
lock and one WAL flush for all of them, where each call in a transaction of
its own took its turn on that lock through its COMMIT's flush. Each call is
still what it was alone: applied in call order (a later call sees an earlier
one's result), logged with records of its own and its own `at`; a call whose
function raises changes nothing and gets its exception, and a database error
in a group re-runs each of its calls alone, so only the culprit fails.
FLUSHERS groups are in flight at once: the next takes its entity locks once
the one before holds its own, so calls on one entity keep their order.

Optimistic groups (issue 16, pgpatch20): a group is first read without
locks or transaction (while the group before writes) and, if it only
rewrites stored rows (a PATCH), written once the group before is done by one
statement in a transaction of its own (`_CHECKED_WRITE`: the updates and
the change records), which writes nothing unless every row the group read is
still the version it read (xmin). Two round trips per group instead of
four, and the log lock is held for that statement's execution and commit
only. A group naming an id of the group before writes once that one is done;
one naming none writes at once (their records may then go to the log in
either order: neither call sees the other's entities). Any other group
(creates, deletes, side-table rows), or one whose rows changed since its
read, runs with locks as above.

Change log: a write appends its records last, by one INSERT ... SELECT over
arrays, one row per record (the earlier instances of a repeated id, then
the final documents), under a transaction-scoped advisory lock on the log.
A `modify` record's before image is stored as its delta to the after image
(`_before_delta`, migration 8: what the before document has that the after
one has not, a JSON array; a deletion's, insert's, upsert_replace's, and
every record written before, a whole document), rebuilt on read (`_before_doc`): a PATCH logged two whole
documents, half the log's WAL and most of its compression CPU (issue 16,
pgwal22); the log's columns, and the entity rows (migration 9), are compressed with lz4 where the server has it.
Both images are stored as JSON text (migration 7: after_doc was jsonb),
which only Python reads back: the after images are the texts the write
encoded once for its entity rows, so PostgreSQL no longer parses every
instance of a batch into jsonb for a log row read once and trimmed
(measured: two thirds of the log insert's server CPU). Writers hold that
lock shared, from before they draw seqs until they commit, so that their
commits (and WAL flushes) overlap: PostgreSQL flushes the commits waiting
together at once (issue 16, pgpatch21; before, writers held it alone, which
made one WAL flush per group, in turn, the limit of PATCH). Seqs may then
commit out of order: `changes_after` reads the log only up to its settled
end (`_SETTLED`: the lock taken alone, so every writer that drew a seq is
done, then the sequence's last value), so no reader of `seq > cursor` moves
past a seq that could still commit. Per entity, records still commit in
seq order: writers of one entity wait for each other's row (or entity lock)
until commit, and draw their seqs after it.

Geo-queries: with PostGIS (migration 5), each GeoProperty instance is also a
geometry in geo_boxes.geom and `query` evaluates `EntityFilter.geo` in SQL
(`exact_geo`): topology with the ST_ predicates in the planar lng/lat plane,
near with ST_DWithin on the sphere, as broker.query.geo does in Python.
Without PostGIS (absent from the server, or `postgis=False`) the bbox
prefilter and the Python predicate answer, as on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from broker.query.geo import GeoQuery, bbox_for_prefilter
from broker.query.q_sql import AllOf, AnyOf, AttrExists, Prefilter
from broker.query.regex import compile_pattern, literal_prefix
from broker.store.base import (
    Change,
    ChangeRecord,
    Doc,
    EntityFilter,
    ModifyFn,
    QueryPage,
    RegistryDoc,
    Store,
    StoredEntity,
    TypeSummary,
)
from broker.store.migrations import (
    PG_GEO_INSERT,
    PG_GEOM_INSERT,
    Attrs,
    Geo,
    IndexRows,
    attribute_walk,
    has_geometry,
    index_rows,
    pg_geo_rows,
    postgres_schema,
    same_index,
)
from broker.store.recent import RecentChanges
from storage.database import PostgresDatabase
from storage.urls import DatabaseUrl

CHUNK = 500
"""Rows fetched at a time when a predicate makes the store walk candidates."""

_COLUMNS = "e.id, e.doc, e.created_at, e.modified_at"
_UNNEST = (
    # documents travel as JSON text, encoded once: the same text is the change record's after image
    "INSERT INTO entities AS e (tenant, id, doc, created_at, modified_at, attrs, attr_types)"
    " SELECT $1, i, d::jsonb, $4, $4, string_to_array(a, E'\\x1f'), string_to_array(k, E'\\x1f')"
    " FROM unnest($2::text[], $3::text[], $5::text[], $6::text[]) AS u(i, d, a, k)"
)
_REPLACE = (
    " ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc, modified_at = excluded.modified_at,"
    " attrs = excluded.attrs, attr_types = excluded.attr_types"
)
_LOG = (
    # the CTE is volatile, hence evaluated once and before any row is drawn from the sequence
    "WITH lock AS (SELECT pg_advisory_xact_lock_shared(hashtextextended(current_schema() || ':change_log', 0)))"
    " INSERT INTO change_log (tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at)"
    " SELECT $1, u.i, $2, u.b, u.bc, u.bm, u.a, u.ac, u.am"
    " FROM lock, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
    " WITH ORDINALITY AS u(i, b, bc, bm, a, ac, am, n) ORDER BY u.n RETURNING seq"
)
_LOG_AT = (
    # _LOG for the records of a group of modify calls, each with its call's `at`
    "WITH lock AS (SELECT pg_advisory_xact_lock_shared(hashtextextended(current_schema() || ':change_log', 0)))"
    " INSERT INTO change_log (tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at)"
    " SELECT $1, u.i, u.t, u.b, u.bc, u.bm, u.a, u.ac, u.am"
    " FROM lock, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
    " WITH ORDINALITY AS u(t, i, b, bc, bm, a, ac, am, n) ORDER BY u.n RETURNING seq"
)
_GROUP_UPSERT = (
    # _UNNEST + _REPLACE with each row's own timestamps (the calls of a group have their own `now`)
    "INSERT INTO entities AS e (tenant, id, doc, created_at, modified_at, attrs, attr_types)"
    " SELECT $1, i, d::jsonb, c, m, string_to_array(a, E'\\x1f'), string_to_array(k, E'\\x1f')"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(i, d, c, m, a, k)"
    + _REPLACE + " RETURNING id, created_at"
)
_LOCKS = (
    "SELECT pg_advisory_xact_lock(h) FROM"
    " (SELECT hashtextextended({tenant} || ' ' || k, 0) AS h FROM unnest({keys}) AS k ORDER BY h) AS s"
)
"""A modify group's entity locks (PostgresStore._modify_group): the tenant and keys as literals or parameters."""


def _literal(text: str) -> str:
    """`text` as an escape-string literal, whatever standard_conforming_strings says (no NUL in it)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _text_array(texts: Sequence[str]) -> str:
    return "ARRAY[" + ",".join(map(_literal, texts)) + "]::text[]"


# the change records of a group written by one statement (_GROUP_WRITE, _CHECKED_WRITE): $8-$16 the records'
# columns as arrays, `up` the statement's upsert or update (createdAt of each id's last record), `lock` the log lock;
# $8 through a sub-select, so that the statement keeps a generic plan (see _CHECKED_WRITE)
_LOG_RECORDS = (
    " INSERT INTO change_log (tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at)"
    " SELECT $1, u.i, u.t, u.b, u.bc, u.bm, u.a,"
    " CASE WHEN u.l AND u.a IS NOT NULL THEN coalesce(up.created_at, u.ac) ELSE u.ac END, u.am"
    " FROM lock, unnest((SELECT $8::text[]), $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],"
    " $15::text[], $16::bool[]) WITH ORDINALITY AS u(t, i, b, bc, bm, a, ac, am, l, n)"
    " LEFT JOIN up ON up.id = u.i ORDER BY u.n RETURNING seq, after_created_at"
)


_GROUP_WRITE = (
    # a group's upsert (_GROUP_UPSERT, $1-$7) and its change records (_LOG_AT's, $8-$15) in one statement, when
    # it has nothing else to write between them (no entity created or deleted, no side-table row changed: a
    # PATCH): a round trip less per group (issue 16, pgpatch19). $16 marks each id's last record, whose
    # after image takes the createdAt the upsert kept (a row inserted since the read keeps its own). The
    # sort by n reads every row, the lock's and the upsert's with them, before the first seq is drawn
    "WITH up AS (" + _GROUP_UPSERT + "),"
    " lock AS (SELECT pg_advisory_xact_lock_shared(hashtextextended(current_schema() || ':change_log', 0)))"
    + _LOG_RECORDS
)
_CHECKED_WRITE = (
    # a group read without locks (PostgresStore._optimistic), written by one statement in a transaction of its
    # own: its updates ($1-$7 as _GROUP_UPSERT's, $19 the xmin read of each written row) and change records
    # (_GROUP_WRITE's $8-$16), only if every row the group read ($17, absent ones included, $18 their xmin
    # or null) is still the version read. An UPDATE finds a row changed since the statement's snapshot by
    # re-reading its latest version (READ COMMITTED), so a concurrent write is seen even if it commits
    # while this one waits for the row. `guard` fails the statement (nothing written, no seq drawn: it is
    # read before the log lock is taken; MATERIALIZED and `g = 0`, else PostgreSQL inlines it and never computes
    # g) with STALE_READ in its message; the rows are locked before the
    # log lock is asked for, as in the locked path, so the two cannot deadlock on them.
    # Each unnest sees one of its arrays through a sub-select, `(SELECT $n::text[])` (also in _LOG_RECORDS): a
    # custom plan then estimates its rows as a generic plan does, so PostgreSQL keeps the generic plan after
    # its first five custom ones. With the arrays as constants, the custom plans counted their exact (small)
    # lengths and looked cheaper: the statement was planned afresh for every group, a quarter of the server
    # backends' CPU under single-attribute PATCH (perf, issue 16, pgwal22). The plan is the same (index scans)
    "WITH chk AS (SELECT count(*) AS n FROM unnest((SELECT $17::text[]), $18::text[]) AS c(i, x)"
    " LEFT JOIN entities e ON e.tenant = $1 AND e.id = c.i WHERE e.xmin::text IS NOT DISTINCT FROM c.x),"
    " up AS (UPDATE entities AS e SET doc = u.d::jsonb, modified_at = u.m, attrs = string_to_array(u.a, E'\\x1f'),"
    " attr_types = string_to_array(u.k, E'\\x1f')"
    " FROM unnest((SELECT $2::text[]), $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $19::text[])"
    " AS u(i, d, c, m, a, k, x) WHERE e.tenant = $1 AND e.id = u.i AND e.xmin::text = u.x RETURNING e.id, e.created_at),"
    " guard AS MATERIALIZED (SELECT CASE WHEN (SELECT count(*) FROM up) = cardinality($2::text[])"
    " AND (SELECT n FROM chk) = cardinality($17::text[]) THEN 0"
    " ELSE ('" + "{stale}" + " ' || (SELECT count(*) FROM up))::int END AS g),"
    " lock AS (SELECT pg_advisory_xact_lock_shared(hashtextextended(current_schema() || ':change_log', 0)) FROM guard WHERE g = 0)"
    + _LOG_RECORDS
)
STALE_READ = "pgpatch20-stale-read"
"""The marker of `_CHECKED_WRITE`'s failure: a row the group read has changed since."""
# its transaction's id as a 32-bit xid, the xmin of every row version it wrote: kept in PostgresStore._versions
_CHECKED_WRITE = _CHECKED_WRITE.replace("{stale}", STALE_READ) + ", (pg_current_xact_id()::text::bigint & 4294967295)::text"
VERSIONS = 4096
"""Entity rows whose last version this process wrote by `_CHECKED_WRITE` are kept (text, times, xmin), at most this
many: a modify group on kept rows only is written without reading them (PostgresStore._optimistic)."""
GROUP_MAX = 64
"""The most modify calls one group commit runs (a bound on how long the first of them waits for its answer)."""
FLUSHERS = 4
"""Groups in flight at once: the next ones write while the one before waits for its WAL flush, and their commits
share the next flush (the log lock is shared by writers). Measured against 2 with the lock held alone (issue 16,
pgpatch21): more groups in flight with the exclusive lock only queue on it; with it shared, 4 were faster."""
GROUP_IDS = 2000
"""No call joins a group once its calls name this many ids (a batch update names up to 1,000)."""
_SETTLED = (
    # the change log's settled end: every seq up to it is committed or never will be. The log lock taken alone
    # waits for the writers holding it shared (each draws its seqs under it), and writers asking for it meanwhile
    # wait behind it; the sequence's last value is read while it is held (the MATERIALIZED CTE runs first), so a
    # seq drawn later is higher. This needs the sequence's default CACHE 1 (a backend's cached seqs would be
    # drawn after the read and be lower)
    "WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':change_log', 0)))"
    " SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('change_log', 'seq')::regclass), 0) FROM held"
)
_LOG_COLUMNS = (
    "seq, tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at"
)
_log = logging.getLogger(__name__)
# the relations of broker.query.geo, entity geometry first ("contains": the entity contains the reference)
_TOPOLOGY = {
    "within": "ST_Within",
    "contains": "ST_Contains",
    "intersects": "ST_Intersects",
    "disjoint": "ST_Disjoint",
    "equals": "ST_Equals",
    "overlaps": "ST_Overlaps",
}
_DENSIFY = 0.001
"""Longest segment, in degrees, of geometries measured on the sphere (about 100 m: a great-circle arc
of that length strays less than a millimetre from the straight lng/lat segment at mid-latitudes)."""
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _geo_rows(tenant: str, geo: GeoQuery, p: _Params, test: str) -> str:
    """The entities with an instance of the GeoProperty `geo.geoproperty` (an IRI) that passes `test` (on g.geom)."""
    return f"e.id IN (SELECT g.id FROM geo_boxes g WHERE g.tenant = {p(tenant)} AND g.attr = {p(geo.geoproperty)} AND {test})"


def _entity(row: asyncpg.Record) -> StoredEntity:
    return StoredEntity(row[1], row[2], row[3])


def _image_doc(doc: Doc | None, created_at: str | None, modified_at: str | None) -> Doc | None:
    if doc is None:
        return None
    doc["createdAt"] = created_at
    doc["modifiedAt"] = modified_at
    return doc


_TIMES = ("createdAt", "modifiedAt")
_ABSENT = object()


def _before_delta(before: Doc, after: Doc) -> str:
    """A change record's before image as what it has that `after` has not (migration 8): the JSON text of
    `[{member: before's value}, [members only after has]]`, system times (columns) aside.

    A member is left out when after holds the same value: the same object (a PATCH's untouched attributes,
    shared by both documents) or one that encodes to the same JSON (so 1 and 1.0, or 1 and true, which
    Python finds equal, stay apart; a value Python finds unequal is kept without encoding it). Written by
    the modify paths (`_write_group`, `_log_at`); `_before_doc` rebuilds the document from after's.
    """
    changed: Doc = {}
    for name, value in before.items():
        other = after.get(name, _ABSENT)
        if other is value or name in _TIMES:
            continue
        if other is _ABSENT or other != value or orjson.dumps(other) != orjson.dumps(value):
            changed[name] = value
    added = [name for name in after if name not in before and name not in _TIMES]
    return orjson.dumps([changed, added]).decode()


def _before_column(image: Before, before: Doc | None, after: Doc | None) -> str | None:
    """The change_log.before_doc text of a record: None when created, the whole document when deleted,
    else the delta to the after image (`_before_delta`: a JSON array, where a whole document is an object)."""
    if image is None:
        return None
    if after is None or before is None:
        return image[0]
    return _before_delta(before, after)


def _before_doc(text: str, after: Doc | None) -> Doc:
    """A before image read back from the log: a whole document (an object: deletions, records written
    before migration 8) or a delta to the record's after document, whose values it then shares."""
    stored = orjson.loads(text)
    if type(stored) is dict:
        return stored
    changed, added = stored
    assert after is not None, "a change record's before delta without an after image"
    doc = {name: value for name, value in after.items() if name not in added}
    doc.update(changed)
    return doc


def _record(row: asyncpg.Record) -> ChangeRecord:
    after = None if row[7] is None else orjson.loads(row[7])
    before = None if row[4] is None else _before_doc(row[4], after)
    return ChangeRecord(row[0], row[1], row[2], _image_doc(before, row[5], row[6]), _image_doc(after, row[8], row[9]), row[3])


def _with_times(doc: Doc | None, created_at: str, modified_at: str) -> Doc | None:
    return None if doc is None else {**doc, "createdAt": created_at, "modifiedAt": modified_at}


def _stored_doc(entity: StoredEntity | None) -> Doc | None:
    return None if entity is None else _with_times(entity.doc, entity.created_at, entity.modified_at)


_UNREAD: Doc = {}
"""The document of a stored row a group has not decoded yet (PostgresStore._group_body; compared by identity)."""


def _held(state: dict[str, StoredEntity | None], texts: dict[str, str], decoded: dict[str, Doc],
          i: str) -> StoredEntity | None:
    """The group's state of `i`, a stored row's document decoded on first need (and kept, in `decoded` too)."""
    s = state.get(i)
    if s is not None and s.doc is _UNREAD:
        decoded[i] = orjson.loads(texts[i])
        s = state[i] = StoredEntity(decoded[i], s.created_at, s.modified_at)
    return s


def _same_side_rows(before: Doc, after: Doc, rows: IndexRows) -> bool:
    """Whether the side tables (entity_types, geo_boxes) already hold what `after` gives (`rows`, its index_rows).

    A document read back from jsonb has its members in jsonb's order (shorter keys first), not the
    client's: the quick test (same_index) is asked with `after`'s members in `before`'s order, and the
    rows are compared as what the tables hold, sets of types and of (attribute, box, geometry) rows,
    whatever their order in the documents.
    """
    if before.keys() == after.keys() and same_index(before, {k: after[k] for k in before}):
        return True
    old = index_rows(before)
    return set(old.types) == set(rows.types) and (
        sorted(zip(old.boxes, old.shapes or [""] * len(old.boxes))) == sorted(zip(rows.boxes, rows.shapes or [""] * len(rows.boxes))))


def _types(doc: Doc) -> set[Any]:
    types = doc.get("type") or []
    return {types} if isinstance(types, str) else set(types)


def _same_types_geo(before: Doc, after: Doc, after_geo: Geo) -> bool:
    """Whether `before` and `after` certainly give the same side-table rows: the same set of types and equal
    GeoProperty values (compared as same_index does), per attribute in instance order. False means "maybe
    not": the caller then compares their index_rows (`_same_side_rows`)."""
    if before.get("type") != after.get("type") and _types(before) != _types(after):
        return False
    before_geo = attribute_walk(before)[1]
    if len(before_geo) != len(after_geo):
        return False
    if len(after_geo) == 1:
        return before_geo[0][0] == after_geo[0][0] and before_geo[0][1] == after_geo[0][1]
    # a stored document has jsonb's member order: attributes sorted by name, each keeping its instances' order
    return sorted(before_geo, key=_first) == sorted(after_geo, key=_first)


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Before = tuple[str, str, str] | None
"""A before image: (document as JSON text, created_at, modified_at), None when created."""
_Entry = tuple[str, Before, Before, Doc | None, Doc | None, str]
"""One change record to log: (id, before image, after image, before and after documents with their times, at)."""


class _ModifyJob:
    """One `modify` call waiting for its group (PostgresStore._flush): its arguments, then its outcome."""

    __slots__ = ("error", "fn", "future", "ids", "now", "result", "tenant")

    def __init__(self, tenant: str, ids: Sequence[str], fn: ModifyFn, now: str) -> None:
        self.tenant, self.ids, self.fn, self.now = tenant, ids, fn, now
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.result: dict[str, Any] = {}
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        self.error = exc

    def answer(self) -> None:
        """Hand the outcome to the caller (skipped if it gave up meanwhile)."""
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


def _clean(doc: Doc) -> Doc:
    """The document without entity system timestamps, which live in columns."""
    if "createdAt" in doc or "modifiedAt" in doc:
        return {k: v for k, v in doc.items() if k not in ("createdAt", "modifiedAt")}
    return doc


class _Params:
    """Collects query parameters and hands out their $n placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class PostgresStore(Store):
    """Store on a PostgreSQL schema (created if absent).

    `postgis` False never creates or uses PostGIS for queries (geo-queries
    then go through the bbox prefilter and the Python predicate); a schema
    that already has the geometry column keeps it filled on writes.
    """

    def __init__(
        self, dsn: str, *, schema: str = "public", min_size: int = 3, max_size: int = 16, postgis: bool = True,
        db: PostgresDatabase | None = None,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self.postgis = postgis
        self.exact_geo = False
        self._geom = False  # whether geo_boxes has the geometry column (writes fill it)
        # the pool is the database's, shared with history and subscription storage (storage.database)
        self._db = db if db is not None else PostgresDatabase(DatabaseUrl.postgresql(dsn, schema),
                                                               min_size=min_size, max_size=max_size)
        self.tables = postgres_schema(postgis=postgis)
        """The store's tables, migrated by its database when it opens."""
        self._pool: asyncpg.Pool | None = None
        self._recent = RecentChanges()
        self._queue: deque[_ModifyJob] = deque()  # modify calls waiting for the next group
        self._flushers: set[asyncio.Task[None]] = set()  # running flusher tasks, at most FLUSHERS
        self._turn: asyncio.Future[None] | None = None  # done once the group taken last holds its entity locks
        self._turn_keys: frozenset[str] = frozenset()  # the ids of the group taken last
        self.optimistic = True  # groups read without locks first (_optimistic); False: always with locks
        self.stale_reads = 0  # groups _optimistic gave back because a row changed since their read
        # (tenant, id) -> (doc as JSON text, created_at, modified_at, xmin) of the row version this process's
        # last checked write of it made; oldest first, at most VERSIONS (_optimistic)
        self._versions: OrderedDict[tuple[str, str], tuple[str, str, str, str]] = OrderedDict()
        self.unread_groups = 0  # groups _optimistic tried from _versions, without reading their rows

    @property
    def database(self) -> DatabaseUrl:
        return DatabaseUrl.postgresql(self.dsn, self.schema)

    @property
    def backend(self) -> PostgresDatabase:
        """The database whose pool this store uses (history and subscriptions open on it too)."""
        return self._db

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._pool = self._db.pool
        try:
            async with self._pool.acquire() as conn:
                self._geom = await has_geometry(conn)
        except BaseException:
            await self.close()
            raise
        self.exact_geo = self.postgis and self._geom
        if self.postgis and not self._geom:
            _log.warning(
                "PostGIS cannot be created in this database (not installed or no privilege): geo-queries on schema %s"
                " use the bounding-box prefilter and the Python predicate", self.schema,
            )

    async def close(self) -> None:
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)  # the calls already made finish
        if self._pool is not None:
            self._pool = None
            await self._db.close()  # the last owner to close closes the pool
        self._recent.clear()
        self._versions.clear()

    def _forget_versions(self, tenant: str, ids: Sequence[str]) -> None:
        """Drop the kept versions of rows a write other than `_CHECKED_WRITE` changes (a group on them then reads)."""
        versions = self._versions
        if versions:
            for i in ids:
                versions.pop((tenant, i), None)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (the store must be open)."""
        assert self._pool is not None, "store is not open"
        return self._pool

    # ------------------------------------------------------------ side tables

    @staticmethod
    async def _ensure_tenant(conn: asyncpg.Connection, tenant: str) -> None:
        await conn.execute("INSERT INTO tenants VALUES ($1) ON CONFLICT DO NOTHING", tenant)

    @staticmethod
    async def _write_rows(
        conn: asyncpg.Connection, sql: str, tenant: str, docs: Sequence[tuple[str, str]], attrs: Sequence[Attrs], now: str
    ) -> list[asyncpg.Record]:
        """Run an INSERT ... SELECT over `_UNNEST` with the documents (id, JSON text) and their attribute arrays.

        Attribute lists travel joined by the unit separator (a character no
        IRI holds) because unnest would flatten an array of arrays.
        """
        records: list[asyncpg.Record] = await conn.fetch(
            sql,
            tenant,
            [i for i, _ in docs],
            [d for _, d in docs],
            now,
            ["\x1f".join(a for a, _ in pairs) for pairs in attrs],
            ["\x1f".join(k for _, k in pairs) for pairs in attrs],
        )
        return records

    @staticmethod
    async def _log(
        conn: asyncpg.Connection, tenant: str, now: str, ids: Sequence[str], images: Sequence[tuple[Before, Before]],
        docs: Sequence[tuple[Doc | None, Doc | None]],
    ) -> list[ChangeRecord]:
        """Append one change record per entry, in order, by one statement; the transaction's last step.

        `images` are the (before, after) images as stored (JSON text and timestamps, None when
        created or deleted); `docs` the same documents, with their timestamps, as the records'
        consumers will read them: they are returned as the records written, for RecentChanges
        once the transaction commits. An id may repeat (Change.steps): its entries are in order.
        """
        if not ids:
            return []
        seqs = sorted(r[0] for r in await conn.fetch(
            _LOG, tenant, now, list(ids),
            # whole before images (insert, upsert_replace, delete): a replace stamps every instance anew, so a
            # delta would be the whole document, encoded once more
            *([(b[k] if b else None) for b, _ in images] for k in range(3)),
            *([(a[k] if a else None) for _, a in images] for k in range(3)),
        ))
        return [ChangeRecord(q, tenant, i, b, a, now) for q, i, (b, a) in zip(seqs, ids, docs)]

    @staticmethod
    def _steps(
        now: str, befores: dict[str, Before], before_docs: dict[str, Doc | None], steps: dict[str, list[Doc]],
        ids: list[str], images: list[tuple[Before, Before]], docs: list[tuple[Doc | None, Doc | None]],
    ) -> None:
        """Add to `ids`, `images`, `docs` one entry per earlier instance of each repeated id (Change.steps), in order.

        Each entry's before is the previous one's after; `befores` and `before_docs`
        are moved on to the last step, for the entry of the final document.
        """
        for entity_id, chain in steps.items():
            before, before_doc = befores[entity_id], before_docs[entity_id]
            created = before[1] if before is not None else now
            for step in chain:
                doc = _clean(step)
                after: Before = (orjson.dumps(doc).decode(), created, now)
                ids.append(entity_id)
                images.append((before, after))
                docs.append((before_doc, _with_times(doc, created, now)))
                before, before_doc = after, docs[-1][1]
            befores[entity_id], before_docs[entity_id] = before, before_doc

    async def _index(self, conn: asyncpg.Connection, tenant: str, ids: Sequence[str], index: Sequence[IndexRows]) -> None:
        t_ids: list[str] = []
        t_types: list[str] = []
        for entity_id, rows in zip(ids, index):
            for t in rows.types:
                t_ids.append(entity_id)
                t_types.append(t)
        if t_ids:
            await conn.execute(
                "INSERT INTO entity_types (tenant, type, id) SELECT $1, t, i FROM unnest($2::text[], $3::text[]) AS u(t, i)",
                tenant, t_types, t_ids,
            )
        geo = pg_geo_rows(tenant, ids, index, geom=self._geom)
        if geo is not None:
            await conn.execute(PG_GEOM_INSERT if self._geom else PG_GEO_INSERT, *geo)

    @staticmethod
    async def _unindex(conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> None:
        if ids:
            for table in ("entity_types", "geo_boxes"):
                await conn.execute(f"DELETE FROM {table} WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(ids))

    # ------------------------------------------------------------ tenants

    async def ensure_tenant(self, tenant: str) -> None:
        async with self.pool.acquire() as conn:
            await self._ensure_tenant(conn, tenant)

    async def has_tenant(self, tenant: str) -> bool:
        if tenant == "":
            return True
        exists: bool = await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE name = $1)", tenant)
        return exists

    async def tenants(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch("SELECT name FROM tenants ORDER BY name")]

    # ------------------------------------------------------------ reads

    async def get(self, tenant: str, entity_id: str) -> StoredEntity | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM entities e WHERE tenant = $1 AND id = $2", tenant, entity_id)
        return None if row is None else _entity(row)

    async def get_many(self, tenant: str, ids: Sequence[str]) -> dict[str, StoredEntity]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM entities e WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(ids))
        return {r[0]: _entity(r) for r in rows}

    def _where(self, tenant: str, flt: EntityFilter, p: _Params) -> str | None:
        """SQL conditions for everything but the predicate; None when nothing can match."""
        clauses = [f"e.tenant = {p(tenant)}"]
        if flt.ids is not None:
            clauses.append(f"e.id = ANY({p(list(flt.ids))}::text[])")
        if flt.id_pattern is not None:
            # RE2 runs the pattern itself (query() adds it to the predicate): PostgreSQL's `~` is another
            # dialect (\pL, (?P<n>), \z are errors there, 500s once). Its anchored literal prefix narrows in SQL.
            prefix = literal_prefix(flt.id_pattern)
            if prefix:
                clauses.append(f"starts_with(e.id, {p(prefix)})")
        if flt.type_dnf is not None:
            if not flt.type_dnf:
                return None
            if all(flt.type_dnf):  # an empty conjunction matches every entity
                parts = []
                for conj in flt.type_dnf:
                    if len(conj) == 1:
                        parts.append(f"SELECT id FROM entity_types WHERE tenant = {p(tenant)} AND type = {p(next(iter(conj)))}")
                    else:
                        parts.append(
                            f"SELECT id FROM entity_types WHERE tenant = {p(tenant)} AND type = ANY({p(sorted(conj))}::text[])"
                            f" GROUP BY id HAVING count(*) = {p(len(conj))}"
                        )
                clauses.append(f"e.id IN ({' UNION '.join(parts)})")
        if flt.attrs_any is not None:
            if not flt.attrs_any:
                return None
            clauses.append(
                f"e.attrs && {p(sorted(flt.attrs_any))}::text[]"
            )
        if flt.geo is not None and self.exact_geo:
            clauses.append(self._geo_clause(tenant, flt.geo, p))
        elif flt.geo_bbox is not None:
            attr, (min_lng, min_lat, max_lng, max_lat) = flt.geo_bbox
            clauses.append(
                f"e.id IN (SELECT id FROM geo_boxes WHERE tenant = {p(tenant)} AND attr = {p(attr)}"
                f" AND bbox && box(point({p(float(min_lng))}, {p(float(min_lat))}), point({p(float(max_lng))}, {p(float(max_lat))})))"
            )
        return " AND ".join(clauses)

    @staticmethod
    def _where_prefilter(pf: Prefilter, p: _Params) -> str:
        """The condition on `e.doc` of a q prefilter (broker.query.q_sql): a per-row filter, no index."""
        if isinstance(pf, (AllOf, AnyOf)):
            joiner = " AND " if isinstance(pf, AllOf) else " OR "
            return "(" + joiner.join(PostgresStore._where_prefilter(t, p) for t in pf.terms) + ")"
        if isinstance(pf, AttrExists):
            return f"e.doc ? {p(pf.iri)}"
        # A jsonpath (one C call per row; a subquery over jsonb_array_elements cost a third more)
        # yielding the instances `$."iri"[*]` (lax mode wraps a single object, which the predicate
        # accepts too) that pass `type != "Property" || value.type() != "number" || value in an
        # interval`. In jsonpath's three-valued logic that is true unless no operand is: `type`
        # is then "Property", missing or not a string (false or unknown), and `value` missing or
        # a number outside the intervals. The predicate reads `value` alone on such an instance
        # (broker.query.q `_extract`) and finds no match. Numbers compare as exact decimals with
        # the widened bounds, passed as jsonpath variables.
        variables: dict[str, float] = {}
        ranges = []
        for k, (low, high) in enumerate(pf.intervals):
            bounds = []
            for bound, name, test in ((low, f"low{k}", ">="), (high, f"high{k}", "<=")):
                if bound is not None:
                    variables[name] = bound
                    bounds.append(f'@."value" {test} ${name}')
            ranges.append("(" + " && ".join(bounds) + ")")
        # q_sql only passes keys that need no escaping in a jsonpath string
        path = f'$."{pf.iri}"[*] ? (@."type" != "Property" || @."value".type() != "number" || {" || ".join(ranges)})'
        return f"jsonb_path_exists(e.doc, {p(path)}::jsonpath, {p(variables)}::jsonb)"

    @staticmethod
    def _geo_clause(tenant: str, geo: GeoQuery, p: _Params) -> str:
        """The entities with an instance of the GeoProperty `geo.geoproperty` (an IRI) in the relation.

        The reference geometry is built once per query (a scalar subquery: an InitPlan), not once per row,
        and the GiST index on geom serves every relation but disjoint and minDistance.
        """
        geometry = f"ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON({p(orjson.dumps(geo.geometry).decode())}), 4326))"
        if geo.georel == "equals":
            return _geo_rows(tenant, geo, p, f"ST_Equals(g.geom, (SELECT {geometry}))")
        if geo.georel != "near":
            # an OGC-invalid reference is repaired as broker.query.geo repairs it (GEOS make-valid)
            valid = f"(SELECT CASE WHEN ST_IsValid(r) THEN r ELSE ST_MakeValid(r) END FROM (SELECT {geometry} AS r) x)"
            return _geo_rows(tenant, geo, p, f"{_TOPOLOGY[geo.georel]}(g.geom, {valid})")
        # Geography edges are great-circle arcs, broker.query.geo's are straight lng/lat segments (RFC 7946):
        # both geometries densified to vertices _DENSIFY degrees apart make the two agree within millimetres.
        reference = f"(SELECT ST_Segmentize({geometry}, {_DENSIFY})::geography)"
        target = f"ST_Segmentize(g.geom, {_DENSIFY})::geography"
        if geo.max_distance is not None:
            near = f"ST_DWithin({target}, {reference}, {p(float(geo.max_distance))}, false)"
            box = bbox_for_prefilter(geo)
            if box is None:
                return _geo_rows(tenant, geo, p, near)
            # ST_DWithin on geography cannot use the geometry index: the prefilter box, proven safe, does
            envelope = ", ".join(p(float(v)) for v in box)
            return _geo_rows(tenant, geo, p, f"g.geom && ST_MakeEnvelope({envelope}, 4326) AND {near}")
        return _geo_rows(tenant, geo, p, f"NOT ST_DWithin({target}, {reference}, {p(float(geo.min_distance or 0.0))}, false)")

    async def query(self, tenant: str, flt: EntityFilter, *, limit: int, offset: int, count: bool) -> QueryPage:
        if flt.id_pattern is not None:
            search, rest = compile_pattern(flt.id_pattern).search, flt.predicate
            flt = replace(flt, predicate=lambda doc: search(doc["id"]) is not None and (rest is None or rest(doc)))
        p = _Params()
        where = self._where(tenant, flt, p)
        if where is None:
            return QueryPage([], 0 if count else None)
        source = "entities e"
        if flt.prefilter is not None:
            # Left to itself, the planner evaluates the prefilter in the scan of the tenant's entities,
            # below the join with the type's ids: every document of every type is read. OFFSET 0 keeps
            # the subquery whole, so the prefilter only meets the candidates. Without count they come
            # in id order from inside it, and are filtered only as far as the cursor goes: else a plan
            # that sorts filters every candidate first (a first page took 700 ms instead of 5).
            inner_order = "" if count else " ORDER BY e.id"
            source = f"(SELECT {_COLUMNS} FROM entities e WHERE {where}{inner_order} OFFSET 0) e"
            where = self._where_prefilter(flt.prefilter, p)
        params = p.values
        order = "ORDER BY e.id"  # the "C" collation of the column: byte order, as in SQLite
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if flt.predicate is None:
                page: list[StoredEntity] = []
                if limit > 0:
                    rows = await conn.fetch(
                        f"SELECT {_COLUMNS} FROM {source} WHERE {where} {order} LIMIT {int(limit)} OFFSET {int(offset)}", *params
                    )
                    page = [_entity(r) for r in rows]
                total = await conn.fetchval(f"SELECT count(*) FROM {source} WHERE {where}", *params) if count else None
                return QueryPage(page, total)
            page, matched = [], 0
            cursor = await conn.cursor(f"SELECT {_COLUMNS} FROM {source} WHERE {where} {order}", *params)
            # Without count, first fetch only the rows the page needs, then more and more: behind a
            # q prefilter most rows match, and each row fetched has cost the server a jsonpath.
            size = CHUNK if count else min(CHUNK, offset + limit)
            while rows := await cursor.fetch(size):
                for row in rows:
                    if not flt.predicate(row[1]):
                        continue
                    if offset <= matched < offset + limit:
                        page.append(_entity(row))
                    matched += 1
                if not count and matched >= offset + limit:
                    break
                size = min(CHUNK, 2 * size)
            return QueryPage(page, matched if count else None)

    async def type_summaries(self, tenant: str) -> list[TypeSummary]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            counts = await conn.fetch(
                'SELECT type, count(*) FROM entity_types WHERE tenant = $1 GROUP BY type ORDER BY type', tenant
            )
            summaries = {r[0]: TypeSummary(r[0], r[1]) for r in counts}
            rows = await conn.fetch(
                "SELECT DISTINCT t.type, a.attr, a.attr_type FROM entity_types t"
                " JOIN entities e ON e.tenant = t.tenant AND e.id = t.id,"
                " unnest(e.attrs, e.attr_types) AS a(attr, attr_type) WHERE t.tenant = $1",
                tenant,
            )
        for type_iri, attr, attr_type in rows:
            summaries[type_iri].attributes.setdefault(attr, set()).add(attr_type)
        return list(summaries.values())

    # ------------------------------------------------------------ writes

    async def insert(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        fresh: dict[str, Doc] = {}
        for doc in docs:
            fresh.setdefault(doc["id"], _clean(doc))  # the first document of an id is the one tried
        texts = {i: orjson.dumps(d).decode() for i, d in fresh.items()}
        async with self.pool.acquire() as conn, conn.transaction():
            index = [index_rows(d) for d in fresh.values()]
            sql = _UNNEST + " ON CONFLICT (tenant, id) DO NOTHING RETURNING id"
            written = {r[0] for r in await self._write_rows(conn, sql, tenant, list(texts.items()), [r.attrs for r in index], now)}
            kept = [(i, r) for i, r in zip(fresh, index) if i in written]
            await self._index(conn, tenant, [i for i, _ in kept], [r for _, r in kept])
            if written:
                await self._ensure_tenant(conn, tenant)
            records = await self._log(conn, tenant, now, [i for i, _ in kept], [(None, (texts[i], now, now)) for i, _ in kept],
                                      [(None, _with_times(fresh[i], now, now)) for i, _ in kept])
        self._recent.add(records)  # committed
        self._forget_versions(tenant, list(written))
        conflicts, seen = [], set()
        for doc in docs:
            if doc["id"] in seen or doc["id"] not in written:
                conflicts.append(doc["id"])
            seen.add(doc["id"])
        return conflicts

    async def upsert_replace(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        latest = {d["id"]: _clean(d) for d in docs}  # the last document of an id wins
        if not latest:
            return []
        texts = {i: orjson.dumps(d).decode() for i, d in latest.items()}
        async with self.pool.acquire() as conn, conn.transaction():
            # the before images, locked so that they are what this call replaces
            old = await conn.fetch(
                "SELECT id, doc::text, created_at, modified_at FROM entities WHERE tenant = $1 AND id = ANY($2::text[]) FOR UPDATE",
                tenant, list(latest),
            )
            befores: dict[str, Before] = {r[0]: (r[1], r[2], r[3]) for r in old}
            # xmax is 0 on a freshly inserted row version; created_at is the row's (an existing row keeps its own)
            # an entity read has its attribute pairs and GeoProperty values from a walk without parsing geometries
            # (attribute_walk), the others their side rows (index_rows), which they write
            shapes = [attribute_walk(d) if i in befores else index_rows(d) for i, d in latest.items()]
            sql = _UNNEST + _REPLACE + " RETURNING id, (xmax = 0) AS created, created_at"
            attrs = [s.attrs if isinstance(s, IndexRows) else s[0] for s in shapes]
            rows = await self._write_rows(conn, sql, tenant, list(texts.items()), attrs, now)
            created = {r[0] for r in rows if r[1]}
            created_at = {r[0]: r[2] for r in rows}
            # side-table rows kept where types and geometry are unchanged (a sensor's new readings); the
            # geometries are parsed (index_rows) only for the entities whose rows are written or in doubt
            before_docs = {i: orjson.loads(b[0]) for i, b in befores.items() if b is not None}
            changed: list[tuple[str, IndexRows]] = []
            for (i, d), shape in zip(latest.items(), shapes):
                if isinstance(shape, IndexRows):
                    changed.append((i, shape))
                    continue
                before_doc = before_docs[i]
                if _same_types_geo(before_doc, d, shape[1]):
                    continue
                r = index_rows(d)
                if not _same_side_rows(before_doc, d, r):
                    changed.append((i, r))
            await self._unindex(conn, tenant, [i for i, _ in changed if i not in created])
            await self._index(conn, tenant, [i for i, _ in changed], [r for _, r in changed])
            await self._ensure_tenant(conn, tenant)
            images: list[tuple[Doc | None, Doc | None]] = []  # (before, after) per id; `docs` is the argument
            for i, d in latest.items():
                b = befores.get(i)
                images.append((None, _with_times(d, now, now)) if b is None else
                            (_with_times(before_docs[i], b[1], b[2]), _with_times(d, b[1], now)))
            records = await self._log(conn, tenant, now, list(latest),
                                      [(befores.get(i), (texts[i], created_at[i], now)) for i in latest], images)
        self._recent.add(records)  # committed
        self._forget_versions(tenant, list(latest))
        return [i for i in latest if i in created]

    async def modify(self, tenant: str, ids: Sequence[str], fn: ModifyFn, now: str) -> dict[str, Any]:
        # Group commit (as SQLite's writer does): the calls queued while a group is in flight run next,
        # together, in one transaction on one connection. Each call held the change-log lock from its log
        # insert through its COMMIT's WAL flush and the round trip back to the event loop, so with
        # separate transactions the PATCHes of 8 clients took turns on that lock: sampled in
        # pg_stat_activity, most backends waited on it (Lock:advisory), its holder on IO:WALSync or on
        # the broker (ClientRead). A group takes it once and flushes the WAL once for all its calls.
        job = _ModifyJob(tenant, ids, fn, now)
        self._queue.append(job)
        if len(self._flushers) < FLUSHERS:
            task = asyncio.get_running_loop().create_task(self._flush(), name="pg-modify-group")
            self._flushers.add(task)  # removed by the task itself, when it finds the queue empty
        return await job.future

    def _take(self) -> list[_ModifyJob]:
        """The oldest queued call with the queued calls of its tenant behind it, at most GROUP_MAX calls."""
        queue = self._queue
        first = queue.popleft()
        taken, others, size = [first], deque[_ModifyJob](), len(first.ids)
        while queue and len(taken) < GROUP_MAX and size < GROUP_IDS:
            job = queue.popleft()
            if job.tenant == first.tenant:
                taken.append(job)
                size += len(job.ids)
            else:
                others.append(job)
        others.extend(queue)
        self._queue = others
        return [j for j in taken if not j.future.done()]  # a caller cancelled before its call ran

    async def _flush(self) -> None:
        """Run the queued calls, group by group, on one connection held while there are some."""
        conn: Any = None  # a pool connection (asyncpg's proxy)
        jobs: list[_ModifyJob] = []
        turn: asyncio.Future[None] | None = None
        try:
            while True:
                if not self._queue:
                    # before any await (the release below): a call queued from now on starts another flusher
                    self._flushers.discard(asyncio.current_task())
                    break
                jobs = self._take()
                if not jobs:
                    continue
                # groups take their entity locks in the order they were taken (so calls on one entity apply
                # in call order), but each goes on as soon as the one before holds its locks: while one
                # waits for its COMMIT's WAL flush, the next reads and writes
                before, turn = self._turn, asyncio.get_running_loop().create_future()
                keys = frozenset(i for job in jobs for i in job.ids)
                apart = keys.isdisjoint(self._turn_keys)
                self._turn, self._turn_keys = turn, keys
                try:
                    if conn is None:
                        conn = await self.pool.acquire()
                    records = await self._modify_group(conn, jobs[0].tenant, jobs, before, turn, apart)
                except Exception as exc:  # noqa: BLE001 - the database failed the group: see below
                    if not turn.done():
                        # failed before it held its locks (no connection: the database was down), so
                        # _modify_group did not mark its turn: the next group must not wait for it for ever
                        turn.set_result(None)
                    if conn is not None and conn.is_closed():
                        conn = None
                    if len(jobs) == 1:
                        jobs[0].fail(exc)
                        jobs[0].answer()
                        continue
                    # a statement failed for one call (or the connection for all): each call again
                    # alone, so that it fails only its own caller
                    for job in jobs:
                        await self._modify_alone(job)
                    continue
                self._recent.add(records)  # committed
                for job in jobs:
                    job.answer()
        except BaseException as exc:
            # not expected (cancelled): no caller may wait for ever
            self._flushers.discard(asyncio.current_task())
            if turn is not None and not turn.done():
                turn.set_result(None)
            for job in [*jobs, *self._queue]:
                if isinstance(exc, asyncio.CancelledError):
                    job.future.cancel()
                else:
                    job.fail(exc)
                    job.answer()
            self._queue.clear()
            raise
        finally:
            if conn is not None:
                await self.pool.release(conn)

    async def _modify_alone(self, job: _ModifyJob) -> None:
        try:
            async with self.pool.acquire() as conn:
                records = await self._modify_group(conn, job.tenant, [job])
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            job.fail(exc)
            job.answer()
            return
        self._recent.add(records)  # committed
        job.answer()

    async def _modify_group(self, conn: asyncpg.Connection, tenant: str, jobs: list[_ModifyJob],
                            before: asyncio.Future[None] | None = None, turn: asyncio.Future[None] | None = None,
                            apart: bool = False) -> list[ChangeRecord]:
        """Run the calls `jobs` of `tenant` in one transaction, in order; their change records (once committed).

        Each call sees the entities as the calls before it left them, and is logged as if alone
        (one record per entity it changed, its before the previous call's after). A call whose
        function raises changes nothing and gets its exception; the others go on. Each job's
        result (or error) is set on it; its caller is answered once the transaction committed.
        """
        keys = sorted({i for job in jobs for i in job.ids})
        if turn is not None and self.optimistic:
            # a group's turn is done once it is (committed or failed): the next group writes after it, or at
            # once if it names none of this group's ids (`apart`: nothing either call sees depends on the other)
            try:
                records = None
                if before is not None:
                    records = await self._optimistic(conn, tenant, jobs, keys, before, apart)
                if records is None:  # the first group, not a PATCH-like group, or a row changed since the read
                    if before is not None:
                        await asyncio.shield(before)
                    records = await self._modify_group(conn, tenant, jobs)
                return records
            finally:
                if not turn.done():
                    turn.set_result(None)
        # the rows this group writes with locks are no longer the versions _optimistic kept
        self._forget_versions(tenant, keys)
        try:
            if before is not None:
                await asyncio.shield(before)  # the group taken before this one holds its locks
            # locks taken in hash order, the same in every transaction, so they cannot deadlock. BEGIN and the
            # locks go in one simple-protocol query, the keys as literals (a round trip less per group than
            # asyncpg's transaction(), which sends BEGIN alone; issue 16, pgpatch19); a key PostgreSQL's
            # text cannot hold (NUL) goes the parameter way and fails there, as before
            literal = "\x00" not in tenant and not any("\x00" in k for k in keys)
            try:
                await conn.execute("BEGIN; " + _LOCKS.format(tenant=_literal(tenant), keys=_text_array(keys)) if literal
                                   else "BEGIN")
                if not literal:
                    await conn.execute(_LOCKS.format(tenant="$1", keys="$2::text[]"), tenant, keys)
                if turn is not None and not turn.done():
                    turn.set_result(None)
                records = await self._group_body(conn, tenant, jobs, keys)
                assert records is not None  # with locks held, every group is written
            except BaseException:
                if not conn.is_closed() and conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            self._forget_versions(tenant, keys)  # a group before it may have kept one while this one waited
            return records
        finally:
            if turn is not None and not turn.done():
                turn.set_result(None)  # failed before its locks: the next group must not wait for ever

    async def _optimistic(self, conn: asyncpg.Connection, tenant: str, jobs: list[_ModifyJob], keys: list[str],
                          before: asyncio.Future[None], apart: bool = False) -> list[ChangeRecord] | None:
        """`_modify_group` without a transaction around the read: the group's records, or None to run it with locks.

        The rows are read without locks (while the group before writes), the calls run on them, and a
        group that only rewrites stored rows (a PATCH: `_write_group`'s case) is written, once the group
        before is done, by one statement in a transaction of its own (`_CHECKED_WRITE`), which writes
        nothing unless every row read is still the version read (xmin). Two round trips per group where
        the locked path takes four (BEGIN with the entity locks, the read, the write, COMMIT); the log
        lock is held for that statement and its commit only (issue 16, pgpatch20). Any other group, or
        one whose rows changed since its read, answers None: the caller runs it again with locks (the
        calls' functions run again, as after a failed group).

        Rows whose last version this process wrote by `_CHECKED_WRITE` are not read at all: that statement
        returns its transaction's id, the xmin of the versions it wrote, and they are kept (`_versions`,
        with the text and times written). A group on kept rows only is one round trip, its write (issue 16,
        pgpatch21); the write's xmin check makes a kept version that another writer replaced since (another
        process, a write of another kind) a stale read like any other. A group naming an id of the group
        before waits for that one first, so that it finds its version (before, it read while that group
        wrote, and that group's commit then made its write fail and run again with locks).
        """
        if not apart:
            await asyncio.shield(before)
        kept = [self._versions.get((tenant, k)) for k in keys]
        rows: list[Any]
        if all(kept):
            rows = [(k, *v) for k, v in zip(keys, kept) if v is not None]
            self.unread_groups += 1
        else:
            rows = await conn.fetch(
                "SELECT e.id, e.doc::text, e.created_at, e.modified_at, e.xmin::text FROM entities e"
                " WHERE tenant = $1 AND id = ANY($2::text[])", tenant, keys
            )
        try:
            return await self._group_body(conn, tenant, jobs, keys, (rows, before, apart))
        except asyncpg.InvalidTextRepresentationError as exc:
            if STALE_READ not in str(exc):
                raise
            self.stale_reads += 1
            self._forget_versions(tenant, keys)
            return None
        except BaseException:
            self._forget_versions(tenant, keys)  # whether it committed is unknown (the connection failed)
            raise

    async def _group_body(self, conn: asyncpg.Connection, tenant: str, jobs: list[_ModifyJob], keys: list[str],
                          unlocked: tuple[list[Any], asyncio.Future[None], bool] | None = None,
                          ) -> list[ChangeRecord] | None:
        """The rest of `_modify_group`, in its transaction, once the entity locks are held.

        With `unlocked` (rows read without locks, with their xmin, and the group before's turn): the
        group written by `_CHECKED_WRITE` after that turn, or None if it is not a PATCH-like group.
        """
        # the documents as text: each call's function gets a copy of its own (_apply), decoded from it
        if unlocked is None:
            rows = await conn.fetch(
                "SELECT e.id, e.doc::text, e.created_at, e.modified_at FROM entities e"
                " WHERE tenant = $1 AND id = ANY($2::text[]) FOR UPDATE", tenant, keys
            )
        else:
            rows = unlocked[0]
        # a stored row's document is decoded when first needed: for a function that leaves the document it
        # is given intact (Change.before_intact: a PATCH), that one decode is also the change's before image,
        # and before and after share their untouched attributes (the change-log consumers compare by
        # identity first), as SQLite's modify does; before, every row was decoded twice
        initial = {r[0]: StoredEntity(_UNREAD, r[2], r[3]) for r in rows}
        state: dict[str, StoredEntity | None] = dict(initial)
        texts: dict[str, str] = {r[0]: r[1] for r in rows}  # JSON text of each held state (state[i] not None)
        stored = dict(texts)
        decoded: dict[str, Doc] = {}  # the stored rows' documents, once decoded (_held)
        removed: set[str] = set()  # stored ids a call of the group deleted (a later one may create it again)
        log: list[_Entry] = []
        for job in jobs:
            try:
                log.extend(self._apply(job, state, texts, removed, decoded))
            except Exception as exc:  # noqa: BLE001 - the call's own failure: it changes nothing
                job.fail(exc)
        final = {i: state[i] for i in dict.fromkeys(e[0] for e in log)}
        gone = [i for i in initial if i in removed]
        if gone and unlocked is not None:
            await asyncio.shield(unlocked[1])  # deletes: with locks, after the group before (call order)
            return None
        if gone:
            await conn.execute("DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, gone)
        written = [(i, s) for i, s in final.items() if s is not None]
        created_at: dict[str, str] = {}
        reindex: list[tuple[str, IndexRows]] = []
        upsert: list[Any] = []
        if written:
            index = [index_rows(s.doc) for _, s in written]
            upsert = [tenant, [i for i, _ in written], [texts[i] for i, _ in written],
                      [s.created_at for _, s in written], [s.modified_at for _, s in written],
                      ["\x1f".join(a for a, _ in r.attrs) for r in index], ["\x1f".join(k for _, k in r.attrs) for r in index]]
            # side-table rows kept where types and geometry are unchanged (a sensor's new readings)
            reindex = [(i, r) for (i, s), r in zip(written, index) if i not in initial or i in removed
                       or not _same_side_rows(decoded[i] if i in decoded else orjson.loads(stored[i]), s.doc, r)]
            if not gone and not reindex and all(e[1] is not None for e in log):
                if unlocked is None:
                    return (await self._write_group(conn, tenant, upsert, log))[0]
                xmin = {r[0]: r[4] for r in rows}
                if not unlocked[2]:
                    await asyncio.shield(unlocked[1])  # the group before is done: its writes are what we check
                records, version, kept_created = await self._write_group(conn, tenant, upsert, log, _CHECKED_WRITE, [
                    keys, [xmin.get(k) for k in keys], [xmin[i] for i, _ in written]])
                # committed (one statement, autocommit): the versions it wrote, for the next group on these rows
                assert version is not None
                versions = self._versions
                for i, s in written:
                    versions[(tenant, i)] = (texts[i], kept_created.get(i, s.created_at), s.modified_at, version)
                    versions.move_to_end((tenant, i))
                while len(versions) > VERSIONS:
                    versions.popitem(last=False)
                return records
        if unlocked is not None:
            await asyncio.shield(unlocked[1])  # run with locks, after the group before (call order)
            return None
        if written:
            # one upsert for all: it keeps created_at of existing rows, and an
            # insert() racing this call on a new id loses to it rather than failing it
            created_at = {r[0]: r[1] for r in await conn.fetch(_GROUP_UPSERT, *upsert)}
        if any(e[1] is None for e in log):
            # a call created an entity (a later one of the group may have deleted it): alone, it made the tenant
            await self._ensure_tenant(conn, tenant)
        await self._unindex(conn, tenant, gone + [i for i, _ in reindex if i in initial and i not in removed])
        await self._index(conn, tenant, [i for i, _ in reindex], [r for _, r in reindex])
        # an upsert that met a row inserted since the read kept that row's createdAt: the last record says so
        last = {e[0]: n for n, e in enumerate(log)}
        for i, n in last.items():
            entry = log[n]
            after = entry[2]
            if after is not None and i in created_at and after[1] != created_at[i]:
                log[n] = (i, entry[1], (after[0], created_at[i], after[2]), entry[3],
                          _with_times(_clean(entry[4] or {}), created_at[i], after[2]), entry[5])
        records = await self._log_at(conn, tenant, log)
        return records

    @staticmethod
    async def _write_group(conn: asyncpg.Connection, tenant: str, upsert: list[Any], log: list[_Entry],
                           sql: str = _GROUP_WRITE, extra: Sequence[Any] = (),
                           ) -> tuple[list[ChangeRecord], str | None, dict[str, str]]:
        """The upsert `upsert` (_GROUP_UPSERT's arguments) and the records `log` by one statement (_GROUP_WRITE,
        or `sql` with the arguments `extra` after those): the records, the xmin of the rows written when the
        statement returns it (_CHECKED_WRITE), and the createdAt each id's row kept."""
        last = {e[0]: n for n, e in enumerate(log)}
        rows = sorted(await conn.fetch(
            sql, *upsert, [e[5] for e in log], [e[0] for e in log],
            [_before_column(e[1], e[3], e[4]) for e in log],
            *([(e[1][k] if e[1] else None) for e in log] for k in range(1, 3)),
            *([(e[2][k] if e[2] else None) for e in log] for k in range(3)),
            [last[e[0]] == n for n, e in enumerate(log)], *extra,
        ), key=lambda r: int(r[0]))  # seqs are drawn in the records' order
        records = []
        kept: dict[str, str] = {}
        for n, (row, e) in enumerate(zip(rows, log)):
            seq, created = row[0], row[1]
            after_doc = e[4]
            if e[2] is not None and created != e[2][1]:  # the upsert met a row inserted since the read
                after_doc = _with_times(_clean(after_doc or {}), created, e[2][2])
            if last[e[0]] == n and created is not None:
                kept[e[0]] = created
            records.append(ChangeRecord(seq, tenant, e[0], e[3], after_doc, e[5]))
        return records, (rows[0][2] if rows and len(rows[0]) > 2 else None), kept

    @staticmethod
    def _apply(job: _ModifyJob, state: dict[str, StoredEntity | None], texts: dict[str, str],
               removed: set[str], decoded: dict[str, Doc]) -> list[_Entry]:
        """Run one call's function on `state` (updated in place only if it does not raise); its log entries."""
        now = job.now
        job.error = None  # run again alone after its group failed: only this run's outcome counts
        local: dict[str, StoredEntity | None] = {}

        def current(i: str) -> StoredEntity | None:
            if i in local:
                return local[i]
            held = state.get(i)
            # a copy of its own for the function, which may change it in place (apply_fragment adds types to
            # the list it was given): the group's state, its before images and the records of the calls
            # before it stay as they were (one decode, as SQLite's modify does)
            return None if held is None else StoredEntity(orjson.loads(texts[i]), held.created_at, held.modified_at)

        touched: dict[str, None] = {}
        steps: dict[str, list[Doc]] = {}  # earlier instances of a repeated id (Change.steps), rare
        results: dict[str, Any] = {}
        for entity_id in job.ids:  # a repeated id sees the change made before it
            given = current(entity_id)
            change: Change = job.fn(entity_id, given)
            if change.before_intact and given is not None and entity_id not in local:
                held = state[entity_id]
                if held is not None and held.doc is _UNREAD:  # the stored row, decoded once: given.doc is it
                    decoded[entity_id] = given.doc
                    state[entity_id] = StoredEntity(given.doc, held.created_at, held.modified_at)
            results[entity_id] = change.result
            if not change.changed:
                continue
            touched[entity_id] = None
            if change.steps:
                steps[entity_id] = change.steps
            if change.doc is None:
                local[entity_id] = None
            else:
                # `given` is what current() answers still (a second decode of the row, for its createdAt, before)
                local[entity_id] = StoredEntity(_clean(change.doc), given.created_at if given else now, now)
        logged = [i for i in touched if state.get(i) is not None or local[i] is not None]
        befores: dict[str, Before] = {}
        for i in logged:
            s = state.get(i)
            befores[i] = None if s is None else (texts[i], s.created_at, s.modified_at)
        before_docs = {i: _stored_doc(_held(state, texts, decoded, i)) for i in logged}
        log_ids: list[str] = []
        images: list[tuple[Before, Before]] = []
        docs: list[tuple[Doc | None, Doc | None]] = []
        if steps:  # logged before the final documents, so an id's records are in instance order
            PostgresStore._steps(now, befores, before_docs, {i: steps[i] for i in logged if i in steps}, log_ids, images, docs)
        after_texts: dict[str, str] = {}
        for i in logged:
            s = local[i]
            after: Before = None
            if s is not None:
                after_texts[i] = orjson.dumps(s.doc).decode()
                after = (after_texts[i], s.created_at, s.modified_at)
            log_ids.append(i)
            images.append((befores[i], after))
            docs.append((before_docs[i], _stored_doc(s)))
        # the call went through: its changes become the state the next call of the group sees
        for i in touched:
            if local[i] is None:
                removed.add(i)  # only stored ones matter: deleted before a later call may create it again
                texts.pop(i, None)
            else:
                texts[i] = after_texts[i] if i in after_texts else orjson.dumps(local[i].doc).decode()  # type: ignore[union-attr]
            state[i] = local[i]
        job.result = results
        return [(i, b, a, bd, ad, now) for i, (b, a), (bd, ad) in zip(log_ids, images, docs)]

    async def _log_at(self, conn: asyncpg.Connection, tenant: str, log: Sequence[_Entry]) -> list[ChangeRecord]:
        """`_log` for entries of several calls, each with its own `at`: one statement, seqs in entry order."""
        if not log:
            return []
        seqs = sorted(r[0] for r in await conn.fetch(
            _LOG_AT, tenant, [e[5] for e in log], [e[0] for e in log],
            [_before_column(e[1], e[3], e[4]) for e in log],
            *([(e[1][k] if e[1] else None) for e in log] for k in range(1, 3)),
            *([(e[2][k] if e[2] else None) for e in log] for k in range(3)),
        ))
        return [ChangeRecord(q, tenant, e[0], e[3], e[4], e[5]) for q, e in zip(seqs, log)]

    async def delete(self, tenant: str, ids: Sequence[str]) -> list[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[]) RETURNING id, doc::text, created_at, modified_at",
                tenant, list(set(ids)),
            )
            gone = {r[0]: (r[1], r[2], r[3]) for r in rows}
            await self._unindex(conn, tenant, list(gone))
            ordered = [i for i in dict.fromkeys(ids) if i in gone]
            # delete() is given no timestamp: the log's `at` is the store's clock
            records = await self._log(conn, tenant, _utc_now(), ordered, [(gone[i], None) for i in ordered],
                                      [(_with_times(orjson.loads(gone[i][0]), gone[i][1], gone[i][2]), None) for i in ordered])
        self._recent.add(records)  # committed
        self._forget_versions(tenant, ordered)
        return ordered

    # ------------------------------------------------------------ change log

    async def changes_after(self, seq: int, limit: int) -> list[ChangeRecord]:
        held = self._recent.after(seq, limit)
        if held is not None:
            return held
        async with self.pool.acquire() as conn:
            # only up to the log's settled end: writers share the log lock and commit in any order, so a seq
            # above the cursor may be drawn and not yet committed while higher ones are (_SETTLED). A second
            # statement, so that its snapshot is taken after that end was read
            settled = int(await conn.fetchval(_SETTLED))
            if settled <= seq:
                return []
            rows = await conn.fetch(f"SELECT {_LOG_COLUMNS} FROM change_log WHERE seq > $1 AND seq <= $3"
                                    " ORDER BY seq LIMIT $2", seq, limit, settled)
        return [_record(r) for r in rows]

    async def last_change_seq(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(seq), 0) FROM change_log"))

    async def trim_changes(self, upto_seq: int) -> int:
        self._recent.forget(upto_seq)
        status = await self.pool.execute("DELETE FROM change_log WHERE seq <= $1", upto_seq)
        return int(status.split()[-1])

    # ------------------------------------------------------------ contexts

    async def put_context(self, local_id: str, document: Doc, kind: str, now: str) -> None:
        await self.pool.execute(
            "INSERT INTO contexts VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (local_id) DO UPDATE SET document = excluded.document, kind = excluded.kind",
            local_id, document, kind, now,
        )

    async def get_contexts(self) -> list[tuple[str, Doc, str, str]]:
        rows = await self.pool.fetch('SELECT local_id, document, kind, created_at FROM contexts ORDER BY created_at, local_id')
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def delete_context(self, local_id: str) -> bool:
        return await self.pool.fetchval("DELETE FROM contexts WHERE local_id = $1 RETURNING true", local_id) is not None

    # ------------------------------------------------------------ registry (migration 6)
    # the @context value may be JSON null, which asyncpg would bind as SQL NULL: kept wrapped

    async def registry_put(self, item: RegistryDoc, *, create: bool) -> bool:
        args = (item.doc, {"@context": item.context}, item.stats, item.kind, item.tenant, item.id)
        if create:
            sql = ("INSERT INTO registry (doc, context, stats, kind, tenant, id) VALUES ($1, $2, $3, $4, $5, $6)"
                   " ON CONFLICT DO NOTHING RETURNING true")
        else:
            sql = "UPDATE registry SET doc = $1, context = $2, stats = $3 WHERE kind = $4 AND tenant = $5 AND id = $6 RETURNING true"
        return await self.pool.fetchval(sql, *args) is not None

    async def registry_get(self, kind: str, tenant: str, item_id: str) -> RegistryDoc | None:
        row = await self.pool.fetchrow("SELECT kind, tenant, id, doc, context, stats FROM registry"
                                       " WHERE kind = $1 AND tenant = $2 AND id = $3", kind, tenant, item_id)
        return _registry(row) if row else None

    async def registry_list(self, kind: str, tenant: str | None) -> list[RegistryDoc]:
        if tenant is None:
            rows = await self.pool.fetch("SELECT kind, tenant, id, doc, context, stats FROM registry WHERE kind = $1"
                                         " ORDER BY tenant, id", kind)
        else:
            rows = await self.pool.fetch("SELECT kind, tenant, id, doc, context, stats FROM registry"
                                         " WHERE kind = $1 AND tenant = $2 ORDER BY id", kind, tenant)
        return [_registry(r) for r in rows]

    async def registry_delete(self, kind: str, tenant: str, item_id: str) -> bool:
        return await self.pool.fetchval("DELETE FROM registry WHERE kind = $1 AND tenant = $2 AND id = $3 RETURNING true",
                                        kind, tenant, item_id) is not None

    async def registry_stats(self, kind: str, tenant: str, item_id: str, stats: Doc) -> None:
        await self.pool.execute("UPDATE registry SET stats = $1 WHERE kind = $2 AND tenant = $3 AND id = $4",
                                stats, kind, tenant, item_id)


def _registry(row: Any) -> RegistryDoc:
    return RegistryDoc(row[0], row[1], row[2], row[3], row[4]["@context"], row[5])
