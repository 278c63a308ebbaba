"""Agent messages → Send API requests, from named fixtures.

Each ``tests/fixtures/genesys/<name>.json`` is one outbound message shape as Genesys
posts it to the relay's webhook; ``expected/<name>.json`` holds what the relay makes of
it: the parts on every route (or the refusal), the typing indicators, or nothing for a
receipt. Everything here is pure: parse_outbound, message_parts / typing_parts, address.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from igbridge.relay.genesys.outbound import (
    OutboundAttachment,
    OutboundContent,
    OutboundMessage,
    TemplateParameter,
    parse_outbound,
)
from igbridge.relay.meta.graph import GraphError
from igbridge.relay.meta.send import SendError, SendErrorKind, classify
from igbridge.relay.pipeline.addressing import (
    DirectMessage,
    PublicReply,
    SendRequest,
    address,
    plan,
    typing_request,
)
from igbridge.relay.pipeline.outbound import (
    CONTENT,
    MB,
    Sendable,
    content_decision,
    fill_placeholders,
    media_part,
    message_parts,
    typing_parts,
)
from igbridge.relay.pipeline.receipts import (
    PUBLIC_REPLY_NOT_TEXT,
    Failed,
    Refusal,
    SendContext,
    SwitchRoute,
    after_send_error,
)
from igbridge.relay.pipeline.split import TEXT_LIMIT_BYTES
from igbridge.relay.pipeline.window import CommentOrigin, Route
from igbridge.sandbox.genesys_schema import allowed_values

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


# -- every Genesys content type has one decision ----------------------------------------------
def sdk_content_types() -> list[str]:
    """The ``contentType`` enum of Genesys's SDK model ``ConversationMessageContent``."""
    values = allowed_values("ConversationMessageContent", "content_type")
    assert values is not None
    return list(values)


def test_every_sdk_content_type_is_sent_or_refused() -> None:
    types = sdk_content_types()
    assert {"Notification", "Location", "DatePicker", "ListPicker", "Form"} <= set(types)
    assert sorted(CONTENT) == sorted(types)


@pytest.mark.parametrize("kind", sdk_content_types())
def test_no_content_type_is_dropped(kind: str) -> None:
    """An item alone is either sent (at least one Send API message) or refused with one
    of Genesys's reason codes — never an empty success."""
    msg = parsed("text").model_copy(update={"text": None, "content": []})
    entry = CONTENT[kind]
    item = OutboundContent.model_validate({"contentType": kind})
    if isinstance(entry, Sendable):
        assert content_decision(item) == Refusal(
            "InvalidMessageStructure", f"The {kind} item has no {entry.field} to send."
        )
    result = message_parts(msg.model_copy(update={"content": [item]}))
    assert isinstance(result, Refusal)
    assert result.code in {"UnsupportedMessage", "InvalidMessageStructure"}
    assert result.message


def test_template_parameters_without_names_fill_in_order() -> None:
    params = [TemplateParameter(text="Ana"), TemplateParameter(text="Monday")]
    assert fill_placeholders("Hi {{1}}, see you {{ 2 }}.", params) == "Hi Ana, see you Monday."
    unused = fill_placeholders("Hi {{1}}.", params)
    assert isinstance(unused, Refusal)
    assert unused.code == "InvalidMessageStructure"
    assert "'2'" in unused.message


def test_gif_is_an_image_and_checks_use_the_extension_without_a_mime() -> None:
    gif = OutboundAttachment(mediaType="Image", url="https://x/a.gif", mime="image/gif")
    assert media_part(gif) == {
        "message": {"attachment": {"type": "image", "payload": {"url": "https://x/a.gif"}}}
    }
    bmp = OutboundAttachment(mediaType="Image", url="https://x/scan.bmp")
    refused = media_part(bmp)
    assert isinstance(refused, Refusal)
    assert refused.code == "MediaTypeNotAllowed"
    unknown = OutboundAttachment(mediaType="Video", url="https://x/download?id=1")
    assert not isinstance(media_part(unknown), Refusal)  # Instagram judges it
    exact = OutboundAttachment(
        mediaType="File", url="https://x/a.pdf", mime="application/pdf", contentSizeBytes=25 * MB
    )
    assert not isinstance(media_part(exact), Refusal)


# -- Meta's refusals that are not the 24-hour window --------------------------------------------
CONTEXT = SendContext(
    route=Route.NORMAL,
    sent=0,
    attempts=0,
    max_attempts=8,
    backoff_seconds=1.0,
    now_ms=1767261600000,
    last_customer_ms=1767261600000 - 3600_000,
    human=True,
    tag_allowed=True,
)


def send_error(code: int, subcode: int | None, message: str) -> SendError:
    graph = GraphError(400, code, subcode, message)
    return SendError(classify(graph), graph)


def test_another_app_controlling_the_thread_is_not_allowed_and_not_retried() -> None:
    error = send_error(10, 2018300, "(#10) Another app is controlling this thread now.")
    assert error.kind is SendErrorKind.HANDOVER
    answer = after_send_error(error, CONTEXT)
    assert isinstance(answer, Failed)
    assert answer.code == "MessageNotAllowed"
    assert "another app controls this conversation" in answer.message
    assert not answer.window_closed


@pytest.mark.parametrize("subcode", [2534022, 2018278])
def test_the_window_error_is_still_the_window(subcode: int) -> None:
    error = send_error(10, subcode, "(#10) This message is sent outside of allowed window.")
    assert error.kind is SendErrorKind.WINDOW
    assert after_send_error(error, CONTEXT) == SwitchRoute(Route.TAGGED)


def test_a_refused_private_reply_says_why() -> None:
    error = send_error(10900, None, "Activity already replied to")
    answer = after_send_error(error, replace(CONTEXT, route=Route.PRIVATE_REPLY))
    assert isinstance(answer, Failed)
    assert answer.code == "MessageNotAllowed"
    assert "Activity already replied to" in answer.message
    assert "live video only while the broadcast is live" in answer.message
    # The same refusal on a direct message keeps Instagram's words as a general error.
    plain = after_send_error(error, CONTEXT)
    assert isinstance(plain, Failed)
    assert plain.code == "GeneralError"


def test_a_private_reply_that_needs_several_messages_is_refused_before_sending() -> None:
    for name, hint in (
        ("long_text", "Shorten it to 1000 bytes"),
        ("image", "the picture, file or card after the customer answers"),
        ("two_images", "Send one now"),
    ):
        parts = message_parts(parsed(name))
        assert not isinstance(parts, Refusal)
        refusal = plan(Route.PRIVATE_REPLY, "1", COMMENT, parts)
        assert isinstance(refusal, Refusal), name
        assert refusal.code == "MessageNotAllowed"
        assert hint in refusal.message
