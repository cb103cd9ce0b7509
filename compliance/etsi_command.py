"""`metropole check broker URL --etsi`: the official ETSI conformance suite against any NGSI-LD broker.

Where the probe (`check broker URL`) runs 44 checks of our own, `--etsi`
runs the ETSI NGSI-LD API conformance tests (ETSI GS CIM 014, about 1,000
tests) through the shared runner and renders the result as the probe's
report: per area, per clause, and every failing test with the requests sent
and the responses received. The runner's own files (Robot Framework's
`output.xml`, `log.html`) and a copy of the report in HTML and JSON stay in
the results folder.

The suite writes in the broker's default tenant and some tests count
entities of a type, so it is meant for a broker with an empty store (a test
instance), not a production one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from compliance.etsi_report import etsi_html, etsi_text
from compliance.etsi_results import EtsiRun, read_output
from compliance.etsi_runner import (
    ENV_DIR,
    EtsiSuiteNotFound,
    Harness,
    SuiteRun,
    find_conformance,
    run_suite,
    selection_args,
)


def add_etsi_flags(brk: argparse.ArgumentParser) -> None:
    """The --etsi flags of `check broker`."""
    g = brk.add_argument_group("ETSI conformance suite (--etsi)")
    g.add_argument("--etsi", action="store_true",
                   help="run the ETSI NGSI-LD conformance suite (about 1,000 tests, 5-10 minutes) instead of the "
                        "probe; the broker should have an empty store")
    g.add_argument("--etsi-suite", default=None,
                   help=f"folder of run-etsi.sh and etsi-suite/ (default: ${ENV_DIR} or ../shared/conformance)")
    g.add_argument("--etsi-ports", type=int, default=None,
                   help="first of four ports for the suite's helper servers at --notify-host (default: free ports)")
    g.add_argument("--etsi-results", default=None,
                   help="folder for the run's files (default: ./.etsi-results/check-<time>)")
    g.add_argument("--etsi-venv", default=None, help="the runner's Python environment (default: $ETSI_VENV or "
                                                     "./.etsi-venv, created on first use)")
    g.add_argument("--test", action="append", default=[], help="only these test ids or patterns (repeatable)")
    g.add_argument("--suite-path", action="append", default=[], help="only this part of the suite, e.g. "
                   "TP/NGSI-LD/ContextInformation/Subscription (repeatable)")
    g.add_argument("--with-mqtt", action="store_true", help="also the 12 MQTT-notification tests "
                   "(need an MQTT broker on --mqtt-host:1883)")
    g.add_argument("--mqtt-host", default="127.0.0.1", help="MQTT broker of the MQTT tests, as the broker sees it")
    g.add_argument("--temporal-url", default=None, help="the broker's temporal API, when it is served elsewhere")
    g.add_argument("--min-pass", default=None,
                   help="succeed when at least this many tests pass (a number, or a percentage like 80%%)")


def min_pass_count(spec: str | None, total: int) -> int | None:
    """--min-pass as a number of tests: "450" -> 450, "80%" -> 80% of `total` rounded up."""
    if spec is None:
        return None
    spec = spec.strip()
    if spec.endswith("%"):
        return -(-int(float(spec[:-1]) * total) // 100)
    return int(spec)


def render_etsi(run: EtsiRun, fmt: str, conformance: Path | None = None) -> str:
    """The run as "text", "json" or "html"."""
    if fmt == "json":
        return json.dumps(run.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "html":
        return etsi_html(run, conformance)
    return etsi_text(run)


def cmd_check_broker_etsi(args: argparse.Namespace) -> int:
    """`metropole check broker URL --etsi`."""
    try:
        conformance = find_conformance(args.etsi_suite)
    except EtsiSuiteNotFound as exc:
        print(f"metropole: {exc}", file=sys.stderr)
        return 2
    host = args.notify_host
    harness = Harness.from_base(host, args.etsi_ports) if args.etsi_ports else Harness.free(host)
    outdir = Path(args.etsi_results or Path(".etsi-results") / f"check-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    venv = args.etsi_venv or os.environ.get("ETSI_VENV")
    run = SuiteRun(args.url, outdir, conformance, harness=harness, venv=Path(venv).resolve() if venv else None,
                   with_mqtt=args.with_mqtt, mqtt_host=args.mqtt_host, temporal_url=args.temporal_url,
                   selection=selection_args(args.test, args.suite_path))
    print(f"metropole: ETSI suite ({conformance}) against {args.url}; helper servers on {harness.describe()}; "
          f"files in {outdir}", file=sys.stderr)
    try:
        outcome = run_suite(run, stream=sys.stderr, prefix="  ")
    except subprocess.CalledProcessError as exc:
        print(f"metropole: could not create the runner's environment {run.resolved_venv}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metropole: interrupted; the suite's processes are stopped", file=sys.stderr)
        return 130
    if not outcome.output_xml.is_file():
        print(f"metropole: the suite left no results (see {outdir}/console.log)", file=sys.stderr)
        return 2
    result = read_output(outcome.output_xml, broker=args.url)
    if not result.tests:
        print(f"metropole: the suite ran no test (see {outdir}/console.log)", file=sys.stderr)
        return 2
    for fmt, name in (("html", "metropole-report.html"), ("json", "metropole-report.json")):
        (outdir / name).write_text(render_etsi(result, fmt, conformance), encoding="utf-8")
    text = render_etsi(result, args.format, conformance)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.output or args.format != "text":  # the text report ends with this line already
        print(result.summary_line(), file=sys.stderr)
    return 0 if result.ok(min_pass_count(args.min_pass, result.counts.total)) else 1
