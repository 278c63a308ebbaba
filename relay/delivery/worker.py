"""A worker that drains one store queue: at most one job per customer in flight,
customers in parallel, each job ending delivered, retried later, or dead-lettered.

The delivery (inbound or outbound) decides what happened to a job (an ``Outcome``); the
worker owns the store bookkeeping and the metrics, so every queue behaves alike.

Settling and claiming share a store transaction: a job whose delivery is over hands its
outcome to the claim loop, which asks the store for every outcome waiting and then for new
jobs in one go (both backends run operations asked for together in one transaction or
round trip, in order), so a busy worker spends one store write per round of finished jobs,
not a settle and a claim per job.

A delivery that must tell someone when it gives up (an agent's reply: a ``Failed``
receipt) has a ``dead_lettered`` method (``ReportsDeadLetters``); the worker calls it,
bounded in time, before recording any dead letter, whoever decided on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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

# A report of a dead letter gets this long; a stuck one must not hold the job's slot.
DEAD_LETTER_REPORT_SECONDS = 30.0


@runtime_checkable
class ReportsDeadLetters(Protocol):
    """A delivery that tells the far side when one of its jobs is dead-lettered."""

    async def __call__(self, job: Job) -> Outcome: ...

    async def dead_lettered(self, job: Job, outcome: DeadLetter) -> None:
        """Once, before the dead letter is recorded; handles its own failures."""


@dataclass(frozen=True, slots=True)
class _Settle:
    """An outcome for the claim loop to record, with the claim that follows it."""

    job: Job
    outcome: Outcome
    done: asyncio.Future[bool]  # False: not recorded (the claim loop ended first)


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
        self._report = deliver.dead_lettered if isinstance(deliver, ReportsDeadLetters) else None
        # Bound once: labels() is a lookup (and, across processes, a file write check) per call.
        self._delivered = metrics.delivered.labels(queue)
        self._latency = metrics.delivery_latency.labels(queue)
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._jobs: dict[int, Job] = {}
        # Jobs whose delivery is under way: the slots ``concurrency`` bounds. A job being
        # settled has left them, so the claim beside its settlement may refill its slot.
        self._delivering = 0
        self._settles: list[_Settle] = []
        self._claiming = False  # the claim loop is running: outcomes go through it
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
        self._claiming = True
        try:
            # While stopping, only the outcomes of the jobs still running are recorded.
            while not self._stopping or self._inflight:
                # Cleared first, so an outcome or new work arriving meanwhile wakes us again.
                self._wake.clear()
                settles, self._settles = self._settles, []
                free = 0 if self._stopping else self._concurrency - self._delivering
                if settles or free > 0:
                    await self._settle_and_claim(settles, free)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll)
        finally:
            self._claiming = False
            for item in self._settles:  # not recorded: their jobs record them themselves
                if not item.done.done():
                    item.done.set_result(False)
            self._settles = []

    async def _settle_and_claim(self, settles: list[_Settle], free: int) -> None:
        """The outcomes, then a claim for the free slots: asked for together, so the store
        runs them in one transaction, the settlements first (a customer whose job was just
        completed has their next job claimed in the same go)."""
        ops: list[Coroutine[Any, Any, Any]] = [
            self._store_settle(s.job, s.outcome) for s in settles
        ]
        if free > 0:
            ops.append(self._store.claim(self._queue, free, self._lease))
        try:
            results = await asyncio.gather(*ops, return_exceptions=True)
        except asyncio.CancelledError:
            for item in settles:  # their jobs record them themselves
                if not item.done.done():
                    item.done.set_result(False)
            raise
        for item, result in zip(settles, results, strict=False):
            if item.done.done():
                continue
            if isinstance(result, BaseException):
                item.done.set_exception(result)
            else:
                item.done.set_result(True)
        if free <= 0:
            return
        claimed = results[-1]
        if isinstance(claimed, StoreUnavailable):
            log.warning("store unavailable while claiming", extra={"error": str(claimed)})
            await asyncio.sleep(1.0)
            return
        if isinstance(claimed, BaseException):
            raise claimed
        for job in claimed:
            if job.id in self._inflight:  # our own lease outlived by a slow job
                continue
            self._delivering += 1
            task = asyncio.create_task(self._process(job), name=f"{self._queue}:{job.id}")
            self._inflight[job.id] = task
            self._jobs[job.id] = job
            task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(job_id, None)
        self._jobs.pop(job_id, None)
        if self._stopping:
            self._wake.set()  # the claim loop ends with the last job

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
            self._delivering -= 1
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
        if isinstance(outcome, DeadLetter):
            try:
                await self._report_dead_letter(job, outcome)
            except asyncio.CancelledError:
                self._delivering -= 1
                await asyncio.shield(self._settle(job, outcome))  # decided: recorded anyway
                raise
        self._delivering -= 1
        await self._settle(job, outcome, together=self._claiming)

    async def _report_dead_letter(self, job: Job, outcome: DeadLetter) -> None:
        # Before the dead letter is recorded: a crash in between reports it twice (the
        # same final receipt again) rather than never.
        if self._report is None:
            return
        try:
            async with asyncio.timeout(DEAD_LETTER_REPORT_SECONDS):
                await self._report(job, outcome)
        except Exception:  # the dead letter is recorded all the same
            log.exception(
                "reporting a dead letter failed", extra={"queue": self._queue, "job": job.id}
            )

    async def _after_delivery(self, job: Job, then: Callable[[], Awaitable[None]]) -> None:
        try:
            await then()
        except StoreUnavailable as exc:
            log.warning("bookkeeping after delivery skipped", extra={"error": str(exc)})
        except Exception:
            log.exception("bookkeeping after delivery failed", extra={"job": job.id})

    async def _settle(self, job: Job, outcome: Outcome, *, together: bool = False) -> None:
        """Record the outcome (``together``: by the claim loop, beside its next claim);
        while the store is briefly away, keep trying for as long as the lease protects the
        job: a delivered job recorded late is not delivered twice."""
        delay = 0.1
        deadline = time.monotonic() + self._lease
        while True:
            try:
                if together:
                    together = False  # a failed attempt is tried again here, on its own
                    if not await self._through_claim_loop(job, outcome):
                        continue
                else:
                    await self._store_settle(job, outcome)
                    self._wake.set()  # its slot, and maybe its customer, are free again
                break
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
        self._jobs.pop(job.id, None)  # settled: its lease is no longer ours to renew
        await self._recorded(job, outcome)

    async def _through_claim_loop(self, job: Job, outcome: Outcome) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._settles.append(_Settle(job, outcome, done))
        self._wake.set()
        # Shielded: a job cancelled now still has its outcome recorded by the loop.
        return await asyncio.shield(done)

    def _store_settle(self, job: Job, outcome: Outcome) -> Coroutine[Any, Any, None]:
        match outcome:
            case Delivered() | Ignored():
                return self._store.complete(job)
            case Retry(delay, _, detail):
                return self._store.retry(job, delay, detail)
            case DeadLetter(_, detail):
                return self._store.dead_letter(job, detail)

    async def _recorded(self, job: Job, outcome: Outcome) -> None:
        """Metrics, log lines and the bookkeeping that follow a recorded outcome."""
        q = self._queue
        match outcome:
            case Delivered(then):
                self._delivered.inc()
                self._latency.observe(max(0.0, time.time() - job.enqueued_at))
                if then is not None:
                    await self._after_delivery(job, then)
            case Ignored(reason):
                self._metrics.not_forwarded.labels(reason).inc()
            case Retry(delay, reason, detail):
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
