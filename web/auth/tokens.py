"""Bearer tokens: JWTs of an OpenID Connect issuer (Keycloak) or of FIWARE Keyrock, turned into principals.

OpenID Connect (Keycloak, or any issuer publishing a JWKS):
    the signature is checked against the issuer's JSON Web Key Set (found
    through `<issuer>/.well-known/openid-configuration`, or configured),
    with an asymmetric algorithm only (RS*, PS*, ES*, EdDSA: never `none`,
    never an HMAC a public key could be passed off as); `iss` must be the
    issuer, `exp` is required, `aud` checked when an audience is configured.
    Grants come from Keycloak's role claims (AccessToken.java:
    `realm_access.roles`, `resource_access.<client>.roles`), from its
    Group Membership mapper's `groups` (full paths, `/towns/aix/write`:
    the last two segments), and from an optional claim of the operator's
    own (`METROPOLE_AUTH_OIDC_ROLES_CLAIM`, a dotted path to a list).
    Roles that are not `<tenant>:<scope>` are ignored.

FIWARE Keyrock (ging/fiware-idm):
    an application whose token type includes `jwt` issues HS256 JWTs
    signed with the application's `jwt_secret` (models/model_oauth_server.js
    `generateJwtToken`: `jsonwebtoken.sign(response, client.jwt_secret, ...)`,
    no `iss`); the payload is `create_oauth_response`'s: `app_id`,
    `username`, `roles: [{id, name}]` (the user's roles in the
    application) and `organizations: [{id, name, roles: [{id, name}]}]`
    (roles held through organisations). Grants: each role named
    `<tenant>:<scope>`; and each organisation is a tenant of its name,
    with the scopes its roles name (`read`, `write`, `admin`).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterable
from typing import Any

import httpx
import jwt
import jwt.warnings

from web.auth.grants import SCOPES, Grant, Principal, parse_grant, parse_grants

ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY = 30  # seconds of clock skew accepted on exp/nbf/iat


class InvalidToken(Exception):
    """The token is malformed, expired, badly signed or not for us (401)."""


class IssuerUnavailable(Exception):
    """The issuer's key set cannot be fetched (503: the caller may be right, we cannot tell)."""


def looks_like_jwt(token: str) -> bool:
    """A JWS compact serialisation has three dot-separated parts."""
    return token.count(".") == 2


def _path(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def keycloak_grants(claims: dict[str, Any], client_id: str, extra_claim: str | None = None) -> set[Grant]:
    """Grants in a Keycloak access token: realm and client roles, group paths, and an operator's claim."""
    roles: list[Any] = []
    realm = claims.get("realm_access")
    if isinstance(realm, dict) and isinstance(realm.get("roles"), list):
        roles += realm["roles"]
    resource = claims.get("resource_access")
    if isinstance(resource, dict) and isinstance(resource.get(client_id), dict):
        client_roles = resource[client_id].get("roles")
        if isinstance(client_roles, list):
            roles += client_roles
    grants = set(parse_grants(roles))
    groups = claims.get("groups")
    if isinstance(groups, list):
        for group in groups:
            if isinstance(group, str):
                parts = [p for p in group.split("/") if p]
                if len(parts) >= 2:
                    grant = parse_grant(f"{parts[-2]}:{parts[-1]}")
                    if grant is not None:
                        grants.add(grant)
    if extra_claim:
        grants.update(parse_grants(_path(claims, extra_claim)))
    return grants


def _role_names(roles: Any) -> Iterable[str]:
    if isinstance(roles, list):
        for role in roles:
            name = role.get("name") if isinstance(role, dict) else role
            if isinstance(name, str):
                yield name


def keyrock_grants(claims: dict[str, Any]) -> set[Grant]:
    """Grants in a Keyrock JWT: `<tenant>:<scope>` roles, and organisations as tenants."""
    grants = set(parse_grants(list(_role_names(claims.get("roles")))))
    organizations = claims.get("organizations")
    if isinstance(organizations, list):
        for org in organizations:
            if not isinstance(org, dict) or not isinstance(org.get("name"), str):
                continue
            for name in _role_names(org.get("roles")):
                if name in SCOPES:
                    grants.add(Grant(org["name"], name))
                else:
                    grant = parse_grant(name)
                    if grant is not None:
                        grants.add(grant)
    return grants


def _name(claims: dict[str, Any]) -> str:
    for key in ("preferred_username", "username", "email", "sub", "app_id"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return "token"


class OidcIssuer:
    """Verifies JWTs of one OpenID Connect issuer against its JWKS (fetched lazily, cached, refreshed on a new kid)."""

    def __init__(self, issuer: str, *, jwks_url: str | None = None, audience: str | None = None,
                 client_id: str = "metropole", roles_claim: str | None = None, cache_seconds: float = 600,
                 min_refresh_seconds: float = 30, timeout: float = 5.0, verify_tls: Any = True) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.client_id = client_id
        self.roles_claim = roles_claim
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self.verify_tls = verify_tls
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, verify=self.verify_tls) as client:
            url = self.jwks_url
            if url is None:
                meta = await client.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
                meta.raise_for_status()
                url = str(meta.json()["jwks_uri"])
            response = await client.get(url)
            response.raise_for_status()
            document = response.json()
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.exceptions.PyJWKError:  # a key type or algorithm we do not verify with
                continue
            kid = entry.get("kid")
            if kid is None or isinstance(kid, str):  # a key set entry whose kid is no string cannot be named
                keys[kid] = key
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > self.cache_seconds
        if stale or (kid not in self._keys and now - self._fetched_at > self.min_refresh_seconds):
            async with self._lock:
                if time.monotonic() - self._fetched_at > min(self.min_refresh_seconds, self.cache_seconds):
                    try:
                        await self._fetch()
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        if not self._keys:
                            raise IssuerUnavailable(f"the key set of {self.issuer} cannot be fetched: {exc}") from None
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is None:
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        return key

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; InvalidToken or IssuerUnavailable otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.DecodeError:
            raise InvalidToken("the token is not a JWT") from None
        except jwt.exceptions.InvalidTokenError as exc:  # e.g. a kid that is not a string: refused, not a 500
            raise InvalidToken(f"the token's header is invalid: {exc}") from None
        if header.get("alg") not in ASYMMETRIC:
            raise InvalidToken(f"tokens signed with {header.get('alg')!r} are not accepted from {self.issuer}")
        key = await self._key(header.get("kid"))
        try:
            claims = jwt.decode(token, key.key, algorithms=[header["alg"]], issuer=self.issuer,
                                audience=self.audience, leeway=LEEWAY,
                                options={"require": ["exp", "iss"], "verify_aud": self.audience is not None})
        except jwt.exceptions.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from None
        grants = keycloak_grants(claims, self.client_id, self.roles_claim)
        return Principal(_name(claims), "oidc", frozenset(grants))


class KeyrockIssuer:
    """Verifies Keyrock's HS256 JWTs with the application's JWT secret (and its app_id, when configured)."""

    def __init__(self, secret: str, *, app_id: str | None = None) -> None:
        self._secret = secret
        self.app_id = app_id

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; InvalidToken otherwise."""
        try:
            with warnings.catch_warnings():
                # Keyrock makes 16-hex-digit secrets (controllers/web/applications.js:367): short, but its own
                warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], leeway=LEEWAY,
                                    options={"require": ["exp"], "verify_aud": False})
        except jwt.exceptions.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from None
        if self.app_id is not None and claims.get("app_id") != self.app_id:
            raise InvalidToken("the token was issued for another application")
        return Principal(_name(claims), "keyrock", frozenset(keyrock_grants(claims)))


Issuer = OidcIssuer | KeyrockIssuer


async def verify_token(issuers: list[Issuer], token: str) -> Principal:
    """The first issuer that recognises the token decides; InvalidToken when none does."""
    if not issuers:
        raise InvalidToken("bearer tokens are not accepted here (no issuer configured)")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.exceptions.DecodeError:
        raise InvalidToken("the token is not a JWT") from None
    except jwt.exceptions.InvalidTokenError as exc:  # a header PyJWT refuses (a kid that is no string): 401, not 500
        raise InvalidToken(f"the token's header is invalid: {exc}") from None
    iss = unverified.get("iss")
    for issuer in issuers:
        if isinstance(issuer, OidcIssuer) and iss == issuer.issuer:
            return await issuer.verify(token)
    keyrock = [i for i in issuers if isinstance(i, KeyrockIssuer)]
    if keyrock and iss is None:
        return await keyrock[0].verify(token)
    raise InvalidToken(f"tokens of issuer {iss!r} are not accepted")
