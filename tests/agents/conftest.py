"""Agent fixtures: a registry on each store (isolated PostgreSQL schema per test) and the provisioning API on a real socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from agents.metrics import Metrics
from agents.provisioning import create_provisioning_app
from agents.provisioning.hooks import Hooks
from agents.registry import open_registry
from agents.settings import AgentSettings
from tests import services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_schema(dsn: str, schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry URL on each store; the PostgreSQL one in a schema of this test alone."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agents.db'}"
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"test_agents_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        _drop_schema(services.POSTGRES_DSN, schema)


class RunningAgent:
    """The provisioning app served by uvicorn in a daemon thread."""

    def __init__(self, registry_url: str, hooks: Hooks | None = None) -> None:
        self.port = free_port()
        self.settings = AgentSettings(provisioning_port=self.port, registry_url=registry_url)
        self.metrics = Metrics()
        self.registry = open_registry(registry_url)
        app = create_provisioning_app(self.settings, self.registry, self.metrics, own_registry=True, hooks=hooks)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="agent-provisioning", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RunningAgent":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the provisioning API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def agent(registry_url: str) -> Iterator[RunningAgent]:
    with RunningAgent(registry_url) as running:
        yield running


@pytest.fixture
def iota(agent: RunningAgent) -> Iterator[httpx.Client]:
    """A client on the provisioning API with the headers the FIWARE tutorials send."""
    headers = {"fiware-service": "openiot", "fiware-servicepath": "/"}
    with httpx.Client(base_url=agent.url, headers=headers, timeout=30) as client:
        yield client
