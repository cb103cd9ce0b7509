"""storage.backends: implementations chosen by database kind, and the registries the broker and agents keep."""

from __future__ import annotations

import pytest

from agents.registry import REGISTRIES, open_registry
from agents.registry.postgres import PostgresRegistry
from agents.registry.sqlite import SQLiteRegistry
from broker.store import STORES, open_store
from broker.subscriptions.runtime import STORAGES, open_storage
from broker.subscriptions.storage_postgres import PostgresSubscriptionStorage
from broker.subscriptions.storage_sqlite import SQLiteSubscriptionStorage
from broker.temporal.postgres import PostgresHistory
from broker.temporal.runtime import HISTORIES, open_history
from broker.temporal.sqlite import SQLiteHistory
from storage.backends import Backends
from storage.database import open_database
from storage.urls import DatabaseUrl

SQLITE = DatabaseUrl.sqlite("data/b.db")
POSTGRES = DatabaseUrl.postgresql("postgresql://u@h:5432/db?sslmode=disable", "broker_1")


def test_open_builds_the_implementation_registered_for_the_kind() -> None:
    names: Backends[str] = Backends("name", sqlite=lambda db: f"file {db.path}")
    assert names.open(open_database(SQLITE)) == "file data/b.db"
    assert names.kinds == {"sqlite"}


def test_a_kind_without_an_implementation_is_refused_naming_both() -> None:
    names: Backends[str] = Backends("name")
    with pytest.raises(ValueError, match="no name for postgresql databases"):
        names.open(open_database(POSTGRES))


def test_a_kind_is_registered_once() -> None:
    names: Backends[str] = Backends("name", sqlite=lambda db: "a")
    with pytest.raises(ValueError, match="registered already"):
        names.register("sqlite", lambda db: "b")


@pytest.mark.parametrize("registry", [STORES, HISTORIES, STORAGES, REGISTRIES])
def test_every_owner_has_both_kinds(registry: Backends[object]) -> None:
    assert registry.kinds == {"sqlite", "postgresql"}


def test_history_and_subscription_storage_open_in_the_database_of_the_store() -> None:
    sqlite = open_store("sqlite:///data/b.db")
    assert sqlite.database == SQLITE
    history, subs = open_history(sqlite), open_storage(sqlite)
    assert isinstance(history, SQLiteHistory) and history.path == "data/b.db"
    assert isinstance(subs, SQLiteSubscriptionStorage) and subs.path == "data/b.db"
    pg = open_store("postgresql://u@h:5432/db?schema=broker_1&sslmode=disable")
    assert pg.database == POSTGRES
    history, subs = open_history(pg), open_storage(pg)
    assert isinstance(history, PostgresHistory) and (history.dsn, history.schema) == (POSTGRES.dsn, "broker_1")
    assert isinstance(subs, PostgresSubscriptionStorage) and (subs.dsn, subs.schema) == (POSTGRES.dsn, "broker_1")


def test_the_agents_registry_reads_the_same_urls() -> None:
    sqlite = open_registry("sqlite:///data/agents.db")
    assert isinstance(sqlite, SQLiteRegistry) and sqlite.path == "data/agents.db"
    pg = open_registry("postgresql://u@h:5432/db?schema=agents")
    assert isinstance(pg, PostgresRegistry) and (pg.dsn, pg.schema) == ("postgresql://u@h:5432/db", "agents")
