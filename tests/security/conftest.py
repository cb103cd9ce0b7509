"""A platform with authentication on, over real sockets, on each store: broker (NGSI-LD + /v2), history port, provisioning.

Credentials (an API key file): `aix` may write the tenant aix, `aix-reader`
only read it, `aix-admin` administer it, `marseille` write marseille, `ops`
administer every tenant. A notification receiver records what reaches it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from agents import ops as agent_ops
from agents.metrics import Metrics
from agents.provisioning import create_provisioning_app
from agents.registry import open_registry
from agents.settings import AgentSettings
from broker.app import create_app
from broker.quantumleap import create_quantumleap_app
from broker.settings import BrokerSettings
from broker.state import state_source
from tests import services
from tests.pg import drop_schema, schema_name
from tests.web.conftest import Keys, ServedTogether, free_port
from web.auth import Authenticator
from web.auth.apikeys import ApiKeys


class Receiver:
    """Records notifications (tenant header, body) and wakes waiters."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with receiver.cond:
                    receiver.received.append((self.headers.get("NGSILD-Tenant"), body))
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Any, timeout: float = 20) -> list[tuple[str | None, dict[str, Any]]]:
        with self.cond:
            if not self.cond.wait_for(lambda: any(predicate(t, b) for t, b in self.received), timeout):
                raise AssertionError(f"no such notification within {timeout}s; got {self.received}")
            return list(self.received)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Platform:
    broker: str
    history: str
    provisioning: str
    keys: dict[str, str]
    receiver: Receiver
    data: Path
    store: str

    def client(self, who: str | None, base: str | None = None, **headers: str) -> httpx.Client:
        auth = {"X-API-Key": self.keys[who]} if who else {}
        named = {k.replace("_", "-"): v for k, v in headers.items()}  # NGSILD_Tenant= is the NGSILD-Tenant header
        return httpx.Client(base_url=base or self.broker, headers={**auth, **named}, timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp(f"secure-{request.param}")
    schemas: list[str] = []
    if request.param == "sqlite":
        store_url, registry_url = f"sqlite:///{data / 'broker.db'}", f"sqlite:///{data / 'agents.db'}"
    else:
        dsn = services.require_postgres()
        schemas = [schema_name("sec_broker"), schema_name("sec_agents")]
        store_url, registry_url = f"{dsn}?schema={schemas[0]}", f"{dsn}?schema={schemas[1]}"
    keys = Keys(data)
    for name, grants in (("aix", ["aix:write"]), ("aix-reader", ["aix:read"]), ("aix-admin", ["aix:admin"]),
                         ("marseille", ["marseille:write"]), ("ops", ["*:admin"])):
        keys.add(name, *grants)
    authenticator = Authenticator(enabled=True, api_keys=ApiKeys.load(keys.path))
    port = free_port()
    settings = BrokerSettings(host="127.0.0.1", port=port, data_dir=data, store_url=store_url)
    broker_app = create_app(settings, authenticator=authenticator)
    history_app = create_quantumleap_app(state_source(broker_app), authenticator=authenticator)
    registry = open_registry(registry_url)
    agent_settings = AgentSettings(data_dir=data, registry_url=registry_url)
    provisioning_app = create_provisioning_app(agent_settings, registry, Metrics(), own_registry=True)
    agent_ops.wire_provisioning(provisioning_app, SimpleNamespace(registry=registry, outbox=None, mqtt=None),
                                authenticator)
    receiver = Receiver()
    try:
        with ServedTogether((broker_app, "on", port), (history_app, "off", None), (provisioning_app, "on", None)) as urls:
            broker_url, history_url, provisioning_url = urls
            yield Platform(broker_url, history_url, provisioning_url, keys.keys, receiver, data, request.param)
    finally:
        receiver.close()
        for schema in schemas:
            drop_schema(schema)
