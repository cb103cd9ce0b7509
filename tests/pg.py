"""Throwaway PostgreSQL schemas for tests, in one place.

Every test that needs PostgreSQL works in a schema of its own (a random name
under a prefix that says which test made it), dropped afterwards, so runs
side by side never meet. `store_url` gives the database URL of either store
for the tests parametrised over "sqlite" and "postgres".
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from tests import services


def schema_name(prefix: str) -> str:
    """A fresh schema name: `<prefix>_<12 hex digits>`."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def _execute(statement: str, dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def acreate_schema(schema: str, dsn: str = services.POSTGRES_DSN) -> None:
    """Create the (empty) schema."""
    await _execute(f'CREATE SCHEMA "{schema}"', dsn)


async def adrop_schema(schema: str, dsn: str = services.POSTGRES_DSN) -> None:
    """Drop the schema and everything in it, if it is there."""
    await _execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', dsn)


def drop_schema(schema: str, dsn: str = services.POSTGRES_DSN) -> None:
    """`adrop_schema` from synchronous code (a fixture's teardown)."""
    asyncio.run(adrop_schema(schema, dsn))


@contextmanager
def throwaway_schema(prefix: str) -> Iterator[tuple[str, str]]:
    """(dsn, schema name) on the test PostgreSQL (skips, or fails under CI=true, without it); dropped on exit.

    The schema itself is not created: the stores create theirs on open.
    """
    dsn = services.require_postgres()
    schema = schema_name(prefix)
    try:
        yield dsn, schema
    finally:
        drop_schema(schema, dsn)


@contextmanager
def store_url(kind: str, sqlite_file: Path, prefix: str) -> Iterator[str]:
    """The database URL of one store: "sqlite" (the file) or "postgres" (a throwaway schema, dropped on exit)."""
    if kind == "sqlite":
        yield f"sqlite:///{sqlite_file}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown store {kind!r}")
    with throwaway_schema(prefix) as (dsn, schema):
        yield f"{dsn}?schema={schema}"
