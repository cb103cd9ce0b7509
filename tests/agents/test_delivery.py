"""agents.delivery against a scripted NGSI-LD broker (httpx MockTransport): order, 207, bisection, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from adapters.ngsild import NgsiLdClient
from adapters.outbox import Outbox, OutboxItem
from agents.delivery import Delivery, DeliveryOptions, _waves
from agents.metrics import Metrics

BAD = {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Bad request data", "status": 400,
       "detail": "no2 must be a number"}


def row(device: str, n: Any) -> OutboxItem:
    return OutboxItem("", "aix", ("https://smartdatamodels.org/context.jsonld",), device,
                      {"id": f"urn:x:{device}", "type": "T", "no2": {"type": "Property", "value": n}}, time.time())


NOT_FOUND = {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "title": "Not found", "status": 404,
             "detail": "no such entity"}


def deliver(tmp_path: Path, items: list[OutboxItem], handler: Callable[[list[dict[str, Any]]], httpx.Response],
            cycles: int = 20, reads: Callable[[], httpx.Response] = lambda: httpx.Response(404, json=NOT_FOUND),
            repeats: int = 1) -> tuple[Outbox, list[list[Any]], Metrics]:
    outbox = Outbox(tmp_path / "o.db")
    outbox.append(items)
    sent: list[list[Any]] = []

    def transport(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the delivery's harmless read: does the broker answer at all?
            return reads()
        body = orjson.loads(request.content)
        sent.append([(e["id"], e["no2"]["value"]) for e in body])
        return handler(body)

    metrics = Metrics()

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(transport))
        d = Delivery(outbox, NgsiLdClient("http://broker", http=http),
                     options=DeliveryOptions(batch_size=100, backoff_initial=0.01, backoff_max=0.05, repeats=repeats),
                     metrics=metrics)
        for _ in range(cycles):
            if await d.deliver_once() == 0:
                if outbox.depth == 0:
                    break
                await asyncio.sleep(0.06)
        await http.aclose()

    asyncio.run(go())
    return outbox, sent, metrics


def test_waves_keep_each_entity_once_per_request_in_order() -> None:
    from adapters.outbox import Leased

    rows = [Leased(i, row(d, i), 0) for i, d in enumerate(["a", "b", "a", "a", "c"])]
    assert [[r.seq for r in w] for w in _waves(rows)] == [[0, 1, 4], [2], [3]]


def test_waves_with_repeats_carry_consecutive_instances_of_an_entity_in_order() -> None:
    from adapters.outbox import Leased

    rows = [Leased(i, row(d, i), 0) for i, d in enumerate(["a", "b", "a", "a", "c"])]
    assert [[r.seq for r in w] for w in _waves(rows, 2)] == [[0, 1, 2, 4], [3]]


def test_one_fast_device_goes_out_in_one_request_with_repeats(tmp_path: Path) -> None:
    outbox, sent, _ = deliver(tmp_path, [row("a", n) for n in range(5)] + [row("b", 0)],
                              lambda body: httpx.Response(204), repeats=10)
    assert sent == [[("urn:x:a", n) for n in range(5)] + [("urn:x:b", 0)]]
    assert outbox.depth == 0


def test_an_error_for_a_repeated_entity_sends_its_instances_again_one_by_one(tmp_path: Path) -> None:
    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        errors = [{"entityId": e["id"], "error": BAD} for e in body if e["no2"]["value"] == "x"]
        ok = [e["id"] for e in body if e["no2"]["value"] != "x"]
        return httpx.Response(207, json={"success": ok, "errors": errors}) if errors else httpx.Response(204)

    outbox, sent, _ = deliver(tmp_path, [row("a", 1), row("a", "x"), row("a", 3), row("b", 1)], handler, repeats=10)
    assert sent == [[("urn:x:a", 1), ("urn:x:a", "x"), ("urn:x:a", 3), ("urn:x:b", 1)],
                    [("urn:x:a", 1)], [("urn:x:a", "x")], [("urn:x:a", 3)]]  # b is not sent again
    assert outbox.depth == 0
    assert [d.item.entity["no2"]["value"] for d in outbox.dead_letters()] == ["x"]


def test_a_retryable_error_for_a_repeated_entity_retries_its_instances_together(tmp_path: Path) -> None:
    failures = {"n": 1}
    internal = {"type": "https://uri.etsi.org/ngsi-ld/errors/InternalError", "title": "t", "detail": "db"}

    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if failures["n"] and any(e["no2"]["value"] == 2 for e in body):
            failures["n"] -= 1
            return httpx.Response(207, json={"success": [], "errors": [{"entityId": "urn:x:a", "error": internal}]})
        return httpx.Response(204)

    outbox, sent, _ = deliver(tmp_path, [row("a", n) for n in range(1, 5)], handler, repeats=10)
    assert outbox.depth == 0 and not outbox.dead_letters()
    assert sent == [[("urn:x:a", n) for n in range(1, 5)]] * 2  # again, in order, none overtaking another


def test_measures_of_one_entity_arrive_in_order(tmp_path: Path) -> None:
    outbox, sent, metrics = deliver(tmp_path, [row("a", 1), row("b", 1), row("a", 2), row("a", 3)],
                                    lambda body: httpx.Response(204))
    assert sent == [[("urn:x:a", 1), ("urn:x:b", 1)], [("urn:x:a", 2)], [("urn:x:a", 3)]]
    assert outbox.depth == 0
    assert metrics.get("metropole_agent_delivered_total").get() == 4  # type: ignore[union-attr]


def test_207_dead_letters_bad_data_and_delivers_the_rest(tmp_path: Path) -> None:
    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        errors = [{"entityId": e["id"], "error": BAD} for e in body if e["no2"]["value"] == "x"]
        ok = [e["id"] for e in body if e["no2"]["value"] != "x"]
        return httpx.Response(207, json={"success": ok, "errors": errors}) if errors else httpx.Response(204)

    outbox, _, _ = deliver(tmp_path, [row("a", 1), row("b", "x"), row("c", 3)], handler)
    assert outbox.depth == 0
    (dead,) = outbox.dead_letters()
    assert dead.item.device == "b" and dead.problem == BAD


def test_a_whole_request_400_is_bisected_down_to_the_guilty_entity(tmp_path: Path) -> None:
    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if any(e["no2"]["value"] == "x" for e in body):
            return httpx.Response(400, json=BAD)
        return httpx.Response(204)

    outbox, _, _ = deliver(tmp_path, [row(d, "x" if d == "c" else 1) for d in "abcdefg"], handler)
    assert outbox.depth == 0
    assert [d.item.device for d in outbox.dead_letters()] == ["c"]


def test_entity_5xx_is_retried_and_holds_back_that_device_only(tmp_path: Path) -> None:
    failures = {"n": 2}

    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if failures["n"] and any(e["id"] == "urn:x:a" for e in body):
            failures["n"] -= 1
            internal = {"type": "https://uri.etsi.org/ngsi-ld/errors/InternalError", "title": "t", "detail": "db"}
            ok = [e["id"] for e in body if e["id"] != "urn:x:a"]
            return httpx.Response(207, json={"success": ok, "errors": [{"entityId": "urn:x:a", "error": internal}]})
        return httpx.Response(204)

    outbox, sent, _ = deliver(tmp_path, [row("a", 1), row("b", 1), row("a", 2), row("b", 2)], handler)
    assert outbox.depth == 0 and not outbox.dead_letters()
    a_values = [v for batch in sent for i, v in batch if i == "urn:x:a"]
    assert a_values[-2:] == [1, 2], "a's second measure only after its first succeeded"
    assert a_values.index(2) > max(i for i, v in enumerate(a_values) if v == 1)


def test_broker_outage_keeps_everything_and_drains_in_order(tmp_path: Path) -> None:
    state = {"down": 3}

    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if state["down"]:
            state["down"] -= 1
            return httpx.Response(503, text="starting")
        return httpx.Response(204)

    outbox, sent, metrics = deliver(tmp_path, [row("a", n) for n in range(5)], handler, cycles=50)
    assert outbox.depth == 0
    delivered = [v for batch in sent[3:] for _, v in batch]
    assert delivered == [0, 1, 2, 3, 4]
    assert metrics.get("metropole_agent_broker_errors_total").get(kind="unavailable") == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("mode,path", [("update", "/upsert"), ("replace", "/upsert"), ("merge", "/merge")])
def test_batch_mode_picks_the_operation(tmp_path: Path, mode: str, path: str) -> None:
    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(transport))
        await NgsiLdClient("http://b", http=http).write([{"id": "urn:x:a", "type": "T"}], mode=mode)  # type: ignore[arg-type]
        await http.aclose()

    asyncio.run(go())
    assert seen[0].url.path.endswith(path)


def test_a_dead_target_never_delays_a_live_one(tmp_path: Path) -> None:
    """One group's broker accepts connections and never answers; another group's broker keeps getting its measures.

    Real sockets: the dead broker is a listening socket that reads and never replies, the live one a small HTTP
    server. Delivery's request timeout (30 s) is far beyond the test's deadline: without a lane per target the
    live broker's second batch would wait for the dead broker's timeout.
    """
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[int] = []
    got_second = threading.Event()

    class Live(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.extend(e["no2"]["value"] for e in body)
            if 100 in received:
                got_second.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    live = ThreadingHTTPServer(("127.0.0.1", 0), Live)
    threading.Thread(target=live.serve_forever, daemon=True).start()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)
    live_url, dead_url = f"http://127.0.0.1:{live.server_address[1]}", f"http://127.0.0.1:{dead.getsockname()[1]}"

    def at(target: str, device: str, n: int) -> OutboxItem:
        return row(device, n)._replace(target=target)

    outbox = Outbox(tmp_path / "o.db")

    async def go() -> None:
        d = Delivery(outbox, NgsiLdClient(live_url), options=DeliveryOptions(workers=1),
                     client_factory=lambda url: NgsiLdClient(url, timeout=30.0))
        task = asyncio.create_task(d.run())
        outbox.append([at(dead_url, "stuck", 1), at(live_url, "fine", 2)])
        deadline = time.monotonic() + 10
        while 2 not in received:
            assert time.monotonic() < deadline, "the live broker's first measure did not arrive"
            await asyncio.sleep(0.02)
        outbox.append([at(live_url, "fine", 100)])  # while the dead broker's request is still hanging
        assert await asyncio.to_thread(got_second.wait, 10), "the live broker waited for the dead one"
        while outbox.rows("aix", None)[0] != 1:  # the live broker's rows acknowledged, the dead one's waiting
            assert time.monotonic() < deadline + 10, "the live broker's measures were not acknowledged"
            await asyncio.sleep(0.02)
        assert [r["device_id"] for r in outbox.rows("aix", None)[1]] == ["stuck"], "nothing lost"
        d.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(go())
    finally:
        live.shutdown()
        dead.close()
        outbox.close()


INTERNAL = {"type": "https://uri.etsi.org/ngsi-ld/errors/InternalError", "title": "Internal error", "status": 500,
            "detail": "invalid byte sequence for encoding UTF8: 0x00"}


@pytest.mark.parametrize("problem_body", [True, False], ids=["problem-details", "bare-500"])
def test_a_row_the_broker_answers_500_alone_is_isolated_and_dead_lettered(tmp_path: Path, problem_body: bool) -> None:
    # issue 17: a PostgreSQL-backed broker answered 500 to a measure holding \u0000; the agent retried the
    # whole batch for ever and every later measure of the tenant waited. Now the batch is split, the rest
    # delivered, and the poison row dead-lettered with the broker's answer after `poison_attempts` refusals.
    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if any(e["no2"]["value"] == "\u0000" for e in body):
            return httpx.Response(500, json=INTERNAL) if problem_body else httpx.Response(500, text="boom")
        return httpx.Response(204)

    items = [row(d, "\u0000" if d == "c" else 1) for d in "abcdefg"] + [row(d, 2) for d in "abdefg"]
    outbox, sent, metrics = deliver(tmp_path, items, handler, cycles=60)
    assert outbox.depth == 0
    (dead,) = outbox.dead_letters()
    assert dead.item.device == "c" and dead.attempts == 3
    if problem_body:
        assert dead.problem["detail"] == INTERNAL["detail"]
    else:
        assert "HTTP 500" in dead.problem["detail"]
    delivered = {(i, v) for batch in sent for i, v in batch if v != "\u0000"}
    assert {(f"urn:x:{d}", 2) for d in "abdefg"} <= delivered
    assert metrics.get("metropole_agent_dead_letters_total").get() == 1  # type: ignore[union-attr]


def test_a_poison_row_holds_back_its_own_device_only(tmp_path: Path) -> None:
    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if any(e["no2"]["value"] == "\u0000" for e in body):
            return httpx.Response(500, json=INTERNAL)
        return httpx.Response(204)

    outbox, sent, _ = deliver(tmp_path, [row("a", "\u0000"), row("b", 1), row("a", 2), row("b", 2)], handler,
                              cycles=60)
    assert outbox.depth == 0
    assert [d.item.device for d in outbox.dead_letters()] == ["a"]
    a_values = [v for batch in sent for i, v in batch if i == "urn:x:a"]
    assert a_values[-1] == 2 and 2 not in a_values[:-1], "a's later measure went only after the poison one settled"


def test_a_broker_answering_500_to_everything_loses_nothing(tmp_path: Path) -> None:
    state = {"down": 12}

    def handler(body: list[dict[str, Any]]) -> httpx.Response:
        if state["down"]:
            state["down"] -= 1
            return httpx.Response(500, json=INTERNAL)
        return httpx.Response(204)

    def reads() -> httpx.Response:
        return httpx.Response(500, json=INTERNAL) if state["down"] else httpx.Response(404, json=NOT_FOUND)

    outbox, _sent, _ = deliver(tmp_path, [row(d, n) for n in range(3) for d in "abcd"], handler, cycles=80,
                              reads=reads)
    assert outbox.depth == 0 and not outbox.dead_letters()  # the broker failed, not the rows: all delivered


def test_streams_keep_each_entity_in_one_request_and_split_only_an_entity_larger_than_a_request() -> None:
    from adapters.outbox import Leased
    from agents.delivery import _streams

    devices = ["a", "b", "a", "c", "d", "b", "e"] + ["g"] * 5
    rows = [Leased(i, row(d, i), 0) for i, d in enumerate(devices)]
    streams = _streams(rows, 3)
    as_seqs = [[[r.seq for r in request] for request in s] for s in streams]
    assert as_seqs == [[[0, 2]], [[1, 3, 5]], [[4, 6]], [[7, 8, 9], [10, 11]]]
    for s in streams:
        for request in s:
            assert len(request) <= 3
            assert [r.seq for r in request] == sorted(r.seq for r in request), "rows keep their order"
    where = {r.entity_id: i for i, s in enumerate(streams) for request in s for r in request}
    assert all(where[r.entity_id] == i for i, s in enumerate(streams) for request in s for r in request)


def _concurrent(tmp_path: Path, items: list[OutboxItem], fail_first: int = 0,
                in_flight: int = 4) -> tuple[Outbox, list[list[Any]], list[int]]:
    """Deliver through an async scripted broker that answers after a pause; what overlapped in flight."""
    outbox = Outbox(tmp_path / "o.db")
    outbox.append(items)
    sent: list[list[Any]] = []
    flying: list[int] = []  # requests in flight, each time one arrives
    now: list[set[str]] = []
    fails = {"n": fail_first}

    async def transport(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        ids = {e["id"] for e in body}
        now.append(ids)
        flying.append(len(now))
        assert sum(len(s) for s in now) == len(set().union(*now)), "an entity in two requests in flight"
        await asyncio.sleep(0.02)
        now.remove(ids)
        if fails["n"]:
            fails["n"] -= 1
            return httpx.Response(503, text="restarting")
        sent.append([(e["id"], e["no2"]["value"]) for e in body])
        return httpx.Response(204)

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(transport))
        d = Delivery(outbox, NgsiLdClient("http://broker", http=http),
                     options=DeliveryOptions(batch_size=10, page_size=100, backoff_initial=0.01, backoff_max=0.05,
                                             repeats=10, in_flight=in_flight))
        for _ in range(50):
            if await d.deliver_once() == 0:
                if outbox.depth == 0:
                    break
                await asyncio.sleep(0.06)
        await http.aclose()

    asyncio.run(go())
    return outbox, sent, flying


def test_a_page_goes_out_in_several_requests_at_once_each_entity_in_order(tmp_path: Path) -> None:
    items = [row(f"d{n % 20}", n) for n in range(100)]  # 20 entities, 5 measures each
    outbox, sent, flying = _concurrent(tmp_path, items)
    assert outbox.depth == 0
    assert max(flying) > 1, "more than one request of the page was in flight"
    for d in range(20):
        values = [v for batch in sent for i, v in batch if i == f"urn:x:d{d}"]
        assert values == list(range(d, 100, 20)), "each entity's measures in order, each once"


def test_one_request_in_flight_when_told(tmp_path: Path) -> None:
    outbox, _, flying = _concurrent(tmp_path, [row(f"d{n % 20}", n) for n in range(100)], in_flight=1)
    assert outbox.depth == 0
    assert max(flying) == 1


def test_a_broker_away_during_concurrent_requests_loses_nothing_and_delivers_each_row_once(tmp_path: Path) -> None:
    items = [row(f"d{n % 20}", n) for n in range(100)]
    outbox, sent, _ = _concurrent(tmp_path, items, fail_first=1)  # one of the first requests in flight: 503
    assert outbox.depth == 0 and not outbox.dead_letters()
    delivered = sorted(v for batch in sent for _, v in batch)
    assert delivered == list(range(100)), "every measure delivered, none twice"
    for d in range(20):
        values = [v for batch in sent for i, v in batch if i == f"urn:x:d{d}"]
        assert values == list(range(d, 100, 20))
