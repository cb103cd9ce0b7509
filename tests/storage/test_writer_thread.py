"""storage.sqlite_thread: the connection's own thread (real files, real threads): what runs on it, in which
order, and how a closed or failing thread answers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from storage.sqlite_thread import SQLiteThread


async def _opened(path: Path) -> SQLiteThread:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")

    thread = SQLiteThread(path, name="test-writer")
    await thread.open(setup)
    return thread


def test_jobs_and_executor_calls_run_on_one_thread_in_the_order_given(tmp_path: Path) -> None:
    async def main() -> None:
        thread = await _opened(tmp_path / "x.db")
        try:
            order: list[tuple[str, str]] = []
            started, release = threading.Event(), threading.Event()

            def hold(_: sqlite3.Connection) -> None:
                started.set()
                release.wait()

            def job(name: str) -> Any:
                return lambda _conn: order.append((name, threading.current_thread().name))

            holder = asyncio.ensure_future(thread.run(hold))
            await asyncio.to_thread(started.wait)
            loop = asyncio.get_running_loop()
            first = asyncio.ensure_future(thread.tx(job("tx 1"), write=True, group=True))
            while len(thread._jobs) < 1:
                await asyncio.sleep(0)
            # the executor's call is posted after the drain that holds the thread: it runs once that drain ends
            second = loop.run_in_executor(thread.executor, lambda: order.append(("executor", threading.current_thread().name)))
            release.set()
            await asyncio.gather(holder, first, second)
            third = await thread.run(lambda _conn: threading.current_thread().name)
            assert [name for name, _ in order] == ["tx 1", "executor"]
            assert {where for _, where in order} == {third} == {"test-writer"}
        finally:
            await thread.close()

    asyncio.run(main())


def test_a_closed_thread_refuses_jobs_and_calls_clearly(tmp_path: Path) -> None:
    async def main() -> None:
        before = set(threading.enumerate())
        thread = await _opened(tmp_path / "x.db")
        await thread.close()
        await thread.close()  # idempotent
        assert not [t for t in set(threading.enumerate()) - before if t.name == "test-writer"]
        with pytest.raises(RuntimeError, match="not open"):
            await thread.tx(lambda c: c.execute("INSERT INTO t VALUES (1)"), write=True)
        with pytest.raises(RuntimeError, match="not open"):
            await thread.run(lambda c: None)
        with pytest.raises(RuntimeError, match="not open"):
            thread.executor  # noqa: B018 - the property raises

    asyncio.run(main())


def test_a_drain_that_fails_leaves_the_thread_serving_and_its_jobs_answered_at_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        thread = await _opened(tmp_path / "x.db")
        take = thread._take
        failures = [RuntimeError("the drain itself failed")]

        def failing_take(idle: bool = False) -> list[Any] | None:
            if failures:
                raise failures.pop()
            return take(idle)

        monkeypatch.setattr(thread, "_take", failing_take)
        stranded = asyncio.ensure_future(thread.tx(lambda c: c.execute("INSERT INTO t VALUES (1)"), write=True))
        while thread._draining or not thread._jobs:  # the drain failed before taking the job: it stays queued
            await asyncio.sleep(0)
        # the thread still serves: the next job starts a drain, which runs the stranded job first
        assert await thread.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 1
        await stranded

        failures.append(RuntimeError("the drain failed again"))
        stranded = asyncio.ensure_future(thread.tx(lambda c: c.execute("INSERT INTO t VALUES (2)"), write=True))
        while thread._draining or not thread._jobs:
            await asyncio.sleep(0)
        await thread.close()
        # answered by the close, not left waiting for ever
        with pytest.raises(RuntimeError, match="closed"):
            await asyncio.wait_for(stranded, 30)

    asyncio.run(main())
