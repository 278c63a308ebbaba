"""Agents' replies through a real relay to the Meta simulator, with receipts to Genesys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import regex

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_sim import sign_genesys
from igbridge.sandbox.relay_server import RelayThread
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay

HOUR_MS = 3600 * 1000
CUSTOMER = "8001"
SEND_PATH = "/v21.0/me/messages"
WINDOW_ERROR = {
    "error": {
        "message": "(#10) This message is sent outside of allowed window.",
        "type": "OAuthException",
        "code": 10,
        "error_subcode": 2534022,
    }
}


@pytest.fixture
def relay(sandbox: Sandbox, tmp_path: Path) -> Iterator[RelayThread]:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_BACKOFF_CAP="0.2")
    with run_relay(env) as server:
        yield server


def customer_writes(sb: Sandbox, relay: RelayThread, ago_ms: int, who: str = CUSTOMER) -> None:
    """The customer's last message, ``ago_ms`` ago by Meta's clock."""
    ts = int(time.time() * 1000) - ago_ms
    body = sb.meta.webhook([sb.meta.messaging(who, {"text": "hello?"}, ts_ms=ts)])
    assert sb.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body).status_code == 200
    assert sb.genesys.wait_for(
        lambda: any(m.body["channel"]["from"]["id"] == who for m in sb.genesys.snapshot())
    )


def agent_says(
    sb: Sandbox,
    relay: RelayThread,
    text: str | None = "Hi, this is Sam from support 🙂",
    to: str = CUSTOMER,
    **extra: Any,
) -> dict[str, Any]:
    body = sb.genesys.build_agent_message(to, text or "", **extra)
    if text is None:
        body.pop("text")
    resp = sb.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", body, WEBHOOK_SECRET)
    assert resp.status_code == 200, resp.text
    return body


def receipt_for(sb: Sandbox, message_id: str) -> dict[str, Any]:
    assert sb.genesys.wait_for(lambda: any(r["id"] == message_id for r in sb.genesys.receipts))
    found = [r for r in sb.genesys.receipts if r["id"] == message_id]
    assert len(found) == 1, "exactly one final receipt per agent message"
    receipt = found[0]
    assert receipt["isFinalReceipt"] is True
    assert receipt["channel"]["to"]["id"] == CUSTOMER or receipt["channel"]["to"]["id"]
    return receipt


def sends_to(sb: Sandbox, who: str = CUSTOMER) -> list[dict[str, Any]]:
    return [s for s in sb.meta.sent if s["recipient"].get("id") == who]


def test_reply_inside_the_window_is_delivered_untagged(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    customer_writes(sandbox, relay, ago_ms=24 * HOUR_MS - 60_000)  # 23 h 59 m
    body = agent_says(sandbox, relay)
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    (sent,) = sends_to(sandbox)
    assert sent["message"] == {"text": "Hi, this is Sam from support 🙂"}
    assert sent["messaging_type"] == "RESPONSE"
    assert "tag" not in sent


def test_after_24h_a_human_reply_uses_the_human_agent_tag(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    customer_writes(sandbox, relay, ago_ms=25 * HOUR_MS)
    body = agent_says(sandbox, relay)
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    (sent,) = sends_to(sandbox)
    assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


def test_after_24h_without_the_tag_the_agent_is_told(sandbox: Sandbox, tmp_path: Path) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_HUMAN_AGENT_TAG="false")
    with run_relay(env) as relay:
        customer_writes(sandbox, relay, ago_ms=25 * HOUR_MS)
        body = agent_says(sandbox, relay)
        receipt = receipt_for(sandbox, body["id"])
    assert receipt["status"] == "Failed"
    (reason,) = receipt["reasons"]
    assert reason["code"] == "MessageExpired"
    assert "24 hours" in reason["message"]
    assert "turned off" in reason["message"]
    assert sends_to(sandbox) == []


def test_a_bot_cannot_use_the_human_agent_tag(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=25 * HOUR_MS)
    body = agent_says(sandbox, relay, originatingEntity="Bot")
    receipt = receipt_for(sandbox, body["id"])
    assert receipt["reasons"][0]["code"] == "MessageExpired"
    assert "bot" in receipt["reasons"][0]["message"]
    assert sends_to(sandbox) == []


def test_after_8_days_nothing_is_sent(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=8 * 24 * HOUR_MS)
    body = agent_says(sandbox, relay)
    receipt = receipt_for(sandbox, body["id"])
    assert receipt["status"] == "Failed"
    assert receipt["reasons"][0]["code"] == "MessageExpired"
    assert "7 days" in receipt["reasons"][0]["message"]
    assert sends_to(sandbox) == []


def test_metas_window_error_switches_to_the_tag_once(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=HOUR_MS)
    sandbox.meta.faults.add(Fault(status=400, body=WINDOW_ERROR, path_prefix=SEND_PATH))
    body = agent_says(sandbox, relay)
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    (sent,) = sends_to(sandbox)
    assert sent["tag"] == "HUMAN_AGENT"
    assert sandbox.meta.faults.injected == 1


def test_metas_window_error_without_the_tag_fails_without_a_retry_loop(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_HUMAN_AGENT_TAG="false")
    with run_relay(env) as relay:
        customer_writes(sandbox, relay, ago_ms=HOUR_MS)
        sandbox.meta.faults.add(
            Fault(status=400, body=WINDOW_ERROR, count=100, path_prefix=SEND_PATH)
        )
        body = agent_says(sandbox, relay)
        receipt = receipt_for(sandbox, body["id"])
    assert receipt["reasons"][0]["code"] == "MessageExpired"
    assert sandbox.meta.faults.injected == 1


def test_a_3000_byte_emoji_reply_is_split_on_grapheme_boundaries(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    text = "👨‍👩‍👧‍👦🇧🇷👍🏾❤️‍🔥é" * 60
    assert len(text.encode("utf-8")) > 3000
    body = agent_says(sandbox, relay, text=text)
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    parts = [s["message"]["text"] for s in sends_to(sandbox)]
    assert len(parts) >= 4
    assert all(len(p.encode("utf-8")) <= 1000 for p in parts)
    assert "".join(parts) == text  # in order, nothing lost
    graphemes = regex.findall(r"\X", text)
    assert [g for p in parts for g in regex.findall(r"\X", p)] == graphemes  # none split


def test_a_duplicate_genesys_delivery_is_sent_once(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    body = sandbox.genesys.build_agent_message(CUSTOMER, "only once")
    for _ in range(3):
        resp = sandbox.genesys.post_agent_message(
            f"{relay.url}/webhooks/genesys", body, WEBHOOK_SECRET
        )
        assert resp.status_code == 200
    receipt_for(sandbox, body["id"])
    time.sleep(0.3)
    assert [s["message"]["text"] for s in sends_to(sandbox)] == ["only once"]
    assert len([r for r in sandbox.genesys.receipts if r["id"] == body["id"]]) == 1


def test_attachments_and_refused_media(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    image = {
        "contentType": "Attachment",
        "attachment": {
            "mediaType": "Image",
            "url": "https://api-downloads.mypurecloud.com/a.png",
            "mime": "image/png",
            "filename": "a.png",
            "contentSizeBytes": 2444,
        },
    }
    ok = agent_says(sandbox, relay, text="Here is your label", content=[image])
    assert receipt_for(sandbox, ok["id"])["status"] == "Delivered"
    assert [s["message"] for s in sends_to(sandbox)] == [
        {"text": "Here is your label"},
        {
            "attachment": {
                "type": "image",
                "payload": {"url": "https://api-downloads.mypurecloud.com/a.png"},
            }
        },
    ]
    gif = {
        "contentType": "Attachment",
        "attachment": {"mediaType": "Image", "url": "https://x/a.gif", "mime": "image/gif"},
    }
    animated = agent_says(sandbox, relay, text=None, content=[gif])
    assert receipt_for(sandbox, animated["id"])["status"] == "Delivered"
    bmp = {
        "contentType": "Attachment",
        "attachment": {"mediaType": "Image", "url": "https://x/a.bmp", "mime": "image/bmp"},
    }
    bad_type = agent_says(sandbox, relay, text="Scan attached", content=[bmp])
    reason = receipt_for(sandbox, bad_type["id"])["reasons"][0]
    assert reason["code"] == "MediaTypeNotAllowed"
    assert "PNG, JPEG or GIF" in reason["message"]
    video = {
        "contentType": "Attachment",
        "attachment": {
            "mediaType": "Video",
            "url": "https://x/v.mp4",
            "mime": "video/mp4",
            "contentSizeBytes": 30 * 1024 * 1024,
        },
    }
    too_big = agent_says(sandbox, relay, text=None, content=[video])
    assert receipt_for(sandbox, too_big["id"])["reasons"][0]["code"] == "InvalidMediaContentLength"
    assert len(sends_to(sandbox)) == 3  # text, png, gif: nothing of the refused ones
    # Genesys gave no size: Instagram fetches the file and refuses it by Meta's limit.
    sandbox.meta.host_file("https://x/big.png", "image/png", 9 * 1024 * 1024)
    unsized = {
        "contentType": "Attachment",
        "attachment": {"mediaType": "Image", "url": "https://x/big.png", "mime": "image/png"},
    }
    fetched = agent_says(sandbox, relay, text=None, content=[unsized])
    receipt = receipt_for(sandbox, fetched["id"])
    assert receipt["status"] == "Failed"
    assert "Attachment size exceeds allowable limit" in receipt["reasons"][0]["message"]
    assert len(sends_to(sandbox)) == 3


def test_a_notification_template_arrives_filled_in(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    text = "Hi {{1}}, order {{2}} has shipped."
    buttons = [{"type": "QuickReply", "text": "Thanks!", "payload": "THANKS"}]
    params = [{"name": "1", "text": "Ana"}, {"name": "2", "text": "#4512"}]
    template: dict[str, Any] = {
        "id": "order_shipped",
        "language": "en_US",
        "body": {"text": text, "parameters": params},
        "buttons": buttons,
    }
    item = {"contentType": "Notification", "template": template}
    body = agent_says(sandbox, relay, text="Good news:", type="Structured", content=[item])
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    (sent,) = sends_to(sandbox)
    assert sent["message"]["text"] == "Good news:\n\nHi Ana, order #4512 has shipped."
    assert [q["title"] for q in sent["message"]["quick_replies"]] == ["Thanks!"]
    half = {**template, "body": {"text": text, "parameters": params[:1]}}
    refused = agent_says(
        sandbox, relay, text="Update:", type="Structured", content=[{**item, "template": half}]
    )
    reason = receipt_for(sandbox, refused["id"])["reasons"][0]
    assert reason["code"] == "InvalidMessageStructure"
    assert "{{2}}" in reason["message"]
    picker = {"contentType": "DatePicker", "datePicker": {"title": "When?"}}
    mixed = agent_says(sandbox, relay, text="Pick a day", type="Structured", content=[picker])
    reason = receipt_for(sandbox, mixed["id"])["reasons"][0]
    assert reason["code"] == "UnsupportedMessage"
    assert "date picker" in reason["message"]
    assert len(sends_to(sandbox)) == 1  # neither refused message sent a part


def test_another_app_controlling_the_thread(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    sandbox.meta.other_app_threads.add(CUSTOMER)
    body = agent_says(sandbox, relay)
    receipt = receipt_for(sandbox, body["id"])
    assert receipt["status"] == "Failed"
    assert receipt["reasons"][0]["code"] == "MessageNotAllowed"
    assert "another app controls this conversation" in receipt["reasons"][0]["message"]
    assert [code for _, code, _ in sandbox.meta.refused] == [10]  # refused once, not retried


def test_structured_messages(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    quick = [
        {"contentType": "QuickReply", "quickReply": {"text": t, "payload": p, "action": "Message"}}
        for t, p in (("Track order", "TRACK"), ("Talk to a human", "HUMAN"))
    ]
    body = agent_says(sandbox, relay, text="How can I help?", type="Structured", content=quick)
    receipt_for(sandbox, body["id"])
    (sent,) = sends_to(sandbox)
    assert sent["message"]["text"] == "How can I help?"
    # Each payload names the agent message, for the customer's answer (answers.py).
    assert sent["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Track order", "payload": f"igb1:{body['id']}:TRACK"},
        {"content_type": "text", "title": "Talk to a human", "payload": f"igb1:{body['id']}:HUMAN"},
    ]
    card = {
        "contentType": "Card",
        "card": {
            "title": "Blue sneakers",
            "description": "In stock, sizes 38-45",
            "image": "https://cdn.example.com/s.jpg",
            "actions": [
                {"type": "Link", "text": "Buy", "url": "https://shop.example.com/s"},
                {"type": "Postback", "text": "More like this", "payload": "MORE"},
            ],
        },
    }
    body = agent_says(sandbox, relay, text=None, type="Structured", content=[card])
    receipt_for(sandbox, body["id"])
    template = sends_to(sandbox)[-1]["message"]["attachment"]
    assert template["type"] == "template"
    (element,) = template["payload"]["elements"]
    assert element["title"] == "Blue sneakers"
    assert element["buttons"] == [
        {"type": "web_url", "url": "https://shop.example.com/s", "title": "Buy"},
        {"type": "postback", "title": "More like this", "payload": f"igb1:{body['id']}:MORE"},
    ]
    long_options = [
        {
            "contentType": "QuickReply",
            "quickReply": {"text": f"Option number {i} is long", "payload": str(i)},
        }
        for i in range(3)
    ]
    body = agent_says(sandbox, relay, text="Pick one", type="Structured", content=long_options)
    receipt_for(sandbox, body["id"])
    texts = [s["message"].get("text") for s in sends_to(sandbox)[-2:]]
    assert texts[0] == "Pick one"
    assert texts[1] is not None
    assert "• Option number 2 is long" in texts[1]


def test_typing_indicator(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    agent_says(
        sandbox,
        relay,
        text=None,
        type="Event",
        events=[{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}],
    )
    assert sandbox.meta.faults is not None
    assert sandbox.genesys.wait_for(lambda: len(sends_to(sandbox)) == 1)
    assert sends_to(sandbox)[0] == {"recipient": {"id": CUSTOMER}, "sender_action": "typing_on"}


def test_comment_conversation_gets_one_private_reply(sandbox: Sandbox, relay: RelayThread) -> None:
    comment = {
        "field": "comments",
        "value": {
            "id": "17850000000000777",
            "text": "Price?",
            "from": {"id": CUSTOMER, "username": "ana"},
            "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        },
    }
    sandbox.meta.deliver_webhook(
        f"{relay.url}/webhooks/instagram", sandbox.meta.webhook(changes=[comment])
    )
    sandbox.genesys.wait_for_messages(1)
    first = agent_says(sandbox, relay, text="It's 49 €, I've sent you the link")
    assert receipt_for(sandbox, first["id"])["status"] == "Delivered"
    assert sandbox.meta.sent[-1]["recipient"] == {"comment_id": "17850000000000777"}
    second = agent_says(sandbox, relay, text="Anything else?")
    receipt = receipt_for(sandbox, second["id"])
    assert receipt["reasons"][0]["code"] == "MessageExpired"
    assert len(sandbox.meta.sent) == 1


def test_a_private_reply_that_needs_two_messages_is_refused_whole(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    comment = {
        "field": "comments",
        "value": {
            "id": "17850000000000779",
            "text": "Photo of the back?",
            "from": {"id": CUSTOMER, "username": "ana"},
            "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        },
    }
    sandbox.meta.deliver_webhook(
        f"{relay.url}/webhooks/instagram", sandbox.meta.webhook(changes=[comment])
    )
    sandbox.genesys.wait_for_messages(1)
    image = {
        "contentType": "Attachment",
        "attachment": {"mediaType": "Image", "url": "https://x/back.jpg", "mime": "image/jpeg"},
    }
    both = agent_says(sandbox, relay, text="Here it is", content=[image])
    reason = receipt_for(sandbox, both["id"])["reasons"][0]
    assert reason["code"] == "MessageNotAllowed"
    assert "after the customer answers" in reason["message"]
    long = agent_says(sandbox, relay, text="word " * 300)
    reason = receipt_for(sandbox, long["id"])["reasons"][0]
    assert reason["code"] == "MessageNotAllowed"
    assert "Shorten it to 1000 bytes" in reason["message"]
    assert sandbox.meta.sent == []  # nothing half-sent: the one private reply is still unused
    text = agent_says(sandbox, relay, text="Sending it by DM as soon as you answer 🙂")
    assert receipt_for(sandbox, text["id"])["status"] == "Delivered"
    assert sandbox.meta.sent[-1]["recipient"] == {"comment_id": "17850000000000779"}


def test_public_comment_replies_when_configured(sandbox: Sandbox, tmp_path: Path) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_COMMENT_REPLIES="public")
    comment = {
        "field": "comments",
        "value": {
            "id": "17850000000000778",
            "text": "Do you ship to Chile?",
            "from": {"id": CUSTOMER, "username": "ana"},
            "media": {"id": "1"},
        },
    }
    with run_relay(env) as relay:
        sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", sandbox.meta.webhook(changes=[comment])
        )
        sandbox.genesys.wait_for_messages(1)
        body = agent_says(sandbox, relay, text="Yes! 🇨🇱")
        assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    assert sandbox.meta.public_replies == [("17850000000000778", "Yes! 🇨🇱")]


def test_invalid_token_fails_fast_and_is_reported_while_the_relay_stays_ready(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_META_ACCESS_TOKEN="revoked-token")
    with run_relay(env) as relay:
        customer_writes(sandbox, relay, ago_ms=60_000)
        body = agent_says(sandbox, relay)
        receipt = receipt_for(sandbox, body["id"])
        ready = httpx.get(f"{relay.admin_url}/readyz")
    assert receipt["reasons"][0]["code"] == "GeneralError"
    assert "IGBRIDGE_META_ACCESS_TOKEN" in receipt["reasons"][0]["message"]
    assert ready.status_code == 200  # webhooks keep coming in and are kept
    assert "code 190" in ready.json()["problems"]["instagram"]
    assert "revoked-token" not in ready.text


def test_throttling_retries_then_delivers_or_reports_rate_limited(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    throttled = {
        "error": {
            "message": "Calls to this api have exceeded the rate limit.",
            "type": "OAuthException",
            "code": 613,
        }
    }
    env = sandbox.relay_env(
        tmp_path / "r.db", IGBRIDGE_BACKOFF_CAP="0.2", IGBRIDGE_SEND_MAX_ATTEMPTS="3"
    )
    with run_relay(env) as relay:
        customer_writes(sandbox, relay, ago_ms=60_000)
        sandbox.meta.faults.add(Fault(status=400, body=throttled, count=2, path_prefix=SEND_PATH))
        ok = agent_says(sandbox, relay, text="after two throttles")
        assert receipt_for(sandbox, ok["id"])["status"] == "Delivered"
        sandbox.meta.faults.add(Fault(status=400, body=throttled, count=3, path_prefix=SEND_PATH))
        limited = agent_says(sandbox, relay, text="never gets through")
        receipt = receipt_for(sandbox, limited["id"])
    assert receipt["reasons"][0]["code"] == "RateLimited"
    assert [s["message"]["text"] for s in sends_to(sandbox)] == ["after two throttles"]


def test_never_wrote_means_no_window(sandbox: Sandbox, relay: RelayThread) -> None:
    body = agent_says(sandbox, relay, to="999999")
    assert sandbox.genesys.wait_for(
        lambda: any(r["id"] == body["id"] for r in sandbox.genesys.receipts)
    )
    receipt = next(r for r in sandbox.genesys.receipts if r["id"] == body["id"])
    assert (receipt["status"], receipt["reasons"][0]["code"]) == ("Failed", "MessageExpired")
    assert sandbox.meta.sent == []


def test_unreachable_user_is_an_invalid_destination(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    gone = {
        "error": {
            "message": "No matching user found",
            "type": "OAuthException",
            "code": 100,
            "error_subcode": 2018001,
        }
    }
    sandbox.meta.faults.add(Fault(status=400, body=gone, path_prefix=SEND_PATH))
    body = agent_says(sandbox, relay)
    receipt = receipt_for(sandbox, body["id"])
    assert receipt["reasons"][0]["code"] == "InvalidDestination"
    assert sandbox.meta.faults.injected == 1


def test_instagram_outage_is_retried_then_delivered(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    sandbox.meta.faults.add(Fault(status=503, count=2, path_prefix=SEND_PATH))
    # A request that times out on the relay's side and then fails at Meta's. (One that
    # Meta completes after the relay gave up cannot be told apart: it may arrive twice,
    # as the Send API has no idempotency key.)
    sandbox.meta.faults.add(Fault(delay=4.0, status=504, count=1, path_prefix=SEND_PATH))
    body = agent_says(sandbox, relay, text="despite the outage")
    assert receipt_for(sandbox, body["id"])["status"] == "Delivered"
    assert [s["message"]["text"] for s in sends_to(sandbox)] == ["despite the outage"]


def test_genesys_webhook_signature_and_bad_input(sandbox: Sandbox, relay: RelayThread) -> None:
    url = f"{relay.url}/webhooks/genesys"
    raw = b'{"id": "x1", "type": "Text", "channel": {"to": {"id": "1"}}, "text": "hi"}'
    assert httpx.post(url, content=raw).status_code == 401
    wrong = httpx.post(
        url, content=raw, headers={"X-Hub-Signature-256": sign_genesys(raw, "nope-nope-nope-nope")}
    )
    assert wrong.status_code == 403
    garbage = httpx.post(url, content=raw, headers={"X-Hub-Signature-256": "sha256=***"})
    assert garbage.status_code == 403
    for bad in (b"{oops", b'{"type": "Text"}', b"\xff"):
        resp = httpx.post(
            url, content=bad, headers={"X-Hub-Signature-256": sign_genesys(bad, WEBHOOK_SECRET)}
        )
        assert resp.status_code == 400, bad
        assert resp.json()["error"]
    assert httpx.get(url).status_code == 405  # the route exists; it takes POSTs only
    assert sandbox.meta.sent == []


def test_the_relays_own_echoes_are_recognised(sandbox: Sandbox, relay: RelayThread) -> None:
    customer_writes(sandbox, relay, ago_ms=60_000)
    body = agent_says(sandbox, relay, text="ours")
    receipt_for(sandbox, body["id"])
    url = f"{relay.url}/webhooks/instagram"
    for mid, text in (
        (sandbox.meta.sent_ids[-1], "ours"),
        ("mid.from.the.app", "staff in the app"),
    ):
        echo = sandbox.meta.messaging(
            sandbox.meta.account_id, {"mid": mid, "text": text, "is_echo": True}
        )
        echo["recipient"] = {"id": CUSTOMER}
        assert sandbox.meta.deliver_webhook(url, sandbox.meta.webhook([echo])).status_code == 200
    metrics = httpx.get(f"{relay.admin_url}/metrics").text
    assert 'igbridge_events_not_forwarded_total{reason="own_echo"} 1.0' in metrics
    assert 'igbridge_events_not_forwarded_total{reason="echo"} 1.0' in metrics
    assert len(sandbox.genesys.snapshot()) == 1  # only the customer's own message
