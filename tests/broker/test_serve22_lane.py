"""The broker's lane into the mounted /v2 app (web.fastroutes._Lane, issue 16, serve22).

POST /v2/notify on the broker's port is served by the mounted QuantumLeap app's own FastRoutes without
the mounted app's outer layers (FastAPI.__call__, ServerErrorMiddleware's twin, ExceptionTelemetry,
AppBodyLimit, ResourcePaths): the tests hold that it is taken, that other /v2 requests still go the
whole way, and that an unexpected failure in the handler is answered as the whole stack answers it
(the mounted app's 500 in QuantumLeap's shape). Every other /v2/notify case is compared byte for byte
with the router's path in test_fast_routes.py, whose `Pair` (a fast and a normal app over one state,
real sockets) is used here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.routing import Mount

from broker.quantumleap.service import QuantumLeapService
from tests.broker.test_fast_routes import Pair, _exchange, _middlewares
from web.fastroutes import FastRoutes

JSON = [("Content-Type", "application/json")]
NOTIFICATION = orjson.dumps({"data": [{"id": "urn:x:lane1", "type": "Room", "temperature": {"type": "Number", "value": 1},
                                       "TimeInstant": {"type": "DateTime", "value": "2026-03-01T00:00:00Z"}}]})
# JSON nested deeper than json.loads recurses (orjson refuses it first): QuantumLeap's 400, on either path
DEEP = b"[" * 100_000 + b"]" * 100_000


class Counting:
    """Stands in front of the mounted app's built stack and counts the requests that went through it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with Pair(tmp_path_factory.mktemp("lane")) as running:
        yield running


def _history(pair: Pair) -> Any:
    return next(r.app for r in pair.fast_app.router.routes if isinstance(r, Mount) and r.path == "/v2")


def test_notify_takes_the_lane_and_other_history_requests_the_whole_stack(pair: Pair) -> None:
    for _ in range(2):  # the first builds the mounted app's stack (the normal way), the second finds the lane
        assert _exchange(pair.ports[0], "POST", "/v2/notify", NOTIFICATION, JSON)[0] == 200
    history = _history(pair)
    outer = next(m for m in _middlewares(pair.fast_app) if isinstance(m, FastRoutes))
    counting = Counting(history.middleware_stack)
    history.middleware_stack = counting
    try:
        assert _exchange(pair.ports[0], "POST", "/v2/notify", NOTIFICATION, JSON)[0] == 200
        assert counting.calls == 0, "POST /v2/notify went through the mounted app's whole stack"
        for method, path in (("GET", "/v2/version"), ("OPTIONS", "/v2/notify"), ("GET", "/v2/notify"),
                             ("POST", "/v2/notify/x")):
            before = counting.calls
            _exchange(pair.ports[0], method, path, None, [])
            assert counting.calls == before + (method != "OPTIONS"), f"{method} {path}"  # OPTIONS: the broker's answer
    finally:
        history.middleware_stack = counting.app
    lane = next(lane for lane in outer.lanes.values() if lane is not None)
    assert lane.app is history
    assert lane.inner is next(m for m in _middlewares(history) if isinstance(m, FastRoutes))


def test_an_unexpected_failure_is_answered_as_the_whole_stack_answers_it(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected below the handler")

    # a failure injected below the route (the history service), the one way left to reach the error handler
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
