"""Agent fixtures: a registry on each store (isolated PostgreSQL schema per test) and the provisioning API on a real socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest
import uvicorn

from agents.metrics import Metrics
from agents.provisioning import create_provisioning_app
from agents.provisioning.hooks import Hooks
from agents.registry import open_registry
from agents.settings import AgentSettings
from tests.pg import store_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry URL on each store; the PostgreSQL one in a schema of this test alone."""
    with store_url(request.param, tmp_path / "agents.db", "test_agents") as url:
        yield url


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

    def __enter__(self) -> Self:
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
