"""web/tls.py ServerTls.from_env: the METROPOLE_TLS_* variables, read through pydantic-settings as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from web.tls import ServerTls


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")  # only their existence is checked here
    return {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem"), "ca": str(tmp_path / "ca.pem")}


def test_each_variable(files: dict[str, str]) -> None:
    tls = ServerTls.from_env({"METROPOLE_TLS_CERT": files["cert"], "METROPOLE_TLS_KEY": files["key"],
                              "METROPOLE_TLS_KEY_PASSWORD": "pass", "METROPOLE_TLS_CLIENT_CA": files["ca"]})
    assert tls == ServerTls(files["cert"], files["key"], "pass", files["ca"])
    assert (tls.enabled, tls.scheme) == (True, "https")


def test_nothing_or_empty_is_plain_http() -> None:
    assert ServerTls.from_env({}) == ServerTls()
    assert ServerTls.from_env({"METROPOLE_TLS_CERT": "", "METROPOLE_TLS_KEY": ""}).scheme == "http"


@pytest.mark.parametrize(("env", "message"), [
    ({"METROPOLE_TLS_CERT": "{cert}"}, "METROPOLE_TLS_CERT and METROPOLE_TLS_KEY go together"),
    ({"METROPOLE_TLS_KEY": "{key}"}, "METROPOLE_TLS_CERT and METROPOLE_TLS_KEY go together"),
    ({"METROPOLE_TLS_CERT": "/nope/cert.pem", "METROPOLE_TLS_KEY": "{key}"}, "METROPOLE_TLS_CERT: no file /nope/cert.pem"),
    ({"METROPOLE_TLS_CERT": "{cert}", "METROPOLE_TLS_KEY": "{key}", "METROPOLE_TLS_CLIENT_CA": "/nope/ca.pem"},
     "METROPOLE_TLS_CLIENT_CA: no file /nope/ca.pem"),
])
def test_a_bad_setting(files: dict[str, str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ServerTls.from_env({k: v.format(**files) for k, v in env.items()})
    assert str(caught.value) == message


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    monkeypatch.setenv("METROPOLE_TLS_CERT", files["cert"])
    monkeypatch.setenv("METROPOLE_TLS_KEY", files["key"])
    assert ServerTls.from_env().enabled
    assert not ServerTls.from_env({}).enabled  # a given mapping is all that is read
