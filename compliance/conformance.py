"""`make conformance`: the ETSI NGSI-LD suite against the embedded broker on both stores, checked against the floor.

    python -m compliance.conformance [--stores sqlite,postgresql] [--update-floor] [--test 018_01_01] ...

For each store it starts a broker of its own (`metropole broker`, in a process
session of its own) on an empty store: SQLite in a fresh data folder,
PostgreSQL in a fresh schema of the test database (dropped afterwards). It
runs the shared suite against each, both at once by default (each with its
own harness ports and work folder), prints the per-area tables side by side,
the tests that pass on one store and fail on the other, `ETSI: N passed, M
failed` per store and, last, overall (a test passes overall when it passes
on every store). A full run is then held against the floor
(`compliance/etsi-floor.json`, see `compliance.etsi_floor`): exit code 1 when
any count is below it. `--update-floor` rewrites the floor from the run when
no count went down.

Whatever ends the run (its end, a failure, Ctrl-C, SIGTERM), the brokers and
every process of the runner are stopped and the schema is dropped before it
exits.

Exit codes: 0 at or above the floor (or a partial run that completed), 1 below
the floor, 2 when the suite could not run (no suite, no PostgreSQL, a broker
that does not start, no results).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from compliance import etsi_floor
from compliance.etsi_report import area_table
from compliance.etsi_results import PASS, EtsiRun, read_output
from compliance.etsi_runner import (
    PROJECT,
    EtsiSuiteNotFound,
    Harness,
    RunOutcome,
    SuiteRun,
    end_session,
    ensure_venv,
    find_conformance,
    free_port,
    run_suite,
    selection_args,
)

STORES = ("sqlite", "postgresql")
DEFAULT_PG_DSN = os.environ.get("METROPOLE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class ConformanceError(RuntimeError):
    """The suite could not be run (exit code 2)."""


@dataclass(frozen=True)
class StoreRun:
    """One store's broker and run of the suite."""

    store: str
    port: int
    harness: Harness
    outdir: Path


# --- the brokers -----------------------------------------------------------------------------


@contextmanager
def running_broker(port: int, data: Path, store_url: str | None, log: Path) -> Iterator[str]:
    """A `metropole broker` process on 127.0.0.1:port until the block ends; yields its URL."""
    cmd = [sys.executable, "-m", "metropole", "broker", "--host", "127.0.0.1", "--port", str(port), "--data",
           str(data)]
    if store_url:
        cmd += ["--store", store_url]
    env = {**os.environ, "METROPOLE_LOG_LEVEL": os.environ.get("METROPOLE_LOG_LEVEL", "warning")}
    # The temporal page size is the implementation's choice (clause 6.3.10); the suite's pagination
    # tests write 20-39 instances and expect a 206, so its broker pages at 30 (default: 10,000).
    env.setdefault("METROPOLE_BROKER_TEMPORAL_LIMIT", "30")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=PROJECT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-10:]
                raise ConformanceError(f"the broker on port {port} did not start:\n  " + "\n  ".join(tail))
            time.sleep(0.1)
        yield url
    finally:
        end_session(proc)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/ngsi-ld/v1/types", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _pg(dsn: str, sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """The store URL of a new, empty schema of the PostgreSQL at `dsn`, dropped when the block ends."""
    schema = f"etsi_conformance_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        _pg(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except Exception as exc:  # OSError, or one of asyncpg's own errors
        raise ConformanceError(f"PostgreSQL is not reachable at {dsn} ({exc}); "
                               "run with STORES=sqlite to measure SQLite alone") from exc
    sep = "&" if urlsplit(dsn).query else "?"
    try:
        yield f"{dsn}{sep}schema={schema}"
    finally:
        _pg(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- one run per store -----------------------------------------------------------------------


def _end_all(procs: list[subprocess.Popen[str]]) -> None:
    end_session(*procs, grace=3.0)  # on an interruption, robot's graceful stop (end of the current test) is not awaited


def _run_store(run: StoreRun, suite: SuiteRun, results: dict[str, RunOutcome],
               procs: list[subprocess.Popen[str]]) -> None:
    results[run.store] = run_suite(suite, stream=sys.stdout, prefix=f"[{run.store}] ", on_start=procs.append)


def run_all(runs: list[StoreRun], conformance: Path, selection: tuple[str, ...], with_mqtt: bool,
            parallel: bool, pg_dsn: str, venv: Path, max_seconds: int | None = None) -> dict[str, EtsiRun]:
    """Start each store's broker, run the suite against each, stop everything; the parsed runs."""
    try:
        ensure_venv(venv, conformance)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConformanceError(f"could not create the runner's environment {venv}: {exc}") from exc
    outcomes: dict[str, RunOutcome] = {}
    procs: list[subprocess.Popen[str]] = []
    with ExitStack() as stack:
        # last in, first out: the runners stop before the brokers, the brokers before their schema goes
        suites = []
        for r in runs:
            shutil.rmtree(r.outdir, ignore_errors=True)
            r.outdir.mkdir(parents=True)
            store_url = stack.enter_context(fresh_schema(pg_dsn)) if r.store == "postgresql" else None
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"etsi-{r.store}-")))
            url = stack.enter_context(running_broker(r.port, data, store_url, r.outdir / "broker.log"))
            print(f"conformance: {r.store} broker on {url} ({store_url or data / 'broker.db'}), "
                  f"harness {r.harness.describe()}, results in {r.outdir}",
                  flush=True)
            suites.append((r, SuiteRun(url, r.outdir, conformance, harness=r.harness, venv=venv,
                                       with_mqtt=with_mqtt, selection=selection, max_seconds=max_seconds)))
        stack.callback(_end_all, procs)
        if parallel and len(suites) > 1:
            threads = [threading.Thread(target=_run_store, args=(r, s, outcomes, procs), daemon=True)
                       for r, s in suites]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():  # join with a timeout, so Ctrl-C reaches this thread
                    t.join(0.5)
        else:
            for r, s in suites:
                _run_store(r, s, outcomes, procs)
    parsed = {}
    for r in runs:
        outcome = outcomes.get(r.store)
        if outcome is None or not outcome.output_xml.is_file():
            raise ConformanceError(f"the {r.store} run left no results (see {r.outdir}/console.log)")
        run = read_output(outcome.output_xml, label=r.store)
        if not run.tests:
            raise ConformanceError(f"the {r.store} run has no test results (see {r.outdir}/console.log)")
        parsed[r.store] = run
    return parsed


# --- what a run says -------------------------------------------------------------------------


def store_differences(runs: dict[str, EtsiRun]) -> list[tuple[str, str, str]]:
    """(test name, stores it passes on, stores it fails on) for every test whose result depends on the store."""
    status = {store: {t.key: t.status for t in run.tests} for store, run in runs.items()}
    names = {t.key: t.name for run in runs.values() for t in run.tests}
    out = []
    for key in sorted(names, key=lambda k: names[k]):
        passes = [s for s in runs if status[s].get(key) == PASS]
        fails = [s for s in runs if key in status[s] and status[s][key] != PASS]
        if passes and fails:
            out.append((names[key], ",".join(passes), ",".join(fails)))
    return out


def overall(runs: dict[str, EtsiRun]) -> tuple[int, int]:
    """(passed, failed) where a test passes when it passes on every store it ran on."""
    status: dict[str, bool] = {}
    for run in runs.values():
        for t in run.tests:
            status[t.key] = status.get(t.key, True) and t.status == PASS
    passed = sum(status.values())
    return passed, len(status) - passed


def report(runs: dict[str, EtsiRun], notes: Sequence[str] = ()) -> str:
    """Side-by-side tables, store differences, per-store lines, `notes`, and the overall closing line last
    (CI reads the last `N passed, M failed` line of a run)."""
    lines = ["", area_table(runs).rstrip("\n"), ""]
    diffs = store_differences(runs)
    if len(runs) > 1:
        if diffs:
            lines.append(f"{len(diffs)} test(s) pass on one store and fail on the other (issue 11 requires none):")
            lines += [f"  {name}: passes on {p}, fails on {f}" for name, p, f in diffs]
        else:
            lines.append("every test has the same result on every store")
        lines.append("")
    for store, run in runs.items():
        lines.append(f"{store + ':':12} {run.summary_line()}")
    lines += notes
    passed, failed = overall(runs)
    if len(runs) > 1:
        lines.append(f"overall (a test passes when it passes on {' and '.join(runs)}):")
    lines.append(f"ETSI: {passed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def check_floor(runs: dict[str, EtsiRun], floor_path: Path, update: bool, about: dict[str, str]) -> int:
    """Hold the runs against the floor (and raise it when asked); the exit code."""
    floor, meta = etsi_floor.load(floor_path) if floor_path.is_file() else ({}, {})
    unstable = etsi_floor.unstable_of(meta)
    measured = {store: etsi_floor.counts_of(run, unstable) for store, run in runs.items()}
    for name in sorted(unstable):
        seen = ", ".join(f"{s} {t.status}" for s, run in runs.items() for t in run.tests if t.name == name)
        print(f"conformance: unstable, not counted: {name} ({seen or 'not run'})")
    short = etsi_floor.compare({s: c for s, c in floor.items() if s in runs}, measured)
    if short:
        print(f"conformance: BELOW THE FLOOR ({floor_path.name}):")
        for s in short:
            print(f"  {s}")
        if update:
            print("conformance: floor not updated: it only goes up (mend the regressions first)")
        return 1
    raises = etsi_floor.raised(floor, measured)
    if update:
        merged = {**floor, **measured}
        etsi_floor.write(floor_path, merged, {**meta, **about})
        print(f"conformance: floor updated in {floor_path}" + (":" if raises else " (no count changed)"))
        for line in raises:
            print(f"  {line}")
    else:
        print(f"conformance: at or above the floor ({floor_path.name})"
              + (f"; {len(raises)} count(s) above it: `make conformance UPDATE_FLOOR=1` raises it"
                 if raises else ""))
    return 0


# --- command line ----------------------------------------------------------------------------


def _ports(text: str | None, n: int, what: str) -> list[int | None]:
    if not text:
        return [None] * n
    ports = [int(p) for p in text.replace(",", " ").split()]
    if len(ports) < n:
        raise SystemExit(f"conformance: {what} needs {n} ports (one per store), got {text!r}")
    return list(ports[:n])


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m compliance.conformance", description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--pg-dsn", default=DEFAULT_PG_DSN, help="test PostgreSQL (a fresh schema is made and dropped)")
    p.add_argument("--broker-ports", default=os.environ.get("CONFORMANCE_BROKER_PORTS"),
                   help="one port per store, e.g. 27026,27027 (default: free ports)")
    p.add_argument("--harness-ports", default=os.environ.get("CONFORMANCE_HARNESS_PORTS"),
                   help="first of 4 harness ports per store, e.g. 27085,27185 (default: free ports)")
    p.add_argument("--results", default=str(PROJECT / ".etsi-results" / "conformance"),
                   help="results folder (one sub-folder per store)")
    p.add_argument("--etsi-suite", default=None, help="folder of run-etsi.sh (default ../shared/conformance)")
    p.add_argument("--etsi-venv", default=os.environ.get("ETSI_VENV"), help="the runner's venv (default .etsi-venv)")
    p.add_argument("--floor", default=str(etsi_floor.FLOOR_FILE), help="floor file")
    p.add_argument("--update-floor", action="store_true", help="rewrite the floor from this run if nothing dropped")
    p.add_argument("--with-mqtt", action="store_true",
                   help="also the 12 MQTT-notification tests (not in the floor: see README, Conformance)")
    p.add_argument("--sequential", action="store_true", help="one store after the other (default: both at once)")
    p.add_argument("--max-seconds", type=int, default=int(os.environ.get("CONFORMANCE_MAX_SECONDS", "1800")),
                   help="stop a store's run after this long (a hung broker must not eat CI's 90 minutes)")
    p.add_argument("--test", action="append", default=[], help="only these test ids or patterns (repeatable)")
    p.add_argument("paths", nargs="*", help="only these suite paths (TP/NGSI-LD/...)")
    return p.parse_args(argv)


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module's docstring."""
    args = parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown or not stores:
        print(f"conformance: unknown store(s) {unknown}; choose among {', '.join(STORES)}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a CI timeout, a closed terminal: clean up as on Ctrl-C
        signal.signal(sig, _sigterm)
    try:
        conformance = find_conformance(args.etsi_suite)
    except EtsiSuiteNotFound as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    broker_ports = _ports(args.broker_ports, len(stores), "--broker-ports")
    harness_bases = _ports(args.harness_ports, len(stores), "--harness-ports")
    results = Path(args.results).resolve()
    runs = [StoreRun(store, broker_ports[i] or free_port(),
                     Harness.from_base("127.0.0.1", b) if (b := harness_bases[i]) else Harness.free(),
                     results / store) for i, store in enumerate(stores)]
    selection = selection_args(args.test, args.paths)
    partial = bool(selection) or args.with_mqtt
    if args.with_mqtt and not args.sequential and len(stores) > 1:
        # the MQTT tests share one fixed topic: two runs at once would count each other's notifications
        print("conformance: with MQTT, one store after the other", flush=True)
        args.sequential = True
    started = time.monotonic()
    try:
        parsed = run_all(runs, conformance, selection, args.with_mqtt, not args.sequential, args.pg_dsn,
                         Path(args.etsi_venv) if args.etsi_venv else PROJECT / ".etsi-venv", args.max_seconds)
    except ConformanceError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conformance: interrupted; brokers and runners stopped", file=sys.stderr)
        return 130
    notes = [(f"conformance: {time.monotonic() - started:.0f} s; per-test results in {results}/<store>/"
             "etsi-tests.tsv, report.html and log.html")]
    notes += [f"conformance: WARNING: the {store} run stopped before its end (--max-seconds?); counted the tests "
              "that finished" for store, run in parsed.items() if run.truncated]
    if partial:
        notes.append("conformance: partial run (a selection of tests, or with MQTT): floor not checked")
        print(report(parsed, notes), end="")
        return 0
    about = {"about": "ETSI NGSI-LD conformance floor: passing tests per store and area (make conformance "
                      "fails below it; make conformance UPDATE_FLOOR=1 raises it)",
             "suite": "../shared/conformance (ETSI NGSI-LD test suite, V1.9.1 fork), default run without MQTT",
             "measured_at": _git_head()}
    floor_out = io.StringIO()
    with redirect_stdout(floor_out):
        code = check_floor(parsed, Path(args.floor), args.update_floor, about)
    print(report(parsed, notes + floor_out.getvalue().splitlines()), end="")
    return code


if __name__ == "__main__":
    sys.exit(main())
