"""broker.store.sqlite_rows: many rows in few multi-row statements, on a real SQLite connection."""

from __future__ import annotations

import sqlite3

import pytest

from broker.store.sqlite_rows import insert_rows, insert_rows_last_id


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT, b BLOB, x REAL, n INTEGER)")
    return c


@pytest.mark.parametrize("count", [0, 1, 3, 4, 17, 256, 341, 600])
def test_every_row_goes_in_once_in_order_with_its_values_as_bound(conn: sqlite3.Connection, count: int) -> None:
    # every rung of the ladder (256, 64, 16, 4, 1) and their mixes: 341 = 256 + 64 + 16 + 4 + 1
    rows = [(f"a{i}", bytes([i % 256]) * 3, i / 4, None if i % 5 == 0 else i) for i in range(count)]
    changed = insert_rows(conn, "INSERT INTO t (a, b, x, n)", rows)
    assert changed == count
    assert conn.execute("SELECT a, b, x, n FROM t ORDER BY k").fetchall() == rows
    # bytes stay BLOBs, floats doubles, None NULL
    if count:
        assert conn.execute("SELECT typeof(b), typeof(x) FROM t LIMIT 1").fetchone() == ("blob", "real")


def test_last_id_is_the_rowid_of_the_last_row(conn: sqlite3.Connection) -> None:
    assert insert_rows_last_id(conn, "INSERT INTO t (a, b, x, n)", []) == 0
    last = insert_rows_last_id(conn, "INSERT INTO t (a, b, x, n)", [(str(i), b"", 0.0, i) for i in range(261)])
    assert last == 261
    assert conn.execute("SELECT a FROM t WHERE k = ?", (last,)).fetchone() == ("260",)


def test_a_conflict_tail_meets_an_earlier_row_of_the_same_key(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE u (k TEXT PRIMARY KEY, v INTEGER)")
    rows = [("same", i) for i in range(70)] + [("other", 1)]
    insert_rows(conn, "INSERT INTO u (k, v)", rows, " ON CONFLICT (k) DO UPDATE SET v = excluded.v")
    assert dict(conn.execute("SELECT k, v FROM u").fetchall()) == {"same": 69, "other": 1}
