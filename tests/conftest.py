"""Shared fixtures: reference files from ../shared and real-service gates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.pg import throwaway_schema

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
REFERENCE = SHARED / "reference"
NGSI_LD_REFERENCE = REFERENCE / "ngsi-ld"
SDM_REFERENCE = REFERENCE / "smart-data-models"


def _reference(path: Path) -> Path:
    if not path.exists():
        msg = f"reference file {path} is missing: the tests read ../shared/reference beside the project"
        if services.in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def ngsi_ld_reference() -> Path:
    """The folder holding the NGSI-LD specification text, contexts and OpenAPI."""
    return _reference(NGSI_LD_REFERENCE)


@pytest.fixture(scope="session")
def sdm_reference() -> Path:
    """The folder holding the official Smart Data Models schemas and contexts."""
    return _reference(SDM_REFERENCE)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def postgres_dsn() -> str:
    """DSN of a real PostgreSQL; skips (or fails under CI=true) when absent."""
    return services.require_postgres()


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(dsn, name) of a throwaway PostgreSQL schema (not created), dropped afterwards (tests/pg.py)."""
    module = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with throwaway_schema(f"test_{module[:20]}") as dsn_and_schema:
        yield dsn_and_schema


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of a real MQTT broker; skips (or fails under CI=true) when absent."""
    return services.require_mqtt()
