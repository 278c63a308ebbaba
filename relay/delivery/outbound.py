"""Delivers one agent message to Instagram, then tells Genesys how it ended.

Every agent message ends in exactly one final receipt. Progress (parts sent, the route
chosen, the outcome) is kept in the store, so a retry or a restart never sends a part
twice and never reports a message twice. What to send, on which route, and what a
refusal means are decided by the pure functions in ``pipeline/``; this module loads the
facts they need and carries out their answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from pydantic import ValidationError

from .. import records
from ..genesys.client import GenesysClient
from ..genesys.errors import AuthError, PermanentError, TransientError
from ..genesys.outbound import OutboundMessage
from ..health import RelayHealth
from ..meta.send import SendClient, SendError, SendErrorKind
from ..metrics import RelayMetrics
from ..pipeline.addressing import DirectMessage, SendRequest, plan, typing_request
from ..pipeline.loops import LoopBreaker
from ..pipeline.outbound import Part, message_parts, typing_parts
from ..pipeline.receipts import (
    LOOP_HELD,
    TOKEN_PROBLEM,
    Failed,
    Refusal,
    RetryLater,
    SendContext,
    SwitchRoute,
    after_send_error,
    dead_lettered,
    refused,
    window_closed,
)
from ..pipeline.timefmt import format_time
from ..pipeline.window import CommentOrigin, Route, decide, typing_allowed
from ..records import COMMENT_ORIGIN, OWN_MESSAGES, PROGRESS, Progress
from ..store.base import Job, Store
from ..tasks.sla import SlaClock
from .retry import AUTH_RETRY_SECONDS, backoff_delay, transient_reason
from .worker import DeadLetter, Delivered, Ignored, Outcome, Retry

log = logging.getLogger(__name__)

# A typing indicator older than this means nothing any more.
TYPING_MAX_AGE_SECONDS = 20.0


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _all(writes: list[Coroutine[Any, Any, None]]) -> None:
    """Run store writes side by side; the first failure is raised once all have ended (so
    none is left running behind the retry it causes)."""
    results = await asyncio.gather(*writes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class OutboundDelivery:
    def __init__(
        self,
        store: Store,
        send: SendClient,
        genesys: GenesysClient,
        health: RelayHealth,
        metrics: RelayMetrics,
        *,
        human_agent_tag: bool,
        public_comment_replies: bool = False,
        backoff_cap: float = 60.0,
        max_attempts: int = 8,
        loops: LoopBreaker | None = None,
        sla: SlaClock | None = None,
    ) -> None:
        self._sla = sla or SlaClock(store, remember=False)
        self._max_attempts = max_attempts
        self._loops = loops
        self._store = store
        self._send = send
        self._genesys = genesys
        self._health = health
        self._metrics = metrics
        self._tag = human_agent_tag
        self._public = public_comment_replies
        self._cap = backoff_cap

    async def __call__(self, job: Job) -> Outcome:
        try:
            msg = OutboundMessage.model_validate_json(job.payload)
        except ValidationError as exc:
            return DeadLetter("undecodable", f"stored agent message cannot be decoded: {exc}"[:300])
        if msg.type == "Event":
            return await self._typing(msg, job)
        # What the decisions need, read in one round trip (the window and the comment are
        # only used on a first attempt, but cost nothing beside the progress read).
        progress, comment, last_customer_ms = await asyncio.gather(
            self._load(msg.id),
            self._comment_origin(msg.customer_id),
            self._store.last_customer_message(msg.customer_id),
        )
        saved = progress.status is not None
        if not saved:
            retry = await self._deliver(msg, job, progress, comment, last_customer_ms)
            if retry is not None:
                return retry
            # A failure was saved with its reasons; a delivery is saved only if its receipt
            # must wait (below): once the receipt is sent nobody reads the status again, and
            # a crash before that only runs this again, sending no part twice.
            saved = progress.status == "Failed"
        outcome = await self._report(msg, progress)
        if not saved and not isinstance(outcome, Delivered):
            # The retry goes straight to the receipt, without the bookkeeping again.
            await self._save(msg.id, progress)
        return outcome

    # -- sending -------------------------------------------------------------------------
    async def _comment_origin(self, customer: str) -> CommentOrigin | None:
        return await records.get(self._store, COMMENT_ORIGIN, customer)

    async def _deliver(
        self,
        msg: OutboundMessage,
        job: Job,
        progress: Progress,
        comment: CommentOrigin | None,
        last_customer_ms: int | None,
    ) -> Outcome | None:
        """Sends what is left of the message; a Retry, or None once progress has a status."""
        parts = message_parts(msg)
        if isinstance(parts, Refusal):
            await self._fail(msg, progress, refused(parts, progress.sent))
            return None
        if (
            progress.sent == 0
            and not msg.from_human
            and self._loops is not None
            and await self._loops.holding(msg.customer_id)
        ):
            self._metrics.loop_held.inc()
            await self._fail(msg, progress, refused(LOOP_HELD))
            return None
        if progress.route is None:
            decision = decide(
                _now_ms(),
                last_customer_ms,
                human=msg.from_human,
                tag_allowed=self._tag,
                comment=comment,
                public_comment_replies=self._public,
            )
            if decision.route is Route.EXPIRED:
                await self._fail(msg, progress, window_closed(decision))
                return None
            progress.route = decision.route.value
        planned = await self._plan(msg, progress, comment, parts)
        last_writes: list[Coroutine[Any, Any, None]] = []
        while planned is not None and progress.sent < len(planned):
            route = Route(progress.route)
            try:
                sent_id = await self._send_request(planned[progress.sent])
            except SendError as exc:
                answer = await self._send_failed(msg, job, progress, route, exc)
                if isinstance(answer, SwitchRoute):
                    # Meta's clock disagrees with ours: the same part again, on the new route.
                    progress.route = answer.route.value
                    await self._save(msg.id, progress)
                    planned = await self._plan(msg, progress, comment, parts)
                    continue
                if isinstance(answer, RetryLater):
                    await self._save(msg.id, progress)
                    return Retry(answer.delay, answer.reason, answer.detail)
                await self._fail(msg, progress, answer)
                return None
            progress.sent += 1
            self._metrics.outbound_sent.inc()
            writes = [self._save(msg.id, progress), self._own_message(sent_id)]
            if progress.sent < len(planned):
                await _all(writes)  # saved before the next part goes
            else:
                last_writes = writes  # with the bookkeeping below: one shared round trip
        if planned is None:
            return None
        # Run again by a retry (even with every part sent) until the receipt is sent, or
        # the status saved for a later one.
        bookkeeping = [*last_writes, self._sla.answered(msg.customer_id)]
        if self._loops is not None and not msg.from_human:
            bookkeeping.append(self._loops.bot_replied(msg.customer_id))
        if progress.route == Route.PRIVATE_REPLY:
            bookkeeping.append(self._private_reply_used(msg.customer_id))
        await _all(bookkeeping)
        # Only now, so that a failure of the bookkeeping above is retried, not skipped.
        progress.status = "Delivered"
        if progress.route == Route.TAGGED:
            self._metrics.outbound_tagged.inc()
        self._health.meta_token_error = None
        return None

    async def _own_message(self, message_id: str | None) -> None:
        if message_id:
            # Its echo will come back through the webhook: known as ours, not a person's.
            await records.put(self._store, OWN_MESSAGES, message_id, True)

    async def _private_reply_used(self, customer: str) -> None:
        """Meta takes one private reply per comment: the next reply goes another way."""
        origin = await self._comment_origin(customer)
        if origin is not None:
            used = CommentOrigin(origin.comment_id, origin.ts_ms, private_replied=True)
            await records.put(self._store, COMMENT_ORIGIN, customer, used)

    async def _plan(
        self,
        msg: OutboundMessage,
        progress: Progress,
        comment: CommentOrigin | None,
        parts: list[Part],
    ) -> list[SendRequest] | None:
        """The whole reply's requests on its route; None once it is refused (nothing more
        of it is sent)."""
        assert progress.route is not None
        route = Route(progress.route)
        planned = plan(route, msg.customer_id, comment, parts)
        if isinstance(planned, Refusal):
            log.warning(
                "reply not sendable on its route",
                extra={"message_id": msg.id, "code": planned.code, "route": route.value},
            )
            await self._fail(msg, progress, refused(planned, progress.sent))
            return None
        return planned

    async def _send_request(self, request: SendRequest) -> str | None:
        """Sends one request; the Send API's message id of a direct message."""
        if isinstance(request, DirectMessage):
            sent = await self._send.send(request.body)
            return sent.message_id or None
        await self._send.reply_publicly(request.comment_id, request.text)
        return None

    async def _send_failed(
        self, msg: OutboundMessage, job: Job, progress: Progress, route: Route, exc: SendError
    ) -> Failed | RetryLater | SwitchRoute:
        log.warning(
            "instagram refused a reply",
            extra={
                "message_id": msg.id,
                "kind": exc.kind.value,
                "code": exc.error.code,
                "subcode": exc.error.subcode,
                "route": route.value,
            },
        )
        context = SendContext(
            route=route,
            sent=progress.sent,
            attempts=job.attempts,
            max_attempts=self._max_attempts,
            backoff_seconds=backoff_delay(job.attempts, cap=self._cap),
            now_ms=_now_ms(),
            # Only Meta's window refusal is judged by the customer's last message: a 429
            # storm need not add a store read per refusal.
            last_customer_ms=(
                await self._store.last_customer_message(msg.customer_id)
                if exc.kind is SendErrorKind.WINDOW
                else None
            ),
            human=msg.from_human,
            tag_allowed=self._tag,
        )
        return after_send_error(exc, context)

    async def _fail(self, msg: OutboundMessage, progress: Progress, failed: Failed) -> None:
        if failed.window_closed:
            self._metrics.window_expired.inc()
        if failed.token_problem:
            self._health.meta_token_error = TOKEN_PROBLEM
        progress.fail(failed.code, failed.message)
        await self._save(msg.id, progress)

    # -- reporting -------------------------------------------------------------------------
    async def _report(self, msg: OutboundMessage, progress: Progress) -> Outcome:
        assert progress.status is not None
        try:
            await self._genesys.send_receipt(
                msg.id,
                msg.customer_id,
                progress.status,
                time=format_time(_now_ms()),
                reasons=progress.reasons or None,
            )
        except AuthError as exc:
            self._health.genesys_auth_error = str(exc)
            return Retry(AUTH_RETRY_SECONDS, "auth", str(exc))
        except TransientError as exc:
            delay = exc.retry_after if exc.retry_after is not None else backoff_delay(0)
            return Retry(delay, transient_reason(exc), f"receipt: {exc}")
        except PermanentError as exc:
            return DeadLetter(f"receipt_http_{exc.status}", f"Genesys rejected the receipt: {exc}")
        if progress.status == "Failed":
            reason = progress.reasons[0]["code"] if progress.reasons else "GeneralError"
            self._metrics.outbound_failed.labels(reason).inc()
            log.warning(
                "agent message not delivered",
                extra={"message_id": msg.id, "reason": reason, "detail": progress.reasons},
            )
        return Delivered()

    async def dead_lettered(self, job: Job, outcome: DeadLetter) -> None:
        """The worker gives up on this message: one final receipt, so the agent learns it
        was not delivered (the status already decided, when there is one). One attempt:
        a receipt that cannot be sent is logged and counted, never retried."""
        counted = self._metrics.dead_letter_receipts
        if outcome.reason.startswith("receipt_"):
            counted.labels("receipt_refused").inc()  # Genesys refused this very receipt
            return
        address = _address(job.payload)
        if address is None:
            counted.labels("unaddressable").inc()
            log.error("dead-lettered agent message has no id to report", extra={"job": job.id})
            return
        message_id, customer, typing = address
        if typing:
            return  # a typing indicator has no receipt
        try:
            progress = await self._load(message_id)
        except Exception:  # the store away, or the record itself what kept failing
            progress = Progress()  # parts sent unknown: the sentence then names none
        if progress.status is None:
            failed = dead_lettered(progress.sent)
            progress.fail(failed.code, failed.message)
        try:
            await self._genesys.send_receipt(
                message_id,
                customer,
                progress.status or "Failed",
                time=format_time(_now_ms()),
                reasons=progress.reasons or None,
            )
        except Exception as exc:  # every failure alike: there is no second attempt
            counted.labels("not_sent").inc()
            log.error(
                "receipt for a dead-lettered agent message not sent",
                extra={"message_id": message_id, "job": job.id, "error": type(exc).__name__},
            )
            return
        counted.labels("sent").inc()
        if progress.status == "Failed":
            self._metrics.outbound_failed.labels(progress.reasons[0]["code"]).inc()
        log.warning(
            "dead-lettered agent message reported",
            extra={"message_id": message_id, "job": job.id, "status": progress.status},
        )

    async def _typing(self, msg: OutboundMessage, job: Job) -> Outcome:
        if time.time() - job.enqueued_at > TYPING_MAX_AGE_SECONDS:
            return Ignored("stale_typing")
        last = await self._store.last_customer_message(msg.customer_id)
        if not typing_allowed(_now_ms(), last):
            return Ignored("typing_outside_window")
        for part in typing_parts(msg):
            try:
                await self._send.send(typing_request(msg.customer_id, part).body)
            except SendError:
                return Ignored("typing_refused")  # best effort: never retried
        return Delivered()

    async def _load(self, message_id: str) -> Progress:
        return await records.get(self._store, PROGRESS, message_id) or Progress()

    async def _save(self, message_id: str, progress: Progress) -> None:
        await records.put(self._store, PROGRESS, message_id, progress)


def _address(payload: bytes) -> tuple[str, str, bool] | None:
    """The message id, the customer and whether it is a typing event, read leniently: a
    stored message the model refuses may still name whom to tell."""
    try:
        body = json.loads(payload)
        message_id, customer = body["id"], body["channel"]["to"]["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(message_id, str) and isinstance(customer, str)):
        return None
    return message_id, customer, body.get("type") == "Event"
