"""Parsing every Instagram webhook shape into events (fixtures in tests/fixtures/instagram)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igbridge.relay.meta.events import EventKind, InstagramEvent, parse_webhook
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER, fixture_names, load_fixture_json

T = 1767261600000
K = EventKind
# fixture → [(kind, customer, dedupe key, timestamp ms)] and skipped reasons
EXPECTED: dict[str, tuple[list[tuple[EventKind, str, str, int]], list[str]]] = {
    "text": (
        [
            (
                K.MESSAGE,
                CUSTOMER,
                "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTk1MjI0Nzc0OTE2NTc1MzozMTY4MzkyMzUxMjM0NTY3ODkw",
                T,
            )
        ],
        [],
    ),
    "text_emoji": ([(K.MESSAGE, CUSTOMER, "mid.emoji.1", T)], []),
    "text_non_latin": ([(K.MESSAGE, CUSTOMER, "mid.nonlatin.1", T)], []),
    "text_escaped": ([(K.MESSAGE, CUSTOMER, "mid.escaped.1", T)], []),
    "image": ([(K.MESSAGE, CUSTOMER, "mid.image.1", T)], []),
    "sticker": ([(K.MESSAGE, CUSTOMER, "mid.sticker.1", T)], []),
    "video": ([(K.MESSAGE, CUSTOMER, "mid.video.1", T)], []),
    "audio": ([(K.MESSAGE, CUSTOMER, "mid.audio.1", T)], []),
    "file": ([(K.MESSAGE, CUSTOMER, "mid.file.1", T)], []),
    "share": ([(K.MESSAGE, CUSTOMER, "mid.share.1", T)], []),
    "ig_reel": ([(K.MESSAGE, CUSTOMER, "mid.igreel.1", T)], []),
    "reel": ([(K.MESSAGE, CUSTOMER, "mid.reel.1", T)], []),
    "ig_post": ([(K.MESSAGE, CUSTOMER, "mid.igpost.1", T)], []),
    "template": ([(K.MESSAGE, CUSTOMER, "mid.template.1", T)], []),
    "fallback": ([(K.MESSAGE, CUSTOMER, "mid.fallback.1", T)], []),
    "unsupported_type": ([(K.MESSAGE, CUSTOMER, "mid.unsupportedtype.1", T)], []),
    "carousel": ([(K.MESSAGE, CUSTOMER, "mid.carousel.1", T)], []),
    "story_mention": ([(K.MESSAGE, CUSTOMER, "mid.storymention.1", T)], []),
    "story_reply": ([(K.MESSAGE, CUSTOMER, "mid.storyreply.1", T)], []),
    "reply_to_message": ([(K.MESSAGE, CUSTOMER, "mid.replyto.1", T)], []),
    "quick_reply": ([(K.MESSAGE, CUSTOMER, "mid.quickreply.1", T)], []),
    "postback": ([(K.POSTBACK, CUSTOMER, "mid.postback.1", T)], []),
    "reaction": (
        [(K.REACTION, CUSTOMER, f"mid.business.reply.1#reaction:react:love:{T}", T)],
        [],
    ),
    "unreaction": (
        [(K.REACTION, CUSTOMER, f"mid.business.reply.1#reaction:unreact::{T}", T)],
        [],
    ),
    "seen": ([(K.SEEN, CUSTOMER, f"mid.business.reply.1#seen:{CUSTOMER}", T)], []),
    "referral_ad": ([(K.REFERRAL, CUSTOMER, f"referral:{CUSTOMER}:{T}", T)], []),
    "referral_link": ([(K.REFERRAL, CUSTOMER, f"referral:{CUSTOMER}:{T}", T)], []),
    "message_with_referral": ([(K.MESSAGE, CUSTOMER, "mid.withreferral.1", T)], []),
    "echo": ([(K.ECHO, CUSTOMER, "mid.echo.1", T)], []),
    "unsend": ([(K.UNSEND, CUSTOMER, "mid.text.deleted.1#unsend", T)], []),
    "is_unsupported": ([(K.MESSAGE, CUSTOMER, "mid.isunsupported.1", T)], []),
    "comment": ([(K.COMMENT, "6915500000000003", "17850000000000001", T)], []),
    "comment_reply": (
        [(K.COMMENT, "6915500000000003", "17850000000000002", T + 60_000)],
        [],
    ),
    "own_comment": ([], ["own_comment"]),
    "live_comment": ([(K.COMMENT, "6915500000000004", "17850000000000004", T + 180_000)], []),
    "mention": (
        [(K.MENTION, "ig-mention-18000000000000099", "mention:17850000000000099", T + 240_000)],
        [],
    ),
    "dashboard_test_messages": ([(K.MESSAGE, "12334", "random_mid", 1527459824000)], []),
    "dashboard_test_comments": ([(K.COMMENT, "232323232", "17865799348089039", T)], []),
    "batch": (
        [
            (K.MESSAGE, CUSTOMER, "mid.batch.3", T + 3000),
            (K.MESSAGE, "6915500000000002", "mid.batch.b1", T + 1000),
            (K.MESSAGE, CUSTOMER, "mid.batch.1", T + 1000),
            (K.MESSAGE, CUSTOMER, "mid.batch.2", T + 2000),
            (K.COMMENT, "6915500000000003", "17850000000000005", T),
        ],
        [],
    ),
    "unknown_field": ([(K.MESSAGE, CUSTOMER, "mid.known.1", T)], ["unknown_field"]),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_events(name: str) -> None:
    result = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID)
    events, skipped = EXPECTED[name]
    got = [(e.kind, e.customer_id, e.dedupe_key, e.timestamp_ms) for e in result.events]
    assert got == events
    assert [s.reason for s in result.skipped] == skipped
    for event in result.events:
        assert InstagramEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("text_emoji", "Thanks!! 😍👨‍👩‍👧‍👦🇧🇷👍🏾 ❤️‍🔥"),
        ("text_non_latin", "مرحبا، 你好, नमस्ते, Привет — где мой заказ?"),
        ("text_escaped", "Café 😀 ❤️ 你好"),
    ],
)
def test_text_is_byte_exact(name: str, text: str) -> None:
    (event,) = parse_webhook(load_fixture_json(name)).events
    assert event.data["message"]["text"].encode("utf-8") == text.encode("utf-8")
    restored = InstagramEvent.from_json(event.to_json())
    assert restored.data["message"]["text"] == text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "not_instagram"),
        ("text", "not_instagram"),
        ({"object": "page", "entry": []}, "not_instagram"),
        ({"object": "instagram", "entry": {"id": "1"}}, "malformed_item"),
        ({"object": "instagram", "entry": ["x"]}, "malformed_item"),
        ({"object": "instagram", "entry": [{"id": "1", "messaging": ["x"]}]}, "malformed_item"),
        (
            {
                "object": "instagram",
                "entry": [{"id": "1", "messaging": [{"message": {"mid": "m"}}]}],
            },
            "malformed_item",
        ),
        (
            {"object": "instagram", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}}]}]},
            "malformed_item",
        ),
        (
            {"object": "instagram", "entry": [{"id": "1", "changes": [{"value": {}}]}]},
            "malformed_item",
        ),
    ],
)
def test_malformed_bodies_are_skipped_not_raised(body: Any, reason: str) -> None:
    result = parse_webhook(body)
    assert result.events == []
    assert [s.reason for s in result.skipped] == [reason]


def test_a_bad_item_does_not_lose_the_rest_of_the_batch() -> None:
    body = load_fixture_json("batch")
    body["entry"][0]["messaging"].insert(1, {"sender": {"id": "9"}, "message": {"text": "no mid"}})
    result = parse_webhook(body)
    assert len(result.events) == 5
    assert [s.reason for s in result.skipped] == ["malformed_item"]


def test_lone_surrogate_is_skipped_with_a_reason() -> None:
    raw = '{"object":"instagram","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},'
    raw += '"timestamp":1,"message":{"mid":"m1","text":"broken \\ud83d"}}]}]}'
    result = parse_webhook(json.loads(raw))
    assert result.events == []
    assert [s.reason for s in result.skipped] == ["invalid_unicode"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "object",
                    "entry",
                    "id",
                    "time",
                    "messaging",
                    "changes",
                    "sender",
                    "recipient",
                    "message",
                    "mid",
                    "text",
                    "timestamp",
                    "field",
                    "value",
                    "from",
                    "reaction",
                    "postback",
                    "read",
                    "referral",
                    "is_echo",
                    "is_deleted",
                    "attachments",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(json_values, max_size=3))
def test_parse_never_raises_and_events_round_trip(entries: list[Any]) -> None:
    result = parse_webhook({"object": "instagram", "entry": entries})
    for event in result.events:
        assert InstagramEvent.from_json(event.to_json()) == event
