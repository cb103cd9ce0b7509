"""The event loop the servers of `metropole run|broker|agent` run on (metropole.cli.serve_in_loop; issue 16, serve22).

uvicorn picks uvloop only in `uvicorn.run`; our servers run inside our own loop, which was asyncio's
until METROPOLE_EVENT_LOOP chose uvloop by default for `metropole broker` (uvicorn[standard] installs
it). A process with the IoT agents (`run`, `agent`) stays on asyncio's loop: their MQTT transport takes
only asyncio's transports (tests/agents/test_poison_end_to_end.py failed on uvloop).
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


def test_asyncio_with_the_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("auto", "asyncio", ""):
        monkeypatch.setenv("METROPOLE_EVENT_LOOP", value)
        assert event_loop_factory(agents=True) is None
    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "uvloop")
    with pytest.raises(ValueError, match="MQTT"):
        event_loop_factory(agents=True)


def test_metropole_run_on_uvloop_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from metropole.cli import main

    monkeypatch.setenv("METROPOLE_EVENT_LOOP", "uvloop")
    assert main(["agent", "--data", str(tmp_path)]) == 1
    assert "METROPOLE_EVENT_LOOP='uvloop'" in capsys.readouterr().err


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
