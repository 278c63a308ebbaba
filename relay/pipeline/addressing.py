"""Where each Send API message goes and under which Meta rule: one part of an agent's
reply (from ``outbound.py``) on the route the window chose → the full request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .outbound import Part
from .receipts import PUBLIC_REPLY_NOT_TEXT, Refusal
from .window import CommentOrigin, Route


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """``POST /me/messages`` with this body."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublicReply:
    """A public reply under the customer's comment."""

    comment_id: str
    text: str


SendRequest = DirectMessage | PublicReply


def address(
    route: Route, customer_id: str, comment: CommentOrigin | None, part: Part
) -> SendRequest | Refusal:
    """The request that sends ``part`` to the customer on ``route``."""
    if route is Route.PUBLIC_REPLY:
        text = part.get("message", {}).get("text")
        if comment is None or not isinstance(text, str):
            return PUBLIC_REPLY_NOT_TEXT
        return PublicReply(comment.comment_id, text)
    body: dict[str, Any] = {**part}
    if route is Route.PRIVATE_REPLY:
        if comment is None:
            # decide() picks this route only for a known comment, and none is ever deleted.
            raise ValueError("a private reply needs the comment it answers")
        body["recipient"] = {"comment_id": comment.comment_id}
    else:
        body["recipient"] = {"id": customer_id}
    if route is Route.TAGGED:
        body["messaging_type"] = "MESSAGE_TAG"
        body["tag"] = "HUMAN_AGENT"
    elif "message" in body:
        body["messaging_type"] = "RESPONSE"
    return DirectMessage(body)


def typing_request(customer_id: str, part: Part) -> DirectMessage:
    """A sender action (typing on/off): to the customer directly, never tagged."""
    return DirectMessage({"recipient": {"id": customer_id}, **part})
