"""The device registry: service groups, devices and dead letters, on SQLite (default) or PostgreSQL.

    sqlite:///data/agents.db                 a file (relative), sqlite:////abs/path.db, sqlite://:memory:
    postgresql://user@host/db?schema=agents  PostgreSQL; `schema` defaults to public

The URL is read by storage.urls (the broker's store reads it the same way); the implementation is chosen in
REGISTRIES (storage.backends).
"""

from __future__ import annotations

from agents.registry.base import DeadLetter, Duplicate, Page, Registry
from agents.registry.postgres import PostgresRegistry
from agents.registry.sqlite import SQLiteRegistry
from storage.backends import Backends
from storage.urls import parse_database_url

__all__ = ["REGISTRIES", "DeadLetter", "Duplicate", "Page", "Registry", "open_registry"]


REGISTRIES: Backends[Registry] = Backends("registry", sqlite=lambda db: SQLiteRegistry(db.path),
                                         postgresql=lambda db: PostgresRegistry(db.dsn, schema=db.schema))
"""The registry implementations by database kind."""

def open_registry(url: str) -> Registry:
    """The registry a URL names, not yet opened (await ``open()`` on it)."""
    return REGISTRIES.open(parse_database_url(url, "registry"))
