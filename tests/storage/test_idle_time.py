"""storage.sqlite_thread: what the writer does on its idle time (real files, real threads).

The WAL checkpoint runs when the writer runs out of jobs, not in a write's COMMIT: whether it ran is seen
in the database file itself (a copy of the file without its WAL holds a committed row only once a
checkpoint has copied it there; a few rows are far below any autocheckpoint). Idle-time jobs
(`tx(idle=True)`, the change log's trimming) run once no other job is queued, or after IDLE_JOB_WAIT.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

import storage.sqlite_thread
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
            for _ in range(3000):  # a bound, not a timing: the writer checkpoints once it is idle
                if _in_file_alone(path, tmp_path) == [1, 2, 3]:
                    break
                await asyncio.sleep(0.01)
            assert _in_file_alone(path, tmp_path) == [1, 2, 3]
            assert thread.checkpoints >= 2
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


def _idle_order(tmp_path: Path) -> list[str]:
    """The order in which an idle-time job and two plain writes queued after it, all behind a held writer, ran."""
    ran: list[str] = []

    async def main() -> None:
        thread = SQLiteThread(tmp_path / "i.db", name="test-writer")
        await thread.open(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        started, release = threading.Event(), threading.Event()
        holder = asyncio.ensure_future(thread.run(lambda _: (started.set(), release.wait())))
        try:
            await asyncio.to_thread(started.wait)

            def job(name: str, n: int) -> object:
                def fn(c: sqlite3.Connection) -> None:
                    c.execute("INSERT INTO t VALUES (?)", (n,))
                    ran.append(name)
                return fn

            tasks = [asyncio.ensure_future(thread.tx(job("idle", 0), write=True, idle=True))]  # type: ignore[arg-type]
            while not thread._idle_jobs:
                await asyncio.sleep(0)
            tasks += [asyncio.ensure_future(thread.tx(job(f"w{n}", n), write=True, group=True))  # type: ignore[arg-type]
                      for n in (1, 2)]
            while len(thread._jobs) < 2:
                await asyncio.sleep(0)
        finally:
            release.set()
        try:
            await holder
            await asyncio.gather(*tasks)
            assert sorted(await thread.run(lambda c: [r[0] for r in c.execute("SELECT n FROM t")])) == [0, 1, 2]
        finally:
            await thread.close()

    asyncio.run(main())
    return ran


def test_an_idle_time_job_runs_once_the_writes_queued_after_it_are_done(tmp_path: Path) -> None:
    assert _idle_order(tmp_path) == ["w1", "w2", "idle"]


def test_an_idle_time_job_that_waited_long_enough_runs_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.sqlite_thread, "IDLE_JOB_WAIT", 0.0)  # a writer that never idles
    assert _idle_order(tmp_path) == ["idle", "w1", "w2"]
