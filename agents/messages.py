"""The contract between the transports (MQTT, HTTP) and the agent core.

A transport builds an :class:`Inbound` per southbound message and hands it to
``agents.ingest.Ingestor.ingest``, which returns the :class:`EntityUpdate`
list to deliver northbound (through the outbox). Both are named tuples, built
once per message and never changed: a frozen dataclass's __init__ cost 12% of
the agent at full load. :class:`Rejected` is the one error the core raises
internally for bad input; ``Ingestor.ingest`` catches it, records it (log,
counter per reason, dead-letter row) and returns ``[]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["REASONS", "EntityUpdate", "Inbound", "Outcome", "Rejected"]

#: Reason codes a rejection may carry (the label of the rejected counter).
REASONS = (
    "malformed_payload",
    "unknown_apikey",
    "unknown_device",
    "wrong_type",
    "expression_failed",
    "mapping_failed",
    "internal_error",
    "too_large",  # the message is over METROPOLE_AGENT_MAX_MESSAGE_BYTES
    "too_many_attributes",  # over METROPOLE_AGENT_MAX_ATTRIBUTES measures in one message
    "too_long",  # one value over METROPOLE_AGENT_MAX_VALUE_LENGTH (that attribute alone is refused)
    "unsupported_content_type",
    "codec_error",  # a LoRaWAN device's codec refused the payload (agents.ingest_lorawan)
)


class Inbound(NamedTuple):
    """One southbound message as a transport received it."""

    transport: str  # "mqtt" | "http"
    protocol: str  # "json" | "ul" | "lorawan-tts" | "lorawan-chirpstack" (a network server's uplink envelope)
    apikey: str
    device_id: str
    payload: bytes
    received_at: str  # RFC 3339 UTC, when the transport got it
    attribute: str | None = None  # single-attribute topics /<apikey>/<device>/attrs/<attr>
    topic: str | None = None  # MQTT topic or HTTP path, for rejection reports
    size: int = -1  # the message's size when `payload` holds only its start (too large to read), else -1
    service: str | None = None  # the tenant the transport knows it for (a LoRaWAN webhook's fiware-service)
    service_path: str | None = None


class EntityUpdate(NamedTuple):
    """What must reach the NGSI-LD broker.

    `entity` is read-only: the values inside its attributes (a static attribute's, metadata sub-properties)
    may be shared with the device's cached configuration and so with every other update of that device.
    """

    tenant: str  # fiware-service ('' when none)
    service_path: str
    broker_url: str | None  # the group's cbroker, None = the agent's default broker
    entity: dict[str, Any]  # normalized NGSI-LD entity (terms), no "@context" member
    context: list[str]  # @context URLs to send in the Link header (Smart Data Models + core)
    device_id: str
    apikey: str
    # True for the device's own status entity (a profile's `Device`: dateLastValueReported, battery, rssi),
    # which the intake may coalesce per device (METROPOLE_AGENT_DEVICE_STATUS_INTERVAL); never a measure's entity
    status: bool = False


class Rejected(Exception):
    """Bad southbound input, with the reason code it is counted under.

    `attribute` names the one attribute refused when the rest of the message was kept.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        apikey: str = "",
        device_id: str = "",
        topic: str | None = None,
        attribute: str | None = None,
        service: str | None = None,
        service_path: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.apikey = apikey
        self.device_id = device_id
        self.topic = topic
        self.attribute = attribute
        # the tenant, when known before the device's configuration is (an unknown device of a known group)
        self.service = service
        self.service_path = service_path


class Outcome(NamedTuple):
    """What became of one message: its updates, the rejection of the whole, the attributes refused."""

    updates: list[EntityUpdate]
    rejection: Rejected | None = None  # the whole message was refused (updates is empty)
    dropped: tuple[Rejected, ...] = ()  # attributes refused while the others were kept
