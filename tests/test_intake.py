"""The split of raw signed webhooks into inbound jobs (pure), from the named fixtures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from igbridge.relay.delivery.intake import IntakeSplitter, Routing, split
from igbridge.relay.meta.events import (
    FORWARDED_KINDS,
    EventKind,
    InstagramEvent,
    JustStored,
    parse_webhook,
)
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.records import INBOUND, INTAKE
from igbridge.relay.store.base import (
    EnqueueResult,
    IntakeEntry,
    NewJob,
    StoreUnavailable,
)
from igbridge.relay.store.sqlite import SQLiteStore

from .fixtures_loader import ACCOUNT_ID, fixture_names, load_fixture

# Replays are told apart by age (test_meta_events); the fixtures are of a fixed date.
ROUTING = Routing(ACCOUNT_ID, replay_horizon_ms=0)


def raw_job(payload: bytes, job_id: int = 1) -> IntakeEntry:
    return IntakeEntry(id=job_id, body=payload, received_at=0.0)


@pytest.mark.parametrize("name", fixture_names())
def test_each_fixture_splits_into_its_forwarded_events(name: str) -> None:
    raw = load_fixture(name)
    parsed = parse_webhook(json.loads(raw), ACCOUNT_ID)
    out = split([raw_job(raw)], ROUTING)
    forwarded = [e for e in parsed.events if e.kind in FORWARDED_KINDS]
    assert [(j.key, j.dedupe_key, j.order_ts) for j in out.jobs] == [
        (e.customer_id, e.dedupe_key, e.timestamp_ms) for e in forwarded
    ]
    # What a job carries reads back as the event it came from.
    assert [j.payload for j in out.jobs] == [e.to_json() for e in forwarded]
    assert [s.reason for s in out.skipped] == [s.reason for s in parsed.skipped]
    assert out.unreadable == []


def test_echoes_and_seen_receipts_are_events_but_not_jobs() -> None:
    out = split([raw_job(load_fixture("echo")), raw_job(load_fixture("seen"), 2)], ROUTING)
    assert {e.kind for e in out.events} == {EventKind.ECHO, EventKind.SEEN}
    assert out.jobs == []
    assert [j.id for j in out.readable] == [1, 2]


def test_a_batch_keeps_arrival_order_and_the_latest_window_time() -> None:
    first, second = load_fixture("text"), load_fixture("text_emoji")
    out = split([raw_job(first, 1), raw_job(second, 2)], ROUTING)
    expected = [
        e
        for raw in (first, second)
        for e in parse_webhook(json.loads(raw), ACCOUNT_ID).events
        if e.kind in FORWARDED_KINDS
    ]
    assert [j.dedupe_key for j in out.jobs] == [e.dedupe_key for e in expected]
    customer = expected[0].customer_id
    assert out.latest[customer] == max(
        e.timestamp_ms for e in expected if e.customer_id == customer
    )


def test_a_reaction_opens_the_window_but_a_comment_does_not() -> None:
    reaction = split([raw_job(load_fixture("reaction"))], ROUTING)
    comment = split([raw_job(load_fixture("comment"))], ROUTING)
    assert list(reaction.latest) == [reaction.events[0].customer_id]
    assert comment.latest == {}
    assert [j.key for j in comment.jobs] == [comment.events[0].customer_id]


def test_an_unreadable_webhook_is_set_aside_and_the_rest_of_the_batch_goes_on() -> None:
    good = load_fixture("text")
    out = split([raw_job(b"\xff{not json", 1), raw_job(good, 2)], ROUTING)
    ((bad, reason),) = out.unreadable
    assert bad.id == 1
    assert reason.startswith("UnicodeDecodeError") or reason.startswith("JSONDecodeError")
    assert [j.id for j in out.readable] == [2]
    assert len(out.jobs) == 1


def test_another_accounts_entries_are_skipped_at_the_split() -> None:
    out = split([raw_job(load_fixture("other_account"))], ROUTING)
    assert [j.dedupe_key for j in out.jobs] == ["mid.ours.1"]  # this account's own entry
    assert {s.reason for s in out.skipped} == {"other_account"}


@pytest.mark.parametrize("name", fixture_names())
def test_a_split_event_taken_by_the_worker_is_the_event_its_job_decodes_to(name: str) -> None:
    # The worker of the splitting process takes the parsed event instead of decoding the
    # job: it must be exactly what the decode gives (another replica decodes).
    out = split([raw_job(load_fixture(name))], ROUTING)
    memo = JustStored()
    for event in out.events:
        if event.kind in FORWARDED_KINDS:
            memo.add(event)
    for job in out.jobs:
        taken = memo.take(job.payload)
        decoded = InstagramEvent.from_json(job.payload)
        assert taken is not None
        assert (taken, taken.body) == (decoded, decoded.body)
        assert memo.take(job.payload) is None  # once: a retry decodes the job again


def test_the_just_stored_events_are_bounded_oldest_forgotten_first() -> None:
    out = split([raw_job(load_fixture("text"), 1), raw_job(load_fixture("text_emoji"), 2)], ROUTING)
    memo = JustStored(limit=1)
    for event in out.events:
        memo.add(event)
    assert len(memo) == 1
    first, second = out.jobs
    assert memo.take(first.payload) is None
    assert memo.take(second.payload) == out.events[1]


# -- the splitter against a real store ---------------------------------------------------------


class RefusesOneConsume:
    """A real SQLite store whose first consume fails as an outage would (the relay's
    own store, not a stand-in for Meta or Genesys)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.refused = False
        self.transferred: list[list[str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def consume_intake(
        self,
        position: int,
        through: int,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
        unreadable: Sequence[tuple[IntakeEntry, str]] = (),
    ) -> EnqueueResult:
        if not self.refused:
            self.refused = True
            raise StoreUnavailable("store away for a moment")
        self.transferred.append([j.dedupe_key for j in jobs])
        return await self.store.consume_intake(
            position, through, queue, jobs, customer_messages, unreadable
        )


def dm(mid: str, text: str, ts: int) -> bytes:
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": ACCOUNT_ID,
                "time": ts,
                "messaging": [
                    {
                        "sender": {"id": "6915500000000009"},
                        "recipient": {"id": ACCOUNT_ID},
                        "timestamp": ts,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def test_a_batch_the_store_refused_is_split_before_anything_newer(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        flaky = RefusesOneConsume(store)
        splitter = IntakeSplitter(
            flaky,  # type: ignore[arg-type]
            ROUTING,
            RelayMetrics(),
            lambda: None,
            idle_poll=0.05,
        )
        await store.append_intake([dm("mid.1", "first", 1_000)])
        task = asyncio.create_task(splitter.run())
        try:
            for _ in range(100):  # bounded: 5 s
                if flaky.refused:
                    break
                await asyncio.sleep(0.05)
            # The customer's next webhook arrives while the first waits to be split.
            await store.append_intake([dm("mid.2", "second", 2_000)])
            splitter.wake()
            for _ in range(100):
                if sum(len(t) for t in flaky.transferred) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            splitter.stop()
            await asyncio.gather(task, return_exceptions=True)
        assert [k for batch in flaky.transferred for k in batch] == ["mid.1", "mid.2"]
        await store.close()

    asyncio.run(scenario())


def test_two_splitters_on_one_log_store_each_webhook_once(tmp_path: Path) -> None:
    # As two replicas would, or a stalled splitter and the one that took over: both read
    # the same entries, and the position's compare-and-set lets one of them consume each.
    async def scenario() -> None:
        stores = [SQLiteStore(str(tmp_path / "s.db")) for _ in range(2)]
        for store in stores:
            await store.open()
        metrics = RelayMetrics()
        splitters = [
            IntakeSplitter(store, ROUTING, metrics, lambda: None, batch=4, idle_poll=0.01)
            for store in stores
        ]
        await stores[0].append_intake([dm(f"mid.{i}", f"m{i}", 1_000 + i) for i in range(40)])
        tasks = [asyncio.create_task(s.run()) for s in splitters]
        try:
            for _ in range(200):  # bounded: 10 s
                if (await stores[0].intake_backlog()).entries == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            for splitter in splitters:
                splitter.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert await stores[0].depth(INBOUND) == 40
        duplicates = metrics.registry.get_sample_value(
            "igbridge_duplicates_total", {"queue": INBOUND}
        )
        assert not duplicates  # no entry was split into the queue twice
        for store in stores:
            await store.close()

    asyncio.run(scenario())


def test_an_unreadable_webhook_is_dead_lettered_and_the_next_ones_are_split(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        splitter = IntakeSplitter(store, ROUTING, RelayMetrics(), lambda: None, idle_poll=0.05)
        await store.append_intake([b"{broken", dm("mid.1", "after", 1_000)])
        task = asyncio.create_task(splitter.run())
        try:
            for _ in range(100):  # bounded: 5 s
                if (await store.intake_backlog()).entries == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            splitter.stop()
            await asyncio.gather(task, return_exceptions=True)
        (letter,) = await store.dead_letters(INTAKE)
        assert letter.payload == b"{broken"
        assert letter.reason.startswith("unreadable webhook: JSONDecodeError")
        assert [j.dedupe_key for j in await store.claim(INBOUND, 10, 30)] == ["mid.1"]
        await store.close()

    asyncio.run(scenario())
