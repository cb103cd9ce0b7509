"""POST /v2/notify over a real socket, on both stores: what its handler reads from the request itself since
issue 16's notifyfast21 (headers from the scope in one pass, the body by orjson, the answer made once).

Headers: the first of a repeated header counts (as Starlette's `Headers.get`), NGSILD-Tenant before
Fiware-Service, tenants folded to lower case, service paths one or one per entity, the time index header.
Bodies: numbers orjson would read otherwise (integers past 64 bits) and bodies only json.loads reads (a
UTF-8 byte order mark) are stored as before; the errors keep QuantumLeap's shapes. The answer's bytes, the
body limit's 413 and the metrics label are those of the route.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

OK = b"Notification successfully processed"


def _post(url: str, body: bytes | None, headers: list[tuple[str, str]], path: str = "/v2/notify") -> Any:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _get(url: str, path: str, headers: dict[str, str]) -> Any:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload and response.status != 404 else payload)
    finally:
        conn.close()


def _room(eid: str, **attrs: Any) -> dict[str, Any]:
    return {"id": eid, "type": "Room", "TimeInstant": {"type": "DateTime", "value": "2026-03-01T00:00:05Z"}, **attrs}


def _body(*entities: dict[str, Any]) -> bytes:
    return json.dumps({"subscriptionId": "s", "data": list(entities)}).encode()


JSON = ("Content-Type", "application/json")


@pytest.fixture
def service() -> str:
    return f"nf{uuid.uuid4().hex[:10]}"


def test_the_answer_is_the_routes_bytes(broker_url: str, service: str) -> None:
    status, headers, payload = _post(broker_url, _body(_room("R1", t={"type": "Number", "value": 1})),
                                     [JSON, ("Fiware-Service", service)])
    assert (status, payload) == (200, OK)
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(OK))


def test_the_first_of_repeated_headers_counts(broker_url: str, service: str) -> None:
    other = service + "x"
    status, _, _ = _post(broker_url, _body(_room("R1", t={"type": "Number", "value": 1})),
                         [JSON, ("Fiware-Service", service), ("Fiware-Service", other),
                          ("Fiware-ServicePath", "/a"), ("Fiware-ServicePath", "/b")])
    assert status == 200
    assert _get(broker_url, "/v2/entities/R1/attrs/t/value", {"Fiware-Service": service})[1]["values"] == [1.0]
    assert _get(broker_url, "/v2/entities/R1/attrs/t", {"Fiware-Service": other})[0] == 404
    assert _get(broker_url, "/v2/entities/R1/attrs/t", {"Fiware-Service": service, "Fiware-ServicePath": "/a"})[0] == 200
    assert _get(broker_url, "/v2/entities/R1/attrs/t", {"Fiware-Service": service, "Fiware-ServicePath": "/b"})[0] == 404


def test_ngsild_tenant_before_fiware_service_and_tenants_fold_case(broker_url: str, service: str) -> None:
    status, _, _ = _post(broker_url, _body(_room("R2", t={"type": "Number", "value": 2})),
                         [JSON, ("Fiware-Service", service + "y"), ("NGSILD-Tenant", service.upper())])
    assert status == 200
    assert _get(broker_url, "/v2/entities/R2/attrs/t/value", {"Fiware-Service": service})[1]["values"] == [2.0]
    assert _get(broker_url, "/v2/entities/R2/attrs/t", {"Fiware-Service": service + "y"})[0] == 404


def test_one_service_path_per_entity_and_the_time_index_header(broker_url: str, service: str) -> None:
    body = _body(_room("R3", t={"type": "Number", "value": 3}, seen={"type": "DateTime", "value": "2026-04-01T00:00:00Z"}),
                 _room("R4", t={"type": "Number", "value": 4}))
    status, _, _ = _post(broker_url, body, [JSON, ("Fiware-Service", service), ("Fiware-ServicePath", "/x, /y"),
                                            ("Fiware-TimeIndex-Attribute", "seen")])
    assert status == 200
    found = _get(broker_url, "/v2/entities/R3/attrs/t", {"Fiware-Service": service, "Fiware-ServicePath": "/x"})[1]
    assert found["index"] == ["2026-04-01T00:00:00.000+00:00"]
    assert _get(broker_url, "/v2/entities/R4/attrs/t", {"Fiware-Service": service, "Fiware-ServicePath": "/x"})[0] == 404
    assert _get(broker_url, "/v2/entities/R4/attrs/t", {"Fiware-Service": service, "Fiware-ServicePath": "/y"})[0] == 200


@pytest.mark.parametrize(("headers", "status", "error"), [
    ([("Fiware-ServicePath", "/a,/b,/c")], 400, "InvalidHeaderValue"),
    ([("Fiware-ServicePath", "nope")], 400, "InvalidHeaderValue"),
    ([("Fiware-Service", "bad service!")], 400, "InvalidHeaderValue"),
    ([("NGSILD-Tenant", "bad/tenant"), ("Fiware-Service", "good")], 400, "InvalidHeaderValue"),
])
def test_header_errors_keep_quantumleaps_shape(broker_url: str, headers: list[tuple[str, str]], status: int,
                                               error: str) -> None:
    code, answer, payload = _post(broker_url, _body(_room("R5", t={"type": "Number", "value": 1}),
                                                    _room("R6", t={"type": "Number", "value": 1})), [JSON, *headers])
    assert code == status
    assert answer["content-type"] == "application/json"
    assert json.loads(payload)["error"] == error


@pytest.mark.parametrize(("body", "content_type", "status", "description"), [
    (b"{", "application/json", 400, "Request body is not valid JSON"),
    (b"NaN", "application/json", 400, "'data' is a required property"),
    (b"", "application/json", 400, "Discarding notification due to lack of request body. Lost in a redirect maybe?"),
    (b'{"data": []}', "text/plain", 415, "Invalid Content-type (text/plain), expected JSON data"),
    (b'{"data": [{"id": "x"}]}', "application/json", 400, "Entity id and type are required in notifications"),
    (b'{"data": [1]}', "application/vnd.x+json", 400, "Entity id and type are required in notifications"),
    (b'{"data": {}}', "application/json", 400, "'data' is a required property"),
    (b'"\\ud800"', "application/json", 400, "'data' is a required property"),
    (b"\xff\xfe{", "application/json", 400, "Request body is not valid JSON"),
])
def test_body_errors_keep_quantumleaps_shape(broker_url: str, body: bytes, content_type: str, status: int,
                                             description: str) -> None:
    code, _, payload = _post(broker_url, body, [("Content-Type", content_type)])
    assert code == status
    assert json.loads(payload)["description"] == description


def test_integers_past_64_bits_and_a_byte_order_mark_are_read_as_json_loads_reads_them(broker_url: str,
                                                                                           service: str) -> None:
    big = 2**64 + 5  # orjson would read a float: its text would be 1.8446744073709552e+19
    raw = _body(_room("R7", label={"type": "Text", "value": 0})).replace(b'"value": 0', f'"value": {big}'.encode())
    assert _post(broker_url, raw, [JSON, ("Fiware-Service", service)])[0] == 200
    assert _get(broker_url, "/v2/entities/R7/attrs/label/value", {"Fiware-Service": service})[1]["values"] == [str(big)]
    bom = b"\xef\xbb\xbf" + _body(_room("R8", t={"type": "Number", "value": 8}))
    assert _post(broker_url, bom, [JSON, ("Fiware-Service", service)])[0] == 200
    assert _get(broker_url, "/v2/entities/R8/attrs/t/value", {"Fiware-Service": service})[1]["values"] == [8.0]


def _notify_count(url: str) -> int:
    """metropole_http_requests_total of POST /v2/notify answered 200, from the broker's /metrics."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        exposition = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = re.search(r'metropole_http_requests_total\{method="POST",route="/v2/notify",server="broker",'
                      r'status="200"\} ([0-9.e+]+)', exposition)
    return int(float(found.group(1))) if found else 0


def test_a_body_past_the_limit_is_413_and_the_route_is_labelled(broker_url: str, service: str) -> None:
    parts = urlsplit(broker_url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
    try:  # the declared length alone is refused: the body is never sent
        conn.putrequest("POST", "/v2/notify")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(8 * 1024 * 1024 + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413  # the broker's RequestLimits, before the mount (its ProblemDetails)
        response.read()
    finally:
        conn.close()
    before = _notify_count(broker_url)
    assert _post(broker_url, _body(_room("R9", t={"type": "Number", "value": 9})), [JSON, ("Fiware-Service", service)])[0] == 200
    assert _notify_count(broker_url) == before + 1
