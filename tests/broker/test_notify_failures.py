"""POST /v2/notify's failures answered alike by the broker's fast route and by the router's whole path.

A failure below the handler is the mounted QuantumLeap app's 500 in QuantumLeap's shape, and a body nested
deeper than json.loads recurses is QuantumLeap's invalid-JSON 400 (it was a 500: found in issue 16, serve22), on
both paths, over real sockets (test_fast_routes.Pair: a fast and a normal app over one state). Every other
/v2/notify case is compared byte for byte in test_fast_routes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from broker.quantumleap.service import QuantumLeapService
from tests.broker.test_fast_routes import Pair, _exchange

JSON = [("Content-Type", "application/json")]
NOTIFICATION = orjson.dumps({"data": [{"id": "urn:x:failures1", "type": "Room", "temperature": {"type": "Number", "value": 1},
                                       "TimeInstant": {"type": "DateTime", "value": "2026-03-01T00:00:00Z"}}]})
# JSON nested deeper than json.loads recurses (orjson refuses it first): QuantumLeap's 400, on either path
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with Pair(tmp_path_factory.mktemp("notify-failures")) as running:
        yield running


def test_an_unexpected_failure_is_answered_as_the_whole_stack_answers_it(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected below the handler")

    # a failure injected below the route (the history service): bad input from a client is a 400, not a way here
    monkeypatch.setattr(QuantumLeapService, "notify", failing)
    slow = _exchange(pair.ports[1], "POST", "/v2/notify", NOTIFICATION, JSON)
    fast = _exchange(pair.ports[0], "POST", "/v2/notify", NOTIFICATION, JSON)
    assert slow[0] == 500
    assert orjson.loads(slow[2])["error"] == "Internal Error"
    assert fast == slow
    monkeypatch.undo()
    assert _exchange(pair.ports[0], "POST", "/v2/notify", NOTIFICATION, JSON)[0] == 200  # still serving


def test_json_nested_too_deep_is_a_400_on_either_path(pair: Pair) -> None:
    # json.loads' RecursionError was a 500 (bad input answered as a crash); now QuantumLeap's invalid-JSON 400
    slow = _exchange(pair.ports[1], "POST", "/v2/notify", DEEP, JSON)
    fast = _exchange(pair.ports[0], "POST", "/v2/notify", DEEP, JSON)
    assert slow[0] == 400
    assert orjson.loads(slow[2]) == {"error": "Bad Request", "description": "Request body is not valid JSON"}
    assert fast == slow
