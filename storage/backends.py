"""Implementations registered by database kind: what replaces `isinstance(store, SQLiteStore)` choices.

    STORES: Backends[Store] = Backends("store", sqlite=lambda db: SQLiteStore(db.path),
                                       postgresql=lambda db: PostgresStore(db.dsn, schema=db.schema))
    store = STORES.open(parse_database_url(url, "store"))

Each owner (the entity store, history, subscription storage, the agents' registry) keeps its own registry
next to its interface; a new database kind is one registration per owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from storage.urls import DatabaseUrl, Kind

__all__ = ["Backends"]

T = TypeVar("T")
Factory = Callable[[DatabaseUrl], T]
"""What builds an implementation (not yet opened) for one database."""


class Backends(Generic[T]):
    """The implementations of one interface (`what`: "store", "history", ...) by database kind."""

    def __init__(self, what: str, *, sqlite: Factory[T] | None = None, postgresql: Factory[T] | None = None) -> None:
        self.what = what
        self._factories: dict[Kind, Factory[T]] = {}
        if sqlite is not None:
            self.register("sqlite", sqlite)
        if postgresql is not None:
            self.register("postgresql", postgresql)

    def register(self, kind: Kind, factory: Factory[T]) -> None:
        """Add the factory of the implementation for databases of `kind` (one per kind)."""
        if kind in self._factories:
            raise ValueError(f"a {self.what} for {kind} is registered already")
        self._factories[kind] = factory

    @property
    def kinds(self) -> frozenset[Kind]:
        """The database kinds with an implementation."""
        return frozenset(self._factories)

    def open(self, db: DatabaseUrl) -> T:
        """The implementation for `db`, built (not yet opened); ValueError if its kind has none."""
        factory = self._factories.get(db.kind)
        if factory is None:
            raise ValueError(f"no {self.what} for {db.kind} databases")
        return factory(db)
