"""The demo as a newcomer starts it (`metropole run --demo`, free ports), once per module, and headless Chromium.

The platform runs in a subprocess with every port free and nothing on its
MQTT port, so it starts its embedded MQTT broker and the demo's devices go
through it, the agents and the broker like a real fleet's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import services

PROJECT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT / ".screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    """The running demo: its dashboard and broker URLs, and how long the four towns took to show an index."""

    dashboard: str
    broker: str
    started: float
    towns_after: float | None = None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("demo-data")
    ports = {name: free_port() for name in ("broker", "prov", "http", "mqtt", "dashboard")}
    env = {**os.environ, "METROPOLE_LOG_LEVEL": "WARNING"}
    log = (data / "demo.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "metropole", "run", "--demo", "--data", str(data), "--history-port", "0",
         "--broker-port", str(ports["broker"]), "--agent-provisioning-port", str(ports["prov"]),
         "--agent-http-port", str(ports["http"]), "--agent-mqtt-port", str(ports["mqtt"]),
         "--dashboard-port", str(ports["dashboard"])],
        cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    running = Demo(f"http://127.0.0.1:{ports['dashboard']}", f"http://127.0.0.1:{ports['broker']}", started)
    try:
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for_towns(demo: Demo, deadline_s: float) -> list[dict[str, Any]]:
    """/api/towns once every town has an ATMO index, or fail at the deadline (seconds after the start)."""
    towns: list[dict[str, Any]] = []
    while time.monotonic() - demo.started < deadline_s:
        try:
            towns = httpx.get(f"{demo.dashboard}/api/towns", timeout=10).json()
            if towns and all(t["airQualityIndex"] is not None for t in towns):
                demo.towns_after = demo.towns_after or time.monotonic() - demo.started
                return towns
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the dashboard did not show an index for every town within {deadline_s:.0f} s: {towns}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser download); skips, or fails under CI, without it.
    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, and
    later tests call asyncio.run()."""
    if not shutil.which(CHROMIUM):
        if services.in_ci():
            pytest.fail(f"{CHROMIUM} is missing; CI=true requires it (.ci/run installs it)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
