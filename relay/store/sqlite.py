"""The SQLite store: the embedded default, for one relay process.

One connection, WAL journal. A webhook is answered 200 only after ``enqueue`` committed
with ``synchronous=FULL``: that commit survives a crash or a power cut. Enqueues that
arrive while a commit is under way wait for the next one and share it (group commit): one
fsync for many webhooks under load, no added wait when idle. Other writes
(leases, completions, records) commit with ``synchronous=NORMAL`` — in WAL mode they
survive a process crash; a power cut could at worst redeliver a message, never lose
one. The file belongs to one process, so leases left by a crashed predecessor are
released at ``open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from .base import DeadLetter, EnqueueResult, Job, NewJob, StoreUnavailable

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
    failed_at REAL NOT NULL
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


async def _insert(
    db: aiosqlite.Connection,
    queue: str,
    jobs: Sequence[NewJob],
    customer_messages: Mapping[str, int],
    now: float,
) -> EnqueueResult:
    for key, ts_ms in customer_messages.items():
        await db.execute(UPSERT_WINDOW, (key, ts_ms))
    accepted = duplicates = 0
    for job in jobs:
        cur = await db.execute(
            "INSERT OR IGNORE INTO dedupe (queue, dedupe_key, seen_at) VALUES (?, ?, ?)",
            (queue, job.dedupe_key, now),
        )
        if cur.rowcount == 0:
            duplicates += 1
            continue
        await db.execute(
            "INSERT INTO jobs (queue, key, dedupe_key, order_ts, payload,"
            " enqueued_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, job.key, job.dedupe_key, job.order_ts, job.payload, now, now),
        )
        accepted += 1
    return EnqueueResult(accepted, duplicates)


def sqlite_path(url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError("not a sqlite:/// URL")
    return url[len("sqlite:///") :]


class SQLiteStore:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        # aiosqlite shares one connection: transactions must not interleave.
        self._lock = asyncio.Lock()
        self._pending: list[_PendingEnqueue] = []
        self._committer: asyncio.Task[None] | None = None
        self.durable_commits = 0  # fsynced enqueue transactions: fewer than enqueues under load

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"sqlite store {self._path}: {type(exc).__name__}: {exc}")

    async def open(self) -> None:
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self._path, isolation_level=None)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            await db.executescript(SCHEMA)
            if version < SCHEMA_VERSION:
                async with db.execute("PRAGMA table_info(records)") as cur:
                    columns = {str(r[1]) for r in await cur.fetchall()}
                for column in RECORD_COLUMNS_ADDED:
                    if column not in columns:
                        await db.execute(f"ALTER TABLE records ADD COLUMN {column} REAL")
            await db.executescript(INDEXES)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await db.execute("UPDATE jobs SET leased_until = NULL WHERE leased_until IS NOT NULL")
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from None
        self._db = db

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _tx(self, *, durable: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; ``durable`` ones are fsynced before they return."""
        if self._db is None:
            raise StoreUnavailable(f"sqlite store {self._path}: not open")
        async with self._lock:
            db = self._db
            try:
                if durable:
                    await db.execute("PRAGMA synchronous=FULL")
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable(exc) from None
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("PRAGMA synchronous=NORMAL")

    async def _read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        if self._db is None:
            raise StoreUnavailable(f"sqlite store {self._path}: not open")
        async with self._lock:
            try:
                async with self._db.execute(sql, params) as cur:
                    return list(await cur.fetchall())
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable(exc) from None

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def enqueue(
        self,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
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
                results = await self._enqueue_batch(batch)
                self.durable_commits += 1
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.done.done():  # the webhook may have gone away meanwhile
                    item.done.set_result(result)

    async def _enqueue_batch(self, batch: Sequence[_PendingEnqueue]) -> list[EnqueueResult]:
        now = self._clock()
        async with self._tx(durable=True) as db:
            return [
                await _insert(db, item.queue, item.jobs, item.customer_messages, now)
                for item in batch
            ]

    async def transfer(
        self,
        source: str,
        taken: Sequence[Job],
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
        # synchronous=NORMAL: the taken jobs were fsynced; a power cut losing this commit
        # leaves them in place, to be split again.
        now = self._clock()
        async with self._tx() as db:
            await db.executemany(
                "DELETE FROM jobs WHERE id = ? AND queue = ?", [(j.id, source) for j in taken]
            )
            return await _insert(db, queue, jobs, customer_messages or {}, now)

    async def claim(self, queue: str, limit: int, lease_seconds: float) -> list[Job]:
        now = self._clock()
        async with self._tx() as db:
            async with db.execute(CLAIM_SQL, {"q": queue, "now": now, "limit": limit}) as cur:
                rows = list(await cur.fetchall())
            if rows:
                await db.executemany(
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

    async def renew(self, queue: str, jobs: Sequence[Job], lease_seconds: float) -> list[int]:
        # One process owns the file: a lease can only be lost by expiring, and then the
        # job may already be in another task's hands; the caller just logs that.
        now = self._clock()
        lost: list[int] = []
        async with self._tx() as db:
            for job in jobs:
                cur = await db.execute(
                    "UPDATE jobs SET leased_until = ? WHERE id = ? AND leased_until > ?",
                    (now + lease_seconds, job.id, now),
                )
                if cur.rowcount == 0:
                    lost.append(job.id)
        return lost

    async def complete(self, job: Job) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))

    async def retry(self, job: Job, delay_seconds: float, error: str) -> None:
        due = self._clock() + max(0.0, delay_seconds)
        async with self._tx() as db:
            await db.execute(
                "UPDATE jobs SET attempts = attempts + 1, due_at = ?, leased_until = NULL,"
                " last_error = ? WHERE id = ?",
                (due, error[:1000], job.id),
            )

    async def dead_letter(self, job: Job, reason: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO dead_letters (queue, key, dedupe_key, payload, reason, attempts,"
                " failed_at) SELECT queue, key, dedupe_key, payload, ?, attempts + 1, ?"
                " FROM jobs WHERE id = ?",
                (reason[:1000], self._clock(), job.id),
            )
            await db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))

    async def depth(self, queue: str) -> int:
        rows = await self._read("SELECT COUNT(*) FROM jobs WHERE queue = ?", (queue,))
        return int(rows[0][0])

    async def oldest_age(self, queue: str) -> float | None:
        rows = await self._read("SELECT MIN(enqueued_at) FROM jobs WHERE queue = ?", (queue,))
        oldest = rows[0][0]
        return None if oldest is None else max(0.0, self._clock() - float(oldest))

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = await self._read(
            "SELECT id, key, dedupe_key, payload, reason, attempts, failed_at FROM dead_letters"
            " WHERE queue = ? ORDER BY id DESC LIMIT ?",
            (queue, limit),
        )
        return [DeadLetter(r[0], queue, r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows]

    async def dead_letter_count(self, queue: str) -> int:
        rows = await self._read("SELECT COUNT(*) FROM dead_letters WHERE queue = ?", (queue,))
        return int(rows[0][0])

    async def prune_dead_letters(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM dead_letters WHERE queue = ? AND failed_at < ?", (queue, cutoff)
            )
            return cur.rowcount

    async def prune_dedupe(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM dedupe WHERE queue = ? AND seen_at < ?", (queue, cutoff)
            )
            return cur.rowcount

    async def last_customer_message(self, key: str) -> int | None:
        rows = await self._read("SELECT last_ms FROM windows WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else None

    async def prune_windows(self, older_than_seconds: float) -> int:
        cutoff_ms = int((self._clock() - older_than_seconds) * 1000)
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM windows WHERE last_ms < ?", (cutoff_ms,))
            return cur.rowcount

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
        async with self._tx() as db:
            await db.execute(UPSERT_RECORD, (namespace, key, value, now, expires, due_at))

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
        async with self._tx() as db:
            async with db.execute(
                "SELECT value FROM records WHERE namespace = ? AND key = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, now),
            ) as cur:
                row = await cur.fetchone()
            current = None if row is None else bytes(row[0])
            if current != expected:
                return False
            await db.execute(UPSERT_RECORD, (namespace, key, value, now, expires, due_at))
            return True

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
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (self._clock(),),
            )
            return cur.rowcount
