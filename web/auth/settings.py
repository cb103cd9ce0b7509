"""What authentication a process uses, from METROPOLE_AUTH_* variables (shared by every server of the process).

    METROPOLE_AUTH                      auto (default): on as soon as a credential source below is set; on; off
    METROPOLE_AUTH_API_KEYS             path of an API key file (web/auth/apikeys.py)
    METROPOLE_AUTH_OIDC_ISSUER          OpenID Connect issuer whose tokens are accepted, e.g.
                                        https://sso.example/realms/metropole (Keycloak)
    METROPOLE_AUTH_OIDC_JWKS_URL        its key set (default: from <issuer>/.well-known/openid-configuration)
    METROPOLE_AUTH_OIDC_AUDIENCE        required `aud` (default: not checked)
    METROPOLE_AUTH_OIDC_CLIENT_ID       client whose Keycloak client roles count (default metropole)
    METROPOLE_AUTH_OIDC_ROLES_CLAIM     dotted path of a claim listing grants, for other issuers
    METROPOLE_AUTH_OIDC_CA              CA bundle to verify the issuer's TLS certificate with
    METROPOLE_AUTH_KEYROCK_SECRET       the Keyrock application's JWT secret (HS256 tokens)
    METROPOLE_AUTH_KEYROCK_APP_ID       the Keyrock application id tokens must carry

With the defaults nothing is set, so authentication is off: `make run`, the
tests and the ETSI suite run without credentials. Setting one source turns
it on for the NGSI-LD, history and provisioning APIs alike; `on` without any
source refuses to start, since nobody could then call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BeforeValidator

from web.auth.apikeys import ApiKeys
from web.auth.tokens import Issuer, KeyrockIssuer, OidcIssuer
from web.settings import EnvSettings, read, var


def _mode(raw: object) -> object:
    # any case, blanks around ignored, empty is auto, as before
    if not isinstance(raw, str):
        return raw
    mode = raw.strip().lower() or "auto"
    if mode not in ("auto", "on", "off"):
        raise ValueError("must be auto, on or off")
    return mode


class AuthEnv(EnvSettings):
    """The METROPOLE_AUTH_* variables; an empty one counts as unset."""

    mode: Annotated[Literal["auto", "on", "off"] | None, BeforeValidator(_mode)] = var("METROPOLE_AUTH")
    api_keys: str | None = var("METROPOLE_AUTH_API_KEYS")
    oidc_issuer: str | None = var("METROPOLE_AUTH_OIDC_ISSUER")
    oidc_jwks_url: str | None = var("METROPOLE_AUTH_OIDC_JWKS_URL")
    oidc_audience: str | None = var("METROPOLE_AUTH_OIDC_AUDIENCE")
    oidc_client_id: str | None = var("METROPOLE_AUTH_OIDC_CLIENT_ID")
    oidc_roles_claim: str | None = var("METROPOLE_AUTH_OIDC_ROLES_CLAIM")
    oidc_ca: str | None = var("METROPOLE_AUTH_OIDC_CA")
    keyrock_secret: str | None = var("METROPOLE_AUTH_KEYROCK_SECRET")
    keyrock_app_id: str | None = var("METROPOLE_AUTH_KEYROCK_APP_ID")


@dataclass(slots=True)
class Authenticator:
    """The credential sources of a process; `enabled` false lets every request through."""

    enabled: bool = False
    api_keys: ApiKeys | None = None
    issuers: list[Issuer] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """What it accepts, for /version and the start-up line: apikey, oidc, keyrock."""
        out = ["apikey"] if self.api_keys is not None else []
        out += sorted({"oidc" if isinstance(i, OidcIssuer) else "keyrock" for i in self.issuers})
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Authenticator:
        """Read METROPOLE_AUTH_* from `env` (default os.environ); ValueError with the variable's name for anything wrong."""
        e = read(AuthEnv, env)
        if (e.mode or "auto") == "off":
            return cls()
        api_keys = None
        if e.api_keys:
            try:
                api_keys = ApiKeys.load(e.api_keys)
            except OSError as exc:
                raise ValueError(f"METROPOLE_AUTH_API_KEYS: cannot read {exc.filename}: {exc.strerror}") from None
        issuers: list[Issuer] = []
        if e.oidc_issuer:
            issuers.append(OidcIssuer(
                e.oidc_issuer,
                jwks_url=e.oidc_jwks_url or None,
                audience=e.oidc_audience or None,
                client_id=e.oidc_client_id or "metropole",
                roles_claim=e.oidc_roles_claim or None,
                verify_tls=e.oidc_ca or True,
            ))
        if e.keyrock_secret:
            issuers.append(KeyrockIssuer(e.keyrock_secret, app_id=e.keyrock_app_id or None))
        configured = api_keys is not None or bool(issuers)
        if e.mode == "on" and not configured:
            raise ValueError("METROPOLE_AUTH=on needs METROPOLE_AUTH_API_KEYS, METROPOLE_AUTH_OIDC_ISSUER "
                             "or METROPOLE_AUTH_KEYROCK_SECRET")
        return cls(enabled=configured, api_keys=api_keys, issuers=issuers)
