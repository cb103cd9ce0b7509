"""Which brokers a service group's `cbroker` may name (issue 17: it could be any URL, and the agent then
posted device data there): METROPOLE_AGENT_CBROKER_ALLOWED, by default the agent's own broker only; and
the provisioning API's body limit (METROPOLE_AGENT_MAX_PROVISIONING_BYTES)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from agents.ingest import Ingestor
from agents.messages import Inbound
from agents.metrics import Metrics
from agents.provisioning.hooks import Hooks
from agents.registry import open_registry
from agents.settings import AgentSettings
from tests.agents.conftest import RunningAgent
from tests.hardening.test_hostile_input import _raw_post

HEADERS = {"fiware-service": "aix", "fiware-servicepath": "/"}


def group(cbroker: str, apikey: str = "k1") -> dict[str, Any]:
    return {"services": [{"apikey": apikey, "cbroker": cbroker, "entity_type": "Thing", "resource": "/iot/json"}]}


def test_the_default_is_the_agents_own_broker_only() -> None:
    s = AgentSettings(broker_url="http://orion:1026")
    assert s.allowed_cbrokers() == frozenset({"http://orion:1026"})
    assert AgentSettings(broker_url="https://b.example/", cbroker_allowed="").allowed_cbrokers() == frozenset(
        {"https://b.example:443"})
    assert AgentSettings(cbroker_allowed="*").allowed_cbrokers() is None
    assert AgentSettings(cbroker_allowed="http://A:1026, https://b.example").allowed_cbrokers() == frozenset(
        {"http://a:1026", "https://b.example:443"})


def test_env_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_AGENT_CBROKER_ALLOWED", "http://orion-ld:1026")
    assert AgentSettings.from_env().allowed_cbrokers() == frozenset({"http://orion-ld:1026"})


def test_provisioning_refuses_a_cbroker_not_allowed(registry_url: str) -> None:
    hooks = Hooks(allowed_cbrokers=AgentSettings(broker_url="http://127.0.0.1:1026").allowed_cbrokers())
    with RunningAgent(registry_url, hooks=hooks) as agent, httpx.Client(base_url=agent.url, headers=HEADERS,
                                                                        timeout=30) as iota:
        for url in ("http://attacker.example:1026", "http://127.0.0.1:6379", "http://169.254.169.254/latest"):
            r = iota.post("/iot/services", json=group(url))
            assert r.status_code == 400, r.text
            assert "cbroker" in r.json()["message"] and "METROPOLE_AGENT_CBROKER_ALLOWED" in r.json()["message"]
        assert iota.post("/iot/services", json=group("http://127.0.0.1:1026")).status_code == 201
        r = iota.put("/iot/services", params={"resource": "/iot/json", "apikey": "k1"},
                     json={"cbroker": "http://attacker.example"})
        assert r.status_code == 400
        assert iota.get("/iot/services").json()["services"][0]["cbroker"] == "http://127.0.0.1:1026"


def test_a_stored_group_with_a_cbroker_not_allowed_gets_no_device_data(registry_url: str) -> None:
    # a group written before the policy (or straight into a shared registry): its measures are rejected
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            await registry.create_groups("aix", "/", [{"apikey": "k1", "resource": "/iot/json", "entity_type": "Thing",
                                                       "cbroker": "http://attacker.example", "service": "aix",
                                                       "subservice": "/"}])
            metrics = Metrics()
            ingestor = Ingestor(registry, metrics, AgentSettings(),
                                allowed_cbrokers=AgentSettings().allowed_cbrokers())
            assert await ingestor.ingest(Inbound("http", "json", "k1", "aix-01", b'{"t": 1}', "2026-11-26T07:00:00Z")) == []
            assert metrics.get("metropole_agent_messages_rejected_total").get(reason="cbroker_not_allowed") == 1  # type: ignore[union-attr]
        finally:
            await registry.close()

    asyncio.run(main())


def test_a_provisioning_body_past_the_limit_is_a_413(registry_url: str) -> None:
    # issue 17: limits on every API; the provisioning API answers in the FIWARE agents' shape, before
    # reading the body whole (a raw socket: the server answers and closes while the client still sends)
    with RunningAgent(registry_url) as agent, httpx.Client(base_url=agent.url, headers=HEADERS, timeout=30) as iota:
        status, body = _raw_post(agent.url, "/iot/devices", HEADERS, b'{"devices": [', 9 << 20)
        assert status == 413, body[:200]
        assert json.loads(body)["name"] == "REQUEST_ENTITY_TOO_LARGE"
        assert iota.get("/iot/devices").json()["count"] == 0
