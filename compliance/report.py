"""Rendering of the compliance reports: text (terminal), JSON (machines), HTML (people).

The HTML is one standalone file, no script and no external asset (styles
inline), so it opens offline and can be attached to a procurement file. Its
summary figures carry ids (`figure-<name>`) that tests read back.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from compliance.payload import PayloadReport
from compliance.probe import FAIL, NOT_SUPPORTED, PASS, ProbeReport

Report = PayloadReport | ProbeReport


def render(report: Report, fmt: str) -> str:
    """The report as "text", "json" or "html"."""
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "html":
        return payload_html(report) if isinstance(report, PayloadReport) else broker_html(report)
    return payload_text(report) if isinstance(report, PayloadReport) else broker_text(report)


# --- text ---------------------------------------------------------------------------------------


def payload_text(report: PayloadReport) -> str:
    lines = []
    for e in report.entities:
        verdict = "VALID" if e.valid else "INVALID"
        lines.append(f"{verdict:7} {e.source} {e.pointer}  {e.id or '(no id)'}  model={e.model or 'unknown'}"
                     f"  representation={e.representation or '-'}")
        for f in e.findings:
            lines.append(f"  {f.severity:9} {f.path}  [{f.rule}] {f.message}")
            if f.explanation:
                lines.append(f"            {f.explanation}")
    s = report.summary()
    lines.append(f"\n{s['entities']} entities: {s['valid']} valid, {s['invalid']} invalid; "
                 f"{s['violations']} violations, {s['warnings']} warnings")
    return "\n".join(lines) + "\n"


def broker_text(report: ProbeReport) -> str:
    lines = [f"NGSI-LD broker {report.broker} (tenant {report.tenant}), ETSI GS CIM 009 V1.9.1"]
    for r in report.results:
        lines.append(f"{r.status.upper():13} {r.feature:15} {r.clause:18} {r.title}")
        if r.status != PASS:
            lines.append(f"              expected: {r.expected}")
            lines.append(f"              observed: {r.observed}")
    s = report.summary()
    lines.append(f"\n{s['checks']} checks: {s['passed']} passed, {s['failed']} failed, "
                 f"{s['not_supported']} not supported")
    return "\n".join(lines) + "\n"


# --- HTML ---------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2430;max-width:80rem}
h1{font-size:1.6rem;margin-bottom:.2rem} .sub{color:#5a6473;margin-top:0}
.figures{display:flex;gap:1rem;margin:1.5rem 0;flex-wrap:wrap}
.figure{border:1px solid #d5dae1;border-radius:.5rem;padding:.8rem 1.2rem;min-width:8rem}
.figure .n{font-size:2rem;font-weight:700;display:block} .figure .l{color:#5a6473}
.ok{color:#17703a} .bad{color:#b3261e} .ns{color:#8a5a00}
table{border-collapse:collapse;width:100%;margin:1rem 0} th,td{border-bottom:1px solid #e3e7ec;
text-align:left;padding:.35rem .5rem;vertical-align:top;font-size:.92rem} th{background:#f4f6f8}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#f7f8fa;padding:.5rem;overflow:auto;max-height:20rem;white-space:pre-wrap}
details{margin:.2rem 0} .badge{font-weight:700;text-transform:uppercase;font-size:.8rem}
"""


def _page(title: str, subtitle: str, figures: list[tuple[str, str, int, str]], body: str) -> str:
    figs = "".join(
        f'<div class="figure"><span class="n {cls}" id="figure-{key}">{n}</span><span class="l">{label}</span></div>'
        for key, label, n, cls in figures
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"sub\">{html.escape(subtitle)} &middot; {when}</p>"
            f'<section class="figures" id="summary">{figs}</section>{body}</body></html>\n')


def _e(v: Any) -> str:
    return html.escape(str(v))


def payload_html(report: PayloadReport) -> str:
    s = report.summary()
    figures = [("entities", "entities", s["entities"], ""), ("valid", "valid", s["valid"], "ok"),
               ("invalid", "invalid", s["invalid"], "bad" if s["invalid"] else ""),
               ("violations", "violations", s["violations"], "bad" if s["violations"] else ""),
               ("warnings", "warnings", s["warnings"], "ns" if s["warnings"] else "")]
    rows = []
    for e in report.entities:
        verdict = '<span class="badge ok">valid</span>' if e.valid else '<span class="badge bad">invalid</span>'
        findings = "".join(
            f'<tr><td class="{"bad" if f.severity == "violation" else "ns"}">{_e(f.severity)}</td>'
            f"<td><code>{_e(f.path)}</code></td><td><code>{_e(f.rule)}</code></td>"
            f"<td>{_e(f.message)}<br><small>{_e(f.explanation)}</small></td></tr>"
            for f in e.findings
        )
        table = (f"<table><tr><th>severity</th><th>where</th><th>rule</th><th>what</th></tr>{findings}</table>"
                 if findings else "<p>No finding.</p>")
        rows.append(f"<section class=\"entity\"><h2>{verdict} <code>{_e(e.id or '(no id)')}</code></h2>"
                    f"<p>model <b>{_e(e.model or 'unknown')}</b> &middot; representation "
                    f"{_e(e.representation or '-')} &middot; <code>{_e(e.source)}</code> {_e(e.pointer)}</p>"
                    f"{table}</section>")
    return _page("Smart Data Models payload check", "NGSI-LD (ETSI GS CIM 009 V1.9.1) and FIWARE Smart Data Models",
                 figures, "".join(rows))


def broker_html(report: ProbeReport) -> str:
    s = report.summary()
    figures = [("checks", "checks", s["checks"], ""), ("passed", "passed", s["passed"], "ok"),
               ("failed", "failed", s["failed"], "bad" if s["failed"] else ""),
               ("not-supported", "not supported", s["not_supported"], "ns" if s["not_supported"] else "")]
    cls = {PASS: "ok", FAIL: "bad", NOT_SUPPORTED: "ns"}
    rows = []
    for r in report.results:
        exchanges = "".join(
            f"<details><summary><code>{_e(x.method)} {_e(x.url)}</code> &rarr; {_e(x.status)}</summary>"
            f"<pre>request headers: {_e(json.dumps(x.request_headers))}\nrequest body: "
            f"{_e(json.dumps(x.request_body, ensure_ascii=False))}\n\nresponse headers: "
            f"{_e(json.dumps(x.response_headers))}\nresponse body: "
            f"{_e(json.dumps(x.response_body, ensure_ascii=False))}</pre></details>"
            for x in r.exchanges
        )
        rows.append(f'<tr><td class="badge {cls[r.status]}">{_e(r.status)}</td><td>{_e(r.feature)}</td>'
                    f"<td>{_e(r.clause)}</td><td><b>{_e(r.title)}</b><br>expected: {_e(r.expected)}<br>"
                    f"observed: {_e(r.observed)}{exchanges}</td></tr>")
    body = ("<table><tr><th>result</th><th>feature</th><th>clause</th><th>check, expected and observed exchange"
            "</th></tr>" + "".join(rows) + "</table>")
    return _page("NGSI-LD broker compliance", f"{report.broker} (tenant {report.tenant}), ETSI GS CIM 009 V1.9.1",
                 figures, body)
