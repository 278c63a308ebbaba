"""The SQLite store: dedupe, per-customer order, leases, dead letters, crash durability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from igbridge.relay.store import NewJob, SQLiteStore, StoreUnavailable

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


def test_duplicates_are_dropped_in_batch_across_batches_and_after_completion(
    tmp_path: Path,
) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        first = await store.enqueue(Q, [job("a", "m1", 1), job("a", "m1", 1), job("a", "m2", 2)])
        assert (first.accepted, first.duplicates) == (2, 1)
        again = await store.enqueue(Q, [job("a", "m2", 2)])
        assert (again.accepted, again.duplicates) == (0, 1)
        claimed = await store.claim(Q, 10, 30)
        await store.complete(claimed[0])
        after = await store.enqueue(Q, [job("a", "m1", 1)])
        assert after.duplicates == 1
        other_queue = await store.enqueue("outbound", [job("a", "m1", 1)])
        assert other_queue.accepted == 1

    run(body, tmp_path / "s.db")


def test_order_by_timestamp_one_in_flight_per_key_keys_in_parallel(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        # Enqueued out of order: Meta does not guarantee order, its timestamps do.
        await store.enqueue(Q, [job("a", "a3", 300), job("a", "a1", 100), job("b", "b1", 50)])
        await store.enqueue(Q, [job("a", "a2", 200)])
        first = await store.claim(Q, 10, 30)
        assert sorted(j.dedupe_key for j in first) == ["a1", "b1"]
        assert await store.claim(Q, 10, 30) == []  # both keys busy
        for j in first:
            await store.complete(j)
        seen = []
        for _round in range(5):
            batch = await store.claim(Q, 10, 30)
            for j in batch:
                seen.append(j.dedupe_key)
                await store.complete(j)
        assert seen == ["a2", "a3"]
        assert await store.depth(Q) == 0

    run(body, tmp_path / "s.db")


def test_retry_holds_back_the_customers_later_messages(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1), job("a", "a2", 2), job("b", "b1", 1)])
        batch = await store.claim(Q, 10, 30)
        a1 = next(j for j in batch if j.key == "a")
        await store.retry(a1, 10, "HTTP 503")
        for j in batch:
            if j.key == "b":
                await store.complete(j)
        assert await store.claim(Q, 10, 30) == []  # a2 must not overtake a1
        clock.now += 11
        again = await store.claim(Q, 10, 30)
        assert [(j.dedupe_key, j.attempts) for j in again] == [("a1", 1)]

    run(body, tmp_path / "s.db")


def test_expired_lease_makes_the_job_claimable_again(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1)])
        assert len(await store.claim(Q, 10, 30)) == 1
        clock.now += 29
        assert await store.claim(Q, 10, 30) == []
        clock.now += 2
        assert [j.dedupe_key for j in await store.claim(Q, 10, 30)] == ["a1"]

    run(body, tmp_path / "s.db")


def test_dead_letter_keeps_the_reason_and_the_key_moves_on(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, _: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1), job("a", "a2", 2)])
        (a1,) = await store.claim(Q, 10, 30)
        await store.dead_letter(a1, "HTTP 400: invalid mediaType")
        (a2,) = await store.claim(Q, 10, 30)
        assert a2.dedupe_key == "a2"
        letters = await store.dead_letters(Q)
        assert [(d.dedupe_key, d.reason, d.attempts) for d in letters] == [
            ("a1", "HTTP 400: invalid mediaType", 1)
        ]
        assert await store.dead_letter_count(Q) == 1
        assert (await store.enqueue(Q, [job("a", "a1", 1)])).duplicates == 1

    run(body, tmp_path / "s.db")


def test_prune_forgets_old_dedupe_keys(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "old", 1)])
        clock.now += 8 * 86400
        await store.enqueue(Q, [job("a", "new", 2)])
        assert await store.prune_dedupe(Q, 7 * 86400) == 1
        assert (await store.enqueue(Q, [job("a", "new", 2)])).duplicates == 1

    run(body, tmp_path / "s.db")


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


def test_many_customers_drained_concurrently_exactly_once_in_order(tmp_path: Path) -> None:
    keys, per_key = 500, 8

    async def body(store: SQLiteStore, _: Clock) -> None:
        jobs = [job(f"k{k}", f"k{k}-{i}", i) for k in range(keys) for i in range(per_key)]
        for start in range(0, len(jobs), 500):
            await store.enqueue(Q, jobs[start : start + 500])
        delivered: dict[str, list[int]] = {}

        async def worker() -> None:
            for _ in range(10_000):
                batch = await store.claim(Q, 16, 30)
                if not batch:
                    if await store.depth(Q) == 0:
                        return
                    await asyncio.sleep(0)
                    continue
                for j in batch:
                    delivered.setdefault(j.key, []).append(j.order_ts)
                    await store.complete(j)

        await asyncio.gather(*(worker() for _ in range(4)))
        assert len(delivered) == keys
        assert all(v == list(range(per_key)) for v in delivered.values())

    run(body, tmp_path / "s.db")


def test_unwritable_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteStore(str(blocker / "s.db"))
    with pytest.raises(StoreUnavailable, match="sqlite store"):
        asyncio.run(store.open())


def test_sigkill_after_enqueue_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("store_crash_child.py")), str(path)],
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

    async def check() -> None:
        store = SQLiteStore(str(path))  # the child's real clock
        await store.open()
        stored = {j.dedupe_key for j in await store.claim(Q, 100_000, 30)}
        await store.close()
        assert set(reported) <= stored

    asyncio.run(check())
