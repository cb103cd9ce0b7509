"""The real broker on a real socket: uvicorn in a background thread, once per store per test session.

`broker_url` is parametrised over the two stores: "sqlite" (a file in a
temporary folder) and "postgres" (a schema of its own on the test
PostgreSQL, dropped afterwards, so concurrent runs never meet). Tests keep
out of each other's way with a fresh tenant each (`tenant`, sent by the
`client` fixture) rather than a fresh broker, which keeps the suite fast.
`context_server` serves JSON-LD @context documents from a local
http.server thread, as remote contexts would be served.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

import httpx
import pytest
import uvicorn

from bench.procs import free_port
from broker.app import create_app
from broker.settings import BrokerSettings
from tests.pg import store_url

API = "/ngsi-ld/v1"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"




class RunningBroker:
    """A broker served by uvicorn in a daemon thread."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.url = f"http://{settings.host}:{settings.port}"
        config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="broker", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the broker did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def broker_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running broker on one store (sqlite or postgres)."""
    data = tmp_path_factory.mktemp(f"broker-{request.param}")
    with store_url(request.param, data / "broker.db", "test_api") as url:
        settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data, store_url=url,
                                  max_limit=100, context_timeout=2.0)
        with RunningBroker(settings) as broker:
            yield broker.url


@pytest.fixture
def tenant() -> str:
    """A tenant of this test alone."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(broker_url: str, tenant: str) -> Iterator[httpx.Client]:
    """An HTTP client on the broker's API root, writing to and reading from this test's tenant."""
    with httpx.Client(base_url=broker_url + API, headers={"NGSILD-Tenant": tenant}, timeout=30) as c:
        yield c


@pytest.fixture
def raw_client(broker_url: str) -> Iterator[httpx.Client]:
    """An HTTP client on the broker's root with no tenant header (the default tenant)."""
    with httpx.Client(base_url=broker_url, timeout=30) as c:
        yield c


class _ContextHandler(BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, Any]] = {}
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        doc = self.documents.get(self.path)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if doc is None:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/ld+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class ContextServer:
    """Serves @context documents at http://127.0.0.1:<port>/<name>."""

    def __init__(self) -> None:
        self.handler = type("Handler", (_ContextHandler,), {"documents": {}, "hits": {}})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, terms: dict[str, Any]) -> str:
        """Serve a new context document with these terms; its URL."""
        path = f"/{uuid.uuid4().hex}.jsonld"
        self.handler.documents[path] = {"@context": terms}
        return self.base + path

    def hits(self, url: str) -> int:
        return int(self.handler.hits.get(url.removeprefix(self.base), 0))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def context_server() -> Iterator[ContextServer]:
    """A local HTTP server for remote @context documents."""
    server = ContextServer()
    yield server
    server.close()


def link(url: str) -> dict[str, str]:
    """A JSON-LD Link header naming `url` as the @context."""
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def new_id(kind: str = "Thing") -> str:
    """A fresh entity id."""
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex[:10]}"


