"""A few real ETSI tests, end to end: `make conformance`'s script and `check broker --etsi`.

Both run the shared suite (`../shared/conformance`) through its runner
against a real broker: the script starts its own brokers on both stores; the
command checks a broker this test starts. Two tests only, so each run takes
seconds. Without the suite beside the project the tests skip (fail under
CI=true); the script's run needs PostgreSQL too.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from broker.settings import BrokerSettings
from compliance.etsi_runner import PROJECT, EtsiSuiteNotFound, find_conformance
from metropole.cli import main
from tests import services
from tests.broker.conftest import RunningBroker, free_port

TESTS = ("018_01_01", "019_01_04")  # retrieve an entity by id; query by attribute names


@pytest.fixture(scope="module")
def conformance() -> Path:
    try:
        return find_conformance()
    except EtsiSuiteNotFound as exc:
        if services.in_ci():
            pytest.fail(f"{exc}; CI=true requires it", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> Iterator[str]:
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=tmp_path / "broker",
                              store_url=f"sqlite:///{tmp_path / 'broker.db'}")
    with RunningBroker(settings) as broker:
        yield broker.url


def _tsv(path: Path) -> dict[str, str]:
    """id -> status as the shared runner's own summary wrote them (etsi-tests.tsv)."""
    with open(path, newline="") as fh:
        return {row["id"]: row["status"] for row in csv.DictReader(fh, delimiter="\t")}


def _schema_exists(dsn: str, schema: str) -> bool:
    import asyncio

    async def go() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_make_conformance_script_on_both_stores(conformance: Path, tmp_path: Path) -> None:
    dsn = services.require_postgres()
    ports = [free_port(), free_port()]
    results = tmp_path / "results"
    args = [sys.executable, "-m", "compliance.conformance", "--broker-ports", ",".join(map(str, ports)),
            "--results", str(results), "--pg-dsn", dsn, "--floor", str(tmp_path / "no-floor.json")]
    for t in TESTS:
        args += ["--test", t]
    done = subprocess.run(args, cwd=PROJECT, check=False, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    statuses = {store: _tsv(results / store / "etsi-tests.tsv") for store in ("sqlite", "postgresql")}
    assert set(statuses["sqlite"]) == set(statuses["postgresql"]) == set(TESTS)
    # the side-by-side table, per-store and overall lines agree with what the runner itself recorded
    assert re.search(r"^area\s+sqlite\s+postgresql$", out, re.MULTILINE)
    for store, st in statuses.items():
        passed = sum(s == "PASS" for s in st.values())
        assert f"{store + ':':12} ETSI: {passed} passed, {len(st) - passed} failed" in out
    both = sum(statuses["sqlite"][t] == statuses["postgresql"][t] == "PASS" for t in TESTS)
    assert "conformance: partial run (a selection of tests, or with MQTT): floor not checked" in out
    assert out.rstrip().splitlines()[-1] == f"ETSI: {both} passed, {len(TESTS) - both} failed"
    # nothing left: the brokers' ports are free again and the schema is gone
    for port in ports:
        assert not services.answers("127.0.0.1", port)
    schema = re.search(r"schema=(etsi_conformance_\w+)", out)
    assert schema and not _schema_exists(dsn, schema.group(1))


def test_check_broker_etsi_renders_html_and_json(conformance: Path, sqlite_broker: str, tmp_path: Path) -> None:
    results = tmp_path / "run"
    out = tmp_path / "report.json"
    argv = ["check", "broker", sqlite_broker, "--etsi", "--etsi-results", str(results), "--format", "json",
            "-o", str(out)]
    for t in TESTS:
        argv += ["--test", t]
    code = main(argv)
    body = json.loads(out.read_text())
    recorded = _tsv(results / "etsi-tests.tsv")
    assert {t["id"]: t["status"] for t in body["tests"]} == recorded
    assert recorded["018_01_01"] == "PASS"  # retrieving an entity by id: the broker has always passed it
    assert code == (0 if "FAIL" not in recorded.values() else 1)  # non-zero unless every test passed
    assert body["broker"] == sqlite_broker and body["summary"]["total"] == 2
    assert body["tests"][0]["clauses"] and body["areas"]["Consumption"]["total"] == 2
    for t in body["tests"]:
        if t["status"] != "PASS":
            assert t["message"] and t["exchanges"][-1]["request"]["url"].startswith(sqlite_broker)
    page = (results / "metropole-report.html").read_text()
    assert 'id="figure-tests">2<' in page and "5.7.1" in page
    assert json.loads((results / "metropole-report.json").read_text())["summary"] == body["summary"]
