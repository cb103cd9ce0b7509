"""The device registry: service groups, devices and dead letters, on SQLite (default) or PostgreSQL.

    sqlite:///data/agents.db                 a file (relative), sqlite:////abs/path.db, sqlite://:memory:
    postgresql://user@host/db?schema=agents  PostgreSQL; `schema` defaults to public

The URL is read by storage.urls (the broker's store reads it the same way); the implementation is chosen in
REGISTRIES (storage.backends).
"""

from __future__ import annotations

from typing import Any

from agents.registry.base import DeadLetter, Duplicate, Page, Registry
from agents.registry.postgres import PostgresRegistry
from agents.registry.sqlite import SQLiteRegistry
from storage.backends import Backends
from storage.database import open_database
from storage.urls import Kind, parse_database_url

__all__ = ["REGISTRIES", "DeadLetter", "Duplicate", "Page", "Registry", "open_registry"]


REGISTRIES: Backends[Registry] = Backends("registry", sqlite=lambda db: SQLiteRegistry(db.path, db=db),
                                         postgresql=lambda db: PostgresRegistry(db.dsn, schema=db.schema, db=db))
"""The registry implementations by database kind."""

_CONNECTIONS: dict[Kind, dict[str, Any]] = {"sqlite": {"pragmas": ("busy_timeout=5000",)},
                                            "postgresql": {"min_size": 1, "max_size": 4}}
"""The registry's own connection settings (storage.database): a short SQLite busy wait, a pool of 1 to 4."""


def open_registry(url: str) -> Registry:
    """The registry a URL names, not yet opened (await ``open()`` on it)."""
    db = parse_database_url(url, "registry")
    return REGISTRIES.open(open_database(db, **_CONNECTIONS[db.kind]))
