"""The storage interface of the embedded broker; SQLite and PostgreSQL implement it.

Entities are stored as ENF documents (see models.vocabulary) beside a few
columns the store needs to find them fast: tenant, id, types, the entity's
createdAt/modifiedAt, and a lng/lat bounding box per GeoProperty for geo
prefilters. Everything the NGSI-LD query languages express that SQL cannot
cheaply evaluate arrives as a Python predicate applied to candidate rows.

Entity createdAt/modifiedAt live in columns, not in the document: an upsert
that replaces a document keeps the original createdAt without reading it
first, and the service adds them to the document only when sysAttrs are
asked for. Attribute-level system members stay inside the document.

Tenants: the default tenant is the empty string ''. A tenant exists once
something has been written to it (`ensure_tenant`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models import vocabulary
from storage.database import Database
from storage.migrate import Schema
from storage.urls import DatabaseUrl

if TYPE_CHECKING:
    from broker.query.geo import GeoQuery
    from broker.query.q_sql import Prefilter

Doc = vocabulary.Doc
"""models.vocabulary.Doc, under the name the store's users import it by."""
BBox = tuple[float, float, float, float]
"""(min_lng, min_lat, max_lng, max_lat)"""


@dataclass(slots=True)
class RegistryDoc:
    """A context source registration or csource subscription with what is kept beside it (migration 6)."""

    kind: str
    """'csr' (registration), 'csub' (context source subscription), 'relay'/'relay-token' (broker.federation.relays)"""
    tenant: str
    id: str
    doc: Doc
    context: Any
    stats: Doc


@dataclass(frozen=True, slots=True)
class StoredEntity:
    """An entity document with the system timestamps kept beside it (RFC 3339 UTC strings)."""

    doc: Doc
    created_at: str
    modified_at: str


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """What a query asks for; every member set narrows the result (AND).

    `type_dnf` is the entity type selection in disjunctive normal form of
    expanded type IRIs: the entity matches when, for some set in the list, it
    has every type of that set. `geo_bbox` is (geoproperty IRI, bbox): only
    entities with an instance of that GeoProperty whose stored bbox
    intersects the box. `geo` is the whole geo-query, its `geoproperty`
    expanded to the attribute IRI: a store whose `exact_geo` is True
    evaluates it exactly and the caller leaves the geo relation out of the
    predicate; other stores ignore it (`geo_bbox` and the predicate do the
    work). `predicate` is applied last, in Python, to the ENF document of
    each candidate (q, scopeQ, and the exact geo relation where the store
    does not evaluate it). `prefilter` (broker.query.q_sql) is a condition
    the predicate implies, derived from q, which the store adds to its SQL
    so that fewer candidates are decoded: it may let through entities the
    predicate rejects, never the reverse, so the predicate still runs on
    every candidate and a store may ignore it.
    """

    ids: Sequence[str] | None = None
    id_pattern: str | None = None
    type_dnf: Sequence[frozenset[str]] | None = None
    attrs_any: frozenset[str] | None = None
    geo_bbox: tuple[str, BBox] | None = None
    predicate: Callable[[Doc], bool] | None = None
    geo: GeoQuery | None = None
    prefilter: Prefilter | None = None


@dataclass(slots=True)
class QueryPage:
    """One page of a query, in id order, and the total count when asked for."""

    entities: list[StoredEntity]
    total: int | None = None


@dataclass(slots=True)
class Change:
    """What a modify function returns for one entity.

    `doc` None means delete the entity; a new entity gets createdAt = the
    call's `now`, an existing one keeps its createdAt. `changed` False means
    write nothing (the result is still returned).

    `steps`: when one change stands for several instances of the entity
    applied in order (a batch with a repeated id, clause 5.5.11), the
    documents after each instance but the last, in order; `doc` is the
    last. The store writes only `doc`, but logs one change record per
    instance, each record's before the previous one's after, so history
    keeps every instance and subscriptions see each (5.5.11.2, 5.5.11.3,
    5.5.11.5). None (the usual case) logs one record.

    `before_intact`: fn left the StoredEntity document it was given exactly as it was (it copied
    whatever it changed). A store may then take that document as the change's before image
    instead of decoding the stored bytes a second time, and before and after share their untouched
    parts, which the change-log consumers compare by identity first (issue 16: 16 us of decoding
    and 8 us of deep comparison per single-attribute PATCH). False (the default) for any fn that
    may change its document in place.
    """

    doc: Doc | None
    result: Any = None
    changed: bool = True
    steps: list[Doc] | None = None
    before_intact: bool = False


ModifyFn = Callable[[str, StoredEntity | None], Change]
"""Given an entity id and its current state (None if absent), the change to make."""


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One committed write of one entity, from the store's change log.

    Every write method appends one record per entity it changed (one per
    instance for a `Change` with `steps`), in the same transaction as the write, so a consumer (the temporal history, the
    subscription dispatcher) that follows the log by `seq` never misses a
    change, even across crashes. `before` is the ENF document before the
    write (None: the entity was created), `after` the document after it
    (None: deleted); both carry entity createdAt/modifiedAt. `at` is the
    write's timestamp (the `now` given to the write).
    """

    seq: int
    tenant: str
    entity_id: str
    before: Doc | None
    after: Doc | None
    at: str


@dataclass(slots=True)
class TypeSummary:
    """A type with the attributes seen on its entities and their attribute types."""

    type_iri: str
    count: int
    attributes: dict[str, set[str]] = field(default_factory=dict)


class Store(ABC):
    """Persistent storage of ENF entities per tenant. All methods are coroutines.

    Implementations must make `insert`, `upsert_replace`, `delete` and
    `modify` atomic per call (one transaction), so that a batch operation is
    either fully written or not at all at the storage level, and so that
    concurrent read-modify-write cycles never lose an update.

    `exact_geo`: whether `query` evaluates `EntityFilter.geo` exactly (the
    relations of broker.query.geo, with the same meaning), so that callers
    need not send a geo predicate. Known once the store is open.
    """

    exact_geo: bool = False

    @property
    @abstractmethod
    def database(self) -> DatabaseUrl:
        """The database this store is in: history and subscription storage open beside it, by its kind."""

    @property
    @abstractmethod
    def backend(self) -> Database:
        """The backend of that database (storage.database), whose connections history and subscriptions share."""

    tables: Schema
    """The store's tables, for its database's migration runner (storage.migrate)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema in place."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    @abstractmethod
    async def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant if it does not exist (tenants are created on first write)."""

    @abstractmethod
    async def has_tenant(self, tenant: str) -> bool:
        """Whether anything was ever written to this tenant ('' always exists)."""

    @abstractmethod
    async def tenants(self) -> list[str]:
        """Every tenant, sorted."""

    @abstractmethod
    async def get(self, tenant: str, entity_id: str) -> StoredEntity | None:
        """One entity, or None."""

    @abstractmethod
    async def get_many(self, tenant: str, ids: Sequence[str]) -> dict[str, StoredEntity]:
        """The entities among `ids` that exist, by id."""

    @abstractmethod
    async def insert(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        """Insert new entities; return the ids that already existed and were NOT written."""

    @abstractmethod
    async def upsert_replace(self, tenant: str, docs: Sequence[Doc], now: str) -> list[str]:
        """Write whole documents, creating or replacing; keep createdAt of existing ones.

        Returns the ids that were newly created.
        """

    @abstractmethod
    async def modify(self, tenant: str, ids: Sequence[str], fn: ModifyFn, now: str) -> dict[str, Any]:
        """Atomic read-modify-write of each id in order; returns each Change.result by id."""

    @abstractmethod
    async def delete(self, tenant: str, ids: Sequence[str]) -> list[str]:
        """Delete entities; return the ids that existed and were deleted."""

    @abstractmethod
    async def query(
        self, tenant: str, flt: EntityFilter, *, limit: int, offset: int, count: bool
    ) -> QueryPage:
        """Entities matching the filter, ordered by id, paginated; total when `count`."""

    @abstractmethod
    async def type_summaries(self, tenant: str) -> list[TypeSummary]:
        """Every entity type in the tenant with its entity count and attributes."""

    @abstractmethod
    async def changes_after(self, seq: int, limit: int) -> list[ChangeRecord]:
        """Change log records with seq > `seq`, in seq order, at most `limit`."""

    @abstractmethod
    async def last_change_seq(self) -> int:
        """The highest seq in the change log (0 when empty)."""

    @abstractmethod
    async def trim_changes(self, upto_seq: int) -> int:
        """Delete records with seq <= upto_seq (every consumer is past them); how many."""

    @abstractmethod
    async def put_context(self, local_id: str, document: Doc, kind: str, now: str) -> None:
        """Persist a hosted @context document (contexts are shared by all tenants)."""

    @abstractmethod
    async def get_contexts(self) -> list[tuple[str, Doc, str, str]]:
        """Every persisted @context: (local_id, document, kind, created_at)."""

    @abstractmethod
    async def delete_context(self, local_id: str) -> bool:
        """Remove a persisted @context; whether it existed."""

    # ------------------------------------------------------------ registry (migration 6)

    @abstractmethod
    async def registry_put(self, item: RegistryDoc, *, create: bool) -> bool:
        """Insert (create: False when it exists) or replace (False when it does not exist) a document."""

    @abstractmethod
    async def registry_get(self, kind: str, tenant: str, item_id: str) -> RegistryDoc | None:
        """One document, or None."""

    @abstractmethod
    async def registry_list(self, kind: str, tenant: str | None) -> list[RegistryDoc]:
        """Every document of a kind in a tenant (every tenant when None), by id."""

    @abstractmethod
    async def registry_delete(self, kind: str, tenant: str, item_id: str) -> bool:
        """Delete a document; whether it existed."""

    @abstractmethod
    async def registry_stats(self, kind: str, tenant: str, item_id: str, stats: Doc) -> None:
        """Replace the status members kept beside a document."""
