"""Real processes for benchmarks and integration tests: the embedded NGSI-LD broker and the agents.

Subprocesses, so a benchmark or a test can stop, restart or SIGKILL them as
an operator (or a crash) would. Here in bench/ so that benchmarks need
nothing of tests/; the tests import it from here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]


_GIVEN: list[int] = []
"""Ports free_port handed out lately: a caller often asks for two before binding either (a broker and
its second listener), and nothing else stops the second call from finding the first port still free."""


def free_port() -> int:
    """A free port: one of METROPOLE_TEST_PORTS ("27000-27999", a shared machine's range) if set, else any.

    Never one of the last 64 it returned in this process, bound yet or not.
    """
    lo, _, hi = os.environ.get("METROPOLE_TEST_PORTS", "").partition("-")
    candidates = [0] * 64 if not lo else list(range(int(lo), int(hi or lo) + 1))
    if len(candidates) > 1 and lo:  # start at a random place in the range: parallel users rarely try the same port
        start = int.from_bytes(os.urandom(2), "big") % len(candidates)
        candidates = candidates[start:] + candidates[:start]
    for port in candidates:
        if port and port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            got = int(s.getsockname()[1])
        if got in _GIVEN:
            continue  # the kernel's pick, given out a moment ago: ask again
        _GIVEN.append(got)
        del _GIVEN[:-64]
        return got
    raise OSError(f"no free port in METROPOLE_TEST_PORTS={os.environ.get('METROPOLE_TEST_PORTS', '(any)')}")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"process exited early ({proc.returncode}):\n{out[-4000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Managed:
    """A subprocess that can be started, stopped (SIGINT/SIGTERM), killed (SIGKILL) and started again."""

    def __init__(self, args: list[str], ready_url: str, env: dict[str, str] | None = None, log: Path | None = None):
        self.args, self.ready_url, self.env, self.log = args, ready_url, env or {}, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "METROPOLE_LOG_LEVEL": os.environ.get("METROPOLE_TEST_LOG_LEVEL", "WARNING"),
               "PYTHONPATH": str(PROJECT), **self.env}
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(self.ready_url, self.proc)
        except BaseException:
            self.kill()
            if self.log and self.log.exists():
                sys.stderr.write(self.log.read_text(errors="replace")[-4000:])
            raise

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def broker_process(data: Path, port: int | None = None, log: Path | None = None) -> Managed:
    """The embedded NGSI-LD broker, `python -m metropole broker --port P --data D`."""
    port = port or free_port()
    return Managed([sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(data)],
                   f"http://127.0.0.1:{port}/version", log=log)


def agent_process(data: Path, broker_url: str, *, mqtt_port: int, client_id: str, log: Path | None = None,
                  extra_env: dict[str, str] | None = None) -> tuple[Managed, int, int]:
    """The agents alone (`python -m metropole agent`); returns (process, provisioning port, HTTP port)."""
    prov, http = free_port(), free_port()
    env = {
        "METROPOLE_AGENT_MQTT_CLIENT_ID": client_id,
        "METROPOLE_AGENT_MQTT_SESSION_EXPIRY": "300",
        "METROPOLE_AGENT_MQTT": "external",
        **(extra_env or {}),
    }
    args = [sys.executable, "-m", "metropole", "agent", "--data", str(data), "--broker-url", broker_url,
            "--provisioning-port", str(prov), "--http-port", str(http), "--mqtt-port", str(mqtt_port)]
    return Managed(args, f"http://127.0.0.1:{prov}/iot/about", env=env, log=log), prov, http
