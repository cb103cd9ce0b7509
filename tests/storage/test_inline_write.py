"""storage.sqlite_thread: `tx(inline=True)`, a write run on its caller's thread when the writer is free (issue 16).

Real files, real threads, a second connection standing for another process. Which thread ran a job is read
inside it (threading.current_thread()); what is committed, from another connection on the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.database import write_lock
from storage.sqlite_thread import SQLiteThread
from tests.storage.test_group_commit import _committed


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")


async def _idle(thread: SQLiteThread) -> None:
    """Wait until the writer thread is done with what it had (the set-up's drain, its checkpoint)."""
    for _ in range(500):
        if not thread._draining and not thread._using.locked():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never went idle")


async def _open(path: Path) -> SQLiteThread:
    thread = SQLiteThread(path, name="writer-under-test", pragmas=("busy_timeout=30000",), idle_checkpoint=3600.0)
    await thread.open(_create)
    await _idle(thread)
    return thread


def _insert(n: int, ran_on: list[str]) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        ran_on.append(threading.current_thread().name)
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        return n

    return fn


def test_a_write_on_a_free_writer_runs_on_the_callers_thread_and_is_committed_before_the_answer(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        lock = write_lock(tmp_path / "f.db")
        try:
            ran_on: list[str] = []
            assert await thread.tx(_insert(1, ran_on), write=True, lock=lock, group=True, inline=True) == 1
            assert _committed(tmp_path / "f.db") == [1]  # committed when answered
            assert ran_on == [threading.current_thread().name]
            assert thread.inline_jobs == 1
            assert not lock.locked()
            # without inline, the same write goes to the writer thread
            assert await thread.tx(_insert(2, ran_on), write=True, lock=lock, group=True) == 2
            assert ran_on[-1] == "writer-under-test"
            assert thread.inline_jobs == 1
        finally:
            await thread.close()

    asyncio.run(main())


def test_a_failing_inline_write_rolls_back_raises_and_leaves_the_writer_usable(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        lock = write_lock(tmp_path / "f.db")
        try:

            def fails(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO t VALUES (7)")
                raise ValueError("refused")

            with pytest.raises(ValueError, match="refused"):
                await thread.tx(fails, write=True, lock=lock, inline=True)
            assert _committed(tmp_path / "f.db") == []
            assert not lock.locked()
            ran_on: list[str] = []
            await thread.tx(_insert(8, ran_on), write=True, lock=lock, inline=True)
            await thread.tx(_insert(9, ran_on), write=True, lock=lock)
            assert _committed(tmp_path / "f.db") == [8, 9]
            assert ran_on == [threading.current_thread().name, "writer-under-test"]
        finally:
            await thread.close()

    asyncio.run(main())


def test_a_write_behind_a_busy_writer_queues_behind_it_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        lock = write_lock(tmp_path / "f.db")
        try:
            started, release = threading.Event(), threading.Event()
            order: list[str] = []

            def hold(conn: sqlite3.Connection) -> None:
                started.set()
                release.wait()
                conn.execute("INSERT INTO t VALUES (1)")
                order.append("held")

            holder = asyncio.ensure_future(thread.tx(hold, write=True, lock=lock, group=True))
            await asyncio.to_thread(started.wait)
            ran_on: list[str] = []
            task = asyncio.ensure_future(thread.tx(_insert(2, ran_on), write=True, lock=lock, group=True, inline=True))
            await asyncio.sleep(0.05)
            assert not task.done()  # queued behind the held job, not run beside it
            release.set()
            await holder
            assert await task == 2
            await _idle(thread)
            assert ran_on == ["writer-under-test"]
            assert order == ["held"]
            assert thread.inline_jobs == 0
            # and once the writer is free again, inline again
            await thread.tx(_insert(3, ran_on), write=True, lock=lock, inline=True)
            assert ran_on[-1] == threading.current_thread().name
            assert _committed(tmp_path / "f.db") == [1, 2, 3]
        finally:
            release.set()
            await thread.close()

    asyncio.run(main())


def test_the_in_process_write_lock_held_elsewhere_sends_the_write_to_the_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        lock = write_lock(tmp_path / "f.db")
        try:
            lock.acquire()  # another SQLiteDatabase of this file, in this process, writing
            ran_on: list[str] = []
            task = asyncio.ensure_future(thread.tx(_insert(1, ran_on), write=True, lock=lock, inline=True))
            ticks = 0
            for _ in range(10):  # the loop goes on meanwhile
                await asyncio.sleep(0.005)
                ticks += 1
            assert ticks == 10 and not task.done()
            lock.release()
            assert await task == 1
            assert ran_on == ["writer-under-test"]
        finally:
            if lock.locked():
                lock.release()
            await thread.close()

    asyncio.run(main())


def test_another_connection_writing_sends_the_write_to_the_writer_and_its_busy_wait_is_kept(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        lock = write_lock(tmp_path / "f.db")
        other = sqlite3.connect(tmp_path / "f.db", isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holding SQLite's write lock
            other.execute("INSERT INTO t VALUES (1)")
            ran_on: list[str] = []
            task = asyncio.ensure_future(thread.tx(_insert(2, ran_on), write=True, lock=lock, inline=True))
            await asyncio.sleep(0.1)  # the loop was not blocked by the busy wait
            assert not task.done()
            other.execute("COMMIT")
            assert await task == 2  # the writer thread waited in SQLite's busy handler, then wrote
            assert ran_on == ["writer-under-test"]
            assert _committed(tmp_path / "f.db") == [1, 2]
            busy = await thread.run(lambda c: c.execute("PRAGMA busy_timeout").fetchone()[0])
            assert busy == 30000  # set back after the inline attempt
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
            await thread.close()

    asyncio.run(main())


def test_writes_started_together_go_to_the_writer_thread_and_group(tmp_path: Path) -> None:
    """Two inline writes ready at once: the second sees the first waiting for its turn of the loop and queues;
    the first then finds the writer busy and queues too (grouped with it or behind it): neither runs on the loop."""

    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        try:
            ran_on: list[str] = []

            def second(conn: sqlite3.Connection) -> int:
                ran_on.append(threading.current_thread().name)
                for _ in range(500):  # hold the writer until the first write is past its turn of the loop
                    if not thread._inline_waiting:
                        break
                    threading.Event().wait(0.01)
                threading.Event().wait(0.05)  # and has queued (with this one or behind it)
                conn.execute("INSERT INTO t VALUES (2)")
                return 2

            first = asyncio.ensure_future(thread.tx(_insert(1, ran_on), write=True, group=True, inline=True))
            later = asyncio.ensure_future(thread.tx(second, write=True, group=True, inline=True))
            assert list(await asyncio.gather(first, later)) == [1, 2]
            assert ran_on == ["writer-under-test", "writer-under-test"]
            assert thread.inline_jobs == 0
            assert _committed(tmp_path / "f.db") == [1, 2]
        finally:
            await thread.close()

    asyncio.run(main())


def test_while_the_writer_groups_writes_inline_writes_are_queued_and_resume_once_writes_come_alone(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        try:
            started, release = threading.Event(), threading.Event()

            def hold(_: sqlite3.Connection) -> None:
                started.set()
                release.wait()

            holder = asyncio.ensure_future(thread.run(hold))
            await asyncio.to_thread(started.wait)
            ran_on: list[str] = []
            queued = [asyncio.ensure_future(thread.tx(_insert(n, ran_on), write=True, group=True)) for n in range(1, 6)]
            while len(thread._jobs) < 5:
                await asyncio.sleep(0)
            release.set()
            await holder
            await asyncio.gather(*queued)  # one group of five: writes come together
            await _idle(thread)
            await thread.tx(_insert(6, ran_on), write=True, group=True, inline=True)
            assert ran_on[-1] == "writer-under-test" and thread.inline_jobs == 0
            for n in range(7, 12):  # writes one at a time again (each its own group of one)
                await thread.tx(_insert(n, ran_on), write=True, group=True)
            await _idle(thread)
            await thread.tx(_insert(12, ran_on), write=True, group=True, inline=True)
            assert ran_on[-1] == threading.current_thread().name and thread.inline_jobs == 1
            assert _committed(tmp_path / "f.db") == list(range(1, 13))
        finally:
            release.set()
            await thread.close()

    asyncio.run(main())


def test_inline_writes_still_get_their_idle_checkpoint_on_the_writer_thread(tmp_path: Path) -> None:
    async def main() -> None:
        thread = SQLiteThread(tmp_path / "f.db", name="writer-under-test", idle_checkpoint=0.0)
        await thread.open(_create)
        try:
            await _idle(thread)
            before = thread.checkpoints
            ran_on: list[str] = []
            await thread.tx(_insert(1, ran_on), write=True, inline=True)
            assert ran_on == [threading.current_thread().name]
            for _ in range(200):  # the thread checkpoints on its own time, after the answer
                if thread.checkpoints > before:
                    break
                await asyncio.sleep(0.01)
            assert thread.checkpoints == before + 1
        finally:
            await thread.close()

    asyncio.run(main())


def test_an_executor_task_and_an_inline_write_never_use_the_connection_together(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _open(tmp_path / "f.db")
        try:
            started, release = threading.Event(), threading.Event()

            def task() -> None:  # a task handed to the thread as an executor (the store's set-up does so)
                started.set()
                release.wait()

            loop = asyncio.get_running_loop()
            held = loop.run_in_executor(thread.executor, task)
            await asyncio.to_thread(started.wait)
            ran_on: list[str] = []
            write = asyncio.ensure_future(thread.tx(_insert(1, ran_on), write=True, inline=True))
            await asyncio.sleep(0.05)
            assert not write.done()
            release.set()
            await held
            assert await write == 1
            assert ran_on == ["writer-under-test"]
        finally:
            release.set()
            await thread.close()

    asyncio.run(main())
