"""What operators do with the outbox: look at its rows and dead letters, retry, re-target, purge.

Every operation is scoped to one tenant (`tenant`, the fiware-service) and,
unless `service_path` is None (`/*`), one service path, as the provisioning
API scopes groups and devices. Rows are named by `seq`, dead letters by `id`.

    rows(tenant, path)                 waiting rows, oldest first (target, attempts, last error, due time)
    retry(tenant, path, seqs)          due now: backoff forgotten (the device's order is kept)
    purge(tenant, path, seqs)          drop waiting rows (their measures are lost: an operator's decision)
    retarget(tenant, apikey, target)   rows of a group go to its new cbroker (rows keep the URL of their time)
    dead(tenant, path)                 dead letters, newest first, with the broker's ProblemDetails
    requeue(tenant, path, ids)         dead letters back into the outbox, behind what waits
    purge_dead(tenant, path, ids)      drop dead letters
    counts()                           rows per target and dead letters, for /metrics
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson

from models.times import utc_iso

__all__ = ["OutboxAdmin", "device_prefix"]

_LEASED_BEYOND = 300.0  # a row due later than this is leased (Outbox.LEASE_SECONDS is 600), not backing off


def device_prefix(tenant: str, apikey: str) -> str:
    """The start of the `device` key of a group's rows (agents.transports.intake.to_outbox_item)."""
    return f"{tenant}|{apikey}|"


def _scope(tenant: str, service_path: str | None, ids: Sequence[int] | None, id_column: str) -> tuple[str, list[Any]]:
    where = "tenant = ?"
    args: list[Any] = [tenant]
    if service_path is not None:
        where += " AND service_path = ?"
        args.append(service_path)
    if ids is not None:
        where += f" AND {id_column} IN (SELECT value FROM json_each(?))"
        args.append(orjson.dumps(list(ids)))
    return where, args


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return utc_iso(ts)


def _device_id(device: str) -> str:
    return device.split("|", 2)[-1]


class OutboxAdmin:
    """Operators' view of the outbox (mixed into `adapters.outbox.Outbox`, whose connection and lock it uses)."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _counter: sqlite3.Connection  # read-only connection of `counts`, under `_counter_lock`
    _counter_lock: threading.Lock
    _depth: int
    _listeners: list[Callable[[], None]]
    _targets: set[str]
    _transaction: Callable[..., AbstractContextManager[sqlite3.Connection]]

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def rows(self, tenant: str, service_path: str | None, *, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(how many, a page of them): the tenant's waiting rows, oldest first."""
        where, args = _scope(tenant, service_path, None, "seq")
        count = int(self._read(f"SELECT count(*) FROM outbox WHERE {where}", args)[0][0])
        found = self._read(
            f"""SELECT seq, target, service_path, device, json_extract(CAST(entity AS TEXT), '$.id'), accepted_at,
                       attempts, not_before, last_error
                FROM outbox WHERE {where} ORDER BY seq LIMIT ? OFFSET ?""", [*args, limit, offset])
        now = time.time()
        return count, [
            {"seq": seq, "target": target or None, "servicePath": path, "device_id": _device_id(device),
             "entity_id": eid, "acceptedAt": _iso(accepted), "attempts": attempts,
             "state": "waiting" if not_before > now else "due",
             "dueAt": _iso(not_before) if not_before > now else None, "lastError": error}
            for seq, target, path, device, eid, accepted, attempts, not_before, error in found
        ]

    def retry(self, tenant: str, service_path: str | None, seqs: Sequence[int] | None = None) -> int:
        """Make the rows due now (forgetting their backoff); how many. A leased row is left to its lease."""
        where, args = _scope(tenant, service_path, seqs, "seq")
        with self._lock, self._transaction(durable=False) as db:
            # a lease sets not_before LEASE_SECONDS (600 s) ahead, a backoff at most backoff_max (30 s):
            # rows leased right now, due beyond half a lease, are left to their lease
            n = db.execute(f"UPDATE outbox SET not_before = 0 WHERE {where} AND not_before > 0"
                           " AND not_before < ?", [*args, time.time() + _LEASED_BEYOND]).rowcount
        self._woken()
        return int(n)

    def purge(self, tenant: str, service_path: str | None, seqs: Sequence[int] | None = None) -> int:
        """Drop waiting rows; how many."""
        where, args = _scope(tenant, service_path, seqs, "seq")
        with self._lock, self._transaction(durable=True) as db:
            n = int(db.execute(f"DELETE FROM outbox WHERE {where}", args).rowcount)
            self._depth -= n
        return n

    def retarget(self, tenant: str, apikey: str, target: str) -> int:
        """Send a group's waiting rows to `target` ('' = the agent's default broker) from now on; how many."""
        prefix = device_prefix(tenant, apikey)
        with self._lock, self._transaction(durable=True) as db:
            n = int(db.execute("UPDATE outbox SET target = ?, not_before = CASE WHEN not_before > ? THEN not_before"
                               " ELSE 0 END WHERE tenant = ? AND substr(device, 1, ?) = ? AND target != ?",
                               (target, time.time() + _LEASED_BEYOND, tenant, len(prefix), prefix, target)).rowcount)
            if n:
                self._targets_add(target)
        self._woken()
        return n

    def dead(self, tenant: str, service_path: str | None, *, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(how many, a page of them): the tenant's dead letters, newest first."""
        where, args = _scope(tenant, service_path, None, "id")
        count = int(self._read(f"SELECT count(*) FROM dead_letters WHERE {where}", args)[0][0])
        found = self._read(
            f"""SELECT id, target, service_path, device, entity, accepted_at, dead_at, attempts, problem
                FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?""", [*args, limit, offset])
        return count, [
            {"id": i, "target": target or None, "servicePath": path, "device_id": _device_id(device),
             "entity": orjson.loads(entity), "acceptedAt": _iso(accepted), "deadAt": _iso(dead_at),
             "attempts": attempts, "problem": orjson.loads(problem)}
            for i, target, path, device, entity, accepted, dead_at, attempts, problem in found
        ]

    def requeue(self, tenant: str, service_path: str | None, ids: Sequence[int] | None = None,
                target: Callable[[str, str], str | None] | None = None) -> int:
        """Put dead letters back at the end of the outbox; how many.

        `target(tenant, device key)` may name the broker to use now (the group's current cbroker);
        None keeps the one of their time.
        """
        where, args = _scope(tenant, service_path, ids, "id")
        with self._lock, self._transaction(durable=True) as db:
            found = db.execute(f"SELECT id, target, tenant, context, device, entity, accepted_at, service_path"
                               f" FROM dead_letters WHERE {where} ORDER BY id", args).fetchall()
            for row in found:
                url = row[1]
                if target is not None:
                    now_url = target(row[2], row[4])
                    url = row[1] if now_url is None else now_url
                db.execute("INSERT INTO outbox (target, tenant, context, device, entity, accepted_at, service_path)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)", (url, *row[2:]))
                self._targets_add(url)
            db.execute("DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?))",
                       (orjson.dumps([r[0] for r in found]),))
            self._depth += len(found)
        if found:
            for listener in self._listeners:
                listener()
        return len(found)

    def purge_dead(self, tenant: str, service_path: str | None, ids: Sequence[int] | None = None) -> int:
        """Drop dead letters; how many."""
        where, args = _scope(tenant, service_path, ids, "id")
        with self._lock, self._transaction(durable=False) as db:
            return int(db.execute(f"DELETE FROM dead_letters WHERE {where}", args).rowcount)

    def counts(self) -> tuple[dict[str, int], int]:
        """(waiting rows per target, dead letters): what /metrics shows.

        Read on a connection of its own, in one snapshot, not under the write lock: on a deep outbox the
        scan takes milliseconds, and while it held the lock appends (what the intake acknowledges) and
        delivery's leases and acks waited (43 % of the wall time in a bench run scraping /metrics in a loop).
        """
        with self._counter_lock:
            db = self._counter
            db.execute("BEGIN")
            try:
                per_target = {str(t): int(n) for t, n in db.execute("SELECT target, count(*) FROM outbox GROUP BY target")}
                dead = int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
            finally:
                db.execute("COMMIT")
        return per_target, dead

    def _targets_add(self, target: str) -> None:
        self._targets.add(target)

    def _woken(self) -> None:
        for listener in self._listeners:
            listener()
