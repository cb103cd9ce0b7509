"""Storage of the embedded broker: the interface and `open_store`, which picks an implementation.

    sqlite:///data/broker.db        a file, relative to the working directory
    sqlite:////var/lib/broker.db    an absolute path (four slashes, as in SQLAlchemy)
    sqlite://:memory:               a private in-memory database (tests, trials)
    postgresql://user@host:5432/db?schema=broker   PostgreSQL; `schema` defaults to public

The URL is read by storage.urls; the implementation is chosen in STORES (storage.backends), on the
database backend (storage.database) whose connections history and subscription storage share.
"""

from __future__ import annotations

from broker.store.base import (
    BBox,
    Change,
    Doc,
    EntityFilter,
    ModifyFn,
    QueryPage,
    Store,
    StoredEntity,
    TypeSummary,
)
from broker.store.postgres import PostgresStore
from broker.store.sqlite import SQLiteStore
from storage.backends import Backends
from storage.database import open_database
from storage.urls import parse_database_url

__all__ = [
    "STORES",
    "BBox",
    "Change",
    "Doc",
    "EntityFilter",
    "ModifyFn",
    "QueryPage",
    "Store",
    "StoredEntity",
    "TypeSummary",
    "open_store",
]


STORES: Backends[Store] = Backends("store", sqlite=lambda db: SQLiteStore(db.path, db=db),
                                   postgresql=lambda db: PostgresStore(db.dsn, schema=db.schema, db=db))
"""The entity store implementations by database kind."""

def open_store(url: str) -> Store:
    """The store a URL names, on a database of its own, not yet opened (await `open()` on it)."""
    return STORES.open(open_database(parse_database_url(url, "store")))
