"""storage.sqlite_thread: the writer checkpoints the WAL when it runs out of jobs, not in a write's COMMIT.

Whether a checkpoint ran is seen in the database file itself: a copy of the file without its WAL holds a
committed row only once a checkpoint has copied it there (a few rows are far below any autocheckpoint).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from storage.sqlite_thread import SQLiteThread


def _in_file_alone(path: Path, tmp: Path) -> list[int]:
    """The rows of t in the database file alone (what checkpoints copied), its WAL left out."""
    copy = tmp / "alone.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return [r[0] for r in conn.execute("SELECT n FROM t ORDER BY n")]
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return []
    finally:
        conn.close()


async def _wait_for_checkpoints(thread: SQLiteThread, count: int) -> None:
    for _ in range(3000):  # a bound, not a timing: the writer checkpoints once it is idle
        if thread.checkpoints >= count:
            return
        await asyncio.sleep(0.01)


def test_the_writer_checkpoints_when_it_runs_out_of_jobs(tmp_path: Path) -> None:
    path = tmp_path / "c.db"

    async def main() -> None:
        thread = SQLiteThread(path, name="test-writer", idle_checkpoint=0.0)
        await thread.open(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        try:
            await _wait_for_checkpoints(thread, 1)
            for n in (1, 2, 3):
                await thread.tx(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,)), write=True, group=True)
            await _wait_for_checkpoints(thread, 2)
            assert thread.checkpoints >= 2
            assert _in_file_alone(path, tmp_path) == [1, 2, 3]
            # jobs queued behind a checkpoint still run, in order
            results = await asyncio.gather(*(thread.tx(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,)).rowcount
                                                       + n, write=True, group=True) for n in (4, 5, 6)))
            assert results == [5, 6, 7]
        finally:
            await thread.close()
        conn = sqlite3.connect(path)
        try:
            assert [r[0] for r in conn.execute("SELECT n FROM t ORDER BY n")] == [1, 2, 3, 4, 5, 6]
        finally:
            conn.close()

    asyncio.run(main())


def test_a_thread_that_only_reads_never_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    setup.close()

    async def main() -> None:
        reader = SQLiteThread(path, name="test-reader", idle_checkpoint=0.0)
        await reader.open()
        try:
            for _ in range(3):
                assert await reader.tx(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0], write=False) == 0
                await reader.run(lambda c: c.execute("SELECT 1").fetchone())
            assert reader.checkpoints == 0
        finally:
            await reader.close()

    asyncio.run(main())


def test_a_commit_below_the_bound_leaves_the_checkpoint_to_idle_time(tmp_path: Path) -> None:
    """The writer's connection checkpoints on its own only past WAL_AUTOCHECKPOINT pages, not SQLite's 1,000."""
    path = tmp_path / "a.db"

    async def main() -> None:
        thread = SQLiteThread(path, name="test-writer")
        await thread.open()
        try:
            pages = await thread.run(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            assert pages > 1000
        finally:
            await thread.close()

    asyncio.run(main())
