"""Random bytes, ports, commands and envelopes: every codec answers with data or a reason, never an exception.

A codec's own bug is caught by the TS013 wrapper and reported as an
`internal codec error`; these tests fail on that too, so a codec that merely
survives by the wrapper does not pass.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.lorawan import chirpstack, tts
from agents.lorawan.catalog import catalog, codec_for
from agents.lorawan.contract import INTERNAL_ERROR, Decoded
from agents.lorawan.envelope import EnvelopeError
from agents.lorawan.measures import entities

CODEC_IDS = sorted(catalog())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENVELOPES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(result: Decoded) -> None:
    assert isinstance(result, Decoded)
    assert not any(e.startswith(INTERNAL_ERROR) for e in result.errors), result.errors
    assert bool(result.errors) != bool(result.data), "data or errors, never both nor neither"
    assert all(isinstance(e, str) and e for e in result.errors)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
@FUZZ
@given(payload=st.binary(max_size=80), fport=st.integers(min_value=-2, max_value=300))
def test_random_bytes_and_ports(codec_id: str, payload: bytes, fport: int) -> None:
    codec = codec_for(codec_id)
    result = codec.decode_uplink(payload, fport)
    _check(result)
    if result.data:
        docs, warnings = entities(codec, result.data, device_id="fuzz", observed_at="2026-11-26T07:00:00Z")
        assert all(isinstance(w, str) for w in warnings)
        assert all(d["id"].startswith("urn:ngsi-ld:") for d in docs)


@pytest.mark.parametrize("codec_id", CODEC_IDS)
@FUZZ
@given(data=st.data())
def test_mutated_documented_payloads(codec_id: str, data: st.DataObject) -> None:
    """Documented payloads with bytes flipped, cut or appended: nearer the format than random bytes."""
    from tests.agents.lorawan.test_catalog import _vectors_of

    vectors = [v for v in _vectors_of(codec_for(codec_id))["vectors"] if "output" in v]
    vector = data.draw(st.sampled_from(vectors))
    payload = bytearray.fromhex(vector["input_hex"])
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    payload = payload[:data.draw(st.integers(0, len(payload)))] + data.draw(st.binary(max_size=4))
    _check(codec_for(codec_id).decode_uplink(bytes(payload), vector["fport"]))


@pytest.mark.parametrize("codec_id", [c for c in CODEC_IDS if codec_for(c).encode_downlink is not None])
@FUZZ
@given(command=st.dictionaries(st.sampled_from(["command", "parameter", "report_interval", "reboot", "weighting",
                                                "transmit_interval", "x"]),
                               st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                                         st.text(max_size=12), st.dictionaries(st.text(max_size=9), st.text(max_size=3)),
                                         st.sampled_from(["set period", "reset", "set adr on"])), max_size=3))
def test_random_downlink_commands(codec_id: str, command: dict[str, Any]) -> None:
    encoded = codec_for(codec_id).encode_downlink(command)  # type: ignore[misc]
    assert not any(e.startswith(INTERNAL_ERROR) for e in encoded.errors), encoded.errors
    assert bool(encoded.errors) != bool(encoded.payload)
    if encoded.payload:
        assert 1 <= encoded.fport <= 223 and len(encoded.payload) <= 51  # fits the smallest LoRaWAN downlink


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                    max_leaves=25)
TTS_LIKE = st.fixed_dictionaries({"end_device_ids": st.fixed_dictionaries(
    {"dev_eui": st.sampled_from(["0004A30B001C0530", "00", None]), "device_id": JSON}),
    "uplink_message": st.dictionaries(st.sampled_from(["f_port", "f_cnt", "frm_payload", "decoded_payload",
                                                        "rx_metadata", "received_at"]), JSON)})
CS_LIKE = st.fixed_dictionaries({"deviceInfo": st.fixed_dictionaries(
    {"devEui": st.sampled_from(["0101010101010101", "zz", None]), "applicationId": JSON}),
    "fPort": JSON, "data": JSON, "rxInfo": JSON, "time": JSON, "object": JSON})


@ENVELOPES
@given(body=st.one_of(JSON, TTS_LIKE, st.binary(max_size=60)))
def test_random_tts_envelopes(body: Any) -> None:
    try:
        up = tts.parse_uplink(body if isinstance(body, (bytes, dict)) else repr(body).encode())
    except EnvelopeError:
        return
    assert len(up.dev_eui) == 16 and 0 <= up.fport <= 255 and isinstance(up.payload, bytes)


@ENVELOPES
@given(body=st.one_of(JSON, CS_LIKE, st.binary(max_size=60)))
def test_random_chirpstack_envelopes(body: Any) -> None:
    try:
        up = chirpstack.parse_uplink(body if isinstance(body, (bytes, dict)) else repr(body).encode())
    except EnvelopeError:
        return
    assert len(up.dev_eui) == 16 and 0 <= up.fport <= 255 and isinstance(up.payload, bytes)
