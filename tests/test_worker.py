"""The queue worker over a real SQLite store: a handler that raises is retried a bounded
number of times, then its job is dead-lettered and the customer's later messages flow on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

from igbridge.relay.delivery.retry import HANDLER_ERROR_ATTEMPTS, HANDLER_ERROR_RETRY_SECONDS
from igbridge.relay.delivery.worker import DeadLetter, Delivered, Outcome, QueueWorker
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.store.base import Job, NewJob
from igbridge.relay.store.sqlite import SQLiteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _until(check: Callable[[], bool], *, tries: int = 1000) -> None:
    for _ in range(tries):  # bounded: 10 s at most
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker did not get there in 10 s")


def test_a_handler_that_keeps_raising_is_dead_lettered_and_the_customer_moves_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        store = SQLiteStore(str(tmp_path / "w.db"), clock=clock)
        await store.open()
        metrics = RelayMetrics()
        attempts: list[str] = []
        delivered: list[str] = []

        async def deliver(job: Job) -> Outcome:
            attempts.append(job.dedupe_key)
            if job.dedupe_key == "poison":
                raise ValueError("attachments is not a list")
            delivered.append(job.dedupe_key)
            return Delivered()

        def tried_times(n: int) -> bool:
            # Tried, and the retry recorded: its due time is taken from the clock then.
            retries = metrics.registry.get_sample_value(
                "igbridge_delivery_retries_total", {"queue": "inbound", "reason": "handler_error"}
            )
            return attempts.count("poison") == n and retries == n

        worker = QueueWorker(store, "inbound", deliver, metrics, idle_poll=0.02)
        await store.enqueue(
            "inbound", [NewJob("c1", "poison", 1, b"{}"), NewJob("c1", "after", 2, b"{}")]
        )
        task = asyncio.create_task(worker.run())
        try:
            for tried in range(1, HANDLER_ERROR_ATTEMPTS):
                await _until(functools.partial(tried_times, tried))
                assert delivered == []  # the customer's next message waits its turn
                clock.now += HANDLER_ERROR_RETRY_SECONDS + 1
            await _until(lambda: delivered == ["after"])
        finally:
            await worker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert attempts.count("poison") == HANDLER_ERROR_ATTEMPTS
        (dead,) = await store.dead_letters("inbound")
        assert dead.dedupe_key == "poison"
        assert "ValueError: attachments is not a list" in dead.reason
        errors = metrics.registry.get_sample_value(
            "igbridge_handler_errors_total", {"queue": "inbound"}
        )
        assert errors == HANDLER_ERROR_ATTEMPTS
        await store.close()

    asyncio.run(scenario())


def test_each_finished_job_is_settled_in_the_same_transaction_as_the_next_claim(
    tmp_path: Path,
) -> None:
    """A worker records each outcome together with its next claim: every customer's
    messages still go in order, and the store commits once per job, not twice."""

    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "w.db"))
        await store.open()
        customers, per_customer = 8, 6
        await store.enqueue(
            "inbound",
            [
                NewJob(f"c{c}", f"c{c}-m{m}", m, b"{}")
                for m in range(per_customer)
                for c in range(customers)
            ],
        )
        delivered: dict[str, list[str]] = {}

        async def deliver(job: Job) -> Outcome:
            await asyncio.sleep(0)  # the far side answering
            delivered.setdefault(job.key, []).append(job.dedupe_key)
            return Delivered()

        # One job at a time: each settlement would otherwise be a commit of its own, and
        # the claim after it another.
        worker = QueueWorker(store, "inbound", deliver, RelayMetrics(), concurrency=1)
        commits_before = store.write_commits
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: sum(map(len, delivered.values())) == customers * per_customer)
            await _until(lambda: worker.inflight == 0)
        finally:
            await worker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for c in range(customers):
            assert delivered[f"c{c}"] == [f"c{c}-m{m}" for m in range(per_customer)]
        assert await store.depth("inbound") == 0
        jobs = customers * per_customer
        assert store.write_commits - commits_before <= jobs + 1  # claims ride with settles
        await store.close()

    asyncio.run(scenario())


class Reporting:
    """A delivery that gives up on "bad" (its own verdict) and raises on "bug"; its report
    of a dead letter fails once, to show that the dead letter is recorded all the same."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, str]] = []

    async def __call__(self, job: Job) -> Outcome:
        if job.dedupe_key == "bad":
            return DeadLetter("undecodable", "cannot be read")
        raise RuntimeError("a bug")

    async def dead_lettered(self, job: Job, outcome: DeadLetter) -> None:
        self.reported.append((job.dedupe_key, outcome.reason))
        if len(self.reported) == 1:
            raise ConnectionError("far side away")


def test_every_dead_letter_is_reported_once_before_it_is_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        store = SQLiteStore(str(tmp_path / "w.db"), clock=clock)
        await store.open()
        deliver = Reporting()
        worker = QueueWorker(store, "outbound", deliver, RelayMetrics(), idle_poll=0.02)
        await store.enqueue(
            "outbound", [NewJob("c1", "bad", 1, b"{}"), NewJob("c2", "bug", 1, b"{}")]
        )
        task = asyncio.create_task(worker.run())
        try:
            for _ in range(200):  # bounded: 10 s; each step makes due the retries recorded
                if len(deliver.reported) == 2:
                    break
                await asyncio.sleep(0.05)
                clock.now += HANDLER_ERROR_RETRY_SECONDS + 1
            assert len(deliver.reported) == 2
            await _until(lambda: worker.inflight == 0)
        finally:
            await worker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sorted(deliver.reported) == [("bad", "undecodable"), ("bug", "handler_error")]
        dead = await store.dead_letters("outbound")
        assert sorted(d.dedupe_key for d in dead) == ["bad", "bug"]
        await store.close()

    asyncio.run(scenario())
