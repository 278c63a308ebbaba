"""Meta's reply rules: every 24-hour decision the relay makes, in one place.

Inside 24 h of the customer's last message: a normal reply. Up to 7 days, for a person
(not a bot) and when the channel allows it: the HUMAN_AGENT tag. A conversation that
began with a comment is answered with one private reply to that comment (or publicly,
when the channel says so). Otherwise nothing is sent and the agent is told why.

Decided before sending (``decide``), again when Meta refuses a reply as outside its
window (``after_window_refusal``), and for typing indicators (``typing_allowed``).

Every time here is Meta's, and a signed webhook may carry any: a customer's time is
never taken as later than its arrival plus ``CLOCK_SKEW_MS`` (``clamp_event_ms``, applied
when events are parsed). Clamping at the decision instead could not help: a time a year
ahead, stored as it came, would read as "now" at every decision for a year.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

HOUR_MS = 3600 * 1000
WINDOW_MS = 24 * HOUR_MS
TAG_WINDOW_MS = 7 * 24 * HOUR_MS
# How far Meta's clock may run ahead of ours before a time counts as "now" instead.
CLOCK_SKEW_MS = 5 * 60 * 1000


def clamp_event_ms(event_ms: int, now_ms: int) -> int:
    """An event's time, no later than now plus the allowed clock skew."""
    return min(event_ms, now_ms + CLOCK_SKEW_MS)


class Route(StrEnum):
    NORMAL = "normal"
    TAGGED = "human_agent_tag"
    PRIVATE_REPLY = "private_reply"
    PUBLIC_REPLY = "public_reply"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CommentOrigin:
    comment_id: str
    ts_ms: int
    private_replied: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: str = ""  # for EXPIRED: what the agent reads


def _ago(ms: int) -> str:
    hours = ms / HOUR_MS
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def decide(
    now_ms: int,
    last_customer_ms: int | None,
    *,
    human: bool,
    tag_allowed: bool,
    comment: CommentOrigin | None = None,
    public_comment_replies: bool = False,
) -> Decision:
    if comment is not None and (last_customer_ms is None or comment.ts_ms >= last_customer_ms):
        if public_comment_replies:
            return Decision(Route.PUBLIC_REPLY)
        if not comment.private_replied and now_ms - comment.ts_ms <= TAG_WINDOW_MS:
            return Decision(Route.PRIVATE_REPLY)
    if last_customer_ms is None:
        return Decision(
            Route.EXPIRED,
            "Not delivered: this customer has not sent a direct message that Instagram allows "
            "a reply to (a comment gets one private reply). Wait for the customer to write.",
        )
    age = now_ms - last_customer_ms
    if age <= WINDOW_MS:
        return Decision(Route.NORMAL)
    if age <= TAG_WINDOW_MS and tag_allowed and human:
        return Decision(Route.TAGGED)
    if age > TAG_WINDOW_MS:
        why = "more than 7 days have passed, so not even a human agent reply is allowed"
    elif not tag_allowed:
        why = "human agent replies after 24 hours are turned off for this channel"
    else:
        why = "only a human agent may reply after 24 hours, and this reply came from a bot"
    return Decision(
        Route.EXPIRED,
        f"Not delivered: the customer's last message was {_ago(age)} ago; Instagram allows "
        f"replies within 24 hours, and {why}. The customer must write again first.",
    )


def after_window_refusal(
    now_ms: int,
    last_customer_ms: int | None,
    *,
    route: Route | None,
    human: bool,
    tag_allowed: bool,
) -> Decision:
    """Meta refused a reply as outside its window although ``route`` looked allowed.

    Meta's clock decides, and it may disagree with ours near the 24-hour edge: a normal
    reply from a person is tried once more with the HUMAN_AGENT tag while the 7 days
    last. Anything else (the tag already refused, a bot, the tag off) is final."""
    within_tag = last_customer_ms is not None and now_ms - last_customer_ms <= TAG_WINDOW_MS
    if route is Route.NORMAL and tag_allowed and human and within_tag:
        return Decision(Route.TAGGED)
    return Decision(
        Route.EXPIRED,
        "Not delivered: Instagram says the 24-hour reply window has closed"
        + (" and the human agent tag does not apply." if route is not None else ".")
        + " The customer must write again first.",
    )


def near_window_end(
    now_ms: int,
    last_customer_ms: int | None,
    waiting_since_ms: int | None,
    escalate_after_ms: int,
) -> bool:
    """A customer still waiting for an answer (``waiting_since_ms``: their first unanswered
    message, None once a reply reached them) whose last message is past the escalation
    threshold while the 24 hours still run: what the near-window gauge and alert count."""
    if waiting_since_ms is None or last_customer_ms is None:
        return False
    age = now_ms - last_customer_ms
    return escalate_after_ms <= age <= WINDOW_MS


def typing_allowed(now_ms: int, last_customer_ms: int | None) -> bool:
    """A typing indicator is no message: no tag or comment reply carries it, so only
    inside the 24 hours."""
    return last_customer_ms is not None and now_ms - last_customer_ms <= WINDOW_MS
