"""The database URLs the platform takes, read once.

    sqlite:///data/broker.db                   a file, relative to the working directory
    sqlite:////var/lib/broker.db               an absolute path (four slashes, as in SQLAlchemy)
    sqlite://:memory:                          a private in-memory database (tests, trials)
    postgresql://user@host:5432/db?schema=s    PostgreSQL (also postgres://); `schema` defaults to public
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["DatabaseUrl", "Kind", "parse_database_url"]

Kind = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A database: a SQLite `path` (or ':memory:'), or a PostgreSQL `dsn` (no `schema` parameter) and `schema`."""

    kind: Kind
    path: str = ""
    dsn: str = ""
    schema: str = "public"

    @classmethod
    def sqlite(cls, path: str) -> DatabaseUrl:
        """A SQLite file (or ':memory:')."""
        return cls("sqlite", path=path)

    @classmethod
    def postgresql(cls, dsn: str, schema: str = "public") -> DatabaseUrl:
        """A PostgreSQL schema."""
        return cls("postgresql", dsn=dsn, schema=schema)


def parse_database_url(url: str, what: str = "database") -> DatabaseUrl:
    """The database `url` names; ValueError (naming `what`: store, registry, ...) for any other URL."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        path = path.removeprefix("/") if path != "/:memory:" else ":memory:"
        if not path:
            raise ValueError(f"no file in {what} URL {url!r}")
        return DatabaseUrl.sqlite(path)
    if url.startswith(("postgresql:", "postgres:")):
        # asyncpg would pass an unknown query parameter on as a server setting: take `schema` out
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), "public")
        dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
        return DatabaseUrl.postgresql(dsn, schema)
    raise ValueError(f"unsupported {what} URL {url!r}: use sqlite:///path/file.db or postgresql://...")
