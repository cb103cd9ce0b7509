"""/metrics, /health and /ready of the broker and of the history port, over real sockets, on both stores."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.app import create_app
from broker.quantumleap import create_quantumleap_app
from broker.settings import BrokerSettings
from broker.state import state_source
from tests.pg import store_url
from tests.web.conftest import ServedTogether, free_port
from web.health import readiness


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("ops")
    with store_url(request.param, data / "broker.db", "ops") as store:
        port = free_port()
        app = create_app(BrokerSettings(host="127.0.0.1", port=port, data_dir=data, store_url=store))
        history = create_quantumleap_app(state_source(app))
        with ServedTogether((app, "on", port), (history, "off", None)) as (broker_url, history_url):
            yield broker_url, history_url


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_store_calls_queue_and_history_lag(servers: tuple[str, str]) -> None:
    broker, _ = servers
    route = "/ngsi-ld/v1/entities/{entity_id}"
    before = httpx.get(f"{broker}/metrics").text
    eid = f"urn:ngsi-ld:Ops:{uuid.uuid4().hex[:8]}"
    assert httpx.get(f"{broker}/ngsi-ld/v1/entities/{eid}").status_code == 404
    assert httpx.post(f"{broker}/ngsi-ld/v1/entities", json={"id": eid, "type": "Ops"}).status_code == 201
    assert httpx.get(f"{broker}/ngsi-ld/v1/entities/{eid}").status_code == 200
    after = httpx.get(f"{broker}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for status in ("404", "200"):
        delta = _value(text, "metropole_http_requests_total", server="broker", route=route, status=status) \
            - _value(before, "metropole_http_requests_total", server="broker", route=route, status=status)
        assert delta == 1, (status, delta)
    assert _value(text, "metropole_http_request_duration_seconds_count", route=route, method="GET") >= 2
    assert _value(text, "metropole_store_operations_total", operation="get", outcome="ok") \
        > _value(before, "metropole_store_operations_total", operation="get", outcome="ok")
    assert re.search(r"^metropole_notification_queue_length \d", text, flags=re.MULTILINE)
    assert re.search(r"^metropole_history_lag_records \d", text, flags=re.MULTILINE)
    assert eid not in text, "ids never become label values"


def test_health_and_readiness_on_both_ports(servers: tuple[str, str]) -> None:
    broker, history = servers
    assert httpx.get(f"{broker}/health").json() == {"status": "pass"}
    ready = httpx.get(f"{broker}/ready")
    assert ready.status_code == 200 and ready.headers["content-type"] == "application/health+json"
    assert set(ready.json()["checks"]) == {"store", "subscriptions", "history"}
    assert httpx.get(f"{history}/ready").json()["status"] == "pass"
    assert httpx.get(f"{history}/health").json() == {"status": "pass"}, "QuantumLeap's own /health answers"
    assert _value(httpx.get(f"{broker}/metrics").text, "metropole_http_requests_total", server="history") >= 1


def test_a_failing_or_silent_part_makes_readiness_fail_with_the_reason() -> None:
    import asyncio

    async def ok() -> None:
        return None

    async def down() -> str:
        return "not connected to the MQTT broker"

    async def broken() -> None:
        raise ConnectionRefusedError("store refused")

    async def silent() -> None:
        await asyncio.Event().wait()

    ready, body = asyncio.run(readiness({"a": ok, "b": down, "c": broken, "d": silent}, timeout=0.2))
    assert not ready and body["status"] == "fail"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["a"] == [{"status": "pass"}]
    assert checks["b"][0]["output"] == "not connected to the MQTT broker"
    assert "store refused" in checks["c"][0]["output"] and "0.2s" in checks["d"][0]["output"]


def test_secrets_are_redacted_and_scrubbed(tmp_path: Path) -> None:
    import logging

    from web.secrets import ScrubFilter, redact_url, scrub

    url = "postgresql://app:Sup3r-S3cret@db:5432/metropole?schema=x&sslpassword=K3yPass"
    shown = redact_url(url)
    assert "Sup3r-S3cret" not in shown and "K3yPass" not in shown and "app:***@db:5432" in shown
    assert scrub("connect failed for Sup3r-S3cret") == "connect failed for ***"
    for plain in ("sqlite:///tmp/x/broker.db", "sqlite:////abs.db", "postgresql://postgres@127.0.0.1:5432/p?schema=x"):
        assert redact_url(plain) == plain, "a URL without secrets is shown as given"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "dsn %s", ("postgresql://app:Sup3r-S3cret@db",), None)
    ScrubFilter().filter(record)
    assert "Sup3r-S3cret" not in record.getMessage()
