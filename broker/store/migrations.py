"""Schema versions of both stores, applied in place when a store opens.

Each migration has a SQLite and a PostgreSQL step. A database records the
last applied version in `schema_version`; `open()` applies the missing ones
in order, each in its own transaction, so an existing database upgrades
without losing data:

    1  tenants, entities (document + system timestamps), entity_types, contexts
    2  attribute names and types, backfilled: SQLite a side table entity_attrs
       (tenant, id, attribute IRI, attribute type), PostgreSQL two array
       columns on entities with a GIN index
    3  geo_boxes: one lng/lat bbox per GeoProperty instance, backfilled
       (SQLite keeps an R*Tree beside it, maintained by triggers)
    4  change_log: one row per entity written (see base.ChangeRecord), the
       before and after documents with their entity createdAt/modifiedAt
       in columns (PostgreSQL: before as JSON text, after as jsonb);
       starts empty (existing entities are not replayed)
    5  PostgreSQL only: the PostGIS extension and geo_boxes.geom, the GeoProperty instance as a
       geometry(Geometry, 4326) with a GiST index, backfilled from the
       documents. Optional: where PostGIS cannot be had (not installed, no
       privilege) or the store disables it, the version is recorded without
       the column, and a later open that finds PostGIS adds it
       (`ensure_geometry`); the store then evaluates geo-queries in Python.
    6  registry: context source registrations (kind 'csr') and context source
       subscriptions (kind 'csub') of every tenant, one row per document with
       the @context value it was written with (broker.federation); also the
       copies of distributed subscriptions (kinds 'relay', 'relay-token',
       broker.federation.relays), which needed no schema change
    7  PostgreSQL only: change_log.after_doc becomes JSON text, as before_doc
       already was (the store writes the text it encoded for the entity row;
       parsing every logged instance into jsonb was most of the log's cost);
       entities gets fillfactor 70, so that a sensor's new readings, which
       leave the indexed columns alone, are HOT updates (no new index entries;
       pages written from then on)
    8  PostgreSQL only: a modify record's before image is what it has that its
       after image has not (JSON text of [{member: value}, [members added]],
       broker.store.postgres._before_delta; a deletion's, insert's and
       upsert_replace's stay whole, as every record written before does:
       readers tell them apart, an array or an object); the change log's images are compressed with lz4 where the
       server has it (PostgreSQL 14+ built with lz4; else pglz, as before).
       About half the log's WAL and its compression CPU per PATCH (issue 16, pgwal22)
    9  PostgreSQL only: entities' doc, attrs and attr_types compressed with lz4
       where the server has it (else pglz, as before); rows written before stay
       pglz until rewritten. An entity row past 2 kB has its document and then
       its attribute IRIs compressed on every write: with lz4 about 12 us less
       server CPU per row (the bench's 2.9 kB document: 57-72 against 46-56 us
       of the backends' CPU per upserted entity), for about 115 bytes more per
       row (1,513 against 1,398) (issue 16, upsertpy23)
   10  SQLite only: entity_attrs (a row per entity and attribute, in two b-trees) becomes a row per
       entity naming its attribute shape (entity_shapes: tenant, id, shape), the shapes' (attribute,
       attribute type) pairs stored once (attr_shapes, attr_shape_attrs); backfilled from entity_attrs,
       which is dropped. A created entity of a dozen attributes cost two dozen b-tree inserts there,
       now two (issue 16, upsertsql23). PostgreSQL keeps its array columns: its step 10 is a no-op
       (as SQLite's 9), one numbering for both stores

PostGIS is never created in a store's own schema (dropping that schema
would drop the extension, and with it the geometry columns of every other
store in the database): it goes to `public` (or a `postgis` schema where
`public` is missing), or stays wherever it already is, and the store puts
that schema after its own on its connections' search_path (`postgis_schema`).

The side tables are derived from the document by `index_rows`, shared by
the stores and the backfills so that both always agree.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.store.base import BBox, Doc
from models.errors import InvalidGeometry
from models.geojson import parse_geometry
from models.vocabulary import ENTITY_CORE, GEO_PROPERTY, PROPERTY
from storage.migrate import Schema

try:
    from broker.query.geo import geometry_bbox
except ImportError:  # the geo module is written in parallel; keep the store usable without it

    def geometry_bbox(geojson: dict[str, Any]) -> BBox:
        """Bounding box of a GeoJSON geometry (fallback until broker.query.geo exists)."""
        geometries = geojson.get("geometries")
        if geometries is not None:
            boxes = [geometry_bbox(g) for g in geometries]
        else:
            points = list(_positions(geojson["coordinates"]))
            boxes = [(p[0], p[1], p[0], p[1]) for p in points]
        if not boxes:
            raise ValueError("empty geometry")
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def _positions(coords: Any) -> Iterator[tuple[float, float]]:
        if coords and isinstance(coords[0], (int, float)):
            yield float(coords[0]), float(coords[1])
        else:
            for c in coords:
                yield from _positions(c)


@dataclass(slots=True)
class IndexRows:
    """What the side tables hold for one entity."""

    types: list[str]
    attrs: list[tuple[str, str]]
    boxes: list[tuple[str, BBox]]
    shapes: list[str] = field(default_factory=list)
    """The GeoJSON text of each boxed geometry, in the order of `boxes` (PostGIS parses it)."""


Attrs = list[tuple[str, str]]
"""An entity's (attribute, attribute type) pairs, as IndexRows.attrs lists them (the entities row's two arrays)."""
Geo = list[tuple[str, Any]]
"""An entity's GeoProperty instances as (attribute, value), unparsed."""


def attribute_walk(doc: Doc) -> tuple[Attrs, Geo]:
    """`index_rows(doc).attrs` and the (attribute, value) of each GeoProperty instance, without parsing geometries.

    index_rows parses the values; the PostgreSQL store walks a replaced entity alone, since one whose types and
    GeoProperty values are unchanged keeps its side-table rows and need not have its geometries parsed and
    encoded (issue 16, upsertpy23).
    """
    attrs: Attrs = []
    geo: Geo = []
    for name, instances in doc.items():
        if name in ENTITY_CORE:
            continue
        if type(instances) is list and len(instances) == 1 and type(instances[0]) is dict:
            instances = instances[0]  # the usual form: one instance
        if isinstance(instances, dict):
            kind = instances.get("type", PROPERTY)
            attrs.append((name, kind))
            if kind == GEO_PROPERTY:
                geo.append((name, instances.get("value")))
            continue
        if not isinstance(instances, list):
            continue
        seen: set[str] = set()
        for inst in instances:
            if not isinstance(inst, dict):
                continue
            kind = inst.get("type", PROPERTY)
            if kind not in seen:
                seen.add(kind)
                attrs.append((name, kind))
            if kind == GEO_PROPERTY:
                geo.append((name, inst.get("value")))
    return attrs, geo


def index_rows(doc: Doc) -> IndexRows:
    """Types, (attribute, attribute type) pairs and GeoProperty bboxes and geometries of an ENF document.

    A GeoProperty value is indexed when it is a valid geometry, as an object
    or as JSON text (clause 4.7.2), the two forms the geo-query predicate
    reads; anything else is left out of the geo side tables.
    """
    types = doc.get("type") or []
    if isinstance(types, str):
        types = [types]
    attrs, geo = attribute_walk(doc)
    boxes: list[tuple[str, BBox]] = []
    shapes: list[str] = []
    for name, value in geo:
        try:
            geometry = parse_geometry(value)
            box = geometry_bbox(geometry)
        except (InvalidGeometry, ValueError, TypeError, KeyError, IndexError):
            continue  # a malformed geometry is the validator's business; it simply is not indexed
        boxes.append((name, box))
        shapes.append(orjson.dumps(geometry).decode())
    return IndexRows(list(dict.fromkeys(types)), attrs, boxes, shapes)


def same_index(a: Doc, b: Doc) -> bool:
    """Whether two documents certainly give equal `index_rows`, found without building them.

    True when they have the same types, the same members, instance types in the same
    order and equal GeoProperty values: what a sensor's new readings leave alone. False
    means "maybe not" (the caller then compares index_rows): building them parses every
    geometry, which an update of a dozen readings should not pay twice.

    A member both documents hold as the same object is passed over: it gives the same rows
    in both. A PATCH's new document shares every untouched attribute with the one its fn was
    given (Change.before_intact), so only the changed one is looked at: 1.9 against 9.2 us
    for the bench's entity (issue 16, sqlpatch20). A fresh decode shares nothing.
    """
    if a.get("type") != b.get("type") or list(a) != list(b):  # in order: index_rows lists members in order
        return False
    for name, first in a.items():
        if name in ENTITY_CORE:
            continue
        second = b[name]
        if second is first:
            continue
        left = first if isinstance(first, list) else [first]
        right = second if isinstance(second, list) else [second]
        if len(left) != len(right):
            return False
        for x, y in zip(left, right):
            if not isinstance(x, dict) or not isinstance(y, dict):
                return False
            kind = x.get("type", PROPERTY)
            if kind != y.get("type", PROPERTY) or (kind == GEO_PROPERTY and x.get("value") != y.get("value")):
                return False
    return True


# ---------------------------------------------------------------- SQLite

def has_rtree(conn: sqlite3.Connection) -> bool:
    """Whether this sqlite3 build has the R*Tree module."""
    return any(row[0] == "ENABLE_RTREE" for row in conn.execute("PRAGMA compile_options"))


def _sqlite_v1(conn: sqlite3.Connection) -> None:
    for sql in (
        "CREATE TABLE tenants (name TEXT PRIMARY KEY) WITHOUT ROWID",
        # a rowid table: documents of ~1 KB are too wide for a WITHOUT ROWID b-tree
        """CREATE TABLE entities (tenant TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL,
               created_at TEXT NOT NULL, modified_at TEXT NOT NULL, UNIQUE (tenant, id))""",
        """CREATE TABLE entity_types (tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
               PRIMARY KEY (tenant, type, id)) WITHOUT ROWID""",
        "CREATE INDEX entity_types_by_id ON entity_types (tenant, id)",
        """CREATE TABLE contexts (local_id TEXT PRIMARY KEY, document BLOB NOT NULL,
               kind TEXT NOT NULL, created_at TEXT NOT NULL)""",
    ):
        conn.execute(sql)


def _sqlite_backfill(conn: sqlite3.Connection, write: Callable[[sqlite3.Connection, str, str, IndexRows], object]) -> None:
    cursor = conn.execute("SELECT tenant, id, doc FROM entities")
    while rows := cursor.fetchmany(500):
        for tenant, entity_id, blob in rows:
            write(conn, tenant, entity_id, index_rows(orjson.loads(blob)))


def _sqlite_v2(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE entity_attrs (tenant TEXT NOT NULL, id TEXT NOT NULL, attr TEXT NOT NULL,
               attr_type TEXT NOT NULL, PRIMARY KEY (tenant, id, attr, attr_type)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX entity_attrs_by_attr ON entity_attrs (tenant, attr, id)")
    _sqlite_backfill(
        conn,
        lambda c, t, i, r: c.executemany(
            "INSERT INTO entity_attrs VALUES (?, ?, ?, ?)", [(t, i, a, k) for a, k in r.attrs]
        ),
    )


def _sqlite_v3(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE geo_boxes (key INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
               attr TEXT NOT NULL, min_lng REAL, min_lat REAL, max_lng REAL, max_lat REAL)"""
    )
    conn.execute("CREATE INDEX geo_boxes_by_id ON geo_boxes (tenant, id)")
    if has_rtree(conn):
        # the R*Tree mirrors geo_boxes through triggers, so the store code only writes geo_boxes
        conn.execute("CREATE VIRTUAL TABLE geo_rtree USING rtree(key, min_lng, max_lng, min_lat, max_lat)")
        conn.execute(
            """CREATE TRIGGER geo_boxes_ai AFTER INSERT ON geo_boxes BEGIN
                 INSERT INTO geo_rtree VALUES (new.key, new.min_lng, new.max_lng, new.min_lat, new.max_lat);
               END"""
        )
        conn.execute("CREATE TRIGGER geo_boxes_ad AFTER DELETE ON geo_boxes BEGIN DELETE FROM geo_rtree WHERE key = old.key; END")
    else:
        conn.execute("CREATE INDEX geo_boxes_by_box ON geo_boxes (tenant, attr, min_lng, max_lng)")
    _sqlite_backfill(
        conn,
        lambda c, t, i, r: c.executemany(
            "INSERT INTO geo_boxes (tenant, id, attr, min_lng, min_lat, max_lng, max_lat) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(t, i, a, *b) for a, b in r.boxes],
        ),
    )


def _sqlite_v4(conn: sqlite3.Connection) -> None:
    # AUTOINCREMENT: a seq is never reused, even after trim_changes empties the log
    conn.execute(
        """CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
               entity_id TEXT NOT NULL, at TEXT NOT NULL,
               before_doc BLOB, before_created_at TEXT, before_modified_at TEXT,
               after_doc BLOB, after_created_at TEXT, after_modified_at TEXT)"""
    )


def _sqlite_v6(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE registry (kind TEXT NOT NULL, tenant TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL,
               context BLOB NOT NULL, stats BLOB NOT NULL, PRIMARY KEY (kind, tenant, id)) WITHOUT ROWID"""
    )


def _sqlite_v5(conn: sqlite3.Connection) -> None:
    pass  # version 5 is PostGIS, PostgreSQL only: the numbers of both stores stay the same


def _sqlite_v7(conn: sqlite3.Connection) -> None:
    pass  # version 7 is PostgreSQL's change log column type; SQLite's after_doc is already a BLOB of JSON text


def _sqlite_v8(conn: sqlite3.Connection) -> None:
    pass  # version 8 is PostgreSQL's before delta and lz4; SQLite's change log is unchanged


_SHAPE_FIND = "SELECT shape FROM attr_shapes WHERE attrs = ?"


def attr_shape_key(attrs: Sequence[tuple[str, str]]) -> str:
    """The text naming an attribute shape: its (attribute, attribute type) pairs sorted, as JSON."""
    return orjson.dumps(sorted(attrs)).decode()


def sqlite_attr_shape(conn: sqlite3.Connection, key: str) -> int:
    """The id of the attribute shape `key` (attr_shape_key), made with its pairs when it is new.

    Looked up, not cached: the caller holds the write lock (one writer), and a cached id of a shape
    made in a transaction that then rolled back would name nothing. A batch looks up each of its
    shapes once (a handful of statements per 1,000 entities).
    """
    row = conn.execute(_SHAPE_FIND, (key,)).fetchone()
    if row is not None:
        return int(row[0])
    shape = conn.execute("INSERT INTO attr_shapes (attrs) VALUES (?)", (key,)).lastrowid
    assert shape is not None
    conn.executemany("INSERT INTO attr_shape_attrs (shape, attr, attr_type) VALUES (?, ?, ?)",
                     [(shape, a, k) for a, k in orjson.loads(key)])
    return shape


def _sqlite_v9(conn: sqlite3.Connection) -> None:
    pass  # version 9 is PostgreSQL's lz4 entity rows; SQLite stores the documents as they are


def _sqlite_v10(conn: sqlite3.Connection) -> None:
    for sql in (
        "CREATE TABLE attr_shapes (shape INTEGER PRIMARY KEY, attrs TEXT NOT NULL UNIQUE)",
        """CREATE TABLE attr_shape_attrs (shape INTEGER NOT NULL, attr TEXT NOT NULL, attr_type TEXT NOT NULL,
               PRIMARY KEY (shape, attr, attr_type)) WITHOUT ROWID""",
        "CREATE INDEX attr_shape_attrs_by_attr ON attr_shape_attrs (attr, shape)",
        """CREATE TABLE entity_shapes (tenant TEXT NOT NULL, id TEXT NOT NULL, shape INTEGER NOT NULL,
               PRIMARY KEY (tenant, id)) WITHOUT ROWID""",
        "CREATE INDEX entity_shapes_by_shape ON entity_shapes (tenant, shape, id)",
    ):
        conn.execute(sql)
    shapes: dict[str, int] = {}
    cursor = conn.execute("SELECT tenant, id, json_group_array(json_array(attr, attr_type)) FROM entity_attrs"
                          " GROUP BY tenant, id")
    while rows := cursor.fetchmany(500):
        out = []
        for tenant, entity_id, pairs in rows:
            key = attr_shape_key([(a, k) for a, k in orjson.loads(pairs)])
            shape = shapes.get(key)
            if shape is None:
                shape = shapes[key] = sqlite_attr_shape(conn, key)
            out.append((tenant, entity_id, shape))
        conn.executemany("INSERT INTO entity_shapes (tenant, id, shape) VALUES (?, ?, ?)", out)
    conn.execute("DROP TABLE entity_attrs")


SQLITE_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _sqlite_v1, _sqlite_v2, _sqlite_v3, _sqlite_v4, _sqlite_v5, _sqlite_v6, _sqlite_v7, _sqlite_v8, _sqlite_v9,
    _sqlite_v10]


def sqlite_version(conn: sqlite3.Connection) -> int:
    """The schema version of a SQLite database (0 when empty)."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate_sqlite(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply missing migrations up to `target` (default: all); return the version reached.

    The connection must be in autocommit mode (isolation_level=None): each
    step runs in its own BEGIN IMMEDIATE transaction, DDL included.
    """
    target = len(SQLITE_MIGRATIONS) if target is None else target
    version = sqlite_version(conn)
    for number in range(version + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            if sqlite_version(conn) < number:
                SQLITE_MIGRATIONS[number - 1](conn)
                conn.execute("INSERT INTO schema_version VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, target)


# ---------------------------------------------------------------- PostgreSQL

Pg = Any  # asyncpg.Connection; kept untyped so this module imports without asyncpg


async def _pg_v1(conn: Pg) -> None:
    # keys in the "C" collation: id order is byte order, as in SQLite, and the
    # primary key index serves ORDER BY id whatever the database's locale
    await conn.execute(
        """
        CREATE TABLE tenants (name text COLLATE "C" PRIMARY KEY);
        CREATE TABLE entities (tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, doc jsonb NOT NULL,
            created_at text NOT NULL, modified_at text NOT NULL, PRIMARY KEY (tenant, id));
        CREATE TABLE entity_types (tenant text COLLATE "C" NOT NULL, type text COLLATE "C" NOT NULL,
            id text COLLATE "C" NOT NULL, PRIMARY KEY (tenant, type, id));
        CREATE INDEX entity_types_by_id ON entity_types (tenant, id);
        CREATE TABLE contexts (local_id text COLLATE "C" PRIMARY KEY, document jsonb NOT NULL,
            kind text NOT NULL, created_at text NOT NULL);
        """
    )


async def _pg_backfill(conn: Pg, table: str, columns: str, rows_of: Callable[[str, str, IndexRows], list[tuple[Any, ...]]]) -> None:
    width = columns.count(",") + 1
    placeholders = ", ".join(f"${n}" for n in range(1, width + 1))
    async for record in conn.cursor("SELECT tenant, id, doc::text FROM entities", prefetch=500):
        rows = rows_of(record[0], record[1], index_rows(orjson.loads(record[2])))
        if rows:
            await conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)


async def _pg_v2(conn: Pg) -> None:
    # Attribute names as arrays on the entity row with a GIN index, not one row
    # per attribute as in SQLite: measured 5x cheaper to write here (0.15 s
    # against 0.72 s per 5,000 entities of 12 attributes).
    await conn.execute(
        """
        ALTER TABLE entities ADD COLUMN attrs text[] NOT NULL DEFAULT '{}',
            ADD COLUMN attr_types text[] NOT NULL DEFAULT '{}';
        CREATE INDEX entities_attrs ON entities USING gin (attrs);
        """
    )
    sql = "UPDATE entities SET attrs = $3, attr_types = $4 WHERE tenant = $1 AND id = $2"
    updates: list[tuple[Any, ...]] = []
    async for record in conn.cursor("SELECT tenant, id, doc::text FROM entities", prefetch=500):
        attrs = index_rows(orjson.loads(record[2])).attrs
        updates.append((record[0], record[1], [a for a, _ in attrs], [k for _, k in attrs]))
        if len(updates) == 500:
            await conn.executemany(sql, updates)
            updates.clear()
    await conn.executemany(sql, updates)


async def _pg_v3(conn: Pg) -> None:
    # the built-in box type with a GiST index: no PostGIS needed for a bbox prefilter
    await conn.execute(
        """
        CREATE TABLE geo_boxes (tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
            attr text COLLATE "C" NOT NULL, bbox box NOT NULL);
        CREATE INDEX geo_boxes_by_id ON geo_boxes (tenant, id);
        CREATE INDEX geo_boxes_by_box ON geo_boxes USING gist (bbox);
        """
    )
    await _pg_backfill(
        conn,
        "geo_boxes",
        "tenant, id, attr, bbox",
        lambda t, i, r: [(t, i, a, pg_box(b)) for a, b in r.boxes],
    )


def pg_box(b: BBox) -> Any:
    """An asyncpg Box from (min_lng, min_lat, max_lng, max_lat)."""
    from asyncpg import Box

    return Box((b[2], b[3]), (b[0], b[1]))


async def _pg_v4(conn: Pg) -> None:
    await conn.execute(
        """
        CREATE TABLE change_log (seq bigserial PRIMARY KEY, tenant text COLLATE "C" NOT NULL,
            entity_id text COLLATE "C" NOT NULL, at text NOT NULL,
            before_doc text, before_created_at text, before_modified_at text,
            after_doc jsonb, after_created_at text, after_modified_at text);
        """
    )


# The geo side table, written in one statement whatever the batch size: columns
# tenant, ids, attribute IRIs, min_lng, min_lat, max_lng, max_lat (and GeoJSON texts).
PG_GEO_INSERT = (
    "INSERT INTO geo_boxes (tenant, id, attr, bbox) SELECT $1, i, a, box(point(x1, y1), point(x2, y2))"
    " FROM unnest($2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[])"
    " AS u(i, a, x1, y1, x2, y2)"
)
PG_GEOM_INSERT = (
    # 2D: altitude is ignored by every relation, and the column's typmod refuses Z
    "INSERT INTO geo_boxes (tenant, id, attr, bbox, geom) SELECT $1, i, a, box(point(x1, y1), point(x2, y2)),"
    " ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(g), 4326))"
    " FROM unnest($2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::text[])"
    " AS u(i, a, x1, y1, x2, y2, g)"
)


def pg_geo_rows(tenant: str, ids: Sequence[str], index: Sequence[IndexRows], *, geom: bool) -> list[Any] | None:
    """The parameters of PG_GEOM_INSERT (PG_GEO_INSERT without `geom`); None when there is no geometry."""
    columns: list[list[Any]] = [[], [], [], [], [], [], []]
    for entity_id, rows in zip(ids, index):
        for (name, box), shape in zip(rows.boxes, rows.shapes):
            for column, value in zip(columns, (entity_id, name, *box, shape)):
                column.append(value)
    if not columns[0]:
        return None
    return [tenant, *(columns if geom else columns[:6])]


_log = logging.getLogger(__name__)
_GEOMETRY_VERSION = 5
POSTGIS_EXTENSION = "postgis"
"""The extension's name (a test points it at one the server lacks to exercise the fallback)."""


async def postgis_schema(conn: Pg) -> str | None:
    """The schema the PostGIS extension lives in, None when the database has not got it."""
    schema: str | None = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.extname = $1",
        POSTGIS_EXTENSION,
    )
    return schema


async def has_geometry(conn: Pg) -> bool:
    """Whether the search_path schema's geo_boxes has the PostGIS `geom` column."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'geo_boxes' AND column_name = 'geom')"
        )
    )


async def _use_postgis(conn: Pg) -> bool:
    """Create PostGIS where missing and put its schema on the search_path; False when it cannot be had."""
    schema = await postgis_schema(conn)
    if schema is None:
        # a database-wide lock: stores of other schemas may be creating it at the same moment
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('metropole:create postgis', 0))")
        schema = await postgis_schema(conn)
    if schema is None:
        home = "public" if await conn.fetchval("SELECT to_regnamespace('public') IS NOT NULL") else "postgis"
        try:
            async with conn.transaction():  # a savepoint: the failure must not abort the migration
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{home}"')
                await conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{POSTGIS_EXTENSION}" SCHEMA "{home}"')
        except Exception as error:  # noqa: BLE001 - asyncpg.PostgresError: not installed, no privilege, ...
            _log.debug("cannot create PostGIS: %s", error)
            return False
        schema = home
    if not await conn.fetchval("SELECT $1 = ANY(current_schemas(false))", schema):
        # after the store's schema, so that the store's tables are always found first
        await conn.execute(
            "SELECT set_config('search_path', current_setting('search_path') || ', ' || quote_ident($1), false)", schema
        )
    return True


async def _add_geometry(conn: Pg) -> bool:
    """Migration 5: PostGIS, geo_boxes.geom with a GiST index, backfilled; False when PostGIS cannot be had."""
    if not await _use_postgis(conn):
        return False
    await conn.execute(
        """
        ALTER TABLE geo_boxes ADD COLUMN geom geometry(Geometry, 4326);
        CREATE INDEX geo_boxes_by_geom ON geo_boxes USING gist (geom);
        """
    )
    # rebuilt from the documents, boxes included: one row per instance, bbox and geom side by side
    await conn.execute("DELETE FROM geo_boxes")
    batch: list[tuple[str, str, IndexRows]] = []

    async def flush() -> None:
        by_tenant: dict[str, list[tuple[str, IndexRows]]] = {}
        for tenant, entity_id, rows in batch:
            by_tenant.setdefault(tenant, []).append((entity_id, rows))
        for tenant, items in by_tenant.items():
            params = pg_geo_rows(tenant, [i for i, _ in items], [r for _, r in items], geom=True)
            if params is not None:
                await conn.execute(PG_GEOM_INSERT, *params)
        batch.clear()

    async for record in conn.cursor("SELECT tenant, id, doc::text FROM entities", prefetch=500):
        batch.append((record[0], record[1], index_rows(orjson.loads(record[2]))))
        if len(batch) == 500:
            await flush()
    await flush()
    return True


async def _pg_v5(conn: Pg) -> None:
    await _add_geometry(conn)


async def ensure_geometry(conn: Pg) -> bool:
    """Add the geometry column to a schema that got version 5 without PostGIS, if PostGIS can now be had.

    Returns whether the schema has the column; when it has, PostGIS's schema
    is on the connection's search_path.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':migrate', 0))")
        if await has_geometry(conn):
            return await _use_postgis(conn)
        return await _add_geometry(conn)


async def _pg_v6(conn: Pg) -> None:
    await conn.execute(
        """CREATE TABLE registry (kind text NOT NULL, tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
               doc jsonb NOT NULL, context jsonb NOT NULL, stats jsonb NOT NULL, PRIMARY KEY (kind, tenant, id))"""
    )


async def _pg_v7(conn: Pg) -> None:
    await conn.execute("ALTER TABLE change_log ALTER COLUMN after_doc TYPE text USING after_doc::text")
    await conn.execute("ALTER TABLE entities SET (fillfactor = 70)")


async def _lz4(conn: Pg, table: str, columns: Sequence[str]) -> None:
    """Compress `columns` of `table` with lz4 from now on; a server without it (older than 14, or built without
    lz4) keeps pglz: tried in a savepoint, which it fails alone. Rows written before stay as they are until
    rewritten (both read back the same)."""
    try:
        async with conn.transaction():
            await conn.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} SET COMPRESSION lz4" for c in columns))
    except Exception as error:  # noqa: BLE001 - asyncpg.PostgresError: syntax (before 14), lz4 not supported
        _log.info("%s keeps pglz compression: %s", table, error)


async def _pg_v8(conn: Pg) -> None:
    # the before delta needs no DDL (the column stays text; whole documents written before stay readable). lz4
    # compresses a change record's after image in a fraction of pglz's CPU (pglz was a tenth of the server's CPU
    # under single-attribute PATCH, most of it for the log; issue 16, pgwal22), for a few more bytes
    await _lz4(conn, "change_log", ("after_doc", "before_doc"))


async def _pg_v9(conn: Pg) -> None:
    # an entity row past ~2 kB has its document compressed by every write (and decompressed by every read), then
    # its attribute IRIs when the row is still too wide: pglz took about a sixth of the backends' CPU under batch
    # upsert (issue 16, upsertpy23)
    await _lz4(conn, "entities", ("doc", "attrs", "attr_types"))


async def _pg_v10(conn: Pg) -> None:
    pass  # version 10 is SQLite's attribute shapes; PostgreSQL keeps an entity's attributes as arrays in its row


POSTGRES_MIGRATIONS: list[Callable[[Pg], Awaitable[None]]] = [
    _pg_v1, _pg_v2, _pg_v3, _pg_v4, _pg_v5, _pg_v6, _pg_v7, _pg_v8, _pg_v9, _pg_v10]


async def migrate_postgres(conn: Pg, target: int | None = None, *, postgis: bool = True) -> int:
    """Apply missing migrations on the connection's search_path schema; return the version reached.

    `postgis` False records version 5 without touching PostGIS (the store's
    fallback, and what a server without it gets anyway).
    """
    target = len(POSTGRES_MIGRATIONS) if target is None else target
    reached = 0
    for number in range(1, target + 1):
        async with conn.transaction():
            # serialises concurrent openers of the same schema
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':migrate', 0))")
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            if version < number:
                if number != _GEOMETRY_VERSION or postgis:
                    await POSTGRES_MIGRATIONS[number - 1](conn)
                await conn.execute("INSERT INTO schema_version VALUES ($1)", number)
            reached = max(version, number)
    return reached


# ---------------------------------------------------------------- as owner of tables (storage.migrate)

SQLITE_SCHEMA = Schema("store", sqlite=migrate_sqlite, own_transactions=True)
"""The SQLite store's tables for the migration runner: its versions commit one by one."""


def postgres_schema(*, postgis: bool = True) -> Schema:
    """The PostgreSQL store's tables for the migration runner: the versions, then PostGIS's geometry column
    when it can be had; PostGIS's schema joins the shared connections' search_path when the store uses it."""

    async def migrate(conn: Pg) -> None:
        await migrate_postgres(conn, postgis=postgis)
        if postgis:
            await ensure_geometry(conn)

    async def search_path(conn: Pg) -> str | None:
        return await postgis_schema(conn) if await has_geometry(conn) else None

    return Schema("store", postgres=migrate, own_transactions=True, search_path=search_path)
