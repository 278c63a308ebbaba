"""The store's contract, checked on both backends (SQLite and a real redis-server):
dedupe, per-customer order, leases and their renewal, dead letters, records."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from igbridge.relay.store import NewJob, RedisStore, SQLiteStore, Store
from igbridge.relay.store.base import INTAKE, IntakeBacklog, IntakeBatch, IntakeMoved
from tests.harness.redis_server import RedisServer

Q = "inbound"
_prefixes = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Opens stores of one kind on shared state: two opened stores are two replicas."""

    def __init__(self, kind: str, tmp_path: Path, redis: RedisServer | None) -> None:
        self.kind = kind
        self._path = tmp_path / "s.db"
        self._redis = redis
        self.prefix = f"t{next(_prefixes)}"

    def redis_url(self) -> str:
        assert self._redis is not None
        return self._redis.url

    def store(self, clock: Clock) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(str(self._path), clock=clock)
        if self.kind == "sqlite-inline":  # as the delivery process opens it
            return SQLiteStore(str(self._path), clock=clock, inline=True)
        assert self._redis is not None
        return RedisStore(self._redis.url, prefix=self.prefix, clock=clock)

    def run(self, fn: Callable[[Store, Clock], Awaitable[None]]) -> None:
        async def main() -> None:
            clock = Clock()
            store = self.store(clock)
            await store.open()
            try:
                await fn(store, clock)
            finally:
                await store.close()

        uvloop.run(main())  # the relay's event loop


@pytest.fixture(params=["sqlite", "sqlite-inline", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path, redis)


def job(key: str, dedupe: str, ts: int) -> NewJob:
    return NewJob(key, dedupe, ts, f'{{"d":"{dedupe}"}}'.encode())


def test_duplicates_are_dropped_in_batch_across_batches_and_after_completion(
    backend: Backend,
) -> None:
    async def body(store: Store, _: Clock) -> None:
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

    backend.run(body)


def test_order_by_timestamp_one_in_flight_per_key_keys_in_parallel(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
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

    backend.run(body)


def test_retry_holds_back_the_customers_later_messages(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
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

    backend.run(body)


def test_expired_lease_makes_the_job_claimable_again(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1)])
        assert len(await store.claim(Q, 10, 30)) == 1
        clock.now += 29
        assert await store.claim(Q, 10, 30) == []
        clock.now += 2
        assert [j.dedupe_key for j in await store.claim(Q, 10, 30)] == ["a1"]

    backend.run(body)


def test_dead_letter_keeps_the_reason_and_the_key_moves_on(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
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

    backend.run(body)


def test_dead_letters_are_kept_for_a_while_then_forgotten(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "old", 1), job("b", "new", 1)])
        first = next(j for j in await store.claim(Q, 10, 30) if j.key == "a")
        await store.dead_letter(first, "HTTP 400")
        clock.now += 20 * 86400
        (second,) = await store.claim(Q, 10, 30)
        await store.dead_letter(second, "HTTP 400")
        clock.now += 15 * 86400
        assert await store.prune_dead_letters(Q, 30 * 86400) == 1
        assert [d.dedupe_key for d in await store.dead_letters(Q)] == ["new"]
        assert await store.dead_letter_count(Q) == 1

    backend.run(body)


def test_prune_forgets_old_dedupe_keys(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "old", 1)])
        clock.now += 8 * 86400
        await store.enqueue(Q, [job("a", "new", 2)])
        assert await store.prune_dedupe(Q, 7 * 86400) == 1
        assert (await store.enqueue(Q, [job("a", "new", 2)])).duplicates == 1

    backend.run(body)


def test_many_customers_drained_concurrently_exactly_once_in_order(backend: Backend) -> None:
    keys, per_key = 500, 8

    async def body(store: Store, _: Clock) -> None:
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

    backend.run(body)


def test_a_renewed_lease_holds_and_reports_a_lost_one(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1), job("b", "b1", 1)])
        a1, b1 = sorted(await store.claim(Q, 10, 30), key=lambda j: j.key)
        for _ in range(5):  # a slow delivery: five heartbeats, each before expiry
            clock.now += 20
            assert await store.renew(Q, [a1], 30) == []
        assert await store.renew(Q, [a1, b1], 30) == [b1.id]  # b1's ran out meanwhile
        assert [j.key for j in await store.claim(Q, 10, 30)] == ["b"]

    backend.run(body)


def test_windows_keep_the_latest_message(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1)], {"a": 5_000, "b": 9_000})
        await store.enqueue(Q, [], {"a": 3_000})  # an older, late event never rewinds
        assert await store.last_customer_message("a") == 5_000
        assert await store.last_customer_message("nobody") is None
        assert await store.last_customer_message("b") == 9_000
        # a millisecond timestamp of today survives the round trip exactly
        await store.enqueue(Q, [], {"c": 1_764_000_000_123})
        assert await store.last_customer_message("c") == 1_764_000_000_123

    backend.run(body)


def test_records_compare_and_set_expire_and_list(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        assert await store.compare_and_put_record("ns", "k", None, b"v1")
        assert not await store.compare_and_put_record("ns", "k", None, b"v2")
        assert not await store.compare_and_put_record("ns", "k", b"other", b"v2")
        assert await store.compare_and_put_record("ns", "k", b"v1", b"v2")
        assert await store.get_record("ns", "k") == b"v2"
        await store.put_record("ns", "emoji", "🙂 مرحبا".encode())
        await store.put_record("other", "k", b"x")
        assert await store.list_records("ns") == [("emoji", "🙂 مرحبا".encode()), ("k", b"v2")]
        await store.put_record("short", "k", b"x", ttl_seconds=0.2)
        assert await store.get_record("short", "k") == b"x"
        clock.now += 1
        await asyncio.sleep(0.3)  # Redis expires by its own clock
        assert await store.get_record("short", "k") is None
        assert await store.list_records("short") == []
        assert await store.prune_records() == 1

    backend.run(body)


def test_concurrent_compare_and_set_loses_no_update(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        async def add_one() -> None:
            for _attempt in range(200):
                raw = await store.get_record("count", "c")
                n = int(raw or b"0")
                if await store.compare_and_put_record("count", "c", raw, str(n + 1).encode()):
                    return
            raise AssertionError("never won the compare-and-set")

        await asyncio.gather(*(add_one() for _ in range(30)))
        assert await store.get_record("count", "c") == b"30"

    backend.run(body)


def test_due_records_are_read_by_due_time_and_leave_the_index_when_not_due(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.put_record("sla", "late", b"1", due_at=100.0)
        await store.put_record("sla", "early", b"2", due_at=50.0)
        await store.put_record("sla", "later", b"3", due_at=500.0)
        await store.put_record("sla", "never", b"4")  # no due time: never read
        await store.put_record("other", "x", b"5", due_at=10.0)
        assert await store.due_records("sla", 100.0, 10) == [("early", b"2"), ("late", b"1")]
        assert await store.due_records("sla", 1e12, 1) == [("early", b"2")]
        # Answered: written without a due time, out of the index; the value stays.
        assert await store.compare_and_put_record("sla", "early", b"2", b"2a")
        assert await store.due_records("sla", 100.0, 10) == [("late", b"1")]
        assert await store.get_record("sla", "early") == b"2a"
        # A compare-and-set that loses changes neither the value nor the index.
        assert not await store.compare_and_put_record("sla", "late", b"stale", b"x", due_at=1.0)
        assert await store.due_records("sla", 100.0, 10) == [("late", b"1")]
        assert await store.compare_and_put_record("sla", "later", b"3", b"3a", due_at=60.0)
        assert await store.due_records("sla", 100.0, 10) == [("later", b"3a"), ("late", b"1")]

    backend.run(body)


def test_a_due_record_past_its_time_to_live_is_neither_read_nor_kept(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.put_record("sla", "gone", b"1", ttl_seconds=0.2, due_at=10.0)
        assert await store.compare_and_put_record("sla", "kept", None, b"2", 3600, due_at=20.0)
        clock.now += 1
        await asyncio.sleep(0.3)  # Redis expires by its own clock
        assert await store.due_records("sla", 100.0, 10) == [("kept", b"2")]
        assert await store.prune_records() == 1
        assert await store.due_records("sla", 100.0, 10) == [("kept", b"2")]
        assert await store.get_record("sla", "gone") is None

    backend.run(body)


def test_windows_are_read_by_time_and_forgotten_after_their_retention(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        now_ms = int(clock.now * 1000)
        day = 86400 * 1000
        await store.enqueue(
            Q, [], {"old": now_ms - 8 * day, "week": now_ms - 6 * day, "new": now_ms - 1000}
        )
        assert await store.window_customers(now_ms - 7 * day, now_ms) == [
            ("week", now_ms - 6 * day),
            ("new", now_ms - 1000),
        ]
        assert await store.window_customers(now_ms - 2000, now_ms - 500) == [("new", now_ms - 1000)]
        assert await store.prune_windows(7 * 86400) == 1
        assert await store.last_customer_message("old") is None
        assert await store.last_customer_message("week") == now_ms - 6 * day
        clock.now += 2 * 86400  # the week is up for the six-day-old message too
        assert await store.prune_windows(7 * 86400) == 1
        assert await store.last_customer_message("week") is None
        assert await store.last_customer_message("new") == now_ms - 1000

    backend.run(body)


# -- the intake log ------------------------------------------------------------------------


def test_an_empty_intake_log_reads_nothing_and_has_no_backlog(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        assert await store.read_intake(10) == IntakeBatch(0, [])
        assert await store.intake_backlog() == IntakeBacklog(0, None)

    backend.run(body)


def test_appended_webhooks_are_read_oldest_first_with_their_waiting_time(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        first = await store.append_intake([b"w1", b"w2"])
        clock.now += 5
        # Appends made at once share a commit; each still gets its own place, in order.
        later = await asyncio.gather(*(store.append_intake([f"w{i}".encode()]) for i in (3, 4)))
        ids = first + [i for ids in later for i in ids]
        assert ids == sorted(ids)
        assert len(set(ids)) == 4
        batch = await store.read_intake(3)
        assert [e.body for e in batch.entries] == [b"w1", b"w2", b"w3"]
        assert [e.id for e in batch.entries] == ids[:3]
        clock.now += 10
        assert await store.intake_backlog() == IntakeBacklog(4, 15.0)

    backend.run(body)


def test_consuming_moves_the_position_and_enqueues_the_events(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        await store.append_intake([b"raw1", b"raw2", b"raw3"])
        await store.enqueue(Q, [job("a", "a-seen", 5)], {"a": 9_000})
        batch = await store.read_intake(2)
        result = await store.consume_intake(
            batch.position,
            batch.entries[-1].id,
            Q,
            [job("a", "a3", 30), job("a", "a-seen", 5), job("b", "b1", 1), job("a", "a2", 20)],
            {"a": 7_000, "b": 4_000},
        )
        assert (result.accepted, result.duplicates) == (3, 1)
        # Only the third webhook is left, after the new position.
        after = await store.read_intake(10)
        assert after.position == batch.entries[-1].id
        assert [e.body for e in after.entries] == [b"raw3"]
        assert (await store.intake_backlog()).entries == 1
        # Customer message times: the later one wins, an older one never rewinds.
        assert await store.last_customer_message("a") == 9_000
        assert await store.last_customer_message("b") == 4_000
        seen: list[str] = []
        for _round in range(6):
            for j in await store.claim(Q, 10, 30):
                seen.append(j.dedupe_key)
                await store.complete(j)
        assert [d for d in seen if d.startswith("a")] == ["a-seen", "a2", "a3"]
        assert sorted(seen) == ["a-seen", "a2", "a3", "b1"]

    backend.run(body)


def test_a_second_splitter_consuming_the_same_entries_is_refused_and_changes_nothing(
    backend: Backend,
) -> None:
    async def body(store: Store, _: Clock) -> None:
        other = backend.store(Clock())  # another replica (or a stalled splitter)
        await other.open()
        try:
            await store.append_intake([b"raw1", b"raw2"])
            mine = await store.read_intake(1)
            theirs = await other.read_intake(1)
            assert mine == theirs
            through = mine.entries[-1].id
            await store.consume_intake(mine.position, through, Q, [job("a", "a1", 1)])
            with pytest.raises(IntakeMoved):
                await other.consume_intake(
                    theirs.position, through, Q, [job("a", "a1", 1), job("z", "z1", 1)]
                )
            # Nothing of the refused step was stored: z1 is new to the queue's dedupe.
            assert await store.depth(Q) == 1
            assert (await store.enqueue(Q, [job("z", "z1", 1)])).accepted == 1
            # The refused one reads again and goes on after the first one's entries.
            again = await other.read_intake(10)
            assert (again.position, [e.body for e in again.entries]) == (through, [b"raw2"])
            # A position from before an older consume is refused as well.
            with pytest.raises(IntakeMoved):
                await other.consume_intake(0, again.entries[-1].id, Q, [])
            assert (await store.intake_backlog()).entries == 1
        finally:
            await other.close()

    backend.run(body)


def test_an_unreadable_entry_is_dead_lettered_with_its_reason_and_leaves_the_log(
    backend: Backend,
) -> None:
    async def body(store: Store, _: Clock) -> None:
        await store.append_intake([b"\xff{not json", b"{}"])
        batch = await store.read_intake(10)
        bad = batch.entries[0]
        result = await store.consume_intake(
            batch.position, batch.entries[-1].id, Q, [], unreadable=[(bad, "JSONDecodeError")]
        )
        assert (result.accepted, result.duplicates) == (0, 0)
        assert (await store.read_intake(10)).entries == []
        assert await store.intake_backlog() == IntakeBacklog(0, None)
        (letter,) = await store.dead_letters(INTAKE)
        assert (letter.payload, letter.dedupe_key) == (bad.body, str(bad.id))
        assert letter.reason == "unreadable webhook: JSONDecodeError"
        assert await store.dead_letter_count(INTAKE) == 1
        assert await store.depth(Q) == 0

    backend.run(body)


def test_intake_entries_outlive_the_store_that_appended_them(backend: Backend) -> None:
    async def append(store: Store, _: Clock) -> None:
        await store.append_intake([b"raw1", b"raw2"])
        batch = await store.read_intake(1)
        await store.consume_intake(batch.position, batch.entries[0].id, Q, [])

    async def reopened(store: Store, _: Clock) -> None:
        batch = await store.read_intake(10)
        assert [e.body for e in batch.entries] == [b"raw2"]
        # New webhooks land after the position, whatever was trimmed meanwhile.
        (new,) = await store.append_intake([b"raw3"])
        assert new > batch.entries[0].id > batch.position

    backend.run(append)
    backend.run(reopened)


def test_intake_jobs_an_older_version_left_move_into_the_log_at_open(
    backend: Backend,
) -> None:
    async def older_version(store: Store, _: Clock) -> None:
        # What an older relay stored per webhook: a job of an "intake" queue.
        await store.enqueue(INTAKE, [job("s1", "s1", 1), job("s2", "s2", 2)])
        taken = await store.claim(INTAKE, 1, 30)  # one was in a splitter's hands
        assert len(taken) == 1

    async def upgraded(store: Store, _: Clock) -> None:
        batch = await store.read_intake(10)
        assert [e.body for e in batch.entries] == [b'{"d":"s1"}', b'{"d":"s2"}']
        assert await store.depth(INTAKE) == 0
        assert await store.prune_dedupe(INTAKE, -1) == 0  # their dedupe rows went too

    backend.run(older_version)
    backend.run(upgraded)
    backend.run(upgraded)  # moved once


def test_a_dead_letter_is_found_by_its_id_with_its_order_time(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 7)])
        (a1,) = await store.claim(Q, 10, 30)
        await store.dead_letter(a1, "HTTP 400")
        (letter,) = await store.dead_letters(Q)
        found = await store.find_dead_letter(Q, letter.id)
        assert found == letter
        assert (found.key, found.dedupe_key, found.order_ts) == ("a", "a1", 7)
        assert found.payload == b'{"d":"a1"}'
        assert await store.find_dead_letter(Q, letter.id + 1000) is None
        assert await store.find_dead_letter("outbound", letter.id) is None

    backend.run(body)


def test_a_replayed_dead_letter_is_a_fresh_job_in_its_customers_order(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1)])
        (a1,) = await store.claim(Q, 10, 30)
        await store.retry(a1, 0, "HTTP 503")
        (a1,) = await store.claim(Q, 10, 30)
        await store.dead_letter(a1, "HTTP 400")
        # The customer wrote again meanwhile; that message waits behind a leased one.
        await store.enqueue(Q, [job("a", "a2", 2), job("a", "a3", 3)])
        (a2,) = await store.claim(Q, 10, 30)
        (letter,) = await store.dead_letters(Q)
        clock.now += 10
        assert await store.replay_dead_letter(Q, letter.id) is True
        assert await store.dead_letters(Q) == []
        assert await store.dead_letter_count(Q) == 0
        assert await store.depth(Q) == 3
        assert await store.claim(Q, 10, 30) == []  # a2 still holds the customer
        await store.complete(a2)
        # The replay goes before a3: its order time is the original one.
        (again,) = await store.claim(Q, 10, 30)
        assert (again.dedupe_key, again.attempts, again.payload) == ("a1", 0, b'{"d":"a1"}')
        assert again.enqueued_at == clock.now
        await store.complete(again)
        (a3,) = await store.claim(Q, 10, 30)
        assert a3.dedupe_key == "a3"
        # Replayed once: a second replay of the same id finds nothing.
        assert await store.replay_dead_letter(Q, letter.id) is False
        # Its dedupe key is still remembered: a retry of the webhook is still a duplicate.
        assert (await store.enqueue(Q, [job("a", "a1", 1)])).duplicates == 1

    backend.run(body)


def test_an_intake_dead_letter_is_not_replayed_as_a_job(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        await store.append_intake([b"\xff{not json"])
        batch = await store.read_intake(10)
        bad = batch.entries[0]
        await store.consume_intake(batch.position, bad.id, Q, [], unreadable=[(bad, "bad")])
        (letter,) = await store.dead_letters(INTAKE)
        assert await store.replay_dead_letter(INTAKE, letter.id) is False
        assert await store.dead_letter_count(INTAKE) == 1
        assert await store.depth(INTAKE) == 0

    backend.run(body)


def test_dead_letters_are_purged_by_id_by_age_or_all(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        for n in range(4):
            await store.enqueue(Q, [job(f"k{n}", f"d{n}", n)])
            (claimed,) = await store.claim(Q, 10, 30)
            await store.dead_letter(claimed, "HTTP 400")
            clock.now += 3600
        await store.enqueue("outbound", [job("o", "o1", 1)])
        (out,) = await store.claim("outbound", 10, 30)
        await store.dead_letter(out, "HTTP 400")
        ids = {d.dedupe_key: d.id for d in await store.dead_letters(Q)}
        assert await store.purge_dead_letters(Q, ids=[ids["d3"], 99_999]) == 1
        assert await store.purge_dead_letters(Q, ids=[ids["d3"]]) == 0
        # d0 failed 4 h ago, d1 3 h ago, d2 2 h ago: older than 150 minutes are d0 and d1.
        assert await store.purge_dead_letters(Q, older_than_seconds=150 * 60) == 2
        assert [d.dedupe_key for d in await store.dead_letters(Q)] == ["d2"]
        # An id together with an age: only if it is that old.
        assert await store.purge_dead_letters(Q, ids=[ids["d2"]], older_than_seconds=86400) == 0
        assert await store.purge_dead_letters(Q) == 1
        assert await store.dead_letter_count(Q) == 0
        assert await store.dead_letter_count("outbound") == 1  # other queues untouched

    backend.run(body)


# -- privacy: erasure and dead letters' payloads ---------------------------------------
CUSTOMER = "17841400000000001"
OTHER = "17841499999999999"
SECRET_TEXT = "my address is 12 Quiet Lane"


def _event(customer: str, mid: str, text: str) -> bytes:
    return f'{{"sender":"{customer}","mid":"{mid}","text":"{text}","dedupe":"{mid}"}}'.encode()


def _webhook(customer: str, text: str) -> bytes:
    return (
        '{"object":"instagram","entry":[{"messaging":[{"sender":{"id":"'
        + customer
        + '"},"message":{"text":"'
        + text
        + '"}}]}]}'
    ).encode()


async def _dump_sqlite(path: Path) -> list[str]:
    """Every row of every table of the main file and the intake log, as text."""
    import sqlite3

    from igbridge.relay.store.sqlite_intake import log_path

    out: list[str] = []
    for file in (str(path), log_path(str(path))):
        db = sqlite3.connect(file)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 (our names)
                    out.append(f"{table}: " + " | ".join(_as_text(v) for v in row))
        finally:
            db.close()
    return out


async def _dump_redis(url: str, prefix: str) -> list[str]:
    """Every key of the prefix with its whole value, whatever its type, as text."""
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    out: list[str] = []
    try:
        async for raw in r.scan_iter(match="{" + prefix + "}*", count=500):
            key = raw.decode()
            kind = _as_text(await r.type(key))
            if kind == "string":
                value: object = await r.get(key)
            elif kind == "hash":
                value = await r.hgetall(key)
            elif kind == "zset":
                value = await r.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await r.smembers(key)
            elif kind == "stream":
                value = await r.xrange(key)
            else:
                value = await r.lrange(key, 0, -1)
            out.append(f"{key}: {_as_text(value)}")
    finally:
        await r.aclose()
    return out


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return " ".join(f"{_as_text(k)}={_as_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_as_text(v) for v in value)
    return str(value)


async def _dump(backend: Backend, tmp_path: Path) -> list[str]:
    if backend.kind.startswith("sqlite"):
        return await _dump_sqlite(tmp_path / "s.db")
    return await _dump_redis(backend.redis_url(), backend.prefix)


async def _store_everything_about(store: Store, customer: str, text: str) -> None:
    """What the relay keeps about a customer: jobs both ways (one dead-lettered, one in
    flight), their window, a dedupe key with their id, records keyed by them and one
    mentioning them, an intake entry not yet split and an unreadable one."""
    inbound = [
        NewJob(
            customer, f"mid-{customer[-3:]}-1", 1, _event(customer, f"mid-{customer[-3:]}-1", text)
        ),
        NewJob(
            customer, f"mid-{customer[-3:]}-2", 2, _event(customer, f"mid-{customer[-3:]}-2", text)
        ),
        NewJob(customer, f"postback:{customer}:3", 3, _event(customer, "p3", text)),
    ]
    await store.enqueue(Q, inbound, {customer: 1_000})
    await store.enqueue(
        "outbound", [NewJob(customer, f"g-{customer[-3:]}", 4, _event(customer, "g", text))]
    )
    (first,) = await store.claim(Q, 1, 30)
    await store.dead_letter(first, f"genesys refused the message of {customer}")
    await store.claim(Q, 1, 30)  # the next one is in flight, leased
    await store.put_record("conversation", customer, b'{"waiting_since_ms":1}', 3600, 5.0)
    await store.put_record("loop_state", customer, f'{{"texts":["{text}"]}}'.encode())
    await store.put_record(
        "outbound_progress", f"g-{customer[-3:]}", f'{{"to":"{customer}"}}'.encode()
    )
    batch = await store.read_intake(10)
    entry_ids = await store.append_intake(
        [_webhook(customer, text), b"not json " + customer.encode()]
    )
    from igbridge.relay.store.base import IntakeEntry

    unreadable = IntakeEntry(entry_ids[1], b"not json " + customer.encode(), 0.0)
    await store.consume_intake(batch.position, entry_ids[1], Q, [], None, [(unreadable, "bad")])
    await store.append_intake([_webhook(customer, text)])  # not split yet


def test_forget_customer_leaves_no_trace_of_them_and_keeps_everyone_else(
    backend: Backend, tmp_path: Path
) -> None:
    async def body(store: Store, _: Clock) -> None:
        # The other customer first: the customer's last webhook is then still unsplit.
        await _store_everything_about(store, OTHER, "other text")
        await _store_everything_about(store, CUSTOMER, SECRET_TEXT)
        before = "\n".join(await _dump(backend, tmp_path))
        assert CUSTOMER in before  # the scan does see them
        assert SECRET_TEXT in before

        removed = await store.forget_customer(CUSTOMER)

        assert removed["jobs"] == 3  # one waiting and one in flight inbound, one outbound
        assert removed["dead_letters"] == 2  # their job's, and the unreadable webhook's
        assert removed["windows"] == 1
        assert removed["records"] == 3
        assert removed["dedupe"] == 1  # only postback:<id>:3 contains the id
        assert removed["intake"] >= 1
        for line in await _dump(backend, tmp_path):
            assert CUSTOMER not in line, line
            assert SECRET_TEXT not in line, line
        # The other customer is untouched: their jobs, window, dead letter and records.
        assert await store.last_customer_message(OTHER) == 1_000
        assert await store.get_record("conversation", OTHER) is not None
        assert [d.key for d in await store.dead_letters(Q)] == [OTHER]
        assert await store.depth("outbound") == 1
        # Nothing about them is left to deliver, and erasing again finds nothing.
        again = await store.forget_customer(CUSTOMER)
        assert sum(again.values()) == 0

    backend.run(body)


def test_dead_letter_payloads_are_blanked_after_their_period_and_the_rest_kept(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "old", 1), job("b", "new", 2)])
        old, new = await store.claim(Q, 2, 30)
        await store.dead_letter(old, "refused")
        clock.now += 3 * 86400
        await store.dead_letter(new, "refused too")
        clock.now += 86400

        assert await store.blank_dead_letter_payloads(Q, 2 * 86400) == 1
        assert await store.blank_dead_letter_payloads(Q, 2 * 86400) == 0  # done once
        letters = {d.dedupe_key: d for d in await store.dead_letters(Q)}
        assert letters["old"].payload == b""
        assert (letters["old"].key, letters["old"].reason) == ("a", "refused")
        assert letters["new"].payload == b'{"d":"new"}'

    backend.run(body)


def test_a_dead_letter_whose_text_was_blanked_is_not_replayed(backend: Backend) -> None:
    async def body(store: Store, clock: Clock) -> None:
        await store.enqueue(Q, [job("a", "a1", 1)])
        (a1,) = await store.claim(Q, 10, 30)
        await store.dead_letter(a1, "HTTP 400")
        clock.now += 8 * 86400
        assert await store.blank_dead_letter_payloads(Q, 7 * 86400) == 1
        (letter,) = await store.dead_letters(Q)
        assert await store.replay_dead_letter(Q, letter.id) is False
        assert await store.depth(Q) == 0
        assert await store.dead_letter_count(Q) == 1  # still there to look at, or purge

    backend.run(body)


def test_a_delivered_jobs_text_is_not_kept_and_an_erased_webhook_splits_into_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    async def body(store: Store, _: Clock) -> None:
        await store.enqueue(Q, [NewJob(CUSTOMER, "m1", 1, _event(CUSTOMER, "m1", SECRET_TEXT))])
        (claimed,) = await store.claim(Q, 1, 30)
        await store.complete(claimed)
        assert not any(SECRET_TEXT in line for line in await _dump(backend, tmp_path))

    backend.run(body)


def test_an_erased_intake_entry_is_a_webhook_without_events() -> None:
    from igbridge.relay.meta.events import parse_webhook
    from igbridge.relay.store.sqlite_intake import ERASED_BODY

    parsed = parse_webhook(json.loads(ERASED_BODY), "17841400000000001")
    assert (parsed.events, parsed.skipped) == ([], [])
