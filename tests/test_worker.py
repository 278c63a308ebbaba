"""The queue worker over a real SQLite store: a handler that raises is retried a bounded
number of times, then its job is dead-lettered and the customer's later messages flow on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

from igbridge.relay.delivery.retry import HANDLER_ERROR_ATTEMPTS, HANDLER_ERROR_RETRY_SECONDS
from igbridge.relay.delivery.worker import Delivered, Outcome, QueueWorker
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
            return attempts.count("poison") == n

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
