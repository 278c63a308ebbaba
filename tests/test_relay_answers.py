"""A customer's tap on an agent's quick reply or button, end to end: the real relay
between the Genesys and Meta simulators on 127.0.0.1. The agent's message goes out
through the relay to Instagram; the customer taps what Instagram shows; Genesys receives
a structured response naming the agent's message, as its SDK defines one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_agent import card, link_button, postback_button, quick_reply
from igbridge.sandbox.genesys_schema import violations
from igbridge.sandbox.genesys_sim import RecordedMessage
from igbridge.sandbox.relay_server import RelayThread
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay

CUSTOMER = "8001"
STRUCTURED = "structured/response"


@pytest.fixture
def relay(sandbox: Sandbox, tmp_path: Path) -> Iterator[RelayThread]:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_BACKOFF_CAP="0.2")
    with run_relay(env) as server:
        yield server


def customer_sends(sb: Sandbox, relay: RelayThread, body: dict[str, Any]) -> RecordedMessage:
    """Deliver a webhook and return what Genesys received for it."""
    before = len(sb.genesys.snapshot())
    resp = sb.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
    assert resp.status_code == 200, resp.text
    return sb.genesys.wait_for_messages(before + 1)[before]


def agent_offers(sb: Sandbox, relay: RelayThread, **extra: Any) -> str:
    """The agent's Structured message, sent through the relay; returns its Genesys id."""
    body = sb.genesys.build_agent_message(CUSTOMER, extra.pop("text", None), **extra)
    resp = sb.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", body, WEBHOOK_SECRET)
    assert resp.status_code == 200, resp.text
    message_id = str(body["id"])
    assert sb.genesys.wait_for(lambda: any(r["id"] == message_id for r in sb.genesys.receipts))
    (receipt,) = [r for r in sb.genesys.receipts if r["id"] == message_id]
    assert receipt["status"] == "Delivered", receipt
    return message_id


def answers_counted(relay: RelayThread, outcome: str) -> float:
    """``igbridge_answers_total{outcome=...}`` as the relay's /metrics shows it."""
    text = httpx.get(f"{relay.admin_url}/metrics", timeout=5).text
    prefix = f'igbridge_answers_total{{outcome="{outcome}"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0][len(prefix) :]) if found else 0.0


@pytest.fixture
def conversation(sandbox: Sandbox, relay: RelayThread) -> Sandbox:
    """The customer wrote: the agent may answer."""
    customer_sends(sandbox, relay, sandbox.meta.webhooks.text(CUSTOMER, "hi"))
    return sandbox


def test_a_quick_reply_tap_names_the_agent_message(
    conversation: Sandbox, relay: RelayThread
) -> None:
    sb = conversation
    offered = agent_offers(
        sb,
        relay,
        text="How can I help?",
        type="Structured",
        content=[quick_reply("Track order", "TRACK"), quick_reply("Talk to a human", "HUMAN")],
    )
    got = customer_sends(sb, relay, sb.meta.tap_quick_reply(CUSTOMER, "Talk to a human"))
    assert got.endpoint == STRUCTURED
    assert got.body["originatingMessageId"] == offered
    assert got.body["buttonResponse"] == {
        "type": "QuickReply",
        "text": "Talk to a human",
        "payload": "HUMAN",
    }
    assert got.attributes["QuickReplyPayload"] == "HUMAN"
    assert got.attributes["EventType"] == "quick_reply"
    assert violations("OpenInboundStructuredResponseMessage", got.body) == []
    assert answers_counted(relay, "structured") == 1


def test_a_card_button_tap_names_the_agent_message(
    conversation: Sandbox, relay: RelayThread
) -> None:
    sb = conversation
    sneakers = card(
        "Blue sneakers",
        [
            link_button("Buy", "https://shop.example.com/s"),
            postback_button("More like this", "MORE"),
        ],
        description="In stock, sizes 38-45",
    )
    offered = agent_offers(sb, relay, type="Structured", content=[sneakers])
    got = customer_sends(sb, relay, sb.meta.tap_button(CUSTOMER, "More like this"))
    assert got.endpoint == STRUCTURED
    assert got.body["originatingMessageId"] == offered
    assert got.body["buttonResponse"] == {
        "type": "Button",
        "text": "More like this",
        "payload": "MORE",
    }
    assert got.attributes["PostbackPayload"] == "MORE"


def test_taps_on_two_offers_name_each_its_own(conversation: Sandbox, relay: RelayThread) -> None:
    sb = conversation
    first = agent_offers(
        sb, relay, text="Size?", type="Structured", content=[quick_reply("42"), quick_reply("43")]
    )
    second = agent_offers(
        sb, relay, text="Colour?", type="Structured", content=[quick_reply("Blue")]
    )
    # Instagram lets the customer scroll up and tap an older option too.
    late = customer_sends(sb, relay, sb.meta.tap_quick_reply(CUSTOMER, "43"))
    now = customer_sends(sb, relay, sb.meta.tap_quick_reply(CUSTOMER, "Blue"))
    assert (late.body["originatingMessageId"], late.body["buttonResponse"]["payload"]) == (
        first,
        "43",
    )
    assert now.body["originatingMessageId"] == second


def test_an_answer_without_a_known_origin_arrives_as_text(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    # A quick reply from before the relay labelled its options, and an ice breaker.
    legacy = sandbox.meta.webhooks.quick_reply(CUSTOMER, "Track my order", "TRACK_ORDER")
    got = customer_sends(sandbox, relay, legacy)
    assert got.endpoint == "message"
    assert got.text == "Track my order"
    assert got.attributes["QuickReplyPayload"] == "TRACK_ORDER"
    assert "buttonResponse" not in got.body
    ice_breaker = sandbox.meta.webhooks.postback(CUSTOMER, "Opening hours?", "ICE_HOURS")
    got = customer_sends(sandbox, relay, ice_breaker)
    assert (got.endpoint, got.text) == ("message", "Opening hours?")
    assert got.attributes["PostbackPayload"] == "ICE_HOURS"
    assert answers_counted(relay, "no_origin") == 2


def test_an_answer_genesys_refuses_as_structured_arrives_as_text(
    conversation: Sandbox, relay: RelayThread
) -> None:
    sb = conversation
    agent_offers(sb, relay, text="Sure?", type="Structured", content=[quick_reply("Yes", "Y")])
    sb.genesys.faults.add(
        Fault(
            status=400,
            body={"message": "originating message not found", "code": "bad.request"},
            path_prefix=(
                f"/api/v2/conversations/messages/{sb.genesys.default_integration_id}"
                "/inbound/open/structured/response"
            ),
            method="POST",
        )
    )
    got = customer_sends(sb, relay, sb.meta.tap_quick_reply(CUSTOMER, "Yes"))
    assert got.endpoint == "message"
    assert got.text == "Yes"
    assert got.attributes["QuickReplyPayload"] == "Y"
    assert answers_counted(relay, "refused_as_structured") == 1
