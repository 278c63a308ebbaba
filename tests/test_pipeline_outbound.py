"""Agent messages → Send API requests, from named fixtures.

Each ``tests/fixtures/genesys/<name>.json`` is one outbound message shape as Genesys
posts it to the relay's webhook; ``expected/<name>.json`` holds what the relay makes of
it: the parts on every route (or the refusal), the typing indicators, or nothing for a
receipt. Everything here is pure: parse_outbound, message_parts / typing_parts, address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from igbridge.relay.genesys.outbound import OutboundMessage, parse_outbound
from igbridge.relay.pipeline.addressing import (
    DirectMessage,
    PublicReply,
    SendRequest,
    address,
    plan,
    typing_request,
)
from igbridge.relay.pipeline.outbound import message_parts, typing_parts
from igbridge.relay.pipeline.receipts import PUBLIC_REPLY_NOT_TEXT, Refusal
from igbridge.relay.pipeline.split import TEXT_LIMIT_BYTES
from igbridge.relay.pipeline.window import CommentOrigin, Route

FIXTURES = Path(__file__).parent / "fixtures" / "genesys"
EXPECTED = FIXTURES / "expected"
# The comment a comment-started conversation began with (private and public replies).
COMMENT = CommentOrigin("17850000000000777", 1767261600000)
SENDING_ROUTES = (Route.NORMAL, Route.TAGGED, Route.PRIVATE_REPLY, Route.PUBLIC_REPLY)


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def parsed(name: str) -> OutboundMessage:
    msg = parse_outbound((FIXTURES / f"{name}.json").read_bytes())
    assert not isinstance(msg, str), msg
    return msg


def expected(name: str) -> Any:
    return json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))


def as_data(request: SendRequest | Refusal) -> dict[str, Any]:
    if isinstance(request, DirectMessage):
        return {"send": request.body}
    if isinstance(request, PublicReply):
        return {"public_reply": {"comment_id": request.comment_id, "text": request.text}}
    return {"refusal": {"code": request.code, "message": request.message}}


def on_route(msg: OutboundMessage, parts: list[dict[str, Any]], route: Route) -> list[Any]:
    """The requests that send every part on ``route``, or the one refusal of the whole
    reply (decided before anything is sent)."""
    planned = plan(route, msg.customer_id, COMMENT, parts)
    if isinstance(planned, Refusal):
        return [as_data(planned)]
    return [as_data(request) for request in planned]


def translate(msg: OutboundMessage) -> dict[str, Any]:
    result: dict[str, Any] = {
        "message": {
            "id": msg.id,
            "type": msg.type,
            "customer_id": msg.customer_id,
            "from_human": msg.from_human,
        }
    }
    if msg.type == "Event":
        result["typing"] = [as_data(typing_request(msg.customer_id, p)) for p in typing_parts(msg)]
    elif msg.type != "Receipt":  # receipts of the relay's own messages: nothing to send
        parts = message_parts(msg)
        if isinstance(parts, Refusal):
            result["refusal"] = {"code": parts.code, "message": parts.message}
        else:
            result["parts"] = len(parts)
            result["routes"] = {r.value: on_route(msg, parts, r) for r in SENDING_ROUTES}
    return result


def test_every_fixture_has_its_expectation() -> None:
    assert fixture_names() == sorted(p.stem for p in EXPECTED.glob("*.json"))
    assert len(fixture_names()) >= 10


@pytest.mark.parametrize("name", fixture_names())
def test_fixture(name: str) -> None:
    assert translate(parsed(name)) == expected(name)


def test_long_text_is_split_within_the_limit_and_loses_nothing() -> None:
    msg = parsed("long_text")
    parts = message_parts(msg)
    assert not isinstance(parts, Refusal)
    texts = [p["message"]["text"] for p in parts]
    assert len(texts) > 1
    assert all(len(t.encode("utf-8")) <= TEXT_LIMIT_BYTES for t in texts)
    assert "".join(texts).replace("\n", "").replace(" ", "") == (msg.text or "").replace(
        "\n", ""
    ).replace(" ", "")


def test_typing_events_and_receipts_are_not_messages() -> None:
    assert typing_parts(parsed("typing_on")) == [{"sender_action": "typing_on"}]
    assert typing_parts(parsed("typing_off")) == [{"sender_action": "typing_off"}]
    assert parsed("receipt").type == "Receipt"


def test_public_reply_without_the_comment_is_refused() -> None:
    part = {"message": {"text": "Yes!"}}
    assert address(Route.PUBLIC_REPLY, "1", None, part) == PUBLIC_REPLY_NOT_TEXT
    assert address(Route.PUBLIC_REPLY, "1", COMMENT, part) == PublicReply(
        COMMENT.comment_id, "Yes!"
    )


def test_private_reply_needs_its_comment() -> None:
    with pytest.raises(ValueError, match="private reply"):
        address(Route.PRIVATE_REPLY, "1", None, {"message": {"text": "hi"}})


def test_addressing_leaves_the_part_alone() -> None:
    part: dict[str, Any] = {"message": {"text": "hi"}}
    address(Route.TAGGED, "1", None, part)
    assert part == {"message": {"text": "hi"}}
