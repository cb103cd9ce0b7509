"""The one migration runner: every table owner's schema steps, applied when its database opens.

Each owner of tables (the entity store, history, subscription storage, the agents' registry) declares a
`Schema`: its name and one step per database kind. `storage.database.Database.open` runs the steps of the
schemas it has not applied yet, in the order given, on one connection, before anything else uses the
database; a step is idempotent (CREATE ... IF NOT EXISTS, or versions it records itself: the entity store
keeps its numbered versions in `schema_version`), so an existing database of any earlier layout opens.

A step runs in one transaction the runner opens (SQLite BEGIN IMMEDIATE, PostgreSQL a transaction block),
unless the schema says `own_transactions` (the entity store, which commits each version on its own).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Schema", "migrate_postgres", "migrate_sqlite"]

SQLiteStep = Callable[[sqlite3.Connection], object]
PostgresStep = Callable[[Any], Awaitable[object]]
"""A step on an asyncpg.Connection (kept Any so this module imports without asyncpg)."""
SearchPath = Callable[[Any], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one owner: a step per database kind (None: nothing to create there).

    `search_path` (PostgreSQL) names a further schema the shared connections must see after the
    database's own, asked once the steps have run (the entity store: where PostGIS lives).
    """

    name: str
    sqlite: SQLiteStep | None = None
    postgres: PostgresStep | None = None
    own_transactions: bool = False
    search_path: SearchPath | None = None


def migrate_sqlite(conn: sqlite3.Connection, schemas: Sequence[Schema]) -> None:
    """Run the SQLite steps of `schemas` in order on an autocommit connection."""
    for schema in schemas:
        if schema.sqlite is None:
            continue
        if schema.own_transactions:
            schema.sqlite(conn)
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            schema.sqlite(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


async def migrate_postgres(conn: Any, schemas: Sequence[Schema]) -> list[str]:
    """Run the PostgreSQL steps of `schemas` in order; return the further schemas their `search_path` name."""
    extra: list[str] = []
    home = await conn.fetchval("SELECT current_setting('search_path')")
    for schema in schemas:
        if schema.postgres is not None:
            if schema.own_transactions:
                await schema.postgres(conn)
            else:
                async with conn.transaction():
                    await schema.postgres(conn)
        if schema.search_path is not None:
            path = await schema.search_path(conn)
            if path and path not in extra:
                extra.append(path)
        # a step may have widened the search_path (the store puts PostGIS's schema on it): the next sees its own
        await conn.execute("SELECT set_config('search_path', $1, false)", home)
    return extra
