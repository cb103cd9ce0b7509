"""web/auth/settings.py: METROPOLE_AUTH_* through pydantic-settings, as before (Authenticator.from_env)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Keys
from web.auth.settings import Authenticator
from web.auth.tokens import KeyrockIssuer, OidcIssuer

ISSUER = "https://sso.example/realms/metropole"

# (variables, expected `enabled`, expected methods)
MODES: list[tuple[dict[str, str], bool, list[str]]] = [
    ({}, False, []),
    ({"METROPOLE_AUTH": "auto"}, False, []),
    ({"METROPOLE_AUTH": ""}, False, []),  # empty is auto
    ({"METROPOLE_AUTH": " OFF ", "METROPOLE_AUTH_OIDC_ISSUER": ISSUER}, False, []),  # any case, blanks ignored
    ({"METROPOLE_AUTH": "Auto", "METROPOLE_AUTH_OIDC_ISSUER": ISSUER}, True, ["oidc"]),
    ({"METROPOLE_AUTH": "on", "METROPOLE_AUTH_KEYROCK_SECRET": "s3cret"}, True, ["keyrock"]),
    ({"METROPOLE_AUTH_OIDC_ISSUER": ""}, False, []),  # an empty source is unset
    ({"METROPOLE_AUTH_KEYROCK_SECRET": "s", "METROPOLE_AUTH_OIDC_ISSUER": ISSUER}, True, ["keyrock", "oidc"]),
]

# (variables, the whole error message)
REFUSED: list[tuple[dict[str, str], str]] = [
    ({"METROPOLE_AUTH": "maybe"}, "METROPOLE_AUTH='maybe' must be auto, on or off"),
    ({"METROPOLE_AUTH": "true"}, "METROPOLE_AUTH='true' must be auto, on or off"),
    ({"METROPOLE_AUTH": "on"}, ("METROPOLE_AUTH=on needs METROPOLE_AUTH_API_KEYS, METROPOLE_AUTH_OIDC_ISSUER "
                                "or METROPOLE_AUTH_KEYROCK_SECRET")),
    ({"METROPOLE_AUTH_API_KEYS": "/nonexistent/apikeys"},
     "METROPOLE_AUTH_API_KEYS: cannot read /nonexistent/apikeys: No such file or directory"),
]


@pytest.mark.parametrize(("env", "enabled", "methods"), MODES)
def test_modes_and_sources(env: dict[str, str], enabled: bool, methods: list[str]) -> None:
    auth = Authenticator.from_env(env)
    assert (auth.enabled, auth.methods) == (enabled, methods)


@pytest.mark.parametrize(("env", "message"), REFUSED)
def test_a_bad_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Authenticator.from_env(env)
    assert str(caught.value) == message


def test_the_oidc_variables_reach_the_issuer() -> None:
    auth = Authenticator.from_env({
        "METROPOLE_AUTH_OIDC_ISSUER": ISSUER, "METROPOLE_AUTH_OIDC_JWKS_URL": "https://sso.example/jwks",
        "METROPOLE_AUTH_OIDC_AUDIENCE": "broker", "METROPOLE_AUTH_OIDC_CLIENT_ID": "dash",
        "METROPOLE_AUTH_OIDC_ROLES_CLAIM": "realm_access.roles", "METROPOLE_AUTH_OIDC_CA": "/etc/ca.pem"})
    issuer: Any = auth.issuers[0]
    assert isinstance(issuer, OidcIssuer)
    assert (issuer.issuer, issuer.jwks_url, issuer.audience, issuer.client_id, issuer.roles_claim, issuer.verify_tls) == (
        ISSUER, "https://sso.example/jwks", "broker", "dash", "realm_access.roles", "/etc/ca.pem")


def test_the_oidc_defaults() -> None:
    issuer: Any = Authenticator.from_env({"METROPOLE_AUTH_OIDC_ISSUER": ISSUER,
                                          "METROPOLE_AUTH_OIDC_CLIENT_ID": ""}).issuers[0]
    assert (issuer.jwks_url, issuer.audience, issuer.client_id, issuer.roles_claim, issuer.verify_tls) == (
        None, None, "metropole", None, True)


def test_the_keyrock_app_id() -> None:
    issuer = Authenticator.from_env({"METROPOLE_AUTH_KEYROCK_SECRET": "s", "METROPOLE_AUTH_KEYROCK_APP_ID": "app-1"}).issuers[0]
    assert isinstance(issuer, KeyrockIssuer) and issuer.app_id == "app-1"
    issuer = Authenticator.from_env({"METROPOLE_AUTH_KEYROCK_SECRET": "s", "METROPOLE_AUTH_KEYROCK_APP_ID": ""}).issuers[0]
    assert isinstance(issuer, KeyrockIssuer) and issuer.app_id is None


def test_an_api_key_file(api_keys: Keys) -> None:
    api_keys.add("ops", "*:admin")
    auth = Authenticator.from_env({"METROPOLE_AUTH_API_KEYS": str(api_keys.path)})
    assert (auth.enabled, auth.methods) == (True, ["apikey"])


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_AUTH", "on")
    monkeypatch.setenv("METROPOLE_AUTH_KEYROCK_SECRET", "s")
    assert Authenticator.from_env().methods == ["keyrock"]
    assert Authenticator.from_env({}).enabled is False  # a given mapping is all that is read
