"""One embedded broker on a real socket (SQLite) and one probe run of it, shared by the compliance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.settings import BrokerSettings
from compliance.probe import NotificationReceiver, Probe, ProbeReport
from tests.broker.conftest import RunningBroker, free_port


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the embedded broker, served by uvicorn on a free port."""
    data: Path = tmp_path_factory.mktemp("compliance-broker")
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data,
                              store_url=f"sqlite:///{data / 'broker.db'}")
    with RunningBroker(settings) as broker:
        yield broker.url


@pytest.fixture(scope="session")
def probe_report(embedded_broker: str) -> ProbeReport:
    """Every check of `metropole check broker` against the embedded broker."""
    with NotificationReceiver() as receiver:
        return Probe(embedded_broker, receiver=receiver, notification_timeout=5).run()
