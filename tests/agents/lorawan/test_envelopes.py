"""The network servers' envelopes: agents/lorawan/{tts,chirpstack}_vectors.json, from their documentation."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.lorawan import chirpstack, tts
from agents.lorawan.envelope import EnvelopeError, Uplink

HERE = Path(__file__).resolve().parents[3] / "agents" / "lorawan"
FILES = sorted(HERE.glob("*_vectors.json"))


def _params(kind: str) -> list[Any]:
    out = []
    for path in FILES:
        doc = json.loads(path.read_text(encoding="utf-8"))
        for v in doc[kind]:
            assert v["source"] in doc["sources"]
            out.append(pytest.param(doc["module"], v, id=f"{path.stem}:{v['name']}"))
    return out


def _as_dict(up: Uplink) -> dict[str, Any]:
    d = up._asdict()
    d["payload_hex"] = d.pop("payload").hex()
    d["gateways"] = [list(g) for g in up.gateways]
    return {**d, "rssi": up.rssi, "snr": up.snr}


def test_both_network_servers_have_vectors() -> None:
    assert [p.stem for p in FILES] == ["chirpstack_vectors", "tts_vectors"]


@pytest.mark.parametrize(("module", "vector"), _params("uplinks"))
def test_uplink(module: str, vector: dict[str, Any]) -> None:
    parse = importlib.import_module(module).parse_uplink
    body = orjson.dumps(vector["body"])  # as it arrives: bytes
    if "error" in vector:
        with pytest.raises(EnvelopeError, match=None) as info:
            parse(body, vector["topic"])
        assert vector["error"] in str(info.value)
    else:
        assert _as_dict(parse(body, vector["topic"])) == vector["expected"]
        assert _as_dict(parse(vector["body"], vector["topic"])) == vector["expected"]  # a parsed webhook body too


@pytest.mark.parametrize(("module", "vector"), _params("downlinks"))
def test_downlink(module: str, vector: dict[str, Any]) -> None:
    args = dict(vector["args"])
    payload = bytes.fromhex(args.pop("payload_hex"))
    if module.endswith("tts"):
        message = tts.downlink(args.pop("application"), args.pop("tenant"), args.pop("device_id"), args.pop("fport"),
                               payload, **args)
    else:
        message = chirpstack.downlink(args.pop("application"), args.pop("eui"), args.pop("fport"), payload, **args)
    assert message.topic == vector["topic"]
    assert orjson.loads(message.body) == vector["body"]


def test_subscriptions_match_the_uplink_topics() -> None:
    assert tts.subscription("app1", "tenant1") == "v3/app1@tenant1/devices/+/up"
    assert tts.subscription("app1") == "v3/app1/devices/+/up"
    assert tts.topic_ids("v3/app1@tenant1/devices/dev-7/up") == ("app1", "tenant1", "dev-7")
    assert chirpstack.subscription("17c8") == "application/17c8/device/+/event/up"
    assert chirpstack.topic_ids("application/17c8/device/0101010101010101/event/up") == ("17c8", "0101010101010101", "up")


@pytest.mark.parametrize(("body", "reason"), [
    (b"{", "not JSON"),
    (b"[]", "a JSON list, not an object"),
    (b'{"end_device_ids": {"dev_eui": "00"}, "uplink_message": {}}', "DevEUI of 16 hex digits"),
    (b'{"end_device_ids": {"dev_eui": "0004A30B001C0530"}, "uplink_message": {"frm_payload": "gk!e"}}',
     "not valid base64"),
    (b'{"end_device_ids": {"dev_eui": "0004A30B001C0530"}, "uplink_message": {"f_port": 300}}', "f_port must be"),
    (b'{"end_device_ids": {"dev_eui": "0004A30B001C0530"}, "received_at": "yesterday", "uplink_message": {}}',
     "not an RFC 3339 time"),
])
def test_tts_refusals_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        tts.parse_uplink(body)
    assert reason in str(info.value)


def test_downlink_refusals() -> None:
    with pytest.raises(EnvelopeError, match="1..223"):
        tts.downlink("app1", None, "dev1", 0, b"\x01")
    with pytest.raises(EnvelopeError, match="priority"):
        tts.downlink("app1", None, "dev1", 1, b"\x01", priority="URGENT")
    with pytest.raises(EnvelopeError, match="DevEUI"):
        chirpstack.downlink("app", "xyz", 1, b"\x01")
    assert tts.downlink("app1", None, "dev1", 2, b"\x01", replace=True, confirmed=True).topic.endswith("/down/replace")
