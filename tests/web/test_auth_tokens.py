"""Bearer tokens against a local issuer over real HTTP: Keycloak and Keyrock shapes, the attacks that matter."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings

import jwt
import jwt.warnings
import pytest

from tests.web.conftest import Issuer
from web.auth.grants import Grant
from web.auth.tokens import (
    InvalidToken,
    IssuerUnavailable,
    KeyrockIssuer,
    OidcIssuer,
    keycloak_grants,
    keyrock_grants,
    verify_token,
)

KEYCLOAK_CLAIMS = {
    "realm_access": {"roles": ["offline_access", "default-roles-metropole", "aix:read"]},
    "resource_access": {"metropole": {"roles": ["marseille:write"]}, "account": {"roles": ["manage-account"]}},
    "groups": ["/towns/istres/admin", "/staff"],
}


def test_keycloak_roles_groups_and_an_operator_claim_become_grants() -> None:
    claims = {**KEYCLOAK_CLAIMS, "metropole": {"grants": "vitrolles:read *:read"}}
    grants = keycloak_grants(claims, "metropole", "metropole.grants")
    assert grants == {Grant("aix", "read"), Grant("marseille", "write"), Grant("istres", "admin"),
                      Grant("vitrolles", "read"), Grant("*", "read")}
    assert keycloak_grants(claims, "another-client") == {Grant("aix", "read"), Grant("istres", "admin")}


def test_keyrock_roles_and_organisations_become_grants() -> None:
    # the payload of models/model_oauth_server.js create_oauth_response for a user (fiware-idm)
    claims = {"app_id": "app-1", "username": "bob", "type": "user",
              "roles": [{"id": "r1", "name": "aix:write"}, {"id": "r2", "name": "Provider"}],
              "organizations": [{"id": "o1", "name": "marseille", "description": "", "website": "",
                                 "roles": [{"id": "r3", "name": "read"}, {"id": "r4", "name": "istres:admin"}]}]}
    assert keyrock_grants(claims) == {Grant("aix", "write"), Grant("marseille", "read"), Grant("istres", "admin")}


def test_a_keycloak_token_is_verified_against_the_published_key_set(issuer: Issuer) -> None:
    oidc = OidcIssuer(issuer.url)
    principal = asyncio.run(verify_token([oidc], issuer.token(KEYCLOAK_CLAIMS)))
    assert principal.name == "alice" and principal.method == "oidc"
    assert principal.allows("marseille", "write") and not principal.allows("marseille", "admin")
    assert issuer.fetches == 1
    asyncio.run(verify_token([oidc], issuer.token(KEYCLOAK_CLAIMS)))
    assert issuer.fetches == 1, "the key set is cached"


def test_a_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_issuer(issuer: Issuer) -> None:
    oidc = OidcIssuer(issuer.url, min_refresh_seconds=0)

    async def run() -> None:
        await oidc.verify(issuer.token())
        issuer.rotate()
        await oidc.verify(issuer.token())  # a kid not seen yet: one refresh
        assert issuer.fetches == 2

    asyncio.run(run())
    limited = OidcIssuer(issuer.url, min_refresh_seconds=3600)

    async def forged() -> None:
        await limited.verify(issuer.token())
        fake = issuer.token(kid=issuer.published[0])
        _header, body, sig = fake.split(".")
        bad_header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": "nope"}).encode()).rstrip(b"=").decode()
        for _ in range(5):
            with pytest.raises(InvalidToken, match="does not publish"):
                await limited.verify(f"{bad_header}.{body}.{sig}")

    before = issuer.fetches
    asyncio.run(forged())
    assert issuer.fetches == before + 1, "garbage kids must not make us fetch the key set each time"


@pytest.mark.parametrize("case", ["expired", "other issuer", "other audience", "tampered", "alg none",
                                  "hs256 with the public key", "no exp", "kid a list", "kid an object"])
def test_bad_tokens_are_refused(issuer: Issuer, case: str) -> None:
    oidc = OidcIssuer(issuer.url, audience="metropole-api")
    good = {"aud": "metropole-api"}
    if case == "expired":
        token = issuer.token(good, ttl=-120)
    elif case == "other issuer":
        token = issuer.token(good, iss=issuer.url + "-evil")
    elif case == "other audience":
        token = issuer.token({"aud": "someone-else"})
    elif case == "tampered":
        head, body, sig = issuer.token(good).split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        claims["realm_access"] = {"roles": ["*:admin"]}
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{head}.{forged}.{sig}"
    elif case == "alg none":
        token = jwt.encode({"iss": issuer.url, "exp": int(time.time()) + 60, **good}, None,  # type: ignore[arg-type]
                           algorithm="none")
    elif case == "hs256 with the public key":  # the classic algorithm confusion
        public = issuer.jwk(issuer.published[-1])
        token = jwt.encode({"iss": issuer.url, "exp": int(time.time()) + 60, **good},
                           json.dumps(public).encode() * 2, algorithm="HS256")
    elif case.startswith("kid"):  # an unhashable kid was a TypeError (a 500) where a refusal is due
        kid = [issuer.published[-1]] if case == "kid a list" else {"k": issuer.published[-1]}
        head, body, sig = issuer.token(good).split(".")
        forged = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode()).rstrip(b"=").decode()
        token = f"{forged}.{body}.{sig}"
    else:
        token = jwt.encode({"iss": issuer.url, **good}, issuer.keys[issuer.published[-1]], algorithm="RS256",
                           headers={"kid": issuer.published[-1]})
    with pytest.raises(InvalidToken):
        asyncio.run(verify_token([oidc], token))


def test_an_unreachable_issuer_is_unavailable_not_unauthorised(issuer: Issuer) -> None:
    issuer.down = True
    with pytest.raises(IssuerUnavailable):
        asyncio.run(OidcIssuer(issuer.url).verify(issuer.token()))


def _hs256(claims: dict[str, object], secret: str) -> str:
    """As Keyrock signs: HS256 with the application's 16-hex-digit secret (jsonwebtoken's default algorithm)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


def test_keyrock_tokens_need_the_application_secret_and_its_app_id() -> None:
    keyrock = KeyrockIssuer("0123456789abcdef", app_id="app-1")
    now = int(time.time())
    claims = {"app_id": "app-1", "username": "bob", "roles": [{"id": "r", "name": "aix:read"}], "exp": now + 60}
    principal = asyncio.run(verify_token([keyrock], _hs256(claims, "0123456789abcdef")))
    assert principal.name == "bob" and principal.allows("aix", "read")
    for token in (_hs256(claims, "another-secret-xx"), _hs256({**claims, "app_id": "app-2"}, "0123456789abcdef"),
                  _hs256({**claims, "exp": now - 3600}, "0123456789abcdef")):
        with pytest.raises(InvalidToken):
            asyncio.run(verify_token([keyrock], token))
