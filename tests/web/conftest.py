"""Fixtures for the shared HTTP plumbing: a local OpenID Connect issuer, API keys, apps on real sockets.

`Issuer` serves `/.well-known/openid-configuration` and a JWKS from an
http.server thread on 127.0.0.1, as Keycloak serves them under
`/realms/<realm>`, and signs tokens with its own RSA keys (made here with
`cryptography`), so token checks run offline against a real HTTP fetch.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from web.auth.apikeys import key_line, new_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Issuer:
    """A Keycloak-like realm: discovery document, JWKS, token signing, key rotation."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.down = False
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if issuer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.endswith("/.well-known/openid-configuration"):
                    body: Any = {"issuer": issuer.url, "jwks_uri": issuer.url + "/protocol/openid-connect/certs"}
                elif self.path.endswith("/protocol/openid-connect/certs"):
                    issuer.fetches += 1
                    body = {"keys": [issuer.jwk(kid) for kid in issuer.published]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/realms/metropole"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.rotate()

    def rotate(self) -> str:
        """A new signing key, published beside the old ones; its kid."""
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)
        return kid

    def jwk(self, kid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**data, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, claims: dict[str, Any] | None = None, *, kid: str | None = None, ttl: int = 300,
              **overrides: Any) -> str:
        """A Keycloak-shaped access token signed with `kid` (the newest key by default)."""
        kid = kid or self.published[-1]
        now = int(time.time())
        body = {"iss": self.url, "sub": "u-1", "preferred_username": "alice", "iat": now, "exp": now + ttl,
                "azp": "metropole", "realm_access": {"roles": ["offline_access"]}, **(claims or {}), **overrides}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.close()


class Keys:
    """An API key file with a key per grant set."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "apikeys"
        self.keys: dict[str, str] = {}
        self.lines: list[str] = []

    def add(self, name: str, *grants: str) -> str:
        key = new_key()
        self.keys[name] = key
        self.lines.append(key_line(name, key, list(grants)))
        self.path.write_text("\n".join(["# name  key  grants", *self.lines]) + "\n")
        return key


@pytest.fixture
def api_keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, *, lifespan: str = "on", port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan=lifespan, **config))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        scheme = "https" if config.get("ssl_certfile") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ServedTogether:
    """Several ASGI apps served by uvicorn in one event loop (apps that share state, as in `metropole run`)."""

    def __init__(self, *apps: tuple[Any, str, int | None]) -> None:
        self.servers: list[uvicorn.Server] = []
        self.urls: list[str] = []
        for app, lifespan, port in apps:
            port = port or free_port()
            self.servers.append(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                              lifespan=lifespan)))  # type: ignore[arg-type]
            self.urls.append(f"http://127.0.0.1:{port}")

        async def main() -> None:
            await asyncio.gather(*(s.serve() for s in self.servers))

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)

    def __enter__(self) -> list[str]:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not all(s.started for s in self.servers):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the servers did not start")
            time.sleep(0.02)
        return self.urls

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(timeout=30)
