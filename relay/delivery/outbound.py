"""Delivers one agent message to Instagram, then tells Genesys how it ended.

Every agent message ends in exactly one final receipt. Progress (parts sent, the route
chosen, the outcome) is kept in the store, so a retry or a restart never sends a part
twice and never reports a message twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from .. import records
from ..genesys.client import GenesysClient
from ..genesys.errors import AuthError, PermanentError, TransientError
from ..genesys.outbound import OutboundMessage
from ..health import RelayHealth
from ..meta.graph import GraphError
from ..meta.send import SendClient, SendError, SendErrorKind
from ..metrics import RelayMetrics
from ..pipeline.loops import LoopBreaker
from ..pipeline.outbound import Part, Refusal, message_parts, typing_parts
from ..pipeline.timefmt import format_time
from ..pipeline.window import TAG_WINDOW_MS, CommentOrigin, Decision, Route, decide
from ..records import COMMENT_ORIGIN, OWN_MESSAGES, PROGRESS, Progress
from ..store.base import Job, Store
from ..tasks.sla import customer_answered
from .retry import AUTH_RETRY_SECONDS, backoff_delay, transient_reason
from .worker import DeadLetter, Delivered, Ignored, Outcome, Retry

log = logging.getLogger(__name__)

# A message about the token, not a token.
TOKEN_PROBLEM = "Instagram refused the access token (code 190): replace " + (
    "IGBRIDGE_META_ACCESS_TOKEN; no reply can be sent until then"
)
# A typing indicator older than this means nothing any more.
TYPING_MAX_AGE_SECONDS = 20.0


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    ) -> None:
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
        progress = await self._load(msg.id)
        if progress.status is None:
            retry = await self._deliver(msg, job, progress)
            if retry is not None:
                return retry
        return await self._report(msg, progress)

    # -- sending -------------------------------------------------------------------------
    async def _comment_origin(self, customer: str) -> CommentOrigin | None:
        return await records.get(self._store, COMMENT_ORIGIN, customer)

    async def _decide(self, msg: OutboundMessage) -> Decision:
        last = await self._store.last_customer_message(msg.customer_id)
        return decide(
            _now_ms(),
            last,
            human=msg.from_human,
            tag_allowed=self._tag,
            comment=await self._comment_origin(msg.customer_id),
            public_comment_replies=self._public,
        )

    async def _deliver(self, msg: OutboundMessage, job: Job, progress: Progress) -> Outcome | None:
        parts = message_parts(msg)
        if isinstance(parts, Refusal):
            progress.fail(parts.code, parts.message)
            await self._save(msg.id, progress)
            return None
        if (
            progress.sent == 0
            and not msg.from_human
            and self._loops is not None
            and await self._loops.holding(msg.customer_id)
        ):
            self._metrics.loop_held.inc()
            progress.fail(
                "MessageNotAllowed",
                "Not sent: this customer looks like an automated sender answering our bot "
                "(a bot-on-bot loop); bot replies resume when the conversation calms down. "
                "A human agent can still reply.",
            )
            await self._save(msg.id, progress)
            return None
        if progress.route is None:
            decision = await self._decide(msg)
            if decision.route is Route.EXPIRED:
                self._metrics.window_expired.inc()
                progress.fail("MessageExpired", decision.reason)
                await self._save(msg.id, progress)
                return None
            progress.route = decision.route.value
        while progress.sent < len(parts):
            try:
                await self._send_part(msg, Route(progress.route), parts[progress.sent])
            except SendError as exc:
                outcome = await self._send_failed(msg, job, progress, exc)
                await self._save(msg.id, progress)
                if outcome is not None or progress.status is not None:
                    return outcome
                continue  # the route changed (HUMAN_AGENT tag): send the same part again
            progress.sent += 1
            self._metrics.outbound_sent.inc()
            await self._save(msg.id, progress)
        progress.status = "Delivered"
        await customer_answered(self._store, msg.customer_id)
        if self._loops is not None and not msg.from_human:
            await self._loops.bot_replied(msg.customer_id)
        if progress.route == Route.TAGGED:
            self._metrics.outbound_tagged.inc()
        if progress.route == Route.PRIVATE_REPLY:
            origin = await self._comment_origin(msg.customer_id)
            if origin is not None:
                used = CommentOrigin(origin.comment_id, origin.ts_ms, private_replied=True)
                await records.put(self._store, COMMENT_ORIGIN, msg.customer_id, used)
        self._health.meta_token_error = None
        await self._save(msg.id, progress)
        return None

    async def _send_part(self, msg: OutboundMessage, route: Route, part: Part) -> None:
        if route is Route.PUBLIC_REPLY:
            origin = await self._comment_origin(msg.customer_id)
            text = part.get("message", {}).get("text")
            if origin is None or not isinstance(text, str):
                raise SendError(
                    SendErrorKind.REJECTED,
                    _graph("A public comment reply can carry text only."),
                )
            await self._send.reply_publicly(origin.comment_id, text)
            return
        body: dict[str, Any] = {**part}
        if route is Route.PRIVATE_REPLY:
            origin = await self._comment_origin(msg.customer_id)
            assert origin is not None
            body["recipient"] = {"comment_id": origin.comment_id}
        else:
            body["recipient"] = {"id": msg.customer_id}
        if route is Route.TAGGED:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        elif "message" in body:
            body["messaging_type"] = "RESPONSE"
        sent = await self._send.send(body)
        if sent.message_id:
            # Its echo will come back through the webhook: known as ours, not a person's.
            await records.put(self._store, OWN_MESSAGES, sent.message_id, True)

    async def _send_failed(
        self, msg: OutboundMessage, job: Job, progress: Progress, exc: SendError
    ) -> Outcome | None:
        kind = exc.kind
        log.warning(
            "instagram refused a reply",
            extra={
                "message_id": msg.id,
                "kind": kind.value,
                "code": exc.error.code,
                "subcode": exc.error.subcode,
                "route": progress.route,
            },
        )
        if kind is SendErrorKind.WINDOW:
            last = await self._store.last_customer_message(msg.customer_id)
            within_tag = last is not None and _now_ms() - last <= TAG_WINDOW_MS
            if progress.route == Route.NORMAL and self._tag and msg.from_human and within_tag:
                progress.route = Route.TAGGED.value  # Meta's clock disagrees with ours: tag it
                return None
            self._metrics.window_expired.inc()
            progress.fail(
                "MessageExpired",
                "Not delivered: Instagram says the 24-hour reply window has closed"
                + (" and the human agent tag does not apply." if progress.route else ".")
                + " The customer must write again first.",
            )
        elif kind is SendErrorKind.TOKEN:
            self._health.meta_token_error = TOKEN_PROBLEM
            progress.fail("GeneralError", f"Not delivered: {TOKEN_PROBLEM}.")
        elif kind is SendErrorKind.DESTINATION:
            progress.fail(
                "InvalidDestination",
                "Not delivered: Instagram says this customer cannot be reached "
                f"(account unavailable or unknown). {exc.error.message}".strip(),
            )
        elif kind in (SendErrorKind.THROTTLED, SendErrorKind.TRANSIENT):
            if job.attempts + 1 >= self._max_attempts:
                code = "RateLimited" if kind is SendErrorKind.THROTTLED else "ServerError"
                progress.fail(
                    code,
                    f"Not delivered: Instagram kept refusing after {job.attempts + 1} attempts "
                    f"({exc.error.message or 'HTTP ' + str(exc.error.status)}).",
                )
                return None
            delay = exc.retry_after
            if delay is None:
                delay = backoff_delay(job.attempts, cap=self._cap)
            return Retry(delay, kind.value, str(exc))
        else:
            progress.fail(
                "GeneralError", f"Not delivered: Instagram refused it: {exc.error.message}"
            )
        if progress.sent:
            progress.reasons[0]["message"] += f" ({progress.sent} earlier part(s) were delivered.)"
        return None

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

    async def _typing(self, msg: OutboundMessage, job: Job) -> Outcome:
        if time.time() - job.enqueued_at > TYPING_MAX_AGE_SECONDS:
            return Ignored("stale_typing")
        last = await self._store.last_customer_message(msg.customer_id)
        if decide(_now_ms(), last, human=True, tag_allowed=False).route is not Route.NORMAL:
            return Ignored("typing_outside_window")
        for part in typing_parts(msg):
            try:
                await self._send.send({"recipient": {"id": msg.customer_id}, **part})
            except SendError:
                return Ignored("typing_refused")  # best effort: never retried
        return Delivered()

    async def _load(self, message_id: str) -> Progress:
        return await records.get(self._store, PROGRESS, message_id) or Progress()

    async def _save(self, message_id: str, progress: Progress) -> None:
        await records.put(self._store, PROGRESS, message_id, progress)


def _graph(message: str) -> GraphError:
    return GraphError(400, None, None, message)
