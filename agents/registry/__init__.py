"""The device registry: service groups, devices and dead letters, on SQLite (default) or PostgreSQL.

    sqlite:///data/agents.db                 a file (relative), sqlite:////abs/path.db, sqlite://:memory:
    postgresql://user@host/db?schema=agents  PostgreSQL; `schema` defaults to public
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agents.registry.base import DeadLetter, Duplicate, Page, Registry

__all__ = ["DeadLetter", "Duplicate", "Page", "Registry", "open_registry"]


def open_registry(url: str) -> Registry:
    """The registry a URL names, not yet opened (await ``open()`` on it)."""
    if url.startswith("sqlite:"):
        from agents.registry.sqlite import SQLiteRegistry

        path = url.removeprefix("sqlite:").removeprefix("//")
        path = path.removeprefix("/") if path != "/:memory:" else ":memory:"
        if not path:
            raise ValueError(f"no file in registry URL {url!r}")
        return SQLiteRegistry(path)
    if url.startswith(("postgresql:", "postgres:")):
        from agents.registry.postgres import PostgresRegistry

        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), "public")
        dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
        return PostgresRegistry(dsn, schema=schema)
    raise ValueError(f"unsupported registry URL {url!r}: use sqlite:///path/file.db or postgresql://...")
