"""TLS for the HTTP servers (uvicorn) and for MQTT clients, from settings.

HTTP servers, one certificate for every server of the process:

    METROPOLE_TLS_CERT        PEM certificate chain (turns HTTPS on for every HTTP port)
    METROPOLE_TLS_KEY         its private key
    METROPOLE_TLS_KEY_PASSWORD  the key's passphrase, if any
    METROPOLE_TLS_CLIENT_CA   CA whose client certificates are required (mutual TLS; optional)

MQTT clients (`client_context`): server verification against a CA bundle
(the system's when none is given), an optional client certificate, and
never `CERT_NONE`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from web.secrets import remember
from web.settings import EnvSettings, load, var


class ServerTlsEnv(EnvSettings):
    """The METROPOLE_TLS_* variables of `ServerTls` (pydantic-settings, web/settings.py)."""

    cert: str = var("METROPOLE_TLS_CERT")
    key: str = var("METROPOLE_TLS_KEY")
    key_password: str = var("METROPOLE_TLS_KEY_PASSWORD")
    client_ca: str = var("METROPOLE_TLS_CLIENT_CA")


@dataclass(frozen=True, slots=True)
class ServerTls:
    """Certificate and key of the HTTPS servers; empty = plain HTTP."""

    cert: str = ""
    key: str = ""
    key_password: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerTls:
        """METROPOLE_TLS_*; ValueError when a certificate comes without its key or a file is missing."""
        tls = cls(**load(ServerTlsEnv, env))
        if bool(tls.cert) != bool(tls.key):
            raise ValueError("METROPOLE_TLS_CERT and METROPOLE_TLS_KEY go together")
        for name, path in (("METROPOLE_TLS_CERT", tls.cert), ("METROPOLE_TLS_KEY", tls.key),
                           ("METROPOLE_TLS_CLIENT_CA", tls.client_ca)):
            if path and not os.path.isfile(path):
                raise ValueError(f"{name}: no file {path}")
        remember(tls.key_password)
        return tls

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of `uvicorn.Config` (none when TLS is off)."""
        if not self.enabled:
            return {}
        options: dict[str, Any] = {"ssl_certfile": self.cert, "ssl_keyfile": self.key}
        if self.key_password:
            options["ssl_keyfile_password"] = self.key_password
        if self.client_ca:
            options["ssl_ca_certs"] = self.client_ca
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return options

    @property
    def scheme(self) -> str:
        return "https" if self.enabled else "http"


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                   key_password: str | None = None) -> ssl.SSLContext:
    """A client context verifying the server against `ca` (system CAs when None), with an optional client certificate."""
    context = ssl.create_default_context(cafile=ca or None)
    if cert:
        context.load_cert_chain(cert, key or None, key_password or None)
    return context
