"""The broker's middleware layers: switched on they act, switched while serving they follow, off they add no frame.

Issue 16: every coroutine layer between uvicorn and the routes is walked by each
request and by each resume of its task. A layer with nothing to do for a request
(authentication or the access log off, a path that is not /health, a request
without a body, ...) now hands back the wrapped app's own coroutine instead of
awaiting it in one of its own. The settings are still read on every request, so
switching one while serving changes the next request, as before.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from broker.app import create_app
from broker.settings import BrokerSettings
from tests.web.conftest import Keys, ServedTogether, free_port
from web.access_log import AccessLog
from web.auth import Authenticate, Authenticator
from web.auth.apikeys import ApiKeys
from web.auth.policy import BROKER
from web.health import Health
from web.request_limits import RequestLimits
from web.resources import ResourcePaths
from web.tenants import TenantNames

API = "/ngsi-ld/v1"
EID = "urn:ngsi-ld:Layer:1"


class Lines(logging.Handler):
    """Keeps the messages of the access log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Served:
    url: str
    key: str
    app: Any
    lines: Lines

    def access_log(self) -> AccessLog:
        node = self.app.middleware_stack
        while not isinstance(node, AccessLog):
            node = node.app
        return node


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("layers")
    keys = Keys(data)
    keys.add("ops", "*:admin")
    authenticator = Authenticator(enabled=True, api_keys=ApiKeys.load(keys.path))
    port = free_port()
    logger = logging.getLogger("metropole.access")
    lines, level = Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("METROPOLE_ACCESS_LOG", "on")  # read when the stack is built: at start-up
            app = create_app(BrokerSettings(host="127.0.0.1", port=port, data_dir=data,
                                            store_url=f"sqlite:///{data / 'broker.db'}"), authenticator=authenticator)
            with ServedTogether((app, "on", port)) as (url,):
                yield Served(url, keys.keys["ops"], app, lines)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def test_switched_on_layers_act_over_sockets(served: Served) -> None:
    """Fails if a switched-on layer (authentication, access log) or any of the checks in front were dropped."""
    entity = f"{served.url}{API}/entities/{EID}"
    refused = httpx.get(entity)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(entity, headers={"X-API-Key": "not-a-key"}).status_code == 401
    with httpx.Client(headers={"X-API-Key": served.key}) as client:
        assert client.get(entity).status_code == 404  # through to the handler
        assert client.get(entity, headers={"NGSILD-Tenant": "x" * 300}).status_code == 400
        assert client.get(f"{served.url}{API}/entities/urn:a%00b").status_code == 400
        assert _declared_too_large(served.url, served.key).startswith(b"HTTP/1.1 413 ")
        options = client.options(f"{served.url}{API}/entities")
        assert options.status_code == 204 and "POST" in options.headers["allow"]
        assert client.get(f"{served.url}/ready").status_code == 200
    assert httpx.get(f"{served.url}/health").json() == {"status": "pass"}
    logged = "\n".join(served.lines.lines)
    assert f'"GET {API}/entities/{EID}" 401' in logged
    assert f'"GET {API}/entities/{EID}" 404' in logged and "principal=ops" in logged


def _declared_too_large(url: str, key: str) -> bytes:
    """The status line answering a POST whose Content-Length is past the bound (the body is never sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"POST {API}/entities HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"X-API-Key: {key}\r\nContent-Length: 100000000\r\n\r\n".encode())
        return conn.recv(4096).split(b"\r\n", 1)[0] + b"\r\n"


def _logged(served: Served, count: int, timeout: float = 10.0) -> list[str]:
    """The access log's lines once it holds `count` (or after `timeout`): a request's line is written after its
    answer is sent, so the client can read the answer before the line is there (a 2-core CI host showed it)."""
    deadline = time.monotonic() + timeout
    while len(served.lines.lines) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # a line more than `count` (one that should not be) has had time to come too
    return list(served.lines.lines)


def test_layers_follow_their_settings_switched_while_serving(served: Served) -> None:
    entity = f"{served.url}{API}/entities/{EID}"
    authenticator = served.app.state.authenticator
    log = served.access_log()
    try:
        authenticator.enabled = False
        count = len(served.lines.lines)
        assert httpx.get(entity).status_code == 404  # no credential needed any more
        _logged(served, count + 1)  # its line, written after the answer, in before the log is switched off
        log.enabled = False
        before = len(served.lines.lines)
        assert httpx.get(entity).status_code == 404
        authenticator.enabled = True
        assert httpx.get(entity).status_code == 401  # asked again at once
        log.enabled = True
        assert httpx.get(entity).status_code == 401
        lines = _logged(served, before + 1)
        assert len(lines) == before + 1  # no line for the two requests while off
        assert f'"GET {API}/entities/{EID}" 401' in lines[-1]
    finally:
        authenticator.enabled = True
        log.enabled = True


class Inner:
    """An ASGI app that records the awaitable it hands back for each call."""

    def __init__(self) -> None:
        self.returned: list[Any] = []

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        awaitable = object()  # never awaited here: only its identity matters
        self.returned.append(awaitable)
        return awaitable


def _scope(method: str = "GET", path: str = f"{API}/entities/{EID}", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers or [(b"host", b"x")]}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    pass


def _layers(inner: Inner) -> list[Any]:
    return [AccessLog(inner, enabled=False),
            Authenticate(inner, authenticator=Authenticator(), policy=BROKER),
            Health(inner, checks={}),
            TenantNames(inner, render=lambda status, title, detail: (b"", "text/plain")),
            RequestLimits(inner, max_bytes=lambda: 1000),
            ResourcePaths(inner)]


def test_a_layer_with_nothing_to_do_hands_back_the_wrapped_apps_own_awaitable() -> None:
    inner = Inner()
    for layer in _layers(inner):
        scope = _scope(headers=[(b"host", b"x"), (b"ngsild-tenant", b"aix"), (b"content-length", b"0")])
        assert layer(scope, _receive, _send) is inner.returned[-1], type(layer).__name__


def test_a_layer_with_work_to_do_awaits_in_its_own_coroutine() -> None:
    inner = Inner()
    keys = Authenticator(enabled=True)
    cases: list[tuple[Any, dict[str, Any]]] = [(AccessLog(inner, enabled=True), _scope()),
             (Authenticate(inner, authenticator=keys, policy=BROKER), _scope()),
             (Health(inner, checks={}), _scope(path="/health")),
             (TenantNames(inner, render=lambda status, title, detail: (b"", "text/plain")),
              _scope(headers=[(b"ngsild-tenant", b"x" * 300)])),
             (RequestLimits(inner, max_bytes=lambda: 1000), _scope("PATCH", headers=[(b"content-length", b"5")]))]
    for layer, scope in cases:
        made = layer(scope, _receive, _send)
        assert made not in inner.returned and hasattr(made, "send"), type(layer).__name__
        made.close()
