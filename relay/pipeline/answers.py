"""Which agent message a customer's quick-reply or button answer belongs to.

Genesys takes such an answer as a structured response naming the message that offered
the choice (``originatingMessageId``), but Instagram echoes back only the payload of the
tapped option (``message.quick_reply.payload``, ``postback.payload``). So the relay keeps
no record: it writes the origin into the payload it gives Instagram,
``igb1:<Genesys message id>:<the agent's payload>``, and reads it back from the answer.
Nothing is stored, so an answer arriving weeks later, on another replica or after a
restart, still finds its origin.

An answer whose payload does not decode (a button sent before this scheme, an ice
breaker, an ad, a payload another app set) has no known origin; the caller sends it on as
an ordinary message. A payload that would not fit Meta's limit with the prefix is given
to Instagram as the agent wrote it, and its answer has no known origin either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "igb1:"  # versioned: a later encoding gets its own prefix
# Meta's limit on a quick reply's and a postback button's payload, in characters.
PAYLOAD_LIMIT = 1000
# Genesys message ids are hex or UUIDs; anything else is not encoded, so it cannot
# contain the separator nor be misread.
_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


@dataclass(frozen=True, slots=True)
class Origin:
    """A decoded answer: the agent message that offered the option, and its own payload."""

    message_id: str
    payload: str


def offer(message_id: str, payload: str) -> str:
    """The payload to give Instagram for one of agent message ``message_id``'s options."""
    if not _ID.fullmatch(message_id):
        return payload
    encoded = f"{PREFIX}{message_id}:{payload}"
    return encoded if len(encoded) <= PAYLOAD_LIMIT else payload


def origin(payload: str | None) -> Origin | None:
    """The origin written into an answer's payload by ``offer``, or None."""
    if not payload or not payload.startswith(PREFIX):
        return None
    message_id, sep, agent_payload = payload[len(PREFIX) :].partition(":")
    if not sep or not _ID.fullmatch(message_id) or not agent_payload:
        return None
    return Origin(message_id, agent_payload)
