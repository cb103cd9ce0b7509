"""The HTML reports open in headless Chromium without errors and show the summary figures.

Chromium renders each report to a screenshot and dumps its DOM; the test
reads the figures back from the rendered page. Without Chromium the test
skips on a user's machine and fails under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from compliance.payload import check_payloads
from compliance.probe import ProbeReport
from compliance.report import render
from tests import services


def chromium() -> str:
    """The Chromium binary; skip (or fail under CI) when it is absent."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "Chromium is not installed (apt-get install chromium)"
    if services.in_ci():
        pytest.fail(f"{reason}; CI=true requires it (see .ci/run)", pytrace=False)
    pytest.skip(reason)


def _render(binary: str, page: Path, shot: Path) -> tuple[str, str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--window-size=1280,1000", "--enable-logging=stderr", "--v=0"]
    url = page.resolve().as_uri()
    shot_run = subprocess.run([binary, *flags, f"--screenshot={shot}", url], check=False, capture_output=True, text=True,
                              timeout=120)
    assert shot_run.returncode == 0, shot_run.stderr[-2000:]
    dom = subprocess.run([binary, *flags, "--dump-dom", url], check=False, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout, shot_run.stderr + dom.stderr


def _figure(dom: str, key: str) -> int:
    match = re.search(rf'id="figure-{key}">(\d+)<', dom)
    assert match, f"figure {key} not in the rendered page"
    return int(match.group(1))


def _assert_clean(log: str) -> None:
    errors = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line
              or "net::ERR" in line]
    assert not errors, errors


def test_payload_report_renders_in_chromium(sdm_reference: Path, tmp_path: Path) -> None:
    binary = chromium()
    examples = tmp_path / "examples"
    examples.mkdir()
    for path in sdm_reference.glob("*_example*.jsonld"):
        shutil.copy(path, examples / path.name)
    report = check_payloads([str(examples)])
    page = tmp_path / "payload.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    shot = tmp_path / "payload.png"
    dom, log = _render(binary, page, shot)
    _assert_clean(log)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = report.summary()
    for key in ("entities", "valid", "invalid", "violations", "warnings"):
        assert _figure(dom, key) == summary[key]
    assert (_figure(dom, "entities"), _figure(dom, "violations")) == (12, 5)


def test_broker_report_renders_in_chromium(probe_report: ProbeReport, tmp_path: Path) -> None:
    binary = chromium()
    page = tmp_path / "broker.html"
    page.write_text(render(probe_report, "html"), encoding="utf-8")
    shot = tmp_path / "broker.png"
    dom, log = _render(binary, page, shot)
    _assert_clean(log)
    assert shot.stat().st_size > 10_000
    summary = probe_report.summary()
    assert _figure(dom, "checks") == summary["checks"]
    assert _figure(dom, "passed") == summary["passed"]
    assert _figure(dom, "failed") == summary["failed"]
    assert _figure(dom, "not-supported") == summary["not_supported"]


def test_etsi_report_renders_in_chromium(tmp_path: Path) -> None:
    """The `check broker --etsi` report of a recorded run (fixtures/etsi-output.xml.gz, four real tests)."""
    import gzip

    from compliance.etsi_report import etsi_html
    from compliance.etsi_results import read_output

    binary = chromium()
    xml = tmp_path / "output.xml"
    xml.write_bytes(gzip.decompress((Path(__file__).parent / "fixtures" / "etsi-output.xml.gz").read_bytes()))
    run = read_output(xml, broker="http://127.0.0.1:1026")
    page = tmp_path / "etsi.html"
    page.write_text(etsi_html(run), encoding="utf-8")
    shot = tmp_path / "etsi.png"
    dom, log = _render(binary, page, shot)
    _assert_clean(log)
    assert shot.stat().st_size > 10_000
    c = run.counts
    assert (_figure(dom, "tests"), _figure(dom, "passed"), _figure(dom, "failed")) == (c.total, c.passed, c.failed)
    assert (_figure(dom, "tests"), _figure(dom, "failed")) == (4, 1)
    # the per-area and per-clause tables, and the failing test opened with its request and response
    assert re.search(r'<table id="areas">.*Consumption.*Subscription', dom, re.DOTALL)
    assert re.search(r'<table id="clauses">.*5\.7\.2', dom, re.DOTALL)
    assert re.search(r'<details class="test" id="test-019_01_04" open="">.*GET http://127\.0\.0\.1', dom, re.DOTALL)
