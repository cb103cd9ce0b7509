"""Remote @context fetches under hostile servers (issue 17), served locally over real sockets.

- a server that sends one byte a second (headers or body) is cut at the total deadline;
- failures are remembered (negative cache), so a dead server costs one fetch per while;
- with the host policy on, a refusal reads the same for a closed port, an HTTP server and a
  non-HTTP service, and no connection is made; transport failures read the same without it too;
- fetches run on a pool of their own: while every fetch thread is held by a slow server, requests
  that need no fetch are answered.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broker.settings import BrokerSettings
from models.context import ContextResolver
from models.errors import LdContextNotAvailable
from tests.broker.conftest import API, RunningBroker, free_port, link, new_id


class RawServer:
    """A TCP server whose per-connection behaviour is a function of the socket (threads, real sockets)."""

    def __init__(self, behaviour: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.connections = 0
        self.holding = 0
        self.cond = threading.Condition()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/ctx.jsonld") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with self.cond:
            self.holding += 1
            self.cond.notify_all()
        try:
            self.behaviour(self, conn)
        except OSError:
            pass
        finally:
            with self.cond:
                self.holding -= 1
                self.cond.notify_all()
            conn.close()

    def wait_holding(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.holding >= n, 30), f"only {self.holding} held"

    def close(self) -> None:
        self.release.set()
        self.sock.close()


BODY = b'{"@context": {"speed": "https://example.org/speed"}}'


def trickle_body(server: RawServer, conn: socket.socket) -> None:
    """Headers at once, then the body one byte a second: done after ~50 s if nobody cuts it."""
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    for byte in BODY:
        if server.release.wait(1):
            return
        conn.sendall(bytes([byte]))


def trickle_headers(server: RawServer, conn: socket.socket) -> None:
    """The status line and headers one byte a second."""
    conn.recv(4096)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: %d\r\n\r\n" % len(BODY):
        if server.release.wait(1):
            return
        conn.sendall(bytes([byte]))
    conn.sendall(BODY)


def hold(server: RawServer, conn: socket.socket) -> None:
    """Accept, read the request, answer nothing until released."""
    conn.recv(4096)
    server.release.wait(60)


def not_http(server: RawServer, conn: socket.socket) -> None:
    """Another protocol (what Redis says to an HTTP request), then close."""
    conn.recv(4096)
    conn.sendall(b"-ERR wrong number of arguments for 'get' command\r\n")


@pytest.fixture
def servers() -> Iterator[list[RawServer]]:
    made: list[RawServer] = []
    yield made
    for s in made:
        s.close()


def serve(servers: list[RawServer], behaviour: Any) -> RawServer:
    server = RawServer(behaviour)
    servers.append(server)
    return server


def _closed_port() -> int:
    return free_port()


def unavailable(resolver: ContextResolver, url: str) -> LdContextNotAvailable:
    with pytest.raises(LdContextNotAvailable) as caught:
        resolver.resolve(url)
    assert caught.value.status == 503
    return caught.value


@pytest.mark.parametrize("behaviour", [trickle_body, trickle_headers], ids=["body", "headers"])
def test_a_byte_a_second_is_cut_at_the_total_deadline(servers: list[RawServer], behaviour: Any) -> None:
    # each byte comes well within any per-read timeout; only a total deadline stops the fetch
    server = serve(servers, behaviour)
    error = unavailable(ContextResolver(timeout=2), server.url())
    assert "timed out after 2" in error.detail  # unbounded, the fetch would have succeeded after ~50 s


def test_failures_are_remembered(servers: list[RawServer]) -> None:
    server = serve(servers, hold)
    resolver = ContextResolver(timeout=1, failure_ttl=300)
    first = unavailable(resolver, server.url())
    again = unavailable(resolver, server.url())
    assert again.detail == first.detail
    assert server.connections == 1


def _reason(error: LdContextNotAvailable, url: str) -> str:
    return error.detail.replace(url, "URL")


def test_transport_failures_read_alike_whatever_the_port(servers: list[RawServer]) -> None:
    resolver = ContextResolver(timeout=5, failure_ttl=0)
    closed = f"http://127.0.0.1:{_closed_port()}/ctx.jsonld"
    other = serve(servers, not_http).url()
    assert _reason(unavailable(resolver, closed), closed) == _reason(unavailable(resolver, other), other)


def test_the_host_policy_refuses_alike_and_never_connects(servers: list[RawServer]) -> None:
    http = serve(servers, trickle_body)
    other = serve(servers, not_http)
    closed = f"http://127.0.0.1:{_closed_port()}/ctx.jsonld"
    for resolver in (ContextResolver(refuse_private=True, failure_ttl=0),
                     ContextResolver(allowed_hosts=frozenset({"contexts.example.org"}), failure_ttl=0)):
        reasons = {_reason(unavailable(resolver, url), url) for url in (http.url(), other.url(), closed,
                                                                      "http://localhost:1/x", "http://[::1]:6379/",
                                                                      "http://10.0.0.1/x", "http://169.254.169.254/")}
        assert len(reasons) == 1, reasons
        assert "allowed context hosts" in reasons.pop()
    assert http.connections == 0 and other.connections == 0


def test_a_redirect_to_a_host_not_allowed_is_not_followed(servers: list[RawServer]) -> None:
    target = serve(servers, trickle_body)

    def redirect(server: RawServer, conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://localhost:%d/ctx.jsonld\r\nContent-Length: 0\r\n\r\n"
                     % target.port)

    start = serve(servers, redirect)
    error = unavailable(ContextResolver(allowed_hosts=frozenset({"127.0.0.1"})), start.url())
    assert "allowed context hosts" in error.detail
    assert start.connections == 1 and target.connections == 0


@pytest.fixture
def patient_broker(tmp_path: Any) -> Iterator[str]:
    """A broker on SQLite whose context fetches may take 60 s and whose fetch pool has 2 threads."""
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=tmp_path,
                              store_url=f"sqlite:///{tmp_path / 'broker.db'}", context_timeout=60, context_workers=2)
    with RunningBroker(settings) as broker:
        yield broker.url


def test_slow_context_servers_hold_no_other_request(patient_broker: str, servers: list[RawServer]) -> None:
    server = serve(servers, hold)
    results: list[int] = []

    def slow(i: int) -> None:
        with httpx.Client(base_url=patient_broker + API, timeout=120) as c:
            body = {"id": new_id("Slow"), "type": "Slow"}
            results.append(c.post("/entities", json=body, headers=link(server.url(f"/ctx{i}.jsonld"))).status_code)

    threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    server.wait_holding(2)  # both fetch threads are held; six more requests wait for them
    with httpx.Client(base_url=patient_broker + API, timeout=30) as c:
        eid = new_id("Fast")
        assert c.post("/entities", json={"id": eid, "type": "Fast"}).status_code == 201
        assert c.get(f"/entities/{eid}").status_code == 200
        assert c.get("/entities", params={"type": "Fast"}).status_code == 200
    assert server.holding == 2 and not results  # the slow ones were still waiting meanwhile
    server.release.set()
    for t in threads:
        t.join(120)
    assert results and all(status == 503 for status in results), results


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_CONTEXT_ALLOWED_HOSTS", "contexts.example.org, Schema.Example.org")
    monkeypatch.setenv("METROPOLE_CONTEXT_REFUSE_PRIVATE", "true")
    monkeypatch.setenv("METROPOLE_CONTEXT_FAILURE_TTL", "5")
    monkeypatch.setenv("METROPOLE_CONTEXT_WORKERS", "3")
    monkeypatch.setenv("METROPOLE_CONTEXT_MAX_BYTES", "4096")
    s = BrokerSettings.from_env()
    assert s.context_allowed_hosts == frozenset({"contexts.example.org", "schema.example.org"})
    assert (s.context_refuse_private, s.context_failure_ttl, s.context_workers, s.context_max_bytes) == (
        True, 5.0, 3, 4096)


def test_hosting_a_context_that_names_a_remote_one(client: httpx.Client, context_server: Any) -> None:
    # ETSI 050_01_02 / 050_04_01: hosting resolves the document, which fetches its URLs (off the event loop)
    url = context_server.publish({"Kiosk": "https://example.org/Kiosk"})
    r = client.post("/jsonldContexts", json={"@context": [url, {"stock": "https://example.org/stock"}]})
    assert r.status_code == 201, r.text
    assert client.get("/jsonldContexts", params={"kind": "Cached"}).status_code == 200


def test_a_fetch_from_a_thread_running_an_event_loop(servers: list[RawServer]) -> None:
    import asyncio

    def answer(server: RawServer, conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(BODY), BODY))

    url = serve(servers, answer).url()

    async def inside() -> str:
        return ContextResolver().resolve(url).expand_term("speed")

    assert asyncio.run(inside()) == "https://example.org/speed"
