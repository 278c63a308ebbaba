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
from igbridge.relay.store.base import EnqueueResult, Job, NewJob, StoreUnavailable
from igbridge.relay.store.sqlite import SQLiteStore

from .fixtures_loader import ACCOUNT_ID, fixture_names, load_fixture

ROUTING = Routing(ACCOUNT_ID)


def raw_job(payload: bytes, job_id: int = 1) -> Job:
    return Job(
        id=job_id,
        queue="intake",
        key=f"raw-{job_id}",
        dedupe_key=f"raw-{job_id}",
        order_ts=0,
        payload=payload,
        attempts=0,
        enqueued_at=0.0,
    )


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


class RefusesOneTransfer:
    """A real SQLite store whose first transfer fails as an outage would (the relay's
    own store, not a stand-in for Meta or Genesys)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.refused = False
        self.transferred: list[list[str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def transfer(
        self,
        source: str,
        taken: Sequence[Job],
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
        if not self.refused:
            self.refused = True
            raise StoreUnavailable("store away for a moment")
        self.transferred.append([j.dedupe_key for j in jobs])
        return await self.store.transfer(source, taken, queue, jobs, customer_messages)


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
        flaky = RefusesOneTransfer(store)
        splitter = IntakeSplitter(
            flaky,  # type: ignore[arg-type]
            ROUTING,
            RelayMetrics(),
            lambda: None,
            lease_seconds=60,  # longer than the test: a re-claim would not get it back
            idle_poll=0.05,
        )
        await store.enqueue("intake", [NewJob("r1", "r1", 1, dm("mid.1", "first", 1_000))])
        task = asyncio.create_task(splitter.run())
        try:
            for _ in range(100):  # bounded: 5 s
                if flaky.refused:
                    break
                await asyncio.sleep(0.05)
            # The customer's next webhook arrives while the first waits to be split.
            await store.enqueue("intake", [NewJob("r2", "r2", 2, dm("mid.2", "second", 2_000))])
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
