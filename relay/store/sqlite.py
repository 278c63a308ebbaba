"""The SQLite store: the embedded default, for one relay process.

One connection, WAL journal. A webhook is answered 200 only after ``enqueue`` committed
with ``synchronous=FULL``: that commit survives a crash or a power cut. Enqueues that
arrive while a commit is under way wait for the next one and share it (group commit): one
fsync for many webhooks under load, no added wait when idle. Other writes
(leases, completions, records) commit with ``synchronous=NORMAL`` — in WAL mode they
survive a process crash; a power cut could at worst redeliver a message, never lose
one. The file belongs to one process, so leases left by a crashed predecessor are
released at ``open`` (unless told otherwise).

The connection is a plain ``sqlite3`` one, owned by one daemon thread: each store call
hands that thread its whole transaction (BEGIN…COMMIT) as one function, so the event loop
pays one thread hop per call instead of one per statement (an async driver such as
aiosqlite makes every ``execute`` and ``fetch`` its own hop: ~50 serial hops for a group
commit). Calls run in the order they were made, one at a time, so transactions never
interleave without a lock. The thread is a daemon: a store never closed cannot keep the
process alive.

``inline``: a call that need not wait runs on the event loop's own thread instead, when
the database thread has nothing queued (so calls still run in order, one at a time). A
read, a write whose lock is free and that is not fsynced take tens of microseconds, less
than the hop itself costs (a semaphore, a thread switch, the loop's wake-up and the GIL
passed back and forth). A write finding the lock held (the other process is writing)
and an fsynced one go to the thread, which may wait; so do WAL checkpoints (their fsync),
asked for every ``CHECKPOINT_EVERY`` inline commits rather than inside one. The delivery
process runs so; the web process, whose writes are its fsynced acks, keeps the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue as queues
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from . import sqlite_intake as intake_log
from .base import (
    INTAKE,
    DeadLetter,
    EnqueueResult,
    IntakeBacklog,
    IntakeBatch,
    IntakeEntry,
    IntakeMoved,
    Job,
    NewJob,
    StoreUnavailable,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    order_ts INTEGER NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    due_at REAL NOT NULL,
    leased_until REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (queue, key, order_ts, id);
CREATE INDEX IF NOT EXISTS jobs_by_due ON jobs (queue, due_at, id);
CREATE TABLE IF NOT EXISTS dedupe (
    queue TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (queue, dedupe_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_by_age ON dedupe (queue, seen_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    order_ts INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_by_queue ON dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS windows (
    key TEXT PRIMARY KEY,
    last_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    due_at REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

# Columns later versions added to records (version 1 had neither, version 2 no due_at).
RECORD_COLUMNS_ADDED = ("expires_at", "due_at")
# After the columns exist: the regular tasks read by time, never every customer seen.
INDEXES = """
CREATE INDEX IF NOT EXISTS windows_by_time ON windows (last_ms);
CREATE INDEX IF NOT EXISTS records_by_due ON records (namespace, due_at)
    WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at)
    WHERE expires_at IS NOT NULL;
"""


# Heads of keys that are due and whose key has nothing leased, oldest due first.
CLAIM_SQL = """
SELECT j.id, j.key, j.dedupe_key, j.order_ts, j.payload, j.attempts, j.enqueued_at
FROM jobs AS j
WHERE j.queue = :q AND j.due_at <= :now
  AND j.id = (SELECT h.id FROM jobs AS h WHERE h.queue = :q AND h.key = j.key
              ORDER BY h.order_ts, h.id LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM jobs AS l WHERE l.queue = :q AND l.key = j.key
                  AND l.leased_until > :now)
ORDER BY j.due_at, j.id
LIMIT :limit
"""


UPSERT_WINDOW = (
    "INSERT INTO windows (key, last_ms) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
    " SET last_ms = MAX(last_ms, excluded.last_ms)"
)


UPSERT_RECORD = (
    "INSERT INTO records (namespace, key, value, updated_at, expires_at, due_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(namespace, key) DO UPDATE SET"
    " value = excluded.value, updated_at = excluded.updated_at,"
    " expires_at = excluded.expires_at, due_at = excluded.due_at"
)


@dataclass(frozen=True, slots=True)
class _PendingEnqueue:
    queue: str
    jobs: Sequence[NewJob]
    customer_messages: Mapping[str, int]
    done: asyncio.Future[EnqueueResult]


@dataclass(frozen=True, slots=True)
class _PendingWrite:
    fn: Callable[[sqlite3.Connection], Any]
    done: asyncio.Future[Any]


def sqlite_path(url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError("not a sqlite:/// URL")
    return url[len("sqlite:///") :]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller went away; the work was done all the same
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class _DatabaseThread:
    """One daemon thread running submitted functions in order, each awaited as one hop."""

    def __init__(self, name: str) -> None:
        self._calls: queues.SimpleQueue[
            tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None
        ] = queues.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, future, loop))
        return future

    def stop(self) -> None:
        """End the thread once the calls already submitted are done (the last one was
        awaited, so the wait is only for the thread to notice)."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, future, loop = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task, never lost here
                error = exc
            with contextlib.suppress(RuntimeError):  # that task's loop is closed
                loop.call_soon_threadsafe(_settle, future, result, error)


LOCK_WAIT_SECONDS = 5.0
# Inline write commits between two WAL checkpoints on the thread (SQLite's own is every
# 1,000 pages; a commit here dirties a few).
CHECKPOINT_EVERY = 200


class _WouldWait(Exception):
    """An inline write found the write lock held: the call goes to the thread instead."""


# Set while a call runs inline on the event loop's thread: ``_begin`` must not sleep.
_inline = threading.local()
IDENTITY_CHECK_SECONDS = 1.0


def _open_problem(path: str, exc: BaseException) -> str:
    """Why the file would not open, in words an operator acts on (runs after the failure,
    so the checks cost nothing on a normal start)."""
    file = Path(path)
    if file.exists() and not os.access(file, os.R_OK):
        return "the file cannot be read (permission denied)"
    if file.exists() and not os.access(file, os.W_OK):
        return "the file is read-only"
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "the file is not a SQLite database (corrupt, or another kind of file)"
    return f"{type(exc).__name__}: {exc}"


def _connect(path: str, release_leases: bool, checkpoint: bool = True) -> sqlite3.Connection:
    """Open (and create or upgrade) the database; runs on the database thread."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Used by one thread at a time, but not always the same one (``inline``).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")  # while the schema is checked
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.executescript(SCHEMA)
        if version < SCHEMA_VERSION:
            columns = {str(r[1]) for r in db.execute("PRAGMA table_info(records)")}
            for column in RECORD_COLUMNS_ADDED:
                if column not in columns:
                    db.execute(f"ALTER TABLE records ADD COLUMN {column} REAL")
        # Dead letters keep their job's order time (for a replay) since a later version;
        # checked whatever the version number, a column is cheap to look for.
        dead_columns = {str(r[1]) for r in db.execute("PRAGMA table_info(dead_letters)")}
        if "order_ts" not in dead_columns:
            db.execute("ALTER TABLE dead_letters ADD COLUMN order_ts INTEGER")
        db.executescript(INDEXES)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if not checkpoint:
            # Another process sharing the file checkpoints the WAL; this one only appends
            # (a checkpoint inside a webhook's commit would add its copy to the ack).
            db.execute("PRAGMA wal_autocheckpoint=0")
        if release_leases:
            db.execute("UPDATE jobs SET leased_until = NULL WHERE leased_until IS NOT NULL")
        # From here no busy handler: SQLite's sleeps 1, 2, 5, 10… ms between tries, which a
        # webhook waiting behind the other process's short write pays in full; ``_begin``
        # retries finely instead. WAL readers never wait.
        db.execute("PRAGMA busy_timeout=0")
    except BaseException:
        db.close()
        raise
    return db


def _begin(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, retried every 0.2 ms for up to LOCK_WAIT_SECONDS while another
    process (the web and delivery processes share the file) holds the write lock."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            if getattr(_inline, "active", False):
                raise _WouldWait from None
        time.sleep(0.0002)


def _in_tx(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], durable: bool) -> T:
    """``fn`` in one write transaction; ``durable`` ones are fsynced before they return."""
    if durable:
        db.execute("PRAGMA synchronous=FULL")
    try:
        _begin(db)
        result = fn(db)
        db.execute("COMMIT")
        return result
    except BaseException:
        _rollback(db)
        raise
    finally:
        if durable:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA synchronous=NORMAL")


def _in_group(
    db: sqlite3.Connection, fns: Sequence[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[bool, Any]]:
    """Each of ``fns`` atomic on its own (one that raises is undone alone), all in one
    transaction: one hop and one commit for what many tasks asked at once.

    Tried first without savepoints (two statements per operation, a third of a busy
    worker's statements); only when one raises is the transaction rolled back and run
    again with a savepoint around each. The functions only touch the database, so a
    second run after the rollback is the same work."""
    _begin(db)
    try:
        results = [fn(db) for fn in fns]
        db.execute("COMMIT")
    except Exception:
        _rollback(db)  # one of them raised: again, each in a savepoint
    except BaseException:
        _rollback(db)
        raise
    else:
        return [(True, result) for result in results]
    return _in_savepoints(db, fns)


def _in_savepoints(
    db: sqlite3.Connection, fns: Sequence[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    _begin(db)
    try:
        for fn in fns:
            db.execute("SAVEPOINT op")
            try:
                outcomes.append((True, fn(db)))
            except Exception as exc:  # handed to its caller; the others go on
                db.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            db.execute("RELEASE op")
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    return outcomes


def _rollback(db: sqlite3.Connection) -> None:
    """End a failed transaction, if one is still open (also when COMMIT itself failed)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _insert(
    db: sqlite3.Connection,
    queue: str,
    jobs: Sequence[NewJob],
    customer_messages: Mapping[str, int],
    now: float,
) -> EnqueueResult:
    if customer_messages:
        db.executemany(UPSERT_WINDOW, customer_messages.items())
    accepted = duplicates = 0
    for job in jobs:
        cur = db.execute(
            "INSERT OR IGNORE INTO dedupe (queue, dedupe_key, seen_at) VALUES (?, ?, ?)",
            (queue, job.dedupe_key, now),
        )
        if cur.rowcount == 0:
            duplicates += 1
            continue
        db.execute(
            "INSERT INTO jobs (queue, key, dedupe_key, order_ts, payload,"
            " enqueued_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, job.key, job.dedupe_key, job.order_ts, job.payload, now, now),
        )
        accepted += 1
    return EnqueueResult(accepted, duplicates)


def _insert_all(
    batch: Sequence[_PendingEnqueue], now: float, db: sqlite3.Connection
) -> list[EnqueueResult]:
    return [_insert(db, item.queue, item.jobs, item.customer_messages, now) for item in batch]


def _one(rows: list[Any]) -> Any:
    return rows[0][0]


def _dead(queue: str, r: Any) -> DeadLetter:
    return DeadLetter(r[0], queue, r[1], r[2], bytes(r[3]), r[4], r[5], r[6], int(r[7] or 0))


class SQLiteStore:
    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        release_leases_at_open: bool = True,
        checkpoint: bool = True,
        inline: bool = False,
    ) -> None:
        """``release_leases_at_open``: the file belongs to this process alone, so leases
        found at open are a crashed predecessor's. A process sharing the file with a
        running one must pass False, or it would hand out the other's jobs twice."""
        self._path = path
        self._clock = clock
        self._release_leases = release_leases_at_open
        self._checkpoint = checkpoint
        self._inline = inline
        self._queued = 0  # calls handed to the database thread and not yet back
        self._inline_commits = 0  # since the last checkpoint asked of the thread
        self.inline_calls = 0  # calls that ran on the event loop's thread
        self._db: sqlite3.Connection | None = None
        self._thread: _DatabaseThread | None = None
        self._pending: list[_PendingEnqueue] = []
        self._committer: asyncio.Task[None] | None = None
        self._writes: list[_PendingWrite] = []
        self._writer: asyncio.Task[None] | None = None
        self.durable_commits = 0  # fsynced enqueue transactions: fewer than enqueues under load
        # The intake log (sqlite_intake): its file, the thread owning its writing
        # connection, appends waiting for the next group commit; the main thread's reader.
        self._log_path = intake_log.log_path(path)
        self._log_thread: _DatabaseThread | None = None
        self._log: sqlite3.Connection | None = None
        self._log_reader: sqlite3.Connection | None = None
        self._appends: list[tuple[Sequence[bytes], asyncio.Future[list[int]]]] = []
        self._appender: asyncio.Task[None] | None = None
        self._trimmed_at = time.monotonic()  # the first trim a while after start
        self._untrimmed = 0  # entries consumed since the last trim
        self.intake_commits = 0  # fsynced append transactions: fewer than appends under load
        self.write_commits = 0  # other write transactions: fewer than writes under load
        self._identities: dict[str, tuple[int, int]] = {}  # file → (device, inode) opened
        self._identity_checked = 0.0
        self._identity_problem: str | None = None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"sqlite store {self._path}: {type(exc).__name__}: {exc}")

    async def open(self) -> None:
        thread = _DatabaseThread(f"sqlite:{Path(self._path).name}")
        try:
            self._db = await thread.call(
                lambda: _connect(
                    self._path, self._release_leases, self._checkpoint and not self._inline
                )
            )
        except (sqlite3.Error, OSError) as exc:
            thread.stop()
            raise StoreUnavailable(
                f"sqlite store {self._path}: {_open_problem(self._path, exc)}"
            ) from None
        except BaseException:
            thread.stop()
            raise
        self._thread = thread
        self._note_identity(self._path)
        await self._open_intake()

    async def _open_intake(self) -> None:
        """The intake log's file, its writing thread and the main thread's reader; a
        process that owns the file (``release_leases_at_open``) also moves the intake jobs
        an older version left in the jobs table into the log."""
        thread = _DatabaseThread(f"sqlite:{Path(self._log_path).name}")
        try:
            self._log = await thread.call(
                lambda: intake_log.connect_log(self._log_path, self._checkpoint)
            )
        except (sqlite3.Error, OSError) as exc:
            thread.stop()
            raise StoreUnavailable(
                f"sqlite store {self._log_path}: {_open_problem(self._log_path, exc)}"
            ) from None
        self._log_thread = thread
        self._note_identity(self._log_path)
        try:
            self._log_reader = await self._run(lambda db: intake_log.connect_reader(self._log_path))
            # A write on the main file, which the other process may be writing: a
            # transaction retried while that one holds the lock.
            await self._tx(intake_log.create_position)
            if self._release_leases:
                await self._upgrade_intake()
        except BaseException:
            await self.close()
            raise

    async def _upgrade_intake(self) -> None:
        """Intake jobs of an older version (raw webhooks in the jobs table) go to the log
        first, fsynced, then leave the table: a crash between the two splits them twice,
        and the inbound dedupe drops the second copies. A log that lost what the position
        points into (a new file beside an old main file) restarts the position, so new
        entries are not taken for consumed ones."""
        old = await self._read("SELECT payload FROM jobs WHERE queue = ? ORDER BY id", (INTAKE,))
        if old:
            await self.append_intake([bytes(r[0]) for r in old])
            log.info("intake jobs moved into the intake log", extra={"count": len(old)})

        def forget_old(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM jobs WHERE queue = ?", (INTAKE,))
            db.execute("DELETE FROM dedupe WHERE queue = ?", (INTAKE,))

        await self._tx(forget_old)
        reader = self._log_reader
        assert reader is not None

        def check_position(db: sqlite3.Connection) -> int | None:
            last = reader.execute("SELECT MAX(id) FROM intake").fetchone()[0]
            last = 0 if last is None else int(last)
            if last >= intake_log.position(db):
                return None
            db.execute(
                "UPDATE intake_position SET position = ?, trimmed = ? WHERE id = 0", (last, last)
            )
            return last

        restarted = await self._tx(check_position)
        if restarted is not None:
            log.warning(
                "intake log behind its position (a new file?): position restarted",
                extra={"position": restarted},
            )

    async def close(self) -> None:
        for task in (self._committer, self._writer, self._appender):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        log_thread, log_db, reader = self._log_thread, self._log, self._log_reader
        self._log_thread = self._log = self._log_reader = None
        if log_thread is not None:
            try:
                if log_db is not None:
                    await log_thread.call(log_db.close)
            finally:
                log_thread.stop()
        if reader is not None and self._thread is not None:
            await self._thread.call(reader.close)
        thread, db = self._thread, self._db
        self._thread = self._db = None
        if thread is not None and db is not None:
            try:
                await thread.call(db.close)
            finally:
                thread.stop()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, may_wait: bool = False) -> T:
        """``fn`` with the connection: on the database thread (one hop), or ``inline``
        when it need not wait (``may_wait``: it fsyncs) and nothing is queued before it."""
        thread, db = self._thread, self._db
        if thread is None or db is None:
            raise StoreUnavailable(f"sqlite store {self._path}: not open")
        try:
            if self._inline and not may_wait and self._queued == 0:
                _inline.active = True
                try:
                    result = fn(db)
                    self.inline_calls += 1
                    return result
                except _WouldWait:
                    pass  # the other process is writing: wait for the lock on the thread
                finally:
                    _inline.active = False
            self._queued += 1
            try:
                return await thread.call(lambda: fn(db))
            finally:
                self._queued -= 1
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from None

    async def _checkpoint_now(self) -> None:
        """A passive WAL checkpoint on the thread: its fsync never blocks the loop."""
        try:
            # Read to its end: a statement left open would block the next transaction.
            await self._run(
                lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall(), may_wait=True
            )
        except StoreUnavailable as exc:  # the next one tries again
            log.warning("sqlite checkpoint failed: %s", exc)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """``fn`` in a write transaction (see ``_in_tx``). Writes asked for while one is
        under way share the next transaction (each undone alone if it raises, see
        ``_in_group``): under load one hop and one commit serve a whole round of
        completions, leases and records."""
        if durable:
            return await self._run(lambda db: _in_tx(db, fn, durable), may_wait=True)
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writes.append(_PendingWrite(fn, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="sqlite-write")
        return await done

    async def _write_pending(self) -> None:
        while self._writes:
            batch, self._writes = self._writes, []
            try:
                inline_before = self.inline_calls
                outcomes = await self._run(partial(_in_group, fns=[w.fn for w in batch]))
                self.write_commits += 1
                if self._checkpoint and self.inline_calls > inline_before:  # it ran inline
                    self._inline_commits += 1
                    if self._inline_commits >= CHECKPOINT_EVERY:
                        self._inline_commits = 0
                        await self._checkpoint_now()
            except Exception as exc:  # the transaction itself failed: every write did
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(exc)
                continue
            for write, (ok, value) in zip(batch, outcomes, strict=True):
                if write.done.done():  # its caller went away
                    continue
                if ok:
                    write.done.set_result(value)
                elif isinstance(value, (sqlite3.Error, OSError)):
                    write.done.set_exception(self._unavailable(value))
                else:
                    write.done.set_exception(value)

    async def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def _change(self, sql: str, params: Sequence[object]) -> int:
        """One statement in its own transaction; how many rows it changed."""
        return await self._tx(lambda db: db.execute(sql, params).rowcount)

    def _note_identity(self, path: str) -> None:
        if path != ":memory:":
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                self._identities[path] = (stat.st_dev, stat.st_ino)

    def file_problem(self, *, fresh: bool = False) -> str | None:
        """Why a file at this store's paths (the main file, the intake log) is no longer
        the one it opened (deleted or replaced: whatever is stored now is lost at the next
        start), or None. A stat each at most once a second, as this runs before every ack;
        ``fresh`` stats now (a probe must name the cause of a write that just failed)."""
        now = time.monotonic()
        if not fresh and now - self._identity_checked < IDENTITY_CHECK_SECONDS:
            return self._identity_problem
        self._identity_checked = now
        self._identity_problem = None
        for path, identity in self._identities.items():
            try:
                stat = os.stat(path)
                same = (stat.st_dev, stat.st_ino) == identity
                problem = None if same else "the file was replaced while open; restart the relay"
            except FileNotFoundError:
                problem = "the file was deleted while open; restart the relay"
            except OSError as exc:
                problem = f"the file cannot be checked: {exc.strerror}"
            if problem is not None:
                self._identity_problem = f"sqlite store {path}: {problem}"
                break
        return self._identity_problem

    async def ping(self) -> None:
        if (problem := self.file_problem(fresh=True)) is not None:
            raise StoreUnavailable(problem)
        await self._read("SELECT 1")

    async def enqueue(
        self,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
        if (problem := self.file_problem()) is not None:  # an ack would promise a lost job
            raise StoreUnavailable(problem)
        done: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_PendingEnqueue(queue, jobs, customer_messages or {}, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending(), name="sqlite-commit")
        return await done

    async def _commit_pending(self) -> None:
        """Commit whatever waits, in one fsynced transaction per round, until none waits."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._tx(partial(_insert_all, batch, self._clock()), durable=True)
                self.durable_commits += 1
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.done.done():  # the webhook may have gone away meanwhile
                    item.done.set_result(result)

    async def append_intake(self, bodies: Sequence[bytes]) -> list[int]:
        if (problem := self.file_problem()) is not None:  # an ack would promise a lost job
            raise StoreUnavailable(problem)
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._appends.append((bodies, done))
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._append_pending(), name="sqlite-intake")
        return await done

    async def _append_pending(self) -> None:
        """Append whatever waits, in one fsynced transaction of the log per round."""
        while self._appends:
            batch, self._appends = self._appends, []
            now = self._clock()
            try:
                ids = await self._on_log(
                    partial(intake_log.append, batches=[b for b, _ in batch], now=now)
                )
                self.intake_commits += 1
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), appended in zip(batch, ids, strict=True):
                if not done.done():  # the webhook may have gone away meanwhile
                    done.set_result(appended)

    async def _on_log(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in one write transaction of the log (its connection fsyncs each commit)."""
        thread, db = self._log_thread, self._log
        if thread is None or db is None:
            raise StoreUnavailable(f"sqlite store {self._log_path}: not open")
        try:
            return await thread.call(lambda: _in_tx(db, fn, durable=False))
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(
                f"sqlite store {self._log_path}: {type(exc).__name__}: {exc}"
            ) from None

    def _reader(self) -> sqlite3.Connection:
        if self._log_reader is None:
            raise StoreUnavailable(f"sqlite store {self._log_path}: not open")
        return self._log_reader

    async def read_intake(self, limit: int) -> IntakeBatch:
        reader = self._reader()

        def read(db: sqlite3.Connection) -> IntakeBatch:
            at = intake_log.position(db)
            rows = intake_log.read_after(reader, at, limit)
            return IntakeBatch(at, [IntakeEntry(*row) for row in rows])

        return await self._run(read)

    async def consume_intake(
        self,
        position: int,
        through: int,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
        unreadable: Sequence[tuple[IntakeEntry, str]] = (),
    ) -> EnqueueResult:
        # synchronous=NORMAL: the entries were fsynced in the log, which a trim touches
        # only below a position fsynced here (``_trim``): a power cut losing this commit
        # leaves them to be split again.
        if through < position:
            raise ValueError("the intake position only moves forward")
        now = self._clock()
        windows = customer_messages or {}
        dead = [
            (INTAKE, "", str(entry.id), entry.body, f"unreadable webhook: {reason}"[:1000], 1, now)
            for entry, reason in unreadable
        ]

        def consume(db: sqlite3.Connection) -> EnqueueResult:
            if not intake_log.move_position(db, position, through):
                raise IntakeMoved(f"intake position moved on from {position}")
            if dead:
                db.executemany(
                    "INSERT INTO dead_letters (queue, key, dedupe_key, payload, reason,"
                    " attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    dead,
                )
            return _insert(db, queue, jobs, windows, now)

        result = await self._tx(consume)
        self._untrimmed += through - position
        now_mono = time.monotonic()
        if self._untrimmed >= intake_log.TRIM_EVERY or (
            self._untrimmed and now_mono - self._trimmed_at >= intake_log.TRIM_SECONDS
        ):
            self._trimmed_at, self._untrimmed = now_mono, 0
            try:
                await self._trim()
            except StoreUnavailable as exc:  # the next consume tries again
                log.warning("intake log not trimmed: %s", exc)
        return result

    async def _trim(self) -> None:
        """Fsync the position here, then delete the log's entries below it (a short write
        on the web process's file, seldom)."""
        below = await self._tx(intake_log.mark_trimmed, durable=True)
        await self._on_log(partial(intake_log.trim, below=below))
        thread, db = self._log_thread, self._log
        if thread is not None and db is not None:
            try:
                await thread.call(lambda: intake_log.restart_wal(db, self._log_path))
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None

    async def intake_backlog(self) -> IntakeBacklog:
        reader = self._reader()

        def count(db: sqlite3.Connection) -> tuple[int, float | None]:
            return intake_log.backlog(reader, intake_log.position(db))

        entries, oldest = await self._run(count)
        age = None if oldest is None else max(0.0, self._clock() - oldest)
        return IntakeBacklog(entries, age)

    async def claim(self, queue: str, limit: int, lease_seconds: float) -> list[Job]:
        now = self._clock()

        def lease(db: sqlite3.Connection) -> list[Job]:
            rows = db.execute(CLAIM_SQL, {"q": queue, "now": now, "limit": limit}).fetchall()
            if rows:
                db.executemany(
                    "UPDATE jobs SET leased_until = ? WHERE id = ?",
                    [(now + lease_seconds, row[0]) for row in rows],
                )
            return [
                Job(
                    id=r[0],
                    queue=queue,
                    key=r[1],
                    dedupe_key=r[2],
                    order_ts=r[3],
                    payload=bytes(r[4]),
                    attempts=r[5],
                    enqueued_at=r[6],
                )
                for r in rows
            ]

        return await self._tx(lease)

    async def renew(self, queue: str, jobs: Sequence[Job], lease_seconds: float) -> list[int]:
        # One process owns the file: a lease can only be lost by expiring, and then the
        # job may already be in another task's hands; the caller just logs that.
        now = self._clock()

        def extend(db: sqlite3.Connection) -> list[int]:
            lost: list[int] = []
            for job in jobs:
                cur = db.execute(
                    "UPDATE jobs SET leased_until = ? WHERE id = ? AND leased_until > ?",
                    (now + lease_seconds, job.id, now),
                )
                if cur.rowcount == 0:
                    lost.append(job.id)
            return lost

        return await self._tx(extend)

    async def complete(self, job: Job) -> None:
        await self._change("DELETE FROM jobs WHERE id = ?", (job.id,))

    async def retry(self, job: Job, delay_seconds: float, error: str) -> None:
        due = self._clock() + max(0.0, delay_seconds)
        await self._change(
            "UPDATE jobs SET attempts = attempts + 1, due_at = ?, leased_until = NULL,"
            " last_error = ? WHERE id = ?",
            (due, error[:1000], job.id),
        )

    async def dead_letter(self, job: Job, reason: str) -> None:
        now = self._clock()

        def move(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO dead_letters (queue, key, dedupe_key, payload, reason, attempts,"
                " failed_at, order_ts) SELECT queue, key, dedupe_key, payload, ?, attempts + 1,"
                " ?, order_ts FROM jobs WHERE id = ?",
                (reason[:1000], now, job.id),
            )
            db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))

        await self._tx(move)

    async def depth(self, queue: str) -> int:
        return int(_one(await self._read("SELECT COUNT(*) FROM jobs WHERE queue = ?", (queue,))))

    async def oldest_age(self, queue: str) -> float | None:
        rows = await self._read("SELECT MIN(enqueued_at) FROM jobs WHERE queue = ?", (queue,))
        oldest = _one(rows)
        return None if oldest is None else max(0.0, self._clock() - float(oldest))

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = await self._read(
            "SELECT id, key, dedupe_key, payload, reason, attempts, failed_at, order_ts"
            " FROM dead_letters WHERE queue = ? ORDER BY id DESC LIMIT ?",
            (queue, limit),
        )
        return [_dead(queue, r) for r in rows]

    async def find_dead_letter(self, queue: str, dead_id: int) -> DeadLetter | None:
        rows = await self._read(
            "SELECT id, key, dedupe_key, payload, reason, attempts, failed_at, order_ts"
            " FROM dead_letters WHERE queue = ? AND id = ?",
            (queue, dead_id),
        )
        return _dead(queue, rows[0]) if rows else None

    async def replay_dead_letter(self, queue: str, dead_id: int) -> bool:
        if queue == INTAKE:  # a raw webhook, not a job of a queue
            return False
        now = self._clock()

        def move(db: sqlite3.Connection) -> bool:
            # Straight into jobs: its dedupe key is remembered already, so an enqueue would
            # drop it as a duplicate.
            cur = db.execute(
                "INSERT INTO jobs (queue, key, dedupe_key, order_ts, payload, enqueued_at,"
                " due_at) SELECT queue, key, dedupe_key, COALESCE(order_ts, 0), payload, ?, ?"
                " FROM dead_letters WHERE queue = ? AND id = ? AND length(payload) > 0",
                (now, now, queue, dead_id),
            )
            if cur.rowcount == 0:
                return False
            db.execute("DELETE FROM dead_letters WHERE queue = ? AND id = ?", (queue, dead_id))
            return True

        return await self._tx(move)

    async def purge_dead_letters(
        self,
        queue: str,
        ids: Sequence[int] | None = None,
        older_than_seconds: float | None = None,
    ) -> int:
        cutoff = None if older_than_seconds is None else self._clock() - older_than_seconds

        def purge(db: sqlite3.Connection) -> int:
            if ids is None:
                return db.execute(
                    "DELETE FROM dead_letters WHERE queue = ? AND (? IS NULL OR failed_at < ?)",
                    (queue, cutoff, cutoff),
                ).rowcount
            return sum(
                db.execute(
                    "DELETE FROM dead_letters WHERE queue = ? AND id = ?"
                    " AND (? IS NULL OR failed_at < ?)",
                    (queue, n, cutoff, cutoff),
                ).rowcount
                for n in ids
            )

        return await self._tx(purge)

    async def dead_letter_count(self, queue: str) -> int:
        rows = await self._read("SELECT COUNT(*) FROM dead_letters WHERE queue = ?", (queue,))
        return int(_one(rows))

    async def prune_dead_letters(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        return await self._change(
            "DELETE FROM dead_letters WHERE queue = ? AND failed_at < ?", (queue, cutoff)
        )

    async def prune_dedupe(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        return await self._change(
            "DELETE FROM dedupe WHERE queue = ? AND seen_at < ?", (queue, cutoff)
        )

    async def last_customer_message(self, key: str) -> int | None:
        rows = await self._read("SELECT last_ms FROM windows WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else None

    async def prune_windows(self, older_than_seconds: float) -> int:
        cutoff_ms = int((self._clock() - older_than_seconds) * 1000)
        return await self._change("DELETE FROM windows WHERE last_ms < ?", (cutoff_ms,))

    async def window_customers(self, from_ms: int, to_ms: int) -> list[tuple[str, int]]:
        rows = await self._read(
            "SELECT key, last_ms FROM windows WHERE last_ms BETWEEN ? AND ? ORDER BY last_ms",
            (from_ms, to_ms),
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def put_record(
        self,
        namespace: str,
        key: str,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> None:
        now = self._clock()
        expires = None if ttl_seconds is None else now + ttl_seconds
        await self._change(UPSERT_RECORD, (namespace, key, value, now, expires, due_at))

    async def compare_and_put_record(
        self,
        namespace: str,
        key: str,
        expected: bytes | None,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> bool:
        now = self._clock()
        expires = None if ttl_seconds is None else now + ttl_seconds

        def swap(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT value FROM records WHERE namespace = ? AND key = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, now),
            ).fetchone()
            if (None if row is None else bytes(row[0])) != expected:
                return False
            db.execute(UPSERT_RECORD, (namespace, key, value, now, expires, due_at))
            return True

        return await self._tx(swap)

    async def get_record(self, namespace: str, key: str) -> bytes | None:
        rows = await self._read(
            "SELECT value FROM records WHERE namespace = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (namespace, key, self._clock()),
        )
        return bytes(rows[0][0]) if rows else None

    async def list_records(self, namespace: str) -> list[tuple[str, bytes]]:
        rows = await self._read(
            "SELECT key, value FROM records WHERE namespace = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
            (namespace, self._clock()),
        )
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def due_records(
        self, namespace: str, until: float, limit: int
    ) -> list[tuple[str, bytes]]:
        rows = await self._read(
            "SELECT key, value FROM records WHERE namespace = ? AND due_at <= ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY due_at, key LIMIT ?",
            (namespace, until, self._clock(), limit),
        )
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def prune_records(self) -> int:
        return await self._change(
            "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (self._clock(),),
        )

    async def blank_dead_letter_payloads(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        return await self._change(
            "UPDATE dead_letters SET payload = X'' WHERE queue = ? AND failed_at < ?"
            " AND length(payload) > 0",
            (queue, cutoff),
        )

    async def forget_customer(self, igsid: str) -> dict[str, int]:
        if not igsid:
            raise ValueError("forget_customer needs a customer id")

        def forget(db: sqlite3.Connection) -> dict[str, int]:
            # Deleted rows are overwritten on disk, not only unlinked from their table.
            db.execute("PRAGMA secure_delete=ON")
            try:
                return _forget_rows(db, igsid)
            finally:
                db.execute("PRAGMA secure_delete=OFF")

        counts = await self._tx(forget)
        counts["intake"] = await self._on_log(
            lambda log_db: intake_log.erase_mentioning(log_db, igsid)
        )
        return counts


def _forget_rows(db: sqlite3.Connection, igsid: str) -> dict[str, int]:
    """Inside a write transaction: the main file's rows keyed by or mentioning ``igsid``."""
    p = {"id": igsid}
    jobs = db.execute("DELETE FROM jobs WHERE key = :id", p).rowcount
    dead = db.execute(
        "DELETE FROM dead_letters WHERE key = :id OR instr(dedupe_key, :id) > 0"
        " OR instr(CAST(payload AS TEXT), :id) > 0 OR instr(reason, :id) > 0",
        p,
    ).rowcount
    windows = db.execute("DELETE FROM windows WHERE key = :id", p).rowcount
    recs = db.execute(
        "DELETE FROM records WHERE instr(key, :id) > 0 OR instr(CAST(value AS TEXT), :id) > 0",
        p,
    ).rowcount
    dedupe = db.execute("DELETE FROM dedupe WHERE instr(dedupe_key, :id) > 0", p).rowcount
    return {
        "jobs": jobs,
        "dead_letters": dead,
        "windows": windows,
        "records": recs,
        "dedupe": dedupe,
    }
