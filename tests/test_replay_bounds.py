"""How far a platform's time may lie, as parsing decides it: a time more than a day ahead
is refused, and any time accepted is stale before its dedupe key is forgotten, so no
replay is delivered twice. Pure: the clock is passed in."""

from __future__ import annotations

from typing import Any

import pytest

from igbridge.relay.config import load_settings
from igbridge.relay.genesys.outbound import Refused, message_time, parse_outbound
from igbridge.relay.meta.events import (
    MAX_AHEAD_MS,
    MAX_ATTACHMENTS,
    REPLAY_HORIZON_MS,
    InstagramEvent,
    Message,
    parse_webhook,
)
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER
from tests.test_config import BASE_ENV

NOW = 1_780_000_000_000
DAY = 86_400_000
WEEK = 7 * DAY


def webhook(ts: int, **message: Any) -> dict[str, Any]:
    item = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "timestamp": ts,
        "message": {"mid": "m.1", "text": "hi", **message},
    }
    return {"object": "instagram", "entry": [{"id": ACCOUNT_ID, "time": ts, "messaging": [item]}]}


def parsed(body: Any, now: int) -> tuple[list[InstagramEvent], list[str]]:
    result = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: now, horizon_ms=WEEK)
    return result.events, [s.reason for s in result.skipped]


@pytest.mark.parametrize(
    ("ahead", "kept"),
    [(0, True), (MAX_AHEAD_MS, True), (MAX_AHEAD_MS + 1, False), (365 * DAY, False)],
)
def test_a_time_more_than_a_day_ahead_is_refused(ahead: int, kept: bool) -> None:
    events, skipped = parsed(webhook(NOW + ahead), NOW)
    assert (len(events), skipped) == ((1, []) if kept else (0, ["future_timestamp"]))


@pytest.mark.parametrize("ahead", [0, DAY // 2, MAX_AHEAD_MS])
def test_a_replay_after_its_dedupe_key_is_forgotten_is_stale(ahead: int) -> None:
    body = webhook(NOW + ahead)
    [first], _ = parsed(body, NOW)  # stored now; its key is remembered this long
    forgotten = NOW + REPLAY_HORIZON_MS + 1
    assert parsed(body, forgotten) == ([], ["stale"])
    # Within the dedupe memory the replay parses again (and is dropped as a duplicate).
    [again], _ = parsed(body, NOW + REPLAY_HORIZON_MS - MAX_AHEAD_MS - ahead)
    assert again.dedupe_key == first.dedupe_key


def genesys_at(when: str) -> Any:
    raw = (
        '{"id":"g1","channel":{"platform":"Open","type":"Private","messageId":"g1",'
        '"to":{"id":"6915500000000001"},"from":{"id":"i1","idType":"Opaque"},'
        f'"time":"{when}"}},"type":"Text","text":"hi","direction":"Outbound"}}'
    ).encode()
    msg = parse_outbound(raw)
    assert not isinstance(msg, str), msg
    return msg


def test_a_genesys_time_more_than_a_day_ahead_is_refused() -> None:
    now = 1_780_000_000_000  # 2026-05-28T20:26:40Z
    two_days = message_time(genesys_at("2026-05-30T21:00:00.000Z"), now, WEEK, MAX_AHEAD_MS)
    assert isinstance(two_days, Refused)
    assert two_days.reason == "future_timestamp"
    hours = message_time(genesys_at("2026-05-29T08:00:00.000Z"), now, WEEK, MAX_AHEAD_MS)
    assert isinstance(hours, int)


def test_attachments_past_the_cap_are_not_read_nor_stored() -> None:
    many = [{"type": "image", "payload": {"url": f"https://x.fbcdn.net/{i}"}} for i in range(500)]
    result = parse_webhook(webhook(NOW, attachments=many), ACCOUNT_ID, now_ms=lambda: NOW)
    [event] = result.events
    assert isinstance(event.body, Message)
    assert len(event.body.attachments) == MAX_ATTACHMENTS
    stored = InstagramEvent.from_json(event.to_json())
    assert len(stored.data["message"]["attachments"]) == MAX_ATTACHMENTS
    assert [s.reason for s in result.skipped] == ["too_many_attachments"]
    assert "480 attachments" in result.skipped[0].detail


@pytest.mark.parametrize(
    ("dedupe_hours", "horizon_hours", "effective_hours"),
    [
        pytest.param(168, 168, 144, id="defaults: a week less the day ahead"),
        pytest.param(36, 36, 12, id="short dedupe memory: its length less the day ahead"),
        pytest.param(720, 48, 48, id="long dedupe memory: the configured horizon"),
        pytest.param(168, 0, 0, id="horizon off"),
    ],
)
def test_the_replay_horizon_follows_the_configured_dedupe_memory(
    dedupe_hours: int, horizon_hours: int, effective_hours: int
) -> None:
    settings = load_settings(
        {
            **BASE_ENV,
            "IGBRIDGE_RETENTION_DEDUPE_SECONDS": str(dedupe_hours * 3600),
            "IGBRIDGE_REPLAY_HORIZON_SECONDS": str(horizon_hours * 3600),
        }
    )
    assert settings.replay_horizon_ms == effective_hours * 3_600_000
    if effective_hours:  # the latest time accepted is stale before dedupe forgets it
        assert settings.replay_horizon_ms + MAX_AHEAD_MS <= dedupe_hours * 3_600_000
