"""HistoryStorage: where attribute instances over time are kept, beside the broker's own Store.

Both implementations hold the same tables in the store's database:

    temporal_instances  one row per attribute instance at one time (model.HistoryRow),
                        unique on (tenant, entity, attribute, datasetId, key, kind)
                        and indexed on (tenant, entity, attribute, observedAt) and
                        (tenant, entity, attribute, modifiedAt) for time-range scans
    (both keep the instances as temporal_rows under an integer series id, temporal_series:
    tenant, entity, attribute, datasetId -> sid, unique on (sid, key, kind): on SQLite a WITHOUT
    ROWID table clustered on that key, iids from a counter; on PostgreSQL a heap with a b-tree on it
    and BRIN indexes (iid, observedAt, modifiedAt); temporal_instances is a view with the columns above)
    (the stored instance document leaves out what the row's columns rebuild: model.compact_instance;
    a row's columns leave out what another column holds, as NULL, which the view reads back:
    createdAt = modifiedAt, the text of a float value, on SQLite observedAt = the key, the document of
    a plain reading: PLAIN_INSTANCE, a DateTime value that is the key time: KEY_DATETIME)
    (SQLite only, issue 16's sqlrow21 and sqlunit21: the readings of one entity change that pack,
    broker.temporal.changes, are one row of temporal_changes (entity key, key time, first instanceId,
    modifiedAt and createdAt once, the values as a JSON array) instead of a row each; the members'
    series ids and short stored documents once per attribute set in temporal_change_shapes, the
    entity keys in temporal_change_keys; the view gives them back as rows like the others)
    temporal_entities   (tenant, entity) -> types, deletedAt, and the FIWARE service path
                        the QuantumLeap API last stored the entity under (NULL: '/'),
                        a column added in place to older databases
    temporal_cursors    consumer name -> last change-log seq applied, written in the
                        same transaction as the rows it stands for

Writing an instance whose key is already stored replaces it (its value and
members; the instanceId stays): a reading sent again is stored once, a
corrected one wins (clause 5.6.11: the upsert of temporal evolution).
"""

from __future__ import annotations

import functools
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from broker.temporal.model import EntityRow, HistoryRow, packed_value_json, rebuild_instance, stored_value
from storage.migrate import Schema
from web.settings import EnvInt, EnvSettings, SettingsError, load, var

if TYPE_CHECKING:
    from broker.temporal.rollup import RollupBucket

CACHE_ENTRIES = 250_000
"""Default bound of each in-memory key cache of a history store (series key -> sid; on SQLite also entity -> eid
and change shape -> id): METROPOLE_BROKER_HISTORY_CACHE_ENTRIES. Above the benches' working sets (20,000
entities x 7 attributes: 140,000 series); an entry is ~0.3-0.4 kB (its key's strings), so ~100 MB at most."""


class HistoryCacheEnv(EnvSettings):
    """The variable of `cache_entries_from_env`."""

    cache_entries: EnvInt = var("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES")


def cache_entries_from_env() -> int:
    """METROPOLE_BROKER_HISTORY_CACHE_ENTRIES (default CACHE_ENTRIES; 0: nothing kept between writes)."""
    bound = int(load(HistoryCacheEnv).get("cache_entries", CACHE_ENTRIES))
    if bound < 0:
        raise SettingsError(f"METROPOLE_BROKER_HISTORY_CACHE_ENTRIES={bound!r} is not 0 or more")
    return bound


K = TypeVar("K")
V = TypeVar("V")


def trimmed(cache: dict[K, V], bound: int) -> dict[K, V]:
    """`cache` itself while it holds at most `bound` entries, else a NEW dict of its newest `bound // 2` (insertion
    order: a key looked up again after its eviction is new again).

    A new dict, never entries removed in place: a write that took the old one keeps a complete copy until it ends
    (PostgreSQL's writes interleave on the event loop); on a hit nothing is done (no LRU move: a dict look-up per
    row as before), and the copy, once per bound // 2 new keys, costs well under a microsecond per key kept."""
    if len(cache) <= bound:
        return cache
    return dict(itertools.islice(cache.items(), len(cache) - bound // 2, None))


# the stored document of a plain reading (model.compact_instance: type Property, value, observedAt, createdAt,
# modifiedAt, each rebuilt from the row's columns), nearly every row of a QuantumLeap-fed history: both stores
# keep NULL for it in temporal_rows.instance and read it back as these bytes (hist17: 7 of a row's bytes on
# SQLite, 8 on PostgreSQL)
PLAIN_INSTANCE = b"TVOcm{}"


def packed_instance(stored: bytes) -> bytes | None:
    """temporal_rows.instance as stored: NULL for PLAIN_INSTANCE."""
    return None if stored == PLAIN_INSTANCE else stored


# A DateTime value equal to the row's own key time in whole seconds (QuantumLeap's TimeInstant: the
# observedAt of every attribute of the notified entity, and an attribute of its own) is stored as the
# empty text, which no JSON text is, and read back from key_us (KEY_DATETIME_SQL of each store):
# about 52 bytes of such a row (hist17). Only from 1970 to 9999, where SQLite's and Python's
# formatting agree.
KEY_DATETIME = ""
_MAX_KEY_US = 253_402_300_800_000_000  # 10000-01-01


@functools.lru_cache(maxsize=4096)
def key_datetime_json(key_us: int) -> str | None:
    """The value_json of a DateTime value at `key_us` in whole seconds, as orjson writes it."""
    if key_us < 0 or key_us >= _MAX_KEY_US or key_us % 1_000_000:
        return None
    stamp = datetime.fromtimestamp(key_us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'{{"@type":"DateTime","@value":"{stamp}"}}'


def packed_value(row: HistoryRow) -> str | None:
    """temporal_rows.value_json as stored: model.packed_value_json, and KEY_DATETIME for a DateTime value
    that is the row's key time."""
    text = packed_value_json(row)
    if text is not None and row.value_num is None and text[:1] == "{" and text == key_datetime_json(row.key_us):
        return KEY_DATETIME
    return text


TIME_COLUMNS = {"observedAt": "observed_us", "createdAt": "created_us", "modifiedAt": "modified_us", "deletedAt": "deleted_us"}


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Rows whose `column` is in [start, end) (either bound optional); column None: every row, ordered by key."""

    column: str | None = None
    start: int | None = None
    end: int | None = None


def time_clauses(rng: TimeRange, param: Callable[[int], str], exprs: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """The WHERE clauses of a time range on instance rows, and the SQL of the time they are ordered by.

    `param` places a bound and returns its placeholder ("?", "$3"); `exprs` maps a time column to the SQL
    that reads it where the column is not stored as is (temporal_rows: a NULL standing for another column).
    observedAt is read on key_us, equal to it on every row that has one: the (sid, key) index serves.
    """
    column = rng.column or "key_us"
    clauses: list[str] = []
    if rng.column is not None:
        clauses.append(f"{(exprs or {}).get(column, column)} IS NOT NULL")
    time = "key_us" if column in ("key_us", "observed_us") else (exprs or {}).get(column, column)
    if rng.start is not None:
        clauses.append(f"{time} >= {param(rng.start)}")
    if rng.end is not None:
        clauses.append(f"{time} < {param(rng.end)}")
    return clauses, time


@dataclass(frozen=True, slots=True)
class InstanceHit:
    """A stored instance found by a query."""

    iid: int
    entity_id: str
    attr: str
    time_us: int
    stored: bytes  # the stored row's document and the columns that rebuild it (model.rebuild_instance)
    value_json: str | None
    observed_us: int | None
    created_us: int | None
    modified_us: int | None
    deleted_us: int | None

    @property
    def instance(self) -> bytes:
        """The instance document, orjson.dumps of it (rebuilt on each access)."""
        return rebuild_instance(self.stored, self.value_json, self.observed_us, self.created_us, self.modified_us,
                                self.deleted_us)

    def value(self) -> tuple[bool, Any]:
        """Whether the instance is a deletion (deletedAt), and its value member, without the document."""
        return stored_value(self.stored, self.value_json)


class Bucket(NamedTuple):
    """Aggregates of one attribute of one entity over one period (`period_no` counts periods from the origin).

    A named tuple: an hourly aggregation of a month over a thousand entities makes 744,000 of them.
    """

    entity_id: str
    attr: str
    period_no: int  # not `index`: a tuple's method
    total: int
    distinct: int
    numeric: int
    sum: float | None
    min: float | None
    max: float | None
    sumsq: float | None


class HistoryStorage(ABC):
    """Temporal rows of one broker database; all methods are coroutines."""

    tables: Schema
    """Its tables, for its database's migration runner (storage.migrate)."""

    groups_writes: bool = False
    """Whether concurrent writes are already committed together by the storage itself (SQLite's writer thread
    groups the jobs queued on it): a caller then need not group them (quantumleap.ingest.NotifyWriter)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if absent."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def load_cursor(self, consumer: str) -> int:
        """The last seq a consumer applied (0 when never)."""

    @abstractmethod
    async def apply(self, consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        """Store rows (ignoring ones already there) and entities, and move the cursor to `seq`, atomically."""

    @abstractmethod
    async def write(self, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        """Store rows and entities written directly through the temporal API (idempotent too)."""

    @abstractmethod
    async def write_added(self, tenant: str, entities: Sequence[tuple[str, Sequence[str]]], rows: Sequence[HistoryRow],
                          paths: Mapping[str, str], *, current: str | None = None) -> bool:
        """Store rows, the entities (id, types) with their types added to those stored (the stored ones first, then
        the new ones in order; an entity given twice adds up, deletedAt cleared) and their service paths
        (`paths`, entity id -> path; an entity without one keeps its stored path), in one transaction
        (/v2/notify, issue 16). With `current`, the name of a change-log consumer, only if its saved cursor
        is at the store's change log's last seq (history holds every change committed before this write):
        False and nothing written otherwise. True once written."""

    @abstractmethod
    async def entities(self, tenant: str, *, ids: Sequence[str] | None = None,
                       types_any: Sequence[str] | None = None) -> list[EntityRow]:
        """Every entity with history in the tenant, by id; only those `ids`, only those with one of `types_any`."""

    @abstractmethod
    async def entity(self, tenant: str, entity_id: str) -> EntityRow | None:
        """One entity with history, or None."""

    @abstractmethod
    async def instances(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, per_attr: int, newest: bool,
        *, total: int | None = None, datasets: Sequence[str] | None = None,
    ) -> list[InstanceHit]:
        """At most `per_attr` instances per (entity, attribute) in the range, the oldest (or `newest`) first chosen.

        With `total`, of those only the `total` oldest (or newest) over every
        (entity, attribute) together. `datasets` keeps the instances of these
        datasetIds ('' the default instance). Returned by entity, attribute, time.
        """

    @abstractmethod
    async def aggregate(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, origin_us: int, period_us: int,
        *, datasets: Sequence[str] | None = None, distinct: bool = True,
    ) -> list[Bucket]:
        """Aggregates per (entity, attribute, period of `period_us` counted from `origin_us`; 0 means one period).

        Without `distinct` (no distinctCount wanted: Bucket.distinct is then 0) the
        hourly rollups answer where the periods allow (broker.temporal.rollup).
        """

    @abstractmethod
    async def rollup(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        origin_us: int = 0, period_us: int = 0, *, unit: str | None = None, datasets: Sequence[str] | None = None,
    ) -> list[RollupBucket] | None:
        """Aggregates from the hourly rollups, None when they cannot serve (broker.temporal.rollup.plan).

        Buckets are periods of `period_us` from `origin_us` (0: one period), or,
        with `unit` (hour, day, month, year), the UTC calendar periods, each given
        by its start. By entity, attribute, bucket.
        """

    @abstractmethod
    async def impure_attrs(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> set[str]:
        """Attributes with a value instance that is not a JSON number in the hours `rng` touches (from the
        rollups' partial index: a superset at the range's partial hours, never missing one)."""

    @abstractmethod
    async def series(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> set[tuple[str, str]]:
        """(entity, attribute) pairs with at least one instance (of `attrs`, of `datasets`) in the range."""

    @abstractmethod
    async def first_time(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> int | None:
        """The least time (of the range's column) of the matching instances, None when there are none."""

    @abstractmethod
    async def delete_entity(self, tenant: str, entity_id: str) -> bool:
        """Forget an entity's whole history; whether it had any."""

    @abstractmethod
    async def delete_instances(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> int:
        """Forget the instances of these entities whose key time is in the range; rows deleted."""

    @abstractmethod
    async def set_service_paths(self, tenant: str, paths: Mapping[str, str]) -> None:
        """Record the FIWARE service path of entities that have history (entity id -> path)."""

    @abstractmethod
    async def service_paths(self, tenant: str) -> dict[str, str]:
        """The recorded service path of every entity of the tenant that has one."""

    @abstractmethod
    async def delete_attr(self, tenant: str, entity_id: str, attr: str, dataset_id: str | None) -> int:
        """Forget an attribute's history (one datasetId, '' the default, None all); rows deleted."""

    @abstractmethod
    async def get_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bytes | None:
        """One stored instance, or None."""

    @abstractmethod
    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        """Forget one stored instance; whether it existed."""

    @abstractmethod
    async def replace_instance(self, tenant: str, entity_id: str, attr: str, iid: int, row: HistoryRow) -> bool:
        """Overwrite one stored instance (its value and members); whether it existed."""


def added_types(entities: Sequence[tuple[str, Sequence[str]]]) -> dict[str, list[str]]:
    """Each entity's types, an entity given more than once with its types added up in order (write_added)."""
    out: dict[str, list[str]] = {}
    for eid, types in entities:
        have = out.get(eid)
        if have is None:
            out[eid] = list(types)
        else:
            have.extend(t for t in types if t not in have)
    return out


def merged_types(stored: Sequence[str] | None, added: Sequence[str]) -> list[str]:
    """The stored types, then the added ones not among them (write_added)."""
    if stored is None:
        return list(added)
    return [*stored, *(t for t in added if t not in stored)]
