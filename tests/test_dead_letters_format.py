"""What ``dead-letters`` prints and parses, from named cases (no store, no process)."""

from __future__ import annotations

import pytest

from igbridge.relay.dead_letters import list_line, parse_duration, show_document
from igbridge.relay.store import DeadLetter

REFUSED = DeadLetter(
    id=12,
    queue="inbound",
    key="9071",
    dedupe_key="mid.1",
    payload='{"text": "hello 🙏"}'.encode(),
    reason="HTTP 400:\n" + "x" * 500,
    attempts=1,
    failed_at=1_767_225_600.0,  # 2026-01-01T00:00:00Z
    order_ts=1_767_225_599_000,
)
UNREADABLE = DeadLetter(7, "intake", "", "3", b"\xff{not json", "unreadable webhook", 1, 0.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("1d12h", 129600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5y", "-3h", "h", "3h soon"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_list_line_is_one_line_with_a_short_reason_and_no_text() -> None:
    line = list_line(REFUSED)
    assert "\n" not in line
    assert line.split("\t")[:5] == ["12", "inbound", "9071", "1", "2026-01-01T00:00:00Z"]
    assert line.split("\t")[5].startswith("HTTP 400: xxx")
    assert len(line.split("\t")[5]) == 160
    assert "hello" not in line
    assert list_line(UNREADABLE).split("\t")[2] == "-"  # an intake one has no customer


def test_show_parses_a_json_payload_and_keeps_other_bytes_readable() -> None:
    doc = show_document(REFUSED)
    assert doc["payload"] == {"text": "hello 🙏"}
    assert (doc["customer"], doc["orderTs"], doc["failedAt"]) == (
        "9071",
        1_767_225_599_000,
        "2026-01-01T00:00:00Z",
    )
    assert show_document(UNREADABLE)["payloadRaw"] == "\\xff{not json"


def test_show_says_when_the_text_was_blanked() -> None:
    blanked = DeadLetter(3, "inbound", "9071", "mid.3", b"", "HTTP 400", 1, 0.0)
    assert show_document(blanked)["payload"] is None
