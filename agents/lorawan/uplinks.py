"""One network-server uplink to its NGSI-LD entities: envelope, codec, profile, mapping; pure, no I/O.

This is what the LoRaWAN transport calls for each message once it has found
the provisioned device by DevEUI (the registry) and its codec (the catalogue):

    uplink = tts.parse_uplink(body, topic)            # or chirpstack.parse_uplink
    outcome = to_entities(uplink, codec, device_id=..., static_attributes=..., period_s=...)
    outcome.error -> a counted, logged rejection with the device and the reason
    outcome.entities -> the outbox

The mapping engine may still raise `agents.messages.Rejected` (a provisioned
static attribute of the wrong type, say), which the ingestor records as for
any other transport.

A device provisioned without a codec is not this function's: the object the
network server's own payload formatter decoded (`Uplink.decoded`: TTS
`decoded_payload`, ChirpStack `object`) is an ordinary JSON measure for the
existing ingest path. The best gateway RSSI goes to the Device entity (`rssi`, dBm).
"""

from __future__ import annotations

from typing import NamedTuple

from agents.lorawan.catalog import Codec
from agents.lorawan.envelope import Uplink
from agents.lorawan.measures import entities
from agents.mapping.timestamps import now_utc
from models.vocabulary import Doc

__all__ = ["Outcome", "to_entities"]


class Outcome(NamedTuple):
    """The entities of one uplink, the warnings worth logging, or why it was refused."""

    entities: list[Doc]
    warnings: tuple[str, ...]
    error: str | None


def to_entities(uplink: Uplink, codec: Codec, *, device_id: str, static_attributes: list[Doc] | None = None,
                period_s: float | None = None) -> Outcome:
    """Decode an uplink with the device's codec and map it through the codec's profile."""
    decoded = codec.decode_uplink(uplink.payload, uplink.fport)
    if decoded.errors:
        return Outcome([], tuple(decoded.warnings), f"{codec.id} on FPort {uplink.fport}: {'; '.join(decoded.errors)}")
    data = dict(decoded.data)
    if uplink.rssi is not None:
        data.setdefault("rssi", uplink.rssi)
    docs, warnings = entities(codec, data, device_id=device_id, observed_at=uplink.received_at or now_utc(),
                              static_attributes=static_attributes, period_s=period_s)
    return Outcome(docs, (*decoded.warnings, *warnings), None)
