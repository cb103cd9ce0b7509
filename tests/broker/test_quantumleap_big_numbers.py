"""Numbers past what a stored instance holds, notified to /v2/notify over a real socket, on both stores.

The notification body is read by json.loads where it holds a run of 19 digits (broker.quantumleap.routes.notify
.parse), which keeps an integer past 64 bits exact: a Text attribute keeps its digits. Every other value is
stored as the NGSI-LD API reads the same number (orjson): an integer past 64 bits as the nearest float, and
one past the float range refused with QuantumLeap's 400 shape. Both were a 500 before (orjson could not
write the instance: "Integer exceeds 64-bit range"), the notification lost.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.broker.test_notifyfast21_http import JSON, _body, _get, _post, _room

BIG = 2**64 + 5  # past what orjson writes as an integer
HUGE = 10**400  # past the float range


def _raw(eid: str, value: Any, kind: str | None) -> bytes:
    attr: dict[str, Any] = {"value": 0} if kind is None else {"type": kind, "value": 0}
    return _body(_room(eid, reading=attr)).replace(b'"value": 0', f'"value": {json.dumps(value)}'.encode())


@pytest.fixture
def service() -> str:
    return f"bn{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("kind", [None, "Unknown", "StructuredValue"])
def test_an_integer_past_64_bits_is_stored_as_its_float(broker_url: str, service: str, kind: str | None) -> None:
    assert _post(broker_url, _raw("B1", BIG, kind), [JSON, ("Fiware-Service", service)])[0] == 200
    status, body = _get(broker_url, "/v2/entities/B1/attrs/reading/value", {"Fiware-Service": service})
    assert status == 200 and body["values"] == [float(BIG)]


def test_nested_integers_past_64_bits_are_floats_too(broker_url: str, service: str) -> None:
    value = {"counts": [1, BIG, {"deep": -BIG}], "label": "x"}
    assert _post(broker_url, _raw("B2", value, "StructuredValue"), [JSON, ("Fiware-Service", service)])[0] == 200
    status, body = _get(broker_url, "/v2/entities/B2/attrs/reading/value", {"Fiware-Service": service})
    assert status == 200 and body["values"] == [{"counts": [1, float(BIG), {"deep": -float(BIG)}], "label": "x"}]


@pytest.mark.parametrize("value", [HUGE, [1, -HUGE]])
def test_a_number_past_the_float_range_is_a_400(broker_url: str, service: str, value: Any) -> None:
    status, _, payload = _post(broker_url, _raw("B3", value, None), [JSON, ("Fiware-Service", service)])
    assert status == 400
    answer = json.loads(payload)
    assert answer["error"] == "Bad Request" and "out of range" in answer["description"]
    assert _get(broker_url, "/v2/entities/B3/attrs/reading/value", {"Fiware-Service": service})[0] == 404


def test_a_text_keeps_the_digits_of_an_integer_past_64_bits(broker_url: str, service: str) -> None:
    assert _post(broker_url, _raw("B4", BIG, "Text"), [JSON, ("Fiware-Service", service)])[0] == 200
    status, body = _get(broker_url, "/v2/entities/B4/attrs/reading/value", {"Fiware-Service": service})
    assert status == 200 and body["values"] == [str(BIG)]


def test_an_ngsi_ld_notification_stores_it_as_its_float_too(broker_url: str, service: str) -> None:
    entity = {"id": "urn:ngsi-ld:Room:B5", "type": "Room",
              "reading": {"type": "Property", "value": 0, "observedAt": "2026-03-01T00:00:05Z"}}
    raw = json.dumps({"id": "urn:n:1", "type": "Notification", "subscriptionId": "urn:s:1",
                      "notifiedAt": "2026-03-01T00:00:06Z", "data": [entity]}).encode()
    raw = raw.replace(b'"value": 0', f'"value": [{BIG}]'.encode())
    assert _post(broker_url, raw, [JSON, ("Fiware-Service", service)])[0] == 200
    status, body = _get(broker_url, "/v2/entities/urn:ngsi-ld:Room:B5/attrs/reading/value", {"Fiware-Service": service})
    assert status == 200 and body["values"] == [[float(BIG)]]
