"""One SQLite connection served by one worker thread.

SQLite wants one writer at a time and the event loop must never block, so a
file's writes run in order on one thread (storage.database.SQLiteDatabase.writer,
shared by every table owner in the file); the history and subscription storage
also read on a thread of their own (SQLiteDatabase.open_reader).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

GROUP_MAX = 64
"""The most write jobs one group commit runs (a bound on how long the first of them waits for its answer)."""

WAL_AUTOCHECKPOINT = 8000
"""WAL pages (4 KiB) past which a COMMIT checkpoints on its own (SQLite's default is 1,000).

A checkpoint copies the WAL into the database file and syncs both; run by the COMMIT that crossed the
threshold, it delayed that write's answer (and every job queued behind it) by the copy and two syncs.
The writer checkpoints when it runs out of jobs instead (`IDLE_CHECKPOINT`); this bound only serves a
writer that never runs out (32 MiB of WAL at most between checkpoints, instead of 4 MiB).
"""

IDLE_JOB_WAIT = 1.0
"""Seconds an idle-time job (`tx(idle=True)`) waits at most for the writer to run out of other jobs;
past that it runs next anyway, so a writer that never idles still runs it."""

IDLE_CHECKPOINT = 0.25
"""Seconds: a writer that ran out of jobs checkpoints the WAL (PASSIVE) if it wrote and this long has
passed since its last checkpoint; at most a few syncs a second under a stream of small writes.

Under 8 clients sending PATCH the writer runs out of jobs between nearly every group, so this interval
alone sets how often it checkpoints (310-344 ms of the writer's CPU and 1.6-5.0 s of its wall time in a
16,000-PATCH run of bench.patch_cpu_bench; at 1 s, 161-291 ms and 0.9-2.1 s). 1 s was measured and not
kept: the end-to-end ingest on SQLite, a writer of appends, then copied four times as much WAL at once
and its p99 went from 427 / 725 ms to 850 / 1,668 ms in two pairs (issue 16, patch18)."""


INLINE_GROUPED = 1.5
"""A `tx(inline=True)` job runs on its caller's thread only while the writer's groups average fewer jobs than this
(a moving average over the groups it took, 1/8 weight each).

Where writes come together (8 clients sending single notifications: groups of about 5) they are left to the
writer, which commits them together beside the event loop's work; with the inline path open there, 14 % of
them ran inline, one COMMIT each, and the broker's CPU per notification was 260-290 us against 255-267 before
(issue 16, sqlnotify23); with this bound 0.3 % did, and 245-263 us. From 1 client, 99.6 % run inline."""


class _Mailbox:
    """Finished jobs waiting to be answered on one event loop, and whether a wake-up of it is pending.

    The writer thread posts jobs; the first post after a delivery schedules one `deliver` on the loop
    (call_soon_threadsafe: a self-pipe write, and a callback for the loop to run), and the posts that
    come before the loop has run it join that delivery instead of waking the loop again. One wake-up
    per finished job was 5 % of the broker's CPU under 8 clients sending PATCH (issue 16, py-spy).
    """

    __slots__ = ("__weakref__", "guard", "jobs", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.guard = threading.Lock()
        self.jobs: list[_Job] = []

    def post(self, jobs: list[_Job]) -> None:
        """On the writer thread: have `jobs` answered on the loop (their outcome is set)."""
        with self.guard:
            wake = not self.jobs
            self.jobs.extend(jobs)
        if wake:
            try:
                self.loop.call_soon_threadsafe(self.deliver)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                with self.guard:
                    self.jobs.clear()

    def deliver(self) -> None:
        """On the loop: answer every job posted so far (a caller that gave up meanwhile is skipped)."""
        with self.guard:
            jobs, self.jobs = self.jobs, []
        for job in jobs:
            future = job.future
            if future.done():
                continue
            if job.error is not None:
                future.set_exception(job.error)
            else:
                future.set_result(job.result)


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
_mailboxes_guard = threading.Lock()
_last_box: _Mailbox | None = None  # the mailbox found last: a process serves from one loop (no weak-dict look-up per job)


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    global _last_box
    box = _last_box
    if box is not None and box.loop is loop:
        return box
    box = _mailboxes.get(loop)
    if box is None:
        with _mailboxes_guard:
            box = _mailboxes.get(loop)
            if box is None:
                box = _mailboxes[loop] = _Mailbox(loop)
    _last_box = box
    return box


class _Job:
    """One queued `tx`/`run`: what to run, how, the caller's future and, once run, its outcome.

    The writer thread never touches `future` (an asyncio future, of the caller's loop): it sets
    `result` or `error`, then hands finished jobs to their loop's mailbox in bulk (`_answer`).
    """

    __slots__ = ("after", "error", "fn", "future", "group", "lock", "mailbox", "queued", "result", "tx", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], *, tx: bool, write: bool, group: bool,
                 lock: AbstractContextManager[Any] | None, after: Callable[[Any], None] | None) -> None:
        self.fn = fn
        self.tx = tx
        self.write = write
        self.group = group
        self.lock = lock
        self.after = after
        self.queued = 0.0  # time.monotonic() when an idle-time job was queued
        loop = asyncio.get_running_loop()
        self.mailbox = _mailbox(loop)
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        """Record `exc` as the job's outcome (on the writer thread; answered later by `_answer`)."""
        self.error = exc


def _answer(jobs: list[_Job]) -> None:
    """Hand finished jobs to their callers' loops: at most one wake-up per loop (see _Mailbox)."""
    if not jobs:
        return
    box = jobs[0].mailbox
    if all(job.mailbox is box for job in jobs):
        box.post(jobs)
        return
    by_box: dict[_Mailbox, list[_Job]] = {}
    for job in jobs:
        by_box.setdefault(job.mailbox, []).append(job)
    for target, some in by_box.items():
        target.post(some)


_log = logging.getLogger(__name__)

_LOCK = type(threading.Lock())
"""The type of a threading.Lock: the write lock an inline job can try without waiting (tx's `inline`)."""

_STOP = None
"""What `SQLiteThread.close` posts to end the thread's task loop."""

_live: weakref.WeakSet[SQLiteThread] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """A thread left open when the interpreter ends finishes its current work, then stops (daemon threads are
    not joined; ThreadPoolExecutor, which ran the connection before, joined its workers at exit too)."""
    for owner in list(_live):
        owner._stop()


class _ThreadExecutor(concurrent.futures.Executor):
    """`SQLiteThread.executor`: runs a callable on the connection's thread, in turn with its jobs.

    For code that hands work to the thread with `loop.run_in_executor` (the store's set-up); the
    thread's own jobs (`tx`, `run`) do not go through it.
    """

    def __init__(self, owner: SQLiteThread) -> None:
        self._owner = owner

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's future, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

        self._owner._post(task)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing: the thread is the SQLiteThread's, which stops it on `close`."""


class SQLiteThread:
    """A connection to `path` used only from one thread; `run` and `tx` hop onto it.

    The thread is the connection's own (not an executor's): it takes tasks from a SimpleQueue (one C call
    to post, none of ThreadPoolExecutor.submit's future, work item, locks and idle-worker semaphore, which
    were 3-4 % of the broker's GIL time under 8 clients sending PATCH: issue 16, patch18). A task is a
    drain of the job queue (one at a time, posted by the submit that finds no drain under way) or a
    callable given to `executor`.
    """

    def __init__(self, path: str | Path, *, name: str, pragmas: Sequence[str] = (),
                 idle_checkpoint: float = IDLE_CHECKPOINT) -> None:
        self.path = str(path)
        self.name = name
        self.pragmas = tuple(pragmas)
        self.idle_checkpoint = idle_checkpoint
        self.checkpoints = 0  # checkpoints run on idle time (for tests and benches)
        self._wrote = False  # a write transaction committed since the last checkpoint (on the thread only)
        self._checkpointed_at = 0.0  # time.monotonic() of the last idle checkpoint (on the thread only)
        self._thread: threading.Thread | None = None
        self._tasks: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._executor: _ThreadExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._jobs: deque[_Job] = deque()
        self._idle_jobs: deque[_Job] = deque()  # tx(idle=True): run when _jobs is empty (see tx)
        self._jobs_guard = threading.Lock()
        self._draining = False  # a drain is queued or running on the thread, or an inline job runs (guarded by _jobs_guard)
        self._using = threading.Lock()  # held by whoever uses the connection: the thread's task, or an inline job
        self._busy_ms = 0
        self._grouped = 1.0  # jobs per group the writer took, a moving average (on the thread; read anywhere)
        self._inline_waiting = 0  # inline jobs waiting for their turn of the loop (on the loop's thread only)
        self.inline_jobs = 0  # jobs run on their caller's thread (tx(inline=True); for tests and benches)
        self._closed = True  # no job is taken (not open yet, or closed; guarded by _jobs_guard)

    async def open(self, setup: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Connect (WAL for files, the given pragmas), then run `setup` (if any) in one write transaction."""
        self._tasks = SimpleQueue()
        self._executor = _ThreadExecutor(self)
        self._thread = threading.Thread(target=self._serve, args=(self._tasks, self._using), name=self.name, daemon=True)
        self._thread.start()
        _live.add(self)
        with self._jobs_guard:
            self._closed = False

        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                # only a connection that commits writes ever checkpoints: harmless on readers
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            for pragma in self.pragmas:
                conn.execute(f"PRAGMA {pragma}")
            self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])  # set back after an inline BEGIN
            self._conn = conn

        await self._hop(connect)
        if setup is not None:
            await self.tx(setup, write=True)

    async def close(self) -> None:
        """Close the connection and stop the thread (idempotent).

        The jobs queued before the close still run (on the closed connection, once it is closed: they are
        answered with its error); a job submitted after it is refused (RuntimeError: not open).
        """
        if self._thread is not None:
            conn = self._conn
            if conn is not None:
                await self._hop(conn.close)
            self._stop()
        self._thread = None
        self._executor = None
        self._conn = None

    def _stop(self) -> None:
        """Refuse new jobs, let the thread finish the tasks posted so far, and wait for it to end.

        Every post is made under `_jobs_guard` after a look at `_closed`, so none comes after the stop;
        a job still queued once the thread ended (a drain that failed unexpectedly left it) is answered
        with the closed connection's error instead of waiting for ever.
        """
        thread = self._thread
        with self._jobs_guard:
            already = self._closed
            self._closed = True
            if thread is not None and not already:
                self._tasks.put(_STOP)
        _live.discard(self)
        if thread is None:
            return
        if thread is not threading.current_thread():
            thread.join()
        with self._jobs_guard:
            left = [*self._jobs, *self._idle_jobs]
            self._jobs.clear()
            self._idle_jobs.clear()
            self._draining = False
        for job in left:
            job.fail(RuntimeError(f"{self.name}: the SQLite connection is closed"))
        _answer(left)

    def _post(self, task: Callable[[], None]) -> None:
        """Have the thread run `task` after the tasks posted before it (RuntimeError once closed)."""
        with self._jobs_guard:
            if self._closed:
                raise RuntimeError(f"{self.name}: the SQLite connection is not open")
            self._tasks.put(task)

    @staticmethod
    def _serve(tasks: SimpleQueue[Callable[[], None] | None], using: threading.Lock) -> None:
        """The thread: run the posted tasks in order until the stop (each holding `using`: see tx's `inline`)."""
        while True:
            task = tasks.get()
            if task is _STOP:
                return
            try:
                with using:
                    task()
            except BaseException:  # noqa: BLE001 - a drain's unexpected failure (each job's error is its caller's): go on
                _log.exception("SQLite connection thread: a task failed")

    @property
    def executor(self) -> concurrent.futures.Executor:
        """The thread, as an executor (for `loop.run_in_executor`): what it runs, it runs in turn with the jobs."""
        if self._executor is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return self._executor

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection: use it only on `executor`."""
        return self._connection()

    async def _hop(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the thread, outside any explicit transaction (alone: never in a group)."""
        result: T = await self._submit(_Job(fn, tx=False, write=False, group=False, lock=None, after=None))
        return result

    async def tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool,
                 lock: AbstractContextManager[Any] | None = None, group: bool = False,
                 after: Callable[[T], None] | None = None, idle: bool = False, inline: bool = False) -> T:
        """`fn(connection)` in a transaction (BEGIN IMMEDIATE when it writes), rolled back if it raises.

        `lock` is held around the whole transaction: the in-process write lock of the file
        (storage.database.write_lock) that the file's other writers take too.

        `group=True` (writes only) lets the job share its transaction with the write jobs queued
        right after it (group commit): each runs in a SAVEPOINT of its own, so one that raises
        rolls back only its own writes and gets its own exception, and the group ends in one COMMIT.
        Every job's answer (and its `after(result)`, run on the thread) comes only once that COMMIT
        succeeded; if it fails, every job of the group gets its error. So a grouped `fn` must not
        end the transaction itself (COMMIT, ROLLBACK, BEGIN, VACUUM, most PRAGMAs) nor rely on
        being alone in it (`total_changes`); those keep `group=False` and run alone. Jobs always
        run in the order they were submitted, grouped or not.

        `idle=True` (housekeeping whose moment does not matter: the change log's trimming) runs the
        job alone, on the writer's idle time: once no other job is queued, or IDLE_JOB_WAIT seconds
        after it was queued, whichever comes first; it may thus run after jobs submitted later. Under
        a stream of batches the writer idles between them (the clients' own round trips), and such a
        job then no longer delays the answers of the writes queued with it.

        `inline=True` (a small write whose caller waits for it: a /v2/notify history write) runs the job
        on the caller's thread (the event loop's) when the connection is free: no job queued or running, no
        task of the thread under way, no other inline job waiting, `lock` (a threading.Lock) free and
        SQLite's write lock free at once (BEGIN IMMEDIATE without the busy wait: the loop never waits for
        another process). It first lets the loop take one turn: a request ready behind it that reaches its
        own write meanwhile sees it waiting and queues its job, and this one then queues too, so that under
        concurrent writes they go to the writer thread and group as before (one COMMIT for several; the
        writer's SQL beside the loop's work). One writer at a time still, in submission order (a job
        submitted meanwhile queues behind it), COMMIT before the answer. It saves the two thread hand-overs
        (the writer's wake-up, the loop's) of a write that would have waited for nothing. `after` is not
        allowed with it (it would run on the caller's thread); the writer thread still runs the idle-time
        checkpoint after such writes (a drain is posted for it). While the writer's recent groups hold
        several jobs (INLINE_GROUPED), jobs are queued as without `inline`.
        """
        if inline and not idle and after is None and self._inline_ready():
            # one turn of the loop first: a request ready behind this one that reaches its write meanwhile sees
            # this one waiting and queues (the writer thread takes it; this one then queues too, and they group)
            self._inline_waiting += 1  # (read by the writes that run meanwhile: see _inline_ready)
            try:
                await asyncio.sleep(0)
            finally:
                self._inline_waiting -= 1
            if self._inline_ready():
                ran = self._run_inline(fn, write, lock)
                if ran is not None:
                    return ran[0]
        job = _Job(fn, tx=True, write=write, group=group and write and not idle, lock=lock, after=after)
        if idle:
            job.queued = time.monotonic()
        result: T = await self._submit(job, idle=idle)
        return result

    def _inline_ready(self) -> bool:
        """Whether the connection looks free and writes have not been coming together (INLINE_GROUPED); read
        without the guard: `_run_inline` checks again under it."""
        return (not (self._draining or self._closed or self._jobs or self._idle_jobs or self._inline_waiting)
                and self._grouped < INLINE_GROUPED)

    def _run_inline(self, fn: Callable[[sqlite3.Connection], T], write: bool,
                    lock: AbstractContextManager[Any] | None) -> tuple[T] | None:
        """`fn` in a transaction of its own on this thread if the connection is free: (its result,), or its
        exception raised; None when it is not free and nothing ran (queue the job then)."""
        if not self._using.acquire(blocking=False):  # the thread runs a task (a drain ending, a checkpoint)
            return None
        try:
            with self._jobs_guard:
                if self._draining or self._closed or self._jobs or self._idle_jobs:
                    return None
                self._draining = True  # the connection is this job's: submits queue, no drain starts
            try:
                return self._inline_tx(fn, write, lock)
            finally:
                with self._jobs_guard:
                    # jobs queued meanwhile (from another thread) or a checkpoint due: the thread takes over
                    if not self._closed and (self._jobs or self._idle_jobs or self._checkpoint_due()):
                        self._tasks.put(self._drain)
                    else:
                        self._draining = False
        finally:
            self._using.release()

    def _inline_tx(self, fn: Callable[[sqlite3.Connection], T], write: bool,
                   lock: AbstractContextManager[Any] | None) -> tuple[T] | None:
        if lock is not None and (not isinstance(lock, _LOCK) or not lock.acquire(blocking=False)):
            return None  # another writer of the file in this process holds it: queue, do not wait
        try:
            conn = self._connection()
            if write:
                # no busy wait on the loop: another process writing the file sends the job to the thread
                conn.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    return None
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            else:
                conn.execute("BEGIN")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # fn failed, or the COMMIT did (a deferred constraint)
                    conn.execute("ROLLBACK")
                raise
            if write:
                self._wrote = True
            self.inline_jobs += 1
            return (result,)
        finally:
            if isinstance(lock, _LOCK):
                lock.release()

    async def _submit(self, job: _Job, *, idle: bool = False) -> Any:
        with self._jobs_guard:
            if self._closed:
                raise RuntimeError(f"{self.name}: the SQLite connection is not open")
            (self._idle_jobs if idle else self._jobs).append(job)
            if not self._draining:
                # one drain at a time, and it runs until the queue is empty: one post to the thread, not one
                # per job (posted under the guard: never after the stop, see _stop)
                self._draining = True
                self._tasks.put(self._drain)
        return await job.future

    def _checkpoint_due(self) -> bool:
        """Whether the writer should checkpoint the next time it runs out of jobs (see IDLE_CHECKPOINT)."""
        return (self._wrote and self.path != ":memory:"
                and time.monotonic() - self._checkpointed_at >= self.idle_checkpoint)

    def _checkpoint(self) -> None:
        """PASSIVE checkpoint on idle time: what the COMMIT crossing wal_autocheckpoint did on a write's time.

        PASSIVE never waits for readers (it copies what no reader still needs; a later one copies the rest)
        and jobs queued meanwhile wait for it as they waited for the COMMIT that checkpointed. A failure is
        not a job's: the next COMMIT past WAL_AUTOCHECKPOINT, or the next idle time, tries again.
        """
        self._wrote = False
        self._checkpointed_at = time.monotonic()
        try:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            return
        self.checkpoints += 1

    def _take(self, idle: bool = False) -> list[_Job] | None:
        """The oldest queued job, with the groupable jobs right behind it if it is groupable too.

        None when the queue is empty: the drain then ends (and the next submit starts another); with
        `idle`, an empty list instead, the drain going on (a checkpoint) and submits queueing behind it.
        """
        with self._jobs_guard:
            jobs = self._jobs
            waiting = self._idle_jobs
            if waiting and (not jobs or time.monotonic() - waiting[0].queued >= IDLE_JOB_WAIT):
                job = waiting.popleft()  # idle time (or waited long enough): alone, never in a group
                return [] if job.future.cancelled() else [job]
            if not jobs:
                if idle:
                    return []
                self._draining = False
                return None
            first = jobs.popleft()
            taken = [first]
            if first.group:
                while jobs and len(taken) < GROUP_MAX and jobs[0].group and jobs[0].lock is first.lock:
                    taken.append(jobs.popleft())
        # a caller that gave up (cancelled) before its job started: skip it, as an executor would
        return [j for j in taken if not j.future.cancelled()]

    def _drain(self) -> None:
        """Run the queued jobs, oldest first, until none is left (on the thread)."""
        try:
            while True:
                due = self._checkpoint_due()
                jobs = self._take(idle=due)
                if jobs is None:
                    break
                if jobs:
                    self._grouped += (len(jobs) - self._grouped) * 0.125
                    self._run_taken(jobs)
                    if any(job.write for job in jobs):
                        self._wrote = True
                elif due:  # out of jobs with a checkpoint due (see _take): on idle time, then look again
                    self._checkpoint()
        except BaseException:
            # not expected (every job's error is its caller's): let a later submit start a drain again
            with self._jobs_guard:
                self._draining = False
            raise

    def _run_taken(self, jobs: list[_Job]) -> None:
        conn = self._connection()
        if len(jobs) == 1:
            self._alone(conn, jobs[0])
            _answer(jobs)
            return
        taken = jobs
        answered: list[_Job] = []
        try:
            with jobs[0].lock or nullcontext():
                while jobs:
                    jobs = self._group(conn, jobs, answered)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, the connection failed under us: no job may wait for ever
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            done = {id(job) for job in answered}
            for job in taken:
                if id(job) not in done:
                    job.fail(exc)
                    answered.append(job)
            _answer(answered)

    @staticmethod
    def _alone(conn: sqlite3.Connection, job: _Job, *, locked: bool = False) -> None:
        """Run one job by itself: `run` outside a transaction, `tx` in one of its own."""
        try:
            with nullcontext() if locked else job.lock or nullcontext():
                if job.tx:
                    conn.execute("BEGIN IMMEDIATE" if job.write else "BEGIN")
                    try:
                        result = job.fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:  # fn failed, or the COMMIT did (a deferred constraint)
                            conn.execute("ROLLBACK")
                        raise
                else:
                    result = job.fn(conn)
            if job.after is not None:
                job.after(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, as an executor does
            job.fail(exc)
        else:
            job.result = result

    @staticmethod
    def _group(conn: sqlite3.Connection, jobs: list[_Job], answered: list[_Job]) -> list[_Job]:
        """Run `jobs` in one transaction, a SAVEPOINT each, one COMMIT; answer them. Returns the jobs not run.

        The jobs given their outcome are answered here (one wake-up of their loop) and added to `answered`.
        """
        if len(jobs) == 1:  # nothing to share: no savepoint
            SQLiteThread._alone(conn, jobs[0], locked=True)
            answered.append(jobs[0])
            _answer(jobs[:1])
            return []
        done: list[tuple[_Job, Any]] = []  # ran and released: committed with the group
        failed: list[tuple[_Job, BaseException]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, as an executor does
            for job in jobs:
                job.fail(exc)
            answered.extend(jobs)
            _answer(jobs)
            return []
        for i, job in enumerate(jobs):
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, as an executor does
                failed.append((job, exc))
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                        continue
                    except sqlite3.Error:
                        pass
                # SQLite ended the whole transaction (or cannot undo the savepoint): the jobs before
                # this one are lost with it; those after it start a group of their own
                lost = sqlite3.OperationalError("the group's transaction was rolled back by a failing write")
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                ended = [other for other, _ in done]
                for other in ended:
                    other.fail(lost)
                for other, err in failed:
                    other.fail(err)
                    ended.append(other)
                answered.extend(ended)
                _answer(ended)
                return jobs[i + 1:]
            conn.execute("RELEASE job")
            done.append((job, result))
        try:
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, as an executor does
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.fail(exc)
            answered.extend(jobs)
            _answer(jobs)
            return []
        for job, result in done:
            try:
                if job.after is not None:
                    job.after(result)
            except BaseException as exc:  # noqa: BLE001 - handed to the job's caller, as an executor does
                job.fail(exc)
            else:
                job.result = result
        for job, err in failed:
            job.fail(err)
        answered.extend(jobs)
        _answer(jobs)
        return []

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"{self.name}: the SQLite connection is not open")
        return conn
