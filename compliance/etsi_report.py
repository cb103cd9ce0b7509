"""Rendering of an ETSI conformance run: text (terminal) and HTML (people), in the probe's style.

The HTML page has the same frame as the other compliance reports (one
standalone file, no script, no external asset; summary figures with
`figure-<name>` ids that tests read back) and, from top to bottom: the
counts per area, the counts per clause of ETSI GS CIM 009 (with the clause's
title when the specification's index is found beside the suite), then every
test that did not pass, with its failure message and each request the suite
sent with the response it received, and last the list of passing tests.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from compliance.etsi_results import PASS, Counts, EtsiRun, EtsiTest, Exchange, area_rank
from compliance.report import _e, _page

_MAX_BODY = 6000  # characters of a body shown in the page; the JSON report has them whole

_EXTRA_STYLE = """<style>
.bar{display:inline-block;height:.7rem;background:#17703a;vertical-align:middle}
.bar.f{background:#e4b4b0} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
h2{font-size:1.2rem;margin-top:2rem} summary{cursor:pointer} .msg{color:#b3261e;white-space:pre-wrap}
.passing code{margin-right:.6rem;display:inline-block}
</style>"""


def clause_titles(conformance: Path | None) -> dict[str, str]:
    """Clause number -> title, from the NGSI-LD specification's index beside the suite
    (`../reference/ngsi-ld/spec-v1.9.1/INDEX.md`), or {} when it is not there."""
    if conformance is None:
        return {}
    index = conformance.parent / "reference" / "ngsi-ld" / "spec-v1.9.1" / "INDEX.md"
    if not index.is_file():
        return {}
    titles = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*([0-9][0-9.]*)\s*\|\s*(.*?)\s*\|", line)
        if m:
            titles[m.group(1)] = m.group(2)
    return titles


# --- text ---------------------------------------------------------------------------------------


def area_table(runs: dict[str, EtsiRun]) -> str:
    """The per-area table of one or more runs side by side (pass / fail / total for each)."""
    areas: list[str] = []
    for run in runs.values():
        areas += [a for a in run.by_area() if a not in areas]
    areas.sort(key=area_rank)
    width = max([len(a) for a in areas] + [len("area"), len("total")])
    head = f"{'area'.ljust(width)}" + "".join(f"  {label:>18}" for label in runs)
    sub = " " * width + "".join(f"  {'pass':>5} {'fail':>5} {'total':>6}" for _ in runs)
    lines = [head, sub]
    for a in [*areas, "total"]:
        cells = ""
        for run in runs.values():
            c = run.counts if a == "total" else run.by_area().get(a, Counts())
            cells += f"  {c.passed:5d} {c.failed + c.skipped:5d} {c.total:6d}"
        lines.append(f"{a.ljust(width)}{cells}")
    return "\n".join(lines) + "\n"


def etsi_text(run: EtsiRun) -> str:
    """The run for a terminal: per-area table, the tests that did not pass, the closing line."""
    lines = [f"ETSI NGSI-LD conformance suite against {run.broker} (ETSI GS CIM 009 V1.9.1)", "",
             area_table({"result": run}).rstrip("\n"), ""]
    for t in run.tests:
        if t.status != PASS:
            lines.append(f"{t.status:4} {t.id:12} {','.join(t.clauses):14} {t.area}: {t.name}")
            if t.message:
                lines.append(f"     {t.message.splitlines()[0][:200]}")
    if run.truncated:
        lines.append("WARNING: output.xml ended before the run did; counted the tests that finished")
    lines.append(run.summary_line())
    return "\n".join(lines) + "\n"


# --- HTML ---------------------------------------------------------------------------------------


def _body(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return text if len(text) <= _MAX_BODY else text[:_MAX_BODY] + f"\n... ({len(text) - _MAX_BODY} more characters)"


def _exchange(x: Exchange, opened: bool = False) -> str:
    tag = "<details open>" if opened else "<details>"
    if x.method == "NOTIFICATION":
        return (f"{tag}<summary>notification received: {_e(x.title)}</summary><pre>headers: "
                f"{_e(json.dumps(x.request_headers))}\nbody: {_e(_body(x.request_body))}</pre></details>")
    phase = " <small>(suite setup)</small>" if x.phase != "test" else ""
    return (f"{tag}<summary><code>{_e(x.method)} {_e(x.url)}</code> &rarr; {_e(x.status)} {_e(x.reason)}"
            f"{phase}</summary><pre>{_e(x.title)}\n\nrequest headers: {_e(json.dumps(x.request_headers))}\n"
            f"request body: {_e(_body(x.request_body))}\n\nresponse headers: "
            f"{_e(json.dumps(x.response_headers))}\nresponse body: {_e(_body(x.response_body))}</pre></details>")


def _failing(t: EtsiTest, titles: dict[str, str], anchor: str, first: bool = False) -> str:
    clauses = ", ".join(f"{c} {titles[c]}" if c in titles else c for c in t.clauses) or "-"
    opened = " open" if first else ""
    return (f'<details class="test" id="{_e(anchor)}"{opened}><summary><span class="badge bad">{_e(t.status)}</span> '
            f"<code>{_e(t.id)}</code> {_e(t.name.split(' ', 1)[-1])} &middot; clause {_e(clauses)}</summary>"
            f"<p>{_e(t.documentation)}<br><small><code>{_e(t.path)}</code></small></p>"
            f'<p class="msg">{_e(t.message)}</p>'
            # the last exchange is open: most failures are about the answer to the last request
            f'{"".join(_exchange(x, first and i == len(t.exchanges) - 1) for i, x in enumerate(t.exchanges))}'
            "</details>")


def _bar(c: Counts) -> str:
    if not c.total:
        return ""
    ok = round(160 * c.passed / c.total)
    return f'<span class="bar" style="width:{ok}px"></span><span class="bar f" style="width:{160 - ok}px"></span>'


def _count_rows(rows: dict[str, Counts], titles: dict[str, str] | None = None) -> str:
    out = []
    for key, c in rows.items():
        title = f"<td>{_e(titles.get(key, ''))}</td>" if titles is not None else ""
        out.append(f"<tr><td>{_e(key)}</td>{title}<td class=\"n ok\">{c.passed}</td>"
                   f"<td class=\"n {'bad' if c.failed else ''}\">{c.failed + c.skipped}</td>"
                   f"<td class=\"n\">{c.total}</td><td>{_bar(c)}</td></tr>")
    return "".join(out)


def etsi_html(run: EtsiRun, conformance: Path | None = None) -> str:
    """The run as one standalone HTML page."""
    c = run.counts
    titles = clause_titles(conformance)
    rate = round(100 * c.passed / c.total) if c.total else 0
    figures = [("tests", "tests run", c.total, ""), ("passed", "passed", c.passed, "ok"),
               ("failed", "failed", c.failed, "bad" if c.failed else ""),
               ("skipped", "skipped", c.skipped, "ns" if c.skipped else ""),
               ("rate", "% passed", rate, "ok" if c.failed == 0 and c.total else "")]
    areas = ("<h2>Per area of the suite</h2><table id=\"areas\"><tr><th>area</th><th class=\"n\">passed</th>"
             "<th class=\"n\">failed</th><th class=\"n\">tests</th><th></th></tr>"
             f"{_count_rows(run.by_area())}</table>")
    clauses = ("<h2>Per clause of ETSI GS CIM 009 V1.9.1</h2><p>A test checking two clauses counts under both.</p>"
               "<table id=\"clauses\"><tr><th>clause</th><th>title</th><th class=\"n\">passed</th>"
               "<th class=\"n\">failed</th><th class=\"n\">tests</th><th></th></tr>"
               f"{_count_rows(run.by_clause(), titles)}</table>")
    failing = [t for t in run.tests if t.status != PASS]
    by_area: dict[str, list[EtsiTest]] = {}
    for t in failing:
        by_area.setdefault(t.area, []).append(t)
    shown = [t for a in run.by_area() for t in by_area.get(a, [])]
    first = shown[0] if shown else None  # shown open, as an example of what a failure tells
    seen: Counter[str] = Counter()  # anchors test-<id>, test-<id>-2 ...: ids repeat in the suite
    anchors = {}
    for t in shown:
        seen[t.id] += 1
        anchors[t.key] = f"test-{t.id}" + (f"-{seen[t.id]}" if seen[t.id] > 1 else "")
    fails = "".join(f"<h3>{_e(a)} ({len(ts)})</h3>" + "".join(
        _failing(t, titles, anchors[t.key], t is first) for t in ts)
        for a, ts in ((a, by_area[a]) for a in run.by_area() if a in by_area))
    fail_part = (f"<h2>Tests that did not pass ({len(failing)})</h2><p>Click a test for the requests the suite "
                 f"sent and the responses it received.</p>{fails}") if failing else "<h2>Every test passed.</h2>"
    passing = "".join(f"<code title=\"{_e(t.name)}\">{_e(t.id)}</code>" for t in run.tests if t.status == PASS)
    pass_part = (f'<h2>Tests that passed ({c.passed})</h2><details class="passing"><summary>show their ids'
                 f"</summary><p>{passing}</p></details>")
    note = ("<p class=\"bad\">The run stopped before its end: these are the tests that finished.</p>"
            if run.truncated else "")
    skipped = f" ({c.skipped} skipped)" if c.skipped else ""
    subtitle = (f"{run.broker or run.label} · ETSI GS CIM 014 test suite against ETSI GS CIM 009 V1.9.1 · "
                f"{c.passed} of {c.total} tests passed{skipped}")
    body = _EXTRA_STYLE + note + areas + clauses + fail_part + pass_part
    return _page("NGSI-LD broker conformance (ETSI test suite)", subtitle, figures, body)

