"""A worker that drains one store queue: at most one job per customer in flight,
customers in parallel, each job ending delivered, retried later, or dead-lettered.

The delivery (inbound or outbound) decides what happened to a job (an ``Outcome``); the
worker owns the store bookkeeping and the metrics, so every queue behaves alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..metrics import RelayMetrics
from ..store.base import Job, Store, StoreUnavailable
from .retry import HANDLER_ERROR_ATTEMPTS, HANDLER_ERROR_RETRY_SECONDS, STORE_RETRY_SECONDS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivered:
    # Bookkeeping to run once the job is marked done: kept out of the gap between the
    # far side accepting and the store completing, where a crash means a redelivery.
    then: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str  # deliberately not sent (e.g. an echo); the job is done


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    reason: str  # low-cardinality metric label: "429", "5xx", "timeout", "auth", ...
    detail: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str  # metric label
    detail: str  # kept with the dead letter: what an operator needs to fix it


Outcome = Delivered | Ignored | Retry | DeadLetter
Deliver = Callable[[Job], Awaitable[Outcome]]


class QueueWorker:
    def __init__(
        self,
        store: Store,
        queue: str,
        deliver: Deliver,
        metrics: RelayMetrics,
        *,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        job_timeout: float = 60.0,
        idle_poll: float = 0.5,
    ) -> None:
        self._store = store
        self._queue = queue
        self._deliver = deliver
        self._metrics = metrics
        self._concurrency = concurrency
        self._lease = lease_seconds
        # The lease is renewed while the job runs, so the timeout may exceed it.
        self._job_timeout = job_timeout
        self._idle_poll = idle_poll
        # Bound once: labels() is a lookup (and, across processes, a file write check) per call.
        self._delivered = metrics.delivered.labels(queue)
        self._latency = metrics.delivery_latency.labels(queue)
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._jobs: dict[int, Job] = {}
        self._stopping = False

    def wake(self) -> None:
        """New work was stored: look now rather than at the next poll."""
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        renewer = asyncio.create_task(self._renew_leases(), name=f"{self._queue}:leases")
        try:
            await self._claim_loop()
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _renew_leases(self) -> None:
        """Heartbeat: keep the leases of in-flight jobs, so only a dead replica loses them."""
        while True:
            await asyncio.sleep(self._lease / 3)
            jobs = list(self._jobs.values())
            if not jobs:
                continue
            try:
                lost = await self._store.renew(self._queue, jobs, self._lease)
            except StoreUnavailable as exc:
                log.warning("store unavailable while renewing leases", extra={"error": str(exc)})
                continue
            if lost:
                # Another claimer may now deliver them too; dedupe downstream absorbs it.
                log.warning("job leases lost", extra={"queue": self._queue, "jobs": lost})

    async def _claim_loop(self) -> None:
        while not self._stopping:
            # Cleared before claiming, so work stored during the claim still wakes us.
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            claimed: list[Job] = []
            if free > 0:
                try:
                    claimed = await self._store.claim(self._queue, free, self._lease)
                except StoreUnavailable as exc:
                    log.warning("store unavailable while claiming", extra={"error": str(exc)})
                    await asyncio.sleep(1.0)
                    continue
            for job in claimed:
                if job.id in self._inflight:  # our own lease outlived by a slow job
                    continue
                task = asyncio.create_task(self._process(job), name=f"{self._queue}:{job.id}")
                self._inflight[job.id] = task
                self._jobs[job.id] = job
                task.add_done_callback(functools.partial(self._done, job.id))
            if claimed and len(self._inflight) < self._concurrency:
                continue  # there may be more due work right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_poll)

    def _done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(job_id, None)
        self._jobs.pop(job_id, None)
        self._wake.set()  # a key may have been released: its next job is due

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, give in-flight jobs ``grace`` seconds, then release the rest."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _process(self, job: Job) -> None:
        try:
            async with asyncio.timeout(self._job_timeout):
                outcome = await self._deliver(job)
        except TimeoutError:
            outcome = Retry(5.0, "timeout", f"handling took over {self._job_timeout:.0f}s")
        except StoreUnavailable as exc:
            # The delivery's own bookkeeping hit a store outage: not a bug, try again soon.
            outcome = Retry(STORE_RETRY_SECONDS, "store", str(exc))
        except asyncio.CancelledError:
            # Shutdown: hand the job back now instead of waiting for its lease to expire.
            await asyncio.shield(self._settle(job, Retry(0.0, "shutdown", "relay stopping")))
            raise
        except Exception as exc:  # a bug must not wedge the customer's queue
            log.exception("job handler failed", extra={"queue": self._queue, "job": job.id})
            self._metrics.handler_errors.labels(self._queue).inc()
            detail = f"{type(exc).__name__}: {exc}"[:300]
            if job.attempts + 1 >= HANDLER_ERROR_ATTEMPTS:
                outcome = DeadLetter("handler_error", f"handler failed: {detail}")
            else:
                outcome = Retry(HANDLER_ERROR_RETRY_SECONDS, "handler_error", detail)
        await self._settle(job, outcome)

    async def _after_delivery(self, job: Job, then: Callable[[], Awaitable[None]]) -> None:
        try:
            await then()
        except StoreUnavailable as exc:
            log.warning("bookkeeping after delivery skipped", extra={"error": str(exc)})
        except Exception:
            log.exception("bookkeeping after delivery failed", extra={"job": job.id})

    async def _settle(self, job: Job, outcome: Outcome) -> None:
        """Record the outcome; while the store is briefly away, keep trying for as long as
        the lease protects the job: a delivered job recorded late is not delivered twice."""
        delay = 0.1
        deadline = time.monotonic() + self._lease
        while True:
            try:
                await self._record(job, outcome)
                return
            except StoreUnavailable as exc:
                if self._stopping or time.monotonic() + delay > deadline:
                    # The lease will expire and the job will be tried again: nothing is lost.
                    log.warning(
                        "store unavailable while settling a job; it will be tried again",
                        extra={"queue": self._queue, "job": job.id, "error": str(exc)},
                    )
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _record(self, job: Job, outcome: Outcome) -> None:
        q = self._queue
        match outcome:
            case Delivered(then):
                await self._store.complete(job)
                self._delivered.inc()
                self._latency.observe(max(0.0, time.time() - job.enqueued_at))
                if then is not None:
                    await self._after_delivery(job, then)
            case Ignored(reason):
                await self._store.complete(job)
                self._metrics.not_forwarded.labels(reason).inc()
            case Retry(delay, reason, detail):
                await self._store.retry(job, delay, detail)
                self._metrics.retries.labels(q, reason).inc()
                log.info(
                    "delivery will be retried",
                    extra={
                        "queue": q,
                        "job": job.id,
                        "key": job.key,
                        "reason": reason,
                        "detail": detail,
                        "delay": round(delay, 3),
                        "attempts": job.attempts + 1,
                    },
                )
            case DeadLetter(reason, detail):
                await self._store.dead_letter(job, detail)
                self._metrics.dead_lettered.labels(q, reason).inc()
                log.error(
                    "delivery failed permanently: dead-lettered",
                    extra={
                        "queue": q,
                        "job": job.id,
                        "key": job.key,
                        "dedupe_key": job.dedupe_key,
                        "reason": reason,
                        "detail": detail,
                    },
                )
