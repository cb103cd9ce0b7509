"""A service group's `mqtt_password`: accepted, stored as Mosquitto's `$7$` hash only, never answered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from agents.mqtt_auth import HASH_FIELD, verify_password
from agents.registry import open_registry
from tests.agents.conftest import RunningAgent

GROUP = {"apikey": "aix-air", "resource": "/iot/json", "entity_type": "AirQualityObserved",
         "mqtt_password": "clear-s3cret", "mqtt_username": "aix-air-devices"}
KEY = {"resource": "/iot/json", "apikey": "aix-air"}


def _stored(url: str, apikey: str = "aix-air") -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        registry = open_registry(url)
        await registry.open()
        try:
            group = await registry.get_group("openiot", "/", "/iot/json", apikey)
            assert group is not None
            return group
        finally:
            await registry.close()

    return asyncio.run(read())


def test_mqtt_password_is_stored_hashed_and_never_returned(agent: RunningAgent, iota: httpx.Client) -> None:
    assert iota.post("/iot/services", json={"services": [GROUP]}).status_code == 201
    stored = _stored(agent.settings.registry_url)
    assert stored[HASH_FIELD].startswith("$7$") and verify_password("clear-s3cret", stored[HASH_FIELD])
    assert "mqtt_password" not in stored and "clear-s3cret" not in json.dumps(stored)
    for path, key in (("/iot/services", "services"), ("/iot/groups", "groups")):
        listed = iota.get(path).json()[key]
        assert listed[0]["mqtt_username"] == "aix-air-devices"
        assert "mqtt_password" not in listed[0] and HASH_FIELD not in listed[0]
        assert "clear-s3cret" not in json.dumps(listed) and "$7$" not in json.dumps(listed)

    # an update without it keeps the hash; with it, replaces it; null removes it
    assert iota.put("/iot/services", params=KEY, json={"entity_type": "Thing"}).status_code == 204
    assert _stored(agent.settings.registry_url)[HASH_FIELD] == stored[HASH_FIELD]
    assert iota.put("/iot/services", params=KEY, json={"mqtt_password": "another"}).status_code == 204
    assert verify_password("another", _stored(agent.settings.registry_url)[HASH_FIELD])
    assert iota.put("/iot/services", params=KEY, json={"mqtt_password": None}).status_code == 204
    assert not _stored(agent.settings.registry_url).get(HASH_FIELD)


def test_a_hash_cannot_be_set_through_the_api_nor_a_bad_username(agent: RunningAgent, iota: httpx.Client) -> None:
    smuggled = {**GROUP, "apikey": "k2", HASH_FIELD: "$7$1$AAAA$AAAA"}
    del smuggled["mqtt_password"]
    assert iota.post("/iot/services", json={"services": [smuggled]}).status_code == 201
    assert HASH_FIELD not in _stored(agent.settings.registry_url, "k2")  # only the API's own hashing sets it
    for bad in ({"mqtt_password": 12}, {"mqtt_username": ["x"]}):
        r = iota.post("/iot/services", json={"services": [{**GROUP, "apikey": "k3", **bad}]})
        assert r.status_code == 400 and r.json()["name"] == "WRONG_SYNTAX"
    for name in ("a:b", "two words", "a/b", "#"):
        r = iota.post("/iot/services", json={"services": [{**GROUP, "apikey": "k4", "mqtt_username": name}]})
        assert r.status_code == 400 and r.json()["name"] == "BAD_REQUEST", name
    r = iota.put("/iot/services", params=KEY | {"apikey": "k2"}, json={"mqtt_username": "a:b"})
    assert r.status_code == 400
