"""What only the SQLite store does: reopening after a crash, schema upgrade, a bad path.
(The contract both backends keep is in test_store_contract.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from igbridge.relay import records
from igbridge.relay.records import CONVERSATIONS, Conversation
from igbridge.relay.store import NewJob, SQLiteStore, StoreUnavailable, sqlite_intake
from igbridge.relay.store import sqlite as sqlite_store
from igbridge.relay.store.base import INTAKE
from igbridge.relay.store.sqlite import SCHEMA
from igbridge.relay.tasks.sla import index_earlier_records

Q = "inbound"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run(fn: Callable[[SQLiteStore, Clock], Awaitable[None]], path: Path) -> None:
    async def main() -> None:
        clock = Clock()
        store = SQLiteStore(str(path), clock=clock)
        await store.open()
        try:
            await fn(store, clock)
        finally:
            await store.close()

    asyncio.run(main())


def job(key: str, dedupe: str, ts: int) -> NewJob:
    return NewJob(key, dedupe, ts, f'{{"d":"{dedupe}"}}'.encode())


def test_reopen_keeps_jobs_and_releases_a_dead_process_leases(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def first(store: SQLiteStore, _: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1), job("b", "b1", 1)])
        assert len(await store.claim(Q, 10, 3600)) == 2

    async def second(store: SQLiteStore, _: Clock) -> None:
        assert await store.depth(Q) == 2
        assert len(await store.claim(Q, 10, 30)) == 2

    run(first, path)
    run(second, path)


def test_unwritable_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteStore(str(blocker / "s.db"))
    with pytest.raises(StoreUnavailable, match="sqlite store"):
        asyncio.run(store.open())


def _stored_until_killed(path: Path, kind: str) -> list[str]:
    """What the crash child reported stored before it was SIGKILLed."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("store_crash_child.py")), str(path), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    reported: list[str] = []
    for line in child.stdout:
        reported.append(line.split()[1])
        if len(reported) == 40:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    child.stdout.close()
    return reported


def test_sigkill_after_enqueue_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    reported = _stored_until_killed(path, "inbound")

    async def check() -> None:
        store = SQLiteStore(str(path))  # the child's real clock
        await store.open()
        stored = {j.dedupe_key for j in await store.claim(Q, 100_000, 30)}
        await store.close()
        assert set(reported) <= stored

    asyncio.run(check())


def test_a_version_1_file_is_upgraded_in_place_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace("    expires_at REAL,\n    due_at REAL,\n", ""))
        db.execute(
            "INSERT INTO jobs (queue, key, dedupe_key, order_ts, payload, enqueued_at, due_at)"
            " VALUES ('inbound', 'a', 'a1', 1, x'7b7d', 0, 0)"
        )
        db.execute("INSERT INTO records VALUES ('ns', 'k', x'31', 0)")
        db.execute("PRAGMA user_version=1")

    async def body(store: SQLiteStore, _: Clock) -> None:
        assert [j.dedupe_key for j in await store.claim(Q, 10, 30)] == ["a1"]
        assert await store.get_record("ns", "k") == b"1"
        await store.put_record("ns", "t", b"2", ttl_seconds=60)
        assert await store.get_record("ns", "t") == b"2"
        await store.put_record("ns", "d", b"3", due_at=5.0)
        assert await store.due_records("ns", 10.0, 10) == [("d", b"3")]

    run(body, path)


def test_a_version_2_file_gets_the_due_index_and_its_waiting_customers_are_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    waiting = Conversation(conversation_id="conv-1", waiting_since_ms=900_000_000)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace("    due_at REAL,\n", ""))
        db.execute(
            "INSERT INTO records VALUES ('conversation', 'c1', ?, 0, NULL)",
            (waiting.model_dump_json().encode(),),
        )
        db.execute("PRAGMA user_version=2")

    async def body(store: SQLiteStore, _: Clock) -> None:
        assert await store.due_records("conversation", 1e12, 10) == []  # not indexed yet
        await index_earlier_records(store)
        ((key, _raw),) = await store.due_records("conversation", 1e12, 10)
        assert key == "c1"
        assert await records.get(store, CONVERSATIONS, "c1") == waiting

    run(body, path)


def test_concurrent_enqueues_share_fsyncs_and_keep_each_answer_right(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        # 200 webhooks at once, each its own message, and 20 pairs racing with one mid.
        own = [store.enqueue(Q, [job(f"c{i}", f"m{i}", i)]) for i in range(200)]
        racing = [store.enqueue(Q, [job("r", f"dup{i % 20}", i)]) for i in range(40)]
        results = await asyncio.gather(*own, *racing)
        assert all((r.accepted, r.duplicates) == (1, 0) for r in results[:200])
        assert sum(r.accepted for r in results[200:]) == 20
        assert sum(r.duplicates for r in results[200:]) == 20
        assert await store.depth(Q) == 220
        assert store.durable_commits < 240 // 2  # batched, not one fsync per webhook

    run(body, tmp_path / "s.db")


def test_a_failed_group_commit_fails_every_waiter_and_the_next_one_works(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        bad = NewJob("c", "m-bad", 1, b"{}")
        # A payload SQLite cannot bind fails the whole transaction: nobody gets a 200.
        broken = NewJob("c", "m-broken", 2, object())  # type: ignore[arg-type]
        results = await asyncio.gather(
            store.enqueue(Q, [bad]), store.enqueue(Q, [broken]), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results)
        assert await store.depth(Q) == 0
        assert (await store.enqueue(Q, [bad])).accepted == 1

    run(body, tmp_path / "s.db")


def test_concurrent_writes_share_transactions_and_a_failing_one_fails_alone(
    tmp_path: Path,
) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        await store.enqueue(Q, [job(f"c{i}", f"m{i}", i) for i in range(100)])
        jobs = await store.claim(Q, 100, 30)
        before = store.write_commits
        writes = [store.complete(j) for j in jobs]
        writes += [store.put_record("ns", f"k{i}", b"v") for i in range(100)]
        unbindable = store.put_record("ns", "bad", object())  # type: ignore[arg-type]
        results = await asyncio.gather(*writes, unbindable, return_exceptions=True)
        assert all(r is None for r in results[:-1])
        assert isinstance(results[-1], StoreUnavailable)
        assert store.write_commits - before < 200 // 2  # shared, not one per write
        assert await store.depth(Q) == 0
        assert len(await store.list_records("ns")) == 100
        assert await store.get_record("ns", "bad") is None

    run(body, tmp_path / "s.db")


def test_a_write_waits_out_another_process_lock_and_gives_up_after_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"

    def hold_lock(seconds: float, locked: threading.Event) -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        threading.Event().wait(seconds)
        other.execute("COMMIT")
        other.close()

    async def body(store: SQLiteStore, _: Clock) -> None:
        locked = threading.Event()
        holder = threading.Thread(target=hold_lock, args=(0.3, locked))
        holder.start()
        locked.wait(5)
        # The other process (the web or delivery side) commits within 0.3 s: no error.
        assert (await store.enqueue(Q, [job("c", "m1", 1)])).accepted == 1
        holder.join()
        monkeypatch.setattr(sqlite_store, "LOCK_WAIT_SECONDS", 0.2)
        locked = threading.Event()
        holder = threading.Thread(target=hold_lock, args=(1.0, locked))
        holder.start()
        locked.wait(5)
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.enqueue(Q, [job("c", "m2", 2)])
        holder.join()
        assert (await store.enqueue(Q, [job("c", "m2", 2)])).accepted == 1

    run(body, path)


def test_a_second_process_can_open_the_file_without_taking_the_first_ones_leases(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"

    async def body() -> None:
        clock = Clock()
        first = SQLiteStore(str(path), clock=clock)
        await first.open()
        await first.enqueue(Q, [job("a", "a1", 1), job("b", "b1", 1)])
        (a1, _b1) = await first.claim(Q, 10, 3600)
        sharing = SQLiteStore(str(path), clock=clock, release_leases_at_open=False)
        await sharing.open()
        assert await sharing.claim(Q, 10, 30) == []  # both still the first one's
        await first.complete(a1)
        await first.close()
        taking_over = SQLiteStore(str(path), clock=clock)
        await taking_over.open()
        assert [j.dedupe_key for j in await taking_over.claim(Q, 10, 30)] == ["b1"]
        await taking_over.close()
        await sharing.close()

    asyncio.run(body())


def _database_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sqlite:")]


def test_a_failed_open_and_a_close_leave_no_thread_behind(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    async def body() -> None:
        with pytest.raises(StoreUnavailable, match=r"sqlite store .*: FileExistsError"):
            await SQLiteStore(str(blocker / "s.db")).open()
        assert _database_threads() == []
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        assert sorted(_database_threads()) == ["sqlite:s-intake.db", "sqlite:s.db"]
        await store.close()
        assert _database_threads() == []
        with pytest.raises(StoreUnavailable, match="not open"):
            await store.depth(Q)

    asyncio.run(body())


def test_a_process_that_never_closes_its_store_still_exits(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from igbridge.relay.store import NewJob, SQLiteStore\n"
        "async def main():\n"
        "    store = SQLiteStore(sys.argv[1])\n"
        "    await store.open()\n"
        "    await store.enqueue('inbound', [NewJob('a', 'a1', 1, b'{}')])\n"
        "    print('enqueued', flush=True)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: a non-daemon database thread would keep it alive
    )
    assert (done.returncode, done.stdout) == (0, "enqueued\n"), done.stderr


def test_sigkill_after_an_intake_append_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    reported = _stored_until_killed(path, "intake")

    async def check() -> None:
        store = SQLiteStore(str(path))
        await store.open()
        batch = await store.read_intake(100_000)
        await store.close()
        assert set(reported) <= {e.body.decode() for e in batch.entries}

    asyncio.run(check())


def _log_ids(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(sqlite_intake.log_path(str(path)))) as db:
        return [int(r[0]) for r in db.execute("SELECT id FROM intake ORDER BY id")]


def _wal_bytes(path: Path) -> int:
    return Path(sqlite_intake.log_path(str(path)) + "-wal").stat().st_size


def test_the_intake_log_is_a_file_of_its_own_trimmed_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    monkeypatch.setattr(sqlite_intake, "TRIM_SECONDS", 3600.0)
    monkeypatch.setattr(sqlite_intake, "TRIM_EVERY", 3)
    monkeypatch.setattr(sqlite_intake, "WAL_RESTART_BYTES", 1)

    async def body(store: SQLiteStore, _: Clock) -> None:
        ids = await store.append_intake([b"1", b"2", b"3", b"4", b"5"])
        assert _log_ids(path) == ids  # beside the main file, not in it
        batch = await store.read_intake(2)
        await store.consume_intake(batch.position, ids[1], Q, [])
        assert _log_ids(path) == ids  # two consumed: not worth a write on the log yet
        assert _wal_bytes(path) > 0
        batch = await store.read_intake(1)
        await store.consume_intake(batch.position, ids[2], Q, [])
        # Trimmed up to the position, which stays (new ids must land above it).
        assert _log_ids(path) == ids[2:]
        assert _wal_bytes(path) == 0  # copied into the file and started over
        assert [e.body for e in (await store.read_intake(10)).entries] == [b"4", b"5"]

    run(body, path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "intake" not in tables


def test_the_web_process_store_leaves_old_intake_jobs_to_the_owner_of_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"

    async def body() -> None:
        older = SQLiteStore(str(path))
        await older.open()
        await older.enqueue(INTAKE, [job("s1", "s1", 1)])
        await older.close()
        web = SQLiteStore(str(path), release_leases_at_open=False, checkpoint=False)
        await web.open()
        assert (await web.read_intake(10)).entries == []
        assert await web.depth(INTAKE) == 1  # not moved by the process that shares the file
        await web.close()
        owner = SQLiteStore(str(path))
        await owner.open()
        assert [e.body for e in (await owner.read_intake(10)).entries] == [b'{"d":"s1"}']
        await owner.close()

    asyncio.run(body())


def test_a_new_intake_file_beside_an_old_position_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def consumed(store: SQLiteStore, _: Clock) -> None:
        ids = await store.append_intake([b"1", b"2", b"3"])
        batch = await store.read_intake(10)
        await store.consume_intake(batch.position, ids[-1], Q, [])

    async def after_the_log_was_lost(store: SQLiteStore, _: Clock) -> None:
        await store.append_intake([b"new"])
        assert [e.body for e in (await store.read_intake(10)).entries] == [b"new"]

    run(consumed, path)
    for suffix in ("", "-wal", "-shm"):
        Path(sqlite_intake.log_path(str(path)) + suffix).unlink(missing_ok=True)
    run(after_the_log_was_lost, path)


def test_the_web_process_opens_while_the_delivery_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"

    with contextlib.closing(sqlite3.connect(path)) as db:  # a file of the previous version
        db.executescript(SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA user_version={sqlite_store.SCHEMA_VERSION}")

    async def body() -> None:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # the other process, in the middle of a write
        release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        release.start()
        web = SQLiteStore(str(path), release_leases_at_open=False, checkpoint=False)
        try:
            await web.open()
            (entry,) = await web.append_intake([b"raw"])
            assert [e.id for e in (await web.read_intake(10)).entries] == [entry]
        finally:
            release.join()
            holder.close()
            await web.close()

    asyncio.run(body())


def test_an_inline_store_waits_for_another_process_lock_off_the_event_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"

    async def body() -> None:
        store = SQLiteStore(str(path), inline=True)
        await store.open()
        try:
            await store.put_record("ns", "before", b"v")
            assert store.inline_calls > 0  # an uncontended write ran on the loop's thread
            holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")  # the web process, in the middle of a write
            release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
            release.start()
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                for _ in range(1000):
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            await store.put_record("ns", "during", b"v")
            ticker.cancel()
            release.join()
            holder.close()
            # The loop kept running while the write waited for the lock (~0.3 s).
            assert ticks >= 5
            assert await store.get_record("ns", "during") == b"v"
        finally:
            await store.close()

    asyncio.run(body())


def test_an_inline_store_checkpoints_its_wal_itself(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    value = os.urandom(2000)

    def wal_size() -> int:
        return os.path.getsize(f"{path}-wal")

    async def body() -> int:
        store = SQLiteStore(str(path), inline=True)
        await store.open()
        try:
            for i in range(2000):  # one commit each: ~16 MB of WAL if never checkpointed
                await store.put_record("ns", f"k{i % 50}", value)
            assert store.inline_calls >= 2000
            # A WAL file never shrinks while open: its size now is the most it reached.
            return wal_size()
        finally:
            await store.close()

    assert asyncio.run(body()) < 4 * 1024 * 1024
