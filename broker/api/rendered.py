"""Retrieve Entity's answers kept as bytes until the entity changes (issue 16).

A GET of one entity read its row, decoded it, compacted it with the request's @context,
converted it to the representation asked for and encoded the result, every time. A
`RenderedEntities` cache keeps the 200 answer (status, header list, body bytes) of a GET
by what decides it:

- the tenant and the entity id;
- the request's `variant`: its raw query string and its raw Accept, Link and Prefer headers
  (the URL parameters, the media type, the @context value and GeoJSON's choice of body
  context are read from nothing else);
- the resolved `Context` object the answer was compacted with: the @context is resolved
  on every request (which also counts the stored contexts' hits, clause 5.13.3.5) and an
  entry answers only when the resolver gives back the very same object; a context that
  expired, was reloaded, replaced or deleted resolves to a new object (or fails as it would).

Not kept: an answer with Linked Entities (`join`, which reads other entities), one that made
or used an EntityMap, and any answer in a tenant that has a context source registration: the
handler checks that before every lookup, as the normal path asks the registrations before
forwarding.

Exactness: every committed write of the store reaches `invalidate` through its recent-changes
buffer (broker.store.recent, in commit order, on the committing thread) and drops that
entity's answers. A GET that read the store before a write committed could otherwise keep
what it read after the write's invalidation: `keep` refuses an answer when its entity (or,
past what `_touched` remembers, any entity) was invalidated since the GET's `generation()`,
taken before its read. A write is thus seen by every GET answered after the write's own
response. (A PostgreSQL write cancelled between its COMMIT and that hand-over, which only a
server's shutdown does to a write, would not reach it: the store's own consumers then read the log.) The cache is this process's: only writes made through this process's store reach
it (one broker process per store, as today; METROPOLE_BROKER_RENDER_CACHE_MB=0 turns it off).

Bounded by the bytes of the bodies held (METROPOLE_BROKER_RENDER_CACHE_MB, default 64): the
entities cached first are dropped first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from broker.store.base import ChangeRecord

__all__ = ["CachedResponse", "Entry", "RenderedEntities", "cache_of", "variant_of"]

Variant = tuple[bytes, bytes | None, bytes | None, bytes | None]
"""(query string, Accept, Link, Prefer) of a request, raw."""

log = logging.getLogger("broker")

DEFAULT_MB = 64
"""The default bound of the bodies held, in MiB."""

TOUCHED = 16_384
"""Invalidated entities remembered with their generation (a few MB at most); a GET whose read began before the
newest one forgotten keeps nothing (a read takes milliseconds: thousands of writes cannot pass it unseen)."""

ENTRY_OVERHEAD = 256
"""Bytes counted for an entry besides its body (its headers and keys)."""


def budget_from_env() -> int:
    """The cache's bound in bytes: METROPOLE_BROKER_RENDER_CACHE_MB (default 64, 0: no cache; not a number: 64,
    logged)."""
    text = os.environ.get("METROPOLE_BROKER_RENDER_CACHE_MB", "").strip() or str(DEFAULT_MB)
    try:
        megabytes = float(text)
    except ValueError:
        log.warning("METROPOLE_BROKER_RENDER_CACHE_MB=%r is not a number: %d MB are used", text, DEFAULT_MB)
        megabytes = DEFAULT_MB
    return max(0, int(megabytes * 1024 * 1024))


class CachedResponse(Response):
    """A kept answer sent again: the same status, header list and body (a fresh list each time, for the middlewares)."""

    def __init__(self, entry: Entry) -> None:  # no super().__init__: nothing to render, nothing to build
        self.status_code = entry.status
        self.body = entry.body
        self.background = None
        self.raw_headers = list(entry.headers)


@dataclass(frozen=True, slots=True)
class Entry:
    """One kept answer and the @context it was rendered with."""

    ctx: Any  # the resolved Context, compared by identity
    context_value: Any  # the request's @context value (from its Link header), resolved again on a hit
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def variant_of(headers: Sequence[tuple[bytes, bytes]], query_string: bytes) -> Variant | None:
    """The request's variant (first occurrence of each header, as Starlette's Headers.get reads them);
    None when it names an EntityMap (NGSILD-EntityMap), whose answer is never kept."""
    accept = link = prefer = None
    for key, value in headers:
        if key == b"accept":
            if accept is None:
                accept = value
        elif key == b"link":
            if link is None:
                link = value
        elif key == b"prefer":
            if prefer is None:
                prefer = value
        elif key == b"ngsild-entitymap":
            return None
    return query_string, accept, link, prefer


class RenderedEntities:
    """The kept answers of Retrieve Entity by (tenant, entity id) and variant; thread-safe (writes invalidate
    from the SQLite writer thread)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._groups: dict[tuple[str, str], dict[Variant, Entry]] = {}
        self._size = 0
        self._lock = threading.Lock()
        self._generation = 0
        self._touched: dict[tuple[str, str], int] = {}  # entity -> generation of its last invalidation
        self._floor = 0  # generation of the newest invalidation `_touched` forgot

    def generation(self) -> int:
        """Taken before reading the store; handed back to `keep`."""
        return self._generation

    def get(self, tenant: str, entity_id: str, variant: Variant) -> Entry | None:
        """The kept answer, if any (the caller checks its Context)."""
        group = self._groups.get((tenant, entity_id))
        return group.get(variant) if group is not None else None

    def keep(self, tenant: str, entity_id: str, variant: Variant, entry: Entry, generation: int) -> None:
        """Keep an answer rendered from a read made after `generation()` gave `generation`, unless its entity
        changed since (then the read may be older than the change)."""
        key = (tenant, entity_id)
        size = len(entry.body) + ENTRY_OVERHEAD
        if size > self.budget:
            return
        with self._lock:
            if generation < self._floor or self._touched.get(key, -1) > generation:
                return
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = {}
            old = group.get(variant)
            if old is not None:
                self._size -= len(old.body) + ENTRY_OVERHEAD
            group[variant] = entry
            self._size += size
            while self._size > self.budget:
                oldest = next(iter(self._groups))
                for dropped in self._groups.pop(oldest).values():
                    self._size -= len(dropped.body) + ENTRY_OVERHEAD

    def invalidate(self, records: Sequence[ChangeRecord]) -> None:
        """Drop the answers of the entities these committed records changed (a RecentChanges listener)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            for record in records:
                key = (record.tenant, record.entity_id)
                group = self._groups.pop(key, None)
                if group is not None:
                    for dropped in group.values():
                        self._size -= len(dropped.body) + ENTRY_OVERHEAD
                self._touched.pop(key, None)
                self._touched[key] = generation
            while len(self._touched) > TOUCHED:
                oldest = next(iter(self._touched))
                self._floor = max(self._floor, self._touched.pop(oldest))

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())


def cache_of(app_state: Any, store: Any) -> RenderedEntities | None:
    """The app's cache over `store`, made and hooked to the store's committed writes on first use; None when
    turned off (budget 0, or `app_state.rendered_entities = None`) or when the store hands no committed
    writes over (then nothing could invalidate an answer)."""
    bound = getattr(app_state, "rendered_entities", False)
    if bound is None:
        return None
    if not isinstance(bound, _Bound) or bound.store is not store:
        listeners = getattr(getattr(store, "_recent", None), "listeners", None)
        budget = budget_from_env()
        if not isinstance(listeners, list) or budget <= 0:
            app_state.rendered_entities = None
            return None
        bound = _Bound(RenderedEntities(budget), store)
        listeners.append(bound.cache.invalidate)
        app_state.rendered_entities = bound
    return bound.cache


@dataclass(frozen=True, slots=True)
class _Bound:
    """A cache and the store whose writes it follows (an app reopened on another store makes a new one)."""

    cache: RenderedEntities
    store: Any
