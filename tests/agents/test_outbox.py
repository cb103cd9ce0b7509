"""The durable outbox (adapters.outbox): order per device, lease/ack/release, dead letters, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.outbox import Leased, Outbox, OutboxItem

PROJECT = Path(__file__).resolve().parents[2]


def item(device: str, n: int, *, target: str = "", tenant: str = "") -> OutboxItem:
    entity = {"id": f"urn:ngsi-ld:AirQualityObserved:{device}", "type": "AirQualityObserved",
              "no2": {"type": "Property", "value": n, "unitCode": "GQ"}}
    return OutboxItem(target, tenant, ("https://smartdatamodels.org/context.jsonld",), device, entity, time.time())


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_append_is_one_transaction_and_lease_returns_rows_in_order(outbox: Outbox) -> None:
    assert outbox.append([item("a", 1), item("b", 1), item("a", 2)]) == 3
    assert outbox.depth == 3
    rows = outbox.lease(10)
    assert [(r.item.device, r.item.entity["no2"]["value"]) for r in rows] == [("a", 1), ("b", 1), ("a", 2)]
    assert rows[0].item.context == ("https://smartdatamodels.org/context.jsonld",)
    assert outbox.lease(10) == [], "leased rows are not handed out twice"
    outbox.ack([r.seq for r in rows])
    assert outbox.depth == 0


def test_a_device_waits_behind_its_own_leased_or_backing_off_row(outbox: Outbox) -> None:
    outbox.append([item("a", 1)])
    first = outbox.lease(1)
    outbox.append([item("a", 2), item("b", 1)])
    assert [r.item.device for r in outbox.lease(10)] == ["b"], "a's second measure must not overtake its first"
    outbox.release([first[0].seq], delay=30)
    assert outbox.lease(10) == [], "a still backing off: its later rows wait too"
    outbox.release([first[0].seq], delay=0)
    rows = outbox.lease(10)
    assert [r.item.entity["no2"]["value"] for r in rows] == [1, 2]
    assert rows[0].attempts == 2


def test_skip_targets_holds_back_one_broker_only(outbox: Outbox) -> None:
    outbox.append([item("a", 1, target="http://down:1026"), item("b", 1)])
    assert [r.item.device for r in outbox.lease(10, skip_targets=["http://down:1026"])] == ["b"]


def test_dead_letter_keeps_the_problem_and_the_entity(outbox: Outbox) -> None:
    outbox.append([item("a", 1)])
    (row,) = outbox.lease(1)
    problem = {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Bad request data",
               "status": 400, "detail": "no2 is not a number"}
    outbox.dead_letter(row.seq, problem)
    assert outbox.depth == 0
    (dead,) = outbox.dead_letters()
    assert dead.problem == problem
    assert dead.item.entity["id"] == "urn:ngsi-ld:AirQualityObserved:a"
    assert outbox.dead_letter_count() == 1


def test_reopening_clears_leases_so_nothing_is_stranded(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([item("a", 1), item("a", 2)])
    assert len(box.lease(10)) == 2
    box.close()  # a consumer that died holding a lease
    again = Outbox(tmp_path / "o.db")
    assert [r.item.entity["no2"]["value"] for r in again.lease(10)] == [1, 2]
    assert again.depth == 2
    again.close()


def test_on_append_listeners_are_called_after_commit(outbox: Outbox) -> None:
    seen: list[int] = []
    outbox.on_append(lambda: seen.append(outbox.depth))
    outbox.append([item("a", 1)])
    assert seen == [1]


_WRITER = """
import sys, time
from adapters.outbox import Leased, Outbox, OutboxItem
box = Outbox(sys.argv[1], synchronous=sys.argv[2])
n = 0
while True:
    box.append([OutboxItem('', '', (), 'dev', {'id': 'urn:x:%d' % (n + i), 'type': 'T'}, time.time()) for i in range(10)])
    n += 10
    print(n, flush=True)
"""


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_every_committed_append_survives_kill_9(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), synchronous], cwd=PROJECT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.stdout is not None
    committed = 0
    while committed < 300:
        line = proc.stdout.readline()
        assert line, "writer died"
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # whatever it printed before dying was committed too
        committed = max(committed, int(line))
    box = Outbox(db)
    rows = box.lease(100_000)
    box.close()
    ids = [int(r.item.entity["id"].rsplit(":", 1)[1]) for r in rows]
    assert len(ids) >= committed
    assert ids == list(range(len(ids))), "rows come back complete and in order"


def test_operators_list_retry_retarget_and_purge_per_tenant(outbox: Outbox) -> None:
    """The outbox as the /iot/outbox API sees it: each tenant (and service path) its own rows only."""
    def scoped(device: str, n: int, tenant: str, path: str = "/", target: str = "http://old:1026") -> OutboxItem:
        return item(f"{tenant}|key-{tenant}|{device}", n, target=target, tenant=tenant)._replace(service_path=path)

    outbox.append([scoped("a", 1, "aix"), scoped("b", 2, "aix", "/north"), scoped("c", 3, "marseille")])
    count, rows = outbox.rows("aix", None)
    assert count == 2 and [r["device_id"] for r in rows] == ["a", "b"]
    assert outbox.rows("aix", "/north")[0] == 1
    assert [r["device_id"] for r in outbox.rows("marseille", None)[1]] == ["c"]
    leased = outbox.lease(10)
    outbox.release([r.seq for r in leased], delay=60, error="broker away")
    assert {r["state"] for r in outbox.rows("aix", None)[1]} == {"waiting"}
    assert outbox.rows("aix", None)[1][0]["lastError"] == "broker away"
    assert outbox.retry("aix", "/") == 1, "retry is scoped to the service path"
    assert [r.item.device for r in outbox.lease(10)] == ["aix|key-aix|a"]
    assert outbox.retarget("aix", "key-aix", "http://new:1026") == 2, "a group's rows follow its new cbroker"
    assert outbox.counts()[0] == {"http://new:1026": 2, "http://old:1026": 1}
    assert "http://new:1026" in outbox.targets
    assert outbox.purge("marseille", None) == 1 and outbox.depth == 2
    assert outbox.rows("marseille", None)[0] == 0


def test_dead_letters_requeued_to_the_current_target_and_purged(outbox: Outbox) -> None:
    outbox.append([item("aix|k|a", 1, target="http://old:1026", tenant="aix"),
                   item("lyon|k|b", 2, target="http://old:1026", tenant="lyon")])
    for row in outbox.lease(10):
        outbox.dead_letter(row.seq, {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "status": 400})
    count, dead = outbox.dead("aix", None)
    assert count == 1 and dead[0]["problem"]["status"] == 400 and dead[0]["entity"]["no2"]["value"] == 1
    assert outbox.requeue("aix", None, target=lambda _tenant, _device: "http://new:1026") == 1
    (row,) = outbox.lease(10)
    assert row.item.target == "http://new:1026" and row.item.device == "aix|k|a"
    assert outbox.dead_letter_count() == 1, "lyon's dead letter stays where it was"
    assert outbox.purge_dead("aix", None) == 0 and outbox.purge_dead("lyon", None) == 1


def _lease_with_plan(box: Outbox, target: str) -> tuple[list[Leased], list[str]]:
    """A lease, and the EXPLAIN QUERY PLAN lines of the statements it ran on the outbox's reader connection."""
    statements: list[str] = []
    box._reader.set_trace_callback(statements.append)
    try:
        rows = box.lease(10, target=target)
    finally:
        box._reader.set_trace_callback(None)
    return rows, [row[3] for sql in statements for row in box._reader.execute("EXPLAIN QUERY PLAN " + sql)]


def test_a_lanes_lease_walks_the_lease_index_not_the_table(outbox: Outbox) -> None:
    outbox.append([item(f"d{i}", i, target="http://down:1026") for i in range(50)] + [item("b", 1, target="http://up:1026")])
    rows, plan = _lease_with_plan(outbox, "http://up:1026")
    assert any("USING INDEX outbox_lease (target=?)" in line for line in plan), plan
    assert not any(line.startswith("SCAN outbox") for line in plan), plan
    assert [r.item.device for r in rows] == ["b"]


def test_an_outbox_file_from_before_the_lease_index_gets_it_at_open(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,
        tenant TEXT NOT NULL, context BLOB NOT NULL, device TEXT NOT NULL, entity BLOB NOT NULL,
        accepted_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,
        last_error TEXT);
        CREATE INDEX outbox_not_before ON outbox (not_before);""")
    db.execute("INSERT INTO outbox (target, tenant, context, device, entity, accepted_at) VALUES"
               " ('', '', '[]', 'a', '{\"id\": \"urn:a\"}', 0)")
    db.commit()
    db.close()
    box = Outbox(path)
    try:
        indexes = {r[1] for r in box._db.execute("PRAGMA index_list(outbox)")}
        assert "outbox_lease" in indexes
        assert [r.entity_id for r in box.lease(10, target="")] == ["urn:a"]
    finally:
        box.close()
