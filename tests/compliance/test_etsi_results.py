"""Reading the ETSI suite's output.xml: per area, per clause, per test with the requests and responses.

The fixture `fixtures/etsi-output.xml.gz` is Robot Framework's output.xml of
a real run of four tests against the embedded broker (main at 3626aaf):
018_01_01 (retrieve an entity, passed), 019_01_04 (query by attribute
names, failed 200 != 400), 028_08_01 (a subscription checking two clauses,
passed) and 046_11_01 (a notification received, passed).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from compliance.etsi_command import min_pass_count
from compliance.etsi_report import etsi_html, etsi_text
from compliance.etsi_results import AREA_ORDER, FAIL, PASS, area_of, clause_of, read_output
from compliance.etsi_runner import EtsiSuiteNotFound, find_conformance
from tests import services

FIXTURE = Path(__file__).parent / "fixtures" / "etsi-output.xml.gz"


@pytest.fixture(scope="module")
def output_xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("etsi") / "output.xml"
    path.write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    return path


def test_every_test_with_its_status_area_clauses_and_documentation(output_xml: Path) -> None:
    run = read_output(output_xml, broker="http://127.0.0.1:27028")
    tests = {t.id: t for t in run.tests}
    assert set(tests) == {"018_01_01", "019_01_04", "028_08_01", "046_11_01"}
    assert not run.truncated and run.generator.startswith("Robot 7")
    t = tests["019_01_04"]
    assert (t.status, t.area, t.clauses) == (FAIL, "Consumption", ("5.7.2",))
    assert t.message == "HTTP status code comparison failed with (expected, actual) ->: 200 != 400"
    assert t.documentation == "Check that one can query several entities based on attribute names"
    assert t.path == "ContextInformation/Consumption/Entity/QueryEntities/019_01_04.robot"
    assert t.name == "019_01_04 Query Several Entities Based On Attribute Names"
    assert tests["028_08_01"].clauses == ("4.21", "5.8.1") and tests["028_08_01"].area == "Subscription"
    assert tests["018_01_01"].status == PASS and tests["018_01_01"].message == ""
    assert run.summary_line() == "ETSI: 3 passed, 1 failed"


def test_requests_and_responses_of_a_failing_test(output_xml: Path) -> None:
    t = next(t for t in read_output(output_xml).tests if t.id == "019_01_04")
    phases = [(x.phase, x.method, x.status) for x in t.exchanges]
    # the .robot file's suite setup created two entities before the test's own query
    assert phases == [("suite setup", "POST", 201), ("suite setup", "POST", 201), ("test", "GET", 400)]
    setup, query = t.exchanges[0], t.exchanges[-1]
    assert setup.url.endswith("/ngsi-ld/v1/entities/") and setup.request_body["type"] == "Building"
    assert setup.request_headers["Content-Type"] == "application/ld+json"
    assert query.title == "Query Entities" and "attrs=" in query.url
    assert query.reason == "Bad Request" and query.response_headers["content-type"] == "application/json"
    assert query.response_body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")


def test_a_received_notification_is_an_exchange(output_xml: Path) -> None:
    t = next(t for t in read_output(output_xml).tests if t.id == "046_11_01")
    notes = [x for x in t.exchanges if x.method == "NOTIFICATION"]
    assert len(notes) == 1 and notes[0].request_body["type"] == "Notification"
    assert notes[0].request_body["subscriptionId"].startswith("urn:ngsi-ld:Subscription:")


def test_counts_per_area_and_per_clause(output_xml: Path) -> None:
    run = read_output(output_xml)
    areas = {a: (c.passed, c.failed) for a, c in run.by_area().items()}
    assert areas == {"Consumption": (1, 1), "Subscription": (2, 0)}
    clauses = {k: (c.passed, c.failed) for k, c in run.by_clause().items()}
    # 028_08_01 checks 4.21 and 5.8.1: it counts under both; clauses in numeric order
    assert clauses == {"4.21": (1, 0), "5.7.1": (1, 0), "5.7.2": (0, 1), "5.8.1": (1, 0), "5.8.6": (1, 0)}
    assert list(clauses) == ["4.21", "5.7.1", "5.7.2", "5.8.1", "5.8.6"]


def test_json_keeps_the_exchanges_of_failing_tests(output_xml: Path) -> None:
    body = json.loads(json.dumps(read_output(output_xml).to_json()))
    assert body["summary"] == {"passed": 3, "failed": 1, "skipped": 0, "total": 4}
    by_id = {t["id"]: t for t in body["tests"]}
    assert "exchanges" not in by_id["018_01_01"] and "message" not in by_id["018_01_01"]
    failing = by_id["019_01_04"]
    assert failing["exchanges"][-1]["request"]["method"] == "GET"
    assert failing["exchanges"][-1]["response"]["status"] == 400


def test_min_pass_threshold(output_xml: Path) -> None:
    run = read_output(output_xml)
    assert not run.ok() and run.ok(min_pass=3) and not run.ok(min_pass=4)
    assert [min_pass_count(s, 4) for s in (None, "3", "75%", "76%", "100%")] == [None, 3, 3, 4, 4]


def test_a_cut_short_file_yields_the_tests_that_finished(output_xml: Path, tmp_path: Path) -> None:
    text = output_xml.read_text(encoding="utf-8")
    cut = tmp_path / "cut.xml"
    cut.write_text(text[: text.index('name="028_08_01') + 200], encoding="utf-8")
    run = read_output(cut)
    assert run.truncated
    assert [t.id for t in run.tests] == ["019_01_04", "018_01_01"]


def test_text_and_html_reports(output_xml: Path) -> None:
    run = read_output(output_xml, broker="http://broker.example:1026")
    text = etsi_text(run)
    assert text.rstrip().endswith("ETSI: 3 passed, 1 failed") and "019_01_04" in text and "018_01_01" not in text
    page = etsi_html(run)
    assert 'id="figure-tests">4<' in page and 'id="figure-failed">1<' in page
    assert 'id="test-019_01_04" open' in page and "200 != 400" in page
    assert "GET http://127.0.0.1" in page and "&rarr; 400 Bad Request" in page


@pytest.mark.parametrize(("tag", "clause"), [("5_7_1", "5.7.1"), ("4_21", "4.21"), ("6_3_5", "6.3.5"),
                                             ("e-retrieve", None), ("since_v1.8.1", None), ("sub-create", None)])
def test_clause_tags(tag: str, clause: str | None) -> None:
    assert clause_of(tag) == clause


def _shared_conformance() -> Path:
    try:
        return find_conformance()
    except EtsiSuiteNotFound as exc:
        if services.in_ci():
            pytest.fail(f"{exc}; CI=true requires it", pytrace=False)
        pytest.skip(str(exc))


def test_areas_agree_with_the_shared_runner_on_every_file_of_the_suite() -> None:
    conformance = _shared_conformance()
    spec = importlib.util.spec_from_file_location("etsi_harness", conformance / "etsi_harness.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    tp = conformance / "etsi-suite" / "TP" / "NGSI-LD"
    files = list(tp.rglob("*.robot"))
    assert len(files) > 500
    for f in files:
        folder = f.parent.relative_to(tp).as_posix()
        assert area_of(folder) == harness.area_of(folder.split("/")), folder
    assert list(AREA_ORDER) == list(harness.AREA_ORDER)


# Robot's output.xml shape for a templated test (019_08_01 of the suite): its tags and documentation are
# those of the template keyword, and the .robot file's Documentation comes after its tests.
TEMPLATED = """<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.4.1" generated="2026-12-05T22:46:52" rpa="false" schemaversion="5">
<suite id="s1" name="NGSI-LD" source="/x/TP/NGSI-LD">
<suite id="s1-s1" name="019 08" source="/x/TP/NGSI-LD/ContextInformation/Consumption/Entity/QueryEntities/019_08.robot">
<test id="s1-s1-t1" name="019_08_01 Query With One Type" line="26">
<kw name="Query entities using Entity Type Selection Language">
<arg>Building</arg><tag>4_17</tag><tag>5_7_2</tag><tag>e-query</tag><tag>since_v1.5.1</tag>
<status status="PASS" start="2026-12-05T22:46:52.347322" elapsed="0.14"/>
</kw>
<status status="PASS" start="2026-12-05T22:46:52.347322" elapsed="0.145236"/>
</test>
<doc>Query entities with Entity Type Selection Language.</doc>
<status status="PASS" start="2026-12-05T22:46:52.3" elapsed="0.2"/>
</suite>
<status status="PASS" start="2026-12-05T22:46:52.3" elapsed="0.2"/>
</suite>
</robot>
"""


def test_a_templated_test_takes_its_clauses_from_the_template_and_the_file_documentation(tmp_path: Path) -> None:
    path = tmp_path / "output.xml"
    path.write_text(TEMPLATED, encoding="utf-8")
    (t,) = read_output(path).tests
    assert (t.id, t.status, t.area, t.clauses) == ("019_08_01", PASS, "Consumption", ("4.17", "5.7.2"))
    assert t.documentation == "Query entities with Entity Type Selection Language."
    assert t.elapsed == pytest.approx(0.145236)


def test_the_suite_is_found_where_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "conformance"
    (here / "etsi-suite" / "TP" / "NGSI-LD").mkdir(parents=True)
    (here / "run-etsi.sh").write_text("#!/bin/sh\n")
    assert find_conformance(here) == here.resolve()
    monkeypatch.setenv("METROPOLE_ETSI_DIR", str(here))
    assert find_conformance() == here.resolve()
    with pytest.raises(EtsiSuiteNotFound, match="--etsi-suite or METROPOLE_ETSI_DIR"):
        find_conformance(tmp_path / "elsewhere")
