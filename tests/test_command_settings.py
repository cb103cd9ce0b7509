"""metropole/settings.py: the variables behind the `metropole` flags' defaults, and the flags winning over them."""

from __future__ import annotations

import os
from typing import Any

import pytest

from metropole.cli import build_parser, cmd_demo
from metropole.settings import CommandEnv
from web.settings import read

COMPUTE = ["indicators", "compute", "--from", "2024-01-01", "--to", "2024-01-02"]

# (variable, raw value, command line, argument, expected value)
PARSED: list[tuple[str, str, list[str], str, Any]] = [
    ("METROPOLE_HOST", "0.0.0.0", ["run"], "host", "0.0.0.0"),
    ("METROPOLE_BROKER_HOST", "::1", ["broker"], "host", "::1"),
    ("METROPOLE_AGENT_HOST", "10.0.0.1", ["agent"], "host", "10.0.0.1"),
    ("METROPOLE_DATA", "/srv/data", ["run"], "data", "/srv/data"),
    ("METROPOLE_DATA", "/srv/data", ["broker"], "data", "/srv/data"),
    ("METROPOLE_DATA", "/srv/data", ["agent"], "data", "/srv/data"),
    ("METROPOLE_BROKER_PORT", "11026", ["run"], "broker_port", 11026),
    ("METROPOLE_BROKER_PORT", " 11026 ", ["broker"], "port", 11026),
    ("METROPOLE_HISTORY_PORT", "0", ["run"], "history_port", 0),
    ("METROPOLE_BROKER_STORE", "postgresql://db/x", ["broker"], "store", "postgresql://db/x"),
    ("METROPOLE_BROKER_STORE", "", ["broker"], "store", ""),
    ("METROPOLE_DASHBOARD_PORT", "0", ["run"], "dashboard_port", 0),
    ("METROPOLE_INDICATORS_TENANT", "aix", ["run"], "indicators_tenant", "aix"),
    ("METROPOLE_INDICATORS_TENANT", "aix", COMPUTE, "tenant", "aix"),
    ("METROPOLE_INDICATORS_BROKER_URL", "http://orion:1026", COMPUTE, "broker_url", "http://orion:1026"),
    ("METROPOLE_DEMO_DAYS", "3", ["demo"], "demo_days", 3),
    ("METROPOLE_BROKER_PORT", "11026", ["run", "--broker-port", "2026"], "broker_port", 2026),  # the flag wins
    ("METROPOLE_BROKER_STORE", "sqlite:///env.db", ["broker", "--store", "sqlite:///flag.db"], "store", "sqlite:///flag.db"),
    ("METROPOLE_DEMO_DAYS", "3", ["run", "--demo-days", "5"], "demo_days", 5),
]

DEMO: list[tuple[str, bool]] = [("1", True), ("true", True), ("yes", True), ("", False), ("0", False),
                                ("on", False),  # this switch never took "on"
                                ("TRUE", False), (" yes", False)]  # nor any case, nor blanks

REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_BROKER_PORT", "http", "METROPOLE_BROKER_PORT='http' is not a whole number"),
    ("METROPOLE_HISTORY_PORT", "", "METROPOLE_HISTORY_PORT='' is not a whole number"),
    ("METROPOLE_DASHBOARD_PORT", "8080.0", "METROPOLE_DASHBOARD_PORT='8080.0' is not a whole number"),
    ("METROPOLE_DEMO_DAYS", "two weeks", "METROPOLE_DEMO_DAYS='two weeks' is not a whole number"),
]

VARIABLES = ("METROPOLE_HOST", "METROPOLE_BROKER_HOST", "METROPOLE_AGENT_HOST", "METROPOLE_DATA", "METROPOLE_BROKER_PORT",
             "METROPOLE_HISTORY_PORT", "METROPOLE_BROKER_STORE", "METROPOLE_DASHBOARD_PORT", "METROPOLE_INDICATORS_TENANT",
             "METROPOLE_INDICATORS_BROKER_URL", "METROPOLE_DEMO", "METROPOLE_DEMO_DAYS")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "argv", "argument", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, argv: list[str], argument: str,
                       expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(build_parser().parse_args(argv), argument) == expected


@pytest.mark.parametrize(("raw", "expected"), DEMO)
def test_the_demo_switch(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    assert read(CommandEnv, {"METROPOLE_DEMO": raw}).demo is expected
    monkeypatch.setenv("METROPOLE_DEMO", raw)
    assert build_parser().parse_args(["run"]).demo is expected


def test_run_starts_the_demo_only_when_asked() -> None:
    """`metropole run` (the README's `make run`) is the platform alone; `run --demo` and `demo` add the fleet.

    `demo` once set its default with set_defaults(demo=True) on the --demo action it shares with `run`
    (argparse parents=[run]), so every `metropole run` started the demo."""
    parser = build_parser()
    assert parser.parse_args(["run"]).demo is False
    assert parser.parse_args(["run", "--demo"]).demo is True
    demo = parser.parse_args(["demo"])
    assert demo.func is cmd_demo and demo.demo is False  # cmd_demo turns it on, then runs `run`


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        build_parser()
    assert str(caught.value) == message


def test_nothing_set_is_the_documented_defaults() -> None:
    run = build_parser().parse_args(["run"])
    assert (run.host, run.data, run.broker_port, run.history_port, run.dashboard_port, run.indicators_tenant,
            run.demo_days) == ("127.0.0.1", "./data", 1026, 8668, 8080, "metropole", 14)
    assert read(CommandEnv, {}).demo is False
    broker = build_parser().parse_args(["broker"])
    assert (broker.host, broker.port, broker.store) == ("127.0.0.1", 1026, None)
    assert build_parser().parse_args(COMPUTE).broker_url == "http://127.0.0.1:1026"
