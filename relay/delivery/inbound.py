"""Delivers one stored Instagram event to Genesys and says how it went."""

from __future__ import annotations

import functools
import logging
import time

from ..genesys.client import GenesysClient, InboundAccepted
from ..genesys.errors import AuthError, PermanentError, TransientError
from ..genesys.payloads import ChannelMetadata, CustomerMessage, StructuredResponse
from ..health import RelayHealth
from ..meta.events import EventKind, InstagramEvent, JustStored, Message, Postback
from ..metrics import RelayMetrics
from ..pipeline.guard import SpamFilter, customer_text
from ..pipeline.inbound import InboundContext, NotForwarded, translate
from ..pipeline.loops import LoopBreaker
from ..pipeline.loops import Verdict as LoopVerdict
from ..store.base import Job, Store
from ..tasks.sla import SlaClock, waits_for_answer
from .retry import AUTH_RETRY_SECONDS, MAX_RETRY_AGE_SECONDS, backoff_delay, transient_reason
from .worker import DeadLetter, Delivered, Ignored, Outcome, Retry

log = logging.getLogger(__name__)


def is_answer(event: InstagramEvent) -> bool:
    """A tap on an option the business offered (a quick reply, a postback button)."""
    body = event.body
    return isinstance(body, Postback) or (
        isinstance(body, Message) and body.quick_reply is not None
    )


def flag_spam(message: CustomerMessage, rule: str, flag: str) -> CustomerMessage:
    """Mark a message the guard let through (flag-mode spam, a suspected loop): the agent
    and the flow see why."""
    metadata = message.channel.metadata or ChannelMetadata()
    attrs = {**metadata.custom_attributes, flag: "true", f"{flag}Rule": rule}
    channel = message.channel.model_copy(
        update={"metadata": ChannelMetadata(custom_attributes=attrs)}
    )
    return message.model_copy(update={"channel": channel})


class InboundDelivery:
    def __init__(
        self,
        ctx: InboundContext,
        genesys: GenesysClient,
        health: RelayHealth,
        *,
        max_age_seconds: float = MAX_RETRY_AGE_SECONDS,
        backoff_cap: float = 60.0,
        spam: SpamFilter | None = None,
        metrics: RelayMetrics | None = None,
        loops: LoopBreaker | None = None,
        store: Store | None = None,
        parsed: JustStored | None = None,
        sla: SlaClock | None = None,
    ) -> None:
        self._store = store
        # The reply clock for SLA escalation: ``sla`` when given, else read from ``store``.
        if sla is None and store is not None:
            sla = SlaClock(store, remember=False)
        self._sla = sla
        self._parsed = parsed
        self._spam = spam
        self._loops = loops
        self._metrics = metrics or RelayMetrics()
        # Bound once (a label lookup per message is a lock and a dict walk); only with a guard.
        self._spam_passed = self._metrics.guard.labels("none", "passed") if spam else None
        self._ctx = ctx
        self._genesys = genesys
        self._health = health
        self._max_age = max_age_seconds
        self._cap = backoff_cap

    async def __call__(self, job: Job) -> Outcome:
        # Split by this process's splitter: taken as parsed, no second decode.
        event = self._parsed.take(job.payload) if self._parsed is not None else None
        if event is None:
            try:
                event = InstagramEvent.from_json(job.payload)
            except (ValueError, KeyError, TypeError) as exc:
                return DeadLetter("undecodable", f"stored event cannot be decoded: {exc}"[:300])
        # A retried delivery is the same message: counted once toward rates and loops.
        first = job.attempts == 0
        verdict = await self._spam.check(event, count=first) if self._spam else None
        if verdict is not None and verdict.spam and self._spam is not None:
            outcome = "dropped" if self._spam.action == "drop" else "flagged"
            self._metrics.guard.labels(verdict.rule, outcome).inc()
            log.info(
                "spam rule matched",
                extra={
                    "rule": verdict.rule,
                    "detail": verdict.detail,
                    "outcome": outcome,
                    "message_id": event.dedupe_key,
                    "customer": event.customer_id,
                },
            )
            if outcome == "dropped":
                return Ignored("spam")
        elif verdict is not None and self._spam_passed is not None:
            self._spam_passed.inc()
        result = await translate(event, self._ctx)
        if isinstance(result, NotForwarded):
            return Ignored(result.reason)
        if verdict is not None and verdict.spam:
            result = flag_spam(result, verdict.rule or "", "Spam")
        if self._loops is not None and event.kind is EventKind.MESSAGE:
            if first:
                loop = await self._loops.customer_wrote(event.customer_id, customer_text(event))
            else:
                loop = LoopVerdict(in_loop=await self._loops.holding(event.customer_id))
            if loop.in_loop:
                if loop.found:
                    self._metrics.loops_detected.inc()
                    log.warning(
                        "bot-on-bot loop detected: holding back bot replies",
                        extra={"customer": event.customer_id},
                    )
                result = flag_spam(result, "bot_loop", "LoopSuspected")
        if is_answer(event):
            structured = isinstance(result, StructuredResponse)
            self._metrics.answers.labels("structured" if structured else "no_origin").inc()
            if not structured:
                # Sent as the customer's text: the flow still sees the payload as it came.
                log.debug(
                    "answer without a known originating message: sent as text",
                    extra={"message_id": event.dedupe_key, "customer": event.customer_id},
                )
        try:
            accepted = await self._send(result)
        except AuthError as exc:
            # Kept however long it takes: the message goes through once the credentials
            # are fixed. The token provider does not ask Genesys again while its refusal's
            # backoff lasts, so these retries cost no token requests.
            self._health.genesys_auth_error = str(exc)
            wait = backoff_delay(job.attempts, cap=min(self._cap, AUTH_RETRY_SECONDS))
            return Retry(wait, "auth", str(exc))
        except TransientError as exc:
            age = time.time() - job.enqueued_at
            if age > self._max_age:
                return DeadLetter("expired", f"still failing after {age:.0f}s: {exc}")
            delay = exc.retry_after
            if delay is None:
                delay = backoff_delay(job.attempts, cap=self._cap)
            return Retry(delay, transient_reason(exc), str(exc))
        except PermanentError as exc:
            return DeadLetter(f"http_{exc.status}", f"Genesys rejected the message: {exc}")
        self._health.genesys_auth_error = None
        then = None
        if self._sla is not None and waits_for_answer(event):
            # The reply clock for SLA escalation, started once the job is done.
            then = functools.partial(
                self._sla.waiting,
                event.customer_id,
                accepted.conversation_id,
                event.timestamp_ms,
            )
        log.debug(  # per message: DEBUG (the counters say how many)
            "delivered to genesys",
            extra={
                "message_id": event.dedupe_key,
                "kind": event.kind.value,
                "conversation_id": accepted.conversation_id,
            },
        )
        return Delivered(then)

    async def _send(self, message: CustomerMessage) -> InboundAccepted:
        if not isinstance(message, StructuredResponse):
            return await self._genesys.send_inbound(message)
        try:
            return await self._genesys.send_structured_response(message)
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise
            # Genesys refused the answer as a structured response (its origin unknown to
            # it, say: from an ended conversation). The customer's choice still reaches the
            # agent, as text with the same attributes and message id.
            self._metrics.answers.labels("refused_as_structured").inc()
            log.warning(
                "genesys refused a structured response: sent as text",
                extra={
                    "message_id": message.channel.message_id,
                    "originating_message_id": message.originating_message_id,
                    "status": exc.status,
                    "reason": str(exc)[:300],
                },
            )
            return await self._genesys.send_inbound(message.as_text())
