"""Results of an ETSI NGSI-LD conformance run, read from Robot Framework's `output.xml`.

The suite (ETSI GS CIM 014 test procedures, `../shared/conformance/etsi-suite`)
writes one `<test>` per test procedure. From each we keep what a reader of
the report needs:

- its id (`018_01_01`) and name, its status (PASS, FAIL, SKIP) and failure message;
- its area: the group of the suite's folder tree it lives in (`AREAS` below,
  the same grouping as the runner's per-area table, `etsi_harness.py`);
- the clauses of ETSI GS CIM 009 it checks: the suite tags every test with
  them (`[Tags]  e-retrieve  5_7_1` is clause 5.7.1; a templated test has
  them on its template keyword), and its documentation line;
- the HTTP exchanges it made: the suite's `Output` keyword (libraries/logUtils.py)
  logs every request it sends and the response it gets as two JSON documents,
  and `Output Notification` every notification the harness received. The
  exchanges of the `.robot` file's suite setup (the entities it creates
  first) come before the test's own, marked as such.

The file of a whole run is 50 MB and more, so it is read with `iterparse`,
dropping every element once it has been read; a file cut short (a run that
was stopped) yields the tests that finished.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

# Folder of a .robot file below TP/NGSI-LD -> area; first matching prefix wins.
# Mirrors area_of() of the shared runner (tests check both agree on every file of the suite).
AREAS: tuple[tuple[str, str], ...] = (
    ("CommonBehaviours/", "CommonBehaviours"),
    ("ContextInformation/Subscription/", "Subscription"),
    ("ContextInformation/Provision/BatchEntities/", "Batch"),
    ("ContextInformation/Provision/Temporal", "TemporalProvision"),
    ("ContextInformation/Provision/", "Provision"),
    ("ContextInformation/Consumption/Temporal", "TemporalConsumption"),
    ("ContextInformation/Consumption/Discovery/", "Discovery"),
    ("ContextInformation/Consumption/", "Consumption"),
    ("ContextSource/RegistrationSubscription/", "ContextSource/Subscription"),
    ("ContextSource/", "ContextSource/Registration"),
    ("DistributedOperations/", "DistributedOps"),
    ("jsonldContext/", "JSON-LD contexts"),
)
OTHER = "Other"
# The suite's areas in the order of the runner's table.
AREA_ORDER: tuple[str, ...] = (
    "CommonBehaviours", "Provision", "Batch", "Consumption", "Discovery", "TemporalProvision", "TemporalConsumption",
    "Subscription", "ContextSource/Registration", "ContextSource/Subscription", "DistributedOps", "JSON-LD contexts",
    OTHER)

_CLAUSE_TAG = re.compile(r"^\d+(?:_\d+)+$|^\d+$")
_MAX_MESSAGE = 4000


def area_of(folder: str) -> str:
    """The area of a .robot file from its folder below TP/NGSI-LD (e.g. `ContextSource/Registration`)."""
    folder = folder.strip("/") + "/"
    return next((area for prefix, area in AREAS if folder.startswith(prefix)), OTHER)


def area_rank(area: str) -> tuple[int, str]:
    """Sort key putting areas in the runner's order, unknown ones last."""
    return (AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER), area)


def clause_of(tag: str) -> str | None:
    """`5_7_1` -> `5.7.1`; None for the suite's other tags (`e-retrieve`, `since_v1.8.1`)."""
    return tag.replace("_", ".") if _CLAUSE_TAG.match(tag) else None


def clause_key(clause: str) -> tuple[int, ...]:
    """Sort key of a clause number: 4.10 after 4.9."""
    return tuple(int(p) for p in clause.split(".") if p.isdigit())


@dataclass(frozen=True)
class Exchange:
    """One request the suite sent and the response it got, or one notification the harness received."""

    phase: str  # "test" or "suite setup"
    title: str  # the suite's description of the step, e.g. "Query Entities"
    method: str  # "NOTIFICATION" for a received notification
    url: str
    request_headers: dict[str, Any]
    request_body: Any
    status: int | None
    reason: str
    response_headers: dict[str, Any]
    response_body: Any

    def to_json(self) -> dict[str, Any]:
        """The exchange as a JSON object."""
        return {"phase": self.phase, "title": self.title,
                "request": {"method": self.method, "url": self.url, "headers": self.request_headers,
                            "body": self.request_body},
                "response": {"status": self.status, "reason": self.reason, "headers": self.response_headers,
                             "body": self.response_body}}


@dataclass(frozen=True)
class EtsiTest:
    """The outcome of one ETSI test procedure."""

    id: str
    name: str
    status: str
    message: str
    area: str
    path: str  # the .robot file below TP/NGSI-LD
    clauses: tuple[str, ...]
    documentation: str
    elapsed: float
    exchanges: tuple[Exchange, ...] = ()

    @property
    def key(self) -> str:
        """What tells tests apart: ids repeat in the suite (six `019_01_06 ...` in one file), full names do
        not, and the file makes sure."""
        return f"{self.path}::{self.name}"

    def to_json(self, with_exchanges: bool = True) -> dict[str, Any]:
        """The test as a JSON object; exchanges only when asked (a run has thousands)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "status": self.status, "area": self.area,
                               "clauses": list(self.clauses), "path": self.path,
                               "documentation": self.documentation, "elapsed": round(self.elapsed, 3)}
        if self.status != PASS:
            out["message"] = self.message
        if with_exchanges:
            out["exchanges"] = [x.to_json() for x in self.exchanges]
        return out


@dataclass(frozen=True)
class Counts:
    """Passed, failed and skipped tests of a group."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def add(self, status: str) -> Counts:
        """These counts with one more test of that status."""
        return Counts(self.passed + (status == PASS), self.failed + (status == FAIL), self.skipped + (status == SKIP))

    def to_json(self) -> dict[str, int]:
        return {"passed": self.passed, "failed": self.failed, "skipped": self.skipped, "total": self.total}


@dataclass
class EtsiRun:
    """Every test of one run of the suite against one broker."""

    tests: list[EtsiTest]
    broker: str = ""
    generator: str = ""  # "Robot 7.4.1 (Python ...)"
    generated: str = ""  # start time of the run, as Robot wrote it
    truncated: bool = False  # output.xml ended before the run did
    label: str = ""  # what was tested, e.g. "sqlite" (make conformance) or the broker URL

    @property
    def counts(self) -> Counts:
        total = Counts()
        for t in self.tests:
            total = total.add(t.status)
        return total

    def by_area(self) -> dict[str, Counts]:
        """Counts per area, in the runner's order."""
        areas: dict[str, Counts] = {}
        for t in self.tests:
            areas[t.area] = areas.get(t.area, Counts()).add(t.status)
        return {a: areas[a] for a in sorted(areas, key=area_rank)}

    def by_clause(self) -> dict[str, Counts]:
        """Counts per clause of ETSI GS CIM 009 (a test checking two clauses counts under both)."""
        clauses: dict[str, Counts] = {}
        for t in self.tests:
            for c in t.clauses or ("-",):
                clauses[c] = clauses.get(c, Counts()).add(t.status)
        return {c: clauses[c] for c in sorted(clauses, key=clause_key)}

    def passing(self) -> set[str]:
        """Keys (`EtsiTest.key`) of the tests that passed."""
        return {t.key for t in self.tests if t.status == PASS}

    def ok(self, min_pass: int | None = None) -> bool:
        """Every test passed, or at least `min_pass` of them did."""
        c = self.counts
        if min_pass is not None:
            return c.total > 0 and c.passed >= min_pass
        return c.total > 0 and c.failed == 0 and c.skipped == 0

    def summary_line(self) -> str:
        """The runner's closing line: `ETSI: N passed, M failed`."""
        c = self.counts
        return f"ETSI: {c.passed} passed, {c.failed} failed" + (f", {c.skipped} skipped" if c.skipped else "")

    def to_json(self, with_exchanges: str = "failed") -> dict[str, Any]:
        """The run as JSON; exchanges of the "failed" tests (default), of "all" or of "none"."""
        return {"suite": "ETSI GS CIM 014 (NGSI-LD API conformance tests) against ETSI GS CIM 009 V1.9.1",
                "broker": self.broker, "label": self.label, "generator": self.generator,
                "generated": self.generated, "truncated": self.truncated,
                "summary": self.counts.to_json(),
                "areas": {a: c.to_json() for a, c in self.by_area().items()},
                "clauses": {k: c.to_json() for k, c in self.by_clause().items()},
                "tests": [t.to_json(with_exchanges == "all" or (with_exchanges == "failed" and t.status != PASS))
                          for t in self.tests]}


# --- reading output.xml -------------------------------------------------------------------------


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"body": text}
    return value if isinstance(value, dict) else {"body": value}


def _exchanges(root: ET.Element, phase: str) -> Iterator[Exchange]:
    """The exchanges logged below `root` by the suite's Output and Output Notification keywords."""
    for kw in root.iter("kw"):
        if kw.get("owner") != "logUtils" or kw.get("name") not in ("Output", "Output Notification"):
            continue
        msgs = [m.text or "" for m in kw.findall("msg")]
        title = msgs[0].strip() if msgs else ""
        if kw.get("name") == "Output" and len(msgs) >= 5:
            req, resp = _json(msgs[2]), _json(msgs[4])
            status = resp.get("status_code")
            yield Exchange(phase, title, str(req.get("method", "")), str(req.get("url", "")),
                           req.get("headers") or {}, req.get("body"),
                           status if isinstance(status, int) else None, str(resp.get("reason") or ""),
                           resp.get("headers") or {}, resp.get("body"))
        elif kw.get("name") == "Output Notification" and len(msgs) >= 3:
            note = _json(msgs[2])
            yield Exchange(phase, title, "NOTIFICATION", "", note.get("headers") or {}, note.get("body"),
                           None, "", {}, None)


def _below_tp(source: str) -> str:
    """`.../TP/NGSI-LD/ContextSource/Registration/x.robot` -> `ContextSource/Registration/x.robot`."""
    s = source.replace("\\", "/")
    i = s.find("/TP/NGSI-LD/")
    return s[i + len("/TP/NGSI-LD/"):] if i >= 0 else s.rsplit("/", 1)[-1]


def _test(el: ET.Element, source: str, setup: tuple[Exchange, ...]) -> EtsiTest:
    st = el.find("status")
    status = st.get("status", FAIL) if st is not None else FAIL
    status = status if status in (PASS, FAIL, SKIP) else FAIL
    name = el.get("name") or ""
    path = _below_tp(source)
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    # a templated test (`Test Template`) carries its tags and documentation on the template keyword
    body = [kw for kw in el.findall("kw") if kw.get("type") not in ("SETUP", "TEARDOWN")]
    tags = el.findall("tag") + [t for kw in body for t in kw.findall("tag")]
    clauses = tuple(dict.fromkeys(c for c in (clause_of(_text(t)) for t in tags) if c))
    doc = _text(el.find("doc")) or next((_text(kw.find("doc")) for kw in body if kw.find("doc") is not None), "")
    try:
        elapsed = float(st.get("elapsed", "0")) if st is not None else 0.0
    except ValueError:
        elapsed = 0.0
    return EtsiTest(id=name.split(" ", 1)[0], name=name, status=status, message=_text(st)[:_MAX_MESSAGE],
                    area=area_of(folder), path=path, clauses=clauses, documentation=doc,
                    elapsed=elapsed, exchanges=(*setup, *_exchanges(el, "test")))


def read_output(xml_path: str | Path, broker: str = "", label: str = "") -> EtsiRun:
    """Every finished test of the run whose `output.xml` is at `xml_path`."""
    run = EtsiRun(tests=[], broker=broker, label=label)
    open_elements: list[ET.Element] = []
    suites: list[tuple[str, tuple[Exchange, ...]]] = []  # (source, suite-setup exchanges) of the open suites
    firsts: list[int] = []  # index in run.tests of each open suite's first test
    try:
        for event, el in ET.iterparse(str(xml_path), events=("start", "end")):
            if event == "start":
                open_elements.append(el)
                if el.tag == "robot":
                    run.generator, run.generated = el.get("generator", ""), el.get("generated", "")
                elif el.tag == "suite" and el.get("source"):
                    suites.append((el.get("source", ""), ()))
                    firsts.append(len(run.tests))
                continue
            open_elements.pop()
            parent = open_elements[-1] if open_elements else None
            if el.tag == "test" and suites:
                run.tests.append(_test(el, *suites[-1]))
                el.clear()
            elif el.tag == "kw" and parent is not None and parent.tag == "suite":
                if el.get("type") == "SETUP" and suites:
                    suites[-1] = (suites[-1][0], tuple(_exchanges(el, "suite setup")))
                el.clear()
            elif el.tag == "suite" and el.get("source"):
                suites.pop()
                # the .robot file's Documentation (written after its tests) for tests without one of their own
                doc, first = _text(el.find("doc")), firsts.pop()
                run.tests[first:] = [t if t.documentation else replace(t, documentation=doc)
                                     for t in run.tests[first:]]
                el.clear()
    except ET.ParseError:
        run.truncated = True
    return run
