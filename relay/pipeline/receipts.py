"""How an agent message that was not delivered is reported: the Genesys reason code and
the sentence the agent reads, or whether to try again (later, or on another route).

Pure: the outbound delivery gathers the facts (what Instagram answered, how far the
message got, the customer's last message) and carries out what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..meta.send import SendError, SendErrorKind
from .window import Decision, Route, after_window_refusal

# Genesys receipt reason codes the relay uses.
MESSAGE_EXPIRED = "MessageExpired"
GENERAL_ERROR = "GeneralError"
INVALID_DESTINATION = "InvalidDestination"
RATE_LIMITED = "RateLimited"
SERVER_ERROR = "ServerError"
MESSAGE_NOT_ALLOWED = "MessageNotAllowed"

# A message about the token, not a token.
TOKEN_PROBLEM = "Instagram refused the access token (code 190): replace " + (
    "IGBRIDGE_META_ACCESS_TOKEN; no reply can be sent until then"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The relay itself will not send this (or this part): a Failed receipt with this
    Genesys reason, without asking Instagram."""

    code: str
    message: str


# Meta accepts only text under a comment, so a card or an image cannot be a public reply;
# the relay refuses the whole reply before sending any of it.
PUBLIC_REPLY_NOT_TEXT = Refusal(
    MESSAGE_NOT_ALLOWED,
    "Not sent: this channel answers comments with public replies, which carry text only; "
    "write the picture, file or card as text, or answer the customer by direct message "
    "once they write.",
)
LOOP_HELD = Refusal(
    MESSAGE_NOT_ALLOWED,
    "Not sent: this customer looks like an automated sender answering our bot "
    "(a bot-on-bot loop); bot replies resume when the conversation calms down. "
    "A human agent can still reply.",
)


@dataclass(frozen=True, slots=True)
class Failed:
    """Report the message Failed with this reason."""

    code: str
    message: str
    # The access token is the cause: the relay reports itself not ready until replaced.
    token_problem: bool = False

    @property
    def window_closed(self) -> bool:
        return self.code == MESSAGE_EXPIRED


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Send the same part again after ``delay`` seconds."""

    delay: float
    reason: str  # metric label
    detail: str


@dataclass(frozen=True, slots=True)
class SwitchRoute:
    """Send the same part again now, on this route."""

    route: Route


@dataclass(frozen=True, slots=True)
class SendContext:
    """What the answer to a refused part depends on, besides Instagram's error."""

    route: Route | None
    sent: int  # parts of this message Instagram already accepted
    attempts: int  # attempts at this message before this one
    max_attempts: int
    backoff_seconds: float  # the wait before the next attempt when Instagram names none
    now_ms: int
    last_customer_ms: int | None
    human: bool
    tag_allowed: bool


def _earlier_parts(message: str, sent: int) -> str:
    # The agent must know the customer already saw part of the reply.
    return f"{message} ({sent} earlier part(s) were delivered.)" if sent else message


def refused(refusal: Refusal, sent: int = 0) -> Failed:
    """A local refusal, after ``sent`` parts went out."""
    return Failed(refusal.code, _earlier_parts(refusal.message, sent))


def dead_lettered(sent: int) -> Failed:
    """The relay gave up on the message (it could not be handled, and was set aside for an
    administrator): the agent must not wait for it. The cause stays in the relay's log
    and dead-letter record, not in the agent's sentence (it may quote internals)."""
    return refused(
        Refusal(
            GENERAL_ERROR,
            "Not delivered: the relay could not process this reply and set it aside for an "
            "administrator (dead-lettered). Send it again, or answer the customer another way.",
        ),
        sent,
    )


def window_closed(decision: Decision) -> Failed:
    """``decide`` found no route: nothing was sent."""
    return Failed(MESSAGE_EXPIRED, decision.reason)


def private_reply_refused(meta_message: str | None) -> Failed:
    """Instagram refused the private reply to the comment the conversation began with. Meta
    allows one, within 7 days of the comment, and for a comment on a live video only while
    the broadcast is live. Which error it gives for each case is unconfirmed (a comment
    already answered: code 10900; past 7 days: its window error, handled as the window), so
    the sentence names them all, with Instagram's own words."""
    return Failed(
        MESSAGE_NOT_ALLOWED,
        "Not delivered: Instagram refused the private reply to the customer's comment "
        f"({meta_message or 'no reason given'}). A comment gets one private reply, within "
        "7 days (on a live video only while the broadcast is live); answer publicly on "
        "Instagram, or wait for the customer to write a direct message.",
    )


def after_send_error(error: SendError, ctx: SendContext) -> Failed | RetryLater | SwitchRoute:
    """What to do once Instagram refused a part."""
    kind, graph = error.kind, error.error
    if kind is SendErrorKind.HANDOVER:
        failed = Failed(
            MESSAGE_NOT_ALLOWED,
            "Not delivered: another app controls this conversation on Instagram (conversation "
            "routing / handover), so Instagram refuses our replies until control is passed "
            f"back to this channel. {graph.message}".strip(),
        )
    elif ctx.route is Route.PRIVATE_REPLY and kind is SendErrorKind.REJECTED:
        failed = private_reply_refused(graph.message)
    elif kind is SendErrorKind.WINDOW:
        decision = after_window_refusal(
            ctx.now_ms,
            ctx.last_customer_ms,
            route=ctx.route,
            human=ctx.human,
            tag_allowed=ctx.tag_allowed,
        )
        if decision.route is not Route.EXPIRED:
            return SwitchRoute(decision.route)
        failed = Failed(MESSAGE_EXPIRED, decision.reason)
    elif kind is SendErrorKind.TOKEN:
        failed = Failed(GENERAL_ERROR, f"Not delivered: {TOKEN_PROBLEM}.", token_problem=True)
    elif kind is SendErrorKind.DESTINATION:
        failed = Failed(
            INVALID_DESTINATION,
            "Not delivered: Instagram says this customer cannot be reached "
            f"(account unavailable or unknown). {graph.message}".strip(),
        )
    elif kind in (SendErrorKind.THROTTLED, SendErrorKind.TRANSIENT):
        attempt = ctx.attempts + 1
        if attempt < ctx.max_attempts:
            delay = error.retry_after if error.retry_after is not None else ctx.backoff_seconds
            return RetryLater(delay, kind.value, str(error))
        return Failed(
            RATE_LIMITED if kind is SendErrorKind.THROTTLED else SERVER_ERROR,
            f"Not delivered: Instagram kept refusing after {attempt} attempts "
            f"({graph.message or 'HTTP ' + str(graph.status)}).",
        )
    else:
        failed = Failed(GENERAL_ERROR, f"Not delivered: Instagram refused it: {graph.message}")
    return Failed(failed.code, _earlier_parts(failed.message, ctx.sent), failed.token_problem)
