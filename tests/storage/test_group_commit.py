"""storage.sqlite_thread: group commit of the write jobs queued on one SQLite writer (real files, real threads).

Each test holds the writer thread in a job until the jobs under test are queued behind it, so that they
are taken off the queue together (no timing). Whether jobs shared one transaction is seen from a second
connection on the same file: it sees only committed rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from storage.sqlite_thread import SQLiteThread

Job = Callable[[SQLiteThread], Awaitable[Any]]


def _committed(path: Path) -> list[int]:
    """The rows of t as another connection sees them (committed ones only)."""
    other = sqlite3.connect(path)
    try:
        return [r[0] for r in other.execute("SELECT n FROM t ORDER BY n")]
    finally:
        other.close()


async def _held(thread: SQLiteThread, jobs: list[Job]) -> list[Any]:
    """Run `jobs` queued all at once behind a job that holds the thread; their results or exceptions."""
    started, release = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        started.set()
        release.wait()

    holder = asyncio.ensure_future(thread.run(hold))
    try:
        await asyncio.to_thread(started.wait)
        tasks = [asyncio.ensure_future(job(thread)) for job in jobs]
        while len(thread._jobs) < len(jobs):  # each task queues its job before its first wait
            await asyncio.sleep(0)
    finally:
        release.set()  # never leave the writer held (the thread could not be closed)
    await holder
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def _insert(path: Path, n: int, seen: dict[int, list[int]] | None = None, fail: bool = False) -> Job:
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        if seen is not None:
            seen[n] = _committed(path)
        if fail:
            raise ValueError(f"job {n} fails")
        return n

    return lambda thread: thread.tx(fn, write=True, group=True)


def _run(coro: Callable[[SQLiteThread], Coroutine[Any, Any, None]], path: Path, pragmas: tuple[str, ...] = ()) -> None:
    async def main() -> None:
        thread = SQLiteThread(path, name="test-writer", pragmas=pragmas)
        await thread.open(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        try:
            await coro(thread)
        finally:
            await thread.close()

    asyncio.run(main())


def test_a_failing_job_in_a_group_rolls_back_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    seen: dict[int, list[int]] = {}

    async def body(thread: SQLiteThread) -> None:
        results = await _held(thread, [_insert(path, n, seen, fail=n == 2) for n in range(5)])
        assert results[:2] == [0, 1] and results[3:] == [3, 4]
        assert isinstance(results[2], ValueError) and str(results[2]) == "job 2 fails"
        assert _committed(path) == [0, 1, 3, 4]
        assert seen[4] == []  # one transaction: nothing was committed before the group's COMMIT

    _run(body, path)


def test_jobs_run_in_submission_order_grouped_or_not(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    order: list[int] = []

    def job(n: int, group: bool) -> Job:
        def fn(conn: sqlite3.Connection) -> int:
            order.append(n)
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            return n

        if n % 7 == 3:  # a plain run, outside any transaction
            return lambda thread: thread.run(fn)
        return lambda thread: thread.tx(fn, write=True, group=group)

    async def body(thread: SQLiteThread) -> None:
        results = await _held(thread, [job(n, group=n % 5 != 4) for n in range(30)])
        assert results == list(range(30))
        assert order == list(range(30))
        assert _committed(path) == list(range(30))

    _run(body, path)


def test_a_failing_commit_gives_its_error_to_every_job_of_the_group(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    after: list[int] = []

    def child(n: int, parent: int) -> Job:
        def fn(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO child VALUES (?, ?)", (n, parent))  # checked only at COMMIT
            return n

        return lambda thread: thread.tx(fn, write=True, group=True, after=after.append)

    async def body(thread: SQLiteThread) -> None:
        await thread.tx(lambda c: c.execute("CREATE TABLE child (n INTEGER PRIMARY KEY, parent INTEGER "
                                            "REFERENCES t (n) DEFERRABLE INITIALLY DEFERRED)"), write=True)
        await thread.tx(lambda c: c.execute("INSERT INTO t VALUES (1)"), write=True)
        results = await _held(thread, [child(10, 1), child(11, 99), child(12, 1)])
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
        assert results[0] is results[1] is results[2]
        assert after == []  # nothing reported as committed
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0
        conn.close()
        # the writer is usable again: the failed group left no transaction open
        assert await thread.tx(lambda c: c.execute("INSERT INTO child VALUES (13, 1)").rowcount, write=True) == 1
        assert await thread.tx(lambda c: c.in_transaction, write=True, group=True) is True

    _run(body, path, pragmas=("foreign_keys=ON",))


def test_a_job_that_opts_out_runs_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    seen: dict[int, list[int]] = {}
    alone: dict[str, Any] = {}

    def by_itself(conn: sqlite3.Connection) -> None:
        alone["committed"] = _committed(path)
        alone["in_transaction"] = conn.in_transaction
        conn.execute("INSERT INTO t VALUES (2)")

    async def body(thread: SQLiteThread) -> None:
        jobs = [_insert(path, 0, seen), _insert(path, 1, seen),
                lambda thread: thread.tx(by_itself, write=True),  # group=False, the default
                _insert(path, 3, seen), _insert(path, 4, seen)]
        assert await _held(thread, jobs) == [0, 1, None, 3, 4]
        assert alone == {"committed": [0, 1], "in_transaction": True}  # the group before it had committed
        assert seen[1] == [] and seen[4] == [0, 1, 2]  # and the jobs after it formed a group of their own
        assert _committed(path) == [0, 1, 2, 3, 4]

    _run(body, path)


def test_a_cancelled_caller_s_job_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def body(thread: SQLiteThread) -> None:
        started, release = threading.Event(), threading.Event()
        holder = asyncio.ensure_future(thread.run(lambda _: (started.set(), release.wait())))
        try:
            await asyncio.to_thread(started.wait)
            first = asyncio.ensure_future(_insert(path, 1)(thread))
            second = asyncio.ensure_future(_insert(path, 2)(thread))
            while len(thread._jobs) < 2:
                await asyncio.sleep(0)
            first.cancel()
            while not thread._jobs[0].future.cancelled():  # the cancel reaches the queued job through the loop
                await asyncio.sleep(0)
        finally:
            release.set()
        await holder
        assert await second == 2
        with pytest.raises(asyncio.CancelledError):
            await first
        assert _committed(path) == [2]

    _run(body, path)


class _CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the thread-safe wake-ups other threads make (asyncio's own, not ours)."""

    wakeups = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_a_group_is_answered_with_one_wake_up_of_the_loop(tmp_path: Path) -> None:
    # every job of a group is answered by one callback on the callers' loop, not one per job (issue 16)
    path = tmp_path / "w.db"
    counted: dict[str, int] = {}

    async def body(thread: SQLiteThread) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _CountingLoop)
        started, release = threading.Event(), threading.Event()
        holder = asyncio.ensure_future(thread.run(lambda _: (started.set(), release.wait())))
        try:
            await asyncio.to_thread(started.wait)
            tasks = [asyncio.ensure_future(_insert(path, n)(thread)) for n in range(20)]
            while len(thread._jobs) < 20:
                await asyncio.sleep(0)
            before = loop.wakeups
        finally:
            release.set()
        await holder
        assert await asyncio.gather(*tasks) == list(range(20))
        counted["wakeups"] = loop.wakeups - before
        assert _committed(path) == list(range(20))

    async def main() -> None:
        thread = SQLiteThread(path, name="test-writer")
        await thread.open(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        try:
            await body(thread)
        finally:
            await thread.close()

    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        runner.run(main())
    assert 1 <= counted["wakeups"] <= 2  # the holder's answer and the group's, or both in one (before: 1 + 20)


def test_jobs_of_two_loops_in_one_group_are_answered_on_their_own_loop(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    answered_on: dict[int, int] = {}

    def job(n: int) -> Job:
        async def submit(thread: SQLiteThread) -> int:
            result: int = await _insert(path, n)(thread)
            answered_on[n] = threading.get_ident()
            return result
        return submit

    async def body(thread: SQLiteThread) -> None:
        started, release = threading.Event(), threading.Event()
        holder = asyncio.ensure_future(thread.run(lambda _: (started.set(), release.wait())))
        other: list[Any] = []
        try:
            await asyncio.to_thread(started.wait)
            mine = [asyncio.ensure_future(job(n)(thread)) for n in (0, 2)]
            while len(thread._jobs) < 2:
                await asyncio.sleep(0)

            def elsewhere() -> None:  # another thread's loop queues jobs 1 and 3 behind them
                async def run() -> list[int]:
                    return list(await asyncio.gather(job(1)(thread), job(3)(thread)))
                other.append(threading.get_ident())
                other.append(asyncio.run(run()))

            runner = threading.Thread(target=elsewhere)
            runner.start()
            while len(thread._jobs) < 4:
                await asyncio.sleep(0.001)
        finally:
            release.set()
        await holder
        assert await asyncio.gather(*mine) == [0, 2]
        await asyncio.to_thread(runner.join)
        assert other[1] == [1, 3]
        here = threading.get_ident()
        assert answered_on == {0: here, 2: here, 1: other[0], 3: other[0]}
        assert _committed(path) == [0, 1, 2, 3]

    _run(body, path)
