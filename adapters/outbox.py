"""The durable outbox between the agents and the NGSI-LD broker: SQLite in WAL mode.

A measure is *accepted* once `Outbox.append` has committed it; only then does
a transport acknowledge it (MQTT PUBACK, HTTP 200). Delivery then takes rows
out in order:

    append(items)          one transaction for a whole batch (group commit)
    lease(limit, skip)     the oldest deliverable rows, in `seq` order, leased to the caller
    ack(seqs)              delivered: the rows go
    release(seqs, delay)   not delivered: the rows come back after `delay` seconds (backoff)
    dead_letter(seq, pb)   the broker refused the data itself: the row moves to `dead_letters`
                           with the broker's ProblemDetails, never silently dropped

Order per device: `lease` never returns a row of a device (`device` key) while
an older row of that device is leased or backing off, so the rows of one
device reach the broker in the order they were accepted. A `target` (a broker
URL) that is down can be skipped as a whole, so one broker's outage does not
hold back another's devices.

Durability: appends are committed with WAL `synchronous=FULL` (default),
which survives power loss, or `synchronous=NORMAL`, which survives a crash
of the process (kill -9) but may lose the last commits on power loss, for
more throughput. Leases, acknowledgements and releases never wait for the
disk (NORMAL): losing the last of them on power loss only means rows are
delivered again (at least once), and a later durable commit syncs them too.
Leases live in the database only as `not_before` times and are cleared at
open: a crashed consumer's rows are delivered again (at least once).

Cost: rows go in as one multi-row INSERT per transaction and leases, acks
and releases name their rows as one JSON array parameter, so a batch is a
few statements whatever its size (`executemany` steps, and releases and
retakes the GIL, once per row). An entity is serialised once, at append:
`lease` hands its stored JSON back as a `StoredEntity`, which delivery
sends as it is and which is only parsed if read as a mapping. A delivery
lane's lease walks the index `outbox_lease` (target, seq, device), not the
table: a down broker's backlog or a held-back device's rows cost it index
entries, not their entities (`python -m bench.outbox_bench`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from adapters.outbox_admin import OutboxAdmin

__all__ = ["DeadLetter", "Leased", "Outbox", "OutboxItem", "StoredEntity"]

_COLUMNS = "target, tenant, context, device, entity, accepted_at, service_path"
_WIDTH = 7  # values per row in an INSERT
_MAX_ROWS_LOG2 = 12  # at most 4096 rows per INSERT: 7 parameters a row, within SQLite's 32766

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT NOT NULL,              -- broker base URL, '' = the agent's default broker
    tenant      TEXT NOT NULL,
    context     BLOB NOT NULL,              -- JSON array of @context URLs
    device      TEXT NOT NULL,              -- ordering key (apikey/device_id)
    entity      BLOB NOT NULL,              -- normalized NGSI-LD entity, JSON
    accepted_at REAL NOT NULL,              -- unix time of acceptance (latency metric)
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL DEFAULT 0,    -- leased or backing off until then
    last_error  TEXT,
    service_path TEXT NOT NULL DEFAULT '/'  -- fiware-servicepath, with tenant the scope operators see
);
-- A lane's lease walks its target's rows in seq order reading (target, seq, device) from this index
-- alone, and looks a row up only to return it: never the rows of other targets, never a skipped row's
-- entity (issue 16: a table scan read every row of a down broker's backlog on each lease).
CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (target, seq, device);
CREATE INDEX IF NOT EXISTS outbox_not_before ON outbox (not_before);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         INTEGER NOT NULL,
    target      TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    context     BLOB NOT NULL,
    device      TEXT NOT NULL,
    entity      BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    dead_at     REAL NOT NULL,
    attempts    INTEGER NOT NULL,
    problem     BLOB NOT NULL,              -- the broker's ProblemDetails, JSON
    service_path TEXT NOT NULL DEFAULT '/'
);
"""
#: columns added since the first release, added at open to an older file
_MIGRATIONS = (("outbox", "service_path", "TEXT NOT NULL DEFAULT '/'"),
               ("dead_letters", "service_path", "TEXT NOT NULL DEFAULT '/'"))


class OutboxItem(NamedTuple):
    """One entity update to deliver (a named tuple: made twice per measure, it must be cheap to build)."""

    target: str
    tenant: str
    context: tuple[str, ...]
    device: str
    entity: Mapping[str, Any]
    accepted_at: float
    service_path: str = "/"


class StoredEntity(Mapping[str, Any]):
    """An entity as the outbox stored it: its JSON and its id, parsed only when read as a mapping."""

    __slots__ = ("_doc", "id", "json")

    def __init__(self, json: bytes, entity_id: str) -> None:
        self.json = json
        self.id = entity_id
        self._doc: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = orjson.loads(self.json)
        return self._doc

    def __getitem__(self, key: str) -> Any:
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())


def entity_json(entity: Mapping[str, Any]) -> bytes:
    """The JSON of an entity, without serialising it again when the outbox already did."""
    return entity.json if isinstance(entity, StoredEntity) else orjson.dumps(entity)


class Leased(NamedTuple):
    """A row handed to a consumer: ack, release or dead-letter it by `seq`."""

    seq: int
    item: OutboxItem
    attempts: int

    @property
    def entity_id(self) -> str:
        entity = self.item.entity
        return entity.id if isinstance(entity, StoredEntity) else str(entity.get("id", ""))

    @property
    def entity_json(self) -> bytes:
        return entity_json(self.item.entity)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A measure the broker refused, with the broker's ProblemDetails."""

    id: int
    seq: int
    item: OutboxItem
    dead_at: float
    attempts: int
    problem: dict[str, Any]


def _item(row: Sequence[Any]) -> OutboxItem:
    target, tenant, context, device, entity, accepted_at, service_path = row
    return OutboxItem(target, tenant, tuple(orjson.loads(context)), device, orjson.loads(entity), accepted_at,
                      service_path)


@cache
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO outbox ({_COLUMNS}) VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * rows)


def _seq_list(seqs: Iterable[int]) -> bytes:
    """Row numbers as one JSON array parameter (`seq IN (SELECT value FROM json_each(?))`)."""
    return orjson.dumps(list(seqs))


class Outbox(OutboxAdmin):
    """A durable FIFO of entity updates, ordered per device, in one SQLite file (managed: see OutboxAdmin)."""

    LEASE_SECONDS = 600.0  # a lease outlives any request; leases are cleared at open anyway

    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._synchronous = synchronous
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        for table, column, kind in _MIGRATIONS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        # Whoever held leases before us is gone (restart, crash): their rows are due again.
        self._db.execute("UPDATE outbox SET not_before = 0 WHERE not_before > 0")
        self._depth = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        # Targets (broker URLs) rows have had: delivery runs a lane per target (see agents.delivery).
        self._targets = {str(r[0]) for r in self._db.execute("SELECT DISTINCT target FROM outbox")}
        # Leases look for their rows on a connection of their own, outside `_lock`: on a deep outbox that
        # search takes milliseconds, during which appends (what the intake acknowledges) must not wait.
        # Leases are serialised by `_lease_lock` instead (see `lease`).
        self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA busy_timeout=5000")
        self._lease_lock = threading.Lock()
        self._counter = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)  # counts()
        self._counter.execute("PRAGMA busy_timeout=5000")
        self._counter_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    def close(self) -> None:
        """Checkpoint and close the database."""
        with self._lease_lock, self._counter_lock, self._lock:
            if not self._closed:
                self._closed = True
                self._reader.close()
                self._counter.close()
                self._db.close()

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the appending thread) after every committed append."""
        self._listeners.append(listener)

    @property
    def depth(self) -> int:
        """Rows waiting for delivery (leased ones included)."""
        return self._depth

    @property
    def targets(self) -> frozenset[str]:
        """Every target rows were appended for since the outbox was opened, or were waiting for then."""
        return frozenset(self._targets)

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """One write transaction (hold `_lock`); not `durable`: committed without waiting for the disk."""
        db = self._db
        relaxed = not durable and self._synchronous != "NORMAL"
        if relaxed:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            if relaxed:
                db.execute(f"PRAGMA synchronous={self._synchronous}")

    def append(self, items: Iterable[OutboxItem]) -> int:
        """Commit every item in one transaction; return how many. Once this returns they are durable."""
        values: list[Any] = []
        contexts: dict[tuple[str, ...], bytes] = {}  # the few distinct @context lists, serialised once
        for i in items:
            context = contexts.get(i.context)
            if context is None:
                context = contexts[i.context] = orjson.dumps(list(i.context))
            values += (i.target, i.tenant, context, i.device, entity_json(i.entity), i.accepted_at, i.service_path)
        rows = len(values) // _WIDTH
        if not rows:
            return 0
        targets = set(values[0::_WIDTH])
        with self._lock, self._transaction(durable=True) as db:
            done = 0
            while done < rows:
                # Statements of a power of two rows: a dozen distinct SQL texts in all, each prepared once.
                size = 1 << min(_MAX_ROWS_LOG2, (rows - done).bit_length() - 1)
                db.execute(_insert_sql(size), values[done * _WIDTH:(done + size) * _WIDTH])
                done += size
            self._depth += rows
            if not targets <= self._targets:
                self._targets |= targets
        for listener in self._listeners:
            listener()
        return rows

    def lease(self, limit: int, *, skip_targets: Iterable[str] = (), target: str | None = None,
              now: float | None = None) -> list[Leased]:
        """The oldest due rows, at most `limit`, never a row behind a leased or backing-off row of its device.

        `target` leases the rows of that target only (a delivery lane's); `skip_targets` leaves some out.
        """
        now = time.time() if now is None else now
        skip = list(skip_targets)
        # No `not_before <= now` test on the rows: a row that is not due holds its device back, so every row
        # of a device that is not held back is due. Leaving it out lets a lane's lease read the index alone.
        params: tuple[object, ...]
        held = "device NOT IN (SELECT device FROM outbox INDEXED BY outbox_not_before WHERE not_before > ?)"
        if target is not None:
            source, where, params = "outbox INDEXED BY outbox_lease", f"target = ? AND {held}", (target, now)
        else:  # every target but the skipped ones: seq order is rowid order
            marks = ",".join("?" * len(skip))
            where = f"target NOT IN ({marks}) AND {held}" if skip else held
            source, params = "outbox NOT INDEXED", (*skip, now)
        sql = f"""
            SELECT seq, target, tenant, context, device, entity, json_extract(CAST(entity AS TEXT), '$.id'),
                   accepted_at, attempts, service_path
            FROM {source} WHERE {where} ORDER BY seq LIMIT ?"""
        # The rows found on the reader's snapshot are still free when marked: only a lease takes rows
        # (and leases are serialised here), and only leased rows are acked, released or dead-lettered.
        with self._lease_lock:
            rows = self._reader.execute(sql, (*params, limit)).fetchall()
            if rows:
                with self._lock, self._transaction(durable=False) as db:
                    db.execute("UPDATE outbox SET not_before = ? WHERE seq IN (SELECT value FROM json_each(?))",
                               (now + self.LEASE_SECONDS, _seq_list(r[0] for r in rows)))
        contexts: dict[bytes, tuple[str, ...]] = {}
        leased = []
        for seq, target_url, tenant, context, device, entity, entity_id, accepted_at, attempts, path in rows:
            ctx = contexts.get(context)
            if ctx is None:
                ctx = contexts[context] = tuple(orjson.loads(context))
            item = OutboxItem(target_url, tenant, ctx, device, StoredEntity(entity, str(entity_id or "")), accepted_at,
                              path)
            leased.append(Leased(seq, item, attempts))
        return leased

    def ack(self, seqs: Iterable[int]) -> None:
        """Delivered: remove the rows."""
        keys = _seq_list(seqs)
        if keys == b"[]":
            return
        with self._lock, self._transaction(durable=False) as db:
            cur = db.execute("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?))", (keys,))
            self._depth -= cur.rowcount

    def release(self, seqs: Iterable[int], *, delay: float = 0.0, error: str | None = None) -> None:
        """Not delivered: the rows (and those of their devices behind them) wait `delay` seconds."""
        due = time.time() + delay if delay > 0 else 0.0
        keys = _seq_list(seqs)
        if keys == b"[]":
            return
        with self._lock, self._transaction(durable=False) as db:
            db.execute("UPDATE outbox SET not_before = ?, attempts = attempts + 1, last_error = ?"
                       " WHERE seq IN (SELECT value FROM json_each(?))", (due, error, keys))

    def dead_letter(self, seq: int, problem: Mapping[str, Any]) -> None:
        """Move a row the broker refused to `dead_letters`, keeping its ProblemDetails."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    """INSERT INTO dead_letters (seq, target, tenant, context, device, entity, accepted_at, dead_at,
                                                 attempts, problem, service_path)
                       SELECT seq, target, tenant, context, device, entity, accepted_at, ?, attempts + 1, ?, service_path
                       FROM outbox WHERE seq = ?""",
                    (time.time(), orjson.dumps(dict(problem)), seq),
                )
                if cur.rowcount:
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= cur.rowcount

    def dead_letters(self, limit: int = 100, *, after_id: int = 0) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        with self._lock:
            rows = self._db.execute(
                """SELECT id, seq, target, tenant, context, device, entity, accepted_at, service_path, dead_at,
                          attempts, problem
                   FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?""",
                (after_id, limit),
            ).fetchall()
        return [DeadLetter(r[0], r[1], _item(r[2:9]), r[9], r[10], orjson.loads(r[11])) for r in rows]

    def dead_letter_count(self) -> int:
        """How many dead letters are kept."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def oldest_accepted_at(self) -> float | None:
        """Acceptance time of the oldest waiting row (how far behind delivery is)."""
        with self._lock:
            row = self._db.execute("SELECT accepted_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else float(row[0])
