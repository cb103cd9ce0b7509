"""The variables behind the `metropole` command's flag defaults, read through pydantic-settings (web/settings.py).

    METROPOLE_HOST / METROPOLE_BROKER_HOST / METROPOLE_AGENT_HOST   --host of run / broker / agent (127.0.0.1)
    METROPOLE_DATA                      --data (./data)
    METROPOLE_BROKER_PORT               --broker-port of run, --port of broker (1026)
    METROPOLE_HISTORY_PORT              --history-port (8668; 0 turns it off)
    METROPOLE_BROKER_STORE              --store of broker (default DATA/broker.db)
    METROPOLE_DASHBOARD_PORT            --dashboard-port (8080; 0 turns it off)
    METROPOLE_INDICATORS_TENANT         --indicators-tenant, --tenant of indicators compute (metropole)
    METROPOLE_INDICATORS_BROKER_URL     --broker-url of indicators compute (http://127.0.0.1:1026)
    METROPOLE_DEMO                      --demo when 1, true or yes (exactly these, as always)
    METROPOLE_DEMO_DAYS                 --demo-days (14)

A flag given on the command line wins; the variable only sets its default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from web.settings import EnvInt, EnvSettings, read


def _demo(raw: object) -> object:
    # the one switch that never took "on" nor any case: kept so
    return raw in ("1", "true", "yes") if isinstance(raw, str) else raw


class CommandEnv(EnvSettings):
    """The flag defaults of `metropole run|demo|broker|agent|indicators`, each from its variable."""

    host: str = Field("127.0.0.1", validation_alias="METROPOLE_HOST")
    broker_host: str = Field("127.0.0.1", validation_alias="METROPOLE_BROKER_HOST")
    agent_host: str = Field("127.0.0.1", validation_alias="METROPOLE_AGENT_HOST")
    data: str = Field("./data", validation_alias="METROPOLE_DATA")
    broker_port: EnvInt = Field(1026, validation_alias="METROPOLE_BROKER_PORT")
    history_port: EnvInt = Field(8668, validation_alias="METROPOLE_HISTORY_PORT")
    broker_store: str | None = Field(None, validation_alias="METROPOLE_BROKER_STORE")
    dashboard_port: EnvInt = Field(8080, validation_alias="METROPOLE_DASHBOARD_PORT")
    indicators_tenant: str = Field("metropole", validation_alias="METROPOLE_INDICATORS_TENANT")
    indicators_broker_url: str = Field("http://127.0.0.1:1026", validation_alias="METROPOLE_INDICATORS_BROKER_URL")
    demo: Annotated[bool, BeforeValidator(_demo)] = Field(False, validation_alias="METROPOLE_DEMO")
    demo_days: EnvInt = Field(14, validation_alias="METROPOLE_DEMO_DAYS")


def command_env() -> CommandEnv:
    """The flag defaults from os.environ; SettingsError (one line, naming the variable) for a bad value."""
    return read(CommandEnv)
