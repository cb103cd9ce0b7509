"""storage.urls: the one reading of the database URLs the broker's store and the agents' registry take."""

from __future__ import annotations

import pytest

from storage.urls import DatabaseUrl, parse_database_url


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///data/broker.db", "data/broker.db"),
    ("sqlite:////var/lib/broker.db", "/var/lib/broker.db"),
    ("sqlite://:memory:", ":memory:"),
])
def test_sqlite_urls_name_a_file_or_memory(url: str, path: str) -> None:
    assert parse_database_url(url) == DatabaseUrl("sqlite", path=path)


def test_postgresql_url_takes_the_schema_out_of_the_dsn_and_keeps_the_other_parameters() -> None:
    db = parse_database_url("postgresql://u@h:5432/db?schema=broker_1&sslmode=disable")
    assert db == DatabaseUrl("postgresql", dsn="postgresql://u@h:5432/db?sslmode=disable", schema="broker_1")


def test_postgres_scheme_and_default_schema() -> None:
    assert parse_database_url("postgres://u@h/db") == DatabaseUrl.postgresql("postgres://u@h/db", "public")


def test_sqlite_url_without_a_file_is_refused_naming_what_it_was_for() -> None:
    with pytest.raises(ValueError, match="no file in registry URL"):
        parse_database_url("sqlite://", "registry")


@pytest.mark.parametrize("url", ["mongodb://localhost", "mysql://x", "data/broker.db", ""])
def test_other_urls_are_refused_naming_what_it_was_for(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        parse_database_url(url, "store")
