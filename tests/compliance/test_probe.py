"""`metropole check broker` against the embedded broker on a real socket.

The probe must pass everything the broker claims to support, report
honestly what it does not (never a silent skip), leave nothing behind, and
agree with the README's conformance table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from compliance.probe import CHECKS, FAIL, NOT_SUPPORTED, PASS, ProbeReport
from compliance.probe_checks import FEATURES
from metropole.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"

# Feature groups of the probe and the words the README's "Not yet supported" line uses for them.
README_WORDS = {"subscriptions": "subscriptions", "temporal": "temporal API"}


def _not_yet_supported() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"Not yet supported:(.*?)\n\n", text, re.DOTALL)
    assert match, "the README's broker conformance section has no 'Not yet supported:' paragraph"
    return " ".join(match.group(1).split())


def test_every_check_has_a_clause_and_ends_pass_fail_or_not_supported(probe_report: ProbeReport) -> None:
    assert len(probe_report.results) == len(CHECKS) >= 40
    assert {r.feature for r in probe_report.results} == set(FEATURES)
    for r in probe_report.results:
        assert r.status in (PASS, FAIL, NOT_SUPPORTED), r
        assert re.match(r"^\d+(\.\d+)+", r.clause), r.clause
        assert r.exchanges, f"{r.id} decided without talking to the broker"


def test_the_embedded_broker_passes_every_feature_it_claims(probe_report: ProbeReport) -> None:
    unsupported = _not_yet_supported()
    claimed = [r for r in probe_report.results
               if not any(word in unsupported for f, word in README_WORDS.items() if f == r.feature)]
    failing = [(r.id, r.expected, r.observed) for r in claimed if r.status != PASS]
    assert not failing, failing


def test_the_readme_conformance_table_agrees_with_the_probe(probe_report: ProbeReport) -> None:
    unsupported = _not_yet_supported()
    for feature, word in README_WORDS.items():
        results = [r for r in probe_report.results if r.feature == feature]
        all_pass = all(r.status == PASS for r in results)
        listed = word in unsupported
        assert all_pass != listed, (
            f"README says {feature} is {'not ' if listed else ''}supported, the probe found "
            f"{[(r.id, r.status) for r in results]}")


def test_the_probe_leaves_nothing_behind(probe_report: ProbeReport, embedded_broker: str) -> None:
    r = httpx.get(f"{embedded_broker}/ngsi-ld/v1/entities", params={"type": "AirQualityObserved"},
                  headers={"NGSILD-Tenant": probe_report.tenant})
    assert r.status_code == 200 and r.json() == []


def test_a_broker_without_the_features_is_reported_not_supported_never_skipped() -> None:
    # A transport that knows nothing of NGSI-LD: every check must end failed or not supported.
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    from compliance.probe import Probe

    report = Probe("http://nowhere.invalid", client=httpx.Client(transport=transport)).run()
    assert len(report.results) == len(CHECKS)
    assert {r.status for r in report.results} <= {FAIL, NOT_SUPPORTED}
    assert report.summary()["passed"] == 0
    assert all(r.exchanges for r in report.results)


def test_command_writes_json_and_html(embedded_broker: str, tmp_path: Path) -> None:
    out = tmp_path / "broker.json"
    code = main(["check", "broker", embedded_broker, "--feature", "entities", "--feature", "errors",
                 "--format", "json", "-o", str(out)])
    body = json.loads(out.read_text())
    assert code == 0 and body["ok"] and body["summary"]["failed"] == 0
    assert {c["feature"] for c in body["checks"]} == {"entities", "errors"}
    html_out = tmp_path / "broker.html"
    main(["check", "broker", embedded_broker, "--feature", "errors", "--format", "html", "-o", str(html_out)])
    page = html_out.read_text()
    assert 'id="figure-checks">5<' in page and "5.5.2" in page
