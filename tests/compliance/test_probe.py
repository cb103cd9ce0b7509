"""`metropole check broker` against the embedded broker on a real socket.

The probe must pass everything the broker claims to support, report
honestly what it does not (never a silent skip), leave nothing behind, and
agree with the README's conformance table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from compliance.probe import CHECKS, FAIL, NOT_SUPPORTED, PASS, ContextSource, Probe, ProbeReport
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


DISTRIBUTED = "distributed operations"


def test_the_distributed_operation_checks_pass_against_the_embedded_broker(probe_report: ProbeReport) -> None:
    results = {r.id: r for r in probe_report.results if r.feature == DISTRIBUTED}
    assert set(results) == {"distributed_retrieve", "distributed_query", "local_scope", "forwarded_via"}
    assert all(r.status == PASS for r in results.values()), [(r.id, r.observed) for r in results.values()]


class LyingSource(ContextSource):
    """A context source that answers every entity under another id (and so never the one asked for)."""

    def answer(self, entity: dict[str, Any]) -> dict[str, Any]:
        return {**entity, "id": entity["id"] + "-other"}


def test_the_distributed_checks_fail_when_the_source_answers_with_another_entity(embedded_broker: str) -> None:
    report = Probe(embedded_broker, source=LyingSource()).run({DISTRIBUTED})  # the probe starts and stops it
    by_id = {r.id: r for r in report.results}
    for check_id in ("distributed_retrieve", "distributed_query", "local_scope"):
        # local_scope: the reference query (without local=true) lacks the source's entity
        assert by_id[check_id].status == FAIL, (check_id, by_id[check_id].observed)
        assert "never called" not in by_id[check_id].observed  # the source was asked, and its answer judged
    assert by_id["forwarded_via"].status == PASS  # the broker did forward, with Via
    assert all(r.exchanges for r in report.results)


def test_the_distributed_checks_say_not_supported_when_the_broker_never_calls_the_source(
        embedded_broker: str) -> None:
    source = ContextSource()
    source.url = "http://127.0.0.1:9"  # registered where nothing listens: the broker cannot reach the source
    report = Probe(embedded_broker, source=source).run({DISTRIBUTED})
    by_id = {r.id: r for r in report.results}
    for check_id in ("distributed_retrieve", "distributed_query", "local_scope", "forwarded_via"):
        assert by_id[check_id].status == NOT_SUPPORTED, (check_id, by_id[check_id].observed)
        assert "never called the registered context source" in by_id[check_id].observed
    assert by_id["distributed_query"].exchanges


def test_the_distributed_checks_leave_no_registration_behind(embedded_broker: str) -> None:
    probe = Probe(embedded_broker)
    report = probe.run({DISTRIBUTED})
    assert report.ok, [(r.id, r.observed) for r in report.results]
    for path, params in (("csourceRegistrations", {"type": "ComplianceProbeDistributed"}),
                         ("entities", {"type": "ComplianceProbeDistributed", "local": "true"})):
        r = httpx.get(f"{embedded_broker}/ngsi-ld/v1/{path}", params=params,
                      headers={"NGSILD-Tenant": report.tenant})
        assert r.status_code == 200 and r.json() == [], (path, r.text)
