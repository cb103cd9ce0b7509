"""The event loop the servers of `metropole run|broker|agent` run on (metropole.cli.serve_in_loop; issue 16, serve22).

uvicorn picks uvloop only in `uvicorn.run`; our servers run inside our own loop, which was asyncio's
until METROPOLE_EVENT_LOOP chose uvloop by default for `metropole broker` (uvicorn[standard] installs
it). A process with the IoT agents (`run`, `demo`, `agent`) stayed on asyncio's loop while their MQTT
transport took only asyncio's transports (serve22); since uvloop22 it takes any loop's, and `auto` is
uvloop for every command (tests/agents/test_uvloop22_loops.py); `asyncio` is the way back.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from metropole.cli import event_loop_factory, serve_in_loop


def _loop_type() -> type:
    seen: list[type] = []

    async def record() -> None:
        seen.append(type(asyncio.get_running_loop()))

    serve_in_loop(record())
    return seen[0]


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METROPOLE_EVENT_LOOP", raising=False)
    assert _loop_type() is uvloop.Loop
    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "uvloop")
    assert _loop_type() is uvloop.Loop


def test_uvloop_with_the_agents_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run`, `demo` and `agent` choose as `broker` does, one choice for every command (uvloop22): uvloop by
    default and when asked, asyncio when asked."""
    for value in ("auto", "uvloop", ""):
        monkeypatch.setenv("METROPOLE_EVENT_LOOP", value)
        assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None


def test_metropole_agent_refuses_a_wrong_value_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from metropole.cli import main

    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "uv-loop")
    assert main(["agent", "--data", str(tmp_path)]) == 1
    assert "METROPOLE_EVENT_LOOP='uv-loop'" in capsys.readouterr().err


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None
    assert issubclass(_loop_type(), asyncio.BaseEventLoop)
    assert not issubclass(_loop_type(), uvloop.Loop)


def test_a_wrong_value_is_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "trio")
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(ValueError, match="METROPOLE_EVENT_LOOP"):
        serve_in_loop(main())
    assert not ran


def test_metropole_broker_refuses_a_wrong_value_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from bench.procs import free_port
    from metropole.cli import main

    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "nope")
    assert main(["broker", "--port", str(free_port()), "--data", str(tmp_path)]) == 1
    assert "METROPOLE_EVENT_LOOP" in capsys.readouterr().err
