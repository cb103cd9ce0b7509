"""Implementations registered by database kind: what replaces `isinstance(store, SQLiteStore)` choices.

    STORES: Backends[Store] = Backends("store", sqlite=lambda db: SQLiteStore(db.path, db=db),
                                       postgresql=lambda db: PostgresStore(db.dsn, schema=db.schema, db=db))
    store = STORES.open(open_database(parse_database_url(url, "store")))

Each owner (the entity store, history, subscription storage, the agents' registry) keeps its own registry
next to its interface; a new database kind is one registration per owner. A factory receives the database
backend (storage.database) of its kind, whose connections the owners built on it share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from storage.database import Database, PostgresDatabase, SQLiteDatabase
from storage.urls import Kind

__all__ = ["Backends"]

T = TypeVar("T")


class Backends(Generic[T]):
    """The implementations of one interface (`what`: "store", "history", ...) by database kind."""

    def __init__(self, what: str, *, sqlite: Callable[[SQLiteDatabase], T] | None = None,
                 postgresql: Callable[[PostgresDatabase], T] | None = None) -> None:
        self.what = what
        self._factories: dict[Kind, Callable[[Any], T]] = {}
        if sqlite is not None:
            self.register("sqlite", sqlite)
        if postgresql is not None:
            self.register("postgresql", postgresql)

    def register(self, kind: Kind, factory: Callable[[Any], T]) -> None:
        """Add the factory of the implementation for databases of `kind` (one per kind); it is given the
        Database of that kind (storage.database: SQLiteDatabase, PostgresDatabase)."""
        if kind in self._factories:
            raise ValueError(f"a {self.what} for {kind} is registered already")
        self._factories[kind] = factory

    @property
    def kinds(self) -> frozenset[Kind]:
        """The database kinds with an implementation."""
        return frozenset(self._factories)

    def open(self, db: Database) -> T:
        """The implementation on `db`, built (not yet opened); ValueError if its kind has none."""
        factory = self._factories.get(db.kind)
        if factory is None:
            raise ValueError(f"no {self.what} for {db.kind} databases")
        return factory(db)
