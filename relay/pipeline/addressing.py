"""Where each Send API message goes and under which Meta rule: one part of an agent's
reply (from ``outbound.py``) on the route the window chose → the full request; and the
whole reply planned on its route before the first part is sent (``plan``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .outbound import Part
from .receipts import MESSAGE_NOT_ALLOWED, PUBLIC_REPLY_NOT_TEXT, Refusal
from .split import TEXT_LIMIT_BYTES
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


def one_private_reply(parts: list[Part]) -> Refusal | None:
    """Meta allows one private reply message per comment; further messages need the
    customer to write back first. A reply that takes several Send API messages (text split
    at 1000 bytes, text plus an attachment, several attachments) would arrive cut short, so
    it is refused whole, with what the agent can do instead."""
    if len(parts) <= 1:
        return None
    texts = [p["message"]["text"] for p in parts if "text" in p.get("message", {})]
    others = len(parts) - len(texts)
    size = sum(len(t.encode("utf-8")) for t in texts)
    if not others and size > TEXT_LIMIT_BYTES:
        why = f"its text is about {size} bytes, over Instagram's {TEXT_LIMIT_BYTES} per message"
        fix = (
            f"Shorten it to {TEXT_LIMIT_BYTES} bytes, or send the rest after the customer answers."
        )
    elif not others:
        why = "options or card details that do not fit Instagram's limits go as extra text"
        fix = f"Send it as one text of up to {TEXT_LIMIT_BYTES} bytes."
    elif not texts:
        why = f"{others} attachments or cards, each its own message"
        fix = "Send one now and the others after the customer answers."
    else:
        why = "text and an attachment or card are separate messages on Instagram"
        fix = "Send the text now and the picture, file or card after the customer answers."
    return Refusal(
        MESSAGE_NOT_ALLOWED,
        "Not sent: this conversation began with a comment, and Instagram allows one private "
        f"reply message per comment until the customer writes back; this reply would take "
        f"{len(parts)} messages ({why}). {fix}",
    )


def plan(
    route: Route, customer_id: str, comment: CommentOrigin | None, parts: list[Part]
) -> list[SendRequest] | Refusal:
    """Every request of a reply on ``route``, or why the reply cannot go that way — decided
    before anything is sent, so no reply is half-delivered by a rule known in advance."""
    if route is Route.PRIVATE_REPLY and (refusal := one_private_reply(parts)) is not None:
        return refusal
    requests: list[SendRequest] = []
    for part in parts:
        request = address(route, customer_id, comment, part)
        if isinstance(request, Refusal):
            return request
        requests.append(request)
    return requests
