"""bench.procs.free_port: two calls before either port is bound must not give the same port.

A test that starts a broker and a second listener asks for both ports first; the
first is not bound yet when the second is picked, so only free_port's memory
keeps them apart (a flaky "the brokers did not start" before it had one).
"""

from __future__ import annotations

import pytest

from bench import procs


@pytest.mark.parametrize("ports", ["", "36990-36991"])
def test_consecutive_ports_differ_before_binding(monkeypatch: pytest.MonkeyPatch, ports: str) -> None:
    monkeypatch.setenv("METROPOLE_TEST_PORTS", ports)
    monkeypatch.setattr(procs, "_GIVEN", [])
    picked = [procs.free_port() for _ in range(2 if ports else 50)]
    assert len(set(picked)) == len(picked)


def test_a_range_given_out_whole_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_TEST_PORTS", "36992-36993")
    monkeypatch.setattr(procs, "_GIVEN", [])
    procs.free_port()
    procs.free_port()
    with pytest.raises(OSError, match="36992-36993"):
        procs.free_port()
