"""Storage of the embedded broker: the interface and `open_store`, which picks an implementation.

    sqlite:///data/broker.db        a file, relative to the working directory
    sqlite:////var/lib/broker.db    an absolute path (four slashes, as in SQLAlchemy)
    sqlite://:memory:               a private in-memory database (tests, trials)
    postgresql://user@host:5432/db?schema=broker   PostgreSQL; `schema` defaults to public
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

__all__ = [
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


def open_store(url: str) -> Store:
    """The store a URL names, not yet opened (await `open()` on it)."""
    if url.startswith("sqlite:"):
        from broker.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite:").removeprefix("//")
        path = path.removeprefix("/") if path != "/:memory:" else ":memory:"
        if not path:
            raise ValueError(f"no file in store URL {url!r}")
        return SQLiteStore(path)
    if url.startswith(("postgresql:", "postgres:")):
        from broker.store.postgres import PostgresStore

        # asyncpg would pass an unknown query parameter on as a server setting: take `schema` out
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), "public")
        dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
        return PostgresStore(dsn, schema=schema)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///path/file.db or postgresql://...")
