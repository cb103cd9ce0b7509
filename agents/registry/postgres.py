"""The registry on PostgreSQL (production), in one schema reached through the search_path of its pool."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from agents.registry.base import INDEXES, MIGRATIONS, SCHEMA, Duplicate, Registry
from storage.database import PostgresDatabase
from storage.migrate import Schema
from storage.urls import DatabaseUrl

__all__ = ["PostgresRegistry"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PLACEHOLDER = re.compile(r"\?")


def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


async def _migrate(conn: asyncpg.Connection) -> None:
    """The registry's tables, in one transaction of the migration runner (storage.migrate)."""
    for statement in SCHEMA:
        await conn.execute(statement.format(serial="BIGSERIAL"))
    for table, column, kind in MIGRATIONS:
        await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    for statement in INDEXES:
        await conn.execute(statement)


class PostgresRegistry(Registry):
    """The registry's tables in a schema, through the schema's pool (storage.database)."""

    tables = Schema("registry", postgres=_migrate)

    def __init__(self, dsn: str, *, schema: str = "public", min_size: int = 1, max_size: int = 4,
                 db: PostgresDatabase | None = None) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._db = db if db is not None else PostgresDatabase(DatabaseUrl.postgresql(dsn, schema),
                                                               min_size=min_size, max_size=max_size)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        await self._db.open([self.tables])
        self._pool = self._db.pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool = None
            await self._db.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("registry is not open")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows = await self.pool.fetch(_numbered(sql.replace("LIMIT -1", "LIMIT ALL")), *args)
        return [tuple(r) for r in rows]

    async def _execute(self, sql: str, *args: Any) -> int:
        try:
            status = await self.pool.execute(_numbered(sql), *args)
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from None
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0
