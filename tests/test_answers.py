"""Quick-reply and button answers: the origin the relay writes into each option's payload,
and the structured response Genesys gets when the customer taps one. Pure code only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from igbridge.relay.genesys.outbound import OutboundMessage, parse_outbound
from igbridge.relay.genesys.payloads import InboundMessage, StructuredResponse
from igbridge.relay.meta.events import InstagramEvent, parse_webhook
from igbridge.relay.pipeline.answers import PAYLOAD_LIMIT, Origin, offer, origin
from igbridge.relay.pipeline.inbound import Facts, build
from igbridge.relay.pipeline.outbound import message_parts
from igbridge.sandbox.genesys_schema import violations
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER, load_fixture_json

GENESYS = Path(__file__).parent / "fixtures" / "genesys"
AGENT_ID = "5b7c0d04a1f24e6b9c3d4e5f60718293"  # the quick_replies fixture's message id
STRUCTURED_MODEL = "OpenInboundStructuredResponseMessage"


def agent_message(name: str) -> OutboundMessage:
    msg = parse_outbound((GENESYS / f"{name}.json").read_bytes())
    assert not isinstance(msg, str), msg
    return msg


def offered_payloads(msg: OutboundMessage) -> list[tuple[str, str]]:
    """(title, payload given to Instagram) of every quick reply and postback button."""
    parts = message_parts(msg)
    assert isinstance(parts, list), parts
    found: list[tuple[str, str]] = []
    for part in parts:
        message = part.get("message", {})
        found += [(q["title"], q["payload"]) for q in message.get("quick_replies", [])]
        template = (message.get("attachment") or {}).get("payload") or {}
        for element in template.get("elements", []) if isinstance(template, dict) else []:
            found += [
                (b["title"], b["payload"])
                for b in element.get("buttons", [])
                if b["type"] == "postback"
            ]
    return found


def customer_taps(kind: str, title: str, payload: str, mid: str = "mid.tap.1") -> InstagramEvent:
    """The webhook event of the customer tapping an option with ``payload``."""
    item: dict[str, Any] = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "timestamp": 1767261600000,
    }
    if kind == "quick_reply":
        item["message"] = {"mid": mid, "text": title, "quick_reply": {"payload": payload}}
    else:
        item["postback"] = {"mid": mid, "title": title, "payload": payload}
    body = {"object": "instagram", "entry": [{"id": ACCOUNT_ID, "time": 1, "messaging": [item]}]}
    (event,) = parse_webhook(body, account_id=ACCOUNT_ID).events
    return event


# -- the payload codec -------------------------------------------------------------------------

ROUND_TRIPS = {
    "plain": ("TRACK", "igb1:5b7c0d04a1f24e6b9c3d4e5f60718293:TRACK"),
    "payload_with_colons": ("order:4512:track", f"igb1:{AGENT_ID}:order:4512:track"),
    "emoji_payload": ("👍 yes", f"igb1:{AGENT_ID}:👍 yes"),
    "payload_that_looks_encoded": (f"igb1:{AGENT_ID}:X", f"igb1:{AGENT_ID}:igb1:{AGENT_ID}:X"),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_an_offered_payload_decodes_to_its_origin(name: str) -> None:
    agent_payload, encoded = ROUND_TRIPS[name]
    assert offer(AGENT_ID, agent_payload) == encoded
    assert origin(encoded) == Origin(AGENT_ID, agent_payload)


def test_a_uuid_message_id_is_encoded() -> None:
    uuid_id = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e04"
    assert origin(offer(uuid_id, "YES")) == Origin(uuid_id, "YES")


def test_a_payload_too_long_to_carry_its_origin_is_sent_as_the_agent_wrote_it() -> None:
    fits = "p" * (PAYLOAD_LIMIT - len(f"igb1:{AGENT_ID}:"))
    assert len(offer(AGENT_ID, fits)) == PAYLOAD_LIMIT
    assert origin(offer(AGENT_ID, fits)) == Origin(AGENT_ID, fits)
    too_long = fits + "p"
    assert offer(AGENT_ID, too_long) == too_long
    assert origin(too_long) is None


def test_an_id_that_could_be_misread_is_not_encoded() -> None:
    assert offer("a:b", "YES") == "YES"
    assert offer("", "YES") == "YES"


NO_ORIGIN = {
    "none": None,
    "empty": "",
    "legacy_payload": "TRACK_ORDER",
    "ice_breaker": "ICEBREAKER_ORDER_STATUS",
    "other_version": f"igb2:{AGENT_ID}:TRACK",
    "no_separator": f"igb1:{AGENT_ID}",
    "empty_agent_payload": f"igb1:{AGENT_ID}:",
    "empty_id": "igb1::TRACK",
    "bad_id": "igb1:not an id:TRACK",
}


@pytest.mark.parametrize("name", sorted(NO_ORIGIN))
def test_payloads_the_relay_did_not_write_have_no_origin(name: str) -> None:
    assert origin(NO_ORIGIN[name]) is None


# -- the agent's side: every option carries its origin -----------------------------------------


def decoded(payload: str) -> Origin:
    found = origin(payload)
    assert found is not None, payload
    return found


@pytest.mark.parametrize(
    "name", ["quick_replies", "quick_reply_v2", "card", "carousel", "notification"]
)
def test_every_offered_option_names_the_agent_message(name: str) -> None:
    msg = agent_message(name)
    offered = offered_payloads(msg)
    assert offered, "the fixture offers options"
    assert {decoded(payload).message_id for _, payload in offered} == {msg.id}


def test_the_agent_payloads_come_back_unchanged() -> None:
    offered = offered_payloads(agent_message("quick_replies"))
    assert [(title, decoded(p).payload) for title, p in offered] == [
        ("Track order", "TRACK"),
        ("Talk to a human", "HUMAN"),
    ]
    (button,) = offered_payloads(agent_message("card"))
    assert (button[0], decoded(button[1]).payload) == ("More like this", "MORE_SNEAKERS")


# -- the customer's side: the tap becomes a structured response --------------------------------


@pytest.mark.parametrize(
    ("agent_fixture", "kind", "button_type"),
    [("quick_replies", "quick_reply", "QuickReply"), ("card", "postback", "Button")],
)
def test_a_tap_reaches_genesys_naming_the_agent_message(
    agent_fixture: str, kind: str, button_type: str
) -> None:
    msg = agent_message(agent_fixture)
    title, payload = offered_payloads(msg)[-1]
    result = build(customer_taps(kind, title, payload), Facts())
    assert isinstance(result, StructuredResponse)
    body = result.body()
    assert body["originatingMessageId"] == msg.id
    assert body["buttonResponse"] == {
        "type": button_type,
        "text": title,
        "payload": decoded(payload).payload,
    }
    assert set(body) == {"channel", "buttonResponse", "originatingMessageId"}
    assert violations(STRUCTURED_MODEL, body) == []


@pytest.mark.parametrize("name", ["quick_reply", "postback"])
def test_fixture_answers_are_valid_structured_responses(name: str) -> None:
    parsed = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID)
    (event,) = parsed.events
    result = build(event, Facts())
    assert isinstance(result, StructuredResponse)
    assert violations(STRUCTURED_MODEL, result.body()) == []


@pytest.mark.parametrize("name", ["quick_reply_no_origin", "postback_no_origin"])
def test_answers_without_a_known_origin_are_text_messages(name: str) -> None:
    parsed = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID)
    (event,) = parsed.events
    result = build(event, Facts())
    assert isinstance(result, InboundMessage)
    assert result.text in ("Track my order", "Talk to an agent")
    assert violations("OpenInboundNormalizedMessage", result.body()) == []


def test_a_structured_response_refused_by_genesys_becomes_the_same_answer_as_text() -> None:
    msg = agent_message("quick_replies")
    title, payload = offered_payloads(msg)[0]
    result = build(customer_taps("quick_reply", title, payload), Facts())
    assert isinstance(result, StructuredResponse)
    text = result.as_text()
    assert text.text == "Track order"
    assert text.channel == result.channel  # same message id, sender and attributes
    assert text.channel.metadata is not None
    assert text.channel.metadata.custom_attributes["QuickReplyPayload"] == "TRACK"
    assert violations("OpenInboundNormalizedMessage", text.body()) == []


def test_a_standby_answer_is_marked_by_its_attribute() -> None:
    raw = load_fixture_json("quick_reply")
    entry = raw["entry"][0]
    entry["standby"] = entry.pop("messaging")
    (event,) = parse_webhook(raw, account_id=ACCOUNT_ID, standby="deliver").events
    result = build(event, Facts())
    assert isinstance(result, StructuredResponse)
    assert result.channel.metadata is not None
    assert result.channel.metadata.custom_attributes["Standby"] == "true"
    assert violations(STRUCTURED_MODEL, result.body()) == []
