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

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from web.auth.apikeys import ApiKeys
from web.auth.tokens import Issuer, KeyrockIssuer, OidcIssuer


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
        """Read METROPOLE_AUTH_*; ValueError with the variable's name for anything wrong."""
        env = os.environ if env is None else env
        mode = env.get("METROPOLE_AUTH", "auto").strip().lower() or "auto"
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"METROPOLE_AUTH must be auto, on or off, not {mode!r}")
        if mode == "off":
            return cls()
        api_keys = None
        if env.get("METROPOLE_AUTH_API_KEYS"):
            try:
                api_keys = ApiKeys.load(env["METROPOLE_AUTH_API_KEYS"])
            except OSError as exc:
                raise ValueError(f"METROPOLE_AUTH_API_KEYS: cannot read {exc.filename}: {exc.strerror}") from None
        issuers: list[Issuer] = []
        if env.get("METROPOLE_AUTH_OIDC_ISSUER"):
            issuers.append(OidcIssuer(
                env["METROPOLE_AUTH_OIDC_ISSUER"],
                jwks_url=env.get("METROPOLE_AUTH_OIDC_JWKS_URL") or None,
                audience=env.get("METROPOLE_AUTH_OIDC_AUDIENCE") or None,
                client_id=env.get("METROPOLE_AUTH_OIDC_CLIENT_ID") or "metropole",
                roles_claim=env.get("METROPOLE_AUTH_OIDC_ROLES_CLAIM") or None,
                verify_tls=env.get("METROPOLE_AUTH_OIDC_CA") or True,
            ))
        if env.get("METROPOLE_AUTH_KEYROCK_SECRET"):
            issuers.append(KeyrockIssuer(env["METROPOLE_AUTH_KEYROCK_SECRET"],
                                         app_id=env.get("METROPOLE_AUTH_KEYROCK_APP_ID") or None))
        configured = api_keys is not None or bool(issuers)
        if mode == "on" and not configured:
            raise ValueError("METROPOLE_AUTH=on needs METROPOLE_AUTH_API_KEYS, METROPOLE_AUTH_OIDC_ISSUER "
                             "or METROPOLE_AUTH_KEYROCK_SECRET")
        return cls(enabled=configured, api_keys=api_keys, issuers=issuers)
