"""The embedded default store: one SQLite file, WAL mode, one writer thread.

SQLite allows one writer at a time, so every write and every
read-modify-write cycle goes through a single connection owned by a
single-thread executor, in submission order, each in a BEGIN IMMEDIATE
transaction: concurrent `modify` calls from many tasks are serialised
without lost updates and never meet SQLITE_BUSY. Reads run on a small pool
of other connections in threads; WAL lets them proceed while the writer
writes, and the event loop never blocks on them. The exception is `get`
(one entity by key): it reads on the calling thread, on a connection of its
own that never waits for a lock (`_read_inline`), because the hand-over to
a thread cost more CPU than the read; when its few pages are not in the
page cache, the loop waits for them.

Documents are orjson bytes in a BLOB; id sets travel as one JSON array
parameter expanded by json_each, so no statement hits the variable limit;
rows go in as multi-row VALUES (sqlite_rows).

The change log (table change_log) is written by each write transaction
with the very bytes it stores, before images read as raw BLOBs: no document
is serialised twice. One writer thread means seq order is commit order.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from broker.query.regex import compile_pattern
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
    SQLITE_SCHEMA,
    IndexRows,
    attr_shape_key,
    has_rtree,
    index_rows,
    same_index,
    sqlite_attr_shape,
)
from broker.store.recent import RecentChanges
from broker.store.sqlite_rows import insert_rows, insert_rows_last_id
from models.times import utc_iso
from storage.database import SQLiteDatabase
from storage.migrate import Schema
from storage.urls import DatabaseUrl

T = TypeVar("T")
CHUNK = 500
"""Rows fetched at a time when a predicate makes the store walk candidates."""

_COLUMNS = "e.id, e.doc, e.created_at, e.modified_at"
_LOG_COLUMNS = (
    "seq, tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at"
)
_LOG_INSERT = (
    "INSERT INTO change_log (tenant, entity_id, at, before_doc, before_created_at, before_modified_at,"
    " after_doc, after_created_at, after_modified_at)"
)
Image = tuple[bytes, str, str] | None
"""A document as stored (orjson bytes, created_at, modified_at), None when absent."""


def _regexp(pattern: str, value: str | None) -> bool:
    # search, not match: the same semantics as PostgreSQL's `~`; RE2, linear time (broker.query.regex)
    return value is not None and compile_pattern(pattern).search(value) is not None


def _json_list(values: Sequence[str] | frozenset[str]) -> str:
    return orjson.dumps(list(values)).decode()


def _entity(row: tuple[Any, ...]) -> StoredEntity:
    return StoredEntity(orjson.loads(row[1]), row[2], row[3])


def _image_doc(blob: bytes | None, created_at: str | None, modified_at: str | None) -> Doc | None:
    if blob is None:
        return None
    doc: Doc = orjson.loads(blob)
    doc["createdAt"] = created_at
    doc["modifiedAt"] = modified_at
    return doc


def _record(row: tuple[Any, ...]) -> ChangeRecord:
    return ChangeRecord(row[0], row[1], row[2], _image_doc(*row[4:7]), _image_doc(*row[7:10]), row[3])


_NO_IMAGE = (None, None, None)
Entry = tuple[str, Image, Image, Doc | None, Doc | None]
"""One entity's change in a write: id, stored images before and after, and the same two documents decoded."""


def _with_times(doc: Doc | None, image: Image) -> Doc | None:
    return None if doc is None or image is None else {**doc, "createdAt": image[1], "modifiedAt": image[2]}


def _write_log(conn: sqlite3.Connection, tenant: str, now: str, entries: Sequence[Entry]) -> list[ChangeRecord]:
    """The change-log rows of one write, in a few statements (sqlite_rows); the records they are, decoded.

    The seqs of one write are consecutive: AUTOINCREMENT takes the next one for each row,
    and the transaction holds the file's write lock.
    """
    rows = [(tenant, i, now, *(b or _NO_IMAGE), *(a or _NO_IMAGE)) for i, b, a, _, _ in entries]
    if not rows:
        return []
    first = insert_rows_last_id(conn, _LOG_INSERT, rows) - len(rows) + 1
    return [ChangeRecord(first + k, tenant, i, _with_times(bd, b), _with_times(ad, a), now)
            for k, (i, b, a, bd, ad) in enumerate(entries)]


def _step_entries(entity_id: str, before: Image, before_doc: Doc | None, steps: Sequence[Doc], now: str) -> list[Entry]:
    """The log entries of the earlier instances of a repeated id (Change.steps), chained from the stored image."""
    created = before[1] if before is not None else now
    entries: list[Entry] = []
    for step in steps:
        doc = _clean(step)
        image = (orjson.dumps(doc), created, now)
        entries.append((entity_id, before, image, before_doc, doc))
        before, before_doc = image, doc
    return entries


def _utc_now() -> str:
    return utc_iso()


def _clean(doc: Doc) -> Doc:
    """The document without entity system timestamps, which live in columns."""
    if "createdAt" in doc or "modifiedAt" in doc:
        return {k: v for k, v in doc.items() if k not in ("createdAt", "modifiedAt")}
    return doc


class SQLiteStore(Store):
    """Store on a SQLite file (or ':memory:', where reads share the writer connection)."""

    tables: Schema = SQLITE_SCHEMA
    """The store's tables, migrated by its database (storage.database) when it opens."""

    def __init__(self, path: str | Path, *, readers: int = 3, db: SQLiteDatabase | None = None) -> None:
        self.path = str(path)
        # the file's writer thread is the database's, shared with history and subscription storage
        self._db = db if db is not None else SQLiteDatabase(DatabaseUrl.sqlite(self.path))
        self._memory = self.path == ":memory:"
        self._reader_count = 0 if self._memory else readers
        self._writer: Executor | None = None  # the file's writer thread (SQLiteThread.executor)
        self._readers: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_conns: list[sqlite3.Connection] = []
        # point reads by key run on the calling thread, on a connection of their own (see _read_inline)
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()
        self._rtree = False
        self._wlock = self._db.write_lock
        self._recent = RecentChanges()

    @property
    def database(self) -> DatabaseUrl:
        return DatabaseUrl.sqlite(self.path)

    # ------------------------------------------------------------ lifecycle

    @property
    def backend(self) -> SQLiteDatabase:
        """The database whose writer this store writes through (history and subscriptions open on it too)."""
        return self._db

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if not self._memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-32000")
        conn.create_function("REGEXP", 2, _regexp, deterministic=True)
        self._all_conns.append(conn)
        return conn

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._writer = self._db.writer.executor

        def setup() -> None:
            self._wconn = self._db.writer.connection
            self._wconn.create_function("REGEXP", 2, _regexp, deterministic=True)
            self._rtree = has_rtree(self._wconn) and bool(
                self._wconn.execute("SELECT 1 FROM sqlite_master WHERE name = 'geo_rtree'").fetchone()
            )
            for _ in range(self._reader_count):
                self._rconns.put(self._connect())
            if self._reader_count:
                inline = self._connect()
                inline.execute("PRAGMA busy_timeout=0")  # never wait on the event loop: fall back to a reader
                self._inline = inline

        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, setup)
        except BaseException:
            await self.close()
            raise
        if self._reader_count:
            self._readers = ThreadPoolExecutor(self._reader_count, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        self._readers = None
        with self._inline_lock:
            self._inline = None
        for conn in self._all_conns:
            conn.close()
        self._all_conns.clear()
        self._rconns = queue.SimpleQueue()
        if self._writer is not None:
            self._writer = None
            self._wconn = None
            await self._db.close()  # the last owner to close stops the writer thread
        self._recent.clear()

    # ------------------------------------------------------------ plumbing

    async def _write(self, fn: Callable[[sqlite3.Connection], tuple[T, list[ChangeRecord]]]) -> T:
        """Run fn in a BEGIN IMMEDIATE transaction on the writer thread; fn returns (result, change records).

        Group-committed with the file's other queued writes (SQLiteDatabase.write): fn runs in a
        SAVEPOINT of its own, and its records reach the recent-changes buffer only once committed.
        """
        assert self._writer is not None, "store is not open"

        def after(done: tuple[T, list[ChangeRecord]]) -> None:
            self._recent.add(done[1])  # only once committed: consumers must never see a rolled-back change

        result, _ = await self._db.write(fn, after=after)
        return result

    async def _write_plain(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """_write for a write that is no entity change (tenants, contexts, the log's trimming)."""
        return await self._write(lambda c: (fn(c), []))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one read transaction (a consistent snapshot) on a reader connection."""
        if self._readers is None:
            return await self._write_plain(fn)

        def tx() -> T:
            conn = self._rconns.get()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            finally:
                self._rconns.put(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, tx)

    async def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """_read for a point read by key (one entity): run at once on the calling thread, no thread hop.

        Handing a read of one row to a reader thread cost more CPU than the read itself: about 150 us
        of the broker's 330 us per GET by id (issue 16, bench.api_bench and the in-process profile). The
        inline connection is this thread's alone while it reads (a lock, never waited for), reads one
        snapshot like the readers do, and never waits for a lock in SQLite (busy_timeout 0): when it is
        in use by another thread, or SQLite answers busy, the read goes to a reader thread as before.
        Only key lookups come here; scans and queries keep the reader threads.
        """
        conn = self._inline
        if conn is not None and self._inline_lock.acquire(blocking=False):
            try:
                if self._inline is conn:
                    try:
                        conn.execute("BEGIN")
                        try:
                            return fn(conn)
                        finally:
                            conn.execute("COMMIT")
                    except sqlite3.OperationalError:  # busy: a reader thread runs it, waiting as readers do
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
            finally:
                self._inline_lock.release()
        return await self._read(fn)

    @staticmethod
    def _ensure_tenant(conn: sqlite3.Connection, tenant: str) -> None:
        # no in-memory cache: a rolled-back transaction must not leave a tenant behind
        conn.execute("INSERT OR IGNORE INTO tenants VALUES (?)", (tenant,))

    @staticmethod
    def _existing(conn: sqlite3.Connection, tenant: str, ids: Sequence[str]) -> set[str]:
        rows = conn.execute(
            "SELECT id FROM entities WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))",
            (tenant, _json_list(ids)),
        )
        return {r[0] for r in rows}

    @staticmethod
    def _images(conn: sqlite3.Connection, tenant: str, ids: Sequence[str]) -> dict[str, tuple[bytes, str, str]]:
        """The stored documents among `ids`, raw (for before images), by id."""
        if len(ids) == 1:  # one entity (a PATCH of one attribute): a plain key look-up, no JSON array
            rows = conn.execute(
                "SELECT id, doc, created_at, modified_at FROM entities WHERE tenant = ? AND id = ?", (tenant, ids[0])
            )
            return {r[0]: (r[1], r[2], r[3]) for r in rows}
        rows = conn.execute(
            "SELECT id, doc, created_at, modified_at FROM entities WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))",
            (tenant, _json_list(ids)),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    @staticmethod
    def _index(conn: sqlite3.Connection, tenant: str, entries: Sequence[tuple[str, IndexRows]]) -> None:
        types: list[tuple[str, str, str]] = []
        shaped: list[tuple[str, str, int]] = []
        shapes: dict[str, int] = {}  # this call's: an id is only good in the transaction that found it
        boxes: list[tuple[Any, ...]] = []
        for entity_id, rows in entries:
            types.extend((tenant, t, entity_id) for t in rows.types)
            if rows.attrs:
                # one row per entity naming its attribute shape (migration 10), not one per attribute
                key = attr_shape_key(rows.attrs)
                shape = shapes.get(key)
                if shape is None:
                    shape = shapes[key] = sqlite_attr_shape(conn, key)
                shaped.append((tenant, entity_id, shape))
            boxes.extend((tenant, entity_id, a, *b) for a, b in rows.boxes)
        insert_rows(conn, "INSERT INTO entity_types (tenant, type, id)", types)
        insert_rows(conn, "INSERT INTO entity_shapes (tenant, id, shape)", shaped)
        insert_rows(conn, "INSERT INTO geo_boxes (tenant, id, attr, min_lng, min_lat, max_lng, max_lat)", boxes)

    @staticmethod
    def _put_docs(conn: sqlite3.Connection, tenant: str, now: str, blobs: Sequence[tuple[str, bytes]], *, upsert: bool) -> None:
        """Insert (or, with upsert, replace keeping created_at) documents."""
        tail = " ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc, modified_at = excluded.modified_at" if upsert else ""
        insert_rows(conn, "INSERT INTO entities (tenant, id, doc, created_at, modified_at)",
                    [(tenant, i, b, now, now) for i, b in blobs], tail)

    @staticmethod
    def _unindex(conn: sqlite3.Connection, tenant: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        params = (tenant, _json_list(ids))
        for table in ("entity_types", "entity_shapes", "geo_boxes"):
            conn.execute(f"DELETE FROM {table} WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))", params)

    # ------------------------------------------------------------ tenants

    async def ensure_tenant(self, tenant: str) -> None:
        await self._write_plain(lambda c: self._ensure_tenant(c, tenant))

    async def has_tenant(self, tenant: str) -> bool:
        if tenant == "":
            return True
        return await self._read(lambda c: c.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone() is not None)

    async def tenants(self) -> list[str]:
        return await self._read(lambda c: [r[0] for r in c.execute("SELECT name FROM tenants ORDER BY name")])

    # ------------------------------------------------------------ reads

    async def get(self, tenant: str, entity_id: str) -> StoredEntity | None:
        def run(c: sqlite3.Connection) -> StoredEntity | None:
            row = c.execute(f"SELECT {_COLUMNS} FROM entities e WHERE tenant = ? AND id = ?", (tenant, entity_id)).fetchone()
            return None if row is None else _entity(row)

        return await self._read_inline(run)

    async def get_many(self, tenant: str, ids: Sequence[str]) -> dict[str, StoredEntity]:
        sql = f"SELECT {_COLUMNS} FROM entities e WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))"
        return await self._read(lambda c: {r[0]: _entity(r) for r in c.execute(sql, (tenant, _json_list(ids)))})

    def _where(self, tenant: str, flt: EntityFilter) -> tuple[str, list[Any]] | None:
        """SQL conditions for everything but the predicate; None when nothing can match."""
        clauses: list[str] = ["e.tenant = ?"]
        params: list[Any] = [tenant]
        if flt.ids is not None:
            clauses.append("e.id IN (SELECT value FROM json_each(?))")
            params.append(_json_list(flt.ids))
        if flt.id_pattern is not None:
            clauses.append("e.id REGEXP ?")
            params.append(flt.id_pattern)
        if flt.type_dnf is not None:
            if not flt.type_dnf:
                return None
            if all(flt.type_dnf):  # an empty conjunction matches every entity
                if flt.geo_bbox is not None or flt.ids is not None:
                    # Another filter already narrows the candidates to a few: checking each
                    # one's types by index beats materialising every id of the type (with a
                    # 500 m geo box over 50,000 entities of one type: 2 ms instead of 100 ms).
                    checks = []
                    for conj in flt.type_dnf:
                        checks.append(
                            "(SELECT count(*) FROM entity_types t WHERE t.tenant = e.tenant AND t.id = e.id"
                            " AND t.type IN (SELECT value FROM json_each(?))) = ?"
                        )
                        params += [_json_list(sorted(conj)), len(conj)]
                    clauses.append(f"({' OR '.join(checks)})")
                    return self._where_rest(tenant, flt, clauses, params)
                parts = []
                for conj in flt.type_dnf:
                    if len(conj) == 1:
                        parts.append("SELECT id FROM entity_types WHERE tenant = ? AND type = ?")
                        params += [tenant, next(iter(conj))]
                    else:
                        parts.append(
                            "SELECT id FROM entity_types WHERE tenant = ? AND type IN (SELECT value FROM json_each(?))"
                            " GROUP BY id HAVING count(*) = ?"
                        )
                        params += [tenant, _json_list(sorted(conj)), len(conj)]
                clauses.append(f"e.id IN ({' UNION '.join(parts)})")
        return self._where_rest(tenant, flt, clauses, params)

    def _where_rest(self, tenant: str, flt: EntityFilter, clauses: list[str], params: list[Any]) -> tuple[str, list[Any]] | None:
        """The attribute, geo and q prefilter conditions of `_where`."""
        if flt.attrs_any is not None:
            if not flt.attrs_any:
                return None
            clauses.append("e.id IN (SELECT id FROM entity_shapes WHERE tenant = ? AND shape IN"
                           " (SELECT shape FROM attr_shape_attrs WHERE attr IN (SELECT value FROM json_each(?))))")
            params += [tenant, _json_list(sorted(flt.attrs_any))]
        if flt.geo_bbox is not None:
            attr, (min_lng, min_lat, max_lng, max_lat) = flt.geo_bbox
            # without an R*Tree the plain indexed columns of geo_boxes serve the same comparison
            # CROSS JOIN makes SQLite search the R*Tree first: left to itself it walked
            # every geo_boxes row of the attribute and probed the R*Tree by key (400 ms
            # instead of 2 ms for a 500 m box over 50,000 points).
            source, box = ("geo_rtree r CROSS JOIN geo_boxes g ON g.key = r.key", "r") if self._rtree else ("geo_boxes g", "g")
            clauses.append(
                f"e.id IN (SELECT g.id FROM {source} WHERE {box}.min_lng <= ? AND {box}.max_lng >= ?"
                f" AND {box}.min_lat <= ? AND {box}.max_lat >= ? AND g.tenant = ? AND g.attr = ?)"
            )
            params += [max_lng, min_lng, max_lat, min_lat, tenant, attr]
        # flt.prefilter is left to the predicate: SQLite 3.40 parses the whole document per JSON
        # condition (4-5 us a row, decoding in Python is 7), so measured over 100,000 entities it
        # saved 10-25% on selective counts and cost up to 60% where most entities matched
        return " AND ".join(clauses), params

    async def query(self, tenant: str, flt: EntityFilter, *, limit: int, offset: int, count: bool) -> QueryPage:
        where = self._where(tenant, flt)
        if where is None:
            return QueryPage([], 0 if count else None)
        sql, params = where
        predicate = flt.predicate

        def plain(c: sqlite3.Connection) -> QueryPage:
            page: list[StoredEntity] = []
            if limit > 0:
                rows = c.execute(f"SELECT {_COLUMNS} FROM entities e WHERE {sql} ORDER BY e.id LIMIT ? OFFSET ?", (*params, limit, offset))
                page = [_entity(r) for r in rows]
            total = c.execute(f"SELECT count(*) FROM entities e WHERE {sql}", params).fetchone()[0] if count else None
            return QueryPage(page, total)

        def filtered(c: sqlite3.Connection) -> QueryPage:
            assert predicate is not None
            page: list[StoredEntity] = []
            matched = 0
            cursor = c.execute(f"SELECT {_COLUMNS} FROM entities e WHERE {sql} ORDER BY e.id", params)
            # Without count, first fetch only the rows the page needs, then more and more: behind a
            # q prefilter most rows match, and each row fetched has cost SQL a walk of its JSON.
            size = CHUNK if count else min(CHUNK, offset + limit)
            while rows := cursor.fetchmany(size):
                for row in rows:
                    doc = orjson.loads(row[1])
                    if not predicate(doc):
                        continue
                    if offset <= matched < offset + limit:
                        page.append(StoredEntity(doc, row[2], row[3]))
                    matched += 1
                if not count and matched >= offset + limit:
                    break
                size = min(CHUNK, 2 * size)
            cursor.close()
            return QueryPage(page, matched if count else None)

        return await self._read(plain if predicate is None else filtered)

    async def type_summaries(self, tenant: str) -> list[TypeSummary]:
        def run(c: sqlite3.Connection) -> list[TypeSummary]:
            summaries = {
                t: TypeSummary(t, n)
                for t, n in c.execute("SELECT type, count(*) FROM entity_types WHERE tenant = ? GROUP BY type ORDER BY type", (tenant,))
            }
            rows = c.execute(
                "SELECT DISTINCT ts.type, a.attr, a.attr_type FROM (SELECT DISTINCT t.type, s.shape FROM entity_types t"
                " JOIN entity_shapes s ON s.tenant = t.tenant AND s.id = t.id WHERE t.tenant = ?) AS ts"
                " JOIN attr_shape_attrs a ON a.shape = ts.shape",
                (tenant,),
            )
            for type_iri, attr, attr_type in rows:
                summaries[type_iri].attributes.setdefault(attr, set()).add(attr_type)
            return list(summaries.values())

        return await self._read(run)

    # ------------------------------------------------------------ writes

    async def insert(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        def run(c: sqlite3.Connection) -> tuple[list[str], list[ChangeRecord]]:
            existing = self._existing(c, tenant, [d["id"] for d in docs])
            conflicts, fresh = [], {}
            for doc in docs:
                if doc["id"] in existing or doc["id"] in fresh:
                    conflicts.append(doc["id"])
                else:
                    fresh[doc["id"]] = _clean(doc)
            blobs = [orjson.dumps(d) for d in fresh.values()]
            self._put_docs(c, tenant, now, list(zip(fresh, blobs)), upsert=False)
            self._index(c, tenant, [(i, index_rows(d)) for i, d in fresh.items()])
            records = _write_log(c, tenant, now, [(i, None, (b, now, now), None, d) for (i, d), b in zip(fresh.items(), blobs)])
            if fresh:
                self._ensure_tenant(c, tenant)
            return conflicts, records

        return await self._write(run)

    async def upsert_replace(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        def run(c: sqlite3.Connection) -> tuple[list[str], list[ChangeRecord]]:
            latest = {d["id"]: _clean(d) for d in docs}  # the last document of an id wins
            existing = self._images(c, tenant, list(latest))
            blobs = [orjson.dumps(d) for d in latest.values()]
            self._put_docs(c, tenant, now, list(zip(latest, blobs)), upsert=True)
            # An update of an existing entity seldom changes its types, attribute names or
            # location (a sensor's new readings): its side-table rows are kept when equal,
            # which costs a decode of the old document (kept for the change record) and saves
            # a dozen row deletes and inserts.
            reindex: list[tuple[str, IndexRows]] = []
            stale: list[str] = []
            entries: list[Entry] = []
            for (i, d), b in zip(latest.items(), blobs):
                before = existing.get(i)
                before_doc = None if before is None else orjson.loads(before[0])
                entries.append((i, before, (b, before[1] if before else now, now), before_doc, d))
                if before_doc is not None and same_index(before_doc, d):
                    continue
                rows = index_rows(d)
                if before_doc is not None:
                    if index_rows(before_doc) == rows:
                        continue
                    stale.append(i)
                reindex.append((i, rows))
            self._unindex(c, tenant, stale)
            self._index(c, tenant, reindex)
            records = _write_log(c, tenant, now, entries)
            if latest:
                self._ensure_tenant(c, tenant)
            return [i for i in latest if i not in existing], records

        return await self._write(run)

    async def modify(self, tenant: str, ids: Sequence[str], fn: ModifyFn, now: str) -> dict[str, Any]:
        def run(c: sqlite3.Connection) -> tuple[dict[str, Any], list[ChangeRecord]]:
            # One read of every entity, fn applied in order in memory (a repeated id meets the
            # outcome of its previous call), then the final documents written in a few statements.
            unique = list(dict.fromkeys(ids))
            rowid: int | None = None  # the row of the one entity of a one-entity call (a PATCH), when stored
            if len(unique) == 1:
                row = c.execute("SELECT rowid, doc, created_at, modified_at FROM entities WHERE tenant = ? AND id = ?",
                                (tenant, unique[0])).fetchone()
                stored = {} if row is None else {unique[0]: (row[1], row[2], row[3])}
                rowid = None if row is None else row[0]
            else:
                stored = self._images(c, tenant, unique)
            current: dict[str, Image] = dict(stored)
            written: dict[str, Doc | None] = {}  # final document per id changed (None: deleted)
            steps: dict[str, list[Doc]] = {}  # earlier instances of a repeated id (Change.steps), rare
            results: dict[str, Any] = {}
            intact: dict[str, Doc] = {}  # the stored document as decoded for an fn that left it intact
            for entity_id in ids:
                image = current.get(entity_id)
                entity = None if image is None else StoredEntity(orjson.loads(image[0]), image[1], image[2])
                change: Change = fn(entity_id, entity)
                results[entity_id] = change.result
                if change.before_intact and entity is not None and image is stored.get(entity_id):
                    intact.setdefault(entity_id, entity.doc)
                if not change.changed:
                    continue
                if change.steps:
                    steps[entity_id] = change.steps
                if change.doc is None:
                    current[entity_id] = written[entity_id] = None
                    continue
                doc: Doc | None = _clean(change.doc)
                current[entity_id] = (orjson.dumps(doc), image[1] if image else now, now)
                written[entity_id] = doc
            entries: list[Entry] = []
            gone: list[str] = []
            put: list[tuple[str, bytes]] = []
            reindex: list[tuple[str, IndexRows]] = []
            stale: list[str] = []
            for entity_id, doc in written.items():
                before = stored.get(entity_id)
                if before is None and doc is None:
                    continue  # created and deleted by the same call: nothing was or is stored
                # the stored bytes, not an entity fn saw, tell what was (fn may change its doc in place),
                # unless fn said it left that doc intact (Change.before_intact)
                before_doc = None if before is None else intact.get(entity_id) or orjson.loads(before[0])
                if entity_id in steps:
                    entries.extend(_step_entries(entity_id, before, before_doc, steps[entity_id], now))
                    last = entries[-1]
                    entries.append((entity_id, last[2], current[entity_id], last[4], doc))
                else:
                    entries.append((entity_id, before, current[entity_id], before_doc, doc))
                if doc is None:
                    gone.append(entity_id)
                    continue
                put.append((entity_id, current[entity_id][0]))  # type: ignore[index]
                if before_doc is not None and same_index(before_doc, doc):
                    continue  # side-table rows kept (see upsert_replace)
                rows = index_rows(doc)
                if before_doc is not None:
                    if index_rows(before_doc) == rows:
                        continue  # side-table rows kept when equal (see upsert_replace)
                    stale.append(entity_id)
                reindex.append((entity_id, rows))
            if gone:
                c.execute("DELETE FROM entities WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))", (tenant, _json_list(gone)))
            if rowid is not None and len(put) == 1:
                # the one stored entity rewritten (a PATCH): an UPDATE of its row, found by the read above in
                # this transaction, instead of an upsert that looks the key up in the unique index again
                c.execute("UPDATE entities SET doc = ?, modified_at = ? WHERE rowid = ?", (put[0][1], now, rowid))
            else:
                self._put_docs(c, tenant, now, put, upsert=True)
            self._unindex(c, tenant, stale + gone)
            self._index(c, tenant, reindex)
            if any(i not in stored for i, _ in put):
                self._ensure_tenant(c, tenant)
            return results, _write_log(c, tenant, now, entries)

        return await self._write(run)

    async def delete(self, tenant: str, ids: Sequence[str]) -> list[str]:
        def run(c: sqlite3.Connection) -> tuple[list[str], list[ChangeRecord]]:
            existing = self._images(c, tenant, ids)
            gone = list(dict.fromkeys(i for i in ids if i in existing))
            c.execute("DELETE FROM entities WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))", (tenant, _json_list(gone)))
            self._unindex(c, tenant, gone)
            now = _utc_now()  # delete() is given no timestamp: the log's `at` is the store's clock
            entries: list[Entry] = [(i, existing[i], None, orjson.loads(existing[i][0]), None) for i in gone]
            return gone, _write_log(c, tenant, now, entries)

        return await self._write(run)

    # ------------------------------------------------------------ change log

    async def changes_after(self, seq: int, limit: int) -> list[ChangeRecord]:
        held = self._recent.after(seq, limit)
        if held is not None:
            return held
        sql = f"SELECT {_LOG_COLUMNS} FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?"
        return await self._read(lambda c: [_record(r) for r in c.execute(sql, (seq, limit))])

    async def last_change_seq(self) -> int:
        return await self._read(lambda c: int(c.execute("SELECT coalesce(max(seq), 0) FROM change_log").fetchone()[0]))

    async def trim_changes(self, upto_seq: int) -> int:
        self._recent.forget(upto_seq)
        assert self._writer is not None, "store is not open"
        # On the writer's idle time (SQLiteThread.tx, idle): deleting the consumed rows, each with two
        # documents, was a tenth of the writer thread under the ingest bench (py-spy), and as a job
        # grouped with the batches' writes it delayed their answers. Nobody waits for it but the trimmer.
        return await self._db.writer.tx(
            lambda c: c.execute("DELETE FROM change_log WHERE seq <= ?", (upto_seq,)).rowcount,
            write=True, lock=self._wlock, idle=True)

    # ------------------------------------------------------------ contexts

    async def put_context(self, local_id: str, document: Doc, kind: str, now: str) -> None:
        await self._write_plain(
            lambda c: c.execute(
                "INSERT INTO contexts VALUES (?, ?, ?, ?)"
                " ON CONFLICT (local_id) DO UPDATE SET document = excluded.document, kind = excluded.kind",
                (local_id, orjson.dumps(document), kind, now),
            )
        )

    async def get_contexts(self) -> list[tuple[str, Doc, str, str]]:
        sql = "SELECT local_id, document, kind, created_at FROM contexts ORDER BY created_at, local_id"
        return await self._read(lambda c: [(r[0], orjson.loads(r[1]), r[2], r[3]) for r in c.execute(sql)])

    async def delete_context(self, local_id: str) -> bool:
        return await self._write_plain(lambda c: c.execute("DELETE FROM contexts WHERE local_id = ?", (local_id,)).rowcount > 0)

    # ------------------------------------------------------------ registry (migration 6)

    async def registry_put(self, item: RegistryDoc, *, create: bool) -> bool:
        row = (orjson.dumps(item.doc), orjson.dumps(item.context), orjson.dumps(item.stats), item.kind, item.tenant, item.id)

        def run(c: sqlite3.Connection) -> bool:
            if create:
                cur = c.execute("INSERT OR IGNORE INTO registry (doc, context, stats, kind, tenant, id) VALUES (?, ?, ?, ?, ?, ?)", row)
            else:
                cur = c.execute("UPDATE registry SET doc = ?, context = ?, stats = ? WHERE kind = ? AND tenant = ? AND id = ?", row)
            return cur.rowcount > 0

        return await self._write_plain(run)

    async def registry_get(self, kind: str, tenant: str, item_id: str) -> RegistryDoc | None:
        sql = "SELECT kind, tenant, id, doc, context, stats FROM registry WHERE kind = ? AND tenant = ? AND id = ?"
        rows = await self._read(lambda c: c.execute(sql, (kind, tenant, item_id)).fetchall())
        return _registry(rows[0]) if rows else None

    async def registry_list(self, kind: str, tenant: str | None) -> list[RegistryDoc]:
        args: tuple[str, ...]
        if tenant is None:
            sql, args = "SELECT kind, tenant, id, doc, context, stats FROM registry WHERE kind = ? ORDER BY tenant, id", (kind,)
        else:
            sql, args = ("SELECT kind, tenant, id, doc, context, stats FROM registry WHERE kind = ? AND tenant = ? ORDER BY id",
                         (kind, tenant))
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [_registry(r) for r in rows]

    async def registry_delete(self, kind: str, tenant: str, item_id: str) -> bool:
        sql = "DELETE FROM registry WHERE kind = ? AND tenant = ? AND id = ?"
        return await self._write_plain(lambda c: c.execute(sql, (kind, tenant, item_id)).rowcount > 0)

    async def registry_stats(self, kind: str, tenant: str, item_id: str, stats: Doc) -> None:
        sql = "UPDATE registry SET stats = ? WHERE kind = ? AND tenant = ? AND id = ?"
        await self._write_plain(lambda c: c.execute(sql, (orjson.dumps(stats), kind, tenant, item_id)))


def _registry(row: Any) -> RegistryDoc:
    return RegistryDoc(row[0], row[1], row[2], orjson.loads(row[3]), orjson.loads(row[4]), orjson.loads(row[5]))
