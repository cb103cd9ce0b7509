"""Authentication and per-tenant authorisation of the platform's HTTP APIs (shared ASGI plumbing).

    grants.py      scopes, `<tenant>:<scope>` grants, principals
    apikeys.py     the API key file (hashes and grants)
    tokens.py      JWTs: OpenID Connect issuers (Keycloak) via JWKS, Keyrock via its HS256 secret
    policy.py      the rule tables: which scope on which tenant each request needs
    settings.py    METROPOLE_AUTH_* -> an Authenticator
    middleware.py  `Authenticate`, the ASGI middleware
"""

from web.auth.grants import Grant, Principal
from web.auth.middleware import Authenticate, plain_json
from web.auth.settings import Authenticator

__all__ = ["Authenticate", "Authenticator", "Grant", "Principal", "plain_json"]
