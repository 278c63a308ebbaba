"""Genesys wants ISO 8601 UTC with milliseconds: 2026-01-01T10:00:00.000Z."""

from __future__ import annotations

from datetime import datetime, timedelta

_EPOCH = datetime(1970, 1, 1)  # naive UTC: isoformat() then has no offset to strip


def format_time(ms: int) -> str:
    # Per message: isoformat() is about twice as fast as strftime for the same text.
    seconds, millis = divmod(ms, 1000)
    return f"{(_EPOCH + timedelta(seconds=seconds)).isoformat()}.{millis:03d}Z"
