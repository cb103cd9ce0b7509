"""The `metropole check` subcommands: `check payload PATH...` and `check broker URL [--etsi]`.

Exit codes: 0 when everything passed, 1 when a payload has a violation
(or, with --strict, a warning) or a broker check failed or is not
supported (with --etsi: a test failed, or fewer passed than --min-pass),
2 on a usage error or when the ETSI suite could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.representation import Representation


def add_check_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `check payload` and `check broker` to the console script's subcommands."""
    chk = sub.add_parser("check", help="compliance checks: payloads (Smart Data Models) and brokers (NGSI-LD)")
    kinds = chk.add_subparsers(dest="check_kind", required=True)

    pay = kinds.add_parser("payload", help="check entities in files, folders or stdin (-)")
    pay.add_argument("paths", nargs="+", help="a file, a folder, or - for stdin")
    pay.add_argument("--representation", choices=["auto", "normalized", "concise", "keyValues"], default="auto")
    pay.add_argument("--strict", action="store_true", help="warnings fail too")
    _output_flags(pay)
    pay.set_defaults(func=cmd_check_payload)

    brk = kinds.add_parser("broker", help="probe an NGSI-LD broker (non-destructive, in a test tenant)")
    brk.add_argument("url", help="the broker's root, e.g. http://127.0.0.1:1026")
    brk.add_argument("--tenant", default=None, help="test tenant (default: compliance-<random>)")
    brk.add_argument("--context", default=None, help="@context URL of the test entities (Smart Data Models)")
    brk.add_argument("--feature", action="append", default=None, help="only these feature groups (repeatable)")
    brk.add_argument("--notify-host", default="127.0.0.1",
                     help="address the broker can reach this machine at, for notifications "
                          "(with --etsi: where the suite's helper servers listen)")
    brk.add_argument("--notify-timeout", type=float, default=5.0, help="seconds to wait for a notification")
    _output_flags(brk)
    brk.set_defaults(func=cmd_check_broker)
    from compliance.etsi_command import add_etsi_flags

    add_etsi_flags(brk)


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json", "html"], default="text")
    parser.add_argument("--output", "-o", default=None, help="write the report to this file (default: stdout)")


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_check_payload(args: argparse.Namespace) -> int:
    """`metropole check payload`."""
    from compliance.payload import check_payloads
    from compliance.report import render

    representation = None if args.representation == "auto" else Representation(args.representation)
    report = check_payloads(args.paths, representation=representation, strict=args.strict)
    _emit(render(report, args.format), args.output)
    return 0 if report.ok else 1


def cmd_check_broker(args: argparse.Namespace) -> int:
    """`metropole check broker URL` (with --etsi: the ETSI conformance suite)."""
    if args.etsi:
        from compliance.etsi_command import cmd_check_broker_etsi

        return cmd_check_broker_etsi(args)
    from compliance.probe import DEFAULT_CONTEXT, NotificationReceiver, Probe
    from compliance.report import render

    with NotificationReceiver("0.0.0.0" if args.notify_host != "127.0.0.1" else "127.0.0.1",
                              advertised_host=args.notify_host) as receiver:
        probe = Probe(args.url, tenant=args.tenant, context=args.context or DEFAULT_CONTEXT, receiver=receiver,
                      notification_timeout=args.notify_timeout)
        report = probe.run(set(args.feature) if args.feature else None)
    _emit(render(report, args.format), args.output)
    return 0 if report.ok else 1
