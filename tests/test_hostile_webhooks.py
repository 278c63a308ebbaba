"""Hostile but signed webhooks through a real relay: refused or skipped with a reason,
never a 5xx, and the valid events of the same batch still arrive."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from igbridge.relay.meta.events import MAX_ATTACHMENTS
from igbridge.sandbox.genesys_agent import build_agent_message, card, genesys_time
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER

DAY_MS = 86_400_000
WEEK = str(7 * 86400)  # the default horizon (the sandbox's relays turn it off)


def metric(relay_url: str, name: str, labels: str) -> float:
    text = httpx.get(f"{relay_url}/metrics").text
    found = re.search(rf"^{re.escape(name + '{' + labels + '}')} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for_metric(relay_url: str, name: str, labels: str, value: float) -> None:
    deadline = time.monotonic() + 10
    while metric(relay_url, name, labels) < value:
        assert time.monotonic() < deadline, f"{name}{{{labels}}} never reached {value}"
        time.sleep(0.05)


def entry(entry_id: str, mid: str, text: str, ts_ms: int) -> str:
    """One entry as Meta serialises it (``\\uXXXX`` escapes kept as written)."""
    item = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "timestamp": ts_ms,
        "message": {"mid": mid, "text": text},
    }
    return json.dumps({"id": "ENTRY", "time": ts_ms, "messaging": [item]}).replace(
        '"ENTRY"', f'"{entry_id}"'
    )


def webhook(*entries: str) -> bytes:
    return ('{"object":"instagram","entry":[' + ",".join(entries) + "]}").encode()


def test_a_lone_surrogate_entry_id_is_skipped_and_the_rest_of_the_batch_arrives(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    # A lone surrogate escape is valid JSON but no UTF-8 can carry it.
    body = webhook(entry("\\ud800", "m.bad", "x", now), entry(ACCOUNT_ID, "m.good", "here", now))
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
        assert resp.status_code == 200, resp.text
        [message] = sandbox.genesys.wait_for_messages(1)
        assert message.body["text"] == "here"
        skipped = "igbridge_events_skipped_total"
        wait_for_metric(relay.admin_url, skipped, 'reason="invalid_unicode"', 1)
        assert metric(relay.admin_url, "igbridge_handler_errors_total", 'queue="intake"') == 0
        assert metric(relay.admin_url, skipped, 'reason="other_account"') == 0


def test_a_replay_past_the_dedupe_memory_is_stale_and_not_resent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    old = entry(ACCOUNT_ID, "m.old", "said last month", now - 8 * DAY_MS)
    fresh = entry(ACCOUNT_ID, "m.new", "said now", now)
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_REPLAY_HORIZON_SECONDS=WEEK)
    with run_relay(env) as relay:
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", webhook(old, fresh))
        assert resp.status_code == 200, resp.text
        [message] = sandbox.genesys.wait_for_messages(1)
        assert message.body["text"] == "said now"
        wait_for_metric(relay.admin_url, "igbridge_events_skipped_total", 'reason="stale"', 1)
        assert len(sandbox.genesys.snapshot()) == 1


def agent_message(sb: Sandbox, **channel: Any) -> dict[str, Any]:
    body = build_agent_message(next(iter(sb.genesys.integration_ids)), CUSTOMER, "hello")
    body["channel"].update(channel)
    return body


def test_genesys_messages_with_impossible_or_stale_times_are_refused_with_a_reason(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_REPLAY_HORIZON_SECONDS=WEEK)
    with run_relay(env) as relay:
        url = f"{relay.url}/webhooks/genesys"
        cases = {
            "0000-01-01T00:00:00Z": ("genesys_invalid_time", "ISO 8601"),
            "0001-01-01T00:00:00+01:00": ("genesys_invalid_time", "before 1970"),
            "not a time": ("genesys_invalid_time", "ISO 8601"),
            "2020-01-01T00:00:00.000Z": ("genesys_stale", "days old"),
        }
        for when, (_, why) in cases.items():
            body = agent_message(sandbox, time=when)
            resp = sandbox.genesys.post_agent_message(url, body, WEBHOOK_SECRET)
            assert resp.status_code == 400, (when, resp.text)
            assert why in resp.json()["error"]
        for label in ("genesys_invalid_time", "genesys_stale"):
            expected = sum(1 for lab, _ in cases.values() if lab == label)
            assert metric(
                relay.admin_url, "igbridge_events_skipped_total", f'reason="{label}"'
            ) == (expected)
        fresh = sandbox.genesys.post_agent_message(
            url, agent_message(sandbox, time=genesys_time()), WEBHOOK_SECRET
        )
        assert fresh.status_code == 200, fresh.text


def test_genesys_structured_items_of_the_wrong_shape_are_refused_at_the_door(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bad_card = card("Shoes", actions=[])
    bad_card["card"]["actions"] = 5
    items = [
        bad_card,
        {"contentType": "Carousel", "carousel": {"cards": True}},
        {"contentType": "Carousel", "carousel": {"cards": [{"title": "x", "actions": "buy"}]}},
        {"contentType": "QuickReplyV2", "quickReplyV2": {"actions": 1}},
        {"contentType": "Attachment", "attachment": {"mediaType": "Image", "url": "https://[::1"}},
    ]
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/genesys"
        for item in items:
            body = agent_message(sandbox)
            body["type"] = "Structured"
            body["content"] = [item]
            resp = sandbox.genesys.post_agent_message(url, body, WEBHOOK_SECRET)
            assert resp.status_code == 400, (item, resp.text)
            assert "content.0" in resp.json()["error"]
        labels = 'reason="genesys_malformed"'
        assert metric(relay.admin_url, "igbridge_events_skipped_total", labels) == len(items)


def test_ten_thousand_attachments_are_capped_with_one_skip_and_no_line_each(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    count = 10_000
    known = 2 * MAX_ATTACHMENTS  # enough to see whether checks stop at the cap
    for i in range(known):
        sandbox.meta.add_media(f"pic{i}", "image/jpeg")
    attachments = [
        {"type": "image", "payload": {"url": sandbox.cdn_url(f"pic{i}")}} for i in range(count)
    ]
    item = sandbox.meta.messaging(CUSTOMER, {"text": "look", "attachments": attachments})
    caplog.set_level(logging.INFO)
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        resp = sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", sandbox.meta.webhook([item])
        )
        assert resp.status_code == 200, resp.text
        [message] = sandbox.genesys.wait_for_messages(1)
        skipped = "igbridge_events_skipped_total"
        wait_for_metric(relay.admin_url, skipped, 'reason="too_many_attachments"', 1)
        assert metric(relay.admin_url, skipped, 'reason="too_many_attachments"') == 1
    # The work done was for the first MAX_ATTACHMENTS only: that many CDN checks, that
    # many attachments delivered, one log line for the rest.
    checked = [i for i in range(known) if sandbox.meta.media[f"pic{i}"].requests]
    assert checked == list(range(MAX_ATTACHMENTS))
    assert len(message.body["content"]) == MAX_ATTACHMENTS
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len([r for r in lines if getattr(r, "reason", "") == "too_many_attachments"]) == 1
    assert len(lines) < 50, [r.getMessage() for r in lines[:60]]


def test_an_instagram_event_stamped_more_than_a_day_ahead_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    ahead = entry(ACCOUNT_ID, "m.ahead", "from next week", now + 7 * DAY_MS)
    soon = entry(ACCOUNT_ID, "m.soon", "a clock a little fast", now + DAY_MS // 2)
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_REPLAY_HORIZON_SECONDS=WEEK)
    with run_relay(env) as relay:
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", webhook(ahead, soon))
        assert resp.status_code == 200, resp.text
        [message] = sandbox.genesys.wait_for_messages(1)
        assert message.body["text"] == "a clock a little fast"
        wait_for_metric(
            relay.admin_url, "igbridge_events_skipped_total", 'reason="future_timestamp"', 1
        )
        assert len(sandbox.genesys.snapshot()) == 1


def test_a_genesys_message_stamped_more_than_a_day_ahead_is_refused_at_the_door(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ahead = datetime.now(UTC) + timedelta(days=2)
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/genesys"
        body = agent_message(sandbox, time=ahead.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        resp = sandbox.genesys.post_agent_message(url, body, WEBHOOK_SECRET)
        assert resp.status_code == 400, resp.text
        assert "days ahead" in resp.json()["error"]
        labels = 'reason="genesys_future_timestamp"'
        assert metric(relay.admin_url, "igbridge_events_skipped_total", labels) == 1
